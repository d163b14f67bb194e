"""`/v1/embeddings` (OpenAI's Embeddings API) for runs whose task embeds texts: the request checked
against the server's limits, the vectors from the run's micro-batched `predict` (those `/predict` and
`finetune-kit predict` give), cut to `dimensions` and scaled back to norm 1 when asked (Matryoshka),
sent as floats or as base64 float32; `usage` counts the tokens the model read."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass

import numpy as np
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from finetune_kit.inference import Predictor
from finetune_kit.serving.errors import invalid
from finetune_kit.serving.schemas import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

TEXT = "text"  # the column an embedding run's `predict` reads


@dataclass(frozen=True)
class Embeddings:
    tokenizer: PreTrainedTokenizerBase
    max_length: int  # where the model cuts each text (the run's training.max_length)
    size: int  # components of the run's vectors
    max_rows: int
    max_chars: int

    @classmethod
    def for_run(cls, run: Predictor, max_rows: int, max_chars: int) -> Embeddings:
        """The run's vector size, read off one prediction: whatever pooling or projection its pipeline has.
        The tokenizer is a copy of the run's: a fast tokenizer sets its truncation and padding on each call,
        and one used from two threads at once (the batch worker's, the event loop's) can fail."""
        probe = run.predict(Dataset.from_list([{TEXT: "size"}]))[0]["embedding"]
        tokenizer = copy.deepcopy(run.tokenizer)
        return cls(tokenizer, run.recipe.training.max_length, len(probe), max_rows, max_chars)

    def texts(self, request: EmbeddingRequest) -> list[str]:
        """The request's texts, or a 400 naming the field at fault."""
        one = isinstance(request.input, str)
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not texts:
            raise invalid("input", "empty; send a text or a list of texts")
        if len(texts) > self.max_rows:
            raise invalid("input", f"{len(texts)} texts; at most {self.max_rows} per request (--max-batch-size)")
        for index, text in enumerate(texts):
            where = "input" if one else f"input[{index}]"
            if not text.strip():
                raise invalid(where, "empty; send some text")
            if len(text) > self.max_chars:
                raise invalid(where, f"{len(text)} characters; at most {self.max_chars} (--max-text-chars)")
        if request.dimensions is not None and request.dimensions > self.size:
            raise invalid(
                "dimensions", f"{request.dimensions}; this run's vectors have {self.size}: send at most {self.size}"
            )
        return texts

    def tokens(self, texts: list[str]) -> int:
        """The tokens the model reads for `texts`: each cut at max_length, special tokens included (called on
        the event loop only: milliseconds for a request's texts)."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return sum(len(row) for row in ids)

    def answer(self, request: EmbeddingRequest, model: str, vectors: list[list[float]], tokens: int) -> EmbeddingList:
        matrix = np.asarray(vectors, dtype=np.float32)
        if request.dimensions is not None:
            matrix = matrix[:, : request.dimensions]
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / np.where(norms > 0, norms, 1)
        if request.encoding_format == "base64":
            encoded: list[list[float]] | list[str] = [
                base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in matrix
            ]
        else:
            encoded = matrix.tolist()
        return EmbeddingList(
            data=[Embedding(index=index, embedding=vector) for index, vector in enumerate(encoded)],
            model=model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )
