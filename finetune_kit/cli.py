"""The `finetune-kit` command: parse, call, print. No logic lives here."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finetune_kit.errors import UserError

if TYPE_CHECKING:
    from finetune_kit.emissions.inference import InferenceEnergy
    from finetune_kit.training import RunResult

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
RayOpt = Annotated[
    str | None,
    typer.Option("--ray", metavar="ADDRESS", help="Run on this Ray cluster: `ray start --head`'s HOST:PORT, or auto"),
]
WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="With --ray: processes on the cluster (default: its GPUs, or 1)")
]


class Backend(str, Enum):
    """What `predict` runs: the PyTorch model, or the run's ONNX export (`finetune-kit export`)."""

    PYTORCH = "pytorch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


class ChatPrecision(str, Enum):
    """The weights' precision `serve` decodes chat replies in."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class ExportFormat(str, Enum):
    ONNX = "onnx"


class Quantization(str, Enum):
    INT8 = "int8"


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
    context: typer.Context,
    recipe: RecipeArg,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder once this run completes")] = False,
    force: Annotated[
        bool, typer.Option(help="Train even when the estimate made first exceeds the recipe's emissions budget")
    ] = False,
    start_when: Annotated[
        Path | None,
        typer.Option(
            "--start-when",
            metavar="FORECAST.csv",
            help="Wait for the lowest-intensity window of this grid forecast (time, g CO2eq/kWh) that fits the "
            "run's estimated duration, then train",
        ),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(min=1, help="Machines the run spans (torchrun); start the same command on each")
    ] = None,
    node_rank: Annotated[int | None, typer.Option(min=0, help="This machine's rank among --nodes: 0 to N-1")] = None,
    master: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="Node 0's address, which every node can reach")
    ] = None,
    processes_per_node: Annotated[
        int | None, typer.Option(min=1, help="Training processes on this machine (default: its GPUs, or 1)")
    ] = None,
    ray_address: RayOpt = None,
    workers: WorkersOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a model as the recipe says; write the run folder. With an emissions budget, the run is
    estimated first (`finetune-kit estimate`) and refused when the estimate exceeds it; with --start-when, it is
    estimated and waits for the forecast's lowest-intensity window of its duration. With --nodes or
    --processes-per-node, the recipe is checked here, then torchrun trains it in several processes."""
    if verbose or quiet:  # also accepted after the command: `finetune-kit train RECIPE --quiet`
        _configure_output(verbose, quiet)
    from finetune_kit.commands.train import WaitCancelled
    from finetune_kit.commands.train import train as run_training
    from finetune_kit.config import load_recipe
    from finetune_kit.console import get_console, run_summary
    from finetune_kit.data import require_one_process
    from finetune_kit.training import RunStopped, StopOnRequest

    started = time.perf_counter()
    loaded = load_recipe(recipe, overrides)
    flags = {"resume": resume, "overwrite": overwrite, "force": force} | _output_flags(context, verbose, quiet)
    require_one_process(loaded.data, (nodes or 1) * (processes_per_node or 1) * (workers or 1))  # before a launch
    if ray_address is not None or workers is not None:
        from finetune_kit.cluster import check_ray_options

        given = {"--nodes": nodes is not None, "--processes-per-node": processes_per_node is not None}
        check_ray_options(ray_address, workers, given | {"--start-when": start_when is not None})
    if any(option is not None for option in (nodes, node_rank, master, processes_per_node)):
        from finetune_kit.commands.launch import NodeLaunch, forwarded_arguments, launch_nodes

        if start_when is not None:
            raise UserError("--start-when waits in one process: wait for the window, then launch the nodes")
        launch = NodeLaunch.from_options(nodes or 1, node_rank, master, processes_per_node)
        raise typer.Exit(launch_nodes(launch, forwarded_arguments(str(recipe), overrides or [], flags)))
    get_console().print(f"[bold]finetune-kit[/] {loaded.task} · {loaded.model.description} → {loaded.run_dir}")
    if ray_address is not None:
        from finetune_kit.cluster.ray_train import rank_job, train_on_ray

        ran = train_on_ray(rank_job(recipe, overrides or [], flags), ray_address, workers, loaded.run_dir)
        _print_ray_run(ran, loaded.run_dir, started)
        return
    stop = StopOnRequest()  # SIGTERM (the studio's Stop) ends training at the step's end, a checkpoint kept
    try:
        with stop.listening():
            result = run_training(
                loaded, resume=resume, overwrite=overwrite, force=force, start_when=start_when, extra_callbacks=[stop]
            )
    except WaitCancelled:
        errors.print("cancelled while waiting for the window; nothing was trained or written", highlight=False)
        raise typer.Exit(130) from None
    except RunStopped as stopped:  # SIGTERM: the studio's Stop
        _say_how_to_continue(f"stopped at step {stopped.step}", recipe, overrides)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        _say_how_to_continue("interrupted", recipe, overrides)
        raise typer.Exit(130) from None
    if result.is_main:
        console.print(run_summary(result.metrics, result.emissions, result.run_dir, time.perf_counter() - started))


