"""Load on `finetune-kit serve`: C concurrent clients for D seconds each, for C in 1, 8, 64 → p50 /
p99 latency, requests/s, texts/s, errors, the server's mean micro-batch, and its energy per 1,000
requests (read from /metrics). A chat run also reports generated tokens/s, its mean decode and prefill
batches, and each load's tokens/s against 1 client's: what continuous batching gains. `--soak` keeps C
clients going for minutes while the server's resident memory is sampled: flat memory means no leak
per request. `--agreement N` asks N greedy chat questions alone and then together and counts the
replies that agree. Method: docs/benchmarks/inference.md.

The server runs in a second process (started here from a run folder, or given with --url/--pid);
this process only sends requests, with one async httpx client.

    python bench/serve_load.py runs/sst2-demo [--seconds 10] [--clients 1 8 64] [--texts-per-request 1]
    python bench/serve_load.py runs/smollm2-sft-lora --clients 1 8 --seconds 20 --max-tokens 64
    python bench/serve_load.py runs/smollm2-sft-lora --clients 1 8 --chat-precision fp32   # the batch-invariant one
    python bench/serve_load.py runs/smollm2-sft-lora --agreement 16 --max-tokens 48 --ask describe
    python bench/serve_load.py runs/sst2-demo --soak 30 --clients 8
    python bench/serve_load.py --url http://127.0.0.1:8000 --pid 12345 --soak 30 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
SENTENCES = REPO / "recipes" / "data" / "sst2" / "validation.jsonl"
CHAT_TASKS = {"sft", "preference"}
PREFIX = "finetune_kit_serve"


@dataclass
class Load:
    clients: int
    seconds: float
    requests: int = 0
    errors: int = 0
    tokens: int = 0  # chat runs: completion tokens generated
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def report(self, texts_per_request: int, server: dict[str, float]) -> dict[str, float]:
        quantiles = statistics.quantiles(self.latencies_ms, n=100) if len(self.latencies_ms) > 1 else [0.0] * 99
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "errors": self.errors,
            "requests_per_s": round(self.requests / self.seconds, 1),
            "texts_per_s": round(self.requests * texts_per_request / self.seconds, 1),
            "tokens_per_s": round(self.tokens / self.seconds, 1),
            "p50_ms": round(quantiles[49], 1),
            "p99_ms": round(quantiles[98], 1),
            **server,
        }


class Target:
    """The server under load: its URL, its process (for memory), what it serves."""

    def __init__(self, url: str, pid: int, process: subprocess.Popen | None = None) -> None:
        self.url, self.pid, self.process = url, pid, process
        self.client = httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=256))

    @classmethod
    def start(cls, run_dir: Path, extra: list[str], threads: int | None = None) -> Target:
        """The server in its own process; `threads`: its torch threads (OMP_NUM_THREADS), where given."""
        command = [sys.executable, "-m", "finetune_kit", "serve", str(run_dir), "--port", "0", *extra]
        env = os.environ | {"HF_HUB_OFFLINE": "1"} | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        banner = process.stdout.readline()
        if " at http" not in banner:
            process.kill()
            sys.exit(f"the server did not start: {banner.strip() or 'no output'}")
        return cls(banner.split(" at ")[1].strip(), process.pid, process)

    async def ready(self, seconds: float = 120) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return (await self.client.get("/health")).raise_for_status().json()
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def counters(self) -> dict[str, float]:
        """The server's own totals: batches, rows, energy; differences between two reads say what one load cost."""
        text = (await self.client.get("/metrics")).raise_for_status().text
        values = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
        return {
            "batches": values.get(f"{PREFIX}_batch_size_count", 0.0),
            "rows": values.get(f"{PREFIX}_batch_size_sum", 0.0),
            "decode_passes": values.get(f"{PREFIX}_decode_batch_size_count", 0.0),
            "decoded": values.get(f"{PREFIX}_decode_batch_size_sum", 0.0),
            "prefill_passes": values.get(f"{PREFIX}_prefill_batch_size_count", 0.0),
            "prefilled": values.get(f"{PREFIX}_prefill_batch_size_sum", 0.0),
            "kwh": values[f"{PREFIX}_energy_kwh_total"],
            "grams": values[f"{PREFIX}_co2eq_grams_total"],
        }

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    async def close(self) -> str:
        """Stops a server started here (Ctrl-C, as a person would) and returns its summary line."""
        await self.client.aclose()
        if self.process is None:
            return ""
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        return out.strip().splitlines()[-1] if out.strip() else ""


