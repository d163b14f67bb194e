"""Run a recipe as its own `finetune-kit train` process and read back what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TOOLKIT = ("-m", "finetune_kit")


def train_recipe(
    recipe: Path, run_dir: Path, overrides: dict[str, Any], processes: int = 1, entry: Sequence[str] = TOOLKIT
) -> tuple[dict[str, Any], float]:
    """metrics.json of the finished run, and the process's peak memory in MB (from `os.wait4`,
    so it is this run's own peak, not the bench's). `processes` > 1 runs it under torchrun; `entry`
    is what Python runs (a bench's peer script in place of the toolkit's module)."""
    sets = [item for key, value in overrides.items() for item in ("--set", f"{key}={value}")]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    command = [sys.executable, *launcher, *entry, "train", str(recipe), *sets]
    command += ["--set", f"output_dir={run_dir}"]
    log = run_dir.with_name(run_dir.name + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stderr:
        pid = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr).pid
        _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{run_dir.name} failed:\n{log.read_text()[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text()), usage.ru_maxrss / 1024  # Linux: KiB
