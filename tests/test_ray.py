"""`train --ray` and `sweep --ray` on a real local Ray cluster: a head and a worker node started with `ray start`,
the CLI as the driver. One cluster for the module: starting one takes most of the time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (the `ray` extra: pip install 'finetune-kit[ray]')")

import optuna
from optuna.trial import TrialState

from tests.builders import classification_recipe, free_loopback_port, train_run

RAY = Path(sys.executable).with_name("ray")
NODE = ["--num-cpus", "2", "--object-store-memory", str(100 * 2**20), "--node-ip-address", "127.0.0.1"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A head and one worker node, 2 CPUs each, on this machine; its address. Stopped even when a start fails."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    # Ray's sockets live under its temp dir, and a socket path has at most 107 bytes: pytest's own can be longer.
    temp = tempfile.mkdtemp(prefix="ray-")
    address = f"127.0.0.1:{free_loopback_port()}"
    head = [RAY, "start", "--head", "--port", address.rpartition(":")[2], "--temp-dir", temp, *NODE]
    head += ["--include-dashboard=false", "--disable-usage-stats"]
    try:
        for command in (head, [RAY, "start", "--address", address, *NODE]):
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stderr[-2000:]
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_ray_workers_train_one_run_and_sum_their_emissions(
    ray_cluster, tiny_bert, toy_data, tmp_path, write_recipe, cli
):
    run = tmp_path / "ray-run"
    recipe = classification_recipe(tiny_bert, toy_data, run, epochs=2)
    result = cli("train", write_recipe(recipe), "--ray", ray_cluster, "--workers", "2")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert not run.with_name("ray-run.partial").exists()
    for name in ("model", "metrics.json", "emissions.json", "log.jsonl", "README.md", "recipe.yaml"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 * 25  # 400 rows / (8 per process x 2 processes) per epoch
    emissions = json.loads((run / "emissions.json").read_text())
    assert emissions["processes"] == 2 and emissions["emissions_g"] > 0
    assert str(run) in result.stdout  # the driver's summary

    # Without Ray: one process, the same global batch (2 x 8) and steps. (The same recipe under torchrun gives the
    # Ray run's metrics exactly, but costs two more processes.)
    recipe = {**recipe, "output_dir": str(tmp_path / "one-process")}
    recipe["training"] = {**recipe["training"], "batch_size": 16}
    alone = json.loads((train_run(recipe, tmp_path) / "metrics.json").read_text())
    assert alone["train"]["steps"] == metrics["train"]["steps"]
    assert metrics["validation"]["accuracy"] == pytest.approx(alone["validation"]["accuracy"], abs=0.05)


def test_a_sweep_on_ray_runs_each_trial_once_and_reports(ray_cluster, tiny_bert, toy_data, tmp_path, write_recipe, cli):
    out = tmp_path / "sweep"
    recipe = classification_recipe(tiny_bert, toy_data, out, epochs=1)
    recipe["name"] = "ray-sweep"
    recipe["data"] |= {"max_train_rows": 80, "max_eval_rows": 40}
    recipe["sweep"] = {
        "trials": 4,
        "seed": 0,
        "objectives": ["accuracy", "co2"],
        "parameters": {"training.learning_rate": {"log_uniform": [1e-4, 3e-2]}},
    }
    result = cli("sweep", write_recipe(recipe), "--ray", ray_cluster, "--workers", "2")
    assert result.exit_code == 0, result.stderr[-3000:]

    study = optuna.load_study(study_name="ray-sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 4
    rates = [trial.params["training.learning_rate"] for trial in study.trials]
    assert len(set(rates)) == 4  # the tasks drew their own values
    workers = {trial.user_attrs["worker"] for trial in study.trials}
    assert len(workers) == 2, workers  # both tasks ran trials
    assert sorted(path.name for path in out.glob("trial-*")) == [f"trial-{n:04d}" for n in range(4)]
    report = json.loads((out / "sweep.json").read_text())
    assert sorted(row["number"] for row in report["trials"]) == [0, 1, 2, 3]
    assert report["trials_by_state"] == {"complete": 4}
    assert sorted(report["pareto_front"]) == sorted(trial.number for trial in study.best_trials)
    grams = [json.loads((out / f"trial-{n:04d}" / "emissions.json").read_text())["emissions_g"] for n in range(4)]
    assert report["total_emissions_g"] == pytest.approx(sum(grams))
    assert (out / "pareto.png").is_file()


@pytest.mark.unit
def test_ray_options_that_do_not_fit_are_refused_in_one_line(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    path = write_recipe(classification_recipe(tiny_bert, toy_data, tmp_path / "run"))
    for options, message in [
        (("--workers", "2"), "--workers: give --ray ADDRESS too"),
        (("--ray", "auto", "--nodes", "2"), "--ray and --nodes: Ray starts and places the processes itself"),
    ]:
        result = cli("train", path, *options)
        assert result.exit_code == 2 and result.error_lines[0].startswith(f"error: {message}"), result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.unit
def test_ray_not_installed_is_said_in_one_line(tiny_bert, toy_data, tmp_path, write_recipe, cli, monkeypatch):
    for module in ("finetune_kit.cluster.connection", "finetune_kit.cluster.ray_train"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as without the extra
    result = cli("train", write_recipe(classification_recipe(tiny_bert, toy_data, tmp_path / "run")), "--ray", "auto")
    assert result.exit_code == 2
    assert result.error_lines == ["error: --ray needs Ray: pip install 'finetune-kit[ray]'"]
