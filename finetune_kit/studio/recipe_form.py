"""The New run page's form, read off the recipe file and its task's recipe class, and the check of what the form
sends: the CLI's own (`--set` overrides through `load_recipe`, then the data files as `train` reads them first), so
the page shows the CLI's one-line error beside the field it names; and, the studio's own rule, no file or folder
outside its folders given through the form."""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from finetune_kit.config import Recipe, load_recipe, load_recipe_file
from finetune_kit.config.tasks import recipe_class_for
from finetune_kit.data import conll_columns_of, load_source
from finetune_kit.errors import UserError
from finetune_kit.runs.folder import PARTIAL_SUFFIX

NOT_IN_FORM = ("task", "sweep")  # the task picks the recipe class; `train` ignores `sweep`
SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
FIELD_PATH = re.compile(r"[\w.*-]+")  # how the CLI's messages begin: the dotted field, then ": "
MISSING = object()
# The fields whose text names a file or folder the run reads (or, for MLflow's store, writes). The schema types them
# `str` (a local path, or else a Hub id), so it cannot tell them from other text: they are named here. Fields typed
# `Path` are read off the schema (`_path_typed`). A `*` part is any position in a list.
PATH_FIELDS = (
    "model.checkpoint",  # `model.weights_from` is this one
    *(f"data.{source}{part}" for source in ("train", "validation", "test", "test_references") for part in ("", ".hub")),
    *(f"data.{split}_retrieval.{file}" for split in ("validation", "test") for file in ("queries", "corpus")),
    "grpo.rewards.*.run",
    "grpo.rewards.*.function",  # file.py:name, imported and run
    "training.tracking_uri",  # a path, or a file: or sqlite: URI
)
HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*/[A-Za-z0-9_][\w.-]*")  # namespace/name; `..` cannot begin a part


class FieldError(Exception):
    """A recipe field's problem, as the CLI says it (`training.learning_rate: ...`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "message": self.message}}


@dataclass(frozen=True)
class Checked:
    """A recipe and overrides that passed the CLI's checks: what a launched process is given."""

    source: Path  # the recipe file
    recipe: Recipe
    overrides: list[str]  # `--set` values, the run folder last
    output_dir: Path


def recipe_summary(path: Path) -> dict[str, Any]:
    """What the recipe list shows of a file: its name and task, or the one-line reason it cannot be opened."""
    try:
        raw = load_recipe_file(path)
        recipe_class_for(raw.get("task"), str(path))
    except UserError as err:
        return {"name": path.stem, "task": None, "error": _without_source(err, path)}
    return {"name": raw.get("name") or path.stem, "task": raw["task"]}


def recipe_form(path: Path) -> dict[str, Any]:
    """The file's text and one form field per scalar (or list of scalars) of its task's recipe class, nested
    sections flattened with dots, each holding the file's value or else the default."""
    try:
        raw = load_recipe_file(path)  # the CLI's reading, for its errors; the form shows the file's own values
        recipe_class = recipe_class_for(raw.get("task"), str(path))
    except UserError as err:
        raise _field_error(err, path, {}) from None
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    fields = list(_fields(recipe_class, values, "", present=True))
    sections = list(dict.fromkeys(field["path"].split(".")[0] for field in fields if "." in field["path"]))
    return {"name": raw["name"], "task": raw["task"], "yaml": text, "fields": fields, "sections": sections}


def check(path: Path, overrides: Mapping[str, Any], runs: Sequence[Path], recipes: Sequence[Path]) -> Checked:
    """The recipe with the form's overrides, as `train` would load it, writing its run into the first of `runs`
    (the name kept, the folder forced there), and the data files it names; a problem is a `FieldError`. A file or
    folder the overrides name must be inside `runs` or `recipes`; the recipe file's own values are trusted."""
    given = [f"{key}={_as_text(value)}" for key, value in overrides.items()]
    recipe = _loaded(path, given, overrides)
    name = recipe.run_dir.name
    field = "output_dir" if recipe.output_dir is not None else "name"
    if not name or name.startswith(".") or name.endswith(PARTIAL_SUFFIX):
        raise FieldError(field, f"{field}: '{name}' cannot name a run folder; choose a plain name")
    output_dir = runs[0] / name
    if output_dir.exists():
        raise FieldError(field, f"{field}: a run named '{name}' already exists; choose another {field}")
    if output_dir.with_name(name + PARTIAL_SUFFIX).exists():
        raise FieldError(
            field,
            f"{field}: '{name}' is a run being built or stopped (continue it with finetune-kit train --resume); "
            f"choose another {field}",
        )
    final = [*given, f"output_dir={json.dumps(str(output_dir))}"]  # JSON is YAML: any path reads back whole
    recipe = _loaded(path, final, overrides)
    _check_paths(recipe, load_recipe_file(path), (*runs, *recipes), recipes[0])
    try:
        _check_data_files(recipe)
    except UserError as err:
        raise _field_error(err, path, overrides) from None
    return Checked(path, recipe, final, output_dir)


