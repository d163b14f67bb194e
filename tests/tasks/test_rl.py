"""Learning from rewards: a reward model learns to rank a toy preference and scores replies, GRPO
raises its reward on a tiny model (a user's function), a reward-model run serves as a GRPO reward,
and bad rewards or data are named before anything is written."""

from __future__ import annotations

import json

import pytest
import torch

from tests.builders import lora_sft_recipe, toy_chat_rows, toy_pairs, write_jsonl
from tests.test_serve import serving

SHORT_REPLIES = """
def short(prompts, completions, **columns):
    return [-len(completion[-1]["content"]) / 10 for completion in completions]
"""


def reward_recipe(checkpoint, tmp_path, run_dir) -> dict:
    data = tmp_path / "pairs"
    return {
        "task": "reward",
        "model": {"checkpoint": str(checkpoint)},
        "data": {
            "train": str(write_jsonl(data / "train.jsonl", toy_pairs(240, 1))),
            "validation": str(write_jsonl(data / "validation.jsonl", toy_pairs(32, 2))),
        },
        "training": {"epochs": 4, "batch_size": 8, "learning_rate": 1e-2, "max_length": 64, "precision": "fp32"},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
    }


def grpo_recipe(checkpoint, tmp_path, run_dir, rewards: list[dict]) -> dict:
    data = tmp_path / "prompts"
    return {
        "task": "grpo",
        "model": {"checkpoint": str(checkpoint)},
        "data": {
            "train": str(write_jsonl(data / "train.jsonl", toy_chat_rows(96, seed=1))),
            "validation": str(write_jsonl(data / "validation.jsonl", toy_chat_rows(8, seed=2))),
        },
        "grpo": {"rewards": rewards, "num_generations": 4, "max_completion_length": 12},
        "training": {
            "epochs": 1,
            "batch_size": 8,
            "learning_rate": 1e-2,
            "max_length": 64,
            "precision": "fp32",
            "logging_steps": 2,
        },
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
    }


def test_a_reward_model_learns_to_rank_pairs_and_scores_replies(tiny_chat_llama, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "reward"
    result = cli("train", write_recipe(reward_recipe(tiny_chat_llama, tmp_path, run_dir)))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.9 > metrics["before_training"]["accuracy"]
    assert metrics["validation"]["margin"] > 0
    pair = toy_pairs(1, 7)[0]
    rows = [{"prompt": pair["prompt"], "completion": reply} for reply in (pair["chosen"], pair["rejected"])]
    predicted = tmp_path / "scores.jsonl"
    result = cli("predict", run_dir, "--input", write_jsonl(tmp_path / "replies.jsonl", rows), "--output", predicted)
    assert result.exit_code == 0, result.stderr
    right, wrong = (json.loads(line)["score"] for line in predicted.read_text().splitlines())
    assert right > wrong
    with serving(run_dir) as (client, _):
        body = {"prompts": [pair["prompt"]] * 2, "completions": [pair["chosen"], pair["rejected"]]}
        scores = client.post("/score", json=body).raise_for_status().json()["scores"]
        assert scores == pytest.approx([right, wrong], abs=1e-3)
        unequal = client.post("/score", json={"prompts": ["a"], "completions": ["b", "c"]})
        assert unequal.status_code == 400 and "completions" in unequal.text
        refused = client.post("/predict", json={"texts": ["a"]})
        assert refused.status_code == 400 and "POST /score" in refused.text


def test_grpo_raises_a_user_functions_reward_and_keeps_its_curve(tiny_chat_llama, tmp_path, write_recipe, cli):
    (tmp_path / "my_rewards.py").write_text(SHORT_REPLIES)
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"function": str(tmp_path / "my_rewards.py:short")}])
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["reward"] > metrics["before_training"]["reward"] + 0.2
    curve = metrics["rewards"]["short"]
    assert curve["last"] > curve["first"] and len(curve["curve"]) >= 2
    assert metrics["emissions_g_per_point"] > 0
    assert "rewards:" in result.stdout and "CO2 per point:" in result.stdout
    assert metrics["sampling"]["tokens_per_second"] > 0 and "generated tokens/s" in result.stdout
    assert " · reward " in result.stdout  # each training log line shows the mean reward
    card = (run_dir / "README.md").read_text()
    assert "co2_eq_emissions" in card and "| short |" in card and "of validation reward cost" in card


