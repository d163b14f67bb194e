"""Where a sweep's trials are kept: an Optuna study in RDB storage, a SQLite file in the sweep folder
unless `--storage` names another database, which several processes (and machines) then share."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from filelock import FileLock
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from finetune_kit.errors import UserError, first_line
from finetune_kit.sweep.plan import SweepPlan

STUDY_FILE = "study.db"
# Each trial's process writes a heartbeat every third of `sweep.dead_after_s`; a trial whose process stopped
# writing (a machine that died) is failed by the next process to look, once dead_after_s has passed. With a
# shared storage (`--storage`) Optuna's retry callback then queues its values again, and a process still
# running takes them up in the dead trial's run folder: at most MAX_RETRIES times, so values that kill their
# process every time (out of memory) are left failed and the plan draws others in their place.
MAX_RETRIES = 2
POLL_S = 5  # a process waiting for trials running elsewhere looks again at most this long after
SQLITE_WAIT_S = 60
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Who runs a trial: a trial left RUNNING by a process of this machine that is gone was killed.
WORKER = f"{socket.gethostname()}:{os.getpid()}"

try:  # Optuna 4.9 renamed the callback and the storage's argument for it
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryDeadTrial

    _RETRY_ARGUMENT = "heartbeat_stale_trial_callback"
except ImportError:  # pragma: no cover - Optuna before 4.9
    from optuna.storages import RetryFailedTrialCallback as RetryDeadTrial

    _RETRY_ARGUMENT = "failed_trial_callback"


@dataclass(frozen=True)
class SweepStudy:
    study: optuna.Study
    url: str  # passwords masked: fit for the screen and sweep.json
    turns: FileLock  # processes of this machine on this study take turns to open it and to add a trial
    retry: RetryDeadTrial | None  # a shared study's: queues a dead trial's values again
    dead_after_s: int

    @property
    def poll_s(self) -> int:
        """How often a process with no trial to start looks again: trials running elsewhere end or go stale."""
        return min(heartbeat_interval(self.dead_after_s), POLL_S)


def open_study(plan: SweepPlan, storage_url: str | None, *, resume: bool) -> SweepStudy:
    """The sweep's study: created, or loaded to continue it or to share it. A sweep folder that holds
    a study is continued only with `--resume`; a study in a `--storage` database is shared as it is."""
    in_folder = storage_url is None
    if in_folder:
        _check_folder(plan.folder, resume)
        storage_url = folder_url(plan)
    turns = FileLock(Path(tempfile.gettempdir()) / f"finetune-kit-sweep-{_digest(storage_url, plan.name)}.lock")
    with turns:  # Optuna creates its tables on first use: two processes doing it at once collide
        if in_folder:
            plan.folder.mkdir(parents=True, exist_ok=True)
        retry = None if in_folder else _retry()
        # A URL that cannot be opened fails before anything is written.
        storage = open_storage(storage_url, dead_after_s=plan.config.dead_after_s, retry=retry)
        held = {summary.study_name: summary.n_trials for summary in optuna.get_all_study_summaries(storage, False)}
        study = optuna.create_study(
            storage=storage,
            study_name=plan.name,
            directions=[objective.direction for objective in plan.objectives],
            sampler=_sampler(plan, held.get(plan.name, 0)),
            pruner=_pruner(plan),
            load_if_exists=True,
        )
        _check_same_search(study, plan, shown_url(storage_url))
    plan.folder.mkdir(parents=True, exist_ok=True)
    return SweepStudy(study, shown_url(storage_url), turns, retry, plan.config.dead_after_s)


def folder_url(plan: SweepPlan) -> str:
    """The study's storage when no `--storage` is given: a SQLite file in the sweep folder."""
    return f"sqlite:///{(plan.folder / STUDY_FILE).resolve()}"


def open_storage(url: str, *, dead_after_s: int, retry: RetryDeadTrial | None = None) -> optuna.storages.RDBStorage:
    # SQLite lets one writer in at a time; the others wait (5 s by default, short for a busy machine).
    engine = {"connect_args": {"timeout": SQLITE_WAIT_S}} if url.startswith("sqlite:") else None
    heartbeat = {"heartbeat_interval": heartbeat_interval(dead_after_s), "grace_period": dead_after_s}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat: experimental since Optuna 2.9
            return optuna.storages.RDBStorage(url, engine, **heartbeat, **{_RETRY_ARGUMENT: retry})
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as err:
        raise UserError(
            f"--storage: cannot open {shown_url(url)} ({shown_url(first_line(err, 120))}); give an Optuna storage URL "
            "such as sqlite:///sweeps.db or postgresql+psycopg://user@host/db"
        ) from None


