"""Any supported source → a `DatasetDict` with train / validation (/ test) splits. No task logic."""

from finetune_kit.data.loading import conll_columns_of, load_data, load_source, require_columns
from finetune_kit.data.streaming import Stream, load_streamed, require_one_process

__all__ = [
    "Stream",
    "conll_columns_of",
    "load_data",
    "load_source",
    "load_streamed",
    "require_columns",
    "require_one_process",
]