# Chat prompts: a one-word answer (prefill-bound: what a classifier-like chat load costs) or a reply of
# several sentences (decode-bound: what batching the decoding is for).
CHAT_ASKS = {
    "label": "Is the sentiment of this review positive or negative? Review: {review}",
    "describe": "Describe, in a few sentences, the film this review talks about and what the reviewer felt. "
    "Review: {review}",
}


def request_bodies(task: str, texts_per_request: int, max_tokens: int, ask: str = "label") -> itertools.cycle:
    sentences = [json.loads(line)["sentence"] for line in SENTENCES.read_text().splitlines()]
    if task in CHAT_TASKS:
        prompts = [CHAT_ASKS[ask].format(review=s) for s in sentences]
        return itertools.cycle(
            {"messages": [{"role": "user", "content": p}], "max_tokens": max_tokens, "temperature": 0} for p in prompts
        )
    batches = [sentences[i : i + texts_per_request] for i in range(0, len(sentences) - texts_per_request, 7)]
    return itertools.cycle({"texts": batch} for batch in batches)


async def run_load(target: Target, path: str, bodies: itertools.cycle, clients: int, seconds: float) -> Load:
    load = Load(clients, seconds)
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await target.client.post(path, json=next(bodies))
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            load.requests += 1
            if ok:
                load.tokens += response.json().get("usage", {}).get("completion_tokens", 0)
                load.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                load.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    load.seconds = time.perf_counter() - started
    return load