def shown_url(url: str) -> str:
    """The URL with any password masked, as it may appear on screen and in sweep.json."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def heartbeat_interval(dead_after_s: int) -> int:
    return max(1, dead_after_s // 3)


def fail_abandoned_trials(study: optuna.Study, retry: RetryDeadTrial | None, dead_after_s: int) -> list[str]:
    """Trials left RUNNING by a process of this machine that is gone (killed) are failed now, so the
    sweep runs others in their place; those of other machines, once their heartbeat is dead_after_s old.
    With `retry` (a shared study) their values are queued to run again. What was done, a line a trial."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # and Optuna's retry callback queues their values again
    states = {trial.number: trial.state for trial in study.get_trials(deepcopy=False)}
    failed = {
        trial.number: f"{trial.user_attrs.get('worker', 'a process')}, silent for {dead_after_s} s"
        for trial in running
        if states[trial.number] == TrialState.FAIL
    }
    for trial in running:
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if trial.number in failed or host != WORKER.rpartition(":")[0] or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            frozen = study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):  # another process failed it first
            continue
        failed[trial.number] = "a killed process"
        if retry is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                retry(study, frozen)
    if not failed:
        return []
    trials = study.get_trials(deepcopy=False)
    queued = {history[-1] for trial in trials if (history := retry_history(trial))}
    return [
        f"trial {first_attempt(trials[number])} left running by {who}: failed"
        + ("; its values run again" if number in queued else "")
        for number, who in failed.items()
    ]


def first_attempt(trial: FrozenTrial) -> int:
    """The trial whose values a retry runs again (and whose run folder it continues); else the trial itself."""
    history = retry_history(trial)
    return history[0] if history else trial.number


def retry_history(trial: FrozenTrial) -> list[int]:
    """The earlier attempts at a retried trial's values, first one first; empty for a first attempt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return list(RetryDeadTrial.retry_history(trial))


def attempts(study: optuna.Study) -> dict[int, list[FrozenTrial]]:
    """The study's trials as the sweep counts them: each set of values once, under its first attempt's
    number, with the attempts that ran it again after a worker died."""
    grouped: dict[int, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        grouped.setdefault(first_attempt(trial), []).append(trial)
    return grouped


@dataclass(frozen=True)
class Held:
    """Trials by what they mean for the plan: done, being run (here or elsewhere), queued to run again."""

    finished: int
    running: list[FrozenTrial]
    waiting: int

    @property
    def occupied(self) -> int:
        return self.finished + len(self.running) + self.waiting


def held(study: optuna.Study) -> Held:
    trials = study.get_trials(deepcopy=False)
    return Held(
        sum(trial.state in FINISHED for trial in trials),
        [trial for trial in trials if trial.state == TrialState.RUNNING],
        sum(trial.state == TrialState.WAITING for trial in trials),
    )


def _retry() -> RetryDeadTrial:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryDeadTrial(max_retry=MAX_RETRIES)


def _check_folder(folder: Path, resume: bool) -> None:
    holds_study = (folder / STUDY_FILE).is_file()
    if folder.exists() and not holds_study:
        raise UserError(f"output_dir: {folder} exists and holds no sweep ({STUDY_FILE}); choose another output_dir")
    if holds_study and not resume:
        raise UserError(
            f"output_dir: {folder} already holds a sweep; pass --resume to continue it, or choose another output_dir"
        )


def _sampler(plan: SweepPlan, trials_held: int) -> optuna.samplers.BaseSampler:
    """TPE (Optuna's default, multi-objective too). Its first trials draw at random: a third of a small
    sweep, up to Optuna's 10. A process joining a study continues the seed past the trials it holds,
    so a resumed sweep does not draw its first trials again."""
    startup = min(10, max(2, plan.config.trials // 3))
    return optuna.samplers.TPESampler(seed=plan.config.seed + trials_held, n_startup_trials=startup)


def _pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    pruning = plan.config.pruning
    if pruning is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials, n_warmup_steps=pruning.warmup_steps)


def _check_same_search(study: optuna.Study, plan: SweepPlan, url: str) -> None:
    """Trials of one study must be comparable: a study continued with other objectives or another
    search space is refused (as a run resumed with another recipe is)."""
    search: dict[str, Any] = {
        "objectives": [objective.name for objective in plan.objectives],
        "parameters": {
            name: spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)  # as studies before `relative`
            for name, spec in plan.config.parameters.items()
        },
    }
    held = study.user_attrs.get("search")
    if held is None:
        study.set_user_attr("search", search)
        return
    for key in ("objectives", "parameters"):
        if held[key] != search[key]:
            raise UserError(
                f"sweep.{key}: differs from the study '{plan.name}' in {url} ({held[key]}); continue it with the "
                "same sweep section, or give this sweep another name"
            )


def _digest(url: str, name: str) -> str:
    return hashlib.sha256(f"{url}\n{name}".encode()).hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
