"""What the sentence-transformers tasks share (embedding models, SetFit): the run's encoder inside a
sentence-transformers pipeline, and the Trainer that scores each split with its own evaluator."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peft import PeftModel, set_peft_model_state_dict
from peft.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import EvalLoopOutput

from finetune_kit.tasks.base import TrainerSetup

ENCODE_BATCH = 32


def sentence_trainer_setup(trainer: Callable[..., Trainer], batch_sampler: str = "batch_sampler") -> TrainerSetup:
    """sentence-transformers' arguments and trainer; its collator tokenizes each batch and names the inputs per
    column, so the speed's tokens are counted by `SentenceTrainer`, and batches come in random order."""
    return TrainerSetup(
        trainer_class=trainer,
        arguments_class=SentenceTransformerTrainingArguments,
        arguments={
            "batch_sampler": batch_sampler,
            "train_sampling_strategy": "random",
            "include_num_input_tokens_seen": "no",
        },
    )


def sentence_model(model: PreTrainedModel | PeftModel, max_length: int) -> SentenceTransformer:
    """`model` as the encoder of a sentence-transformers pipeline: the pooling and normalization its folder
    declares (`modules.json`; mean pooling when it has none), around this very model, so that training
    updates the run's weights and adapter."""
    source = model.get_base_model() if isinstance(model, PeftModel) else model
    sentence = SentenceTransformer(str(Path(source.name_or_path)), device=str(source.device))
    sentence[0].model = model
    sentence.max_seq_length = max_length
    return sentence


class SentenceTrainer(SentenceTransformerTrainer):
    """Scores each split with its own evaluator (validation during training and before it, test at the end),
    names the metrics as users read them (`ndcg@10`, `spearman`) and counts real tokens for the speed."""

    def __init__(self, *, evaluators: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluators = evaluators

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        self.evaluator = self.evaluators.get("test" if metric_key_prefix == "test" else "validation")
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> EvalLoopOutput:
        output = super().evaluation_loop(*args, **kwargs)
        metrics = {plain_metric_name(key): value for key, value in output.metrics.items()}
        return output._replace(metrics=metrics)  # renamed before the log, the console and best-model choice see them

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        masks = [value for key, value in inputs.items() if key.endswith("attention_mask")]
        self.state.num_input_tokens_seen += int(sum(int(mask.sum()) for mask in masks))
        return super().training_step(model, inputs, num_items_in_batch)

    def _load_from_checkpoint(self, checkpoint_path: str) -> None:
        """A resume or the best checkpoint: an adapter run's checkpoints hold the adapter alone, which
        sentence-transformers' loader (a whole model) cannot read."""
        encoder = self.model[0].auto_model
        if isinstance(encoder, PeftModel):
            set_peft_model_state_dict(encoder, load_file(Path(checkpoint_path) / SAFETENSORS_WEIGHTS_NAME))
            return
        super()._load_from_checkpoint(checkpoint_path)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        # sentence-transformers writes its own card into the model folder; the run's card is the one published
        (Path(output_dir or self.args.output_dir) / "README.md").unlink(missing_ok=True)


def plain_metric_name(key: str) -> str:
    """`eval_cosine_ndcg@10` → `eval_ndcg@10`, `test_spearman_cosine` → `test_spearman`: one similarity is used."""
    return re.sub(r"_cosine$", "", key.replace("_cosine_", "_"))
