"""`finetune-kit export`: a finished run → an export folder, built beside its place as `.partial` and
moved in only once the fp32 graph matches PyTorch on the run's validation rows.

The folder holds `model.onnx` (fp32), `model.int8.onnx` (with `--quantize int8`), the tokenizer,
`config.json` (labels), `export.json` (the parity numbers) and a short `README.md` card. What the
graph outputs and how it is checked follow what the task can do (parity.py's `parity_check`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch
from datasets import Dataset
from huggingface_hub import ModelCard, ModelCardData
from peft import PeftModel
from transformers import PreTrainedModel

from finetune_kit.config.recipe import Recipe
from finetune_kit.data import load_data
from finetune_kit.errors import ModelError
from finetune_kit.export.graph import export_graph
from finetune_kit.export.parity import PARITY_ROWS, Parity, VectorParity, parity_check
from finetune_kit.export.quantization import quantize_int8
from finetune_kit.inference import GRAPHS, TorchRun, open_run, read_run, require_exportable
from finetune_kit.models.adapters import merged_model
from finetune_kit.progress import SILENT, Progress
from finetune_kit.runs import Layout
from finetune_kit.runs.folder import PARTIAL_SUFFIX
from finetune_kit.tasks import Task

EXPORT_RECORD = "export.json"
MEGABYTE = 1024**2


@dataclass
class ExportResult:
    folder: Path
    exporter: str
    merged: bool  # an adapter run, merged into its base before export
    output: str  # the graph's output: logits, or embedding
    parity: list[Parity | VectorParity] = field(default_factory=list)  # fp32 first, then int8
    sizes_mb: dict[str, float] = field(default_factory=dict)  # graph file → size

    def lines(self) -> list[str]:
        merged = "; adapter merged into its base" if self.merged else ""
        sizes = ", ".join(f"{name} {size:.1f} MB" for name, size in self.sizes_mb.items())
        return [f"exported with {self.exporter}{merged} → {self.folder} ({sizes})", *(p.line() for p in self.parity)]


def export_run(
    run_dir: Path, output: Path | None = None, int8: bool = False, progress: Progress = SILENT
) -> ExportResult:
    """Export a classification, NER or embedding run to ONNX (an adapter run merged first), check the
    graph against PyTorch, optionally add an int8 graph; replace an earlier export only once all passed.
    `progress` shows the export and the quantization, the steps a person waits for."""
    files, recipe, task = read_run(run_dir)
    require_exportable(run_dir, recipe, task)
    target = output or files.path(Layout.ONNX)
    if target.exists() and any(target.iterdir()) and not (target / EXPORT_RECORD).is_file():
        raise ModelError(f"{target}: exists and holds something other than an export; choose another --output")
    run = open_run(run_dir)
    check = parity_check(run, _parity_rows(recipe))  # PyTorch's outputs, before merging: what `predict` computes
    model = _plain_model(run)
    staging = target.with_name(target.name + PARTIAL_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        graph = staging / GRAPHS["fp32"]
        with progress.phase("export to ONNX"):
            exporter = export_graph(check.exported(model), run.tokenizer, graph)
        result = ExportResult(target, exporter, isinstance(run.model, PeftModel), check.output)
        fp32 = check.against(graph, "fp32")
        check.require_fp32(fp32, run_dir)
        result.parity.append(fp32)
        if int8:
            quantized = staging / GRAPHS["int8"]
            with progress.phase("quantize to int8"):
                quantize_int8(graph, quantized)
            result.parity.append(check.against(quantized, "int8"))
        result.sizes_mb = {
            path.name: round(path.stat().st_size / MEGABYTE, 3)
            for path in sorted(staging.glob("*.onnx*"), key=_by_size)
        }
        run.tokenizer.save_pretrained(staging)
        model.config.save_pretrained(staging)
        (staging / EXPORT_RECORD).write_text(json.dumps(_record(recipe, result, check.criteria), indent=2) + "\n")
        _card(recipe, task, result).save(staging / Layout.CARD)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _parity_rows(recipe: Recipe) -> Dataset:
    """The run's validation rows (held out from train with the run's seed when the recipe names
    no validation file), the first PARITY_ROWS of them."""
    validation = load_data(recipe.data, recipe.training.seed)["validation"]
    return validation.select(range(min(PARITY_ROWS, len(validation))))


def _plain_model(run: TorchRun) -> PreTrainedModel:
    """The exported model: the run's own, or its base with the adapter merged in (in memory only)."""
    if not isinstance(run.model, PeftModel):
        return run.model
    return merged_model(run.model, run.files.model_dir)


def _by_size(path: Path) -> int:
    return -path.stat().st_size


def _record(recipe: Recipe, result: ExportResult, criteria: dict[str, float]) -> dict[str, Any]:
    return {
        "run": recipe.name,
        "task": recipe.task,
        "format": "onnx",
        "exporter": result.exporter,
        "adapter_merged": result.merged,
        "output": result.output,
        "graphs": {p.precision: GRAPHS[p.precision] for p in result.parity},
        "sizes_mb": result.sizes_mb,
        "parity": {"split": "validation"} | criteria | {p.precision: p.to_dict() for p in result.parity},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }


def _card(recipe: Recipe, task: Task, result: ExportResult) -> ModelCard:
    data = ModelCardData(
        library_name="onnx",
        pipeline_tag=task.pipeline_tag,
        tags=["finetune-kit", "onnx", task.name, *(["int8"] if len(result.parity) > 1 else [])],
    )
    graphs = " and ".join(
        f"`{GRAPHS[p.precision]}` ({'int8 weights, dynamic quantization' if p.precision == 'int8' else 'fp32'})"
        for p in result.parity
    )
    parity = "\n".join(f"- {p.line()}" for p in result.parity)
    return ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n# {recipe.name} (ONNX)\n\n"
        f"{graphs} of the {task.pipeline_tag} run `{recipe.name}`, exported by finetune-kit for ONNX Runtime "
        f"(exporter: {result.exporter}{'; adapter merged into its base' if result.merged else ''}). "
        f"Checked against PyTorch at export:\n\n{parity}\n\n"
        "```python\nimport onnxruntime\nfrom transformers import AutoTokenizer\n\n"
        'tokenizer = AutoTokenizer.from_pretrained(".")\n'
        f'session = onnxruntime.InferenceSession("{GRAPHS["fp32"]}")\n'
        f'{result.output} = session.run(["{result.output}"], dict(tokenizer(["..."], return_tensors="np")))[0]\n```\n'
    )


def _move_into_place(staging: Path, target: Path) -> None:
    """An earlier export is replaced only now that the new one is whole."""
    if target.exists():
        trash = target.with_name(f".{target.name}.replaced")
        shutil.rmtree(trash, ignore_errors=True)
        target.rename(trash)
        staging.rename(target)
        shutil.rmtree(trash)
    else:
        staging.rename(target)