def _check_paths(recipe: Recipe, own: dict[str, Any], roots: tuple[Path, ...], home: Path) -> None:
    """Every path field whose value is not the recipe file's own must name no local path outside `roots`: `train`
    would read (or write) it wherever it is. Checked before the data files, so no answer tells whether an outside
    file exists."""
    own_values = dict(_leaves(own))
    fields = [*PATH_FIELDS, *_path_typed(type(recipe))]
    for key, value in _leaves(recipe.model_dump(mode="json")):
        if not isinstance(value, str) or own_values.get(key) == value or not any(_is(key, f) for f in fields):
            continue
        local = _local_path(key, value)
        if local is not None and not _inside(local, roots):
            raise FieldError(key, f"{key}: {value} is outside the studio's folders; put the file under {home}")


def _local_path(key: str, value: str) -> Path | None:
    """The file or folder a path field's value names on this machine, relative ones as `train` reads them (from the
    working directory); None for a Hub id (`namespace/name`, or a plain name that is no file here) or a server."""
    if key.endswith(".function"):
        return _expanded(value.rsplit(":", 1)[0])
    if key == "training.tracking_uri":
        scheme, colon, rest = value.partition(":")
        if not colon:
            return _expanded(value)
        if scheme in ("file", "sqlite"):  # file:///abs; sqlite:///relative.db, sqlite:////abs.db
            rest = rest.removeprefix("//")
            return Path(rest.removeprefix("/") if scheme == "sqlite" else rest)
        return None  # a tracking server
    path = _expanded(value)
    looks_local = value.startswith(("/", "./", "../", "~")) or value in (".", "..")
    if looks_local or path.exists() or ("/" in value and not HUB_ID.fullmatch(value)):
        return path
    return None


