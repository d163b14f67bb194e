"""`POST /v1/embeddings` on a served tiny embedding run, spoken to with the real OpenAI client: the
vectors `finetune-kit predict` gives, as floats or base64, cut to `dimensions` and re-normalized,
micro-batched across concurrent clients; bad requests and runs of other tasks refused in one line."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from finetune_kit.serving import RunServer
from tests.builders import classification_recipe, sentiment_splits, train_run
from tests.tasks.test_embedding import embedding_recipe, opposite_pairs
from tests.test_serve import metric_samples, sample_value, serving

NAME, MAX_BATCH, MAX_CHARS = "tiny-embedder", 8, 200
TEXTS = [row["anchor"] for row in opposite_pairs(4, seed=7)] + ["good", "a rather long and dull film " * 3]


@pytest.fixture(scope="module")
def embedding_run(tiny_bert, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve-embedding")
    recipe = embedding_recipe(tiny_bert, folder, folder / "run") | {"name": NAME}
    recipe["training"]["epochs"] = 1  # the vectors need not be good: the route must give predict's
    return train_run(recipe, folder)


@pytest.fixture(scope="module")
def embedder(embedding_run) -> Iterator[tuple[httpx.Client, RunServer]]:
    with serving(embedding_run, max_batch_size=MAX_BATCH, max_wait_ms=20, max_text_chars=MAX_CHARS) as served:
        yield served


def openai_client(server: RunServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60, max_retries=0)


def vectors(response) -> np.ndarray:
    assert [item.index for item in response.data] == list(range(len(response.data)))
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_openai_embeddings_are_the_vectors_of_the_predict_command(embedder, embedding_run, cli, tmp_path):
    client, server = embedder
    response = openai_client(server).embeddings.create(model=NAME, input=TEXTS, encoding_format="float")
    assert response.object == "list" and response.model == NAME
    assert {item.object for item in response.data} == {"embedding"}

    written = tmp_path / "vectors.npy"
    result = cli("predict", embedding_run, *(arg for text in TEXTS for arg in ("--text", text)), "--output", written)
    assert result.exit_code == 0, result.stderr
    expected = np.load(written)
    served = vectors(response)
    assert served.shape == expected.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(served, expected, atol=1e-5)

    tokenizer = AutoTokenizer.from_pretrained(str(embedding_run / "model"))
    tokens = sum(len(ids) for ids in tokenizer(TEXTS, truncation=True, max_length=16)["input_ids"])
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens

    one = openai_client(server).embeddings.create(model=NAME, input=TEXTS[4], encoding_format="float")
    np.testing.assert_allclose(vectors(one), expected[4:5], atol=1e-5)
    predicted = client.post("/predict", json={"texts": TEXTS[:2]}).raise_for_status().json()["predictions"]
    assert [row["text"] for row in predicted] == TEXTS[:2]
    np.testing.assert_allclose([row["embedding"] for row in predicted], expected[:2], atol=1e-5)
    assert [model.id for model in openai_client(server).models.list()] == [NAME]
    assert server.routes == ["POST /v1/embeddings", "POST /predict", "GET /v1/models", "GET /health", "GET /metrics"]


def test_base64_vectors_decode_to_the_float_vectors(embedder):
    _, server = embedder
    client = openai_client(server)
    floats = vectors(client.embeddings.create(model=NAME, input=TEXTS, encoding_format="float"))
    encoded = client.embeddings.create(model=NAME, input=TEXTS, encoding_format="base64")
    decoded = np.array([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in encoded.data])
    np.testing.assert_allclose(decoded, floats, atol=1e-5)
    by_default = client.embeddings.create(model=NAME, input=TEXTS)  # the client asks for base64 and decodes it
    np.testing.assert_allclose(vectors(by_default), floats, atol=1e-5)


def test_dimensions_keep_the_first_components_rescaled_to_norm_one(embedder):
    _, server = embedder
    client = openai_client(server)
    full = vectors(client.embeddings.create(model=NAME, input=TEXTS, encoding_format="float"))
    for encoding in ("float", "base64"):
        cut = client.embeddings.create(model=NAME, input=TEXTS, dimensions=8, encoding_format=encoding)
        if encoding == "base64":
            cut = np.array([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in cut.data])
        else:
            cut = vectors(cut)
        assert cut.shape == (len(TEXTS), 8)
        np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(cut, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-5)
    whole = vectors(client.embeddings.create(model=NAME, input=TEXTS, dimensions=32, encoding_format="float"))
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)


def test_eight_concurrent_clients_are_answered_from_shared_batches(embedder, monkeypatch):
    """The first batch is held until all eight requests have reached the batcher, so the other seven wait
    together, as they would behind a busy model, whatever this machine's speed."""
    client, server = embedder
    alone = vectors(openai_client(server).embeddings.create(model=NAME, input=TEXTS, encoding_format="float"))
    batcher = server.service.batcher
    submitted, all_in = [], threading.Event()
    enqueue, run_batch = batcher.predict, batcher._predict

    async def counted(rows):
        waiting = enqueue(rows)  # queued when first awaited below, in this same step of the event loop
        submitted.append(rows)
        if len(submitted) == 8:
            all_in.set()
        return await waiting

    def held(rows):
        assert all_in.wait(60)
        return run_batch(rows)

    monkeypatch.setattr(batcher, "predict", counted)
    monkeypatch.setattr(batcher, "_predict", held)

    def batches() -> tuple[float, float]:
        samples = metric_samples(client)["finetune_kit_serve_batch_size"]
        return tuple(sample_value(samples, f"finetune_kit_serve_batch_size_{n}") for n in ("count", "sum"))

    def embed(text: str) -> list[float]:
        reply = openai_client(server).embeddings.create(model=NAME, input=text, encoding_format="float")
        return reply.data[0].embedding

    before, errors_before = batches(), _errors(client)
    texts = [*TEXTS, *TEXTS][:8]
    with ThreadPoolExecutor(8) as pool:
        together = np.array(list(pool.map(embed, texts)), dtype=np.float32)  # a failed request raises here
    count, rows = (after - was for after, was in zip(batches(), before, strict=True))
    assert _errors(client) == errors_before
    assert rows == 8 and count < 8 and rows / count > 1  # each text embedded once; requests shared passes
    np.testing.assert_allclose(together, alone[[TEXTS.index(text) for text in texts]], atol=1e-5)


