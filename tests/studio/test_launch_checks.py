"""The launch API before any process: the recipe list and form, the CLI's checks of an override, nothing
outside the recipe folders, no file outside the studio's folders through an override, and no resume of a run
that would not continue where it is."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from finetune_kit.studio import StudioSettings
from tests.builders import classification_recipe, toy_sentiment_rows, write_jsonl
from tests.studio.clients import studio_client

pytestmark = pytest.mark.unit


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A recipes folder with one valid recipe (`0/toy.yaml`), a runs folder, and a recipe outside both."""
    recipes, runs = tmp_path / "recipes", tmp_path / "runs"
    data = {"train": write_jsonl(tmp_path / "data" / "train.jsonl", toy_sentiment_rows(20))}
    recipe = classification_recipe(tmp_path / "model", data, tmp_path / "elsewhere" / "toy")
    recipes.mkdir()
    (recipes / "toy.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(recipe))
    return recipes, runs


@pytest.fixture
def client(folders: tuple[Path, Path]) -> TestClient:
    recipes, runs = folders
    return studio_client(StudioSettings.create([runs], [recipes]))


def test_lists_recipes_recursively_with_their_task_and_says_why_one_cannot_be_read(folders, client) -> None:
    recipes, _ = folders
    (recipes / "nested").mkdir()
    (recipes / "nested" / "broken.yaml").write_text("task: [unclosed\n")
    (recipes / "nested" / "not_a_recipe.yaml").write_text("compute_environment: LOCAL_MACHINE\n")
    (recipes / ".hidden").mkdir()
    (recipes / ".hidden" / "toy.yaml").write_text("task: classification\n")
    (recipes / "notes.txt").write_text("not a recipe")

    listed = {recipe["id"]: recipe for recipe in client.get("/api/recipes").json()["recipes"]}

    assert list(listed) == ["0/nested/broken.yaml", "0/nested/not_a_recipe.yaml", "0/toy.yaml"]
    assert listed["0/toy.yaml"] == {
        "id": "0/toy.yaml",
        "file": "recipes/toy.yaml",
        "name": "toy",
        "task": "classification",
    }
    assert listed["0/nested/broken.yaml"]["error"].startswith("invalid YAML at line")
    assert listed["0/nested/not_a_recipe.yaml"]["error"].startswith("task: required; one of classification")


def test_the_form_has_every_scalar_field_with_the_file_value_default_and_help(client) -> None:
    form = client.get("/api/recipes/0/toy.yaml").json()
    fields = {field["path"]: field for field in form["fields"]}

    assert form["task"] == "classification" and form["name"] == "toy" and "task: classification" in form["yaml"]
    assert form["sections"][:4] == ["model", "tokenizer", "data", "training"]
    rate = fields["training.learning_rate"]
    assert rate["type"] == "number" and rate["value"] == 3e-3 and rate["default"] is None
    assert rate["description"].startswith("Unset: 5e-5 for full fine-tuning")
    assert fields["training.epochs"]["default"] == 3.0
    assert fields["training.precision"]["type"] == "choice"
    assert fields["training.precision"]["choices"] == ["auto", "fp32", "bf16", "fp16"]
    assert fields["training.report_to"]["type"] == "list" and fields["training.group_by_length"]["type"] == "boolean"
    assert fields["data.train"]["required"] and not fields["hub.repo_id"]["required"]  # no hub section: optional
    assert "task" not in fields and "sweep.trials" not in fields


def test_validate_names_the_run_folder_inside_the_first_runs_folder(client) -> None:
    response = client.post("/api/recipes/0/toy.yaml/validate", json={"overrides": {"name": "second"}})
    # The recipe's own output_dir keeps its last part ("toy"): the run is written in the studio's runs folder.
    assert response.json() == {"ok": True, "run_id": "0/toy", "output_dir": "toy"}
    response = client.post("/api/recipes/0/toy.yaml/validate", json={"overrides": {"output_dir": "x/renamed"}})
    assert response.json()["run_id"] == "0/renamed"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"training.learnig_rate": "1e-3"}, "training.learnig_rate", "unknown key; did you mean 'learning_rate'?"),
        ({"training.batch_size": "many"}, "training.batch_size", "Input should be a valid integer"),
        ({"training.learning_rate": 2}, "training.learning_rate", "Input should be less than 1 (got 2)"),
        ({"data.train": "nowhere/train.jsonl"}, "data.train", "file not found: nowhere/train.jsonl; check the path"),
        ({"name": ".studio", "output_dir": ""}, "name", "'.studio' cannot name a run folder"),
    ],
)
def test_a_bad_override_is_the_clis_one_line_error_beside_its_field_and_starts_nothing(
    folders, client, overrides, field, message
) -> None:
    _, runs = folders
    for action in ("validate", "estimate", "train"):
        response = client.post(f"/api/recipes/0/toy.yaml/{action}", json={"overrides": overrides})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field and error["message"].startswith(f"{field}: ")
        assert message in error["message"] and "\n" not in error["message"]
    assert client.get("/api/jobs").json() == {"jobs": []}
    assert [path.name for path in runs.iterdir()] == []


