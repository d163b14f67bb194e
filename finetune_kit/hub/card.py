"""A Hub-ready model card: metadata the Hub indexes (model-index, co2_eq_emissions) plus prose."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData

import finetune_kit
from finetune_kit.config.recipe import HubDataSource, Recipe
from finetune_kit.emissions import EmissionsRecord
from finetune_kit.emissions.inference import InferenceEnergy
from finetune_kit.hub.plot import plot_training_curve
from finetune_kit.models import base_model_id
from finetune_kit.runs import Layout, RunFiles
from finetune_kit.tasks.base import Task


def write_model_card(run: RunFiles, recipe: Recipe, task: Task) -> ModelCard:
    """(Re)write the card and the curve image from what the run folder holds."""
    log = run.log()
    has_curve = plot_training_curve(log, task.main_metric, run.path(Layout.CURVE_IMAGE))
    chain = run.lineage().get("chain", [])
    card = build_model_card(
        recipe, task, run.metrics(), run.emissions(), log, has_curve, chain, run.sweep_note(), run.inference()
    )
    card.save(run.card)
    return card


def build_model_card(
    recipe: Recipe,
    task: Task,
    metrics: dict[str, Any],
    emissions: EmissionsRecord | None,
    log: list[dict[str, Any]],
    has_curve: bool = False,
    chain: list[dict[str, Any]] | None = None,
    sweep: dict[str, Any] | None = None,
    inference: dict[str, Any] | None = None,
) -> ModelCard:
    training_type = recipe.training_type
    base = base_model_id(recipe.model.weights_from)
    dataset_ids = recipe.card.datasets or _hub_dataset_ids(recipe)
    library = task.card_metadata()  # the task's library's conventions: its tags, a widget
    data = ModelCardData(
        model_name=recipe.name,
        base_model=base,
        datasets=dataset_ids or None,
        license=recipe.card.license,
        language=recipe.card.language or None,
        library_name="peft" if recipe.peft else task.library_name,
        pipeline_tag=task.pipeline_tag,
        tags=[
            "finetune-kit",
            task.name,
            *([recipe.peft.method] if recipe.peft else []),
            *library.pop("tags", []),
            *recipe.card.tags,
        ],
        eval_results=_eval_results(recipe, task, metrics, dataset_ids) or None,
        co2_eq_emissions=_co2(emissions, training_type),
        **library,
    )
    body = "\n\n".join(
        section
        for section in (
            f"# {recipe.name}",
            _summary(recipe, task, metrics, base),
            _adapter_note(recipe, metrics),
            _stop_note(metrics),
            _results_section(task, metrics),
            _generation_section(metrics),
            _rewards_section(metrics),
            _samples_section(metrics),
            _intended_use(recipe, task),
            _hyperparameters(recipe, metrics),
            _training_curve(task, log, has_curve),
            _environmental_impact(emissions, training_type, metrics.get("start_window")),
            _inference_line(inference or {}),
            _chain_note(chain or []),
            _sweep_note(sweep or {}),
            _versions(),
        )
        if section
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def _hub_dataset_ids(recipe: Recipe) -> list[str]:
    sources = (recipe.data.train, recipe.data.validation, recipe.data.test)
    ids = {s.hub if isinstance(s, HubDataSource) else s for s in sources if s is not None}
    return sorted(i for i in ids if isinstance(i, str) and not Path(i).exists() and "/" in i)


def _dataset_name(recipe: Recipe, dataset_ids: list[str]) -> str:
    if recipe.card.dataset_name:
        return recipe.card.dataset_name
    if dataset_ids:
        return dataset_ids[0]
    train = recipe.data.train
    return Path(train).stem if isinstance(train, str) else train.hub


def _eval_results(recipe: Recipe, task: Task, metrics: dict[str, Any], dataset_ids: list[str]) -> list[EvalResult]:
    name = _dataset_name(recipe, dataset_ids)
    results = []
    for split in ("validation", "test"):
        for metric, value in metrics.get(split, {}).items():
            if metric in _headline_metrics(task) and isinstance(value, (int, float)):
                results.append(
                    EvalResult(
                        task_type=task.pipeline_tag,
                        dataset_type=dataset_ids[0] if dataset_ids else name,
                        dataset_name=name,
                        dataset_split=split,
                        metric_type=metric,
                        metric_name=metric.replace("_", " ").title(),
                        metric_value=round(float(value), 4),
                    )
                )
    for metric, value in metrics.get("generation", {}).items():  # scores of generated replies to test prompts
        results.append(
            EvalResult(
                task_type=task.pipeline_tag,
                dataset_type=dataset_ids[0] if dataset_ids else name,
                dataset_name=name,
                dataset_split="test",
                metric_type=metric,
                metric_name=f"{metric} (generated)",
                metric_value=round(float(value), 4),
            )
        )
    return results


def _headline_metrics(task: Task) -> set[str]:
    """The main metric and its siblings (accuracy + f1_macro), not per-class or speed figures."""
    return {task.main_metric, "f1_macro", "f1", "precision", "recall"}


def _co2(emissions: EmissionsRecord | None, training_type: str) -> dict[str, Any] | None:
    if emissions is None:
        return None
    return {
        "emissions": round(emissions.emissions_g, 4),
        "source": "codecarbon",
        "training_type": training_type,
        "geographical_location": emissions.location,
        "hardware_used": emissions.hardware,
    }


def _summary(recipe: Recipe, task: Task, metrics: dict[str, Any], base: str | None) -> str:
    hub_link = f"[{base}](https://huggingface.co/{base})" if base else None
    local = Path(recipe.model.checkpoint or "").expanduser()
    if recipe.model.architecture is not None and recipe.tokenizer is not None:
        parameters = metrics.get("model", {}).get("parameters")
        size = f" of {parameters:,} parameters" if parameters else ""
        vocabulary = f"{recipe.tokenizer.kind} tokenizer ({recipe.tokenizer.vocab_size:,}-token vocabulary)"
        origin = (
            f"a new {recipe.model.architecture.model_type} model{size} pretrained from scratch, "
            f"with a {vocabulary} trained on the same data"
        )
    elif recipe.model.random_init:
        shape_of = Path(recipe.model.checkpoint).name
        origin = f"trained from random weights, with the architecture and tokenizer of `{shape_of}`"
    elif recipe.model.checkpoint and local.is_dir():  # named in prose only: a local path is never card metadata
        shown = "/".join(local.resolve().parts[-2:]) if local.name == "model" else local.name
        origin = f"a fine-tuned version of the local checkpoint `{shown}`"
        origin += f", which descends from {hub_link}" if hub_link else ""
    else:
        origin = f"a fine-tuned version of {hub_link}"
    main = metrics.get("validation", {}).get(task.main_metric)
    headline = f" It reaches {task.main_metric} {main:.4f} on the validation split." if main is not None else ""
    weights = metrics.get("model", {}).get("starting_weights")
    start = (
        f" Its starting weights were {weights}, so they sit a little below the published model's." if weights else ""
    )
    return (
        f"This {task.pipeline_tag} model is {origin}, trained with "
        f"[finetune-kit](https://pypi.org/project/finetune-kit/).{start}{headline}"
    )


def _generation_section(metrics: dict[str, Any]) -> str:
    """Scores of replies generated for the held-out prompts, before and after training, and a few
    replies beside their references."""
    after = metrics.get("generation")
    if not after:
        return ""
    before = metrics.get("before_training", {}).get("generation", {})
    rows = [
        f"| {metric} | {before[metric]:.4f} | {value:.4f} |" if metric in before else f"| {metric} | - | {value:.4f} |"
        for metric, value in after.items()
    ]
    table = "| metric | before training | after training |\n|---|---|---|\n" + "\n".join(rows)
    shown = [
        f"**{r['group']}**: {r['prompt']!r}\n\n- reply: {r['reply']!r}\n- reference: {r['reference']!r}"
        for r in metrics.get("replies", [])
    ]
    replies = "\n\n### Generated replies\n\n" + "\n\n".join(shown) if shown else ""
    return "## Held-out prompts, scored by generation\n\n" + table + replies


def _rewards_section(metrics: dict[str, Any]) -> str:
    """GRPO: each reward's mean at the first and last training log, and what a reward point cost."""
    rewards = metrics.get("rewards")
    if not rewards:
        return ""
    rows = "\n".join(f"| {name} | {r['first']:.4f} | {r['last']:.4f} |" for name, r in rewards.items())
    table = "| reward | first logged | last logged |\n|---|---|---|\n" + rows
    per_point = metrics.get("emissions_g_per_point")
    cost = f"\n\nEach +0.01 of validation reward cost {per_point:.4g} g CO2eq." if per_point else ""
    return "## Rewards over training\n\n" + table + cost


