import json

import pytest
from huggingface_hub import ModelCard

from finetune_kit.hub.search import emissions_in_grams
from tests.builders import classification_recipe, toy_sentiment_rows, write_jsonl


def test_co2_budget_stops_training_cleanly_and_says_so(tiny_bert, tmp_path, write_recipe, cli):
    data = {
        "train": write_jsonl(tmp_path / "train.jsonl", toy_sentiment_rows(3000, seed=1)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", toy_sentiment_rows(100, seed=2)),
    }
    run_dir = tmp_path / "runs" / "budget"
    recipe = classification_recipe(tiny_bert, data, run_dir, epochs=6, batch_size=16, learning_rate=1e-3)
    # 10 kW at 1 kg/kWh is ~2.8 g per second: a 1 g budget is reached within the first seconds.
    recipe["emissions"].update(
        measure_power_secs=0.5, cpu_power_watts=10000, carbon_intensity_g_per_kwh=1000, max_co2_g=1.0
    )
    # --force: the estimate made first exceeds 1 g many times over, and would refuse the run.
    result = cli("train", write_recipe(recipe), "--force")
    assert result.exit_code == 0, result.stderr

    metrics = json.loads((run_dir / "metrics.json").read_text())
    budget = metrics["stopped_on_budget"]
    assert budget["limit"] == "max_co2_g 1 g" and budget["emissions_g"] >= 1.0
    assert metrics["train"]["steps"] < 6 * 188  # stopped well before the planned steps
    assert metrics["best_checkpoint_step"] is not None and (run_dir / "model" / "model.safetensors").is_file()
    card = ModelCard.load(run_dir / "README.md")
    assert "stopped on its emissions budget" in card.text
    assert "emissions budget max_co2_g 1 g reached at step" in result.stdout  # the console says it too


def test_emissions_table_compares_runs(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    runs = []
    for name, epochs in (("short", 1), ("long", 2)):
        run_dir = tmp_path / "runs" / name
        assert (
            cli(
                "train",
                write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=epochs), f"{name}.yaml"),
            ).exit_code
            == 0
        )
        runs.append(run_dir)
    result = cli("emissions", *runs)
    assert result.exit_code == 0, result.stderr
    for run_dir in runs:
        grams = json.loads((run_dir / "emissions.json").read_text())["emissions_g"]
        assert run_dir.name in result.stdout and f"{grams:.4g}" in result.stdout
    assert "France" in result.stdout and "accuracy" in result.stdout

    missing = cli("emissions", tmp_path / "runs" / "nope")
    assert missing.exit_code == 2 and "not a finished run folder" in missing.error_lines[0]


def test_card_command_rewrites_card_and_curve(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "carded"
    assert cli("train", write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=1))).exit_code == 0
    (run_dir / "README.md").unlink()
    (run_dir / "training_curve.png").unlink()
    assert cli("card", run_dir).exit_code == 0
    card = ModelCard.load(run_dir / "README.md")
    assert card.data.co2_eq_emissions["training_type"] == "fine-tuning"
    assert "![Training curve](training_curve.png)" in card.text
    assert (run_dir / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("stated", "grams"),
    [
        (12.5, 12.5),
        ("70 g", 70.0),
        ("0.5 kg", 500.0),
        ("70", 70.0),
        ({"emissions": 3, "source": "codecarbon"}, 3.0),
        ({"emissions": 0.2, "unit": "kg"}, 200.0),
        (0, None),
        (None, None),
        ("unknown", None),
    ],
)
@pytest.mark.unit
def test_emissions_stated_in_any_card_form_become_grams(stated, grams):
    assert emissions_in_grams(stated) == (pytest.approx(grams) if grams is not None else None)


@pytest.mark.unit
def test_processes_add_side_by_side_and_sessions_one_after_the_other():
    from finetune_kit.emissions import EmissionsRecord, sum_processes, sum_records

    def reading(grams, seconds):
        return EmissionsRecord(grams, grams / 100, seconds, "CPU", "", "France", "FRA", None, 2, 0, "3")

    session_one = sum_processes([reading(2.0, 60), reading(3.0, 61)])
    assert (session_one.emissions_g, session_one.duration_s, session_one.processes) == (5.0, 61, 2)
    total = sum_records([session_one, sum_processes([reading(1.0, 10), reading(1.0, 12)])])
    assert (total.emissions_g, total.duration_s, total.sessions, total.processes) == (7.0, 73, 2, 2)
