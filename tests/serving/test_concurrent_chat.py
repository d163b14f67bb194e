"""Eight OpenAI clients at once against a real served tiny chat run: every request answered, and the
server batched them (prefills and decoding passes shared). A LoRA run is served with its adapter
folded into the weights, and answers as the unmerged run does. Replies decode in the precision asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from openai import OpenAI
from peft import PeftModel
from prometheus_client.parser import text_string_to_metric_families

from finetune_kit.inference import open_run
from finetune_kit.serving import RunServer, ServeOptions
from finetune_kit.serving.completions import ChatCompletions, decoding_precision
from finetune_kit.serving.decoding import Reply
from finetune_kit.serving.schemas import ChatRequest
from finetune_kit.training.precision import resolve_precision
from tests.builders import toy_chat_rows, train_run, write_jsonl

QUESTIONS = [f"Sentiment of: {'a superb' if i % 2 else 'an awful'} film {'and story ' * i}" for i in range(8)]


def chat_recipe(checkpoint: Path, folder: Path, **extra) -> dict:
    return {
        "task": "sft",
        "name": "tiny-chat",
        "model": {"checkpoint": str(checkpoint)},
        "data": {
            "train": str(write_jsonl(folder / "train.jsonl", toy_chat_rows(24, seed=1))),
            "validation": str(write_jsonl(folder / "validation.jsonl", toy_chat_rows(8, seed=2))),
        },
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-5, "max_length": 64, "precision": "fp32"},
        "generation": {"max_new_tokens": 12},
        "emissions": {"enabled": False},
        "output_dir": str(folder / "run"),
        **extra,
    }


@pytest.fixture(scope="module")
def chat_run(tiny_chat_llama, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("concurrent-chat")
    return train_run(chat_recipe(tiny_chat_llama, folder), folder)


@pytest.fixture(scope="module")
def lora_chat_run(tiny_chat_llama, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lora-chat")
    recipe = chat_recipe(tiny_chat_llama, folder, peft={"method": "lora", "r": 8})
    recipe["training"]["learning_rate"] = 1e-2  # the adapter moves the replies: merging it must keep them
    return train_run(recipe, folder)


@pytest.fixture(scope="module")
def server(chat_run) -> Iterator[RunServer]:
    served = RunServer.open(chat_run, ServeOptions(port=0, max_chat_batch=8))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{served.url}/health").raise_for_status()
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not answer /health"
            time.sleep(0.1)
    yield served
    served.stop()
    thread.join(timeout=30)


def totals(server: RunServer) -> dict[str, float]:
    """The server's counters that say what a load cost: passes, rows, errors."""
    text = httpx.get(f"{server.url}/metrics").raise_for_status().text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    prefix = "finetune_kit_serve_"
    return {
        name: sum(s.value for s in samples if s.name == prefix + name)
        for name in (
            "decode_batch_size_count",
            "decode_batch_size_sum",
            "prefill_batch_size_count",
            "prefill_batch_size_sum",
            "errors_total",
        )
    }


def test_eight_concurrent_openai_clients_all_get_replies_decoded_in_shared_batches(server, monkeypatch):
    """The first reply to arrive is held at its first decoding step until all eight are submitted, so
    the other seven wait together, as they would behind a busy model, whatever this machine's speed."""
    decoder = server.service.chats.decoder
    submitted, all_in = [], threading.Event()
    submit, step = decoder.submit, decoder.on_step

    def counted(reply: Reply) -> None:
        submit(reply)
        submitted.append(reply)
        if len(submitted) == len(QUESTIONS):
            all_in.set()

    def held(size: int) -> None:
        step(size)
        all_in.wait(60)

    monkeypatch.setattr(decoder, "submit", counted)
    monkeypatch.setattr(decoder, "on_step", held)

    def ask(question: str) -> tuple[str, int]:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60, max_retries=0)
        reply = client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": question}], max_tokens=48, temperature=0
        )
        return reply.choices[0].finish_reason, reply.usage.completion_tokens

    before = totals(server)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        replies = list(pool.map(ask, QUESTIONS))  # a failed request raises here
    after = {name: value - before[name] for name, value in totals(server).items()}
    assert all(finish in {"stop", "length"} and tokens >= 1 for finish, tokens in replies)
    assert after["errors_total"] == 0
    assert after["prefill_batch_size_sum"] == len(QUESTIONS)  # each prompt prefilled once
    assert after["prefill_batch_size_count"] <= 3  # the held one, then the others together (a slot apart)
    assert after["decode_batch_size_sum"] / after["decode_batch_size_count"] > 1  # replies shared decoding passes


def test_a_lora_run_is_served_merged_and_answers_as_the_unmerged_run(lora_chat_run):
    unmerged = open_run(lora_chat_run)
    assert isinstance(unmerged.model, PeftModel)
    chats = ChatCompletions(open_run(lora_chat_run), max_text_chars=200, max_batch=8)
    assert not isinstance(chats.decoder.model, PeftModel)
    chats.start()
    try:
        for question in QUESTIONS[:3]:
            prompt = chats.prompt(ChatRequest(messages=[{"role": "user", "content": question}], max_tokens=16))
            served = chats.complete(prompt)
            ids = torch.tensor([prompt.ids])
            with torch.no_grad():
                alone = unmerged.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    pad_token_id=unmerged.tokenizer.pad_token_id,
                    eos_token_id=chats.stops,
                    max_new_tokens=16,
                    do_sample=False,
                )
            expected = unmerged.tokenizer.decode(alone[0, len(prompt.ids) :], skip_special_tokens=True).strip()
            assert served.text == expected
    finally:
        chats.stop()


def test_replies_decode_in_the_run_s_precision_or_the_one_asked(chat_run):
    """auto follows the run's `training.precision` (fp32 here); bf16 weights answer concurrent requests."""
    assert ChatCompletions(open_run(chat_run), max_text_chars=200, max_batch=8).decoder.model.dtype == torch.float32
    other_run = open_run(chat_run)
    other_run.recipe.training.precision = "bf16"
    assert decoding_precision(other_run, "auto") == "bf16"
    if not torch.cuda.is_available():  # a run trained in fp16 on a GPU decodes on a CPU in what the CPU runs fast
        other_run.recipe.training.precision = "fp16"
        assert decoding_precision(other_run, "auto") == resolve_precision("auto")
    chats = ChatCompletions(open_run(chat_run), max_text_chars=200, max_batch=8, precision="bf16")
    assert chats.precision == "bf16" and chats.decoder.model.dtype == torch.bfloat16
    chats.start()
    try:
        requests = [ChatRequest(messages=[{"role": "user", "content": q}], max_tokens=8) for q in QUESTIONS[:4]]
        with ThreadPoolExecutor(len(requests)) as pool:
            replies = list(pool.map(chats.complete, map(chats.prompt, requests)))
    finally:
        chats.stop()
    assert all(reply.completion_tokens >= 1 and reply.finish_reason in {"stop", "length"} for reply in replies)
