"""The `finetune-kit` command: parse, call, print. No logic lives here."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finetune_kit.errors import UserError

app = typer.Typer(
    help="Fine-tune Hugging Face transformers from one YAML recipe, with CO2 accounting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)  # long paths and URLs stay on one line, copyable
errors = Console(stderr=True)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file")]
RunDirArg = Annotated[Path, typer.Argument(help="A finished run folder")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a field: training.learning_rate=3e-5 (repeatable)")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also show the libraries' own logs, load reports and progress bars")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Show only the final summary and errors")]


@app.callback()
def output(verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Before any command: how much the console shows (`finetune-kit --quiet train ...`)."""
    _configure_output(verbose, quiet)


def _configure_output(verbose: bool, quiet: bool) -> None:
    from finetune_kit.console import configure_output

    if verbose and quiet:
        raise UserError("--verbose and --quiet: choose one")
    configure_output(verbose, quiet)


@app.command()
def train(
    recipe: RecipeArg,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder once this run completes")] = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a model as the recipe says; write the run folder."""
    if verbose or quiet:  # also accepted after the command: `finetune-kit train RECIPE --quiet`
        _configure_output(verbose, quiet)
    from finetune_kit.config import load_recipe
    from finetune_kit.console import get_console, run_summary, stop_bars
    from finetune_kit.training import train as run_training

    started = time.perf_counter()
    loaded = load_recipe(recipe, overrides)
    get_console().print(f"[bold]finetune-kit[/] {loaded.task} · {loaded.model.description} → {loaded.run_dir}")
    try:
        result = run_training(loaded, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        stop_bars()
        errors.print(f"interrupted; continue with: finetune-kit train {recipe} --resume")
        raise typer.Exit(130) from None
    if result.is_main:
        console.print(run_summary(result.metrics, result.emissions, result.run_dir, time.perf_counter() - started))


@app.command()
def validate(recipe: RecipeArg, overrides: SetOpt = None) -> None:
    """Check the recipe, the data and the checkpoint without training."""
    from finetune_kit.config import load_recipe
    from finetune_kit.console import parameters_text
    from finetune_kit.models.adapters import parameter_counts
    from finetune_kit.models.building import build_model
    from finetune_kit.training import prepare

    loaded = load_recipe(recipe, overrides)
    prepared = prepare(loaded)
    model = build_model(loaded, prepared.task.model_head(), prepared.tokenizer)
    sizes = ", ".join(f"{name} {len(split)}" for name, split in prepared.data.items())
    console.print(f"[green]ok[/] {recipe}: task {loaded.task}, rows: {sizes}")
    console.print(f"  parameters: {parameters_text(parameter_counts(model))}")
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
    from finetune_kit.runs import Layout

    run = inference.load_run(run_dir)
    metrics = inference.evaluate_file(run, data)
    target = output or run.files.path(Layout.EVALUATIONS) / f"{data.name.split('.')[0]}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(metrics, indent=2) + "\n")
    _print_metrics(f"{data.name}", metrics)
    console.print(f"saved to {target}")


@app.command()
def generate(
    run_dir: RunDirArg,
    prompt: Annotated[list[str], typer.Option(help="Text to continue (repeatable); '' starts from scratch")],
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens to generate")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy; higher = more varied")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed: same seed, same text")] = None,
) -> None:
    """Continue prompts with a causal-LM run, or answer them with an instruction-tuned (sft) run
    through its chat template; settings default to the recipe's generation section."""
    from finetune_kit import inference

    run = inference.load_run(run_dir)
    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    for text in inference.generate(run, prompt, options):
        console.print(text, markup=False, highlight=False)


@app.command()
def chat(
    target: Annotated[str, typer.Argument(help="A finished run folder, or a chat checkpoint (Hub id, folder, .gguf)")],
    system: Annotated[
        str | None, typer.Option(help="System prompt for the whole conversation (default: the run's own)")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest reply, in tokens")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy; higher = more varied")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed")] = None,
) -> None:
    """Chat with an instruction-tuned model: one message per line, /reset starts over, /exit leaves.
    Without a terminal, reads the messages from stdin."""
    from finetune_kit.chat import Conversation, chat_loop, load_chat_model
    from finetune_kit.inference import with_generation_overrides

    loaded = load_chat_model(target)
    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    loaded.settings = with_generation_overrides(loaded.settings, options)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    chat_loop(loaded, Conversation(system or loaded.system), _chat_lines(write), write)


def _chat_lines(write: Callable[[str], None]) -> Iterator[str]:
    """Typed messages after a prompt on a terminal; stdin's lines, echoed, otherwise."""
    if sys.stdin.isatty():
        console.print("[dim]/reset starts over, /exit (or Ctrl-D) leaves[/]")
        while True:
            try:
                yield console.input("[bold]you>[/] ")
            except EOFError:
                return
    for line in sys.stdin:
        if line.strip():
            write(f"> {line.strip()}\n")
        yield line


@app.command()
def merge(
    run_dir: RunDirArg,
    output: Annotated[Path, typer.Option(help="Folder for the merged checkpoint (new or empty)")],
) -> None:
    """Merge an adapter run (LoRA, IA3, ...) into a full checkpoint plain transformers loads."""
    from finetune_kit import inference
    from finetune_kit.models.adapters import write_merged

    run = inference.load_run(run_dir)
    write_merged(run.model, run.tokenizer, run.files.model_dir, output)
    console.print(f"merged {run_dir} → {output}")


@app.command()
def card(run_dir: RunDirArg) -> None:
    """(Re)write a finished run's model card and training-curve image."""
    from finetune_kit.hub.card import write_model_card
    from finetune_kit.inference import read_run

    files, recipe, task = read_run(run_dir)
    write_model_card(files, recipe, task)
    console.print(f"wrote {files.card}")


@app.command()
def push(
    run_dir: RunDirArg,
    repo_id: Annotated[str, typer.Option(help="namespace/name on the Hub")],
    private: Annotated[bool, typer.Option(help="Create the repo as private")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to push to (created if missing)")] = None,
    commit_message: Annotated[str | None, typer.Option(help="Commit message")] = None,
) -> None:
    """Publish a run (model or adapter, tokenizer, card, recipe, metrics, emissions) in one commit."""
    from finetune_kit.hub.push import push_run

    url = push_run(run_dir, repo_id, private=private, revision=revision, commit_message=commit_message)
    console.print(f"pushed {run_dir} → {url}")


@app.command()
def search(
    max_co2: Annotated[float, typer.Option(help="Upper bound, grams CO2eq")],
    min_co2: Annotated[float, typer.Option(help="Lower bound, grams CO2eq")] = 0.0,
    task: Annotated[str | None, typer.Option(help="Pipeline tag, e.g. text-classification")] = None,
    author: Annotated[str | None, typer.Option(help="User or organisation")] = None,
    sort: Annotated[str, typer.Option(help="downloads, likes, created_at, ...")] = "downloads",
    limit: Annotated[int, typer.Option(min=1, help="How many matching models to list")] = 20,
    scan: Annotated[int, typer.Option(min=1, help="How many models to read at most")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Find Hub models whose card states CO2 emissions within a range (grams)."""
    from finetune_kit.hub.search import search_models

    found = search_models(max_g=max_co2, min_g=min_co2, task=task, author=author, sort=sort, limit=limit, scan=scan)
    if as_json:
        console.print_json(json.dumps(found.to_dict()))
        return
    table = Table(title=f"models with {min_co2:g}-{max_co2:g} g CO2eq")
    table.add_column("model", no_wrap=True)  # ids stay whole and copyable; other columns give way
    for column in ("task", "g CO2eq", "source", "downloads", "main metric"):
        table.add_column(column, justify="right" if column in {"g CO2eq", "downloads"} else "left")
    for model in found.models:
        table.add_row(
            model.model_id,
            model.task or "-",
            f"{model.emissions_g:.4g}",
            model.source or "-",
            str(model.downloads),
            model.metric or "-",
        )
    console.print(table)
    console.print(
        f"{len(found.models)} matching of {found.scanned} models read; "
        f"{found.without_emissions} had no emissions data in their card"
    )


@app.command()
def emissions(run_dirs: Annotated[list[Path], typer.Argument(help="Finished run folders")]) -> None:
    """Compare runs: grams CO2eq (and of the chain of runs each descends from: pretraining, SFT, ...),
    kWh, duration, hardware, country, main metric and metric per gram."""
    from finetune_kit.emissions.report import read_run_emissions

    table = Table(title="emissions per run")
    columns = ("run", "g CO2eq", "chain g", "kWh", "duration", "sessions", "hardware", "country", "metric", "per gram")
    for column in columns:
        table.add_column(column, justify="left" if column in {"run", "hardware", "country", "metric"} else "right")
    for run_dir in run_dirs:
        row = read_run_emissions(run_dir)
        r = row.record
        metric = f"{row.main_metric} {row.metric_value:.4f}" if row.metric_value is not None else "-"
        per_gram = f"{row.metric_per_gram:.4g}" if row.metric_per_gram is not None else "-"
        table.add_row(
            row.run,
            f"{r.emissions_g:.4g}",
            f"{row.chain_g:.4g}" if row.chain_g is not None else "-",
            f"{r.energy_kwh:.4g}",
            f"{r.duration_s:.0f} s",
            str(r.sessions),
            r.hardware,
            r.country_name or "-",
            metric,
            per_gram,
        )
    console.print(table)


def _print_metrics(title: str, metrics: dict) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except UserError as err:
        from finetune_kit.console import stop_bars

        stop_bars()  # the error line lands below any bar still drawn
        errors.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
