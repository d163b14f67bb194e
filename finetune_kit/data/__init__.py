"""Any supported source → a `DatasetDict` with train / validation (/ test) splits. No task logic."""

from finetune_kit.data.loading import conll_columns_of, load_data, load_source, require_columns

__all__ = ["conll_columns_of", "load_data", "load_source", "require_columns"]
