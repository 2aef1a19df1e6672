"""The params schema: its sections and their defaults (loading and overrides: rlcore.pipeline.params)."""