def _expanded(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # `~someone` with no such user: the text as it stands
        return Path(text)


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    """Whether the path, its links followed, is inside one of the roots."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte: nowhere inside
        return False
    return any(resolved.is_relative_to(root) for root in roots)


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The dotted path of every value inside sections and lists (`grpo.rewards.0.function`)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        yield prefix.removesuffix("."), value
        return
    for name, item in items:
        yield from _leaves(item, f"{prefix}{name}.")


def _is(key: str, pattern: str) -> bool:
    """Whether a dotted value path is the field a pattern names (`*`: any list position)."""
    parts, wanted = key.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(w in ("*", part) for part, w in zip(parts, wanted, strict=True))


def _path_typed(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """The dotted fields the schema types `Path`, in sections and in lists of sections."""
    for name, info in model.model_fields.items():
        for member in _members(info.annotation):
            if member is Path:
                yield f"{prefix}{name}"
            elif _is_model(member):
                yield from _path_typed(member, f"{prefix}{name}.")
            elif typing.get_origin(member) in (list, tuple):
                for item in typing.get_args(member):
                    if _is_model(_strip(item)):
                        yield from _path_typed(_strip(item), f"{prefix}{name}.*.")


def _loaded(path: Path, given: list[str], overrides: Mapping[str, Any]) -> Recipe:
    try:
        return load_recipe(path, given)
    except UserError as err:
        raise _field_error(err, path, overrides) from None


def _check_data_files(recipe: Recipe) -> None:
    """A data file the recipe names and that is not there fails as `train` fails first: `load_source`'s own
    error. A name without an extension may be a Hub dataset id; the run itself loads those."""
    data = recipe.data
    for role in ("train", "validation", "test"):
        source = getattr(data, role)
        if isinstance(source, str) and Path(source).suffix and not Path(source).expanduser().is_file():
            load_source(source, role, data.format, conll_columns_of(data))


def _as_text(value: Any) -> str:
    """A form value as `--set` takes it: text as typed, anything else as JSON (which YAML reads alike)."""
    return value if isinstance(value, str) else json.dumps(value)


def _without_source(err: UserError, path: Path) -> str:
    return str(err).removeprefix(f"{path}: ")


def _field_error(err: UserError, path: Path, overrides: Mapping[str, Any]) -> FieldError:
    """The field a CLI message names: its first words (`data.train: ...`), or the key of the `--set` it quotes."""
    message = _without_source(err, path)
    for key, value in overrides.items():
        if message.startswith(f"--set {f'{key}={_as_text(value)}'!r}"):
            return FieldError(key, message)
    head = message.split(": ", 1)[0]
    return FieldError(head if FIELD_PATH.fullmatch(head) else "recipe", message)


def _fields(model: type[BaseModel], values: Any, prefix: str, present: bool) -> Iterator[dict[str, Any]]:
    values = values if isinstance(values, dict) else {}
    for name, info in model.model_fields.items():
        if not prefix and name in NOT_IN_FORM:
            continue
        given = values.get(name, MISSING)
        section = _section(info.annotation)
        if section is not None:
            inside = isinstance(given, dict)
            yield from _fields(section, given, f"{prefix}{name}.", present and (inside or info.is_required()))
            continue
        kind, choices = _kind(info.annotation)
        if kind is not None:
            yield _field(f"{prefix}{name}", kind, choices, given, info, present)
    if model.model_config.get("extra") == "allow":  # a section of free keys (`model.architecture`): the file's
        for name, given in values.items():
            kind = _value_kind(given)
            if name not in model.model_fields and kind is not None:
                yield {
                    "path": f"{prefix}{name}",
                    "type": kind,
                    "value": given,
                    "default": None,
                    "description": "",
                    "required": False,
                }


def _field(path: str, kind: str, choices: list[Any], given: Any, info: FieldInfo, present: bool) -> dict[str, Any]:
    default = None if info.is_required() else _plain(info.get_default(call_default_factory=True))
    value = default if given is MISSING else _plain(given)
    if isinstance(value, dict):  # a mapping where text is allowed (`data.train: {hub: ...}`): YAML text
        value = yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    field = {
        "path": path,
        "type": kind,
        "value": value,
        "default": default,
        "description": info.description or "",
        "required": present and info.is_required(),
    }
    if choices:
        field["choices"] = choices
    return field


def _plain(value: Any) -> Any:
    """A value as JSON carries it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return None if isinstance(value, BaseModel) else value


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    """The types a field may hold, `None` left out."""
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [_strip(member) for member in typing.get_args(annotation) if member is not type(None)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section a field holds (`training`, an optional `peft`); None for a value that may also be text."""
    members = _members(annotation)
    return members[0] if len(members) == 1 and _is_model(members[0]) else None


def _kind(annotation: Any) -> tuple[str | None, list[Any]]:
    """The form type of a field and its choices; None for what a form field cannot hold (mappings)."""
    kinds = [_member_kind(member) for member in _members(annotation) if not _is_model(member)]
    kinds = [kind for kind in kinds if kind[0] is not None]
    if not kinds:
        return None, []
    names = {name for name, _ in kinds}
    if names == {"choice"}:
        return "choice", [choice for _, choices in kinds for choice in choices]
    if len(names) == 1:
        return kinds[0]
    return ("number" if names == {"integer", "number"} else "string"), []  # several kinds: free YAML text


def _member_kind(annotation: Any) -> tuple[str | None, list[Any]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", [member.value for member in annotation]
    if origin in (list, tuple, set, frozenset):
        items = [_member_kind(_strip(item)) for item in typing.get_args(annotation) if item is not Ellipsis]
        scalar = all(kind not in (None, "list") for kind, _ in items)
        return ("list", []) if scalar else (None, [])
    return SCALARS.get(annotation), []


def _value_kind(value: Any) -> str | None:
    if isinstance(value, list):
        return "list" if all(_value_kind(item) not in (None, "list") for item in value) else None
    return SCALARS.get(type(value))
