"""Instruction tuning: the chat template and reply-only labels, the four data layouts, packing
without cross-contamination, a tiny model end to end (full and LoRA) with chat on stdin, bad input,
and the real SmolLM2 package."""

from __future__ import annotations

import io
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune_kit.data.conversations import detect_format, to_messages
from finetune_kit.errors import DataError
from finetune_kit.tasks.chat_template import encode_conversation, render
from finetune_kit.tasks.common import IGNORE_INDEX
from finetune_kit.tasks.instruction import PackedRowsCollator
from tests.builders import sft_recipe, toy_chat_rows, write_jsonl

CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Sentiment of: a superb film"},
    {"role": "assistant", "content": "positive"},
    {"role": "user", "content": "And: a dull plot"},
    {"role": "assistant", "content": "negative"},
]


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_chat_llama):
    return AutoTokenizer.from_pretrained(tiny_chat_llama)


@pytest.mark.unit
def test_template_is_applied_and_only_replies_and_their_end_token_are_labelled(chat_tokenizer):
    ids, labels, cut = encode_conversation(chat_tokenizer, CONVERSATION, "assistant", 512)
    assert not cut and chat_tokenizer.decode(ids) == render(chat_tokenizer, CONVERSATION)
    learned = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert learned == [t for t, label in zip(ids, labels, strict=True) if label == t]  # labels are the tokens
    # exactly the two replies, each ended by <|im_end|>: system, user and template tokens are all -100
    replies = chat_tokenizer("positive<|im_end|>negative<|im_end|>", add_special_tokens=False)["input_ids"]
    assert learned == replies

    everything, _, _ = encode_conversation(chat_tokenizer, CONVERSATION, "all", 512)
    _, all_labels, _ = encode_conversation(chat_tokenizer, CONVERSATION, "all", 512)
    assert all_labels == everything

    short_ids, short_labels, cut = encode_conversation(chat_tokenizer, CONVERSATION, "assistant", 10)
    assert cut and len(short_ids) == len(short_labels) == 10


@pytest.mark.parametrize(
    ("row", "layout"),
    [
        ({"messages": CONVERSATION[1:3]}, "messages"),
        (
            {
                "conversations": [
                    {"from": "human", "value": "Sentiment of: a superb film"},
                    {"from": "gpt", "value": "positive"},
                ]
            },
            "sharegpt",
        ),
        ({"prompt": "Sentiment of: a superb film", "completion": "positive"}, "prompt-completion"),
        ({"prompt": CONVERSATION[1:2], "completion": CONVERSATION[2:3]}, "prompt-completion"),
        ({"instruction": "Sentiment of: a superb film", "input": "", "output": "positive"}, "alpaca"),
    ],
)
@pytest.mark.unit
def test_every_layout_reads_as_the_same_messages(row, layout):
    assert detect_format(row.keys(), "auto", "data.train") == layout
    assert to_messages(row, layout, None, "row 1") == CONVERSATION[1:3]
    with_system = to_messages(row, layout, "Answer in one word.", "row 1")
    assert with_system == CONVERSATION[:3]


@pytest.mark.unit
def test_alpaca_input_joins_the_instruction():
    row = {"instruction": "Classify the sentiment.", "input": "a superb film", "output": "positive"}
    assert to_messages(row, "alpaca", None, "row 1")[0]["content"] == "Classify the sentiment.\n\na superb film"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "data.train row 3: no assistant turn"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "data.train row 3: message 1 has unknown role 'robot'"),
        ({"messages": [{"role": "user"}]}, "data.train row 3: message 1 has no 'content' field"),
        ({"prompt": "hi", "completion": " "}, "data.train row 3: column 'completion' is empty"),
    ],
)
@pytest.mark.unit
def test_bad_rows_are_named(row, message):
    with pytest.raises(DataError, match=message):
        to_messages(row, detect_format(row.keys(), "auto", "data.train"), None, "data.train row 3")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.unit
