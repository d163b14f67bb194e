"""`finetune-kit serve`: a finished run over HTTP, with micro-batched predictions, OpenAI-style chat,
health and Prometheus metrics (energy and CO2 included)."""

from finetune_kit.serving.server import RunServer
from finetune_kit.serving.service import ServeOptions

__all__ = ["RunServer", "ServeOptions"]