def test_grpo_oversampling_trains_on_the_groups_with_a_reward_spread(tiny_chat_llama, tmp_path, write_recipe, cli):
    """grpo.oversample 3: a step samples replies for three times its two prompts and trains on at most two of
    those groups, the ones whose replies earned different rewards; an epoch of 96 prompts takes 16 steps."""
    (tmp_path / "my_rewards.py").write_text(SHORT_REPLIES)
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"function": str(tmp_path / "my_rewards.py:short")}])
    recipe["grpo"]["oversample"] = 3
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["reward"] > metrics["before_training"]["reward"] + 0.2
    assert metrics["train"]["steps"] == 16
    logs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    trained = [entry["groups_trained"] for entry in logs if "groups_trained" in entry]
    assert len(trained) == 8 and all(1 <= groups <= 2 for groups in trained)


def test_reference_guidance_teaches_a_label_the_model_never_samples(tiny_chat_llama, tmp_path, write_recipe, cli):
    """The untrained model never samples the exact label, so every group earns label_match 0 and plain GRPO has
    no gradient; with grpo.reference_guidance each such group gets the reference, and the model learns the labels."""
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"name": "label_match"}])
    recipe["grpo"] |= {"reference_guidance": True, "max_completion_length": 4}
    recipe["training"]["epochs"] = 2
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["before_training"]["rewards/label_match/mean"] == 0
    assert metrics["validation"]["rewards/label_match/mean"] >= 0.25
    logs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    guided = [entry["groups_guided"] for entry in logs if "groups_guided" in entry]
    assert guided[0] == 1 and guided[-1] < 0.5  # every group at first, few once the model samples the label


EQUAL_REWARDS = """
def equal(prompts, completions, **columns):
    return [1.0 for _ in completions]
"""


def test_grpo_stops_when_no_group_has_a_learning_signal_left(tiny_chat_llama, tmp_path, write_recipe, cli):
    """Replies that all earn the same reward give no gradient: the run ends after three such logs, complete,
    and says why, instead of spending its other steps."""
    (tmp_path / "my_rewards.py").write_text(EQUAL_REWARDS)
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"function": str(tmp_path / "my_rewards.py:equal")}])
    recipe["training"]["max_steps"] = 40
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped_early"]["step"] == 6  # three logs of two steps each
    assert "no learning signal" in metrics["stopped_early"]["reason"]
    assert "stopped:" in result.stdout and "no learning signal" in result.stdout
    assert "Training stopped early" in (run_dir / "README.md").read_text()


def test_a_reward_model_run_is_a_grpo_reward(tiny_chat_llama, tmp_path, write_recipe, cli):
    reward_run = tmp_path / "runs" / "reward"
    reward = reward_recipe(tiny_chat_llama, tmp_path, reward_run)
    reward["training"]["epochs"] = 1
    assert cli("train", write_recipe(reward)).exit_code == 0
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"run": str(reward_run)}, {"name": "label_match"}])
    recipe["training"]["max_steps"] = 2
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    rewards = json.loads((run_dir / "metrics.json").read_text())["rewards"]
    assert {"reward", "label_match"} <= rewards.keys() and len(rewards) == 3  # the total, the model, label_match


