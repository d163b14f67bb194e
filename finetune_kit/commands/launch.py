"""`finetune-kit train RECIPE --nodes N --node-rank R --master HOST:PORT`: this machine as one node of a multi-node
run. The command runs torchrun (torch's own launcher): it starts this node's processes, meets the other
nodes at the master's address and sets what every rank reads (RANK, WORLD_SIZE, LOCAL_RANK, ...); each rank runs
`finetune-kit train` as in a run of one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed.run as torchrun
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from finetune_kit.errors import UserError

DEFAULT_MASTER_PORT = 29500  # torchrun's own default
SIGNALLED = 128  # a process ended by signal N exits with 128 + N, as in a shell


@dataclass(frozen=True)
class NodeLaunch:
    """Where this machine stands among the run's machines, and how many processes it starts."""

    nodes: int
    node_rank: int
    master: str | None  # HOST:PORT of node 0; None on a single machine
    processes_per_node: int

    @classmethod
    def from_options(
        cls, nodes: int, node_rank: int | None, master: str | None, processes_per_node: int | None
    ) -> NodeLaunch:
        """Checks the options together; a single machine needs neither a rank nor a master."""
        processes = processes_per_node or torch.cuda.device_count() or 1  # one process per GPU, or one on a CPU
        if nodes == 1:
            if node_rank is not None or master is not None:
                given = "--node-rank" if node_rank is not None else "--master"
                raise UserError(f"{given}: only for a run of several machines; add --nodes N, or drop {given}")
            return cls(1, 0, None, processes)
        if node_rank is None or master is None:
            missing = "--node-rank" if node_rank is None else "--master"
            raise UserError(
                f"--nodes {nodes}: also give {missing} (each machine its rank, all of them node 0's HOST:PORT)"
            )
        if node_rank >= nodes:
            raise UserError(f"--node-rank {node_rank}: the ranks of {nodes} nodes are 0 to {nodes - 1}")
        return cls(nodes, node_rank, master, processes)

    def torchrun_options(self) -> list[str]:
        per_node = ["--nproc-per-node", str(self.processes_per_node)]
        if self.master is None:
            return ["--standalone", *per_node]  # one machine: torchrun picks a free port itself
        host, port = master_address(self.master)
        return [
            *("--nnodes", str(self.nodes), "--node-rank", str(self.node_rank)),
            *("--master-addr", host, "--master-port", str(port)),
            *per_node,
        ]


def master_address(master: str) -> tuple[str, int]:
    """HOST:PORT, or HOST alone for torchrun's default port; [IPv6]:PORT too."""
    host, colon, port = master.rpartition(":")
    if not colon or "]" in port:
        return master.strip("[]"), DEFAULT_MASTER_PORT
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise UserError(f"--master {master}: give node 0's HOST:PORT, e.g. 10.0.0.1:{DEFAULT_MASTER_PORT}")
    return host.strip("[]"), int(port)


def launch_nodes(launch: NodeLaunch, train_arguments: list[str]) -> int:
    """torchrun's own run (as `accelerate launch` calls it), starting `finetune-kit train` with `train_arguments` in
    each process of this node; the exit status of the first process that failed (2 for a bad recipe or data), so
    the command ends as a run of one process would. Ctrl-C and a scheduler's SIGTERM reach every process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--nodes/--processes-per-node: this process is already one of a launched run")
    command = [*launch.torchrun_options(), "-m", "finetune_kit", "train", *train_arguments]
    try:
        torchrun.run(torchrun.get_args_parser().parse_args(command))
    except ChildFailedError as failed:
        exit_code = failed.get_first_failure()[1].exitcode
        return exit_code if exit_code > 0 else SIGNALLED - exit_code  # -15: ended by SIGTERM
    except SignalException as stopped:
        return SIGNALLED + stopped.sigval
    return 0


def forwarded_arguments(recipe: str, overrides: list[str], flags: dict[str, bool]) -> list[str]:
    """`finetune-kit train`'s arguments for each launched process: the recipe, its `--set` items and the flags
    that are on (`{"resume": True, "quiet": False, ...}`), without the launch options."""
    options = [part for item in overrides for part in ("--set", item)]
    return [recipe, *options, *(f"--{name}" for name, on in flags.items() if on)]
