"""`finetune-kit serve`: a finished run behind uvicorn. The port is bound before the model loads, so
a busy port fails in a second, not after the weights are read."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import uvicorn

from finetune_kit.errors import UserError
from finetune_kit.inference import open_run
from finetune_kit.serving.app import create_app
from finetune_kit.serving.service import (
    CHAT,
    EMBEDDINGS,
    HEALTH,
    METRICS,
    MODELS,
    PREDICT,
    SCORE,
    ServeOptions,
    Service,
)

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise UserError(f"--host {host} --port {port}: cannot listen there ({reason}); choose another --port") from None


class RunServer:
    """One run served on one socket. `run()` blocks until stopped (Ctrl-C, or `stop()` from another
    thread); `summary()` then says what was served and what it cost."""

    def __init__(self, service: Service, listener: socket.socket) -> None:
        self.service, self.listener = service, listener
        # log_config=None: uvicorn's own logging setup (dictConfig) would close every handler the
        # process already has; its warnings and errors reach stderr through standard logging anyway.
        config = uvicorn.Config(
            create_app(service), log_config=None, log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)

    @classmethod
    def open(cls, run_dir: Path, options: ServeOptions) -> RunServer:
        listener = listen(options.host, options.port)
        try:
            return cls(Service.for_run(open_run(run_dir, options.backend), options), listener)
        except BaseException:
            listener.close()
            raise

    @property
    def url(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def routes(self) -> list[str]:
        service = self.service
        if service.chats:
            served = [f"POST {CHAT}", f"GET {MODELS}"]
        else:
            served = [f"POST {service.route}"]
            if service.inputs is not None and service.route != PREDICT:  # an embedding run's vectors, as predict's
                served.append(f"POST {PREDICT}")
            if service.embeddings is not None:
                served.append(f"GET {MODELS}")
        return [*served, f"GET {HEALTH}", f"GET {METRICS}"]

    @property
    def exposed(self) -> bool:
        """Listening beyond this machine: anyone who reaches it can use the model."""
        return self.listener.getsockname()[0] not in LOOPBACK

    def run(self) -> None:
        """Serve until stopped. On Ctrl-C uvicorn finishes the requests in flight, shuts down (the
        energy tracker stops), then raises the interrupt again: here, that is the normal end."""
        with contextlib.suppress(KeyboardInterrupt):
            self._server.run(sockets=[self.listener])

    def stop(self) -> None:
        self._server.should_exit = True

    def summary(self) -> str:
        metrics = self.service.metrics
        ok, failed = metrics.answered((PREDICT, SCORE, CHAT, EMBEDDINGS))
        text = f"served {ok} requests ({failed} refused or failed)"
        batches, rows = metrics.batches()
        if batches:
            text += f", {rows} texts in {batches} batches"
        spent = self.service.emissions
        if self.service.tracker is None:
            text += "; energy not measured (the run's recipe sets emissions.enabled: false)"
        elif spent is not None:
            text += f"; energy {spent.energy_kwh:.3g} kWh, {spent.emissions_g:.3g} g CO2eq"
            text += f" over {spent.duration_s:.0f} s ({spent.location})"
        return text