def test_grpo_after_an_sft_adapter_run_starts_from_its_weights_and_reports_the_chain(
    tiny_chat_llama, tmp_path, write_recipe, cli
):
    """The SFT run's adapter is merged before the new one trains: greedy held-out answers before GRPO
    are the SFT run's own after-training answers, and the card adds up both runs' emissions."""
    sft_dir = tmp_path / "runs" / "sft"
    sft = lora_sft_recipe(tiny_chat_llama, tmp_path / "sft-data", sft_dir)
    assert cli("train", write_recipe(sft, "sft.yaml")).exit_code == 0
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(sft_dir / "model", tmp_path, run_dir, [{"name": "label_match"}])
    recipe |= {"name": "grpo", "peft": {"method": "lora", "r": 8}, "generation": {"max_new_tokens": 4}}
    recipe["data"]["test"] = sft["data"]["test"]
    recipe["training"]["max_steps"] = 4
    result = cli("train", write_recipe(recipe, "grpo.yaml"))
    assert result.exit_code == 0, result.stderr
    sft_replies = json.loads((sft_dir / "metrics.json").read_text())["generation"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["before_training"]["generation"] == pytest.approx(sft_replies)
    assert metrics["before_training"]["generation"]["sentiment_accuracy"] > 0  # the SFT run answers with labels
    grams = [json.loads((run / "emissions.json").read_text())["emissions_g"] for run in (sft_dir, run_dir)]
    card = (run_dir / "README.md").read_text()
    assert f"emitted **{sum(grams):.3f} g CO2eq**: sft (sft, {grams[0]:.3f} g) → grpo (grpo" in card


SHORT_ECHO_REPLIES = """
def short(prompts, completions, **columns):
    assert set(columns["task"]) == {"echo"}, columns["task"]
    return [-len(completion[-1]["content"]) / 10 for completion in completions]
"""


def two_task_rows(count: int, seed: int) -> list[dict]:
    """Sentiment rows, every other one relabelled as an 'echo' task that a reward of its own scores."""
    rows = toy_chat_rows(count, seed)
    return [row | {"task": "echo"} if index % 2 else row for index, row in enumerate(rows)]


def test_grpo_on_a_mix_trains_each_task_on_its_own_reward(tiny_chat_llama, tmp_path, write_recipe, cli):
    """label_match scores the sentiment rows, a user function the echo rows (it fails the run if it sees
    another task's); both curves are kept, each the mean over its own rows."""
    (tmp_path / "my_rewards.py").write_text(SHORT_ECHO_REPLIES)
    run_dir = tmp_path / "runs" / "grpo"
    rewards = [
        {"name": "label_match", "tasks": ["sentiment"]},
        {"function": str(tmp_path / "my_rewards.py:short"), "tasks": ["echo"]},
    ]
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, rewards)
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "mix" / "train.jsonl", two_task_rows(48, 1)))
    recipe["data"]["validation"] = str(write_jsonl(tmp_path / "mix" / "validation.jsonl", two_task_rows(8, 2)))
    recipe["training"]["max_steps"] = 4
    path = write_recipe(recipe)
    validated = cli("validate", path)
    assert "rewards: label_match × 1 (sentiment), short × 1 (echo)" in validated.stdout, validated.stdout
    result = cli("train", path)
    assert result.exit_code == 0, result.stderr
    curves = json.loads((run_dir / "metrics.json").read_text())["rewards"]
    assert {"reward", "label_match", "short"} == curves.keys()
    assert 0 <= curves["label_match"]["first"] <= 1 and curves["short"]["first"] < 0  # each its own rows' mean


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("prompt_only", "data.train row 1: no reference reply for the label_match reward"),
        ("guidance_without_reference", "data.train row 1: no reference reply for the grpo.reference_guidance"),
        ("guidance_with_vllm", "reference_guidance replaces replies this process samples: set use_vllm false"),
        ("unknown_reward", "grpo.rewards.0.name"),
        ("unknown_scaling", "grpo.scale_rewards"),
        ("missing_function", "no_such.py"),
        ("bad_function", "returned 1 values for 4 completions"),
        ("groups", "must be a multiple of grpo.num_generations (3)"),
        ("reward_run", "a reward model is a `task: reward` run"),
        ("unknown_task", "grpo.rewards[0].tasks: no data.train row has task 'sentimnt' (the rows' tasks: sentiment)"),
        ("task_without_reward", "data.train row 2: task 'echo' is scored by no reward"),
        ("reward_model_tasks", "tasks: a reward model (run) scores every row"),
        ("validation_without_task", "grpo.rewards[0].tasks selects rows by their 'task' column, which data.validation"),
    ],
)
def test_grpo_bad_input_exits_2_in_one_line_and_writes_nothing(
    tiny_chat_llama, tmp_path, write_recipe, cli, change, message
):
    run_dir = tmp_path / "runs" / "bad"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"name": "label_match"}])
    if change == "prompt_only":
        rows = [{"prompt": row["messages"][0]["content"]} for row in toy_chat_rows(8)]
        recipe["data"]["train"] = str(write_jsonl(tmp_path / "prompts.jsonl", rows))
    elif change == "guidance_without_reference":
        rows = [{"prompt": row["messages"][0]["content"]} for row in toy_chat_rows(8)]
        recipe["data"]["train"] = str(write_jsonl(tmp_path / "prompts.jsonl", rows))
        recipe["grpo"] |= {"rewards": [{"name": "format", "pattern": "positive|negative"}], "reference_guidance": True}
    elif change == "guidance_with_vllm":
        recipe["grpo"] |= {"reference_guidance": True, "use_vllm": True}
    elif change == "unknown_reward":
        recipe["grpo"]["rewards"] = [{"name": "label_matches", "weight": 2}]
    elif change == "unknown_scaling":
        recipe["grpo"]["scale_rewards"] = "std"
    elif change == "missing_function":
        recipe["grpo"]["rewards"] = [{"function": "no_such.py:score"}]
    elif change == "bad_function":
        (tmp_path / "one.py").write_text("def one(prompts, completions, **columns):\n    return [1.0]\n")
        recipe["grpo"]["rewards"] = [{"function": str(tmp_path / "one.py:one")}]
    elif change == "groups":
        recipe["grpo"]["num_generations"] = 3
    elif change == "unknown_task":
        recipe["grpo"]["rewards"] = [{"name": "label_match", "tasks": ["sentimnt"]}]
    elif change == "task_without_reward":
        recipe["data"]["train"] = str(write_jsonl(tmp_path / "mix.jsonl", two_task_rows(8, 1)))
        recipe["grpo"]["rewards"] = [{"name": "label_match", "tasks": ["sentiment"]}]
    elif change == "validation_without_task":
        rows = [{"messages": row["messages"]} for row in toy_chat_rows(8, seed=2)]
        recipe["data"]["validation"] = str(write_jsonl(tmp_path / "untasked.jsonl", rows))
        recipe["grpo"]["rewards"] = [{"name": "label_match", "tasks": ["sentiment"]}]
    elif change == "reward_model_tasks":
        recipe["grpo"]["rewards"] = [{"run": "runs/reward", "tasks": ["sentiment"]}]
    else:
        sft_like = tmp_path / "runs" / "not-reward"
        (sft_like / "model").mkdir(parents=True)
        (sft_like / "recipe.yaml").write_text(json.dumps({**recipe, "output_dir": str(sft_like)}))
        recipe["grpo"]["rewards"] = [{"run": str(sft_like)}]
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2, result.stderr
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.error_lines
    assert not run_dir.exists() and not run_dir.with_name("bad.partial").exists()


