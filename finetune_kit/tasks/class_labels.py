"""A label column naming one class per text (classification, SetFit): the classes are learned from the
train split (or named by `data.label_names`), and every other split's labels are checked against them."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from finetune_kit.errors import DataError
from finetune_kit.tasks.base import LabelledHead


class ClassLabels(LabelledHead):
    """For recipes whose data has `label_column` and `label_names` (ClassificationData and its kin)."""

    def learn_labels(self, train: Dataset, validation: Dataset | None = None) -> None:
        """The classes, in id order: `data.label_names`, else the train labels sorted (numbers as numbers); with
        `validation` (when train is a stream's first rows), its labels too."""
        names = {self.label_name(value, "data.train", row) for row, value in self._labels_of(train)}
        if validation is not None:
            names |= {self.label_name(value, "data.validation", row) for row, value in self._labels_of(validation)}
        cfg = self.recipe.data
        self.labels = list(cfg.label_names) if cfg.label_names is not None else sorted(names, key=_natural_key)
        if len(self.labels) < 2:
            raise DataError(
                f"data.label_column: the train data has only one label ({self.labels[0]!r}); "
                f"{self.name} needs at least two"
            )

    def check_labels(self, rows: Dataset, where: str) -> None:
        """Every label of `rows` is one the model knows."""
        known = set(self.labels)
        for row, value in self._labels_of(rows):
            name = self.label_name(value, where, row)
            if name not in known:
                raise DataError(
                    f"{where}: row {row} has label {value!r}, which the train data does not have; "
                    f"labels are: {', '.join(self.labels)}"
                )

    def ranked(self, text: str, probabilities: Any) -> dict[str, Any]:
        """One prediction as `predict` prints it: the label, its probability, every label's, most likely first."""
        order = probabilities.argsort()[::-1]
        return {
            "text": text,
            "label": self.labels[order[0]],
            "score": round(float(probabilities[order[0]]), 6),
            "scores": {self.labels[i]: round(float(probabilities[i]), 6) for i in order},
        }

    def label_ids(self, values: list[Any]) -> list[int]:
        ids = {name: i for i, name in enumerate(self.labels)}
        return [ids[self.label_name(value, "data", 0)] for value in values]

    def label_name(self, value: Any, where: str, row: int) -> str:
        names = self.recipe.data.label_names
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where}: row {row} has no label in column '{self.recipe.data.label_column}'")
        if names is not None and isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(names):
                raise DataError(f"{where}: row {row} has label {value}, outside data.label_names (0..{len(names) - 1})")
            return names[value]
        return str(value)

    def _labels_of(self, rows: Dataset) -> list[tuple[int, Any]]:
        return list(enumerate(rows[self.recipe.data.label_column], start=1))


def _natural_key(name: str) -> tuple[int, float | str]:
    """Numeric labels sort as numbers ("2" < "10"), names alphabetically."""
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)
