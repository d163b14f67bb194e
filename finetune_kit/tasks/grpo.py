"""GRPO: reinforcement learning from rewards through TRL's `GRPOTrainer`. For each training prompt the
model samples `grpo.num_generations` replies; the recipe's rewards score them (built-in checks against
the row's reference reply, a reward-model run, a user's function), and the replies that beat their
group's mean are reinforced.

Prompts come from the layouts the toolkit reads: a conversation's turns before its last reply are
the prompt and that reply the reference, or a `prompt` column alone (with `data.reference_column`
when a reward needs one). Validation reports the mean reward of sampled replies before and after
training; data.test is answered and scored by generation as in SFT; metrics.json keeps each reward's
curve over training.
"""

from __future__ import annotations

import time
from functools import cache, cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
from datasets import Dataset, DatasetDict
from peft import PeftModel
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
)
from trl import GRPOConfig

from finetune_kit.config.rl import REFERENCE_REWARDS, GrpoRecipe, RewardSpec
from finetune_kit.data.conversations import Message, detect_format, prompt_turns, to_messages
from finetune_kit.errors import DataError, ModelError, RecipeError, UserError
from finetune_kit.models.building import load_trained
from finetune_kit.models.head import ModelHead
from finetune_kit.progress import SILENT, Progress
from finetune_kit.runs.folder import FinishedRun
from finetune_kit.tasks.base import EndsTrainingEarly, SplitNamedMetrics, Task, TrainerSetup
from finetune_kit.tasks.chat_decoder import ChatDecoder
from finetune_kit.tasks.dynamic_sampling import rows_with_signal, select_rows
from finetune_kit.tasks.held_out import ScoredReplies
from finetune_kit.tasks.reference_guidance import guided_replies
from finetune_kit.tasks.rewards import (
    RewardFunction,
    builtin_reward,
    check_rewards,
    for_tasks,
    user_reward,
)
from finetune_kit.tasks.shared_prompts import replies_until_end, shared_prompt_generate, shared_prompt_logps

PROBE_ROWS = 4  # training rows a user's reward function is tried on before training starts


def grpo_trainer(*, data_collator: None = None, **kwargs: Any) -> Trainer:
    """TRL's GRPOTrainer, built as the toolkit builds every trainer. It batches prompts itself, so the
    collator the runner offers is not used. Imported only now: TRL's GRPO module imports trackio,
    which reads TRACKIO_DIR once, and a run's tracking (`training.report_to`) sets it first."""
    del data_collator
    return grpo_trainer_class()(**kwargs)


