import json
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from tests.conftest import REPO, classification_recipe


@pytest.mark.parametrize("config", sorted((REPO / "recipes" / "accelerate").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_accelerate_configs_load(config: Path):
    loaded = ClusterConfig.from_yaml_file(str(config))
    assert loaded.distributed_type in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert loaded.mixed_precision == "bf16"


def test_gradient_checkpointing_trains_to_the_same_place(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    accuracies = []
    for name, checkpointing in (("plain", False), ("checkpointed", True)):
        run_dir = tmp_path / "runs" / name
        recipe = classification_recipe(tiny_bert, toy_data, run_dir, gradient_checkpointing=checkpointing)
        recipe["emissions"]["enabled"] = False
        assert cli("train", write_recipe(recipe, f"{name}.yaml")).exit_code == 0
        accuracies.append(json.loads((run_dir / "metrics.json").read_text())["validation"]["accuracy"])
    assert accuracies[1] == pytest.approx(accuracies[0], abs=0.02)  # recomputation changes memory, not results
