"""YAML + `--set` overrides → a typed Recipe, with one-line errors that name the dotted field."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from finetune_kit.config.recipe import Recipe
from finetune_kit.config.tasks import RECIPE_ADAPTER, recipe_class_for
from finetune_kit.errors import RecipeError


def load_recipe_file(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read the YAML mapping and apply `dotted.key=value` overrides (values parsed as YAML)."""
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found; check the path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"{path}: invalid YAML{where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (task:, model:, data:, ...)")
    for item in overrides or []:
        _apply_override(raw, item)
    raw.setdefault("name", path.stem)
    _anchor_paths(raw, path.parent)
    return raw


def load_recipe(path: Path, overrides: list[str] | None = None) -> Recipe:
    """Load and validate a recipe with the config class of its task."""
    raw = load_recipe_file(path, overrides)
    return validate_recipe(raw, source=str(path))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """The task's recipe class, validated through the union of all of them (discriminated by `task`)."""
    recipe_class = recipe_class_for(raw.get("task"), source)  # an unknown task: one line with a did-you-mean
    try:
        return RECIPE_ADAPTER.validate_python(raw)
    except ValidationError as err:
        raise RecipeError(f"{source}: {_describe(err, recipe_class)}") from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {item!r}: expected dotted.key=value, e.g. training.learning_rate=3e-5")
    set_field(raw, key.strip(), yaml.safe_load(value) if value else None, where=f"--set {item!r}")


def set_field(raw: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set one dotted field of a raw recipe, creating the sections on the way (an unset one, `peft: null`
    as a full fine-tuning run's saved recipe has it, too): what `--set` does, and how a sweep applies each
    trial's values, so both are validated alike."""
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        child = node[part]
        if not isinstance(child, dict):
            raise RecipeError(f"{where}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _anchor_paths(raw: dict[str, Any], recipe_dir: Path) -> None:
    """A relative data or checkpoint path missing from the working directory is taken from the
    recipe's folder, so bundled recipes run from anywhere."""
    sections = [(raw.get("data"), ("train", "validation", "test")), (raw.get("model"), ("checkpoint",))]
    for section, keys in sections:
        if not isinstance(section, dict):
            continue
        for key in keys:
            value = section.get(key)
            if isinstance(value, str) and not Path(value).exists() and (recipe_dir / value).exists():
                section[key] = str((recipe_dir / value).resolve())


def _describe(err: ValidationError, recipe_class: type[BaseModel]) -> str:
    """The first error as `dotted.field: problem`, with a did-you-mean for unknown keys."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"][1:] if not _is_union_tag(part)]  # [0]: the union's task tag
    dotted = ".".join(loc) or "recipe"
    more = err.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if first["type"] == "extra_forbidden":
        known = _known_fields(recipe_class, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
        return f"{dotted}: unknown key; {hint}{suffix}"
    if first["type"] == "missing":
        return f"{dotted}: required field is missing{suffix}"
    if first["type"] == "value_error":  # our own validators: the message says it all (a whole-recipe one, its field)
        where = f"{dotted}: " if loc else ""
        return f"{where}{first['msg'].removeprefix('Value error, ')}{suffix}"
    got = first.get("input")
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
    return f"{dotted}: {first['msg']} (got {shown}){suffix}"


def _is_union_tag(part: object) -> bool:
    # pydantic adds the union member's name to the location ("train.str", "train.HubDataSource")
    return isinstance(part, str) and (part in {"str", "int", "float"} or part[:1].isupper())


def _known_fields(model: type[BaseModel], path: list[str]) -> list[str]:
    for part in path:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        nested = _model_in(field.annotation) if field else None
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def field_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of a recipe class as a dotted name, sections included (`training`,
    `training.learning_rate`); a section that takes any key (`model.architecture`) adds `section.*`."""
    names = [f"{prefix}*"] if prefix and model.model_config.get("extra") == "allow" else []
    for name, field in model.model_fields.items():
        names.append(prefix + name)
        nested = _model_in(field.annotation)
        if nested is not None:
            names += field_names(nested, f"{prefix}{name}.")
    return names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
