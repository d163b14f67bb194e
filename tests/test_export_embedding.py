"""`finetune-kit export` of an embedding run: graphs whose one output is each text's vector, pooled and
normalized as the run's sentence-transformers pipeline says, checked against PyTorch's vectors, and
`predict --backend onnx|onnx-int8` giving the rows PyTorch gives."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from transformers import AutoTokenizer

from finetune_kit.export.graph import FUSED
from finetune_kit.export.parity import FP32_MIN_COSINE, texts_of
from tests.builders import train_run, write_jsonl
from tests.tasks.test_embedding import embedding_recipe, opposite_pairs


@pytest.fixture(scope="module")
def embedding_run(tiny_bert, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export-embedding")
    recipe = embedding_recipe(tiny_bert, folder, folder / "runs" / "embedding")
    recipe["training"]["epochs"] = 1
    return train_run(recipe, folder)


def operators(graph: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(graph).graph.node)


def fresh_copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "runs" / run_dir.name))


def normalized(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run whose pipeline L2-normalizes after pooling (2_Normalize), as MiniLM's does."""
    run_dir = fresh_copy(run_dir, tmp_path)
    modules = json.loads((run_dir / "model" / "modules.json").read_text())
    modules.append(
        {
            "idx": len(modules),
            "name": str(len(modules)),
            "path": "2_Normalize",
            "type": "sentence_transformers.base.modules.normalize.Normalize",
        }
    )
    (run_dir / "model" / "modules.json").write_text(json.dumps(modules))
    (run_dir / "model" / "2_Normalize").mkdir()
    return run_dir


def vectors(cli, run_dir: Path, inputs: Path, out: Path, *backend: str) -> np.ndarray:
    result = cli("predict", run_dir, "--input", inputs, "--output", out, *backend)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(row) for row in rows] == [{"text", "embedding"}] * len(rows)
    return np.array([row["embedding"] for row in rows])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("pipeline", ["mean pooling", "mean pooling, normalized"])
def test_embedding_export_gives_pytorchs_vectors_in_fp32_and_int8(pipeline, embedding_run, tmp_path, cli):
    run_dir = normalized(embedding_run, tmp_path) if "normalized" in pipeline else fresh_copy(embedding_run, tmp_path)
    exported = cli("export", run_dir, "--format", "onnx", "--quantize", "int8")
    assert exported.exit_code == 0, exported.stderr
    texts = len({text for row in opposite_pairs(30, seed=2) for text in row.values()})  # the validation texts
    assert f"fp32 vs PyTorch on {texts} validation texts: max |vector diff|" in exported.stdout

    folder = run_dir / "onnx"
    record = json.loads((folder / "export.json").read_text())
    assert record["output"] == "embedding" and record["exporter"] == FUSED
    assert record["graphs"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    fp32, int8 = record["parity"]["fp32"], record["parity"]["int8"]
    assert fp32["rows"] == int8["rows"] == texts and fp32["dimension"] == 32
    assert fp32["max_abs_vector_diff"] < 1e-4 and fp32["min_cosine"] >= FP32_MIN_COSINE
    assert int8["mean_cosine"] >= 0.99, int8
    assert record["parity"]["fp32_min_cosine"] == FP32_MIN_COSINE
    assert "cosine to PyTorch's 32-d vectors" in (folder / "README.md").read_text()
    assert "failed" not in exported.stdout  # ONNX Runtime's shape inference read the whole graph
    fused = operators(folder / "model.onnx")
    assert fused["Attention"] == fused["SkipLayerNormalization"] / 2 == 2  # per layer: attention, 2 skip + norm

    # The graph alone gives the sentence vectors: pooled (and normalized) inside it.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = onnxruntime.InferenceSession(folder / "model.onnx", providers=["CPUExecutionProvider"])
    names = {node.name for node in session.get_inputs()}
    encoded = tokenizer(["good film", "a bad one"], padding=True, return_tensors="np")
    (graph_vectors,) = session.run(["embedding"], {name: value for name, value in encoded.items() if name in names})
    assert graph_vectors.shape == (2, 32)
    norms = np.linalg.norm(graph_vectors, axis=1)
    assert np.allclose(norms, 1, atol=1e-5) == ("normalized" in pipeline)

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": row["anchor"]} for row in opposite_pairs(40, seed=9)])
    torch_vectors = vectors(cli, run_dir, inputs, tmp_path / "pt.jsonl")
    onnx_vectors = vectors(cli, run_dir, inputs, tmp_path / "onnx.jsonl", "--backend", "onnx")
    int8_vectors = vectors(cli, run_dir, inputs, tmp_path / "int8.jsonl", "--backend", "onnx-int8")
    assert np.abs(onnx_vectors - torch_vectors).max() < 1e-4
    assert cosines(onnx_vectors, torch_vectors).min() >= FP32_MIN_COSINE
    assert cosines(int8_vectors, torch_vectors).mean() >= 0.99


def test_a_wrong_embedding_graph_is_not_exported(embedding_run, tmp_path, cli, monkeypatch):
    """As if the exporter mistranslated the pooling: every vector scaled by 1.01."""
    from finetune_kit.export import folder as export_folder

    export_graph = export_folder.export_graph

    def scaled_graph(module, tokenizer, target):
        pooling = module.pooling
        module.pooling = lambda tokens, mask: pooling(tokens, mask) * 1.01
        return export_graph(module, tokenizer, target)

    monkeypatch.setattr(export_folder, "export_graph", scaled_graph)
    run_dir = fresh_copy(embedding_run, tmp_path)
    result = cli("export", run_dir)
    assert result.exit_code == 2
    assert "the ONNX graph does not match PyTorch on" in result.error_lines[0]
    assert "validation texts (max |vector diff|" in result.error_lines[0]
    assert not (run_dir / "onnx").exists() and not (run_dir / "onnx.partial").exists()


@pytest.mark.unit
def test_parity_texts_are_every_text_column_row_by_row_each_once():
    from datasets import Dataset

    rows = Dataset.from_dict({"anchor": ["a", "b", "a"], "positive": ["x", "y", "z"], "score": [0.1, 0.2, 0.3]})
    assert texts_of(rows) == ["a", "x", "b", "y", "z"]
    assert texts_of(rows, limit=2) == ["a", "x"]
