"""`finetune-kit export`: ONNX graphs of tiny classification, NER and adapter runs that predict what
PyTorch predicts, int8 graphs that load, refusals; and the inference energy that predict, eval,
generate and chat report."""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from finetune_kit.export import graph as export_graph_module
from finetune_kit.export.fusion import BERT_LIKE
from finetune_kit.export.graph import DYNAMO, FUSED, export_graph
from tests.builders import (
    classification_recipe,
    clm_recipe,
    ner_recipe,
    sentiment_splits,
    toy_ner_rows,
    toy_sentiment_rows,
    train_run,
    write_jsonl,
)

ENERGY = re.compile(r"inference energy \(([\w-]+)\): ([\d.e+-]+) mg CO2eq and ([\d.e+-]+) Wh per 1,000 ([a-z ]+) \(")


def operators(graph: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(graph).graph.node)


def fresh_copy(run_dir: Path, tmp_path: Path) -> Path:
    """Each test exports into its own copy: an export lands inside the run folder."""
    return Path(shutil.copytree(run_dir, tmp_path / "runs" / run_dir.name))


@pytest.fixture(scope="module")
def classification_run(tiny_bert, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export-classification")
    data = sentiment_splits(folder, train=240, validation=100)
    return train_run(classification_recipe(tiny_bert, data, folder / "toy", epochs=3), folder)


@pytest.fixture(scope="module")
def ner_run(tiny_bert, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export-ner")
    return train_run(ner_recipe(tiny_bert, folder, folder / "ner", rows=(240, 60)), folder)


def energy_of(stderr: str) -> tuple[str, float, float, str]:
    """backend, mg CO2eq and Wh per 1,000, and the unit, from the line a command prints last."""
    match = ENERGY.search(stderr)
    assert match, stderr
    return match.group(1), float(match.group(2)), float(match.group(3)), match.group(4)


def predictions(cli, run_dir: Path, inputs: Path, out: Path, *backend: str) -> tuple[list[dict], str]:
    result = cli("predict", run_dir, "--input", inputs, "--output", out, *backend)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()], result.stderr


def test_fp32_export_matches_pytorch_and_predicts_the_same(classification_run, tmp_path, cli):
    run_dir = fresh_copy(classification_run, tmp_path)
    exported = cli("export", run_dir, "--format", "onnx")
    assert exported.exit_code == 0, exported.stderr
    assert "fp32 vs PyTorch on 100 validation rows: max |logit diff|" in exported.stdout
    assert "labels identical (100 of 100)" in exported.stdout

    folder = run_dir / "onnx"
    assert {"model.onnx", "config.json", "tokenizer.json", "export.json", "README.md"} <= {
        p.name for p in folder.iterdir()
    }
    assert not (folder / "model.int8.onnx").exists() and not run_dir.joinpath("onnx.partial").exists()
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    parity = json.loads((folder / "export.json").read_text())["parity"]["fp32"]
    assert parity["max_abs_logit_diff"] < 1e-3 and parity["labels_identical"] and parity["rows"] == 100
    assert parity["onnx"] == pytest.approx(parity["pytorch"]) and parity["pytorch"] >= 0.9
    assert "labels identical" in (folder / "README.md").read_text()

    inputs = write_jsonl(tmp_path / "in.jsonl", toy_sentiment_rows(40, seed=9))
    torch_rows, torch_err = predictions(cli, run_dir, inputs, tmp_path / "pt.jsonl")
    onnx_rows, onnx_err = predictions(cli, run_dir, inputs, tmp_path / "onnx.jsonl", "--backend", "onnx")
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    for ours, theirs in zip(onnx_rows, torch_rows, strict=True):
        assert ours["text"] == theirs["text"] and ours["scores"] == pytest.approx(theirs["scores"], abs=1e-5)
    for stderr, backend in ((torch_err, "pytorch"), (onnx_err, "onnx")):
        named, mg, wh, unit = energy_of(stderr)
        assert (named, unit) == (backend, "predictions") and mg > 0 and wh > 0
        assert "40 predictions in" in stderr

    no_int8 = cli("predict", run_dir, "--text", "superb", "--backend", "onnx-int8")
    assert no_int8.exit_code == 2
    assert "run `finetune-kit export" in no_int8.error_lines[0] and "--quantize int8` first" in no_int8.error_lines[0]


def test_int8_export_reports_its_accuracy_change_and_predicts(classification_run, tmp_path, cli):
    run_dir = fresh_copy(classification_run, tmp_path)
    exported = cli("export", run_dir, "--quantize", "int8")
    assert exported.exit_code == 0, exported.stderr
    assert "int8 vs PyTorch on 100 validation rows" in exported.stdout and "accuracy" in exported.stdout
    record = json.loads((run_dir / "onnx" / "export.json").read_text())
    assert record["graphs"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    int8 = record["parity"]["int8"]
    assert int8["metric"] == "accuracy" and int8["metric_delta"] == pytest.approx(int8["onnx"] - int8["pytorch"])
    assert abs(int8["metric_delta"]) <= 0.1  # int8 weights cost little on this easy task
    assert record["exporter"] == FUSED  # a BERT: one fused attention per layer, int8 in the int8 graph
    assert operators(run_dir / "onnx" / "model.onnx")["Attention"] == 2
    assert operators(run_dir / "onnx" / "model.int8.onnx")["QAttention"] == 2

    inputs = write_jsonl(tmp_path / "in.jsonl", toy_sentiment_rows(20, seed=9))
    rows, stderr = predictions(cli, run_dir, inputs, tmp_path / "int8.jsonl", "--backend", "onnx-int8")
    assert len(rows) == 20 and {r["label"] for r in rows} <= {"neg", "pos"}
    assert energy_of(stderr)[0] == "onnx-int8"


def test_ner_export_gives_the_same_entities(ner_run, tmp_path, cli):
    run_dir = fresh_copy(ner_run, tmp_path)
    exported = cli("export", run_dir)
    assert exported.exit_code == 0, exported.stderr
    parity = json.loads((run_dir / "onnx" / "export.json").read_text())["parity"]["fp32"]
    assert parity["labels_identical"] and parity["labels_compared"] > parity["rows"] == 60  # one label per word
    assert parity["metric"] == "f1" and parity["onnx"] == parity["pytorch"] > 0.5  # it learned entities

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"tokens": row["tokens"]} for row in toy_ner_rows(30, 7)])
    torch_rows, _ = predictions(cli, run_dir, inputs, tmp_path / "pt.jsonl")
    onnx_rows, _ = predictions(cli, run_dir, inputs, tmp_path / "onnx.jsonl", "--backend", "onnx")
    assert any(row["entities"] for row in torch_rows)
    for ours, theirs in zip(onnx_rows, torch_rows, strict=True):
        assert [(e["type"], e["start"], e["end"]) for e in ours["entities"]] == [
            (e["type"], e["start"], e["end"]) for e in theirs["entities"]
        ]


