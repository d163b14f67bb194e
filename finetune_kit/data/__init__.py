"""Any supported source → a `DatasetDict` with train / validation (/ test) splits. No task logic."""

from finetune_kit.data.loading import load_data, load_source, require_columns

__all__ = ["load_data", "load_source", "require_columns"]