def _samples_section(metrics: dict[str, Any]) -> str:
    samples = metrics.get("samples")
    if not samples:
        return ""
    shown = [f"Prompt: `{s['prompt']!r}`\n\n```text\n{s['prompt']}{s['text']}\n```" for s in samples]
    return "## Sample generations\n\n" + "\n\n".join(shown)


def _adapter_note(recipe: Recipe, metrics: dict[str, Any]) -> str:
    if recipe.peft is None:
        return ""
    counts = metrics.get("model", {})
    share = (
        f" ({counts['trainable_parameters']:,} of {counts['parameters']:,} parameters, {counts['trainable_percent']}%)"
        if "trainable_parameters" in counts
        else ""
    )
    return (
        f"Only a {recipe.peft.method} adapter was trained{share}; this repository holds the adapter, "
        "which [peft](https://github.com/huggingface/peft) loads on top of the base model. "
        "`finetune-kit merge` writes a merged, plain transformers checkpoint."
    )


def _results_section(task: Task, metrics: dict[str, Any]) -> str:
    rows = []
    for split in ("before_training", "validation", "test"):
        for metric, value in metrics.get(split, {}).items():
            if isinstance(value, float) and metric != "epoch" and not metric.endswith(("_per_second", "runtime")):
                rows.append(f"| {split} | {metric} | {value:.4f} |")
    if not rows:
        return ""
    labels = task.card_facts().get("labels")
    label_line = f"\n\nLabels: {', '.join(f'`{label}`' for label in labels)}." if labels else ""
    return "## Evaluation results\n\n| split | metric | value |\n|---|---|---|\n" + "\n".join(rows) + label_line


