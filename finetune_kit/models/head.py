"""What a task asks the model builder for: the model class, peft's task type and the head's size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelHead:
    """Which model a task trains: the transformers Auto class, peft's task type for adapters
    (None: a plain model), and config fields that size the head (labels)."""

    auto_class: Any
    peft_task_type: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