def _output_flags(context: typer.Context, verbose: bool, quiet: bool) -> dict[str, bool]:
    """-v and -q, given before the command or after it."""
    shown = context.parent.params if context.parent else {}
    return {"verbose": verbose or shown.get("verbose", False), "quiet": quiet or shown.get("quiet", False)}


def _print_ray_run(result: RunResult | None, run_dir: Path, started: float) -> None:
    from finetune_kit.console import run_summary

    if result is None:
        console.print(f"trained on the cluster; the run folder is on rank 0's machine: {run_dir}")
    else:
        console.print(run_summary(result.metrics, result.emissions, result.run_dir, time.perf_counter() - started))


def _say_how_to_continue(what: str, recipe: Path, overrides: list[str] | None) -> None:
    """The run ended early: `what` happened, and the command that resumes it, with the `--set` options as given
    (the same output folder)."""
    from finetune_kit.console import stop_bars

    stop_bars()
    options = [part for item in overrides or [] for part in ("--set", item)]
    command = shlex.join(["finetune-kit", "train", str(recipe), *options, "--resume"])
    errors.print(f"{what}; continue with: {command}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def sweep(
    context: typer.Context,
    recipe: RecipeArg,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed sweep: keep its finished trials")] = False,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL shared by several processes (default: the sweep folder)")
    ] = None,
    ray_address: RayOpt = None,
    workers: WorkersOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Search the recipe's `sweep:` fields with Optuna, every trial a run folder; report the metric-vs-CO2 front.
    With --ray, the trials run in --workers tasks on a Ray cluster."""
    if verbose or quiet:
        _configure_output(verbose, quiet)
    from finetune_kit.cluster import check_ray_options
    from finetune_kit.console import stop_bars
    from finetune_kit.sweep.run import run_sweep

    check_ray_options(ray_address, workers, {})
    try:
        if ray_address is not None:
            from finetune_kit.cluster.ray_sweep import sweep_on_ray

            shown = _output_flags(context, verbose, quiet)
            output = (shown["verbose"], shown["quiet"])
            report = sweep_on_ray(
                recipe, overrides or [], ray_address, workers, resume=resume, storage=storage, output=output
            )
        else:
            report = run_sweep(recipe, overrides, resume=resume, storage=storage)
    except KeyboardInterrupt:
        stop_bars()
        errors.print(f"interrupted; continue with: finetune-kit sweep {recipe} --resume")
        raise typer.Exit(130) from None
    console.print(report.table())
    console.print(report.summary(), markup=False, highlight=False)


@app.command()
def estimate(
    recipe: RecipeArg,
    overrides: SetOpt = None,
    steps: Annotated[int, typer.Option(min=1, help="Training steps timed (after 3 warm-up steps)")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    where: Annotated[
        bool, typer.Option("--where", help="Also the run's grams in every grid region codecarbon knows, lowest first")
    ] = False,
    where_all: Annotated[
        bool, typer.Option("--where-all", help="As --where, every region in the table (not the lowest 15)")
    ] = False,
) -> None:
    """Predict a run's wall time, kWh and grams CO2eq from a short calibration on this machine: real
    training steps, one evaluation, one generation batch and one save, timed under codecarbon. Writes nothing."""
    from finetune_kit.commands.estimate_report import estimate_table, placement_line, placement_table, summary_line
    from finetune_kit.config import load_recipe
    from finetune_kit.console import ConsoleReport
    from finetune_kit.estimate.budget import estimate_run
    from finetune_kit.estimate.regions import place
    from finetune_kit.training import prepare

    if as_json:
        _configure_output(verbose=False, quiet=True)  # stdout carries the JSON alone
    loaded = load_recipe(recipe, overrides)
    result, calibration = estimate_run(prepare(loaded), steps, ConsoleReport())
    placement = place(result.kwh, loaded.emissions) if where or where_all else None
    if as_json:
        extra = {"where": placement.to_dict()} if placement else {}
        console.print_json(json.dumps({**result.to_dict(), "calibration": calibration.to_dict(), **extra}))
        return
    console.print(estimate_table(result))
    console.print(summary_line(result, loaded.emissions), highlight=False)
    if placement:
        console.print(placement_table(placement, every=where_all))
        console.print(placement_line(placement), highlight=False)


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
    output: Annotated[
        Path | None,
        typer.Option(help="Write predictions as JSON lines here; an embedding model's vectors as a matrix: x.npy"),
    ] = None,
    backend: Annotated[
        Backend, typer.Option(help="pytorch, or the run's ONNX export (`finetune-kit export` first): onnx, onnx-int8")
    ] = Backend.PYTORCH,
) -> None:
    """Predict with a finished run on a file or on texts; the energy per 1,000 predictions goes to stderr."""
    from finetune_kit import inference
    from finetune_kit.emissions.inference import InferenceMeter

    run = inference.open_run(run_dir, backend.value)
    rows = inference.read_inputs(run, input_file, text or [])
    with InferenceMeter(run.recipe.emissions, "predictions", run.backend) as meter:
        with meter.measuring():
            results = run.predict(rows)
        meter.add(len(results))
    if output:
        inference.write_predictions(output, results)
        console.print(f"wrote {len(results)} predictions to {output}")
    else:
        for result in results:
            console.print_json(json.dumps(result, ensure_ascii=False))
    _report_energy(meter.result)


@app.command(name="eval")
def evaluate(
    run_dir: RunDirArg,
    data: Annotated[Path, typer.Option(help="Labelled data file, same columns as training")],
    output: Annotated[Path | None, typer.Option(help="Where to save the metrics JSON")] = None,
) -> None:
    """Evaluate a finished run on a labelled file; print and save the metrics, with the energy per
    1,000 predictions (also kept in the run folder for its card)."""
    from finetune_kit import inference
    from finetune_kit.emissions.inference import InferenceEnergy
    from finetune_kit.runs import Layout

    run = inference.open_run(run_dir)
    metrics = inference.evaluate_file(run, data)
    target = output or run.files.path(Layout.EVALUATIONS) / f"{data.name.split('.')[0]}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(metrics, indent=2) + "\n")
    if "inference" in metrics:
        run.files.write_json(Layout.INFERENCE, {"data": data.name, **metrics["inference"]})
    _print_metrics(f"{data.name}", metrics)
    console.print(f"saved to {target}")
    _report_energy(InferenceEnergy.from_dict(metrics["inference"]) if "inference" in metrics else None)


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
    through its chat template; settings default to the recipe's generation section. The energy per
    1,000 generated tokens goes to stderr."""
    from finetune_kit import inference
    from finetune_kit.emissions.inference import InferenceMeter

    run = inference.open_run(run_dir)
    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    with InferenceMeter(run.recipe.emissions, "generated tokens") as meter:
        with meter.measuring():
            texts = inference.generate(run, prompt, options)
        meter.add(inference.generated_tokens(run.tokenizer, inference.continuations(run, prompt, texts)))
    for text in texts:
        console.print(text, markup=False, highlight=False)
    _report_energy(meter.result)


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
    Without a terminal, reads the messages from stdin. At the end, the session's energy per 1,000
    generated tokens goes to stderr."""
    from finetune_kit.chat import Conversation, chat_loop, load_chat_model
    from finetune_kit.emissions.inference import InferenceMeter
    from finetune_kit.inference import generated_tokens, with_generation_overrides

    loaded = load_chat_model(target)
    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    loaded.settings = with_generation_overrides(loaded.settings, options)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    with InferenceMeter(loaded.emissions, "generated tokens") as meter:
        replies = chat_loop(loaded, Conversation(system or loaded.system), _chat_lines(write), write, meter.measuring)
        meter.add(generated_tokens(loaded.tokenizer, replies))
    _report_energy(meter.result)


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
def serve(
    run_dir: RunDirArg,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens the server to the network")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port)")] = 8000,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Most texts per forward pass, and per request")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="How long a batch waits for more requests")] = 5.0,
    max_text_chars: Annotated[int, typer.Option(min=1, help="Longest text or chat message accepted")] = 10_000,
    max_chat_batch: Annotated[int, typer.Option(min=1, help="Most chat replies decoded together; more wait")] = 8,
    backend: Annotated[
        Backend, typer.Option(help="pytorch, or the run's ONNX export (`finetune-kit export` first): onnx, onnx-int8")
    ] = Backend.PYTORCH,
    chat_precision: Annotated[
        ChatPrecision,
        typer.Option(
            help="Weights for chat replies: auto (the run's training precision on this machine), fp32 (a greedy "
            "reply is the same token for token alone or batched), bf16, fp16 (GPU)"
        ),
    ] = ChatPrecision.AUTO,
) -> None:
    """Serve a finished run over HTTP: POST /predict (classification, NER, SetFit, embeddings; concurrent
    requests are micro-batched), POST /score (reward models: a score per prompt and reply), POST
    /v1/embeddings (embedding runs; OpenAI-compatible), POST /v1/chat/completions (sft, preference,
    grpo; OpenAI-compatible; concurrent replies share decoding passes), GET /health, GET /metrics
    (Prometheus: requests, latency, batch sizes, energy and CO2). Ctrl-C stops."""
    from finetune_kit.serving import RunServer, ServeOptions

    options = ServeOptions(
        host, port, max_batch_size, max_wait_ms, max_text_chars, max_chat_batch, backend.value, chat_precision.value
    )
    server = RunServer.open(run_dir, options)
    chats = server.service.chats
    engine = f"{backend.value}, {chats.precision}" if chats else backend.value
    console.print(f"serving {run_dir} ({server.service.task}, {engine}) at {server.url}", markup=False)
    console.print(f"  {'  '.join(server.routes)}; Ctrl-C stops", markup=False, highlight=False)
    if server.exposed:
        console.print("[yellow]listening beyond this machine: anyone who reaches it can use the model[/]")
    server.run()
    console.print(server.summary(), markup=False, highlight=False)


@app.command()
def studio(
    runs: Annotated[
        list[Path] | None,
        typer.Option("--runs", help="Folder of run folders to show (repeatable); new runs go to the first"),
    ] = None,
    recipes: Annotated[
        list[Path] | None, typer.Option("--recipes", help="Folder of recipes the New run page offers (repeatable)")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; any other than loopback asks for a token")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port)")] = 7860,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="FINETUNE_KIT_STUDIO_TOKEN", help="Token the browser must give (default beyond loopback: random)"
        ),
    ] = None,
) -> None:
    """A local web UI: runs and their live curves, metric against CO2, new runs from a recipe form (estimate,
    start, stop), chat with a tuned model, Hub search and push. Ctrl-C stops the studio, not its runs."""
    from finetune_kit.studio import StudioSettings
    from finetune_kit.studio.server import StudioServer

    settings = StudioSettings.create(runs or [Path("runs")], recipes or [Path("recipes")], host, port, token)
    server = StudioServer(settings)
    console.print(f"finetune-kit studio at {server.settings.url}", markup=False, highlight=False)
    if settings.token and token is None:
        console.print("[yellow]listening beyond this machine: open the address above, token included[/]")
    server.run()


@app.command()
def merge(
    run_dir: RunDirArg,
    output: Annotated[Path, typer.Option(help="Folder for the merged checkpoint (new or empty)")],
) -> None:
    """Merge an adapter run (LoRA, IA3, ...) into a full checkpoint plain transformers loads."""
    from finetune_kit import inference
    from finetune_kit.models.adapters import write_merged

    run = inference.open_run(run_dir)
    write_merged(run.model, run.tokenizer, run.files.model_dir, output)
    console.print(f"merged {run_dir} → {output}")


@app.command()
def export(
    run_dir: RunDirArg,
    export_format: Annotated[ExportFormat, typer.Option("--format", help="Export format")] = ExportFormat.ONNX,
    quantize: Annotated[Quantization | None, typer.Option(help="Also write int8 weights: model.int8.onnx")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Export folder (default RUN_DIR/onnx, which predict --backend onnx reads)")
    ] = None,
) -> None:
    """Export a classification or NER run (adapters merged) to ONNX, checked against PyTorch on the
    run's validation rows: max |logit difference|, labels, and the metric (int8: its change)."""
    from finetune_kit.console import ConsoleReport
    from finetune_kit.export import export_run

    del export_format  # ONNX is the one format so far
    result = export_run(run_dir, output, int8=quantize is Quantization.INT8, progress=ConsoleReport())
    for line in result.lines():
        console.print(line, markup=False, highlight=False)


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
    from finetune_kit.runs.emissions import read_run_emissions

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


def _report_energy(energy: InferenceEnergy | None) -> None:
    """One line after the results, on stderr: piped stdout and --output files hold results only."""
    from finetune_kit.console import get_console

    if energy is not None and not get_console().quiet:
        errors.print(energy.line(), markup=False, highlight=False, soft_wrap=True)


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
