"""Two DDP processes on CPU (gloo), launched by torchrun: one run folder, emissions of both summed."""

import json
import os
import subprocess
import sys

from tests.builders import REPO, classification_recipe


def test_two_process_run_writes_one_complete_folder_and_sums_emissions(tiny_bert, toy_data, tmp_path, write_recipe):
    run_dir = tmp_path / "runs" / "ddp"
    recipe = write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=2))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launch, "-m", "finetune_kit", "train", str(recipe)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1  # only the main process reports
    assert not run_dir.with_name("ddp.partial").exists()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 * 25  # 400 rows / (8 per process x 2 processes) per epoch
    assert metrics["validation"]["accuracy"] >= 0.9

    emissions = json.loads((run_dir / "emissions.json").read_text())
    assert emissions["processes"] == 2 and emissions["sessions"] == 1 and emissions["emissions_g"] > 0

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train_steps = [entry["step"] for entry in log if "loss" in entry]
    assert train_steps and len(train_steps) == len(set(train_steps))  # one writer, no doubled lines
