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
from optuna.trial import TrialState

from finetune_kit.errors import UserError, first_line
from finetune_kit.sweep.plan import SweepPlan

STUDY_FILE = "study.db"
# Each trial's process writes a heartbeat; a trial whose process stopped writing (a machine that died)
# is failed by the next process to look, once the grace period has passed.
HEARTBEAT_S, GRACE_S = 60, 180
SQLITE_WAIT_S = 60
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Who runs a trial: a trial left RUNNING by a process of this machine that is gone was killed.
WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SweepStudy:
    study: optuna.Study
    url: str  # passwords masked: fit for the screen and sweep.json
    turns: FileLock  # processes of this machine on this study take turns to open it and to add a trial


def open_study(plan: SweepPlan, storage_url: str | None, *, resume: bool) -> SweepStudy:
    """The sweep's study: created, or loaded to continue it or to share it. A sweep folder that holds
    a study is continued only with `--resume`; a study in a `--storage` database is shared as it is."""
    in_folder = storage_url is None
    if in_folder:
        _check_folder(plan.folder, resume)
        storage_url = f"sqlite:///{(plan.folder / STUDY_FILE).resolve()}"
    turns = FileLock(Path(tempfile.gettempdir()) / f"finetune-kit-sweep-{_digest(storage_url, plan.name)}.lock")
    with turns:  # Optuna creates its tables on first use: two processes doing it at once collide
        if in_folder:
            plan.folder.mkdir(parents=True, exist_ok=True)
        storage = open_storage(storage_url)  # a URL that cannot be opened fails before anything is written
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
    return SweepStudy(study, shown_url(storage_url), turns)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    # SQLite lets one writer in at a time; the others wait (5 s by default, short for a busy machine).
    engine = {"connect_args": {"timeout": SQLITE_WAIT_S}} if url.startswith("sqlite:") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat: experimental since Optuna 2.9
            return optuna.storages.RDBStorage(url, engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as err:
        raise UserError(
            f"--storage: cannot open {shown_url(url)} ({shown_url(first_line(err, 120))}); give an Optuna storage URL "
            "such as sqlite:///sweeps.db or postgresql://user@host/db"
        ) from None


def shown_url(url: str) -> str:
    """The URL with any password masked, as it may appear on screen and in sweep.json."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def fail_abandoned_trials(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a process of this machine that is gone (killed) are failed now, so the
    sweep runs others in their place; those of other machines, once their heartbeat is stale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host == WORKER.rpartition(":")[0] and pid.isdigit() and not _alive(int(pid)):
            try:
                study.tell(trial.number, state=TrialState.FAIL)
                failed.append(trial.number)
            except UpdateFinishedTrialError:  # another process failed it first
                pass
    return failed


def occupied(study: optuna.Study) -> int:
    """Trials that count towards the plan: finished ones and those running now, here or elsewhere."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING)))


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
