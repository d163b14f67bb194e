"""The `finetune-kit` command: parse, call, print. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from finetune_kit.errors import UserError

app = typer.Typer(
    help="Fine-tune Hugging Face transformers from one YAML recipe, with CO2 accounting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file")]
RunDirArg = Annotated[Path, typer.Argument(help="A finished run folder")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a field: training.learning_rate=3e-5 (repeatable)")
]


@app.command()
def train(
    recipe: RecipeArg,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder once this run completes")] = False,
) -> None:
    """Fine-tune a model as the recipe says; write the run folder."""
    from finetune_kit.config import load_recipe
    from finetune_kit.training import train as run_training

    loaded = load_recipe(recipe, overrides)
    console.print(f"[bold]finetune-kit[/] {loaded.task} · {loaded.model.checkpoint} → {loaded.run_dir}")
    try:
        result = run_training(loaded, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        errors.print(f"interrupted; continue with: finetune-kit train {recipe} --resume")
        raise typer.Exit(130) from None
    _print_run_summary(result.metrics, result.emissions, result.run_dir)


@app.command()
def validate(recipe: RecipeArg, overrides: SetOpt = None) -> None:
    """Check the recipe, the data and the checkpoint without training."""
    from finetune_kit.config import load_recipe
    from finetune_kit.training import prepare

    loaded = load_recipe(recipe, overrides)
    prepared = prepare(loaded)
    prepared.task.build_model()
    sizes = ", ".join(f"{name} {len(split)}" for name, split in prepared.data.items())
    console.print(f"[green]ok[/] {recipe}: task {loaded.task}, rows: {sizes}")
    for fact, value in prepared.task.card_facts().items():
        console.print(f"  {fact}: {value}")


@app.command()
def predict(
    run_dir: RunDirArg,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Data file with the recipe's text column(s)")
    ] = None,
    text: Annotated[list[str] | None, typer.Option(help="Text to predict on (repeatable)")] = None,
    output: Annotated[Path | None, typer.Option(help="Write predictions as JSON lines here")] = None,
) -> None:
    """Predict with a finished run on a file or on texts."""
    from finetune_kit import inference

    run = inference.load_run(run_dir)
    results = inference.predict(run, inference.read_inputs(run, input_file, text or []))
    if output:
        inference.write_jsonl(output, results)
        console.print(f"wrote {len(results)} predictions to {output}")
    else:
        for result in results:
            console.print_json(json.dumps(result, ensure_ascii=False))


@app.command(name="eval")
def evaluate(
    run_dir: RunDirArg,
    data: Annotated[Path, typer.Option(help="Labelled data file, same columns as training")],
    output: Annotated[Path | None, typer.Option(help="Where to save the metrics JSON")] = None,
) -> None:
    """Evaluate a finished run on a labelled file; print and save the metrics."""
    from finetune_kit import inference

    run = inference.load_run(run_dir)
    metrics = inference.evaluate_file(run, data)
    target = output or run_dir / "eval" / f"{data.name.split('.')[0]}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(metrics, indent=2) + "\n")
    _print_metrics(f"{data.name}", metrics)
    console.print(f"saved to {target}")


def _print_metrics(title: str, metrics: dict) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)


def _print_run_summary(metrics: dict, emissions, run_dir: Path) -> None:
    main = metrics["main_metric"]
    validation = metrics.get("validation", {})
    train_stats = metrics.get("train", {})
    console.print(
        f"[bold green]done[/] validation {main}: {validation.get(main, float('nan')):.4f}"
        f" · {train_stats.get('samples_per_second', 0):.1f} samples/s"
        f" · {train_stats.get('tokens_per_second', 0):.0f} tokens/s"
    )
    if emissions is not None:
        console.print(
            f"CO2: {emissions.emissions_g:.3f} g CO2eq · {emissions.energy_kwh:.6f} kWh · {emissions.location}"
        )
    console.print(f"run folder: {run_dir}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except UserError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
