"""Embedding models (`task: embedding`): sentence-transformers' trainer and losses around the encoder the run
builds (so adapters, checkpoints and the run's phases work as for every task), scored on retrieval (NDCG@10)
or similarity (Spearman) before and after training."""

from __future__ import annotations

from typing import Any, ClassVar

from datasets import Dataset, DatasetDict
from peft import PeftModel
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)
from sentence_transformers.util import mine_hard_negatives
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.embedding import EmbeddingRecipe
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import Embedder, Task, TrainerSetup
from finetune_kit.tasks.embedding_data import (
    RetrievalSet,
    canonical,
    check_rows,
    detect_layout,
    source_columns,
)
from finetune_kit.tasks.sentence_pipeline import (
    ENCODE_BATCH,
    SentenceTrainer,
    sentence_model,
    sentence_trainer_setup,
)

# loss name → (the layouts it trains on, how it is built around the model)
LOSSES: dict[str, tuple[frozenset[str], Any]] = {
    "multiple_negatives_ranking": (frozenset({"pair", "triplet"}), losses.MultipleNegativesRankingLoss),
    "cached_multiple_negatives_ranking": (frozenset({"pair", "triplet"}), losses.CachedMultipleNegativesRankingLoss),
    "cosent": (frozenset({"scored-pair"}), losses.CoSENTLoss),
    "cosine": (frozenset({"scored-pair"}), losses.CosineSimilarityLoss),
    "triplet": (frozenset({"triplet"}), losses.TripletLoss),
    "batch_all_triplet": (frozenset({"labelled"}), losses.BatchAllTripletLoss),
}
DEFAULT_LOSS = {
    "pair": "multiple_negatives_ranking",
    "triplet": "multiple_negatives_ranking",
    "scored-pair": "cosent",
    "labelled": "batch_all_triplet",
}
IN_BATCH_NEGATIVES = ("multiple_negatives_ranking", "cached_multiple_negatives_ranking")
UNIT_RANGE_LOSSES = ("cosent", "cosine")  # compare the score with a cosine similarity
WIDGET_CHARS = 300  # the card's widget shows the start of each document


