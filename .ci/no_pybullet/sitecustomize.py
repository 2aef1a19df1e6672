"""pybullet made absent to Python, for CI: put this directory on PYTHONPATH.

Every import of pybullet, pybullet_data, pybullet_utils or pybullet_envs fails as it does where the
package is not installed (ModuleNotFoundError), in this process and in every stage subprocess and
worker that inherits PYTHONPATH: the install a Windows, macOS or Python 3.12 user gets.
"""

import os
import sys

BLOCKED = ("pybullet", "pybullet_data", "pybullet_utils", "pybullet_envs")


class _NoPybullet:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoPybullet())
os.environ["RLCORE_NO_PYBULLET"] = "1"
