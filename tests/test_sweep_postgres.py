"""`finetune-kit sweep` across machines on a real PostgreSQL (Debian's, started here, never mocked): two
workers, each with its own host name (a UTS namespace) and temp folder as two machines would have, share
one study; one is killed with SIGKILL in the middle of a trial. The survivor fails that trial once its
heartbeat is `sweep.dead_after_s` old, runs its values again in the dead trial's run folder (from its
checkpoint), and the study ends with every set of values finished exactly once."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.runs import RunFolder
from tests.builders import REPO, classification_recipe, free_loopback_port

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'finetune-kit[sweep]'")
from optuna.trial import TrialState  # noqa: E402

PG_USER = "finetune-kit-pg"  # PostgreSQL refuses to run as root: the server runs as this system user
# The survivor fails the killed trial 20 s after its last heartbeat (heartbeats every 6 s): past the second worker's
# start and first trials, so it is busy when the first dies, then waits for the dead trial, then runs it again.
DEAD_AFTER_S = 20
STUDY = "toy-sweep"
RetryDeadTrial = (
    getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
)


@dataclass
class Postgres:
    bin: Path
    root: Path  # data folder, socket and log, owned by the server's user
    port: int
    run_as: dict[str, Any] = field(default_factory=dict)  # subprocess's user/group: the unprivileged user

    def url(self, database: str = "optuna") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """One of the server's programs, as its user; a program that cannot be run at all fails like one that ran."""
        if not check and not os.access(self.bin / command[0], os.X_OK):
            return subprocess.CompletedProcess(command, 127, "", f"{self.bin / command[0]}: not found")
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
            **self.run_as,
        )

    def log(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace")[-1500:] if log.is_file() else ""


def _postgres_bin() -> Path | None:
    """Debian's binaries (/usr/lib/postgresql/<version>/bin, the newest), or initdb on the PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3].split(".")[0]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _server_user() -> dict[str, Any]:
    """As root: the unprivileged system user the server runs as, created once. Else: this user."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/false", PG_USER],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            pytest.skip(f"PostgreSQL refuses to run as root, and useradd {PG_USER} failed: {made.stderr.strip()}")
    user = pwd.getpwnam(PG_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free loopback port, in a temp folder, with an empty database `optuna`;
    stopped and removed at the end."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    run_as = _server_user()
    root = Path(tempfile.mkdtemp(prefix="finetune-kit-pg-"))  # under /tmp: the server's user can reach it
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    server = Postgres(bin_dir, root, free_loopback_port(), run_as)
    started = False
    try:
        made = server.run(
            "initdb",
            "-D",
            "data",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            check=False,
        )
        if made.returncode != 0:
            pytest.skip(f"initdb failed, no PostgreSQL server can be started here: {made.stderr.strip()[-500:]}")
        options = f"-p {server.port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        start = server.run(
            "pg_ctl", "-D", "data", "-l", "server.log", "-o", options, "-w", "-t", "30", "start", check=False
        )
        started = start.returncode == 0
        if not started:
            pytest.skip(f"pg_ctl start failed, no PostgreSQL server can be started here: {server.log()}")
        server.run("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "optuna")
        yield server
    finally:
        if started:
            stop = server.run("pg_ctl", "-D", "data", "-m", "fast", "-w", "-t", "30", "stop", check=False)
            pid_file = root / "data" / "postmaster.pid"
            if stop.returncode != 0 and pid_file.is_file():  # the server this fixture started, by its pid
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _machine_prefix() -> list[str]:
    """A command prefix that runs a worker under a host name of its own (`unshare --uts`, as root or in a user
    namespace): to the sweep it is another machine, whose dead trials only their heartbeat tells. Empty where
    neither works: the workers then share this host name and the killed one is seen dead by its pid."""
    for unshare in (["unshare", "--uts"], ["unshare", "--user", "--map-root-user", "--uts"]):
        probe = subprocess.run([*unshare, "hostname", "finetune-kit-probe"], capture_output=True)
        if probe.returncode == 0:
            return [*unshare, "sh", "-c", 'hostname "$0" && exec "$@"']
    return []


def start_worker(recipe: Path, url: str, machine: str, folder: Path, prefix: list[str]) -> subprocess.Popen:
    """`finetune-kit sweep RECIPE --storage URL` as on another machine: its own host name and temp folder."""
    (folder / "tmp").mkdir(parents=True)
    command = [sys.executable, "-m", "finetune_kit", "sweep", str(recipe), "--storage", url]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TMPDIR": str(folder / "tmp")}
    return subprocess.Popen(
        [*prefix, machine, *command] if prefix else command,
        env=env,
        stdout=(folder / "output.txt").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killed as a machine dies, all at once
    )


def output(folder: Path) -> str:
    return (folder / "output.txt").read_text(errors="replace")


def wait_for(condition, worker: subprocess.Popen, folder: Path, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the worker ended or stalled before {what}:\n{output(folder)[-3000:]}")
        time.sleep(0.01)


def runs_a_trial(sweep: Path, pid: int) -> bool:
    """Whether the process builds a trial's run folder now (its process.json names it)."""
    for marker in sweep.glob("trial-*.partial/process.json"):
        try:
            if json.loads(marker.read_text())["pid"] == pid:
                return True
        except (OSError, ValueError):  # the folder moved into place meanwhile
            continue
    return False


def first_attempt(trial: optuna.trial.FrozenTrial) -> int:
    original = RetryDeadTrial.retried_trial_number(trial)
    return trial.number if original is None else original


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_machines_one_killed_mid_trial_every_trial_finishes_once(
    postgres, tiny_bert, toy_data, tmp_path, write_recipe
):
    out = tmp_path / "sweep"  # the sweep folder, shared by both "machines" (a network filesystem)
    recipe = classification_recipe(tiny_bert, toy_data, out, epochs=1, eval_strategy="steps", eval_steps=5)
    recipe["name"] = STUDY
    recipe["data"] |= {"max_train_rows": 160, "max_eval_rows": 40}  # 20 steps, a checkpoint every 5
    recipe["data"].pop("test")
    recipe["sweep"] = {
        "trials": 3,
        "seed": 0,
        "dead_after_s": DEAD_AFTER_S,
        "parameters": {"training.learning_rate": {"log_uniform": [1e-4, 3e-2]}},
    }
    recipe_path, url, prefix = write_recipe(recipe), postgres.url(), _machine_prefix()
    a_dir, b_dir = tmp_path / "machine-a", tmp_path / "machine-b"
    workers = []
    try:
        workers.append(a := start_worker(recipe_path, url, "machine-a", a_dir, prefix))
        first = RunFolder(out / "trial-0000")
        # Machine a hangs in the middle of its first trial, once the trial has a complete checkpoint to continue
        # from: its heartbeat stops now.
        saved = lambda: first.last_checkpoint() is not None and first.emissions_readings()  # noqa: E731
        wait_for(saved, a, a_dir, "trial 0 saved a checkpoint and its energy")
        os.killpg(a.pid, signal.SIGSTOP)
        killed_grams = first.total_emissions().emissions_g
        assert killed_grams > 0  # the dead session's readings, saved at its checkpoint
        # Machine b joins once the first runs its first trial (as the docs say: not the same first draws); once it
        # runs a trial of its own, machine a dies.
        workers.append(b := start_worker(recipe_path, url, "machine-b", b_dir, prefix))
        wait_for(lambda: runs_a_trial(out, b.pid), b, b_dir, "it ran a trial")
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()
        killed = optuna.load_study(study_name=STUDY, storage=url).trials[0]
        assert killed.user_attrs["worker"] == f"{'machine-a' if prefix else socket.gethostname()}:{a.pid}"

        b.wait(timeout=240)
        survivor = output(b_dir)
        assert b.returncode == 0, survivor[-3000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    study = optuna.load_study(study_name=STUDY, storage=url)
    by_values: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.trials:
        by_values.setdefault(first_attempt(trial), []).append(trial)
    assert len(by_values) == 3, [(t.number, t.state, t.params) for t in study.trials]
    for number, group in by_values.items():  # each set of values finished exactly once, by its last attempt
        assert [t.state for t in group[:-1]] == [TrialState.FAIL] * (len(group) - 1)
        assert group[-1].state in (TrialState.COMPLETE, TrialState.PRUNED), (number, [t.state for t in group])
        assert all(t.params == group[0].params for t in group)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and len({json.dumps(t.params) for t in finished}) == 3
    # The killed trial failed and its values ran again, on the survivor, once; nothing else failed.
    assert [t.number for t in study.trials if t.state == TrialState.FAIL] == [0]
    [retry] = by_values[0][1:]
    assert retry.user_attrs["worker"].startswith("machine-b:" if prefix else "")
    assert retry.params == killed.params
    if prefix:  # another machine's trial: failed by its heartbeat
        assert f"trial 0 left running by {killed.user_attrs['worker']}, silent for {DEAD_AFTER_S} s: failed" in survivor
    assert "trial 0 left running by" in survivor and "its values run again" in survivor
    assert re.search(
        r"trial 0 runs again \(its worker died\): continuing trial-0000\.partial from checkpoint-\d+", survivor
    )

    # One run folder a set of values, each finished: the retry continued the killed trial's folder.
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("trial-")) == [
        f"trial-{number:04d}" for number in sorted(by_values)
    ]
    resumed = json.loads((out / "trial-0000" / "metrics.json").read_text())
    assert resumed["train"]["steps"] == 20
    grams_0 = json.loads((out / "trial-0000" / "emissions.json").read_text())["emissions_g"]
    assert grams_0 > killed_grams  # the dead session's energy counts in the trial's

    report = json.loads((out / "sweep.json").read_text())
    assert report["planned_trials"] == 3 and len(report["trials"]) == 3
    assert report["trials_by_state"] == {"complete": 3}
    rows = {row["number"]: row for row in report["trials"]}
    assert sorted(rows) == sorted(by_values)
    assert rows[0]["retries"] == [retry.number] and rows[0]["emissions_g"] == pytest.approx(grams_0)
    assert report["total_emissions_g"] == pytest.approx(sum(row["emissions_g"] for row in report["trials"]))
    assert "trial 0 ran again after its worker died" in survivor
