"""What the library tells a person while it works, without knowing who shows it: a step they wait for (tokenize,
generate, calibrate, export) and a one-line note. The console (`finetune_kit.console.ConsoleReport`) draws them
as bars and lines; a library user who passes nothing gets `SILENT`."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class Progress(Protocol):
    """How a step that reports no progress of its own, and a note, reach the person waiting."""

    def phase(self, description: str, total: int | None = None, *, unit: str = "rows") -> AbstractContextManager[None]:
        """Around a step the user waits for: `total` `unit`s of work (`tokenize`, 4000 rows)."""
        ...

    def note(self, line: str) -> None:
        """One line worth telling (where the experiment trackers write)."""
        ...


class Silent:
    """Shows nothing: what code called without a console gets, and a calibration that must not describe a run."""

    def phase(self, description: str, total: int | None = None, *, unit: str = "rows") -> AbstractContextManager[None]:
        del description, total, unit
        return nullcontext()

    def note(self, line: str) -> None:
        del line


SILENT = Silent()
