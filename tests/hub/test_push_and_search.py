"""Push a real run folder and search for it, with the real huggingface_hub client against the
loopback test server (tests/hub_server.py). Nothing in huggingface_hub is patched."""

import json

import pytest
from huggingface_hub import HfApi, ModelCard

from tests.builders import classification_recipe
from tests.hub.conftest import OTHER_TOKEN, TOKEN

REPO = "alice/toy-sentiment"


def test_push_uploads_everything_in_one_commit_and_reads_back(hub, trained_run, cli, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("push", trained_run, "--repo-id", REPO, "--commit-message", "first model")
    assert result.exit_code == 0, result.stderr
    assert f"{hub.url}/{REPO}/commit/" in result.stdout
    commits = [r for r in hub.state.requests if r.startswith(f"POST /api/models/{REPO}/commit/")]
    assert len(commits) == 1

    info = HfApi().model_info(REPO)
    files = {s.rfilename for s in info.siblings}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "recipe.yaml"} <= files
    assert {"metrics.json", "emissions.json", "training_curve.png"} <= files
    assert "training_args.bin" not in files

    emissions = json.loads((trained_run / "emissions.json").read_text())
    assert info.card_data["co2_eq_emissions"]["emissions"] == pytest.approx(emissions["emissions_g"], abs=1e-4)
    card = ModelCard.load(REPO)  # downloaded through the server's resolve route
    accuracy = json.loads((trained_run / "metrics.json").read_text())["validation"]["accuracy"]
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("validation", "accuracy")] == pytest.approx(accuracy, abs=1e-4)


def test_push_again_to_an_existing_repo_and_to_a_branch(hub, trained_run, cli, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli("push", trained_run, "--repo-id", REPO).exit_code == 0
    again = cli("push", trained_run, "--repo-id", REPO, "--revision", "experiment")
    assert again.exit_code == 0, again.stderr
    assert "README.md" in {s.rfilename for s in HfApi().model_info(REPO, revision="experiment").siblings}


@pytest.mark.parametrize(
    ("token", "repo", "expected"),
    [
        (None, REPO, "hub: the token was rejected (401)"),
        ("hf_wrongTESTtoken", REPO, "hub: the token was rejected (401)"),
        (OTHER_TOKEN, REPO, "hub: the token may not write to alice/toy-sentiment (403)"),
    ],
)
def test_refused_push_is_one_line_with_the_fix_and_commits_nothing(
    hub, trained_run, cli, monkeypatch, token, repo, expected
):
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    result = cli("push", trained_run, "--repo-id", repo)
    assert result.exit_code == 2
    assert len(result.error_lines) == 1 and expected in result.error_lines[0]
    assert not any("/commit/" in r for r in hub.state.requests)


def test_unreachable_hub(trained_run, cli, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # no server is listening on the endpoint's port here
    result = cli("push", trained_run, "--repo-id", REPO)
    assert result.exit_code == 2 and "hub: cannot reach http://127.0.0.1:" in result.error_lines[0]


def test_search_finds_light_models_leaves_heavy_ones_and_counts_missing_data(hub, trained_run, cli, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli("push", trained_run, "--repo-id", REPO).exit_code == 0
    # Listed first (most downloads): models the threshold must leave out or that state nothing.
    hub.state.seed_model("big/heavy-model", "pipeline_tag: text-classification\nco2_eq_emissions: 5000", 900)
    hub.state.seed_model("big/no-card", None, 800)
    hub.state.seed_model("big/empty-card", "license: mit", 700)
    hub.state.seed_model("lab/kilo-model", "pipeline_tag: text-classification\nco2_eq_emissions: 0.05 kg", 600)
    hub.state.seed_model("lab/tonne-model", "co2_eq_emissions:\n  emissions: 2\n  unit: kg", 500)

    result = cli("search", "--max-co2", "100", "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    grams = {m["model_id"]: m["emissions_g"] for m in found["models"]}
    assert set(grams) == {REPO, "lab/kilo-model"}
    assert grams["lab/kilo-model"] == pytest.approx(50.0)  # "0.05 kg" is 50 g, not 0.05 g
    assert found["without_emissions"] == 2 and found["scanned"] == 6
    ours = next(m for m in found["models"] if m["model_id"] == REPO)
    assert ours["source"] == "codecarbon" and ours["metric"].startswith("accuracy")

    # The limit counts models that pass the filter: the client's own `limit` would slice first.
    first = cli("search", "--max-co2", "100", "--limit", "1", "--json")
    assert [m["model_id"] for m in json.loads(first.stdout)["models"]] == ["lab/kilo-model"]
    assert len(list(HfApi().list_models(cardData=True, sort="downloads", limit=1, emissions_thresholds=(0, 100)))) == 0

    table = cli("search", "--max-co2", "100", "--task", "text-classification")
    assert "lab/kilo-model" in table.stdout and "heavy-model" not in table.stdout
    assert "had no emissions data" in table.stdout


def test_recipe_hub_section_pushes_when_training_ends(
    hub, tiny_bert, toy_data, tmp_path, write_recipe, cli, monkeypatch
):

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    recipe = classification_recipe(tiny_bert, toy_data, tmp_path / "runs" / "auto", epochs=1)
    recipe["hub"] = {"repo_id": "alice/auto-pushed", "private": True}
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    assert hub.state.repos["alice/auto-pushed"].private
    assert "metrics.json" in {s.rfilename for s in HfApi().model_info("alice/auto-pushed").siblings}


def test_the_token_is_never_written_anywhere(hub, tiny_bert, toy_data, tmp_path, write_recipe, cli, monkeypatch):

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    recipe = classification_recipe(tiny_bert, toy_data, tmp_path / "runs" / "secret", epochs=1)
    recipe["hub"] = {"repo_id": "alice/secret-check"}
    outputs = [cli("train", write_recipe(recipe)), cli("search", "--max-co2", "1000")]
    assert all(o.exit_code == 0 for o in outputs)
    printed = "".join(o.stdout + o.stderr for o in outputs)
    assert TOKEN not in printed
    written = [p for p in tmp_path.rglob("*") if p.is_file()]  # run folder, card, logs and pushed files
    assert any("hub-storage" in str(p) for p in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
