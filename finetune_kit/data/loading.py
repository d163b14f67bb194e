"""Load local files by extension or Hub datasets by id, cut a seeded validation split, cap rows."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import re
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO

import datasets
from datasets import Dataset, DatasetDict
from datasets.exceptions import DatasetGenerationError

from finetune_kit.config.recipe import DataConfig, DataSource, HubDataSource
from finetune_kit.data.conll import CONLL_COLUMNS, load_conll
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
# Compressed files are told by their first bytes, as datasets tells them, whatever their name says; each
# with the stdlib reader that opens it (None for zstd: the stdlib has none, so datasets' own message stands).
COMPRESSIONS: dict[str, tuple[bytes, Callable[..., IO] | None]] = {
    ".gz": (b"\x1f\x8b", gzip.open),
    ".bz2": (b"BZh", bz2.open),
    ".xz": (b"\xfd7zXZ\x00", lzma.open),
    ".zst": (b"\x28\xb5\x2f\xfd", None),
}
PARQUET_MAGIC = b"PAR1"
JSON_FORMATS = {"json", "jsonl"}


def load_data(config: DataConfig, seed: int) -> DatasetDict:
    """Train, validation (given or cut from train) and optional test, with the recipe's row caps."""
    columns = conll_columns_of(config)
    splits = {"train": load_source(config.train, "train", config.format, columns)}
    if config.validation is not None:
        splits["validation"] = load_source(config.validation, "validation", config.format, columns)
    else:
        if round(len(splits["train"]) * config.validation_fraction) < 1:
            raise DataError(
                f"data.train: {len(splits['train'])} rows are too few to hold out data.validation_fraction "
                f"{config.validation_fraction}; give data.validation or more rows"
            )
        cut = splits["train"].train_test_split(test_size=config.validation_fraction, seed=seed)
        splits["train"], splits["validation"] = cut["train"], cut["test"]
    if config.test is not None:
        splits["test"] = load_source(config.test, "test", config.format, columns)
    for name, split in splits.items():
        splits[name] = capped(split, name, config.max_train_rows if name == "train" else config.max_eval_rows, seed)
    if shots := getattr(config, "shots_per_class", None):
        splits["train"] = _balanced_sample(splits["train"], config.label_column, shots, seed)
    return DatasetDict(splits)


def capped(rows: Dataset, name: str, cap: int | None, seed: int) -> Dataset:
    """A seeded sample of at most `cap` rows (`data.max_train_rows`, `data.max_eval_rows`); never empty."""
    if cap is not None and len(rows) > cap:
        rows = rows.shuffle(seed=seed).select(range(cap))
    if len(rows) == 0:
        raise DataError(f"data.{name}: the split is empty; give a file with at least one row")
    return rows


def _balanced_sample(rows: Dataset, label_column: str, shots: int, seed: int) -> Dataset:
    """`shots` rows of each label, drawn with `seed`, in a seeded order: a few-shot training set."""
    if label_column not in rows.column_names:
        raise DataError(f"data.label_column: no column '{label_column}' in data.train to sample shots from")
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(rows[label_column]):
        by_label.setdefault(str(label), []).append(index)
    rng = random.Random(seed)
    chosen = []
    for label, indices in sorted(by_label.items()):
        if len(indices) < shots:
            raise DataError(
                f"data.shots_per_class: label '{label}' has {len(indices)} rows in data.train, fewer than {shots}"
            )
        chosen += rng.sample(indices, shots)
    rng.shuffle(chosen)
    return rows.select(chosen)


def load_source(
    source: DataSource, role: str, data_format: str | None = None, conll_columns: tuple[str, str] = CONLL_COLUMNS
) -> Dataset:
    """One split from a local file (format from the extension unless stated) or the Hub. A CoNLL
    file's tokens and tags load into `conll_columns`."""
    found = locate(source, role)
    if isinstance(found, HubDataSource):
        return _load_hub(found, role)
    return _load_file(found, role, data_format, conll_columns)


def locate(source: DataSource, role: str) -> Path | HubDataSource:
    """The local file a source names, or the Hub dataset (a plain string that is no file and looks like an id)."""
    if isinstance(source, HubDataSource):
        return source
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise DataError(f"data.{role}: {source} is a folder; name a data file (.csv, .jsonl, ...)")
    if file_format(path) is None and HUB_ID.match(source):
        return HubDataSource(hub=source)
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


def conll_columns_of(config: DataConfig) -> tuple[str, str]:
    """Token-classification recipes name the columns a CoNLL file loads into (`data.tokens_column`,
    `data.tags_column`); other recipes keep the defaults."""
    return getattr(config, "tokens_column", CONLL_COLUMNS[0]), getattr(config, "tags_column", CONLL_COLUMNS[1])


def file_format(path: Path) -> str | None:
    """The recipe format a file's extension says (a compression ending aside), or None."""
    suffixes = [s for s in path.suffixes if s.lower() not in COMPRESSIONS]
    return EXTENSIONS.get(suffixes[-1].lower()) if suffixes else None


