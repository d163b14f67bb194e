"""Load local files by extension or Hub datasets by id, cut a seeded validation split, cap rows."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from finetune_kit.config.recipe import DataConfig, DataSource, HubDataSource
from finetune_kit.data.conll import load_conll
from finetune_kit.errors import DataError, first_line

# datasets builder and extra keyword arguments per recipe format
FORMATS: dict[str, tuple[str, dict]] = {
    "csv": ("csv", {}),
    "tsv": ("csv", {"sep": "\t"}),
    "json": ("json", {}),
    "jsonl": ("json", {}),
    "parquet": ("parquet", {}),
    "text": ("text", {"keep_linebreaks": True}),  # a line's newline is text a language model must learn
}
EXTENSIONS = {
    ".conll": "conll",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".txt": "text",
}
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def load_data(config: DataConfig, seed: int) -> DatasetDict:
    """Train, validation (given or cut from train) and optional test, with the recipe's row caps."""
    splits = {"train": load_source(config.train, "train", config.format)}
    if config.validation is not None:
        splits["validation"] = load_source(config.validation, "validation", config.format)
    else:
        if round(len(splits["train"]) * config.validation_fraction) < 1:
            raise DataError(
                f"data.train: {len(splits['train'])} rows are too few to hold out data.validation_fraction "
                f"{config.validation_fraction}; give data.validation or more rows"
            )
        cut = splits["train"].train_test_split(test_size=config.validation_fraction, seed=seed)
        splits["train"], splits["validation"] = cut["train"], cut["test"]
    if config.test is not None:
        splits["test"] = load_source(config.test, "test", config.format)
    for name, split in splits.items():
        cap = config.max_train_rows if name == "train" else config.max_eval_rows
        if cap is not None and len(split) > cap:
            splits[name] = split.shuffle(seed=seed).select(range(cap))
        if len(splits[name]) == 0:
            raise DataError(f"data.{name}: the split is empty; give a file with at least one row")
    return DatasetDict(splits)


def load_source(source: DataSource, role: str, data_format: str | None = None) -> Dataset:
    """One split from a local file (format from the extension unless stated) or the Hub."""
    if isinstance(source, HubDataSource):
        return _load_hub(source, role)
    path = Path(source).expanduser()
    if path.is_file():
        return _load_file(path, role, data_format)
    if path.exists():
        raise DataError(f"data.{role}: {source} is a folder; name a data file (.csv, .jsonl, ...)")
    if _file_format(path) is None and HUB_ID.match(source):
        return _load_hub(HubDataSource(hub=source), role)
    raise DataError(f"data.{role}: file not found: {source}; check the path (relative to the working directory)")


def require_columns(data: DatasetDict, columns: dict[str, str | None]) -> None:
    """Every named column exists in every split; the error names the field, split and what exists."""
    for field, column in columns.items():
        if column is None:
            continue
        for split_name, split in data.items():
            if column not in split.column_names:
                raise DataError(
                    f"{field}: column '{column}' not found in the {split_name} data; "
                    f"columns are: {', '.join(split.column_names)}"
                )


def _file_format(path: Path) -> str | None:
    suffixes = [s for s in path.suffixes if s not in {".gz", ".bz2", ".xz", ".zst"}]
    return EXTENSIONS.get(suffixes[-1].lower()) if suffixes else None


def _load_file(path: Path, role: str, data_format: str | None) -> Dataset:
    fmt = data_format or _file_format(path)
    if fmt is None:
        raise DataError(
            f"data.{role}: cannot tell the format of {path.name}; set data.format to one of {', '.join(FORMATS)}"
        )
    if fmt == "conll":
        return load_conll(path, role)
    builder, kwargs = FORMATS[fmt]
    try:
        return datasets.load_dataset(builder, data_files={role: str(path)}, split=role, **kwargs)
    except Exception as err:  # datasets raises many types for malformed files
        raise DataError(f"data.{role}: cannot read {path.name} as {fmt}: {first_line(err)}") from None


def _load_hub(source: HubDataSource, role: str) -> Dataset:
    try:
        return datasets.load_dataset(source.hub, source.config, split=source.split or role, revision=source.revision)
    except Exception as err:
        raise DataError(
            f"data.{role}: cannot load Hub dataset '{source.hub}': {first_line(err)}. "
            "Check the id and split, or give a local file"
        ) from None