@cache
def grpo_trainer_class() -> type[Trainer]:
    from trl import GRPOTrainer
    from trl.models import unwrap_model_for_generation

    class RewardedGRPOTrainer(SplitNamedMetrics, GRPOTrainer):
        """TRL's GRPOTrainer computing each group's prompt once, in sampling and in scoring, training only on
        the groups with a learning signal when it samples more prompts than a step trains on, and giving
        the groups that hold no reference reply the reference (`grpo.reference_guidance`)."""

        def __init__(self, *args: Any, oversample: int = 1, guidance_column: str | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.oversample = oversample
            self.guidance_column = guidance_column  # the rows' reference replies, when they guide groups
            self.references: list[str] = []  # the reference of each row being sampled for
            self.prompts_computed_once = False  # set by each sampling: how its prompts' tokens were counted

        def _generate_and_score_completions(self, inputs):
            """In training with `grpo.oversample` > 1: the sampled batch cut to the groups whose replies
            earned different rewards, as many as a step trains on (`dynamic_sampling`). The rows' references
            are kept for sampling to guide with."""
            if self.guidance_column is not None:
                self.references = [row[self.guidance_column] for row in inputs]
            batch = super()._generate_and_score_completions(inputs)
            if not self.model.training or self.oversample == 1:
                return batch
            total = batch["advantages"].size(0)
            keep_groups = total // self.oversample // self.num_generations
            rows = rows_with_signal(
                batch["advantages"], self.num_generations, keep_groups, self.args.steps_per_generation
            )
            kept = select_rows(batch, rows, total)
            loss_mask = kept["completion_mask"] * kept.get("tool_mask", 1)
            kept["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
            self._uncount_dropped_rows(batch, rows, total)
            self._metrics["train"]["groups_trained"].append(rows.numel() / self.num_generations)
            return kept

        def _uncount_dropped_rows(self, batch: dict[str, Any], rows: torch.Tensor, total: int) -> None:
            """Training tokens (tokens/s, MFU) leave out the rows sampled but not trained on: their
            replies, and their prompts as counted (once a group where it was computed once)."""
            dropped = torch.ones(total, dtype=torch.bool, device=batch["prompt_mask"].device)
            dropped[rows.to(dropped.device)] = False
            prompt_tokens = batch["prompt_mask"][dropped].sum()
            if self.prompts_computed_once:
                prompt_tokens = prompt_tokens // self.num_generations
            tokens = prompt_tokens + batch["completion_mask"][dropped].sum()
            self.state.num_input_tokens_seen -= self.accelerator.gather(tokens).sum().item()

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            """Sampling, timed in training: its tokens and seconds are logged per window (TRL averages
            `_metrics` over each), so the summary gives sampling speed beside the training's."""
            started = time.perf_counter()
            replies, logprobs = self._sample_replies(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
            if self.model.training:
                self._metrics["train"]["sampling/seconds"].append(time.perf_counter() - started)
                self._metrics["train"]["sampling/tokens"].append(float(sum(map(len, replies))))
            if self.model.training and self.guidance_column is not None:
                replies, guided = guided_replies(
                    replies,
                    self.references,
                    num_generations,
                    self.processing_class,
                    self.processing_class.eos_token_id,
                    self.max_completion_length,
                )
                self._metrics["train"]["groups_guided"].append(guided * num_generations / len(replies))
            return replies, logprobs

        def _sample_replies(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images):
            """Transformers generation of text prompts prefills each group's prompt once; vLLM,
            continuous batching, images and sharded models take TRL's own path."""
            if (
                self.use_vllm
                or self.use_transformers_continuous_batching
                or images
                or multimodal_fields
                or self.is_deepspeed_enabled
                or self.is_fsdp_enabled
            ):
                self.prompts_computed_once = False
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )
            prompts = self.processing_class.pad(
                {"input_ids": prompt_ids},
                padding_side="left",
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_tensors="pt",
            )
            prompts = prompts.to(self.accelerator.device)
            with unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model:
                generated = shared_prompt_generate(
                    model, prompts["input_ids"], prompts["attention_mask"], self.generation_config
                )
            self.prompts_computed_once = not self.args.activation_checkpointing
            if self.model.training and self.prompts_computed_once:
                # TRL counts every row's prompt; each group's was computed once (tokens/s and MFU follow)
                repeated = sum(map(len, prompt_ids)) - sum(map(len, {tuple(ids) for ids in prompt_ids}))
                counts = self.accelerator.gather(torch.tensor([repeated], device=self.accelerator.device))
                self.state.num_input_tokens_seen -= counts.sum().item()
            return replies_until_end(generated[:, prompts["input_ids"].size(1) :], self.eos_token_ids), None

        def _get_per_token_logps_and_entropies(
            self,
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            **images,
        ):
            """Text batches run each group's prompt once (`shared_prompts`); images, a MoE router's
            loss and models that keep no cache take TRL's row-by-row forward."""
            if not compute_aux_loss and all(value is None for value in images.values()):
                with self.accelerator.autocast():
                    shared = shared_prompt_logps(
                        model, input_ids, attention_mask, logits_to_keep, compute_entropy, batch_size
                    )
                if shared is not None:
                    return (*shared, None)
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **images,
            )

    return RewardedGRPOTrainer


class RewardCurves(TrainerCallback):
    """Each reward's mean over training, read at the end from the trainer's log history (which a
    resumed run restores from its checkpoint, so no session's points are lost)."""

    def __init__(self) -> None:
        self.curves: dict[str, list[list[float]]] = {}

    def on_train_end(self, args, state, control, **kwargs):
        self.curves = {}
        for entry in state.log_history:  # TRL logs the total as `reward`, each function as `rewards/<name>/mean`
            for key, value in entry.items():
                # None: no row of the window was this reward's (one scoped to some tasks of a mix)
                if value is not None and (key == "reward" or (key.startswith("rewards/") and key.endswith("/mean"))):
                    name = key.removeprefix("rewards/").removesuffix("/mean")
                    self.curves.setdefault(name, []).append([entry["step"], round(value, 4)])

    def summary(self) -> dict[str, Any]:
        return {name: {"first": c[0][1], "last": c[-1][1], "curve": c} for name, c in self.curves.items()}


class SamplingSpeed(TrainerCallback):
    """Generated tokens per second of sampling over training, from the per-window means the trainer
    logs (every window samples as many batches, so the ratio of their sums is the run's rate). Read
    from the log history, so a resumed run counts its earlier sessions."""

    def __init__(self) -> None:
        self.tokens = self.seconds = 0.0

    def on_train_end(self, args, state, control, **kwargs):
        logged = [entry for entry in state.log_history if "sampling/seconds" in entry]
        self.tokens = sum(entry["sampling/tokens"] for entry in logged)
        self.seconds = sum(entry["sampling/seconds"] for entry in logged)

    def summary(self) -> dict[str, Any]:
        if not self.seconds:
            return {}
        return {"sampling": {"tokens_per_second": round(self.tokens / self.seconds, 1)}}


class StopWithoutRewardSignal(EndsTrainingEarly):
    """Without a KL term, a group whose replies all earned the same reward has no advantage and gives no
    gradient. Once every group of `windows` logging windows in a row was like that, the policy samples one
    reply per prompt (collapsed, or right on every prompt): the steps left would spend energy and change
    nothing. Read from the log history, so a resumed run counts the windows of its earlier sessions."""

    def __init__(self, windows: int) -> None:
        self.windows = windows

    def on_log(self, args, state, control, logs=None, **kwargs):
        shares = [
            entry["frac_reward_zero_std"]
            for entry in state.log_history
            if "loss" in entry and "frac_reward_zero_std" in entry
        ]
        recent = shares[-self.windows :]
        if len(recent) < self.windows or min(recent) < 1.0 or state.global_step >= state.max_steps:
            return
        control.should_training_stop = True
        self.stopped = {
            "reason": f"no learning signal: every group's replies earned equal rewards for {self.windows} logs "
            "in a row (with a low reward the policy collapsed: lower training.learning_rate or raise grpo.temperature)",
            "step": state.global_step,
        }


class GrpoTask(ChatDecoder, ScoredReplies, Task):
    name: ClassVar[str] = "grpo"
    pipeline_tag: ClassVar[str] = "text-generation"
    main_metric: ClassVar[str] = "reward"  # the mean total reward of replies sampled for data.validation
    evaluate_before_training: ClassVar[bool] = True
    sample_unit: ClassVar[str] = "replies"
    grams_per_point: ClassVar[bool] = True
    recipe: GrpoRecipe

    def __init__(self, recipe: GrpoRecipe) -> None:
        super().__init__(recipe)
        self.curves = RewardCurves()
        self.sampling = SamplingSpeed()

    def inspect(self, data: DatasetDict) -> None:
        for split_name, split in data.items():
            if split_name != "test":
                self.inspect_eval(split, f"data.{split_name}")
        if "test" in data:
            self.check_held_out(data["test"])
        if self.recipe.grpo.use_vllm:
            _require_vllm()
        self._check_reward_tasks(data)
        probe = data["train"].select(range(min(PROBE_ROWS, len(data["train"]))))
        self._check_functions(self.prompt_rows(probe, "data.train"))

    def _check_reward_tasks(self, data: DatasetDict) -> None:
        """Rewards given `tasks` select rows by their task: the rows sampled from (train, validation) need one,
        each named task must occur in train, and when every reward is scoped, every row's task needs a reward
        (a row no reward scores teaches nothing)."""
        scoped = {index: spec.tasks for index, spec in enumerate(self.recipe.grpo.rewards) if spec.tasks}
        if not scoped:
            return
        column = self.recipe.generation.group_column  # the column held-out scores are grouped by, too
        splits = {f"data.{name}": split for name, split in data.items() if name != "test"}
        for where, split in splits.items():
            if column not in split.column_names:
                raise DataError(
                    f"grpo.rewards[{next(iter(scoped))}].tasks selects rows by their '{column}' column, which "
                    f"{where} lacks: give each row a '{column}' (or set generation.group_column) or drop tasks"
                )
        present = set(data["train"][column])
        for index, tasks in scoped.items():
            missing = [task for task in tasks if task not in present]
            if missing:
                raise DataError(
                    f"grpo.rewards[{index}].tasks: no data.train row has task '{missing[0]}' "
                    f"(the rows' tasks: {', '.join(sorted(map(str, present)))})"
                )
        if len(scoped) < len(self.recipe.grpo.rewards):
            return
        covered = {task for tasks in scoped.values() for task in tasks}
        for where, split in splits.items():
            for number, task in enumerate(split[column], 1):
                if task not in covered:
                    raise DataError(
                        f"{where} row {number}: task '{task}' is scored by no reward (the rewards' tasks: "
                        f"{', '.join(sorted(covered))}); add a reward for it or drop its rows"
                    )

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        self.prompt_rows(rows, where)

    def prompt_rows(self, rows: Dataset, where: str) -> list[dict[str, Any]]:
        """Each row as a conversational prompt, its reference reply (None without one) and its other
        columns (rewards read them); a reference reward with a row lacking a reference is named."""
        data = self.recipe.data
        reference_column = data.reference_column
        prompt_only = "prompt" in rows.column_names and "completion" not in rows.column_names
        layout = None if prompt_only else detect_format(rows.column_names, data.conversation_format, where)
        needs_reference = [f"{s.name} reward" for s in self.recipe.grpo.rewards if s.name in REFERENCE_REWARDS]
        if self.recipe.grpo.reference_guidance:
            needs_reference.append("grpo.reference_guidance")
        examples = []
        for number, row in enumerate(rows, 1):
            at = f"{where} row {number}"
            if layout is None:
                prompt, reference = prompt_turns(row["prompt"], data.system_prompt, at), row.get(reference_column)
            else:
                prompt, reference = _split_last_reply(to_messages(row, layout, data.system_prompt, at))
            if reference is None and needs_reference:
                raise DataError(
                    f"{at}: no reference reply for the {needs_reference[0]}; give each row an assistant "
                    f"reply or a '{reference_column}' column"
                )
            extra = {k: v for k, v in row.items() if isinstance(v, str | int | float | bool) and k != "prompt"}
            examples.append({**extra, "prompt": prompt, reference_column: reference})
        return examples

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Prompts with their columns: GRPOTrainer applies the template and samples the replies."""
        del tokenizer
        splits = {name: split for name, split in data.items() if name != "test"}  # test is scored by generation
        return DatasetDict(
            {name: Dataset.from_list(self.prompt_rows(split, f"data.{name}")) for name, split in splits.items()}
        )

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> None:
        del tokenizer
        return None

    def trainer_setup(self) -> TrainerSetup:
        options = self.recipe.grpo
        functions, tokenizers = zip(*self.rewards, strict=True)
        arguments = {
            "num_generations": options.num_generations,
            "beta": options.beta,
            "temperature": options.temperature,
            "max_completion_length": options.max_completion_length,
            "loss_type": options.loss_type,
            "scale_rewards": options.scale_rewards,
            "use_vllm": options.use_vllm,
            "disable_dropout": options.disable_dropout,
            "reward_weights": [spec.weight for spec in options.rewards],
            "prediction_loss_only": True,
            "train_sampling_strategy": "random",  # GRPO repeats each prompt for its group: no length groups
            # sampled a step: oversample times what it trains on (the trainer keeps training.batch_size replies)
            "per_device_train_batch_size": self.recipe.training.batch_size * options.oversample,
        }
        own = {
            "reward_funcs": list(functions),
            "reward_processing_classes": list(tokenizers),
            "oversample": options.oversample,
            "guidance_column": self.recipe.data.reference_column if options.reference_guidance else None,
        }
        return TrainerSetup(grpo_trainer, GRPOConfig, arguments, remove_unused_columns=False, trainer_kwargs=own)

    def training_callbacks(self, write_log: Any) -> list[TrainerCallback]:
        del write_log
        windows = self.recipe.grpo.stop_without_signal
        stops = [StopWithoutRewardSignal(windows)] if windows and self.recipe.grpo.beta == 0 else []
        return [self.curves, self.sampling, *stops]

    def final_results(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DatasetDict,
        progress: Progress = SILENT,
    ) -> dict[str, Any]:
        results = super().final_results(model, tokenizer, data, progress)
        return results | {"rewards": self.curves.summary()} | self.sampling.summary()

    def card_facts(self) -> dict[str, Any]:
        options = self.recipe.grpo
        rewards = ", ".join(
            f"{spec.label} × {spec.weight:g}" + (f" ({', '.join(spec.tasks)})" if spec.tasks else "")
            for spec in options.rewards
        )
        return {"rewards": rewards, "replies per prompt": options.num_generations, "KL weight (beta)": options.beta}

    @cached_property
    def rewards(self) -> list[tuple[RewardFunction | PreTrainedModel, PreTrainedTokenizerBase | None]]:
        """Each reward as TRL takes it: a function, or a reward model with its tokenizer."""
        column, task_column = self.recipe.data.reference_column, self.recipe.generation.group_column
        built: list[tuple[Any, Any]] = []
        for index, spec in enumerate(self.recipe.grpo.rewards):
            if spec.run is not None:
                built.append(_reward_model(spec, f"grpo.rewards[{index}].run"))
            elif spec.function is not None:
                built.append((for_tasks(user_reward(spec, Path.cwd()), spec.tasks, task_column), None))
            else:
                built.append((for_tasks(builtin_reward(spec, column), spec.tasks, task_column), None))
        return built

    def _check_functions(self, probe: list[dict[str, Any]]) -> None:
        """The reward functions, tried on a few training rows (their references as replies), so a
        function that returns the wrong thing stops the run before anything is written."""
        column = self.recipe.data.reference_column
        functions = [function for function, tokenizer in self.rewards if tokenizer is None]
        replies = [[{"role": "assistant", "content": row[column] or ""}] for row in probe]
        columns = {key: [row[key] for row in probe] for key in probe[0] if key != "prompt"}
        check_rewards(functions, [row["prompt"] for row in probe], replies, columns)


def _split_last_reply(messages: list[Message]) -> tuple[list[Message], str]:
    last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def _reward_model(spec: RewardSpec, where: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A `task: reward` run's model (an adapter merged into its base) and tokenizer, frozen."""
    run_dir = Path(str(spec.run)).expanduser()
    try:
        run = FinishedRun.open(run_dir)
    except UserError as error:
        raise ModelError(f"{where}: {error}") from None
    task = run.recipe().task
    if task != "reward":
        raise ModelError(f"{where}: {run_dir} is a '{task}' run; a reward model is a `task: reward` run")
    model = load_trained(ModelHead(AutoModelForSequenceClassification), run.model_dir)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.requires_grad_(False)
    return model.eval(), AutoTokenizer.from_pretrained(str(run.model_dir))


def _require_vllm() -> None:
    """vLLM generation needs a CUDA GPU and the vllm package: one line otherwise, before any work."""
    if not torch.cuda.is_available():
        raise RecipeError("grpo.use_vllm: vLLM generates on a CUDA GPU and none is visible; remove it to generate here")
    try:
        import vllm  # noqa: F401  (only checked for: TRL imports it itself)
    except ImportError:
        raise RecipeError("grpo.use_vllm: the vllm package is not installed (pip install vllm)") from None
