"""The real offline checkpoint (sentence-transformers/all-MiniLM-L6-v2, packaged) on real SST-2 rows."""

import json
from collections import Counter

import pytest

from tests.builders import REPO

pytestmark = pytest.mark.slow


def test_minilm_on_a_few_hundred_sst2_rows_beats_the_majority_class(tmp_path, cli):
    run_dir = tmp_path / "minilm"
    result = cli(
        "train",
        REPO / "recipes" / "sst2_demo.yaml",
        "--set",
        "data.max_train_rows=600",
        "--set",
        "data.max_eval_rows=300",
        "--set",
        "training.epochs=3",
        "--set",
        "training.learning_rate=2e-4",
        "--set",
        f"output_dir={run_dir}",
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    validation = [json.loads(line) for line in (REPO / "recipes/data/sst2/validation.jsonl").read_text().splitlines()]
    majority = max(Counter(row["label"] for row in validation).values()) / len(validation)
    assert metrics["validation"]["accuracy"] > majority + 0.1
    card = (run_dir / "README.md").read_text()
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