def test_a_run_folder_that_exists_is_refused_with_the_field_to_change(folders, client) -> None:
    _, runs = folders
    (runs / "toy").mkdir()
    error = client.post("/api/recipes/0/toy.yaml/train", json={}).json()["error"]
    assert error == {
        "field": "output_dir",
        "message": "output_dir: a run named 'toy' already exists; choose another output_dir",
    }
    (runs / "toy").rename(runs / "toy.partial")
    error = client.post("/api/recipes/0/toy.yaml/validate", json={}).json()["error"]
    assert "'toy' is a run being built or stopped" in error["message"]
    assert (
        client.post("/api/recipes/0/toy.yaml/validate", json={"overrides": {"output_dir": "other"}}).status_code == 200
    )


@pytest.mark.parametrize(
    "ident",
    ["0/..%2Fsecret.yaml", "0/%2e%2e/secret.yaml", "0//etc/hosts.yaml", "1/toy.yaml", "0/link.yaml", "0/toy.txt"],
)
def test_a_recipe_outside_the_recipe_folders_is_not_found_and_nothing_starts(folders, client, ident) -> None:
    recipes, _ = folders
    (recipes / "link.yaml").symlink_to(recipes.parent / "secret.yaml")
    (recipes / "toy.txt").write_text("task: classification\n")
    assert client.get(f"/api/recipes/{ident}").status_code == 404
    for action in ("validate", "estimate", "train"):
        assert client.post(f"/api/recipes/{ident}/{action}", json={}).status_code == 404
    assert "0/link.yaml" not in [recipe["id"] for recipe in client.get("/api/recipes").json()["recipes"]]
    assert client.get("/api/jobs").json() == {"jobs": []}


def test_jobs_and_runs_the_studio_does_not_know_answer_plainly(folders, client) -> None:
    recipes, runs = folders
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.post("/api/jobs/nope/stop").status_code == 404
    assert client.post("/api/runs/0/missing/export").status_code == 404
    assert client.post("/api/runs/0/%2e%2e/stop").status_code == 404
    (runs / "toy.partial").mkdir()
    (runs / "toy.partial" / "recipe.yaml").write_text((recipes / "toy.yaml").read_text())
    assert client.post("/api/runs/0/toy/stop").json() == {
        "detail": "no training of run 0/toy started by this studio is running"
    }
    assert client.post("/api/runs/0/toy/export").status_code == 409  # not finished


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"data.train": "/etc/passwd", "data.format": "csv"}, "data.train"),
        ({"data.validation": "/etc/no-such-file.csv"}, "data.validation"),  # missing or not: the same answer
        ({"data.validation": "../data/train.jsonl"}, "data.validation"),  # from the recipe's folder: out of it
        ({"data.test": "~/train.jsonl"}, "data.test"),
        ({"data.test": "LINK"}, "data.test"),  # inside the recipes folder, leading out
        ({"model.checkpoint": "/root"}, "model.checkpoint"),
        ({"data": {"train": "/etc/passwd"}}, "data.train"),  # a whole section given
        ({"training.tracking_uri": "sqlite:////tmp/elsewhere.db"}, "training.tracking_uri"),
    ],
)
def test_an_override_naming_a_path_outside_the_studios_folders_is_refused_and_starts_nothing(
    folders, client, overrides, field
) -> None:
    recipes, runs = folders
    (recipes / "link.jsonl").symlink_to(recipes.parent / "data" / "train.jsonl")
    overrides = {key: str(recipes / "link.jsonl") if value == "LINK" else value for key, value in overrides.items()}
    for action in ("validate", "estimate", "train"):
        response = client.post(f"/api/recipes/0/toy.yaml/{action}", json={"overrides": overrides})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field and error["message"].startswith(f"{field}: ")
        assert error["message"].endswith(f" is outside the studio's folders; put the file under {recipes}")
    assert client.get("/api/jobs").json() == {"jobs": []}
    assert [path.name for path in runs.iterdir()] == []


