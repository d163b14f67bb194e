"""Translation: source language → target language, scored with sacreBLEU and chrF."""

from __future__ import annotations

from typing import ClassVar

import sacrebleu
from datasets import Dataset

from finetune_kit.config.generative import TranslationRecipe
from finetune_kit.errors import DataError
from finetune_kit.tasks.seq2seq import GeneratedTextTask


class TranslationTask(GeneratedTextTask):
    name: ClassVar[str] = "translation"
    pipeline_tag: ClassVar[str] = "translation"
    main_metric: ClassVar[str] = "bleu"
    recipe: TranslationRecipe

    def pairs(self, rows: Dataset, where: str, need_targets: bool = True) -> tuple[list[str], list[str] | None]:
        cfg = self.recipe.data
        if cfg.translation_column in rows.column_names:
            pairs = rows[cfg.translation_column]
            for i, pair in enumerate(pairs):
                present = {lang for lang, text in (pair or {}).items() if text is not None}  # datasets fills gaps
                languages = (cfg.source_lang, cfg.target_lang) if need_targets else (cfg.source_lang,)
                missing = next((lang for lang in languages if lang not in present), None)
                if missing:
                    found = ", ".join(sorted(present)) or "none"
                    raise DataError(
                        f"{where}: row {i}: no '{missing}' text in column '{cfg.translation_column}' "
                        f"(languages there: {found}); check data.source_lang / data.target_lang"
                    )
            targets = [p[cfg.target_lang] for p in pairs] if need_targets else None
            return [p[cfg.source_lang] for p in pairs], targets
        for lang in (cfg.source_lang, cfg.target_lang) if need_targets else (cfg.source_lang,):
            if lang not in rows.column_names:
                raise DataError(
                    f"{where}: neither a '{cfg.translation_column}' column nor a '{lang}' column; "
                    f"columns are: {', '.join(rows.column_names)}"
                )
        targets = list(rows[cfg.target_lang]) if cfg.target_lang in rows.column_names else None
        return list(rows[cfg.source_lang]), targets

    def score(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        streams = [list(stream) for stream in zip(*references, strict=True)]  # sacrebleu: one list per reference
        return {
            "bleu": sacrebleu.corpus_bleu(predictions, streams).score,
            "chrf": sacrebleu.corpus_chrf(predictions, streams).score,
        }

    def input_columns(self) -> list[str]:
        return [self.recipe.data.source_lang]

    def card_facts(self) -> dict[str, str]:
        return {"languages": f"{self.recipe.data.source_lang} → {self.recipe.data.target_lang}"}