def test_a_killed_grpo_run_resumes_with_its_whole_reward_curve_and_energy(tiny_chat_llama, tmp_path, write_recipe):
    from tests.training.test_resume import killed_then_resumed

    (tmp_path / "my_rewards.py").write_text(SHORT_REPLIES)
    run_dir = tmp_path / "runs" / "grpo"
    recipe = grpo_recipe(tiny_chat_llama, tmp_path, run_dir, [{"function": str(tmp_path / "my_rewards.py:short")}])
    recipe["training"] |= {"max_steps": 40, "eval_strategy": "steps", "eval_steps": 4, "save_steps": 4}
    killed_then_resumed(write_recipe(recipe), run_dir, step=4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = [step for step, _ in metrics["rewards"]["short"]["curve"]]
    assert steps[0] == 2 and steps == sorted(set(steps)) and steps[-1] == 40  # the first session's points kept
    assert json.loads((run_dir / "emissions.json").read_text())["sessions"] == 2


@pytest.mark.slow
def test_the_packaged_smollm2_gguf_loads_as_a_reward_model_with_its_weights():
    """A reward model starts from the chat checkpoint the recipes name, which ships as GGUF: the
    scoring model must keep the decoder's weights and add a one-output head."""
    from transformers import AutoModelForSequenceClassification

    from finetune_kit.chat import load_chat_model
    from finetune_kit.config.recipe import ModelConfig
    from finetune_kit.models.checkpoints import load_pretrained_model

    checkpoint = "HuggingFaceTB/SmolLM2-135M-Instruct"
    scorer, _ = load_pretrained_model(
        AutoModelForSequenceClassification, ModelConfig(checkpoint=checkpoint), num_labels=1
    )
    chat = load_chat_model(checkpoint)
    assert scorer.score.out_features == 1
    assert torch.equal(scorer.model.norm.weight, chat.model.model.norm.weight)
    assert scorer(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 1)