def test_an_override_naming_a_file_inside_the_studios_folders_or_a_hub_id_is_accepted(folders, client) -> None:
    """The recipe file's own values are trusted: its data and model lie outside both folders here."""
    recipes, runs = folders
    (recipes / "data").mkdir()
    shutil.copy(recipes.parent / "data" / "train.jsonl", recipes / "data" / "inside.jsonl")
    (runs / "shared").mkdir()
    shutil.copy(recipes.parent / "data" / "train.jsonl", runs / "shared" / "valid.jsonl")
    for overrides in (
        {"data.validation": str(recipes / "data" / "inside.jsonl")},
        {"data.validation": "data/inside.jsonl"},  # relative to the recipe's folder
        {"data.validation": str(runs / "shared" / "valid.jsonl"), "data.test": "./data/../data/inside.jsonl"},
        {"data.validation": "stanfordnlp/sst2", "model.checkpoint": "prajjwal1/bert-tiny"},
        {"data.train": str(recipes.parent / "data" / "train.jsonl")},  # the file's own value, given again
    ):
        response = client.post("/api/recipes/0/toy.yaml/validate", json={"overrides": overrides})
        assert response.status_code == 200, (overrides, response.text)


def stopped_run(runs: Path, output_dir: str, host: str) -> Path:
    """A run stopped at a step, as `finetune-kit train` leaves it, made elsewhere (by the CLI, on `host`)."""
    partial = runs / "cli-run.partial"
    partial.mkdir(parents=True)
    recipe = classification_recipe(runs / "model", {"train": runs / "train.jsonl"}, Path(output_dir))
    (partial / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "name": "cli-run"}))
    (partial / "stopped.json").write_text(json.dumps({"step": 5, "time": 1.0}))
    (partial / "process.json").write_text(json.dumps({"pid": 2**22 + 1, "host": host, "started": 1.0}))
    return partial


def test_a_run_started_from_another_folder_is_not_resumed_and_the_command_to_run_instead_is_said(
    folders, client
) -> None:
    _, runs = folders
    partial = stopped_run(runs, "runs/cli-run", socket.gethostname())  # relative: from the runs folder's parent
    saved = partial.resolve() / "recipe.yaml"

    response = client.post("/api/runs/0/cli-run/resume")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "this run was started from another folder; continue it with: "
        f"cd {runs.resolve().parent} && finetune-kit train {saved} --resume"
    )
    moved = yaml.safe_load(saved.read_text()) | {"output_dir": "/elsewhere/cli-run"}
    saved.write_text(yaml.safe_dump(moved))
    detail = client.post("/api/runs/0/cli-run/resume").json()["detail"]
    assert detail.startswith("this run was started from another folder; continue it with: finetune-kit train ")
    assert detail.endswith("from the folder it was started in (its recipe writes to /elsewhere/cli-run)")
    assert client.get("/api/jobs").json() == {"jobs": []}


def test_a_run_started_on_another_machine_is_resumed_there(folders, client) -> None:
    _, runs = folders
    stopped_run(runs, str(runs / "cli-run"), "another-machine")

    response = client.post("/api/runs/0/cli-run/resume")

    assert response.status_code == 409
    assert response.json() == {"detail": "this run was started on another-machine; resume it there"}
    assert client.get("/api/jobs").json() == {"jobs": []}
