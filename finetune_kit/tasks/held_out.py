"""Held-out prompts scored by generation, before and after training: each test conversation up to
its last reply is a prompt, that reply the reference, and the model's own replies are scored per
group with the metric each row names. Shared by instruction tuning and preference tuning, so a user
sees what each stage did to task quality."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from datasets import Dataset, DatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.recipe import Recipe
from finetune_kit.data.conversations import Message, detect_format, to_messages
from finetune_kit.errors import DataError
from finetune_kit.progress import SILENT, Progress
from finetune_kit.tasks.base import SamplesDuringTraining
from finetune_kit.tasks.generation import reply_texts
from finetune_kit.tasks.generation_metrics import SCORERS

REPLIES_SHOWN = 2  # per group of held-out prompts, in metrics.json and the card


class ScoredReplies(SamplesDuringTraining):
    """For a task whose recipe has `generation: HeldOutGeneration` and whose data.test holds
    conversations (any layout of `finetune_kit.data.conversations`)."""

    recipe: Recipe

    def conversations(self, rows: Dataset, where: str) -> Iterator[list[Message]]:
        data = self.recipe.data
        layout = detect_format(rows.column_names, getattr(data, "conversation_format", "auto"), where)
        for number, row in enumerate(rows, 1):
            yield to_messages(row, layout, getattr(data, "system_prompt", None), f"{where} row {number}")

    def check_held_out(self, rows: Dataset) -> None:
        """Every test row converts and names a known metric (or the recipe names one for all)."""
        for _ in self.conversations(rows, "data.test"):
            pass
        settings = self.recipe.generation
        if settings.metric is not None:
            return
        if settings.metric_column not in rows.column_names:
            raise DataError(
                f"data.test: column '{settings.metric_column}' not found; held-out prompts need a metric: "
                f"set generation.metric ({', '.join(SCORERS)}) or generation.metric_column"
            )
        for number, metric in enumerate(rows[settings.metric_column], 1):
            if metric not in SCORERS:
                raise DataError(
                    f"data.test row {number}: unknown metric '{metric}' in column '{settings.metric_column}'; "
                    f"metrics are {', '.join(SCORERS)}"
                )

    def training_callbacks(self, write_log: Callable[[dict[str, Any]], None]) -> list:
        del write_log
        return []  # scored before and after training: during it, generation would cost as much again

    def results_before_training(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DatasetDict,
        progress: Progress = SILENT,
    ) -> dict[str, Any]:
        if "test" not in data:
            return {}
        return {"generation": self._held_out_scores(model, tokenizer, data["test"], progress)[0]}

    def final_results(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DatasetDict,
        progress: Progress = SILENT,
    ) -> dict[str, Any]:
        if "test" not in data:
            return {}
        scores, replies = self._held_out_scores(model, tokenizer, data["test"], progress)
        return {"generation": scores, "replies": replies}

    def _held_out_scores(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset, progress: Progress
    ) -> tuple[dict[str, float], list[dict[str, str]]]:
        settings = self.recipe.generation
        prompts, references = [], []
        for messages in self.conversations(rows, "data.test"):
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            prompts.append(messages[:last])
            references.append(messages[last]["content"])
        metrics = [settings.metric] * len(rows) if settings.metric else rows[settings.metric_column]
        groups = rows[settings.group_column] if settings.group_column in rows.column_names else metrics
        with progress.phase("generate", total=len(prompts), unit="held-out prompts"):
            replies = reply_texts(model, tokenizer, prompts, settings, settings.batch_size, groups=list(groups))
        scored: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, key in enumerate(zip(groups, metrics, strict=True)):
            scored[key].append(index)
        scores, shown = {}, []
        for (group, metric), indexes in sorted(scored.items()):
            name = metric if group == metric else f"{group}_{metric}"
            scores[name] = SCORERS[metric]([replies[i] for i in indexes], [references[i] for i in indexes])
            shown += [
                {"group": group, "prompt": prompts[i][-1]["content"], "reference": references[i], "reply": replies[i]}
                for i in indexes[:REPLIES_SHOWN]
            ]
        return scores, shown
