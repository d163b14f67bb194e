"""Several DDP processes on CPU (gloo) through `finetune-kit train --processes-per-node / --nodes` (torchrun
underneath): one run folder, the emissions of every process summed; two nodes that share no folder train as one
node of two processes does."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_kit.commands.launch import NodeLaunch, forwarded_arguments
from finetune_kit.errors import UserError
from tests.builders import REPO, classification_recipe, free_loopback_port, toy_sentiment_rows, write_jsonl

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _train(recipe: Path, *options: str, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "finetune_kit", "train", str(recipe), *options]
    return subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.fixture
def relative_recipe(tiny_bert, toy_data, tmp_path, write_recipe) -> Path:
    """The run folder relative to where each node starts: nodes in two folders share no filesystem."""
    return write_recipe(classification_recipe(tiny_bert, toy_data, Path("runs") / "ddp", epochs=2))


def test_two_nodes_train_as_one_node_of_two_processes_and_sum_their_emissions(relative_recipe, tmp_path):
    one_node, node0, node1 = (tmp_path / name for name in ("one-node", "node0", "node1"))
    for folder in (one_node, node0, node1):
        folder.mkdir()

    stdout = _finished(_train(relative_recipe, "--processes-per-node", "2", cwd=one_node))
    assert stdout.count("run folder:") == 1  # only the main process reports
    run = one_node / "runs" / "ddp"
    assert not run.with_name("ddp.partial").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 * 25  # 400 rows / (8 per process x 2 processes) per epoch
    assert metrics["validation"]["accuracy"] >= 0.9
    emissions = json.loads((run / "emissions.json").read_text())
    assert (emissions["processes"], emissions["nodes"], emissions["sessions"]) == (2, 1, 1)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_steps = [entry["step"] for entry in log if "loss" in entry]
    assert train_steps and len(train_steps) == len(set(train_steps))  # one writer, no doubled lines
    first_loss = next(entry["loss"] for entry in log if "loss" in entry)
    assert first_loss < 0.8  # two classes start near ln 2 = 0.69: the mean over processes, not their sum

    master = f"127.0.0.1:{free_loopback_port()}"
    nodes = [
        _train(relative_recipe, "--nodes", "2", "--node-rank", str(rank), "--master", master, cwd=folder)
        for rank, folder in enumerate((node0, node1))
    ]
    outputs = [_finished(node) for node in nodes]
    assert outputs[0].count("run folder:") == 1 and "run folder:" not in outputs[1]
    leftovers = list((node1 / "runs").glob("ddp*"))
    assert not leftovers  # the second machine keeps nothing of the run (the Trainer's random states are dropped)
    two_nodes = node0 / "runs" / "ddp"
    quality = {key: value for key, value in metrics["validation"].items() if key in ("loss", "accuracy", "f1")}
    validation = json.loads((two_nodes / "metrics.json").read_text())["validation"]
    # Same ranks, same shards, same model: which machine a process runs on changes nothing.
    assert {key: validation[key] for key in quality} == pytest.approx(quality, rel=1e-5) and "loss" in quality
    summed = json.loads((two_nodes / "emissions.json").read_text())
    assert (summed["processes"], summed["nodes"]) == (2, 2)
    assert summed["emissions_g"] > 0 and "2 machines" in summed["hardware"]
    card = (two_nodes / "README.md").read_text()
    assert f"CO2 emitted: {summed['emissions_g']:.3f} g" in card and "2 machines" in card


def test_a_bad_row_stops_the_launched_processes_and_the_command_exits_2(tiny_bert, tmp_path, write_recipe):
    rows = toy_sentiment_rows(40, seed=1)
    rows[7] = {"text": rows[7]["text"], "label": "maybe"}
    data = {"train": write_jsonl(tmp_path / "train.jsonl", rows), "validation": write_jsonl(tmp_path / "v.jsonl", rows)}
    recipe = classification_recipe(tiny_bert, data, tmp_path / "runs" / "bad")
    recipe["data"]["label_names"] = ["neg", "pos"]
    done = _train(write_recipe(recipe), "--processes-per-node", "2", cwd=tmp_path)
    _, stderr = done.communicate(timeout=300)
    assert done.returncode == 2, stderr[-2000:]  # as one process would exit: torchrun's 1 is not passed on
    assert "maybe" in stderr and "Traceback" not in stderr


@pytest.mark.unit
def test_launch_options_that_do_not_fit_together_are_refused_with_the_fix():
    for nodes, rank, master, message in [
        (2, None, "127.0.0.1:29500", "--nodes 2: also give --node-rank"),
        (2, 1, None, "--nodes 2: also give --master"),
        (2, 2, "h:1", "--node-rank 2: the ranks of 2 nodes are 0 to 1"),
        (2, 0, "h:port", "--master h:port: give node 0's HOST:PORT"),
        (1, 1, None, "--node-rank: only for a run of several machines; add --nodes N"),
        (1, None, "h:1", "--master: only for a run of several machines; add --nodes N"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            NodeLaunch.from_options(nodes, rank, master, 1).torchrun_options()


@pytest.mark.unit
def test_each_node_becomes_torchrun_with_the_same_train_arguments():
    second = NodeLaunch.from_options(2, 1, "[fd00::1]:6000", 4)
    assert second.torchrun_options() == [
        *("--nnodes", "2", "--node-rank", "1", "--master-addr", "fd00::1", "--master-port", "6000"),
        *("--nproc-per-node", "4"),
    ]
    assert NodeLaunch.from_options(1, None, None, 2).torchrun_options() == ["--standalone", "--nproc-per-node", "2"]
    flags = {"resume": True, "overwrite": False, "quiet": True}
    assert forwarded_arguments("r.yaml", ["training.epochs=1"], flags) == [
        *("r.yaml", "--set", "training.epochs=1", "--resume", "--quiet")
    ]
