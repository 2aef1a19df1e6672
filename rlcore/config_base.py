"""The base of every params section, and the one error a params problem raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A params file or override that does not fit the schema."""


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
