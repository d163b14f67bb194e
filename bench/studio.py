"""The studio's two speed targets, on copies of a real run folder:
- the runs page lists 200 run folders in under 1 s (the `GET /api/runs` the page makes);
- a logging step reaches an open run page within 2 s (a line appended to log.jsonl, until the page's
  server-sent event stream delivers it).

    make demo                                   # runs/sst2-demo
    python bench/studio.py --run runs/sst2-demo

Method: the run's small files (recipe, metrics, emissions, card, log, lineage; not the weights) are copied
into 200 folders of a temporary runs folder: 180 finished, 10 still running (partial, this process's pid),
10 stopped; each log is stretched to `--log-lines` lines, as a long run's is. The studio is served by
uvicorn on loopback, as `finetune-kit studio` serves it, and requested over HTTP. The page: headless Chromium
(Debian's, through Playwright) opens the runs page of a second, fresh studio and waits for all rows, then
reloads it. Listing: the first request
(nothing cached: every folder read) and the median of the next `--repeats` (the page refreshes every few
seconds while a run trains: only changed files are read again). Latency: `--repeats` lines appended to a
running run's log, each timed from the write to its event arriving on a stream opened before. The ratio
column is measured / target: under 1 meets it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from finetune_kit.runs.folder import Layout
from finetune_kit.studio import StudioSettings
from finetune_kit.studio.server import StudioServer

SMALL_FILES = (Layout.RECIPE, Layout.METRICS, Layout.EMISSIONS, Layout.CARD)
LIST_TARGET_S, EVENT_TARGET_S = 1.0, 2.0


def stretched_log(run: Path, lines: int) -> str:
    entries = [json.loads(line) for line in (run / Layout.LOG).read_text().splitlines()]
    training = [e for e in entries if "loss" in e] or entries
    return "".join(json.dumps({**training[i % len(training)], "step": i + 1}) + "\n" for i in range(lines))


def copy_run(run: Path, target: Path, log: str, *, partial: bool) -> None:
    target.mkdir(parents=True)
    for name in SMALL_FILES:
        if (run / name).is_file() and not (partial and name in (Layout.METRICS, Layout.EMISSIONS, Layout.CARD)):
            shutil.copy(run / name, target / name)
    (target / Layout.LOG).write_text(log)
    (target / Layout.MODEL).mkdir()
    lineage = run / Layout.MODEL / Layout.LINEAGE
    if lineage.is_file():
        shutil.copy(lineage, target / Layout.MODEL / Layout.LINEAGE)


def build_runs(run: Path, root: Path, count: int, log_lines: int) -> list[str]:
    """`count` run folders; the ids of the running ones."""
    log, running = stretched_log(run, log_lines), []
    for index in range(count):
        kind = "finished" if index < count * 0.9 else ("running" if index % 2 else "stopped")
        name = f"run-{index:03d}"
        folder = root / (name if kind == "finished" else f"{name}.partial")
        copy_run(run, folder, log, partial=kind != "finished")
        if kind == "running":
            (folder / Layout.PROCESS).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            running.append(f"0/{name}")
        elif kind == "stopped":
            (folder / Layout.STOPPED).write_text(json.dumps({"step": 1, "time": time.time()}))
    return running


def time_listing(client: httpx.Client, repeats: int, count: int) -> tuple[float, float]:
    started = time.perf_counter()
    listed = client.get("/api/runs").json()["runs"]
    first = time.perf_counter() - started
    if len(listed) != count:
        raise SystemExit(f"listed {len(listed)} runs, expected {count}")
    again = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.get("/api/runs").raise_for_status()
        again.append(time.perf_counter() - started)
    return first, statistics.median(again)


def time_page(base: str, chromium: str, count: int) -> tuple[float, float]:
    """Seconds from opening the runs page to its table holding every run: first (the studio's first listing)
    and after a reload."""
    from playwright.sync_api import sync_playwright

    timings = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        for _ in range(2):
            started = time.perf_counter()
            page.goto(f"{base}/")
            page.wait_for_function(f"() => document.querySelectorAll('tr[data-run-id]').length === {count}", polling=10)
            timings.append(time.perf_counter() - started)
        browser.close()
    return timings[0], timings[1]


def serve(root: Path, recipes: Path) -> str:
    server = StudioServer(StudioSettings.create([root], [recipes], port=0))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{server.settings.port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/api/recipes").raise_for_status()
            return base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"the studio did not answer at {base}")


def time_events(base: str, root: Path, run_id: str, repeats: int) -> list[float]:
    log = root / (run_id.split("/", 1)[1] + ".partial") / Layout.LOG
    seen = len(log.read_text().splitlines())
    written: dict[int, float] = {}
    delays: list[float] = []

    def append_lines() -> None:
        for step in range(repeats):
            time.sleep(0.37)  # not a multiple of the stream's poll interval
            written[step] = time.perf_counter()
            with log.open("a") as handle:
                handle.write(json.dumps({"time": time.time(), "step": 10**6 + step, "loss": 0.5}) + "\n")

    writer = threading.Thread(target=append_lines)
    with httpx.stream("GET", f"{base}/api/runs/{run_id}/events?after={seen}", timeout=30) as stream:
        writer.start()
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "log":
                step = json.loads(line.removeprefix("data: "))["step"] - 10**6
                delays.append(time.perf_counter() - written[step])
                if len(delays) == repeats:
                    break
    writer.join()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/sst2-demo"), help="A finished run folder to copy")
    parser.add_argument("--runs", type=int, default=200, help="Run folders listed")
    parser.add_argument("--log-lines", type=int, default=2000, help="Lines in each copied log")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="Also time the page in this browser")
    args = parser.parse_args()
    if not (args.run / Layout.METRICS).is_file():
        raise SystemExit(f"--run {args.run}: not a finished run folder; `make demo` makes runs/sst2-demo")
    with tempfile.TemporaryDirectory() as work:
        root, recipes = Path(work) / "runs", Path(work) / "recipes"
        recipes.mkdir()
        running = build_runs(args.run, root, args.runs, args.log_lines)
        base = serve(root, recipes)
        with httpx.Client(base_url=base, timeout=60) as client:
            first, again = time_listing(client, args.repeats, args.runs)
        delays = time_events(base, root, running[0], args.repeats)
        page = time_page(serve(root, recipes), args.chromium, args.runs) if args.chromium else None
    print(f"studio · {args.runs} run folders ({args.log_lines}-line logs) · copies of {args.run}")
    print(f"{'measure':<44} {'seconds':>9} {'target':>7} {'ratio':>6}")
    rows = [
        (f"GET /api/runs, first (nothing cached), {args.runs} runs", first, LIST_TARGET_S),
        (f"GET /api/runs, again (median of {args.repeats})", again, LIST_TARGET_S),
        (f"log line → open page, median of {len(delays)}", statistics.median(delays), EVENT_TARGET_S),
        (f"log line → open page, slowest of {len(delays)}", max(delays), EVENT_TARGET_S),
    ]
    if page is not None:
        rows.insert(0, (f"runs page, first listing, {args.runs} rows shown", page[0], LIST_TARGET_S))
        rows.insert(1, ("runs page, after a reload", page[1], LIST_TARGET_S))
    for label, seconds, target in rows:
        print(f"{label:<44} {seconds:>9.3f} {target:>7.1f} {seconds / target:>6.2f}")


if __name__ == "__main__":
    main()
