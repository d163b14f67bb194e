"""Ids for the runs and recipes the studio serves, and the only way from an id back to a path: an id names a
root folder by its position and a path inside it, and a path that resolves outside that root (`..`, an
absolute path, a symbolic link leading out) is not found."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import HTTPException

PARTIAL_SUFFIX = ".partial"


class OutsideFolders(HTTPException):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(status_code=404, detail=f"no {kind} {ident!r} in the studio's folders")


def _inside(roots: tuple[Path, ...], ident: str, kind: str) -> Path:
    head, _, rest = ident.partition("/")
    relative = PurePosixPath(rest)
    if not head.isdigit() or int(head) >= len(roots) or not rest or relative.is_absolute() or ".." in relative.parts:
        raise OutsideFolders(kind, ident)
    root = roots[int(head)]
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise OutsideFolders(kind, ident)
    return path


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
        """The folder holding the run now: the partial one while it is built (or after it stopped), else the final."""
        final = self.run_path(ident)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        if partial.is_dir():
            return partial
        if final.is_dir():
            return final
        raise OutsideFolders("run", ident)

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