def _intended_use(recipe: Recipe, task: Task) -> str:
    return (
        "## Intended uses & limitations\n\n"
        f"Made for {task.pipeline_tag} on text like its training data. It inherits the biases and "
        "limits of its base model and data; evaluate it on your own data before relying on it.\n\n"
        "```bash\n"
        f'finetune-kit predict {recipe.run_dir} --text "..."\n'
        "```"
    )


def _hyperparameters(recipe: Recipe, metrics: dict[str, Any]) -> str:
    t = recipe.training
    values = {
        "learning_rate": t.learning_rate,
        "train_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "epochs": t.epochs,
        "max_steps": t.max_steps,
        "lr_scheduler": t.lr_scheduler,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_length": t.max_length,
        "seed": t.seed,
        "precision": metrics.get("model", {}).get("precision"),
        "length-grouped batches": t.group_by_length,
    }
    if recipe.peft is not None:
        values.update({f"peft.{key}": value for key, value in recipe.peft.model_dump(exclude_defaults=True).items()})
        values["peft.method"] = recipe.peft.method
    lines = [f"- {key}: {value}" for key, value in values.items() if value is not None]
    return "## Training hyperparameters\n\n" + "\n".join(lines)


def _stop_note(metrics: dict[str, Any]) -> str:
    """Why training ended before its plan, when it did: readers compare runs by their length too."""
    notes = []
    if budget := metrics.get("stopped_on_budget"):
        notes.append(
            f"**Training stopped on its emissions budget** ({budget['limit']}) at step {budget['step']}; "
            "the best checkpoint reached by then was kept."
        )
    if early := metrics.get("stopped_early"):
        notes.append(f"**Training stopped early** ({early['reason']}) at step {early['step']}.")
    return "\n\n".join(notes)


