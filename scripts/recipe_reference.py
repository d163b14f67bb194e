"""Write the recipe reference (docs/reference/recipe.md) from the recipe schema itself.

    python scripts/recipe_reference.py            # (re)write the page
    python scripts/recipe_reference.py --check    # exit 1, with one line, when the committed page is stale

Every section and field comes from the pydantic models: name (YAML key), type, default, limits and
the `Field(description=...)` text. Sections every task shares with the same model are listed once;
the others (`data`, and sections only some tasks have) once per task. Nothing is written by hand:
change a description in the schema, then rerun this script.
"""

from __future__ import annotations

import argparse
import enum
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from finetune_kit.config import RECIPE_CLASSES

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "recipe.md"
COMMAND = "python scripts/recipe_reference.py"


def recipe_classes() -> dict[str, type[BaseModel]]:
    """Task name → its pydantic recipe class, in the registry's order: the one place this script
    learns the schema."""
    return dict(RECIPE_CLASSES)


# ---------------------------------------------------------------- types


def _strip_annotated(annotation: Any) -> tuple[Any, list[Any]]:
    """`Annotated[int, Gt(0)]` → (int, [Gt(0)]); anything else unchanged."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, metadata = args[0], [*metadata, *args[1:]]
    return annotation, metadata


def _union_members(annotation: Any) -> list[Any] | None:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return list(typing.get_args(annotation))
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _value(value: Any) -> str:
    """A value as it is written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _value(value.value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        plain = value and value.strip() == value and yaml.safe_load(value) == value
        return value if plain else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def _limits(metadata: list[Any]) -> list[str]:
    """annotated_types constraints (from `Field(gt=...)`, `PositiveInt`, ...) in words."""
    words = []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            words.append(f"> {_value(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            words.append(f"≥ {_value(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {_value(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"≤ {_value(item.le)}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length:
            words.append(f"at least {item.min_length} long")
        elif isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} long")
        elif getattr(item, "pattern", None):
            words.append(f"matches `{item.pattern}`")
        elif isinstance(item, annotated_types.Interval):
            words.extend(_limits([annotated_types.Gt(item.gt)] if item.gt is not None else []))
            words.extend(_limits([annotated_types.Ge(item.ge)] if item.ge is not None else []))
            words.extend(_limits([annotated_types.Lt(item.lt)] if item.lt is not None else []))
            words.extend(_limits([annotated_types.Le(item.le)] if item.le is not None else []))
    return words


def _type(annotation: Any, models: list[type[BaseModel]]) -> str:
    """A type in words; models met on the way are appended to `models` (documented as sub-sections)."""
    annotation, metadata = _strip_annotated(annotation)
    limits = _limits(metadata)
    text = _type_core(annotation, models)
    return f"{text} ({', '.join(limits)})" if limits else text


def _type_core(annotation: Any, models: list[type[BaseModel]]) -> str:
    members = _union_members(annotation)
    if members is not None:
        present = [member for member in members if member is not type(None)]
        words = [_type(member, models) for member in present]
        if len(present) < len(members):
            words.append("`null`")
        return " or ".join(words)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{_value(arg)}`" for arg in args) if len(args) > 1 else f"`{_value(args[0])}`"
    if origin in (list, set, frozenset, typing.Sequence):
        return f"list of {_type(args[0], models)}" if args else "list"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type(args[0], models)}"
        return "[" + ", ".join(_type(arg, models) for arg in args) + "]"
    if origin is dict:
        return f"mapping of {_type(args[0], models)} to {_type(args[1], models)}" if args else "mapping"
    if _is_model(annotation):
        if annotation not in models:
            models.append(annotation)
        return f"mapping ({_model_link(annotation)})"
    if annotation is typing.Any:
        return "any"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{_value(member.value)}`" for member in annotation)
    if isinstance(annotation, type):
        return f"`{annotation.__name__}`"
    return f"`{annotation}`"


def _model_link(model: type[BaseModel]) -> str:
    return f"`{model.__name__}`"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its defaults"
    return f"`{_value(value)}`"


def _prose(text: str) -> str:
    """Schema text as Markdown: `<name>` outside code spans would be read as an HTML tag."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):  # outside code spans
        parts[index] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[index])
    return " ".join("`".join(parts).split())


def _cell(text: str) -> str:
    return _prose(text).replace("|", "\\|")


def _doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not an inherited one), as one paragraph."""
    doc = model.__dict__.get("__doc__")
    return _prose(doc) if doc else ""


def _key(name: str, field: FieldInfo) -> str:
    return field.alias or name


# ---------------------------------------------------------------- sections


def _section(
    path: str,
    title: str,
    model: type[BaseModel],
    level: int,
    lines: list[str],
    note: str = "",
    keep: typing.Callable[[str], bool] = lambda name: True,
) -> None:
    """One section's table, then one sub-section per model its fields hold (nested sections,
    mappings inside unions, lists or dicts), each once, named by the keys that hold it."""
    lines += [f"{'#' * level} {title}", ""]
    for text in (note, _doc(model)):
        if text:
            lines += [text, ""]
    if model.model_config.get("extra") == "allow":
        lines += ["Keys other than those below are allowed: they are passed on as they are.", ""]
    users: dict[type[BaseModel], list[str]] = {}
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if not keep(name):
            continue
        key = _key(name, field)
        found: list[type[BaseModel]] = []
        kind = _type(field.annotation, found)
        for nested in found:
            users.setdefault(nested, []).append(f"{path}.{key}")
        limits = _limits(field.metadata)
        if limits:
            kind = f"{kind} ({', '.join(limits)})"
        lines.append(f"| `{key}` | {_cell(kind)} | {_cell(_default(field))} | {_cell(field.description or '')} |")
    lines.append("")
    for nested, paths in users.items():
        where = ", ".join(f"`{item}`" for item in paths)
        _section(paths[0], f"{_model_link(nested)} in {where}", nested, min(level + 1, 6), lines)


def _sections(recipe: type[BaseModel]) -> dict[str, tuple[FieldInfo, type[BaseModel] | None]]:
    """Top-level key → (field, the section model when the key holds one)."""
    found = {}
    for name, field in recipe.model_fields.items():
        annotation, _ = _strip_annotated(field.annotation)
        members = _union_members(annotation) or [annotation]
        models = [member for member in members if _is_model(_strip_annotated(member)[0])]
        found[_key(name, field)] = (field, _strip_annotated(models[0])[0] if len(models) == 1 else None)
    return found


def _field_signature(field: FieldInfo) -> tuple[str, str, str, str]:
    return (repr(field.annotation), repr(field.metadata), _default(field), field.description or "")


def _common_fields(models: list[type[BaseModel]]) -> set[str]:
    """The fields every model has alike (as the data sections share their base class's)."""
    first = models[0].model_fields
    return {
        name
        for name, field in first.items()
        if all(
            name in model.model_fields and _field_signature(model.model_fields[name]) == _field_signature(field)
            for model in models
        )
    }


def _same(fields: list[tuple[FieldInfo, type[BaseModel] | None]]) -> bool:
    first_field, first_model = fields[0]
    if first_model is not None:
        return all(model is first_model for _, model in fields)
    return all(
        field.annotation == first_field.annotation and _default(field) == _default(first_field) for field, _ in fields
    )


def render() -> str:
    recipes = recipe_classes()
    per_task = {task: _sections(recipe) for task, recipe in recipes.items()}
    keys: list[str] = []
    for sections in per_task.values():
        keys += [key for key in sections if key not in keys]
    shared = [
        key
        for key in keys
        if all(key in sections for sections in per_task.values())
        and _same([sections[key] for sections in per_task.values()])
    ]

    lines = [
        "# Recipe reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the recipe schema; do not edit by hand. -->",
        "",
        "A recipe is one YAML file. Its `task` key picks the schema; every section below is checked "
        "before anything runs, and an unknown key stops the run with one line naming it (and a "
        "did-you-mean). `--set dotted.key=value` on the command line sets any field listed here. "
        f"This page is generated from the schema's field descriptions by `{COMMAND}`.",
        "",
        "| task | recipe class | its own keys |",
        "|---|---|---|",
    ]
    for task, recipe in recipes.items():
        own = ", ".join(f"[`{key}`](#{_anchor(task)}-{_anchor(key)})" for key in per_task[task] if key not in shared)
        lines.append(f"| `{task}` | `{recipe.__name__}` | {own} |")
    lines += ["", "## Keys every task shares", ""]
    plain = [key for key in shared if all(sections[key][1] is None for sections in per_task.values())]
    any_sections = next(iter(per_task.values()))
    if plain:
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for key in plain:
            field = any_sections[key][0]
            kind = _type(field.annotation, [])
            lines.append(f"| `{key}` | {_cell(kind)} | {_cell(_default(field))} | {_cell(field.description or '')} |")
        lines.append("")
    for key in shared:
        field, model = any_sections[key]
        if model is None:
            continue
        _section(key, f"`{key}`", model, 3, lines, _note(field))
    # Sections every task has with different models (`data`): the fields they all share, once.
    common: dict[str, set[str]] = {}
    for key in keys:
        if key in shared or not all(key in sections for sections in per_task.values()):
            continue
        models = [sections[key][1] for sections in per_task.values()]
        if all(model is not None for model in models):
            common[key] = _common_fields(models)
    for key, names in common.items():
        if names:
            field, model = any_sections[key]
            note = _note(field) + " Every task's section has the keys below; each task adds its own (see the tasks)."
            _section(
                key,
                f"`{key}`: the keys every task has {{#{_anchor(key)}-common}}",
                model,
                3,
                lines,
                note.strip(),
                keep=names.__contains__,
            )
    for task, recipe in recipes.items():
        lines += [f"## `{task}` {{#{_anchor(task)}}}", ""]
        doc = _doc(recipe)
        if doc:
            lines += [doc, ""]
        for key, (field, model) in per_task[task].items():
            if key in shared:
                continue
            if model is None:
                kind = _type(field.annotation, [])
                lines += [f"### `{key}` {{#{_anchor(task)}-{_anchor(key)}}}", "", f"Type: {kind}. {_note(field)}", ""]
                continue
            names = common.get(key, set())
            note = _note(field)
            if names:
                note += f" Besides [the keys every task's `{key}` has](#{_anchor(key)}-common):"
            title = f"`{key}` {{#{_anchor(task)}-{_anchor(key)}}}"
            _section(key, title, model, 3, lines, note.strip(), keep=lambda name, names=names: name not in names)
    return "\n".join(lines).rstrip() + "\n"


def _note(field: FieldInfo) -> str:
    """A top-level key's own description and default, said under its heading."""
    words = []
    if field.description:
        words.append(_prose(field.description).rstrip(".") + ".")
    default = _default(field)
    if default == "required":
        words.append("Required.")
    elif default != "its defaults":
        words.append(f"Default: {default}.")
    return " ".join(words)


def _anchor(text: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed page is stale")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE.relative_to(ROOT)} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