@pytest.mark.parametrize("model_type", sorted(BERT_LIKE))
def test_each_bert_like_encoder_is_fused_and_computes_the_same_logits(model_type, tiny_bert, tmp_path):
    sizes = {"vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = AutoConfig.for_model(model_type, **sizes, intermediate_size=64, hidden_dim=64, embedding_size=32)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    assert export_graph(model, tokenizer, tmp_path / "model.onnx") == FUSED
    assert operators(tmp_path / "model.onnx")["Attention"] == 2
    encoded = tokenizer(["a long sentence with many words in it", "short"], padding=True, return_tensors="pt")
    inputs = {name: encoded[name] for name in ("input_ids", "attention_mask")}
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx", providers=["CPUExecutionProvider"])
    names = {node.name for node in session.get_inputs()}
    logits = session.run(["logits"], {name: tensor.numpy() for name, tensor in encoded.items() if name in names})[0]
    assert abs(logits - expected).max() < 1e-4


def not_fused(graph, config):
    raise ValueError(f"fused attention in 0 of {config.num_hidden_layers} layers")


def test_layers_that_do_not_fuse_are_exported_by_torch_export(classification_run, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(export_graph_module, "fuse_layers", not_fused)
    run_dir = fresh_copy(classification_run, tmp_path)
    exported = cli("export", run_dir, "--quantize", "int8")
    assert exported.exit_code == 0, exported.stderr
    record = json.loads((run_dir / "onnx" / "export.json").read_text())
    assert record["exporter"] == DYNAMO and record["parity"]["fp32"]["labels_identical"]
    assert "Attention" not in operators(run_dir / "onnx" / "model.onnx")
    assert not (run_dir / "onnx.partial").exists()


def test_a_model_torch_export_cannot_capture_goes_through_the_tracer(ner_run, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(export_graph_module, "fuse_layers", not_fused)
    export = torch.onnx.export

    def without_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise torch.onnx.OnnxExporterError("torch.export could not capture the model")
        return export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", without_dynamo)
    run_dir = fresh_copy(ner_run, tmp_path)
    exported = cli("export", run_dir)
    assert exported.exit_code == 0, exported.stderr
    assert "exported with TorchScript" in exported.stdout
    record = json.loads((run_dir / "onnx" / "export.json").read_text())
    assert record["exporter"] == "TorchScript" and record["parity"]["fp32"]["labels_identical"]


def test_adapter_run_is_merged_before_export(tiny_bert, tmp_path, write_recipe, cli):
    data = {
        "train": write_jsonl(tmp_path / "train.jsonl", toy_sentiment_rows(200, seed=1)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", toy_sentiment_rows(40, seed=2)),
    }
    run_dir = tmp_path / "runs" / "lora"
    recipe = classification_recipe(tiny_bert, data, run_dir, epochs=1, learning_rate=1e-2)
    recipe["peft"] = {"method": "lora", "r": 4, "alpha": 8}
    assert cli("train", write_recipe(recipe)).exit_code == 0
    assert (run_dir / "model" / "adapter_config.json").is_file()

    exported = cli("export", run_dir)
    assert exported.exit_code == 0, exported.stderr
    assert "adapter merged into its base" in exported.stdout
    record = json.loads((run_dir / "onnx" / "export.json").read_text())
    assert record["adapter_merged"] and record["parity"]["fp32"]["labels_identical"]
    inputs = write_jsonl(tmp_path / "in.jsonl", toy_sentiment_rows(20, seed=9))
    torch_rows, _ = predictions(cli, run_dir, inputs, tmp_path / "pt.jsonl")
    onnx_rows, _ = predictions(cli, run_dir, inputs, tmp_path / "onnx.jsonl", "--backend", "onnx")
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert (run_dir / "model" / "adapter_config.json").is_file()  # the run itself keeps its adapter


def test_predict_with_onnx_before_any_export_says_how_to_export(classification_run, cli):
    result = cli("predict", classification_run, "--text", "a superb film", "--backend", "onnx")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"run `finetune-kit export {classification_run} --format onnx` first" in result.error_lines[0]


def test_a_graph_that_differs_from_pytorch_is_not_exported(classification_run, tmp_path, cli, monkeypatch):
    """As if the exporter mistranslated the classifier: off by 0.01 in every logit."""
    from finetune_kit.export import folder as export_folder

    export_graph = export_folder.export_graph

    def shifted_graph(model, tokenizer, target):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            shifted.classifier.bias += 0.01
        return export_graph(shifted, tokenizer, target)

    monkeypatch.setattr(export_folder, "export_graph", shifted_graph)
    run_dir = fresh_copy(classification_run, tmp_path)
    result = cli("export", run_dir)
    assert result.exit_code == 2
    assert (
        "the ONNX graph does not match PyTorch on 100 validation rows (max |logit diff| 1.00e-02"
        in (result.error_lines[0])
    )
    assert not (run_dir / "onnx").exists() and not (run_dir / "onnx.partial").exists()


def test_other_tasks_are_refused_and_generate_reports_energy_per_token(tiny_gpt2, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "clm"
    recipe = clm_recipe(tmp_path, run_dir, {"checkpoint": str(tiny_gpt2)})
    recipe["training"]["epochs"] = 1
    assert cli("train", write_recipe(recipe)).exit_code == 0

    for command in (("export", run_dir, "--format", "onnx"), ("predict", run_dir, "--text", "x", "--backend", "onnx")):
        refused = cli(*command)
        assert refused.exit_code == 2
        assert refused.error_lines == [
            f"error: {run_dir}: ONNX export covers classification, NER and embedding runs; this is a causal-lm run "
            "(use the PyTorch backend)"
        ]
    assert not (run_dir / "onnx").exists() and not (run_dir / "onnx.partial").exists()

    generated = cli("generate", run_dir, "--prompt", "the film", "--max-new-tokens", "8")
    assert generated.exit_code == 0, generated.stderr
    assert generated.stdout.startswith("the film") and "inference energy" not in generated.stdout
    backend, mg, _, unit = energy_of(generated.stderr)
    assert (backend, unit) == ("pytorch", "generated tokens") and mg > 0


def test_chat_reports_the_session_energy_once_at_exit(tiny_chat_llama, cli, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nhow are you\n"))
    result = cli("chat", tiny_chat_llama, "--max-new-tokens", "6")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("> hello\n") and "inference energy" not in result.stdout
    assert result.stderr.count("inference energy") == 1
    assert energy_of(result.stderr)[3] == "generated tokens"


def test_eval_records_inference_energy_and_the_card_shows_it(classification_run, tmp_path, cli):
    run_dir = fresh_copy(classification_run, tmp_path)
    assert "**Inference**" not in (run_dir / "README.md").read_text()
    data = write_jsonl(tmp_path / "fresh.jsonl", toy_sentiment_rows(60, seed=9))
    result = cli("eval", run_dir, "--data", data)
    assert result.exit_code == 0, result.stderr
    assert energy_of(result.stderr)[3] == "predictions"

    inference = json.loads((run_dir / "eval" / "fresh.json").read_text())["inference"]
    assert inference["count"] == 60 and inference["unit"] == "predictions"
    assert inference["energy_kwh"] > 0 and inference["mg_co2eq_per_1000"] > 0 and inference["hardware"]
    assert inference["country_iso_code"] == "FRA"  # the run's emissions settings apply
    assert json.loads((run_dir / "inference.json").read_text())["data"] == "fresh.jsonl"

    assert cli("card", run_dir).exit_code == 0
    card = (run_dir / "README.md").read_text()
    line = next(line for line in card.splitlines() if line.startswith("**Inference**"))
    assert "mg CO2eq and" in line and "per 1,000 predictions (`finetune-kit eval` on fresh.jsonl, pytorch" in line
