"""The jobs the studio starts: `finetune-kit train`, `estimate` and `export`, each its own process, as a person
would run it in a terminal (the same environment, in its own session so Ctrl-C on the studio leaves it running).
Output goes to a ring buffer for the page and to a log file beside the runs; Stop is SIGTERM, which `train` turns
into a stop at the end of the step with a checkpoint kept."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from finetune_kit.errors import first_line
from finetune_kit.runs.folder import Layout
from finetune_kit.studio.estimates import EstimateStore
from finetune_kit.studio.recipe_form import Checked

JOBS_FOLDER = ".studio/jobs"
TAIL_LINES = 200
TRAIN, ESTIMATE, EXPORT = "train", "estimate", "export"
RUNNING, DONE, FAILED, STOPPED = "running", "done", "failed", "stopped"
# The exit codes of a job stopped on request: `train` stops at a step end with a checkpoint kept and exits 130 (a
# train killed by the signal, its second one or one before its handler was set, failed: its run page says so);
# the other commands end by the signal.
STOPPED_CODES = {TRAIN: (130,), ESTIMATE: (130, -signal.SIGTERM), EXPORT: (130, -signal.SIGTERM)}


class Busy(Exception):
    """A job of the same kind already works on the run."""


@dataclass(eq=False)
class Job:
    id: str
    kind: str
    process: subprocess.Popen[str]
    log: Path
    run_id: str | None = None
    recipe_id: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None  # set once the process ended and its result is read, or reading it failed
    result: dict[str, Any] | None = None
    error: str | None = None  # why the studio could not follow the job to its end
    stop_requested: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    stdout: list[str] = field(default_factory=list)  # kept whole for `estimate --json` only
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def status(self) -> str:
        if self.ended is None:
            return RUNNING
        code = self.process.returncode
        if self.stop_requested and code in STOPPED_CODES[self.kind]:
            return STOPPED
        return DONE if code == 0 and self.error is None else FAILED

    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            tail = "\n".join(self.tail)
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "returncode": self.process.returncode if self.ended is not None else None,
            "output_tail": tail,
            "result": self.result,
            "run_id": self.run_id,
            "recipe_id": self.recipe_id,
            "started": self.started,
            "ended": self.ended,
        }


class Jobs:
    """Every job this studio started, while it runs; logs in `<runs root>/.studio/jobs/`."""

    def __init__(self, runs_root: Path) -> None:
        self.runs_root = runs_root
        self.folder = runs_root / JOBS_FOLDER
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def train(self, checked: Checked, run_id: str, recipe_id: str) -> Job:
        """`train` into the checked run folder; refused (`Busy`) while the studio trains that run already."""
        return self._start(TRAIN, ["train", str(checked.source), *_sets(checked)], run_id, recipe_id)

    def estimate(self, checked: Checked, run_id: str, recipe_id: str) -> Job:
        """`estimate --json`; its result is kept for the run page of the run it estimates."""
        store = EstimateStore(self.runs_root)

        def keep(job: Job) -> None:
            if job.process.returncode == 0:
                job.result = json.loads("\n".join(job.stdout))
                store.save(checked.output_dir, self.runs_root, job.result)

        arguments = ["estimate", str(checked.source), "--json", *_sets(checked)]
        return self._start(ESTIMATE, arguments, run_id, recipe_id, keep)

    def resume(self, partial: Path, run_id: str) -> Job:
        """`train --resume` of a stopped or killed run, from the resolved recipe it saved (the same values, the
        same run folder): it continues from the last checkpoint, its earlier sessions' energy counted."""
        return self._start(TRAIN, ["train", str(partial / Layout.RECIPE), "--resume"], run_id, None)

    def export(self, run_dir: Path, run_id: str) -> Job:
        return self._start(EXPORT, ["export", str(run_dir)], run_id, None)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Newest first."""
        return sorted(list(self._jobs.values()), key=lambda job: job.started, reverse=True)

    def running(self, kind: str, run_id: str) -> Job | None:
        jobs = list(self._jobs.values())  # a snapshot: a job may be added meanwhile
        return next((j for j in jobs if j.kind == kind and j.run_id == run_id and j.ended is None), None)

    @staticmethod
    def stop(job: Job) -> Job:
        """SIGTERM: `train` stops at the end of its step, a checkpoint kept; a second stop ends it at once."""
        if job.ended is None:
            job.stop_requested = True
            job.process.send_signal(signal.SIGTERM)
        return job

    def _start(
        self,
        kind: str,
        arguments: list[str],
        run_id: str,
        recipe_id: str | None,
        finished: Callable[[Job], None] | None = None,
    ) -> Job:
        with self._lock:
            if kind != ESTIMATE and (busy := self.running(kind, run_id)):
                raise Busy(f"run {run_id} has a {kind} job running already ({busy.id}); wait for it or stop it")
            self.folder.mkdir(parents=True, exist_ok=True)
            job_id = uuid.uuid4().hex[:12]
            process = subprocess.Popen(
                [sys.executable, "-m", "finetune_kit", *arguments],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # lines reach the page as they are printed
                start_new_session=True,
            )
            job = Job(job_id, kind, process, self.folder / f"{job_id}.log", run_id, recipe_id)
            self._jobs[job_id] = job
        command = shlex.join(["finetune-kit", *arguments])
        threading.Thread(target=_follow, args=(job, command, finished), daemon=True, name=f"job-{job_id}").start()
        return job


def _sets(checked: Checked) -> list[str]:
    return [part for item in checked.overrides for part in ("--set", item)]


def _follow(job: Job, command: str, finished: Callable[[Job], None] | None) -> None:
    """Reads both outputs to the end, then the result; `ended` is set last, so a finished job has its result, and
    set whatever fails on the way (the log unwritable, the result unreadable), so no job stays running for ever:
    one the studio could not follow fails, the reason last in its output."""
    try:
        with job.log.open("w", encoding="utf-8") as log:
            log.write(f"$ {command}\n")
            errors = threading.Thread(target=_read, args=(job, job.process.stderr, log, False), daemon=True)
            errors.start()
            _read(job, job.process.stdout, log, keep=job.kind == ESTIMATE)
            errors.join()
            job.process.wait()
            if finished is not None:
                finished(job)
    except Exception as err:
        job.error = f"studio: {first_line(err)}"
        with job.lock:
            job.tail.append(job.error)
    finally:
        job.ended = time.time()


def _read(job: Job, stream: IO[str] | None, log: IO[str], keep: bool) -> None:
    for text in stream or ():
        line = text.rstrip("\n")
        if keep:
            job.stdout.append(line)
        _line(job, log, line)


def _line(job: Job, log: IO[str], line: str) -> None:
    with job.lock:
        job.tail.append(line)
        log.write(line + "\n")
        log.flush()
