"""F1 with a chosen average; `average=None` gives one score per class (shipped, nothing downloaded)."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = "F1 = 2 * precision * recall / (precision + recall), per class or averaged."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): true labels.
    labels (list of int, optional): the classes to score, in order.
    average (str or None): "macro", "micro", "weighted", "binary", or None for per-class scores.
Returns:
    f1 (float, or list of float when average is None).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, labels=None, average="macro"):
        score = f1_score(references, predictions, labels=labels, average=average, zero_division=0)
        return {"f1": score.tolist() if average is None else float(score)}
