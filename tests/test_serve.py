"""`finetune-kit serve`: the real server (uvicorn on loopback) over tiny classification, NER and chat
runs, spoken to with httpx as any HTTP client would."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
from datasets import Dataset
from openai import OpenAI
from openai.types.chat import ChatCompletion
from prometheus_client.parser import text_string_to_metric_families
from transformers import BertForSequenceClassification

from finetune_kit.inference import open_run
from finetune_kit.serving import RunServer, ServeOptions
from finetune_kit.serving.completions import ChatCompletions
from finetune_kit.serving.decoding import Reply
from finetune_kit.serving.errors import ApiError
from finetune_kit.serving.schemas import ChatRequest, PredictInputs, PredictRequest
from tests.builders import (
    REPO,
    classification_recipe,
    ner_recipe,
    sentiment_splits,
    toy_chat_rows,
    toy_sentiment_rows,
    train_run,
    write_jsonl,
)

MAX_BATCH, MAX_CHARS = 8, 200


@pytest.fixture(scope="module")
def classification_run(tiny_bert, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve-classification")
    data = sentiment_splits(folder, train=400, validation=40)
    return train_run(classification_recipe(tiny_bert, data, folder / "run"), folder)


@pytest.fixture(scope="module")
def chat_run(tiny_chat_llama, tmp_path_factory) -> Path:
    """Barely trained: the tiny model still rambles, so a reply spans several streamed pieces."""
    folder = tmp_path_factory.mktemp("serve-chat")
    recipe = {
        "task": "sft",
        "name": "tiny-chat",
        "model": {"checkpoint": str(tiny_chat_llama)},
        "data": {
            "train": str(write_jsonl(folder / "train.jsonl", toy_chat_rows(24, seed=1))),
            "validation": str(write_jsonl(folder / "validation.jsonl", toy_chat_rows(8, seed=2))),
        },
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-5, "max_length": 64, "precision": "fp32"},
        "generation": {"max_new_tokens": 12},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(folder / "run"),
    }
    return train_run(recipe, folder)


@contextmanager
def serving(run_dir: Path, **options) -> Iterator[tuple[httpx.Client, RunServer]]:
    """The server in a thread, on a free loopback port; a client once it answers /health."""
    server = RunServer.open(run_dir, ServeOptions(port=0, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        wait_for_health(client)
        try:
            yield client, server
        finally:
            server.stop()
            thread.join(timeout=30)


def wait_for_health(client: httpx.Client, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return client.get("/health").raise_for_status().json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def classifier(classification_run) -> Iterator[tuple[httpx.Client, RunServer]]:
    with serving(classification_run, max_batch_size=MAX_BATCH, max_wait_ms=20, max_text_chars=MAX_CHARS) as served:
        yield served


@pytest.fixture(scope="module")
def chatbot(chat_run) -> Iterator[tuple[httpx.Client, RunServer]]:
    with serving(chat_run, max_text_chars=MAX_CHARS) as served:
        yield served


def metric_samples(client: httpx.Client) -> dict[str, list]:
    families = text_string_to_metric_families(client.get("/metrics").raise_for_status().text)
    return {family.name: family.samples for family in families}


def sample_value(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


# -- /predict -------------------------------------------------------------------------------------
def test_predict_answers_as_the_predict_command_does(classifier, classification_run):
    client, _ = classifier
    assert client.get("/health").json() == {
        "status": "ok",
        "run": "toy",
        "task": "classification",
        "backend": "pytorch",
    }
    texts = ["a superb and brilliant film", "the plot was awful and dull", "it was quite lovely"]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    expected = open_run(classification_run).predict(Dataset.from_dict({"text": texts}))
    assert response.json() == {"predictions": expected}
    assert [p["label"] for p in expected] == ["pos", "neg", "pos"]  # the run learned; the server says so


def test_concurrent_requests_are_micro_batched_and_each_gets_its_own_rows(classifier):
    client, server = classifier
    texts = [f"film {i} was {'good' if i % 2 else 'bad'}" for i in range(16)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as concurrent:
            return await asyncio.gather(*(concurrent.post("/predict", json={"texts": [text]}) for text in texts))

    before = metric_samples(client)["finetune_kit_serve_batch_size"]
    responses = asyncio.run(send_all())
    after = metric_samples(client)["finetune_kit_serve_batch_size"]
    assert [r.status_code for r in responses] == [200] * 16
    for text, response in zip(texts, responses, strict=True):
        [prediction] = response.json()["predictions"]
        assert prediction["text"] == text and prediction["label"] == ("pos" if "good" in text else "neg")

    def added(name: str, **labels: str) -> float:
        return sample_value(after, f"finetune_kit_serve_batch_size_{name}", **labels) - sample_value(
            before, f"finetune_kit_serve_batch_size_{name}", **labels
        )

    assert added("sum") == 16  # every text went through exactly one forward pass
    assert added("count") < 16  # ... and the 16 one-text requests shared them
    assert added("bucket", le="1.0") < added("count")  # the histogram shows batches above 1


BAD_PREDICTS = [
    ("{not json", "body: not valid JSON"),
    ({}, "texts: required"),
    ({"texts": "one text"}, "texts: input should be a valid list"),
    ({"texts": ["fine", 3]}, "texts[1]: must be a string"),
    ({"texts": ["fine", ["a", "word", "list"]]}, "texts[1]: must be a string; word lists are for NER runs"),
    ({"texts": ["x" * (MAX_CHARS + 1)]}, f"texts[0]: {MAX_CHARS + 1} characters; at most {MAX_CHARS}"),
    ({"texts": []}, "texts: empty; send at least one text"),
    ({"texts": ["fine"] * (MAX_BATCH + 1)}, f"texts: {MAX_BATCH + 1} texts; at most {MAX_BATCH} per request"),
    ({"texts": ["fine"], "text_pairs": ["ok"]}, "text_pairs: this run classifies single texts"),
    ({"texts": ["fine"], "label": "pos"}, "label: extra inputs are not permitted"),
]


@pytest.mark.parametrize(("body", "message"), BAD_PREDICTS)
def test_a_bad_predict_request_is_a_400_naming_the_field(classifier, body, message):
    client, _ = classifier
    sent = (
        {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    )
    response = client.post("/predict", **sent)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(message), error
    assert "\n" not in error["message"]
    assert client.get("/health").status_code == 200


def test_routes_the_run_does_not_serve_are_refused_in_openai_shape(classifier):
    client, _ = classifier
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400
    assert chat.json()["error"]["message"] == (
        "/v1/chat/completions: serves instruction-tuned runs (sft, preference, grpo); "
        "this run (toy) is a classification run; POST /predict"
    )
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "GET /nowhere: Not Found"
    assert client.get("/predict").status_code == 405


def test_a_failure_inside_the_model_is_a_500_and_the_server_goes_on(classifier, monkeypatch):
    client, _ = classifier

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")  # what a real failure looks like from the route

    monkeypatch.setattr(BertForSequenceClassification, "forward", broken)
    failed = client.post("/predict", json={"texts": ["a good film"]})
    assert failed.status_code == 500
    assert failed.json()["error"] == {
        "message": "inference failed: CUDA out of memory",
        "type": "server_error",
        "param": None,
    }
    monkeypatch.undo()
    again = client.post("/predict", json={"texts": ["a good film"]})
    assert again.status_code == 200 and again.json()["predictions"][0]["label"] == "pos"


def test_metrics_count_requests_errors_latency_and_energy(classifier):
    client, _ = classifier
    assert client.post("/predict", json={"texts": ["good"]}).status_code == 200
    assert client.post("/predict", json={"texts": []}).status_code == 400
    samples = metric_samples(client)
    requests = samples["finetune_kit_serve_requests"]
    assert sample_value(requests, "finetune_kit_serve_requests_total", route="/predict", status="200") >= 1
    assert sample_value(requests, "finetune_kit_serve_requests_total", route="/predict", status="400") >= 1
    errors = samples["finetune_kit_serve_errors"]
    assert sample_value(errors, "finetune_kit_serve_errors_total", route="/predict", type="invalid_request_error") >= 1
    latency = samples["finetune_kit_serve_request_duration_seconds"]
    assert sample_value(latency, "finetune_kit_serve_request_duration_seconds_count", route="/predict") >= 2
    energy = sample_value(samples["finetune_kit_serve_energy_kwh"], "finetune_kit_serve_energy_kwh_total")
    grams = sample_value(samples["finetune_kit_serve_co2eq_grams"], "finetune_kit_serve_co2eq_grams_total")
    assert energy > 0 and grams > 0


def test_ner_runs_take_texts_or_word_lists(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-ner")
    training = {"epochs": 1, "batch_size": 8, "max_length": 32, "precision": "fp32"}
    recipe = ner_recipe(tiny_bert, folder, folder / "run", rows=(48, 8), training=training)
    run_dir = train_run(recipe, folder)
    with serving(run_dir) as (client, _):
        response = client.post("/predict", json={"texts": ["a superb story and it was dull", ["the", "awful", "cast"]]})
        assert response.status_code == 200, response.text
        words = [["a", "superb", "story", "and", "it", "was", "dull"], ["the", "awful", "cast"]]
        expected = open_run(run_dir).predict(Dataset.from_dict({"tokens": words}))
        assert response.json()["predictions"] == expected
        empty = client.post("/predict", json={"texts": ["   "]})
        assert empty.status_code == 400 and empty.json()["error"]["message"].startswith("texts[0]: no words")


@pytest.mark.unit
def test_pair_classification_requests_need_one_second_text_per_text():
    inputs = PredictInputs(["premise", "hypothesis"], words=False, max_rows=4, max_chars=50)
    rows = inputs.rows(PredictRequest(texts=["a dog runs", "it rains"], text_pairs=["an animal moves", "it is dry"]))
    assert rows == [
        {"premise": "a dog runs", "hypothesis": "an animal moves"},
        {"premise": "it rains", "hypothesis": "it is dry"},
    ]
    for request, message in [
        (PredictRequest(texts=["a"]), "text_pairs: required: this run classifies pairs of texts"),
        (PredictRequest(texts=["a", "b"], text_pairs=["c"]), "text_pairs: 1 second texts for 2 texts"),
        (PredictRequest(texts=["a"], text_pairs=["x" * 51]), "text_pairs[0]: 51 characters; at most 50"),
    ]:
        with pytest.raises(ApiError) as refused:
            inputs.rows(request)
        assert refused.value.status == 400 and refused.value.message.startswith(message)


# -- /v1/chat/completions -------------------------------------------------------------------------
CONVERSATION = [{"role": "user", "content": "Sentiment of: a superb film"}]


def test_chat_completion_is_openai_shaped(chatbot):
    client, _ = chatbot
    response = client.post("/v1/chat/completions", json={"model": "any", "messages": CONVERSATION, "max_tokens": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny-chat" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5 and 1 <= usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-chat"


def test_a_streamed_reply_arrives_in_chunks_ending_with_done_and_matches_the_whole_reply(chatbot):
    client, _ = chatbot
    request = {"messages": CONVERSATION, "max_tokens": 12, "temperature": 0.8, "seed": 7}
    whole = client.post("/v1/chat/completions", json=request).json()
    streamed = {**request, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=streamed) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"]]
    assert len(pieces) >= 2
    assert "".join(pieces).strip() == whole["choices"][0]["message"]["content"]  # same seed, same reply
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == [whole["choices"][0]["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


# -- chat replies decoded in shared batches ---------------------------------------------------------
QUESTIONS = [f"Sentiment of: {'a superb' if i % 2 else 'an awful'} film {'and story ' * i}" for i in range(8)]


def openai_client(server: RunServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60, max_retries=0)


def ask(client: OpenAI, question: str, **settings) -> ChatCompletion:
    messages = [{"role": "user", "content": question}]
    return client.chat.completions.create(model="tiny-chat", messages=messages, **settings)


def decode_steps(client: httpx.Client) -> tuple[float, float]:
    """Decoding forward passes so far, and the replies they advanced (one token each)."""
    samples = metric_samples(client)["finetune_kit_serve_decode_batch_size"]
    return tuple(sample_value(samples, f"finetune_kit_serve_decode_batch_size_{name}") for name in ("count", "sum"))


def one_at_a_time(run_dir: Path, question: str, max_tokens: int) -> tuple[str, int]:
    """The greedy reply as `model.generate` writes it for this question alone: text and token count."""
    run = open_run(run_dir)
    chats = ChatCompletions(run, MAX_CHARS, max_batch=1)
    prompt = chats.prompt(ChatRequest(messages=[{"role": "user", "content": question}], max_tokens=max_tokens))
    ids = torch.tensor([prompt.ids])
    with torch.no_grad():
        output = run.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pad_token_id=run.tokenizer.pad_token_id,
            eos_token_id=chats.stops,
            max_new_tokens=max_tokens,
            do_sample=False,
        )
    new = output[0, len(prompt.ids) :]
    return run.tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)


def test_concurrent_chat_completions_share_decoding_passes_and_equal_the_replies_made_alone(chatbot, chat_run):
    client, server = chatbot
    settings = {"max_tokens": 48, "temperature": 0}
    before = decode_steps(client)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        replies = list(pool.map(lambda question: ask(openai_client(server), question, **settings), QUESTIONS))
    passes, advanced = (after - was for after, was in zip(decode_steps(client), before, strict=True))
    assert passes > 0 and advanced / passes > 1  # the 8 replies shared forward passes
    for question, reply in zip(QUESTIONS, replies, strict=True):
        text, tokens = one_at_a_time(chat_run, question, settings["max_tokens"])
        assert (reply.choices[0].message.content, reply.usage.completion_tokens) == (text, tokens)
        assert reply.choices[0].finish_reason == ("length" if tokens == settings["max_tokens"] else "stop")


def test_a_seeded_reply_is_the_same_alone_and_among_others(chatbot):
    _, server = chatbot
    settings = {"max_tokens": 24, "temperature": 0.9, "top_p": 0.95, "seed": 11}
    alone = ask(openai_client(server), QUESTIONS[3], **settings)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        others = [pool.submit(ask, openai_client(server), q, max_tokens=24, temperature=1.0) for q in QUESTIONS]
        among = pool.submit(ask, openai_client(server), QUESTIONS[3], **settings).result()
        assert all(other.result().choices for other in others)
    assert among.choices[0].message.content == alone.choices[0].message.content
    assert among.usage == alone.usage


def test_concurrent_streams_each_get_their_own_reply_piece_by_piece(chatbot):
    _, server = chatbot
    settings = {"max_tokens": 24, "temperature": 0}
    wholes = [ask(openai_client(server), question, **settings).choices[0].message.content for question in QUESTIONS]

    def streamed(question: str) -> list[str]:
        chunks = ask(openai_client(server), question, stream=True, **settings)
        return [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        streams = list(pool.map(streamed, QUESTIONS))
    for pieces, whole in zip(streams, wholes, strict=True):
        assert len(pieces) >= 2 and "".join(pieces).strip() == whole


def test_a_reply_whose_client_leaves_stops_decoding_and_frees_its_slot(chat_run):
    """A stream's client that leaves cancels its reply (`ReplyStream` sets it when the server closes the
    stream). The decoder is held at its third step until the reply is cancelled, so the check does not
    race a tiny model that decodes 200 tokens in a blink."""
    reached, released = threading.Event(), threading.Event()
    steps = []

    def hold_at_third_step(size: int) -> None:
        steps.append(size)
        if len(steps) == 3:
            reached.set()
            assert released.wait(60)

    chats = ChatCompletions(open_run(chat_run), MAX_CHARS, max_batch=1, on_step=hold_at_third_step)
    prompt = chats.prompt(ChatRequest(messages=[{"role": "user", "content": QUESTIONS[0]}], max_tokens=200))
    chats.start()
    try:
        left = Reply(prompt.ids, prompt.settings, chats.stops)
        chats.decoder.submit(left)
        assert reached.wait(60)
        left.cancelled.set()  # the client has gone
        released.set()
        assert left.done.wait(60) and left.error is None
        assert len(left.tokens) <= 4  # the first token, three steps, then retired: not 200
        after_it = chats.complete(chats.prompt(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=2)))
        assert after_it.completion_tokens >= 1  # the one slot came free for the next request
    finally:
        released.set()
        chats.stop()


BAD_CHATS = [
    ({}, "messages: required"),
    ({"messages": []}, "messages: list should have at least 1 item"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role: input should be 'system', 'user' or"),
    ({"messages": [{"role": "user"}]}, "messages[0].content: required"),
    ({"messages": CONVERSATION, "temperature": -1}, "temperature: input should be greater than or equal to 0"),
    ({"messages": CONVERSATION, "max_tokens": "many"}, "max_tokens: input should be a valid integer"),
    ({"messages": [*CONVERSATION, {"role": "assistant", "content": "ok"}]}, "messages[1].role: the last message"),
    ({"messages": [{"role": "user", "content": "x" * (MAX_CHARS + 1)}]}, f"messages[0].content: {MAX_CHARS + 1} char"),
    ({"messages": CONVERSATION, "max_tokens": 1000}, "messages: the conversation is"),
]


@pytest.mark.parametrize(("body", "message"), BAD_CHATS)
def test_a_bad_chat_request_is_a_400_naming_the_field(chatbot, body, message):
    client, _ = chatbot
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(message), error
    assert client.get("/health").json()["task"] == "sft"


def test_predict_on_a_chat_run_is_refused(chatbot):
    client, _ = chatbot
    response = client.post("/predict", json={"texts": ["hello"]})
    assert response.status_code == 400
    assert (
        "/predict: serves classification, NER, SetFit and embedding runs; this run (tiny-chat) is a sft run"
        in response.text
    )


# -- the command ----------------------------------------------------------------------------------
def test_serve_command_prints_the_url_and_on_ctrl_c_what_it_served_and_spent(classification_run):
    command = [sys.executable, "-m", "finetune_kit", "serve", str(classification_run), "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        assert banner.startswith(f"serving {classification_run} (classification, pytorch) at http://127.0.0.1:")
        with httpx.Client(base_url=banner.split(" at ")[1].strip(), timeout=60) as client:
            wait_for_health(client)
            assert client.post("/predict", json={"texts": ["good", "bad"]}).status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("served 1 requests (0 refused or failed), 2 texts in 1 batches; energy ")
    assert "g CO2eq" in summary and "(France)" in summary


def test_serve_refuses_what_it_cannot_serve_in_one_line(classification_run, chat_run, cli):
    result = cli("serve", classification_run, "--port", "0", "--backend", "onnx")
    assert result.exit_code == 2
    assert result.error_lines == [
        f"error: {classification_run}: not exported (no {classification_run / 'onnx' / 'model.onnx'}); "
        f"run `finetune-kit export {classification_run} --format onnx` first"
    ]
    result = cli("serve", chat_run, "--port", "0", "--backend", "onnx")
    assert result.exit_code == 2
    assert "ONNX export covers classification, NER and embedding runs" in result.error_lines[0]
    result = cli("serve", classification_run, "--backend", "tpu")
    assert result.exit_code == 2 and "'tpu' is not one of" in " ".join(result.stderr.split())
    if not torch.cuda.is_available():
        result = cli("serve", chat_run, "--port", "0", "--chat-precision", "fp16")
        assert result.exit_code == 2
        assert result.error_lines == ["error: --chat-precision fp16: needs a GPU; on a CPU use bf16 or fp32"]


def test_runs_it_has_no_route_for_are_refused_at_start(tiny_gpt2, tmp_path, cli):
    lines = tmp_path / "train.txt"
    lines.write_text("".join(row["text"] + "\n" for row in toy_sentiment_rows(40)), encoding="utf-8")
    recipe = {
        "task": "causal-lm",
        "model": {"checkpoint": str(tiny_gpt2)},
        "data": {"train": str(lines)},
        "training": {"epochs": 1, "batch_size": 8, "max_length": 32, "precision": "fp32"},
        "generation": {"max_new_tokens": 8},
        "emissions": {"enabled": False},
        "output_dir": str(tmp_path / "run"),
    }
    run_dir = train_run(recipe, tmp_path)
    result = cli("serve", run_dir, "--port", "0")
    assert result.exit_code == 2
    assert result.error_lines == [
        f"error: {run_dir}: serve takes classification, NER, SetFit, embedding, reward, sft, preference and "
        "grpo runs; this is a causal-lm run (use finetune-kit predict or generate)"
    ]


def test_the_onnx_backend_serves_the_exported_graph(classification_run, tmp_path, cli):
    run_dir = shutil.copytree(classification_run, tmp_path / "run")  # the export goes into the run folder
    assert cli("export", run_dir, "--format", "onnx").exit_code == 0
    texts = ["a superb and brilliant film", "the plot was awful and dull"]
    with serving(run_dir, backend="onnx") as (client, _):
        assert client.get("/health").json()["backend"] == "onnx"
        served = client.post("/predict", json={"texts": texts}).json()["predictions"]
    exported = open_run(run_dir, "onnx").predict(Dataset.from_dict({"text": texts}))
    assert served == exported and [p["label"] for p in served] == ["pos", "neg"]


def test_serve_refuses_a_busy_port_and_a_missing_run(classification_run, tmp_path, cli):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("serve", classification_run, "--port", port)
    assert result.exit_code == 2
    assert result.error_lines == [
        f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use); choose another --port"
    ]
    result = cli("serve", tmp_path / "nothing", "--port", "0")
    assert result.exit_code == 2 and "not a finished run folder" in result.error_lines[0]
