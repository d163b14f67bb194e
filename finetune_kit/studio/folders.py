"""Ids for the runs and recipes the studio serves, and the only way from an id back to a path: an id names a
root folder by its position and a path inside it, and a path that resolves outside that root (`..`, an
absolute path, a symbolic link leading out, the run's `.partial` sibling among them) or names a hidden folder
(the studio's own `.studio/`) is not found. Files inside a run are opened through `run_file`, which refuses a
link leading out of the run."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import HTTPException

from finetune_kit.runs.folder import PARTIAL_SUFFIX, Layout


class OutsideFolders(HTTPException):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(status_code=404, detail=f"no {kind} {ident!r} in the studio's folders")


def _inside(roots: tuple[Path, ...], ident: str, kind: str) -> Path:
    head, _, rest = ident.partition("/")
    relative = PurePosixPath(rest)
    hidden = any(part.startswith(".") for part in relative.parts)
    if not head.isdigit() or int(head) >= len(roots) or not rest or relative.is_absolute() or hidden:
        raise OutsideFolders(kind, ident)
    root = roots[int(head)]
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise OutsideFolders(kind, ident)
    return path


def _resolved_inside(path: Path, root: Path) -> Path | None:
    """The path itself where it is (or leads) inside `root`; None where it is missing or leads out."""
    resolved = path.resolve()
    return resolved if path.exists() and resolved.is_relative_to(root) else None


def _ident(roots: tuple[Path, ...], path: Path) -> str:
    for index, root in enumerate(roots):
        if path.is_relative_to(root):
            return f"{index}/{path.relative_to(root).as_posix()}"
    raise ValueError(f"{path} is outside the studio's folders")


class Folders:
    """Run ids name a run by its final folder (`0/sst2-demo`), whether it is still being built in
    `sst2-demo.partial/` or complete: the id an open page holds stays valid when the run moves into place."""

    def __init__(self, runs: tuple[Path, ...], recipes: tuple[Path, ...]) -> None:
        self.runs, self.recipes = runs, recipes

    def run_id(self, folder: Path) -> str:
        name = folder.name.removesuffix(PARTIAL_SUFFIX)
        return _ident(self.runs, folder.with_name(name))

    def run_path(self, ident: str) -> Path:
        """The run's final folder path (which may not exist yet: see `live_folder`)."""
        path = _inside(self.runs, ident, "run")
        if path.name.endswith(PARTIAL_SUFFIX):
            raise OutsideFolders("run", ident)
        return path

    def live_folder(self, ident: str) -> Path:
        """The folder holding the run now: the partial one while it is built (or after it stopped), else the
        final; either only where it is a run folder inside the run's root."""
        final = self.run_path(ident)
        root = self.runs[int(ident.split("/", 1)[0])]
        for candidate in (final.with_name(final.name + PARTIAL_SUFFIX), final):
            folder = _resolved_inside(candidate, root)
            if folder is not None and folder.is_dir() and (folder / Layout.RECIPE).is_file():
                return candidate
        raise OutsideFolders("run", ident)

    @staticmethod
    def run_file(folder: Path, name: str) -> Path | None:
        """A file of a run folder, None where it is missing or a link leading out of the folder. A path with no
        link in it is inside as it stands (a `stat` each part); only one with a link is resolved."""
        path = folder / name
        parts = [folder / Path(*Path(name).parts[: depth + 1]) for depth in range(len(Path(name).parts))]
        if any(part.is_symlink() for part in parts):
            found = _resolved_inside(path, folder.resolve())
            return found if found is not None and found.is_file() else None
        return path if path.is_file() else None

    def recipe_id(self, file: Path) -> str:
        return _ident(self.recipes, file)

    def recipe_path(self, ident: str) -> Path:
        path = _inside(self.recipes, ident, "recipe")
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            raise OutsideFolders("recipe", ident)
        return path

    def output_inside_runs(self, output_dir: Path) -> bool:
        """Whether a launched recipe would write its run inside the studio's runs folders."""
        resolved = output_dir.resolve()
        return any(resolved.is_relative_to(root) for root in self.runs)