def server_costs(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    batches = after["batches"] - before["batches"]
    passes = after["decode_passes"] - before["decode_passes"]
    prefills = after["prefill_passes"] - before["prefill_passes"]
    return {
        "mean_batch": round((after["rows"] - before["rows"]) / batches, 2) if batches else 0.0,
        "mean_decode_batch": round((after["decoded"] - before["decoded"]) / passes, 2) if passes else 0.0,
        "mean_prefill_batch": round((after["prefilled"] - before["prefilled"]) / prefills, 2) if prefills else 0.0,
        "wh_per_1k_requests": round((after["kwh"] - before["kwh"]) * 1000 * 1000 / max(requests, 1), 4),
        "g_co2eq_per_1k_requests": round((after["grams"] - before["grams"]) * 1000 / max(requests, 1), 4),
    }


async def measure(target: Target, args: argparse.Namespace) -> list[dict]:
    task = (await target.ready())["task"]
    path = "/v1/chat/completions" if task in CHAT_TASKS else "/predict"
    bodies = request_bodies(task, args.texts_per_request, args.max_tokens, args.ask)
    await run_load(target, path, bodies, 1, min(args.seconds, 2))  # warm-up: first calls compile and allocate
    results = []
    for clients in args.clients:
        before = await target.counters()
        load = await run_load(target, path, bodies, clients, args.seconds)
        row = load.report(args.texts_per_request, server_costs(before, await target.counters(), load.requests))
        if task in CHAT_TASKS and results and results[0]["clients"] == 1 and results[0]["tokens_per_s"]:
            row["tokens_per_s_vs_1_client"] = round(row["tokens_per_s"] / results[0]["tokens_per_s"], 2)
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


async def agreement(target: Target, args: argparse.Namespace) -> dict:
    """Greedy chat replies to the same `--agreement` prompts, asked one at a time and then all at once:
    how many are the same text. Batching changes a reply only through float rounding, which in bf16 can
    tip a near tie between two tokens and in fp32 does not."""
    bodies = request_bodies("sft", 1, args.max_tokens, args.ask)
    asked = [next(bodies) for _ in range(args.agreement)]

    async def reply(body: dict) -> str:
        response = (await target.client.post("/v1/chat/completions", json=body)).raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    alone = [await reply(body) for body in asked]
    together = await asyncio.gather(*(reply(body) for body in asked))
    result = {"same_alone_and_batched": sum(a == b for a, b in zip(alone, together, strict=True)), "of": len(asked)}
    print(json.dumps(result), flush=True)
    return result


async def soak(target: Target, args: argparse.Namespace) -> dict:
    """C clients for `--soak` minutes after `--warmup` seconds of the same load (the server's
    allocations settle: batches of every size seen, buffers grown and released); resident memory
    every `--sample-secs`, judged against the first sampled minute's mean."""
    task = (await target.ready())["task"]
    path = "/v1/chat/completions" if task in CHAT_TASKS else "/predict"
    bodies = request_bodies(task, args.texts_per_request, args.max_tokens, args.ask)
    clients, seconds = args.clients[0], args.soak * 60
    warmup = await run_load(target, path, bodies, clients, args.warmup)
    samples: list[tuple[float, float]] = []

    async def sample_memory() -> None:
        started = time.perf_counter()
        while True:
            samples.append((time.perf_counter() - started, target.rss_mb()))
            await asyncio.sleep(args.sample_secs)

    sampler = asyncio.create_task(sample_memory())
    before = await target.counters()
    load = await run_load(target, path, bodies, clients, seconds)
    sampler.cancel()
    first_minute = [mb for at, mb in samples if at < 60] or [mb for _, mb in samples]
    baseline = statistics.fmean(first_minute)
    low, high = min(mb for _, mb in samples), max(mb for _, mb in samples)
    result = load.report(args.texts_per_request, server_costs(before, await target.counters(), load.requests)) | {
        "warmup_requests": warmup.requests,
        "warmup_errors": warmup.errors,
        "rss_first_minute_mb": round(baseline, 1),
        "rss_min_pct": round(100 * (low / baseline - 1), 2),
        "rss_max_pct": round(100 * (high / baseline - 1), 2),
        "rss_samples": len(samples),
        "rss_mb_by_minute": [
            round(statistics.fmean(mb for at, mb in samples if minute * 60 <= at < (minute + 1) * 60), 1)
            for minute in range(int(samples[-1][0] // 60) + 1)
            if any(minute * 60 <= at < (minute + 1) * 60 for at, _ in samples)
        ],
        "rss_flat_within_10pct": bool(low >= 0.9 * baseline and high <= 1.1 * baseline),
    }
    print(json.dumps(result), flush=True)
    return result


async def main(args: argparse.Namespace) -> None:
    if args.url:
        if args.pid is None:
            sys.exit("--url needs --pid (the server's process id, for its memory)")
        target = Target(args.url, args.pid)
    else:
        if args.run_dir is None:
            sys.exit("give a run folder to serve, or --url and --pid of a running server")
        serve_options = ["--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
        serve_options += ["--max-chat-batch", str(args.max_chat_batch), "--chat-precision", args.chat_precision]
        target = Target.start(args.run_dir, serve_options, args.server_threads)
    try:
        if args.soak:
            results = await soak(target, args)
        elif args.agreement:
            results = await agreement(target, args)
        else:
            results = await measure(target, args)
    finally:
        summary = await target.close()
    if summary:
        print(f"server: {summary}")
    if args.output:
        args.output.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, nargs="?", help="A finished run folder to serve")
    parser.add_argument("--url", help="Target a running server instead")
    parser.add_argument("--pid", type=int, help="The running server's process id (memory sampling)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64], help="Concurrent clients per load")
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each load")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=16, help="Chat runs: reply length")
    parser.add_argument("--ask", choices=sorted(CHAT_ASKS), default="label", help="Chat runs: what the prompts ask")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-chat-batch", type=int, default=8, help="Chat runs: replies decoded together")
    parser.add_argument(
        "--chat-precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="Chat runs: the weights' precision (serve --chat-precision)",
    )
    parser.add_argument(
        "--server-threads",
        type=int,
        help="Torch threads of the server started here (OMP_NUM_THREADS; default: all cores)",
    )
    parser.add_argument(
        "--agreement", type=int, metavar="N", help="Chat runs: N greedy replies alone, then together: how many agree"
    )
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="One long load, sampling the server's memory")
    parser.add_argument("--warmup", type=float, default=60.0, help="Soak: seconds of the same load before sampling")
    parser.add_argument("--sample-secs", type=float, default=5.0, help="Soak: seconds between memory samples")
    parser.add_argument("--output", type=Path, help="Also write the results as JSON here")
    asyncio.run(main(parser.parse_args()))
