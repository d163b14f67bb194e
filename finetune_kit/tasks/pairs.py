"""Preference pairs as preference tuning and reward models read them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datasets import Dataset

from finetune_kit.config.chat import PreferenceRecipe
from finetune_kit.config.rl import RewardRecipe
from finetune_kit.data.conversations import Message, as_turns, check_messages, prompt_turns
from finetune_kit.errors import DataError


class PairRows:
    """Reads prompt / chosen / rejected rows (each text or a list of messages) as checked
    conversational pairs, with data.system_prompt put first in prompts without a system turn."""

    recipe: PreferenceRecipe | RewardRecipe

    def pairs(self, rows: Dataset, where: str) -> Iterator[dict[str, list[Message]]]:
        """Each row as conversational prompt / chosen / rejected, checked; `where` names it in errors."""
        for number, row in enumerate(rows, 1):
            at = f"{where} row {number}"
            prompt = self.prompt_turns(row["prompt"], at)
            chosen, rejected = (as_turns(row[c], "assistant", f"{at}, {c}") for c in ("chosen", "rejected"))
            if chosen == rejected:
                raise DataError(f"{at}: chosen and rejected are the same; a pair must differ to teach a preference")
            check_messages(prompt + chosen, at)
            yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}

    def prompt_turns(self, value: Any, at: str) -> list[Message]:
        return prompt_turns(value, self.recipe.data.system_prompt, at)
