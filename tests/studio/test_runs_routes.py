"""The runs API over a real finished run: the list, a run's files, its log live, and nothing outside the folders."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from finetune_kit.errors import UserError
from finetune_kit.runs.folder import Layout
from finetune_kit.studio import StudioSettings
from tests.builders import classification_recipe, train_run
from tests.studio.clients import studio_client


@pytest.fixture(scope="module")
def finished_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.builders import toy_sentiment_rows, write_jsonl

    work = tmp_path_factory.mktemp("studio-run")
    data = {
        "train": write_jsonl(work / "data" / "train.jsonl", toy_sentiment_rows(120, seed=1)),
        "validation": write_jsonl(work / "data" / "validation.jsonl", toy_sentiment_rows(40, seed=2)),
    }
    recipe = classification_recipe(tiny_bert, data, work / "runs" / "toy", epochs=1, logging_steps=3)
    return train_run(recipe, work)


@pytest.fixture
def runs_root(finished_run: Path, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(finished_run, root / "toy")
    return root


def client_for(runs_root: Path, tmp_path: Path, **options) -> TestClient:
    (tmp_path / "recipes").mkdir(exist_ok=True)
    return studio_client(StudioSettings.create([runs_root], [tmp_path / "recipes"], **options))


def as_partial(runs_root: Path, name: str, **files: dict) -> Path:
    """A copy of the finished run as it looked while being built: no metrics, the model not yet saved."""
    partial = runs_root / f"{name}.partial"
    shutil.copytree(runs_root / "toy", partial)
    for done in (Layout.METRICS, Layout.EMISSIONS, Layout.CARD):
        (partial / done).unlink()
    shutil.rmtree(partial / Layout.MODEL)
    for file, content in files.items():
        (partial / file.replace("_", ".")).write_text(json.dumps(content))
    return partial


def test_lists_a_finished_run_with_its_metric_and_grams(runs_root: Path, tmp_path: Path) -> None:
    runs = client_for(runs_root, tmp_path).get("/api/runs").json()["runs"]
    assert [run["id"] for run in runs] == ["0/toy"]
    run = runs[0]
    assert run["status"] == "finished" and run["task"] == "classification"
    assert run["main_metric"] == "accuracy" and 0.0 <= run["metric"] <= 1.0
    assert run["emissions_g"] > 0 and run["energy_kwh"] > 0 and run["duration_s"] > 0
    assert run["base_model"] and run["chat"] is False


def test_run_detail_carries_recipe_metrics_emissions_and_the_card(runs_root: Path, tmp_path: Path) -> None:
    detail = client_for(runs_root, tmp_path).get("/api/runs/0/toy").json()
    assert "task: classification" in detail["recipe"]
    assert detail["metrics"]["main_metric"] == "accuracy"
    assert detail["emissions"]["emissions_g"] == pytest.approx(detail["summary"]["emissions_g"])
    assert "<h" in detail["card_html"] and "co2_eq_emissions" not in detail["card_html"]  # header stripped
    assert 'src="/api/runs/0/toy/training_curve.png"' in detail["card_html"]


def test_the_card_curve_image_is_served_and_no_other_file(runs_root: Path, tmp_path: Path) -> None:
    client = client_for(runs_root, tmp_path)
    image = client.get("/api/runs/0/toy/training_curve.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert client.get("/api/runs/0/toy/model.safetensors").status_code == 404


def test_a_hostile_card_is_shown_as_text_not_run(runs_root: Path, tmp_path: Path) -> None:
    card = runs_root / "toy" / Layout.CARD
    card.write_text(
        card.read_text()
        + '\n<script>alert(1)</script> <img src=x onerror="alert(2)">\n[click](javascript:alert(3)) '
        + "[also](&#1;javascript:alert(4))\n"
    )
    shown = client_for(runs_root, tmp_path).get("/api/runs/0/toy").json()["card_html"]
    assert "<script" not in shown and "<img src=x" not in shown and 'href="javascript' not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown  # the text stays readable


def test_statuses_of_runs_being_built_stopped_killed_or_stopped_on_budget(runs_root: Path, tmp_path: Path) -> None:
    gone = 2**22 + 12345  # above the default pid_max: no such process
    as_partial(runs_root, "live", process_json={"pid": os.getpid(), "host": os.uname().nodename})
    as_partial(runs_root, "killed", process_json={"pid": gone, "host": os.uname().nodename})
    as_partial(runs_root, "stopped", stopped_json={"step": 3, "time": time.time()})
    budget = runs_root / "budget"
    shutil.copytree(runs_root / "toy", budget)
    metrics = json.loads((budget / Layout.METRICS).read_text())
    (budget / Layout.METRICS).write_text(json.dumps(metrics | {"stopped_on_budget": {"limit": "max_co2_g"}}))
    statuses = {run["id"]: run["status"] for run in client_for(runs_root, tmp_path).get("/api/runs").json()["runs"]}
    assert statuses == {
        "0/toy": "finished",
        "0/live": "running",
        "0/killed": "failed",
        "0/stopped": "stopped",
        "0/budget": "stopped on budget",
    }
    live = client_for(runs_root, tmp_path).get("/api/runs/0/live").json()["summary"]
    assert live["emissions_g"] is None or live["emissions_g"] >= 0  # readings were dropped when the copy finished


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/0/../../etc",
        "/api/runs/0/..%2f..%2fetc/log",
        "/api/runs/0/%2e%2e/%2e%2e/etc/log",
        "/api/runs/1/toy",
        "/api/runs/x/toy",
        "/api/runs/0//etc/passwd/log",
        "/api/runs/0/toy.partial",
        "/api/runs/0/outside/log",
    ],
)
def test_nothing_outside_the_runs_folders_is_served(runs_root: Path, tmp_path: Path, path: str) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(runs_root / "toy", outside)
    (runs_root / "outside").symlink_to(outside)
    response = client_for(runs_root, tmp_path).get(path)
    assert 400 <= response.status_code < 500
    assert "task: classification" not in response.text


def test_links_leading_out_of_a_run_or_the_runs_folder_are_not_followed(runs_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(runs_root / "toy", outside)
    (outside / Layout.RECIPE).write_text("task: classification\nname: SECRET-OUTSIDE\n")
    (runs_root / "linked.partial").symlink_to(outside)  # a partial sibling leading out
    (runs_root / "linked").mkdir()
    (runs_root / "toy" / Layout.CURVE_IMAGE).unlink()
    (runs_root / "toy" / Layout.CURVE_IMAGE).symlink_to(outside / Layout.RECIPE)  # a file leading out
    (runs_root / ".studio" / "x").mkdir(parents=True)
    client = client_for(runs_root, tmp_path)
    for path in ("/api/runs/0/linked", "/api/runs/0/linked/log", "/api/runs/0/.studio", "/api/runs/0/.studio/x"):
        assert client.get(path).status_code == 404, path
    assert client.get("/api/runs/0/toy/training_curve.png").status_code == 404
    assert "SECRET-OUTSIDE" not in client.get("/api/runs").text


def test_a_pid_reused_by_another_process_is_not_the_run(runs_root: Path, tmp_path: Path) -> None:
    host = os.uname().nodename
    as_partial(runs_root, "reused", process_json={"pid": os.getpid(), "host": host, "started": 12.0})
    as_partial(runs_root, "elsewhere", process_json={"pid": 1, "host": "another-machine"})
    statuses = {run["id"]: run["status"] for run in client_for(runs_root, tmp_path).get("/api/runs").json()["runs"]}
    assert statuses["0/reused"] == "failed"
    assert statuses["0/elsewhere"] == "running"  # another machine's run, written to just now


def test_pages_of_other_sites_cannot_reach_the_studio(runs_root: Path, tmp_path: Path) -> None:
    client = client_for(runs_root, tmp_path)
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    rebound = client.get("/api/runs", headers={"Host": "attacker.example:7860"})  # DNS rebinding
    assert rebound.status_code == 400 and "toy" not in rebound.text
    posted = client.post("/api/runs/0/toy/export", headers={"Origin": "http://attacker.example"})
    assert posted.status_code == 403
    with pytest.raises(UserError, match="--token"):
        StudioSettings.create([runs_root], [tmp_path / "recipes"], host="0.0.0.0", token="")


def test_a_logged_step_reaches_the_open_stream_and_it_ends_when_the_run_moves_into_place(
    runs_root: Path, tmp_path: Path
) -> None:
    partial = as_partial(runs_root, "growing", process_json={"pid": os.getpid(), "host": os.uname().nodename})
    log = partial / Layout.LOG
    already = len(log.read_text().splitlines())
    events: list[tuple[str, dict, float]] = []

    def write_then_finish() -> None:
        time.sleep(1.0)
        with log.open("a") as handle:
            handle.write(json.dumps({"time": time.time(), "step": 999, "loss": 0.125}) + "\n")
        time.sleep(1.5)
        shutil.copytree(runs_root / "toy", runs_root / "growing.tmp")
        shutil.rmtree(partial)
        (runs_root / "growing.tmp").rename(runs_root / "growing")

    writer = threading.Thread(target=write_then_finish)
    client = client_for(runs_root, tmp_path)
    started = time.monotonic()
    writer.start()
    with client.stream("GET", f"/api/runs/0/growing/events?after={already}") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: ")), time.monotonic() - started))
    writer.join()
    logged = [data for kind, data, _ in events if kind == "log"]
    statuses = [data["status"] for kind, data, _ in events if kind == "status"]
    assert [entry["step"] for entry in logged[:1]] == [999]  # only lines after the ones the page had
    assert statuses[0] == "running" and statuses[-1] == "finished"


def test_beyond_loopback_every_request_needs_the_token(runs_root: Path, tmp_path: Path) -> None:
    client = client_for(runs_root, tmp_path, host="0.0.0.0")
    token = client.app.state.settings.token
    assert token and len(token) >= 24
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs?token=wrong").status_code == 401
    entered = client.get(f"/?token={token}", follow_redirects=False)
    assert entered.status_code == 303 and "token" not in entered.headers["location"]
    assert client.get("/api/runs").status_code == 200  # the cookie carries it now
    bearer = client_for(runs_root, tmp_path, host="0.0.0.0", token="s3cret-token-for-tests")
    assert bearer.get("/api/runs", headers={"Authorization": "Bearer s3cret-token-for-tests"}).status_code == 200
