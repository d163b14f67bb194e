"""This process as the driver of a job on a running Ray cluster (`ray start`), and what its workers need of it."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from finetune_kit.errors import UserError, first_line

try:
    import ray
    from ray.exceptions import RayTaskError
except ImportError:  # the `ray` extra
    raise UserError("--ray needs Ray: pip install 'finetune-kit[ray]'") from None

# Ray's workers start with the environment `ray start` was given, not the driver's: these follow the job (offline
# Hub, caches, codecarbon's settings), as `HF_HUB_OFFLINE=1 finetune-kit train ... --ray auto` means.
FORWARDED_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "CODECARBON_")
# Never forwarded: Ray keeps a job's environment for the cluster's lifetime and shows it (dashboard, `ray list
# jobs`). A node that needs the Hub token has its own login (`hf auth login`, or HF_TOKEN where `ray start` runs).
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
CONNECT_TIMEOUT_S = 10


@contextmanager
def connected(address: str) -> Iterator[None]:
    """Joined to the cluster at `address` (`auto`: the one started on this machine, or RAY_ADDRESS) for the
    block; the job's workers get the forwarded variables."""
    _check_reachable(address)
    env = {name: value for name, value in os.environ.items() if _forwarded(name)}
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, logging_level=logging.WARNING)
    except ConnectionError as err:
        raise UserError(
            f"--ray {address}: no Ray cluster to join ({first_line(err, 120)}); start one with `ray start --head`"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _forwarded(name: str) -> bool:
    return name.startswith(FORWARDED_PREFIXES) and not any(word in name.upper() for word in SECRET_WORDS)


def _check_reachable(address: str) -> None:
    """A HOST:PORT nothing listens at is said at once: Ray would keep trying to reach it for minutes."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or "://" in address:
        return  # auto, or a ray:// client address: Ray says what it finds
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise UserError(
            f"--ray {address}: nothing answers there ({err.strerror or err}); give the address `ray start --head` "
            "printed, or auto on a machine of the cluster"
        ) from None


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_machines() -> int:
    """Machines among the cluster's live nodes (several nodes may run on one machine, as in a test)."""
    return len({node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]})


def enter(folder: str) -> None:
    """In a worker: the driver's working folder, where the recipe's relative paths lead. Workers on other machines
    need it at the same path, on storage every node shares."""
    try:
        os.chdir(folder)
    except OSError:
        raise UserError(
            f"{socket.gethostname()}: no folder {folder}: start the command in a folder every node of the cluster "
            "sees at the same path"
        ) from None


def raised_user_error(error: BaseException) -> UserError | None:
    """The toolkit's own error inside a failed Ray task or worker group (a bad recipe, a refused budget), to be
    said in one line as it would be without Ray."""
    causes: list[BaseException] = [error]
    while causes:
        cause = causes.pop()
        if isinstance(cause, UserError):
            return cause
        if isinstance(cause, RayTaskError) and cause.cause is not None:
            causes.append(cause.cause)
        causes.extend(getattr(cause, "worker_failures", {}).values())  # ray.train.WorkerGroupError
        if cause.__cause__ is not None:
            causes.append(cause.__cause__)
    return None
