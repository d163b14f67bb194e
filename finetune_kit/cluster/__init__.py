"""A Ray cluster as the engine of `train` and `sweep` (`--ray ADDRESS --workers N`). Ray is optional (the `ray`
extra): it is imported by the modules below only once `--ray` is given, so the options are checked without it."""

from __future__ import annotations

from finetune_kit.errors import UserError


def check_ray_options(address: str | None, workers: int | None, launchers: dict[str, bool]) -> None:
    """`--workers` counts Ray's processes, so it needs `--ray`; Ray starts the processes itself, so `--ray` takes
    no other launcher (`launchers`: each other option by name, and whether it was given)."""
    if workers is not None and address is None:
        raise UserError("--workers: give --ray ADDRESS too, the Ray cluster the workers run on (e.g. --ray auto)")
    given = [option for option, on in launchers.items() if on]
    if address is not None and given:
        raise UserError(f"--ray and {given[0]}: Ray starts and places the processes itself; choose one")
