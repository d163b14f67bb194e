"""What the processes of a distributed run tell each other about the run folder, which only the main process
writes. The machines (nodes) of a multi-node run need not share a filesystem: only the first one holds the folder."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from finetune_kit.emissions import EmissionsRecord
from finetune_kit.errors import UserError
from finetune_kit.runs import Layout, RunFolder

logger = logging.getLogger(__name__)


def machine(args: TrainingArguments) -> int:
    """The machine (node) a process runs on, named by the first rank on it: 0 is the one with the run folder."""
    return args.process_index - args.local_process_index


class EmissionReadings:
    """Where each process's emissions readings go, so the run's total counts every process on every machine.

    A process on the main machine writes its own reading file whenever it reads (every few seconds). A process on
    another machine may not see the run folder, so its reading travels to the main process at every checkpoint
    and at the end (`share`, which all processes call at the same point), and the main process writes it: a
    killed multi-node run keeps the other machines' energy up to its last checkpoint."""

    def __init__(self, folder: RunFolder, session: str, args: TrainingArguments) -> None:
        self.folder = folder
        self.session = session
        self.process = args.process_index
        self.world_size = args.world_size
        self.node = machine(args)

    def save(self, reading: EmissionsRecord) -> None:
        """This process's newest reading, written now when this machine holds the run folder."""
        if self.node == 0:
            self.folder.save_emissions_reading(self.session, self.process, self.node, reading.to_dict())

    def share(self, reading: EmissionsRecord | None) -> None:
        """Every process calls this at the same step: readings of the other machines reach the main process."""
        if reading is not None:
            self.save(reading)
        if self.world_size == 1:
            return
        remote = reading.to_dict() if reading is not None and self.node else None
        gathered: list[tuple[int, int, dict | None]] | None = [None] * self.world_size if self.process == 0 else None
        torch.distributed.gather_object((self.process, self.node, remote), gathered, dst=0)
        for process, node, record in gathered or []:
            if record is not None:
                self.folder.save_emissions_reading(self.session, process, node, record)


def save_on_machines_without_the_folder(folder: RunFolder, args: TrainingArguments) -> None:
    """Once the main process has opened the run folder: when a machine does not see it (no shared filesystem),
    every machine saves its own checkpoints (the Trainer's `save_on_each_node`), so each process can load the best
    one at the end and a resume finds them on every machine. Called by all processes; a lone one does nothing."""
    if args.world_size == 1:
        return
    torch.distributed.barrier()  # the folder exists by now, on the main machine's disk
    sees: list[bool | None] = [None] * args.world_size
    torch.distributed.all_gather_object(sees, folder.path(Layout.PROCESS).is_file())
    args.save_on_each_node = not all(sees)


def agree_on_checkpoint(checkpoint: Path | None, args: TrainingArguments, partial: Path) -> None:
    """A resume continues from the main process's checkpoint: every process must see the same one, or the ranks
    would train from different steps. Called by all processes; all raise the same error."""
    if args.world_size == 1:
        return
    seen: list[str | None] = [None] * args.world_size
    torch.distributed.all_gather_object(seen, checkpoint.name if checkpoint else None)
    if any(name != seen[0] for name in seen):
        blind = next(rank for rank, name in enumerate(seen) if name != seen[0])
        raise UserError(
            f"--resume: process {blind} sees {seen[blind] or 'no checkpoint'} in {partial}, the main process "
            f"{seen[0] or 'none'}: resuming a multi-node run needs its output_dir on storage every machine shares"
        )


def drop_machine_copy(folder: RunFolder, args: TrainingArguments) -> None:
    """At the end of a run, after every process is done: a machine other than the main one that does not see the
    main process's files (no shared filesystem) holds its own checkpoints and a copy of the model, which nothing
    reads once the run is complete; its first process removes them."""
    if machine(args) == 0 or args.local_process_index != 0:
        return
    if not any((place / Layout.RECIPE).exists() for place in (folder.partial, folder.final)):
        shutil.rmtree(folder.partial, ignore_errors=True)


def warn_when_sharding_is_dropped(trainer: Trainer) -> None:
    """An FSDP launch (`accelerate launch` with an FSDP config) that accelerate turned into plain DDP: on CPU it
    enables FSDP only for GPU process groups and drops the plugin without a word. Each process then holds the
    whole model; the user chose FSDP for memory, so it is said."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if asked and not trainer.is_fsdp_enabled and trainer.args.process_index == 0:
        logger.warning(
            "FSDP was asked for, but accelerate trains this %s run as DDP: each process holds the whole model "
            "(accelerate enables FSDP only on GPUs)",
            trainer.accelerator.distributed_type,
        )
