"""The base of every recipe section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A recipe section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
