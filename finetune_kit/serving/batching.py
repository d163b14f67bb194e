"""Micro-batching for `/predict`: concurrent requests share one forward pass. A model answers 32
rows in little more time than one, so gathering what arrives within a few milliseconds multiplies
throughput under load and costs an idle server at most `max_wait_s` per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Rows = list[dict[str, Any]]
PredictBatch = Callable[[Rows], Rows]  # one prediction per row, in the order of the rows


@dataclass
class _Waiting:
    rows: Rows
    result: asyncio.Future[Rows]


class MicroBatcher:
    """Gathers requests into batches of up to `max_rows` rows, or whatever arrived within
    `max_wait_s` of the first, runs each batch in a worker thread (the event loop keeps accepting
    requests meanwhile) and answers each request with its slice. One batch runs at a time; a batch
    that fails fails its own requests only."""

    def __init__(
        self, predict: PredictBatch, max_rows: int, max_wait_s: float, on_batch: Callable[[int], None]
    ) -> None:
        self._predict, self.max_rows, self.max_wait_s, self._on_batch = predict, max_rows, max_wait_s, on_batch
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._held: _Waiting | None = None  # arrived, but did not fit into the batch before
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._serve_forever())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def predict(self, rows: Rows) -> Rows:
        """The predictions for `rows` (at most `max_rows`), computed with whatever else is waiting."""
        waiting = _Waiting(rows, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(waiting)
        return await waiting.result

    async def _serve_forever(self) -> None:
        while True:
            await self._run(await self._gather())

    async def _gather(self) -> list[_Waiting]:
        """The next batch: what is already queued at once, then what arrives before the deadline."""
        loop = asyncio.get_running_loop()
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], len(first.rows)
        deadline = loop.time() + self.max_wait_s
        while size < self.max_rows:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    waiting = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                waiting = self._queue.get_nowait()
            if size + len(waiting.rows) > self.max_rows:
                self._held = waiting
                break
            batch.append(waiting)
            size += len(waiting.rows)
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        batch = [waiting for waiting in batch if not waiting.result.done()]  # callers that gave up
        rows = [row for waiting in batch for row in waiting.rows]
        if not rows:
            return
        self._on_batch(len(rows))
        try:
            predictions = await asyncio.to_thread(self._predict, rows)
            if len(predictions) != len(rows):
                raise RuntimeError(f"the predictor returned {len(predictions)} predictions for {len(rows)} rows")
        except Exception as err:
            for waiting in batch:
                if not waiting.result.done():
                    waiting.result.set_exception(err)
            return
        start = 0
        for waiting in batch:
            if not waiting.result.done():
                waiting.result.set_result(predictions[start : start + len(waiting.rows)])
            start += len(waiting.rows)
