"""One finished run, ready to serve: its predictions behind a micro-batcher (classification, NER, reward
scores, and embeddings, which the OpenAI-style /v1/embeddings also answers) or the chat completions (sft,
preference; replies decoded in shared batches), the metrics, and the energy tracker that runs for the
server's lifetime. The batcher calls the run's `predict` whatever its backend: the PyTorch model and the
run's ONNX export (`finetune-kit export`, run by ONNX Runtime) are two engines behind it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from datasets import Dataset

from finetune_kit.config.recipe import Precision
from finetune_kit.emissions.tracker import EmissionsRecord, RunTracker
from finetune_kit.errors import ModelError
from finetune_kit.inference import PYTORCH, Predictor, TorchRun
from finetune_kit.serving.batching import MicroBatcher, PredictBatch, Rows
from finetune_kit.serving.completions import ChatCompletions
from finetune_kit.serving.embeddings import Embeddings
from finetune_kit.serving.metrics import ServerMetrics
from finetune_kit.serving.schemas import PredictInputs
from finetune_kit.tasks.base import Embedder, LabelledHead, ReplyScorer
from finetune_kit.tasks.chat_decoder import ChatDecoder

PREDICT, SCORE, CHAT, EMBEDDINGS = "/predict", "/score", "/v1/chat/completions", "/v1/embeddings"
MODELS, HEALTH, METRICS = "/v1/models", "/health", "/metrics"
ROUTES = (PREDICT, SCORE, CHAT, EMBEDDINGS, MODELS, HEALTH, METRICS)
SERVED_BY = {  # which runs each route serves, for the refusal of a route the run does not serve
    PREDICT: "classification, NER, SetFit and embedding runs",
    SCORE: "reward-model runs",
    CHAT: "instruction-tuned runs (sft, preference, grpo)",
    EMBEDDINGS: "embedding runs",
}


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_text_chars: int = 10_000
    max_chat_batch: int = 8  # chat replies decoded together; more wait for a free slot
    backend: str = PYTORCH  # or onnx, onnx-int8: the run's ONNX export (finetune-kit export)
    chat_precision: Precision = "auto"  # the weights' precision for chat replies; auto: the run's own


@dataclass
class Service:
    name: str
    task: str
    backend: str
    metrics: ServerMetrics
    tracker: RunTracker | None  # None when the run's recipe switches emissions off
    options: ServeOptions
    inputs: PredictInputs | None = None  # set when the run predicts labels
    batcher: MicroBatcher | None = None  # its predictions (labels, a reward model's scores, vectors) in batches
    route: str = PREDICT  # the route the batcher answers (an embedding run's /predict shares it)
    embeddings: Embeddings | None = None  # set when the run embeds texts
    chats: ChatCompletions | None = None  # set when the run chats
    emissions: EmissionsRecord | None = None  # the final reading, once stopped

    @classmethod
    def for_run(cls, run: Predictor, options: ServeOptions) -> Service:
        name, emissions = run.recipe.name or run.run_dir.name, run.recipe.emissions
        # This process's share of the machine: clients on the same machine are not the server's energy.
        tracker = RunTracker(emissions, f"serve-{name}", one_of_several_processes=True) if emissions.enabled else None
        service = cls(name, run.recipe.task, run.backend, ServerMetrics(tracker, ROUTES), tracker, options)
        if isinstance(run.task, LabelledHead | ReplyScorer | Embedder):
            if isinstance(run.task, ReplyScorer):
                service.route = SCORE
            else:
                words = run.task.pipeline_tag == "token-classification"
                columns = run.task.input_columns()
                service.inputs = PredictInputs(columns, words, options.max_batch_size, options.max_text_chars)
            if isinstance(run.task, Embedder):
                service.route = EMBEDDINGS
                service.embeddings = Embeddings.for_run(run, options.max_batch_size, options.max_text_chars)
            service.batcher = MicroBatcher(
                batch_predictor(run),
                options.max_batch_size,
                options.max_wait_ms / 1000,
                service.metrics.batch_size.observe,
            )
        elif isinstance(run.task, ChatDecoder) and isinstance(run, TorchRun):  # replies need the PyTorch model
            metrics = service.metrics
            service.chats = ChatCompletions(
                run,
                options.max_text_chars,
                options.max_chat_batch,
                metrics.decode_batch_size.observe,
                metrics.prefill_batch_size.observe,
                options.chat_precision,
            )
        else:
            raise ModelError(
                f"{run.run_dir}: serve takes classification, NER, SetFit, embedding, reward, sft, preference and "
                f"grpo runs; this is a {run.recipe.task} run (use finetune-kit predict or generate)"
            )
        return service

    async def start(self) -> None:
        if self.tracker is not None:
            self.tracker.start()
        if self.batcher is not None:
            self.batcher.start()
        if self.chats is not None:
            self.chats.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        if self.chats is not None:
            await asyncio.to_thread(self.chats.stop)
        if self.tracker is not None:
            self.emissions = self.tracker.stop()

    def refusal(self, route: str) -> str:
        """Why this run does not answer `route`, and which route it does answer."""
        other = CHAT if self.chats else self.route
        article = "an" if self.task.startswith(tuple("aeiou")) else "a"
        return f"{route}: serves {SERVED_BY[route]}; this run ({self.name}) is {article} {self.task} run; POST {other}"


def batch_predictor(run: Predictor) -> PredictBatch:
    """The run's predictions on a batch of rows as the server receives them (dicts keyed by the
    task's input columns): exactly what `finetune-kit predict` runs."""

    def predict(rows: Rows) -> Rows:
        return run.predict(Dataset.from_list(rows))

    return predict
