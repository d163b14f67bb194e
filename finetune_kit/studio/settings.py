"""What a studio serves: the folders it may read and launch from, where it listens, the token it asks for."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from finetune_kit.errors import UserError

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StudioSettings:
    """`runs`: folders whose run folders (and sweep trials inside them) are listed; new runs go to the first.
    `recipes`: folders whose `*.yaml` recipes can be opened and launched. Nothing outside them is served."""

    runs: tuple[Path, ...]
    recipes: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None  # asked of every request when set: always set when listening beyond loopback

    @classmethod
    def create(
        cls,
        runs: list[Path],
        recipes: list[Path],
        host: str = "127.0.0.1",
        port: int = 7860,
        token: str | None = None,
    ) -> StudioSettings:
        """Folders made absolute (a recipes folder must exist; a runs folder is created), and a random token
        when the studio listens beyond this machine and none was given."""
        for folder in recipes:
            if not folder.is_dir():
                raise UserError(f"--recipes {folder}: no such folder")
        for folder in runs:
            if folder.exists() and not folder.is_dir():
                raise UserError(f"--runs {folder}: not a folder")
            folder.mkdir(parents=True, exist_ok=True)
        if token is not None and not token.strip():
            raise UserError("--token: empty; give a token, or leave the option out for a random one")
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(24)
        return cls(
            runs=tuple(f.resolve() for f in runs),
            recipes=tuple(f.resolve() for f in recipes),
            host=host,
            port=port,
            token=token,
        )

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else f"[{self.host}]" if ":" in self.host else self.host
        query = f"/?token={self.token}" if self.token else "/"
        return f"http://{shown}:{self.port}{query}"
