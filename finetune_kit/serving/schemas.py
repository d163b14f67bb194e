"""Request and response bodies. `/predict` answers in the shape `finetune-kit predict` prints;
`/v1/chat/completions` and `/v1/embeddings` follow OpenAI's Chat Completions and Embeddings APIs, so
OpenAI clients talk to a run as is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, PositiveInt
from pydantic_core import PydanticCustomError

from finetune_kit.serving.errors import invalid


def _text_or_words(value: Any) -> str | list[str]:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(word, str) for word in value)):
        return value
    raise PydanticCustomError("text_type", "must be a string (or, for an NER run, a list of words)")


Text = Annotated[str | list[str], PlainValidator(_text_or_words, json_schema_input_type=str | list[str])]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Text] = Field(description="One text per row; an NER run also takes a list of words")
    text_pairs: list[str] | None = Field(None, description="A pair-classification run: the second text of each row")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(min_length=1, description="One prompt per reply")
    completions: list[str] = Field(min_length=1, description="The replies to score, one per prompt")

    def rows(self, max_rows: int, max_chars: int) -> list[dict[str, str]]:
        """The pairs as a reward run's `predict` reads them, or a 400 naming the field at fault."""
        if len(self.completions) != len(self.prompts):
            raise invalid("completions", f"{len(self.completions)} replies for {len(self.prompts)} prompts; one each")
        if len(self.prompts) > max_rows:
            raise invalid("prompts", f"{len(self.prompts)} pairs; at most {max_rows} per request (--max-batch-size)")
        for field, texts in (("prompts", self.prompts), ("completions", self.completions)):
            for index, text in enumerate(texts):
                if not text.strip() or len(text) > max_chars:
                    raise invalid(f"{field}[{index}]", f"empty or over {max_chars} characters (--max-text-chars)")
        return [{"prompt": p, "completion": c} for p, c in zip(self.prompts, self.completions, strict=True)]


class ScoreResponse(BaseModel):
    scores: list[float] = Field(description="The reward model's score of each reply: higher is preferred")


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(description="One per text, as `finetune-kit predict` prints them")


@dataclass(frozen=True)
class PredictInputs:
    """What a run's `/predict` accepts: its task's input columns, whether they take word lists
    (NER), and the server's limits."""

    columns: list[str]
    words: bool
    max_rows: int
    max_chars: int

    def rows(self, request: PredictRequest) -> list[dict[str, Any]]:
        """The request as rows keyed by the task's input columns, or a 400 naming the field at fault."""
        texts, pairs = request.texts, request.text_pairs
        if not texts:
            raise invalid("texts", "empty; send at least one text")
        if len(texts) > self.max_rows:
            raise invalid("texts", f"{len(texts)} texts; at most {self.max_rows} per request (--max-batch-size)")
        if len(self.columns) > 1 and pairs is None:
            raise invalid("text_pairs", "required: this run classifies pairs of texts; send one second text per text")
        if len(self.columns) == 1 and pairs is not None:
            raise invalid("text_pairs", "this run classifies single texts; leave text_pairs out")
        if pairs is not None and len(pairs) != len(texts):
            raise invalid("text_pairs", f"{len(pairs)} second texts for {len(texts)} texts; send one per text")
        values = [self._text(f"texts[{i}]", text) for i, text in enumerate(texts)]
        if pairs is None:
            return [{self.columns[0]: value} for value in values]
        second = [self._text(f"text_pairs[{i}]", text) for i, text in enumerate(pairs)]
        return [{self.columns[0]: a, self.columns[1]: b} for a, b in zip(values, second, strict=True)]

    def _text(self, where: str, text: str | list[str]) -> str | list[str]:
        if isinstance(text, list) and not self.words:
            raise invalid(where, "must be a string; word lists are for NER runs")
        length = len(" ".join(text)) if isinstance(text, list) else len(text)
        if length > self.max_chars:
            raise invalid(where, f"{length} characters; at most {self.max_chars} (--max-text-chars)")
        if not self.words:
            return text
        words = text.split() if isinstance(text, str) else text
        if not words:
            raise invalid(where, "no words; send a text with at least one word")
        return words


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's fields that change the reply; fields it has beyond these are accepted and ignored.
    Unset sampling fields take the run's `generation` settings (greedy by default)."""

    model: str | None = Field(None, description="Any name: the server serves one run")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = Field(None, description="OpenAI's newer name for max_tokens")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, description="Same seed, same reply; unset: a fresh seed per request")
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


FinishReason = Literal["stop", "length"]


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str]
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


def _text_or_texts(value: Any) -> str | list[str]:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(text, str) for text in value)):
        return value
    raise PydanticCustomError("input_type", "must be a string or a list of strings (token ids are not taken)")


Texts = Annotated[str | list[str], PlainValidator(_text_or_texts, json_schema_input_type=str | list[str])]


class EmbeddingRequest(BaseModel):
    """OpenAI's Embeddings API; its fields beyond these (`user`) are accepted and ignored."""

    model: str | None = Field(None, description="Any name: the server serves one run")
    input: Texts = Field(description="A text, or a list of texts: one vector each")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each vector as the base64 of its float32 little-endian bytes"
    )
    dimensions: PositiveInt | None = Field(
        None, description="Keep each vector's first `dimensions` components, then scale it to norm 1 (Matryoshka)"
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
