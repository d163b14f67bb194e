"""`finetune-kit studio` behind uvicorn, on a port bound before the app is built (a busy port fails at once)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import uvicorn

from finetune_kit.serving.server import listen
from finetune_kit.studio.app import create_app
from finetune_kit.studio.settings import StudioSettings


class StudioServer:
    def __init__(self, settings: StudioSettings) -> None:
        self.listener = listen(settings.host, settings.port)
        self.settings = replace(settings, port=self.listener.getsockname()[1])  # port 0: the one given
        # log_config=None keeps the process's own logging (uvicorn's dictConfig would replace it).
        config = uvicorn.Config(
            create_app(self.settings),
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(config)

    def run(self) -> None:
        """Serve until Ctrl-C; runs the studio launched keep going (each is its own process)."""
        with contextlib.suppress(KeyboardInterrupt):
            self._server.run(sockets=[self.listener])

    def stop(self) -> None:
        """End `run()` from another thread (tests, an embedding application)."""
        self._server.should_exit = True
