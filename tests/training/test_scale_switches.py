import json
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from tests.builders import REPO, classification_recipe


@pytest.mark.parametrize("config", sorted((REPO / "recipes" / "accelerate").glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.unit
def test_shipped_accelerate_configs_load(config: Path):
    loaded = ClusterConfig.from_yaml_file(str(config))
    assert loaded.distributed_type in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert loaded.mixed_precision == ("no" if config.stem.endswith("_cpu") else "bf16")  # CPU: the recipe decides


def test_gradient_checkpointing_trains_to_the_same_place(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    """Twelve steps at a modest rate stop mid-way, the loss still far from zero, where a change in the
    gradients shows in every logged loss: recomputation changes memory, not results."""
    losses, validation = {}, {}
    for name, checkpointing in (("plain", False), ("checkpointed", True)):
        run_dir = tmp_path / "runs" / name
        recipe = classification_recipe(
            tiny_bert, toy_data, run_dir, gradient_checkpointing=checkpointing, max_steps=12, logging_steps=2
        )
        recipe["training"]["learning_rate"] = 1e-3
        recipe["emissions"]["enabled"] = False
        assert cli("train", write_recipe(recipe, f"{name}.yaml")).exit_code == 0
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        losses[name] = [entry["loss"] for entry in log if "loss" in entry]
        validation[name] = json.loads((run_dir / "metrics.json").read_text())["validation"]
    assert len(losses["plain"]) == 6 and validation["plain"]["loss"] > 0.1  # not saturated: a difference would show
    assert losses["checkpointed"] == pytest.approx(losses["plain"], rel=1e-4)
    assert validation["checkpointed"]["loss"] == pytest.approx(validation["plain"]["loss"], rel=1e-4)
