"""Train a tokenizer with `tokenizers` on the recipe's texts, for a model built from an architecture."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from finetune_kit.config.recipe import TokenizerConfig

# Special tokens by style: (pad, unk, bos, eos, mask). Every model type built here finds the ids
# it needs among them (decoder start = pad, as in T5 and Marian).
SENTENCE_STYLE = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")
BERT_STYLE = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_tokenizer(config: TokenizerConfig, texts: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """A fast tokenizer whose encodings end with the end-of-sequence token (`[CLS] … [SEP]` for
    wordpiece), so encoders see where a text ends and decoders learn to stop."""
    pad, unk, bos, eos, mask = BERT_STYLE if config.kind == "wordpiece" else SENTENCE_STYLE
    specials = [pad, unk, bos, eos, mask]
    tokenizer, trainer = _model_and_trainer(config, specials, unk)
    tokenizer.train_from_iterator(texts, trainer)
    bos_id, eos_id = tokenizer.token_to_id(bos), tokenizer.token_to_id(eos)
    if config.kind == "wordpiece":
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B:1 {eos}:1", special_tokens=[(bos, bos_id), (eos, eos_id)]
        )
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1", special_tokens=[(eos, eos_id)]
        )
    names = {"pad_token": pad, "unk_token": unk, "bos_token": bos, "eos_token": eos, "mask_token": mask}
    if config.kind == "wordpiece":
        names |= {"cls_token": bos, "sep_token": eos}
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length, **names)


def _model_and_trainer(config: TokenizerConfig, specials: list[str], unk: str) -> tuple[Tokenizer, trainers.Trainer]:
    size, frequency = config.vocab_size, config.min_frequency
    lowercase = [normalizers.Lowercase()] if config.lowercase else []
    if config.kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        return tokenizer, trainers.WordPieceTrainer(vocab_size=size, min_frequency=frequency, special_tokens=specials)
    if config.kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), *lowercase])
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        return tokenizer, trainers.UnigramTrainer(vocab_size=size, special_tokens=specials, unk_token=unk)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), *lowercase])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size,
        min_frequency=frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any byte can be encoded: no unknown tokens
    )
    return tokenizer, trainer
