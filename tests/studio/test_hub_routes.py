"""The studio's Hub routes against the loopback test Hub (tests/hub_server.py) with the real huggingface_hub
client: search, the token kept in memory only, and pushing a real finished run."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from finetune_kit.studio import StudioSettings
from tests.builders import classification_recipe, toy_sentiment_rows, train_run, write_jsonl
from tests.conftest import HUB_PORT
from tests.hub_server import HubServer
from tests.studio.clients import studio_client

TOKEN = "hf_studioTESTtoken7777secret"
REPO = "alice/studio-toy"


@pytest.fixture
def hub(tmp_path: Path):
    with HubServer(tmp_path / "hub-storage", {TOKEN: "alice", "hf_bobTESTtoken": "bob"}, port=HUB_PORT) as server:
        yield server


@pytest.fixture(scope="module")
def finished_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("studio-push")
    data = {
        "train": write_jsonl(work / "data" / "train.jsonl", toy_sentiment_rows(80, seed=1)),
        "validation": write_jsonl(work / "data" / "validation.jsonl", toy_sentiment_rows(20, seed=2)),
    }
    return train_run(classification_recipe(tiny_bert, data, work / "runs" / "toy", epochs=1), work)


@pytest.fixture
def runs_root(finished_run: Path, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(finished_run, root / "toy")
    return root


@pytest.fixture
def client(runs_root: Path, tmp_path: Path) -> TestClient:
    (tmp_path / "recipes").mkdir()
    return studio_client(StudioSettings.create([runs_root], [tmp_path / "recipes"]))


def one_line(response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    return detail


def test_the_token_is_checked_then_kept_and_never_sent_back(hub, client) -> None:
    assert client.get("/api/hub/token").json() == {"set": False, "user": None}
    refused = client.post("/api/hub/token", json={"token": "hf_wrongTESTtoken"})
    assert refused.status_code == 400 and "rejected this token" in one_line(refused)
    assert client.post("/api/hub/token", json={"token": " "}).status_code == 422
    accepted = client.post("/api/hub/token", json={"token": TOKEN})
    assert accepted.json() == {"set": True, "user": "alice"}
    assert client.get("/api/hub/token").json() == {"set": True, "user": "alice"}
    assert TOKEN not in repr(client.app.state.hub_login)
    assert client.delete("/api/hub/token").json() == {"set": False, "user": None}


def test_push_without_a_token_asks_for_one(hub, client) -> None:
    response = client.post("/api/runs/0/toy/push", json={"repo_id": REPO})
    assert response.status_code == 401 and one_line(response) == "enter a Hub token first"
    assert not any("/commit/" in request for request in hub.state.requests)


def test_push_publishes_the_run_and_the_token_stays_in_memory(
    hub, client, runs_root, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = [client.post("/api/hub/token", json={"token": TOKEN}).text]
    pushed = client.post("/api/runs/0/toy/push", json={"repo_id": REPO, "private": True})
    bodies.append(pushed.text)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["url"].startswith(f"{hub.url}/{REPO}/commit/")
    landed = {path.name for path in hub.state.files_dir(REPO, "main").iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "recipe.yaml", "metrics.json"} <= landed
    assert hub.state.repos[REPO].private

    bodies += [client.get(path).text for path in ("/api/hub/token", "/api/runs", "/api/runs/0/toy")]
    captured = capfd.readouterr()
    assert all(TOKEN not in text for text in [*bodies, caplog.text, captured.out, captured.err])
    assert "HF_TOKEN" not in os.environ
    for file in (path for path in runs_root.parent.rglob("*") if path.is_file()):
        assert TOKEN.encode() not in file.read_bytes(), file


@pytest.mark.parametrize(
    ("run_id", "repo_id", "status", "message"),
    [
        ("0/toy", "bob/not-mine", 502, "may not write to bob/not-mine (403)"),
        ("0/toy", "no-namespace", 422, "repo_id: give namespace/name"),
        ("0/toy", "alice/bad name", 422, "repo_id:"),
        ("0/absent", REPO, 404, "no run '0/absent'"),
        ("1/toy", REPO, 404, "no run '1/toy'"),
        ("0/../toy", REPO, 404, "no run"),
    ],
)
def test_refused_pushes_are_one_line_and_commit_nothing(hub, client, run_id, repo_id, status, message) -> None:
    client.post("/api/hub/token", json={"token": TOKEN})
    response = client.post(f"/api/runs/{run_id}/push", json={"repo_id": repo_id})
    assert response.status_code == status and message in one_line(response)
    assert not any("/commit/" in request for request in hub.state.requests)


def test_an_unfinished_run_is_not_pushed(hub, client, runs_root) -> None:
    shutil.copytree(runs_root / "toy", runs_root / "later.partial")
    client.post("/api/hub/token", json={"token": TOKEN})
    response = client.post("/api/runs/0/later/push", json={"repo_id": REPO})
    assert response.status_code == 409 and "not a finished run folder" in one_line(response)


def test_search_lists_models_within_the_grams(hub, client) -> None:
    hub.state.seed_model("big/heavy-model", "pipeline_tag: text-classification\nco2_eq_emissions: 5000", 900)
    hub.state.seed_model("big/no-card", None, 800)
    hub.state.seed_model("lab/kilo-model", "pipeline_tag: text-classification\nco2_eq_emissions: 0.05 kg", 600)
    hub.state.seed_model("lab/light-model", "co2_eq_emissions:\n  emissions: 3\n  source: codecarbon", 500)
    found = client.get("/api/hub/search", params={"max_co2": 100}).json()
    assert [m["model_id"] for m in found["models"]] == ["lab/kilo-model", "lab/light-model"]
    assert found["scanned"] == 4 and found["without_emissions"] == 1
    assert found["models"][0]["emissions_g"] == pytest.approx(50.0)
    narrowed = client.get("/api/hub/search", params={"max_co2": 100, "task": "text-classification", "limit": 1})
    assert [m["model_id"] for m in narrowed.json()["models"]] == ["lab/kilo-model"]
    assert client.get("/api/hub/search", params={"max_co2": 1, "min_co2": 5}).status_code == 422
    assert client.get("/api/hub/search").status_code == 422


def test_token_check_with_the_hub_unreachable_is_a_bad_gateway(client) -> None:
    response = client.post("/api/hub/token", json={"token": TOKEN})  # nothing listens on the endpoint here
    assert response.status_code == 502 and "hub: cannot reach http://127.0.0.1:" in one_line(response)
    assert client.get("/api/hub/token").json() == {"set": False, "user": None}
