"""Few-shot classification with SetFit (`task: setfit`): the run's sentence encoder learns from pairs of
training texts (SetFit's own pair sampler: same label similar, different labels apart), then a
logistic-regression head learns the labels from its embeddings. The saved model is a SetFit folder
(`SetFitModel.from_pretrained` loads it); predictions have the classification task's form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
from setfit import SetFitModel, get_templated_dataset
from setfit.modeling import MODEL_HEAD_NAME
from setfit.sampler import ContrastiveDataset
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.embedding import SetFitRecipe
from finetune_kit.data import require_columns
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import Task, TrainerSetup
from finetune_kit.tasks.class_labels import ClassLabels
from finetune_kit.tasks.sentence_pipeline import ENCODE_BATCH, SentenceTrainer, sentence_model, sentence_trainer_setup

EVALUATION_PAIRS_PER_TEXT = 1  # held-out pairs only give the loss beside the accuracy: a few suffice

# Gives the classifier head for the encoder as it is now: fitted on the few-shot texts during training,
# the run's saved head when a finished run is evaluated.
HeadFor = Callable[[SentenceTransformer], SetFitModel]


class SetFitTask(ClassLabels, Task):
    name: ClassVar[str] = "setfit"
    pipeline_tag: ClassVar[str] = "text-classification"
    library_name: ClassVar[str] = "setfit"
    main_metric: ClassVar[str] = "accuracy"
    recipe: SetFitRecipe

    def __init__(self, recipe: SetFitRecipe) -> None:
        super().__init__(recipe)
        self.labels: list[str] = []
        self.texts: dict[str, tuple[list[str], list[int]]] = {}  # split → its texts and label ids, from `inspect`
        self._classifier: tuple[Any, SetFitModel] | None = None  # predict's, per model: loaded once

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModel, self.recipe.peft_task_type)

    # -- data ---------------------------------------------------------------------------------
    def inspect(self, data: DatasetDict) -> None:
        cfg = self.recipe.data
        require_columns(data, {"data.text_column": cfg.text_column, "data.label_column": cfg.label_column})
        self.learn_labels(data["train"])
        for split_name, split in data.items():
            self.inspect_eval(split, f"data.{split_name}")
        self.texts = {name: self._split_texts(name, split) for name, split in data.items()}

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        cfg = self.recipe.data
        require_columns(DatasetDict(eval=rows), {"text_column": cfg.text_column, "label_column": cfg.label_column})
        for row, text in enumerate(rows[cfg.text_column], start=1):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: row {row} has no text in column '{cfg.text_column}' (got {text!r})")
        self.check_labels(rows, where)

    def inspect_file_to_evaluate(self, rows: Dataset, where: str) -> None:
        self.inspect_eval(rows, where)
        self.texts = {"validation": self._texts_of(rows)}  # `eval` scores the file as training scored validation

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Each split as SetFit's pairs (sentence_1, sentence_2, label: 1 same class, 0 not)."""
        del tokenizer
        options = self.recipe.setfit
        return DatasetDict(
            {
                name: _pairs(
                    *self._split_texts(name, split),
                    options.num_iterations if name == "train" else EVALUATION_PAIRS_PER_TEXT,
                    options.sampling_strategy,
                )
                for name, split in data.items()
            }
        )

    def _texts_of(self, rows: Dataset) -> tuple[list[str], list[int]]:
        cfg = self.recipe.data
        return list(rows[cfg.text_column]), self.label_ids(rows[cfg.label_column])

    def _split_texts(self, name: str, rows: Dataset) -> tuple[list[str], list[int]]:
        """A split's texts and label ids; the train split's with the templated examples after its rows."""
        texts, ids = self._texts_of(rows)
        options = self.recipe.setfit
        if name != "train" or not options.templated_examples:
            return texts, ids
        if all(label.lstrip("-").isdigit() for label in self.labels):
            raise DataError(
                f"setfit.templated_examples: the labels are numbers ({', '.join(self.labels)}), which say nothing "
                "to the encoder; name them with data.label_names, or set setfit.templated_examples: 0"
            )
        made = get_templated_dataset(
            candidate_labels=self.labels, sample_size=options.templated_examples, template=options.template
        )
        return texts + list(made["text"]), ids + list(made["label"])

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> None:
        return None

    def input_columns(self) -> list[str]:
        return [self.recipe.data.text_column]

    # -- training -----------------------------------------------------------------------------
    def trainer_setup(self) -> TrainerSetup:
        return sentence_trainer_setup(self.trainer)

    def trainer(
        self,
        *,
        model: PreTrainedModel,  # SetFit refuses an adapter (SetFitRecipe)
        args: Any,
        train_dataset: Dataset | None,
        eval_dataset: Dataset | None,
        callbacks: list,
        **unused: Any,
    ) -> SetFitTrainer:
        """The encoder trains on pairs; every evaluation fits the head on the current embeddings of the
        training texts (as the saved model's is) and scores the split's accuracy with it."""
        del unused
        training = "train" in self.texts
        if training:  # the label names go into the encoder's config, where a finished run reads them back
            model.config.update(self.label_config())
        sentence = sentence_model(model, self.recipe.training.max_length)
        head_for = self._fitted_head if training else self._saved_head(model)
        evaluators = {
            split: ClassifierEvaluator(head_for, *self.texts[split], self.labels)
            for split in ("validation", "test")
            if split in self.texts
        }
        return SetFitTrainer(
            head_for=head_for,
            evaluators=evaluators,
            model=sentence,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            loss=CosineSimilarityLoss(sentence),
            callbacks=callbacks,
        )

    def _fitted_head(self, sentence: SentenceTransformer) -> SetFitModel:
        classifier = SetFitModel(model_body=sentence, model_head=LogisticRegression(), labels=self.labels)
        texts, ids = self.texts["train"]
        classifier.fit(texts, ids, num_epochs=1, show_progress_bar=False)
        return classifier

    def _saved_head(self, model: PreTrainedModel) -> HeadFor:
        """The head a finished run saved beside its encoder, around the encoder already loaded."""
        head = joblib.load(Path(model.name_or_path) / MODEL_HEAD_NAME)
        return lambda sentence: SetFitModel(model_body=sentence, model_head=head, labels=self.labels)

    # -- inference ----------------------------------------------------------------------------
    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """Each text's label, its probability, and every label's probability, most likely first."""
        del tokenizer
        if self._classifier is None or self._classifier[0] is not model:
            sentence = sentence_model(model, self.recipe.training.max_length)
            self._classifier = (model, self._saved_head(model)(sentence))
        texts = list(rows[self.recipe.data.text_column])
        probabilities = self._classifier[1].predict_proba(texts, batch_size=ENCODE_BATCH, as_numpy=True)
        return [self.ranked(text, row) for text, row in zip(texts, probabilities, strict=True)]

    def card_metadata(self) -> dict[str, Any]:
        return {"tags": ["setfit", "sentence-transformers", "text-classification"]}

    def card_facts(self) -> dict[str, Any]:
        facts = super().card_facts()
        if shots := self.recipe.data.shots_per_class:
            facts["shots_per_class"] = shots
        if count := self.recipe.setfit.templated_examples:
            facts["templated_examples"] = f"{count} per label, {self.recipe.setfit.template!r}"
        return facts