def _errors(client: httpx.Client) -> float:
    return sample_value(metric_samples(client)["finetune_kit_serve_errors"], "finetune_kit_serve_errors_total")


BAD_EMBEDDINGS = [
    ({"model": NAME}, "input", "input: required"),
    ({"input": []}, "input", "input: empty; send a text or a list of texts"),
    ({"input": ["good"] * (MAX_BATCH + 1)}, "input", f"input: {MAX_BATCH + 1} texts; at most {MAX_BATCH} per request"),
    ({"input": "good", "dimensions": 33}, "dimensions", "dimensions: 33; this run's vectors have 32: send at most 32"),
    ({"input": "good", "dimensions": 0}, "dimensions", "dimensions: input should be greater than 0"),
    ({"input": ["good", "x" * (MAX_CHARS + 1)]}, "input[1]", f"input[1]: {MAX_CHARS + 1} characters; at most 200"),
    ({"input": "  "}, "input", "input: empty; send some text"),
    ({"input": [101, 2204]}, "input", "input: must be a string or a list of strings (token ids are not taken)"),
    ({"input": "good", "encoding_format": "int8"}, "encoding_format", "encoding_format: input should be 'float' or"),
]


@pytest.mark.parametrize(("body", "param", "message"), BAD_EMBEDDINGS)
def test_a_bad_embeddings_request_is_a_400_naming_the_field(embedder, body, param, message):
    client, _ = embedder
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert error["message"].startswith(message) and "\n" not in error["message"], error
    assert client.get("/health").status_code == 200


def test_the_openai_client_raises_the_servers_one_line(embedder):
    _, server = embedder
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(server).embeddings.create(model=NAME, input=["good"], dimensions=64)
    assert refused.value.status_code == 400
    assert refused.value.body["message"] == "dimensions: 64; this run's vectors have 32: send at most 32"


def test_an_embedding_run_refuses_chat_and_score_and_metrics_count_its_route(embedder):
    client, _ = embedder
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400
    assert chat.json()["error"]["message"] == (
        "/v1/chat/completions: serves instruction-tuned runs (sft, preference, grpo); "
        f"this run ({NAME}) is an embedding run; POST /v1/embeddings"
    )
    score = client.post("/score", json={"prompts": ["a"], "completions": ["b"]})
    assert score.status_code == 400 and score.json()["error"]["message"] == (
        f"/score: serves reward-model runs; this run ({NAME}) is an embedding run; POST /v1/embeddings"
    )

    assert client.post("/v1/embeddings", json={"input": "good"}).status_code == 200
    assert client.post("/v1/embeddings", json={"input": []}).status_code == 400
    samples = metric_samples(client)
    requests = samples["finetune_kit_serve_requests"]
    route = "/v1/embeddings"
    assert sample_value(requests, "finetune_kit_serve_requests_total", route=route, status="200") >= 1
    assert sample_value(requests, "finetune_kit_serve_requests_total", route=route, status="400") >= 1
    errors = samples["finetune_kit_serve_errors"]
    assert sample_value(errors, "finetune_kit_serve_errors_total", route=route, type="invalid_request_error") >= 1
    latency = samples["finetune_kit_serve_request_duration_seconds"]
    assert sample_value(latency, "finetune_kit_serve_request_duration_seconds_count", route=route) >= 2


def test_a_classification_run_refuses_embeddings_naming_what_it_serves(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-classification-no-embeddings")
    data = sentiment_splits(folder, train=40, validation=8)
    run_dir = train_run(classification_recipe(tiny_bert, data, folder / "run", epochs=1), folder)
    with serving(run_dir) as (_, server), pytest.raises(openai.BadRequestError) as refused:
        openai_client(server).embeddings.create(model="toy", input=["good"])
    assert refused.value.status_code == 400
    assert refused.value.body["message"] == (
        "/v1/embeddings: serves embedding runs; this run (toy) is a classification run; POST /predict"
    )