def test_packed_and_unpacked_batches_give_the_same_loss_per_conversation(tiny_chat_llama, chat_tokenizer, attention):
    """Packed rows (several conversations each; position ids restart per conversation) must let no
    conversation see another: each one's loss equals its loss alone."""
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama, attn_implementation=attention).eval()
    conversations = [row["messages"] for row in toy_chat_rows(4, seed=9)] + [CONVERSATION]
    encoded = [encode_conversation(chat_tokenizer, messages, "assistant", 256)[:2] for messages in conversations]
    collate = PackedRowsCollator(chat_tokenizer.pad_token_id)

    def packed_row(members: list[int]) -> dict:
        return {
            "input_ids": [t for i in members for t in encoded[i][0]],
            "labels": [t for i in members for t in encoded[i][1]],
            "seq_lengths": [len(encoded[i][0]) for i in members],
        }

    def token_losses(batch: dict) -> torch.Tensor:
        # as SFTTrainer.compute_loss calls it: transformers reads packed sequences off the position ids without a cache
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
        )

    rows = [[0, 1], [2, 3, 4]]  # two packed rows of different lengths: the first is padded
    with torch.no_grad():
        alone = [token_losses(collate([packed_row([i])]))[0].sum() for i in range(len(encoded))]
        packed = token_losses(collate([packed_row(members) for members in rows]))
    for row, members in enumerate(rows):
        start = 0
        for i in members:
            length = len(encoded[i][0])
            got = packed[row, start : start + length - 1].sum()  # the last position predicts the next conversation
            assert torch.isclose(got, alone[i], rtol=1e-4), (i, got, alone[i])
            start += length


def test_sft_end_to_end_learns_replies_then_chats_on_stdin(tiny_chat_llama, tmp_path, write_recipe, cli, monkeypatch):
    run_dir = tmp_path / "runs" / "chat"
    result = cli("train", write_recipe(sft_recipe(tiny_chat_llama, tmp_path / "data", run_dir)))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["perplexity"] < 0.1 * metrics["before_training"]["perplexity"]
    before, after = metrics["before_training"]["generation"], metrics["generation"]
    assert before["sentiment_accuracy"] < 0.6 and after["sentiment_accuracy"] >= 0.9
    assert {"prompt", "reference", "reply"} <= metrics["replies"][0].keys()
    train = metrics["train"]  # the speed counts conversations (400 a epoch, 3 epochs), not packed rows
    assert train["sample_unit"] == "conversations"
    assert train["samples_per_second"] * train["runtime"] == pytest.approx(3 * 400, rel=0.05)
    card = (run_dir / "README.md").read_text()
    assert "sentiment_accuracy" in card.split("---")[1]  # in the model-index
    assert "Generated replies" in card
    assert (run_dir / "model" / "chat_template.jinja").is_file()

    monkeypatch.setattr(
        "sys.stdin", io.StringIO("Sentiment of: a superb film\n/reset\nSentiment of: dull\n/exit\nhi\n")
    )
    chat = cli("chat", run_dir)
    assert chat.exit_code == 0, chat.stderr
    assert chat.stdout.splitlines() == [
        "> Sentiment of: a superb film",
        "positive",
        "> /reset",
        "(conversation reset)",
        "> Sentiment of: dull",
        "negative",
        "> /exit",
    ]
    generated = cli("generate", run_dir, "--prompt", "Sentiment of: lovely acting")
    assert generated.exit_code == 0 and generated.stdout.strip() == "positive"


def test_an_adapter_run_learns_the_reply_form_chats_and_merges(
    tiny_chat_llama, tmp_path, write_recipe, cli, monkeypatch
):
    """A random tiny model's output layer gives near-uniform logits that low-rank updates of the
    inner layers cannot sharpen: it is trained in full beside the adapter (`modules_to_save`)."""
    run_dir = tmp_path / "runs" / "lora"
    recipe = sft_recipe(tiny_chat_llama, tmp_path / "data", run_dir)
    recipe |= {"peft": {"method": "lora", "r": 8, "modules_to_save": ["lm_head"]}}
    recipe["training"]["learning_rate"] = 1e-2
    assert cli("train", write_recipe(recipe)).exit_code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["perplexity"] < 0.01 * metrics["before_training"]["perplexity"]
    assert metrics["model"]["trainable_percent"] < 100

    def chat(target):
        monkeypatch.setattr("sys.stdin", io.StringIO("Sentiment of: awful acting\n"))
        return cli("chat", target).stdout.splitlines()[1]

    reply = chat(run_dir)
    assert reply in {"positive", "negative"}  # the label form, ended by the end-of-turn token
    merged = tmp_path / "merged"
    assert cli("merge", run_dir, "--output", merged).exit_code == 0
    assert chat(merged) == reply


