"""The shipped accelerate configs, checked without a GPU and without DeepSpeed installed: each is built into the
plugin accelerate would build from it, and holds what a user would otherwise find out on a rented GPU machine
(a final model that loads, clipping equal to the recipe's, a process count to set)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

from finetune_kit.config.recipe import TrainingConfig
from tests.builders import REPO

CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))
DEEPSPEED = [path for path in CONFIGS if path.stem.startswith("deepspeed")]
FSDP = [path for path in CONFIGS if path.stem.startswith("fsdp")]
# fsdp_config keys as FullyShardedDataParallelPlugin names them (accelerate's launcher passes them on as FSDP_* env).
FSDP_FIELDS = {
    "fsdp_version": "fsdp_version",
    "fsdp_auto_wrap_policy": "auto_wrap_policy",
    "fsdp_transformer_layer_cls_to_wrap": "transformer_cls_names_to_wrap",
    "fsdp_state_dict_type": "state_dict_type",
    "fsdp_reshard_after_forward": "reshard_after_forward",
    "fsdp_offload_params": "cpu_offload",
    "fsdp_cpu_ram_efficient_loading": "cpu_ram_efficient_loading",
    "fsdp_activation_checkpointing": "activation_checkpointing",
}
DEFAULTS = TrainingConfig()

pytestmark = pytest.mark.unit


def _stem(path: Path) -> str:
    return path.stem


def _fsdp_plugin(path: Path) -> FullyShardedDataParallelPlugin:
    """The plugin from the file's keys; the plugin writes env vars as it is built, so the test's env is restored."""
    keys = yaml.safe_load(path.read_text())["fsdp_config"]
    with mock.patch.dict(os.environ):
        return FullyShardedDataParallelPlugin(**{FSDP_FIELDS[key]: value for key, value in keys.items()})


@pytest.mark.parametrize("path", CONFIGS, ids=_stem)
def test_every_key_is_one_accelerate_reads(path):
    """Top-level keys are checked by accelerate itself; keys nested under fsdp_config or deepspeed_config become
    launch options by name, and one accelerate does not know (a typo) is dropped without a word."""
    config = ClusterConfig.from_yaml_file(str(path))
    options = {action.dest for action in launch_command_parser()._actions}
    nested = {**config.fsdp_config, **config.deepspeed_config}
    assert sorted(key for key in nested if key not in options) == []
    assert set(config.fsdp_config) <= set(FSDP_FIELDS)
    line = next(line for line in path.read_text().splitlines() if line.startswith("num_processes:"))
    assert "#" in line, "say what to set num_processes to"


@pytest.mark.parametrize("path", DEEPSPEED, ids=_stem)
def test_deepspeed_configs_build_and_match_the_recipe_defaults(path):
    keys = ClusterConfig.from_yaml_file(str(path)).deepspeed_config
    with mock.patch.dict(os.environ):
        plugin = DeepSpeedPlugin(**keys)
    stage = int(path.stem.removeprefix("deepspeed_zero"))
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == ds["zero_optimization"]["stage"] == stage
    # DeepSpeed clips and accumulates itself: a value other than the recipe's would train differently than it says.
    assert ds["gradient_clipping"] == DEFAULTS.max_grad_norm
    assert ds["gradient_accumulation_steps"] == DEFAULTS.gradient_accumulation_steps
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "none"
    if stage == 3:  # else Trainer.save_model writes DeepSpeed shards and run/model does not load
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert plugin.zero3_init_flag


@pytest.mark.parametrize("path", FSDP, ids=_stem)
def test_fsdp_configs_save_a_model_that_loads(path):
    plugin = _fsdp_plugin(path)
    assert plugin.fsdp_version == 2
    # SHARDED_STATE_DICT: Trainer.save_model (transformers 5) writes no weights, and run/model would be empty.
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert not plugin.activation_checkpointing  # Trainer refuses it with training.gradient_checkpointing


TINY = {"vocab_size": 64, "num_attention_heads": 2}
ARCHITECTURES = {  # model_type: (a one-block config, the modules FSDP shards by)
    "bert": (
        {"hidden_size": 16, "num_hidden_layers": 1, "intermediate_size": 32, "is_decoder": True},
        ["BertEmbeddings", "BertLayer"],
    ),
    "gpt2": ({"n_embd": 16, "n_layer": 1, "n_head": 2}, ["GPT2Block"]),
    "llama": ({"hidden_size": 16, "num_hidden_layers": 1, "intermediate_size": 32}, ["LlamaDecoderLayer"]),
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_transformer_based_wrap_shards_by_the_blocks_the_model_names(architecture):
    """TRANSFORMER_BASED_WRAP without a class named: one shard group per block of `_no_split_modules`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    settings, blocks = ARCHITECTURES[architecture]
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(architecture, **TINY, **settings))
    plugin = _fsdp_plugin(REPO / "recipes" / "accelerate" / "fsdp.yaml")
    plugin.set_auto_wrap_policy(model)
    assert sorted(plugin.transformer_cls_names_to_wrap) == blocks


def test_a_config_precision_other_than_the_recipes_stops_the_run(monkeypatch):
    """accelerate passes `mixed_precision` on through the environment, where Trainer takes it over a recipe's fp32."""
    from finetune_kit.errors import RecipeError
    from finetune_kit.training.arguments import require_launcher_precision_agrees

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(RecipeError, match="resolves to fp32, but the accelerate config says mixed_precision: bf16"):
        require_launcher_precision_agrees("fp32")
    require_launcher_precision_agrees("bf16")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # fsdp2_cpu.yaml: the recipe decides
    require_launcher_precision_agrees("fp32")