def _pairs(texts: list[str], ids: list[int], per_text: int, strategy: str) -> Dataset:
    sampler = ContrastiveDataset(texts, ids, multilabel=False, num_iterations=per_text, sampling_strategy=strategy)
    pairs = list(sampler)
    return Dataset.from_dict(
        {
            "sentence_1": [pair["sentence_1"] for pair in pairs],
            "sentence_2": [pair["sentence_2"] for pair in pairs],
            "label": [float(pair["label"]) for pair in pairs],
        }
    )


class ClassifierEvaluator(SentenceEvaluator):
    """Accuracy and macro-F1 of the head on one split's texts, with the encoder as it is now."""

    def __init__(self, head_for: HeadFor, texts: list[str], ids: list[int], labels: list[str]) -> None:
        super().__init__()
        self.head_for, self.texts, self.ids, self.labels = head_for, texts, ids, labels
        self.primary_metric = "accuracy"

    def __call__(self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1):
        del output_path, epoch, steps
        predicted = self.head_for(model).predict(self.texts, batch_size=ENCODE_BATCH, as_numpy=True)
        predicted = [self.labels.index(str(label)) if isinstance(label, str) else int(label) for label in predicted]
        class_ids = list(range(len(self.labels)))
        per_class = f1_score(self.ids, predicted, labels=class_ids, average=None, zero_division=0)
        metrics = {"accuracy": float(accuracy_score(self.ids, predicted)), "f1_macro": float(np.mean(per_class))}
        metrics |= {f"f1_{name}": float(score) for name, score in zip(self.labels, per_class, strict=True)}
        return metrics


class SetFitTrainer(SentenceTrainer):
    """Saves a SetFit model: the encoder with the head fitted on its final embeddings of the training texts."""

    def __init__(self, *, head_for: HeadFor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.head_for = head_for

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        folder = Path(output_dir or self.args.output_dir)
        self.head_for(self.model).save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)  # SetFit's card: the run's card is the one published
