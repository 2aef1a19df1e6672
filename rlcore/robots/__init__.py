"""Robot descriptions: bundled URDF files and a reader for serial kinematic chains."""

from rlcore.robots.chain import Chain, Joint, read_chain, resolve_urdf

__all__ = ["Chain", "Joint", "read_chain", "resolve_urdf"]
