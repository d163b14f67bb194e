"""`finetune-kit sweep`: trials as run folders, pruning, the metric-vs-CO2 front, resume after a kill,
processes sharing one study, the search's grams in the best trial's card, bad input refused up front."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

from finetune_kit.config.peft import family_defaults
from finetune_kit.config.recipe import FULL_FINE_TUNING_LEARNING_RATE
from finetune_kit.runs import RunFolder
from finetune_kit.sweep.plan import Objective, plan_sweep
from finetune_kit.sweep.report import SweepReport, TrialRow
from tests.builders import REPO, classification_recipe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEARNING_RATES = {"training.learning_rate": {"log_uniform": [1e-4, 3e-2]}}
RELATIVE_LEARNING_RATES = {"training.learning_rate": {"log_uniform": [0.5, 2], "relative": True}}


def sweep_recipe(checkpoint: Path, data: dict[str, Path], output_dir: Path, **sweep) -> dict:
    """The toy classification recipe cut to 10 steps, evaluated at steps 5 and 10, with a sweep section."""
    recipe = classification_recipe(checkpoint, data, output_dir, epochs=1, eval_strategy="steps", eval_steps=5)
    recipe["name"] = "toy-sweep"
    recipe["data"] |= {"max_train_rows": 80, "max_eval_rows": 40}
    recipe["data"].pop("test")
    recipe["sweep"] = {"trials": 3, "seed": 0, **sweep}
    return recipe


def load_study(storage: Path) -> optuna.Study:
    return optuna.load_study(study_name="toy-sweep", storage=f"sqlite:///{storage}")


def trials_in(study: optuna.Study, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=states)


def start_sweep(recipe: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "finetune_kit", "sweep", str(recipe), *extra],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_pruning_reports_every_evaluation_and_stops_a_trailing_trial(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    out = tmp_path / "sweep"
    # A learning rate that barely moves the loss against one that moves it: whichever comes second
    # or third trails the median at its first evaluation (seeded sampler: the same draws every time).
    parameters = {"training.learning_rate": {"choice": [1e-2, 1e-7]}}
    recipe = sweep_recipe(tiny_bert, toy_data, out, parameters=parameters, objectives=["loss"], pruning=True)
    recipe["sweep"]["pruning"] = {"startup_trials": 1}
    result = cli("sweep", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr

    study = load_study(out / "study.db")
    assert len(trials_in(study, TrialState.COMPLETE, TrialState.PRUNED)) == 3
    for trial in study.trials:
        assert 5 in trial.intermediate_values  # the pruner was asked at every evaluation
        assert (out / f"trial-{trial.number:04d}" / "model").is_dir()  # an ordinary, finished run folder
    pruned = trials_in(study, TrialState.PRUNED)
    assert pruned, [(t.params, t.intermediate_values) for t in study.trials]
    for trial in pruned:
        metrics = json.loads((out / f"trial-{trial.number:04d}" / "metrics.json").read_text())
        assert metrics["train"]["steps"] == 5 < 10  # training stopped where the trial was pruned
        assert f"trial {trial.number} pruned at step 5" in result.stdout
    assert "pruned" in json.loads((out / "sweep.json").read_text())["trials_by_state"]


def test_two_objectives_give_a_pareto_front_a_plot_and_the_search_grams_in_the_best_card(
    tiny_bert, toy_data, tmp_path, write_recipe, cli
):
    out = tmp_path / "sweep"
    parameters = {**RELATIVE_LEARNING_RATES, "peft": {"choice": [None, {"method": "lora"}]}}
    recipe = sweep_recipe(tiny_bert, toy_data, out, parameters=parameters, objectives=["accuracy", "co2"])
    result = cli("sweep", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr

    report = json.loads((out / "sweep.json").read_text())
    study = load_study(out / "study.db")
    assert report["objectives"] == [
        {"name": "accuracy", "direction": "maximize"},
        {"name": "co2", "direction": "minimize"},
    ]
    assert sorted(report["pareto_front"]) == sorted(t.number for t in study.best_trials)  # Optuna's own front
    trial_grams = [json.loads((out / f"trial-{n:04d}" / "emissions.json").read_text())["emissions_g"] for n in range(3)]
    assert report["total_emissions_g"] == pytest.approx(sum(trial_grams))
    for row in report["trials"]:
        assert row["state"] == "complete" and row["emissions_g"] == pytest.approx(trial_grams[row["number"]])
        saved = yaml.safe_load((out / f"trial-{row['number']:04d}" / "recipe.yaml").read_text())
        # the rate the trial trained with, not the factor the study holds
        assert saved["training"]["learning_rate"] == pytest.approx(row["params"]["training.learning_rate"])
        assert (saved["peft"] is None) == (row["params"]["peft"] is None)  # a whole section, as --set sets it
    best = report["best"]["number"]
    assert best in report["pareto_front"]
    assert report["best"]["metric"] == max(row["metric"] for row in report["trials"])
    assert (out / "pareto.png").read_bytes()[:8] == PNG_MAGIC
    assert "★ best" in result.stdout and f"{report['total_emissions_g']:.3g} g CO2eq" in result.stdout

    statement = f"**The whole search emitted {report['total_emissions_g']:.3f} g CO2eq**"
    best_dir = out / f"trial-{best:04d}"
    assert statement in (best_dir / "README.md").read_text()
    assert cli("card", best_dir).exit_code == 0  # a re-rendered card keeps it
    assert statement in (best_dir / "README.md").read_text()
    others = [n for n in range(3) if n != best]
    assert all("The whole search" not in (out / f"trial-{n:04d}" / "README.md").read_text() for n in others)


def test_a_killed_sweep_resumes_keeping_its_finished_trials(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    out = tmp_path / "sweep"
    recipe = write_recipe(sweep_recipe(tiny_bert, toy_data, out, parameters=LEARNING_RATES))
    process = start_sweep(recipe)
    second = RunFolder(out / "trial-0001")
    deadline = time.monotonic() + 300
    # Killed once the first trial is finished and the second has saved an emissions reading.
    while not ((out / "trial-0000" / "model").is_dir() and second.emissions_readings()):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the sweep ended or stalled before the kill: {process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = load_study(out / "study.db")
    assert [t.state for t in before.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    killed_grams = second.total_emissions().emissions_g

    again = cli("sweep", recipe)
    assert again.exit_code == 2 and "already holds a sweep; pass --resume" in again.error_lines[0]
    resumed = cli("sweep", recipe, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "trial 1 left running by a killed process: failed" in resumed.stdout

    study = load_study(out / "study.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert (study.trials[0].params, study.trials[0].values) == (before.trials[0].params, before.trials[0].values)
    report = json.loads((out / "sweep.json").read_text())
    assert report["trials_by_state"] == {"complete": 3, "failed": 1}
    failed = next(row for row in report["trials"] if row["state"] == "failed")
    assert failed["emissions_g"] == pytest.approx(killed_grams) and killed_grams > 0  # its energy still counts
    assert report["total_emissions_g"] == pytest.approx(sum(row["emissions_g"] for row in report["trials"]))


def test_two_processes_share_one_study_and_split_its_trials(tiny_bert, toy_data, tmp_path, write_recipe):
    out, storage = tmp_path / "sweep", tmp_path / "shared.db"
    recipe = write_recipe(sweep_recipe(tiny_bert, toy_data, out, parameters=LEARNING_RATES))
    processes = [start_sweep(recipe, "--storage", f"sqlite:///{storage}") for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=400)
        assert process.returncode == 0, stderr[-2000:]

    study = load_study(storage)
    assert len(study.trials) == 3 and len(trials_in(study, TrialState.COMPLETE)) == 3
    workers = [trial.user_attrs["worker"] for trial in study.trials]
    assert sorted(workers.count(worker) for worker in set(workers)) == [1, 2]  # each process ran at least one
    assert not (out / "study.db").exists()  # the shared storage was used, not the sweep folder's


def test_the_sweep_budget_stops_the_running_trial_and_starts_no_other(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    out = tmp_path / "sweep"
    recipe = sweep_recipe(tiny_bert, toy_data, out, parameters=LEARNING_RATES, max_co2_g=1e-6)
    result = cli("sweep", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr

    report = json.loads((out / "sweep.json").read_text())
    assert [row["number"] for row in report["trials"]] == [0]
    assert report["stopped"] == "the sweep's budget max_co2_g 1e-06 g is spent"
    saved = yaml.safe_load((out / "trial-0000" / "recipe.yaml").read_text())
    assert saved["emissions"]["max_co2_g"] == pytest.approx(1e-6)  # the whole budget was left for it
    metrics = json.loads((out / "trial-0000" / "metrics.json").read_text())
    assert metrics["stopped_on_budget"]["limit"] == "max_co2_g 1e-06 g" and metrics["train"]["steps"] < 10


def test_a_relative_learning_rate_keeps_each_trial_in_its_methods_range(tiny_bert, toy_data, tmp_path, write_recipe):
    """A LoRA trial never gets a full fine-tuning rate (2.2e-5 left one at accuracy 0.50), nor the reverse."""
    parameters = {**RELATIVE_LEARNING_RATES, "peft": {"choice": [None, {"method": "lora"}]}}
    plan = plan_sweep(write_recipe(sweep_recipe(tiny_bert, toy_data, tmp_path / "sweep", parameters=parameters)))
    defaults = {False: FULL_FINE_TUNING_LEARNING_RATE, True: family_defaults("SEQ_CLS").learning_rate}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    methods = set()
    for _ in range(12):
        trial = study.ask()
        recipe = plan.trial_recipe(trial.number, {p.name: p.suggest(trial) for p in plan.parameters}, None)
        default = defaults[recipe.peft is not None]
        assert 0.5 * default <= recipe.training.learning_rate <= 2 * default, (recipe.peft, trial.params)
        methods.add(recipe.peft is not None)
    assert methods == {False, True}


def test_the_report_in_a_log_keeps_every_parameter_name_and_value_whole(tmp_path):
    """A sweep's output redirected to a file: rich's console is 80 columns, too narrow for the table."""
    params = {
        "training.learning_rate": 0.00021544,
        "training.epochs": 3,
        "peft": "{method: lora, r: 16}",
        "training.max_length": 128,
    }
    rows = [TrialRow(n, "complete", params, 0.8125, 0.0123, None, {}) for n in range(2)]
    accuracy = Objective("accuracy", "maximize")
    report = SweepReport("sst2-sweep", tmp_path, "sqlite://", [accuracy], accuracy, 2, rows, [0, 1], 0, None)
    for console in (Console(file=io.StringIO(), width=80), Console(file=io.StringIO(), width=80, soft_wrap=True)):
        console.print(report.table())
        printed = console.file.getvalue()
        assert "…" not in printed
        for text in (*params, "0.0002154", "{method: lora, r: 16}", "0.8125", "0.0123", "★ best", "complete"):
            assert text in printed, text
    wide = Console(file=io.StringIO(), width=200)
    wide.print(report.table())
    assert "learning_rate" in wide.file.getvalue() and "training.learning_rate" not in wide.file.getvalue()  # a table


BAD_SWEEPS = {
    "unknown field": (
        {"parameters": {"training.lerning_rate": {"log_uniform": [1e-4, 1e-2]}}},
        (),
        "sweep.parameters.training.lerning_rate: not a field of a ClassificationRecipe; "
        "did you mean 'training.learning_rate'?",
    ),
    "low not below high": (
        {"parameters": {"training.warmup_ratio": {"uniform": [0.2, 0.1]}}},
        (),
        "sweep.parameters.training.warmup_ratio: low 0.2 must be below high 0.1",
    ),
    "log scale reaching zero": (
        {"parameters": {"training.learning_rate": {"log_uniform": [0, 1e-2]}}},
        (),
        "sweep.parameters.training.learning_rate: log_uniform needs low > 0 (got 0)",
    ),
    "a value past the field's limit": (
        {"parameters": {"training.max_length": {"int": [16, 10000]}}},
        (),
        "sweep.parameters.training.max_length: the value 10000 fails: training.max_length: "
        "Input should be less than or equal to 8192",
    ),
    "unknown distribution": (
        {"parameters": {"training.epochs": {"integer": [1, 3]}}},
        (),
        "sweep.parameters.training.epochs: unknown distribution 'integer'; did you mean 'int'?",
    ),
    "relative choice": (
        {"parameters": {"training.learning_rate": {"choice": [0.5, 2], "relative": True}}},
        (),
        "sweep.parameters.training.learning_rate: relative applies to log_uniform and uniform ranges only",
    ),
    "relative range of another field": (
        {"parameters": {"training.warmup_ratio": {"uniform": [0.5, 2], "relative": True}}},
        (),
        "sweep.parameters.training.warmup_ratio: relative: only training.learning_rate has a default that follows",
    ),
    "relative range past the limit for one method": (
        {
            "parameters": {
                "training.learning_rate": {"log_uniform": [1, 1000], "relative": True},
                "peft": {"choice": [None, {"method": "lora"}]},
            }
        },
        (),
        "sweep.parameters.training.learning_rate: the value 1.0 fails: training.learning_rate: "
        "Input should be less than 1",
    ),
    "objective the task does not report": (
        {"parameters": LEARNING_RATES, "objectives": ["bleu", "co2"]},
        (),
        "sweep.objectives: 'bleu' is not a metric the classification task reports; choose accuracy, loss, co2",
    ),
    "pruning two objectives": (
        {"parameters": LEARNING_RATES, "objectives": ["accuracy", "co2"], "pruning": True},
        (),
        "sweep: pruning stops single-objective trials only",
    ),
    "missing data file": (
        {"parameters": LEARNING_RATES},
        ("--set", "data.train=/no/such/train.jsonl"),
        "data.train: file not found",
    ),
    "storage that cannot be opened": (
        {"parameters": LEARNING_RATES},
        ("--storage", "sqlite:////no/such/folder/study.db"),
        "--storage: cannot open sqlite:////no/such/folder/study.db",
    ),
    "unreachable storage with a password": (
        {"parameters": LEARNING_RATES},
        ("--storage", "postgresql://me:secret@/db?host=/no/such/socket"),
        "--storage: cannot open postgresql://me:***@/db",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
@pytest.mark.unit
def test_bad_sweep_exits_2_with_one_line_and_writes_nothing(case, tiny_bert, toy_data, tmp_path, write_recipe, cli):
    sweep, options, expected = BAD_SWEEPS[case]
    recipe = sweep_recipe(tiny_bert, toy_data, tmp_path / "sweep", **sweep)
    result = cli("sweep", write_recipe(recipe), *options)
    assert result.exit_code == 2
    assert len(result.error_lines) == 1, result.stderr
    assert expected in result.error_lines[0]
    assert "secret" not in result.stderr
    assert not (tmp_path / "sweep").exists()