@pytest.mark.unit
def test_sft_bad_input_exits_2_naming_the_problem_and_writes_nothing(
    tiny_chat_llama, tiny_gpt2, tmp_path, write_recipe, cli
):
    run_dir = tmp_path / "runs" / "bad"
    recipe = sft_recipe(tiny_chat_llama, tmp_path / "data", run_dir)
    rows = toy_chat_rows(5)
    rows[3]["messages"] = rows[3]["messages"][:1]
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "no_reply.jsonl", rows))
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and "data.train row 4: no assistant turn" in result.error_lines[0]

    recipe["data"]["train"] = str(write_jsonl(tmp_path / "other.jsonl", [{"text": "hi"}]))
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and "data.train: no instruction columns found" in result.error_lines[0]

    no_template = sft_recipe(tiny_gpt2, tmp_path / "data", run_dir)
    result = cli("train", write_recipe(no_template))
    assert result.exit_code == 2 and "has no chat template" in result.error_lines[0]
    assert "chat.template: chatml" in result.error_lines[0]

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model")
    result = cli("train", write_recipe(sft_recipe(fake, tmp_path / "data", run_dir)))
    assert result.exit_code == 2 and f"{fake} is not a GGUF file" in result.error_lines[0]
    assert len(result.error_lines) == 1 and not run_dir.exists() and not run_dir.parent.exists()


def test_chatml_gives_a_base_model_a_template_it_can_learn_to_stop_with(tiny_gpt2, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "chatml"
    recipe = sft_recipe(tiny_gpt2, tmp_path / "data", run_dir, chat={"template": "chatml"})
    recipe["training"]["epochs"] = 1
    assert cli("train", write_recipe(recipe)).exit_code == 0
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") >= len(tokenizer) - 2  # added, as one token
    assert tokenizer("a<|im_end|>", add_special_tokens=False)["input_ids"][-1] == len(tokenizer) - 1
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


@pytest.mark.slow
def test_the_packaged_smollm2_gguf_loads_answers_and_saves_as_safetensors(tmp_path):
    from finetune_kit.chat import load_chat_model, stream_reply

    chat = load_chat_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert sum(p.numel() for p in chat.model.parameters()) == 134_515_008
    reply = stream_reply(chat, [{"role": "user", "content": "What is the capital of France?"}], lambda _: None)
    assert "Paris" in reply
    chat.model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    probe = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.allclose(reloaded(probe).logits, chat.model(probe).logits, atol=1e-5)


def soft_capped_gemma2(vocab_size: int) -> AutoModelForCausalLM:
    """A tiny Gemma 2 whose logits are soft-capped hard: they are not the head's output alone."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        final_logit_softcapping=0.05,
        attn_logit_softcapping=None,
    )
    torch.manual_seed(0)
    return Gemma2ForCausalLM(config)


@pytest.mark.unit
@pytest.mark.parametrize("architecture", ["llama", "soft-capped gemma2"])
def test_the_reply_only_head_gives_the_full_heads_loss_and_gradients(
    tiny_chat_llama, chat_tokenizer, tmp_path, architecture
):
    """The loss that projects only reply positions through the LM head must train exactly as TRL's,
    which scores every position: same loss, same gradients, on a padded batch of unequal rows. Where
    the logits are the head's output (llama), only the replies' own positions are projected; where the
    model changes them (Gemma 2's soft-capping), the model's forward still computes them."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from finetune_kit.tasks.instruction import PerplexitySFTTrainer

    conversations = [row["messages"] for row in toy_chat_rows(3, seed=4)] + [CONVERSATION]
    encoded = [encode_conversation(chat_tokenizer, messages, "assistant", 256)[:2] for messages in conversations]
    rows = Dataset.from_list([{"input_ids": ids, "labels": labels} for ids, labels in encoded])
    batch = PackedRowsCollator(chat_tokenizer.pad_token_id)(list(rows))
    args = SFTConfig(str(tmp_path), use_cpu=True, report_to="none", gradient_checkpointing=False, bf16=False)
    if architecture == "llama":
        model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    else:
        model = soft_capped_gemma2(len(chat_tokenizer))
    trainer = PerplexitySFTTrainer(model=model, args=args, train_dataset=rows, processing_class=chat_tokenizer)
    projected: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda _, __, out: projected.append(out[..., 0].numel()))

    def loss_and_grads(compute_loss) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss = compute_loss(trainer, model, dict(batch))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    reply_only, reply_grads = loss_and_grads(PerplexitySFTTrainer.compute_loss)
    scored = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    if architecture == "llama":
        assert max(projected) == scored  # each row's reply positions, not the batch's union of them
    full, full_grads = loss_and_grads(SFTTrainer.compute_loss)
    assert torch.isclose(reply_only, full, rtol=1e-5), (reply_only, full)
    assert len(reply_grads) == len(full_grads) > 0
    for got, expected in zip(reply_grads, full_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
