"""The studio's chat over a real tiny instruction-tuned run: what it lists, a reply streamed as events, the
base checkpoint beside the run, and nothing loaded that the studio does not list."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from finetune_kit.runs.folder import Layout
from finetune_kit.studio import StudioSettings, create_app
from finetune_kit.studio.chat_routes import ChatHost
from tests.builders import toy_chat_rows, train_run, write_jsonl
from tests.studio.clients import LOOPBACK_URL, studio_client

QUESTION = [{"role": "user", "content": "Sentiment of: a warm and funny film"}]


@pytest.fixture(scope="module")
def chat_run(tiny_chat_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Barely trained: the tiny model still rambles, so a reply spans several streamed pieces."""
    work = tmp_path_factory.mktemp("studio-chat")
    recipe = {
        "task": "sft",
        "name": "tiny-chat",
        "model": {"checkpoint": str(tiny_chat_llama)},
        "data": {
            "train": str(write_jsonl(work / "train.jsonl", toy_chat_rows(16, seed=1))),
            "validation": str(write_jsonl(work / "validation.jsonl", toy_chat_rows(4, seed=2))),
        },
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-5, "max_length": 64, "precision": "fp32"},
        "generation": {"max_new_tokens": 12},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(work / "runs" / "tiny-chat"),
    }
    return train_run(recipe, work)


@pytest.fixture
def app(chat_run: Path, tmp_path: Path) -> FastAPI:
    root = tmp_path / "runs"
    shutil.copytree(chat_run, root / "tiny-chat")
    (tmp_path / "recipes").mkdir()
    return create_app(StudioSettings.create([root], [tmp_path / "recipes"]))


def events(text: str) -> list[tuple[str, dict]]:
    """The server-sent events of a whole stream, as (event name, data)."""
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((fields["event"], json.loads(fields["data"])))
    return found


def ask(client: TestClient, model: str, **body) -> list[tuple[str, dict]]:
    response = client.post("/api/chat", json={"model": model, "messages": QUESTION, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return events(response.text)


def test_lists_finished_chat_runs_and_the_checkpoint_each_started_from(app, tiny_chat_llama, tmp_path) -> None:
    unfinished = tmp_path / "runs" / "later.partial"
    unfinished.mkdir()
    shutil.copy(tmp_path / "runs" / "tiny-chat" / Layout.RECIPE, unfinished)
    models = TestClient(app, base_url=LOOPBACK_URL).get("/api/chat/models").json()["models"]
    assert models == [
        {"id": "0/tiny-chat", "label": "tiny-chat", "kind": "run"},
        {"id": f"base:{tiny_chat_llama}", "label": str(tiny_chat_llama), "kind": "base"},
    ]


def test_a_reply_streams_as_tokens_then_done_with_its_seconds_and_grams(app) -> None:
    client = TestClient(app, base_url=LOOPBACK_URL)
    streamed = ask(client, "0/tiny-chat", max_new_tokens=8)
    names = [name for name, _ in streamed]
    assert names[-1] == "done" and set(names[:-1]) == {"token"} and len(names) > 2
    assert all(data["text"] for _, data in streamed[:-1])
    done = streamed[-1][1]
    assert done["reply"] == "".join(data["text"] for _, data in streamed[:-1]).strip()
    assert done["seconds"] > 0 and done["emissions_g"] > 0


def test_the_base_checkpoint_replaces_the_run_and_back(app, tiny_chat_llama) -> None:
    client = TestClient(app, base_url=LOOPBACK_URL)
    first = ask(client, "0/tiny-chat")[-1]
    assert ask(client, f"base:{tiny_chat_llama}")[-1][0] == "done"
    again = ask(client, "0/tiny-chat")[-1]
    assert first[0] == again[0] == "done" and again[1]["reply"] == first[1]["reply"]  # seeded: the same reply


def test_a_model_that_fails_to_load_is_one_error_event(app, tmp_path) -> None:
    broken = tmp_path / "runs" / "broken"
    shutil.copytree(tmp_path / "runs" / "tiny-chat", broken)
    (broken / Layout.MODEL / "model.safetensors").unlink()
    streamed = ask(TestClient(app, base_url=LOOPBACK_URL), "0/broken")
    assert [name for name, _ in streamed] == ["error"]
    assert "\n" not in streamed[0][1]["detail"] and streamed[0][1]["detail"]
    assert (
        ask(TestClient(app, base_url=LOOPBACK_URL), "0/tiny-chat")[-1][0] == "done"
    )  # the failure left the studio usable


@pytest.mark.unit
@pytest.mark.parametrize(
    "model",
    ["1/tiny-chat", "0/../tiny-chat", "0/tiny-chat.partial", "0/absent", "base:gpt2", "base:/etc", "base:"],
)
def test_only_listed_models_load(model: str, tmp_path: Path) -> None:
    (tmp_path / "runs" / "tiny-chat").mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    client = studio_client(StudioSettings.create([tmp_path / "runs"], [tmp_path / "recipes"]))
    response = client.post("/api/chat", json={"model": model, "messages": QUESTION})
    assert response.status_code == 404 and isinstance(response.json()["detail"], str)


def test_a_third_request_while_one_generates_and_one_waits_is_refused(app) -> None:
    app.state.chat_host = host = ChatHost()
    assert host.reserve() and host.reserve()
    response = TestClient(app, base_url=LOOPBACK_URL).post(
        "/api/chat", json={"model": "0/tiny-chat", "messages": QUESTION}
    )
    assert response.status_code == 409 and "another reply" in response.json()["detail"]


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app behind a real server on loopback: a client can leave in the middle of a stream."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_client_that_leaves_mid_reply_does_not_hold_the_model(app) -> None:
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        body = {"model": "0/tiny-chat", "messages": QUESTION, "max_new_tokens": 200}
        with client.stream("POST", "/api/chat", json=body) as response:
            assert next(response.iter_lines()) == "event: token"
        after = client.post("/api/chat", json={**body, "max_new_tokens": 4})
        assert events(after.text)[-1][0] == "done"
    host = app.state.chat_host
    assert host.reserve() and host.reserve()  # every request gave its turn back
