"""`finetune-kit` with TRL's stock `GRPOTrainer` in place of the toolkit's: the peer that
`bench/grpo_prompt_sharing.py` runs. Everything else (recipe, data, model, adapter, rewards,
arguments) is the toolkit's; the toolkit's trainer differs only by computing each group's prompt
once (`finetune_kit.tasks.shared_prompts`).

    python bench/stock_grpo.py train RECIPE [--set ...]
"""

from __future__ import annotations

from functools import cache

from trl import GRPOTrainer

import finetune_kit.tasks.grpo as grpo
from finetune_kit.cli import main
from finetune_kit.tasks.base import SplitNamedMetrics


@cache
def stock_trainer_class() -> type[GRPOTrainer]:
    class StockGRPOTrainer(SplitNamedMetrics, GRPOTrainer):
        """TRL's trainer with the toolkit's metric names, as the toolkit's trainer has them."""

        def __init__(self, *args, oversample: int = 1, **kwargs) -> None:
            if oversample != 1:
                raise SystemExit("stock_grpo: TRL's trainer trains every group it samples: leave grpo.oversample at 1")
            super().__init__(*args, **kwargs)

    return StockGRPOTrainer


if __name__ == "__main__":
    grpo.grpo_trainer_class = stock_trainer_class
    main()
