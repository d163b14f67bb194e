"""A fine-tuned embedding run against untuned models on the same retrieval set: NDCG@10, MRR@10,
Recall@10, and the energy of embedding 1,000 queries.

    python scripts/retrieval_set.py --data-dir path/to/dialogsum          # data/dialogsum_retrieval/
    finetune-kit train recipes/dialogsum_embedding.yaml                    # runs/dialogsum-embedding
    python bench/embedding_retrieval.py --run runs/dialogsum-embedding \\
        --baseline sentence-transformers/all-MiniLM-L6-v2 --baseline sentence-transformers/all-mpnet-base-v2

Each model embeds the split's queries and corpus with its own pipeline (pooling, normalization) and
its own maximum length, and is scored by sentence-transformers' `InformationRetrievalEvaluator` over the
whole corpus. The energy is codecarbon's (offline, the run's country) for encoding the queries alone,
batch 32, after one warm-up batch: what serving a search costs per 1,000 queries.
"""

from __future__ import annotations

from finetune_kit.quiet import quiet_libraries

quiet_libraries()

import argparse
import json
from pathlib import Path

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from finetune_kit.config.embedding import RetrievalFiles
from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.emissions.inference import InferenceMeter
from finetune_kit.models import resolve_checkpoint
from finetune_kit.runs import FinishedRun
from finetune_kit.tasks.embedding_data import RetrievalSet

BATCH = 32
SHOWN = ("ndcg@10", "mrr@10", "recall@10", "accuracy@1")


def score(name: str, folder: str, retrieval: RetrievalSet, emissions: EmissionsConfig) -> dict:
    model = SentenceTransformer(folder, device="cpu")
    evaluator = InformationRetrievalEvaluator(
        retrieval.queries, retrieval.corpus, retrieval.relevant, batch_size=BATCH, write_csv=False
    )
    metrics = {key.removeprefix("cosine_"): value for key, value in evaluator(model).items()}
    queries = list(retrieval.queries.values())
    model.encode(queries[:BATCH], batch_size=BATCH)  # warm-up: first-call allocations are not a query's cost
    meter = InferenceMeter(emissions, "queries")
    with meter, meter.measuring():
        model.encode(queries, batch_size=BATCH)
        meter.add(len(queries))
    energy = meter.result
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "parameters": parameters,
        "max_length": model.max_seq_length,
        **{key: metrics[key] for key in SHOWN},
        "mg_per_1000_queries": energy.mg_per_thousand if energy else None,
        "wh_per_1000_queries": energy.wh_per_thousand if energy else None,
        "query_seconds": energy.record.duration_s if energy else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="A finished `task: embedding` run")
    parser.add_argument("--baseline", action="append", default=[], help="An untuned checkpoint (repeatable)")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/embedding_retrieval.json"))
    args = parser.parse_args()

    run = FinishedRun.open(args.run)
    recipe = run.recipe()
    files: RetrievalFiles | None = getattr(recipe.data, f"{args.split}_retrieval")
    if files is None:
        raise SystemExit(f"{args.run}: its recipe has no data.{args.split}_retrieval to search")
    retrieval = RetrievalSet.from_files(files, f"{args.split}_retrieval")
    emissions = recipe.emissions.model_copy(update={"measure_power_secs": 1.0})
    rows = [score(name, resolve_checkpoint(name), retrieval, emissions) for name in args.baseline]
    rows.append(score(f"{args.run.name} (fine-tuned)", str(run.model_dir), retrieval, emissions))

    print(f"{args.split}: {len(retrieval.queries):,} queries over {len(retrieval.corpus):,} documents\n")
    print("| model | parameters | max length | " + " | ".join(SHOWN) + " | mg CO2eq / 1k queries | Wh / 1k queries |")
    print("|---|---:|---:|" + "---:|" * (len(SHOWN) + 2))
    for row in rows:
        scores = " | ".join(f"{row[key]:.4f}" for key in SHOWN)
        energy = f"{row['mg_per_1000_queries']:.3g} | {row['wh_per_1000_queries']:.3g}"
        print(f"| {row['model']} | {row['parameters'] / 1e6:.1f}M | {row['max_length']} | {scores} | {energy} |")
    tuned = rows[-1]
    for row in rows[:-1]:
        gain = 100 * (tuned["ndcg@10"] - row["ndcg@10"])
        print(f"\nfine-tuned vs {row['model']}: NDCG@10 {gain:+.2f} points")
    trained = json.loads((args.run / "metrics.json").read_text())
    print(
        f"training: {trained['train']['runtime']:.0f} s, {trained.get('emissions_g', 0):.3g} g CO2eq, "
        f"{trained.get('energy_kwh', 0):.3g} kWh (the run's metrics.json)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"split": args.split, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
