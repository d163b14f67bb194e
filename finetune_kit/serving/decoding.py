"""The server's decoder: the continuous batching of `finetune_kit.tasks.decoding`, in one worker
thread that owns the model and takes replies from a queue. The replies that arrive by a step
boundary join the batch at that step, so concurrent requests share the model's passes, and requests
that arrive together cost one prefill, not one each."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import torch
from transformers import PreTrainedModel

from finetune_kit.tasks.decoding import Batch, BatchDecoder, Reply


class Decoder(BatchDecoder):
    """Owns the model in one worker thread; `submit` hands it a reply to decode."""

    def __init__(
        self,
        model: PreTrainedModel,
        max_batch: int,
        on_step: Callable[[int], None],
        on_prefill: Callable[[int], None] = lambda size: None,
    ) -> None:
        super().__init__(model, max_batch, on_step, on_prefill)
        self._arrivals: queue.Queue[Reply | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        self._worker = threading.Thread(target=self._serve_forever, name="finetune-kit-decode", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._arrivals.put(None)
            self._worker.join()
            self._worker = None

    def submit(self, reply: Reply) -> None:
        self._arrivals.put(reply)

    def _serve_forever(self) -> None:
        self.model.eval()
        batch = Batch()
        with torch.inference_mode():
            while True:
                arrivals = self._arrivals_for(batch)
                if arrivals is None:
                    for reply in batch.replies:
                        reply.end(RuntimeError("the server stopped"))
                    return
                try:
                    self._join(batch, arrivals)
                    if batch.replies:
                        self._step(batch)
                except Exception as err:  # the model failed: the replies in flight fail, the next ones start afresh
                    for reply in [*batch.replies, *arrivals]:
                        if not reply.done.is_set():
                            reply.end(err)
                    batch = Batch()

    def _arrivals_for(self, batch: Batch) -> list[Reply] | None:
        """The replies that join at this step boundary: waits for one when nothing decodes, takes
        only what already waits otherwise, up to the free slots. None: the decoder is stopping."""
        arrivals: list[Reply] = []
        while len(batch.replies) + len(arrivals) < self.max_batch:
            try:
                reply = self._arrivals.get(block=not batch.replies and not arrivals)
            except queue.Empty:
                break
            if reply is None:
                for waiting in arrivals:
                    waiting.end(RuntimeError("the server stopped"))
                return None
            arrivals.append(reply)
        return arrivals