class EmbeddingTask(Embedder, Task):
    name: ClassVar[str] = "embedding"
    pipeline_tag: ClassVar[str] = "sentence-similarity"
    library_name: ClassVar[str] = "sentence-transformers"
    evaluate_before_training: ClassVar[bool] = True
    grams_per_point: ClassVar[bool] = True
    recipe: EmbeddingRecipe

    def __init__(self, recipe: EmbeddingRecipe) -> None:
        super().__init__(recipe)
        self.layout: str | None = None if recipe.data.layout == "auto" else recipe.data.layout
        self.evaluation_sets: dict[str, RetrievalSet | Dataset] = {}  # split → what its evaluator searches or scores
        self.trains = False  # set by `inspect`: a run that trains (not `eval` of a finished one)
        self._pipeline: tuple[nn.Module, SentenceTransformer] | None = None  # predict's, per model: built once

    @property
    def main_metric(self) -> str:  # type: ignore[override]  # follows the data's layout
        return {"scored-pair": "spearman", "labelled": "loss"}.get(self.layout or "pair", "ndcg@10")

    @property
    def greater_is_better(self) -> bool:  # type: ignore[override]
        return self.main_metric != "loss"

    @property
    def loss_name(self) -> str:
        return self.recipe.loss.name or DEFAULT_LOSS[self.layout or "pair"]

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModel, self.recipe.peft_task_type)

    # -- data ---------------------------------------------------------------------------------
    def inspect(self, data: DatasetDict) -> None:
        cfg = self.recipe.data
        self.trains = True
        self.layout = cfg.layout = detect_layout(cfg, data["train"].column_names)  # the saved recipe says which
        layouts, _ = LOSSES[self.loss_name]
        if self.layout not in layouts:
            fits = ", ".join(name for name, (fit, _) in LOSSES.items() if self.layout in fit)
            raise DataError(
                f"loss.name: {self.loss_name} cannot train on the {self.layout} layout of data.train; "
                f"for {self.layout} data use one of: {fits}"
            )
        if cfg.hard_negatives is not None and self.layout != "pair":
            raise DataError(
                f"data.hard_negatives: mines negatives for (anchor, positive) pairs, not {self.layout} data"
            )
        for split_name, split in data.items():
            self.inspect_eval(split, f"data.{split_name}")
        files = {"validation": cfg.validation_retrieval, "test": cfg.test_retrieval}
        for split_name in ("validation", "test"):
            if files[split_name] is not None:
                if split_name not in data:
                    raise DataError(
                        f"data.{split_name}_retrieval: also give data.{split_name} (pairs in the train layout): "
                        "its loss is reported beside the retrieval scores"
                    )
                self.evaluation_sets[split_name] = RetrievalSet.from_files(files[split_name], f"{split_name}_retrieval")
            elif split_name in data:
                self.evaluation_sets[split_name] = self._evaluation_set(data[split_name])

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        if self.layout is None:
            self.layout = detect_layout(self.recipe.data, rows.column_names)
        columns = source_columns(self.recipe.data, self.layout)
        check_rows(rows, columns, self.layout, where, scores_in_unit_range=self.loss_name in UNIT_RANGE_LOSSES)

    def inspect_file_to_evaluate(self, rows: Dataset, where: str) -> None:
        self.inspect_eval(rows, where)
        self.evaluation_sets = {"validation": self._evaluation_set(rows)}  # scored as training scored validation

    def _evaluation_set(self, rows: Dataset) -> RetrievalSet | Dataset:
        rows = canonical(rows, source_columns(self.recipe.data, self.layout), self.layout)
        return RetrievalSet.from_pairs(rows) if self.layout in ("pair", "triplet") else rows

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """The layout's columns in its order: sentence-transformers' collator tokenizes each batch itself."""
        del tokenizer
        columns = source_columns(self.recipe.data, self.layout)
        return DatasetDict({name: canonical(split, columns, self.layout) for name, split in data.items()})

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> None:
        return None

    def input_columns(self) -> list[str]:
        return ["text"]

    # -- training -----------------------------------------------------------------------------
    def trainer_setup(self) -> TrainerSetup:
        # In-batch negatives: a batch holding a text twice would count it as its own negative.
        in_batch = self.loss_name in IN_BATCH_NEGATIVES
        return sentence_trainer_setup(self.trainer, "no_duplicates" if in_batch else "batch_sampler")

    def trainer(
        self,
        *,
        model: PreTrainedModel | PeftModel,
        args: Any,
        train_dataset: Dataset | None,
        eval_dataset: Dataset | None,
        callbacks: list,
        **unused: Any,
    ) -> SentenceTrainer:
        """The run's encoder inside its sentence-transformers pipeline, with the loss and the evaluators."""
        del unused  # the collator and metric hooks: sentence-transformers brings its own
        sentence = sentence_model(model, self.recipe.training.max_length)
        if self.recipe.data.hard_negatives is not None and self.trains:
            train_dataset = self._with_hard_negatives(train_dataset, sentence)
        return SentenceTrainer(
            evaluators={split: self._evaluator(rows) for split, rows in self.evaluation_sets.items()},
            model=sentence,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            loss=self.loss(sentence),
            callbacks=callbacks,
        )

    def loss(self, sentence: SentenceTransformer) -> nn.Module:
        _, build = LOSSES[self.loss_name]
        options = {"mini_batch_size": self.recipe.loss.mini_batch_size} if self.loss_name.startswith("cached") else {}
        loss = build(sentence, **options)
        if dims := self.recipe.loss.matryoshka_dims:
            loss = losses.MatryoshkaLoss(sentence, loss, matryoshka_dims=sorted(dims, reverse=True))
        return loss

    def _with_hard_negatives(self, pairs: Dataset, sentence: SentenceTransformer) -> Dataset:
        option = self.recipe.data.hard_negatives
        return mine_hard_negatives(
            pairs,
            sentence,
            anchor_column_name="anchor",
            positive_column_name="positive",
            range_min=option.range_min,
            absolute_margin=option.margin,
            num_negatives=option.count,
            output_format="triplet",
            batch_size=ENCODE_BATCH,
            verbose=False,
        )

    def _evaluator(self, rows: RetrievalSet | Dataset) -> Any:
        if isinstance(rows, RetrievalSet):
            return InformationRetrievalEvaluator(
                rows.queries,
                rows.corpus,
                rows.relevant,
                batch_size=ENCODE_BATCH,
                write_csv=False,
            )
        if self.layout == "scored-pair":
            return EmbeddingSimilarityEvaluator(
                rows["sentence1"],
                rows["sentence2"],
                rows["score"],
                batch_size=ENCODE_BATCH,
                similarity_fn_names=["cosine"],
                write_csv=False,
            )
        return None  # labelled texts: the loss is the measure

    # -- inference ----------------------------------------------------------------------------
    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """Each text's vector, as the model's pipeline makes it (pooled, normalized when it normalizes)."""
        del tokenizer
        texts = list(rows["text"])
        if self._pipeline is None or self._pipeline[0] is not model:
            self._pipeline = (model, sentence_model(model, self.recipe.training.max_length))
        vectors = self._pipeline[1].encode(
            texts, batch_size=ENCODE_BATCH, convert_to_numpy=True, show_progress_bar=False
        )
        return [{"text": text, "embedding": vector.tolist()} for text, vector in zip(texts, vectors, strict=True)]

    def pooling(self, model: PreTrainedModel | PeftModel) -> Any:
        """What `predict` computes after the encoder, for an ONNX export to put in its graph: the modules that
        follow the encoder in the pipeline `predict` builds (sentence-transformers' Pooling as 1_Pooling/config.json
        says, Normalize when modules.json lists it), as a function of the token embeddings and attention mask."""
        following = [module.eval() for module in list(sentence_model(model, self.recipe.training.max_length))[1:]]

        def pooled(token_embeddings: Any, attention_mask: Any) -> Any:
            features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
            for module in following:
                features = module(features)
            return features["sentence_embedding"]

        return pooled

    def card_metadata(self) -> dict[str, Any]:
        """sentence-transformers' card conventions: its tags, and a similarity widget from a validation query."""
        metadata: dict[str, Any] = {"tags": ["sentence-transformers", "sentence-similarity", "feature-extraction"]}
        examples = self.evaluation_sets.get("validation")
        if isinstance(examples, RetrievalSet) and examples.queries:
            query = next(iter(examples.queries))
            found = sorted(examples.relevant[query])[:1]
            others = [doc for doc in examples.corpus if doc not in examples.relevant[query]][:2]
            sentences = [examples.corpus[doc][:WIDGET_CHARS] for doc in found + others]
            metadata["widget"] = [{"source_sentence": examples.queries[query], "sentences": sentences}]
        return metadata

    def card_facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"layout": self.layout, "loss": self.loss_name}
        if self.recipe.loss.matryoshka_dims:
            facts["matryoshka_dims"] = self.recipe.loss.matryoshka_dims
        return facts