def _load_file(path: Path, role: str, data_format: str | None, conll_columns: tuple[str, str]) -> Dataset:
    fmt = data_format or file_format(path)
    if fmt is None:
        raise DataError(
            f"data.{role}: cannot tell the format of {path.name}; set data.format to one of {', '.join(FORMATS)}"
        )
    try:
        rows = _read(path, role, fmt, conll_columns)
    except DataError:
        raise
    except Exception as err:  # datasets and the decoders raise many types for malformed files
        raise DataError(f"data.{role}: {_unreadable(path, fmt, err)}") from None
    if len(rows) == 0:
        raise DataError(f"data.{role}: {_empty(path)}")
    return rows


def _read(path: Path, role: str, fmt: str, conll_columns: tuple[str, str]) -> Dataset:
    opener = _opener(path)
    if fmt in JSON_FORMATS and opener is not None and (problem := _undecodable_line(path, fmt)):
        raise DataError(f"data.{role}: {problem}")  # pyarrow's JSON reader takes bytes that are not UTF-8 silently
    if fmt == "conll":
        if opener is None:
            raise DataError(f"data.{role}: {path.name} is zstd-compressed; decompress it to read it as conll")
        with opener(path, "rt", encoding="utf-8") as handle:
            return load_conll(handle, path.name, role, conll_columns)
    builder, kwargs = FORMATS[fmt]
    return datasets.load_dataset(builder, data_files={role: str(path)}, split=role, **kwargs)


def _unreadable(path: Path, fmt: str, err: Exception) -> str:
    """What is wrong with a file that failed to load, told from its bytes: the libraries' own
    messages rarely name the line ("An error occurred while generating the dataset")."""
    text_checks = (_undecodable_line, _no_rows, _invalid_json) if fmt != "parquet" and _opener(path) else ()
    try:
        for check in (_misnamed, *text_checks):
            problem = check(path, fmt)
            if problem is not None:
                return problem
    except (OSError, EOFError, lzma.LZMAError):  # a corrupt or cut-off compressed file: the library's reason stands
        pass
    return f"cannot read {path.name} as {fmt}: {first_line(library_cause(err))}; fix the file, or set data.format"


def library_cause(err: BaseException) -> BaseException:
    """The parser's own error, not datasets' wrapper around it."""
    while isinstance(err, DatasetGenerationError) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _empty(path: Path) -> str:
    return f"{path.name} is empty (no rows); give a file with at least one row"


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(8)


def _opener(path: Path) -> Callable[..., IO] | None:
    """The reader for the file's bytes, decompressing as they say; None when the stdlib has none."""
    head = _head(path)
    return next((reader for magic, reader in COMPRESSIONS.values() if head.startswith(magic)), open)


def raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, decompressed: what its errors are told from."""
    with _opener(path)(path, "rb") as handle:
        yield from handle


def _misnamed(path: Path, fmt: str) -> str | None:
    """A name that says compressed for a file that is not (datasets then fails to decompress it), or
    a Parquet file under another format."""
    head, suffix = _head(path), path.suffix.lower()
    if suffix in COMPRESSIONS and not head.startswith(COMPRESSIONS[suffix][0]):
        return f"{path.name} is not {suffix[1:]}-compressed; remove the {suffix} ending from its name"
    if fmt != "parquet" and head.startswith(PARQUET_MAGIC):
        return f"{path.name} is a Parquet file; name it .parquet or set data.format: parquet"
    return None


def _undecodable_line(path: Path, fmt: str) -> str | None:
    for number, line in enumerate(raw_lines(path), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return (
                f"{path.name} line {number} is not UTF-8 text; "
                f"save the file as UTF-8 (or set data.format if it is not {fmt})"
            )
    return None


def _no_rows(path: Path, fmt: str) -> str | None:
    """Nothing but blank lines (around a JSON array's brackets), or a CSV / TSV header alone."""
    header = 1 if fmt in {"csv", "tsv"} else 0
    blank = {b"", b"[", b"]", b"[]"} if fmt == "json" else {b""}
    rows = islice((line for line in raw_lines(path) if line.strip() not in blank), header, None)
    return _empty(path) if next(rows, None) is None else None


def _invalid_json(path: Path, fmt: str) -> str | None:
    """The first line that does not parse: of the document (a JSON array), or of JSON lines."""
    if fmt not in JSON_FORMATS:
        return None
    text = b"".join(raw_lines(path)).decode("utf-8")
    try:
        if text.lstrip().startswith("["):
            json.loads(text)
            return None
    except json.JSONDecodeError as err:
        return _json_line(path, err.lineno, err.msg)
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            if line.strip():
                json.loads(line)
        except json.JSONDecodeError as err:
            return _json_line(path, number, err.msg)
    return None


def _json_line(path: Path, number: int, problem: str) -> str:
    return f"{path.name} line {number} is not valid JSON ({problem}); fix or remove that line"


def _load_hub(source: HubDataSource, role: str) -> Dataset:
    try:
        return datasets.load_dataset(source.hub, source.config, split=source.split or role, revision=source.revision)
    except Exception as err:
        raise DataError(
            f"data.{role}: cannot load Hub dataset '{source.hub}': {first_line(err)}. "
            "Check the id and split, or give a local file"
        ) from None