def _training_curve(task: Task, log: list[dict[str, Any]], has_curve: bool) -> str:
    """One row per evaluation, with the latest training loss before it."""
    main = f"eval_{task.main_metric}"
    rows, last_loss = [], None
    for entry in log:
        if "loss" in entry:
            last_loss = entry["loss"]
        if main in entry:
            loss = f"{last_loss:.4f}" if last_loss is not None else "-"
            rows.append(
                f"| {entry.get('epoch', 0):.2f} | {entry['step']} | {loss} | "
                f"{entry.get('eval_loss', float('nan')):.4f} | {entry[main]:.4f} |"
            )
    image = f"![Training curve]({Layout.CURVE_IMAGE})\n\n" if has_curve else ""
    if not rows:
        return f"## Training results\n\n{image}".rstrip()
    header = f"| epoch | step | training loss | validation loss | {task.main_metric} |\n|---|---|---|---|---|\n"
    return "## Training results\n\n" + image + header + "\n".join(rows)


def _environmental_impact(
    emissions: EmissionsRecord | None, training_type: str, start_window: dict[str, Any] | None = None
) -> str:
    start = [_start_line(start_window)] if start_window else []
    if emissions is None:
        return "\n\n".join(["## Environmental impact", "Emissions were not measured for this run.", *start])
    facts = [
        f"CO2 emitted: {emissions.emissions_g:.3f} g CO2eq",
        f"energy consumed: {emissions.energy_kwh:.6f} kWh",
        f"duration: {emissions.duration_s:.0f} s over {emissions.sessions} session(s)",
        f"hardware: {emissions.hardware}",
        f"location: {emissions.location}",
        f"training type: {training_type}",
        *start,
    ]
    return (
        "## Environmental impact\n\nMeasured with [codecarbon](https://codecarbon.io) (offline tracker).\n\n"
        + "\n".join(f"- {fact}" for fact in facts)
    )


def _start_line(window: dict[str, Any]) -> str:
    """When a scheduled run (`train --start-when`) started, and the forecast's mean intensity there against starting
    at once: what the wait saved."""
    start = datetime.fromisoformat(window["start"]).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"started at {start} in the lowest-intensity window of {window['forecast']}: {window['g_per_kwh']:g} g "
        f"CO2eq/kWh vs {window['baseline_g_per_kwh']:g} {window['baseline']} (the forecast's figures; the grams "
        "above use codecarbon's average for the location)"
    )


def _inference_line(measured: dict[str, Any]) -> str:
    """What the model costs to use, as the latest `finetune-kit eval` on the run measured it."""
    if not measured:
        return ""
    energy = InferenceEnergy.from_dict(measured)
    return (
        f"**Inference**: {energy.summary()} (`finetune-kit eval` on {measured['data']}, {energy.backend}: "
        f"{energy.count:,} {energy.unit} in {energy.record.duration_s:.1f} s on {energy.record.hardware})."
    )


def _chain_note(chain: list[dict[str, Any]]) -> str:
    """The emissions of every run this model descends from (pretraining → SFT → preference ...)."""
    measured = [link for link in chain if link.get("emissions_g") is not None]
    if len(chain) < 2 or not measured:
        return ""
    steps = " → ".join(
        f"{link['run']} ({link['task']}, {link['emissions_g']:.3f} g)"
        if link.get("emissions_g") is not None
        else f"{link['run']} ({link['task']}, not measured)"
        for link in chain
    )
    total = sum(link["emissions_g"] for link in measured)
    return f"**The whole chain** of runs that made this model emitted **{total:.3f} g CO2eq**: {steps}."


def _sweep_note(note: dict[str, Any]) -> str:
    """A sweep's chosen trial cost the whole search, not only its own run: pruned and failed trials too."""
    if not note:
        return ""
    counts, metric = note["trials"], note["metric"]
    front = f", on its {metric}-vs-CO2 front," if note["front"] else ""
    return (
        f"## Hyperparameter search\n\nThis run is trial {note['trial']} of the sweep `{note['sweep']}`: the best "
        f"{metric}{front} among {sum(counts.values())} trials ({counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['failed']} failed). **The whole search emitted {note['total_emissions_g']:.3f} g "
        "CO2eq**, pruned and failed trials included."
    )


def _versions() -> str:
    return (
        "## Framework versions\n\n"
        f"- finetune-kit {finetune_kit.__version__}\n- Transformers {transformers.__version__}\n"
        f"- PyTorch {torch.__version__}\n- huggingface_hub {huggingface_hub.__version__}"
    )
