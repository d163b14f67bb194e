"""`finetune-kit train RECIPE --ray ADDRESS --workers N`: the run as N data-parallel processes placed by Ray Train.

Ray Train's `TorchTrainer` starts one worker per rank, sets up torch.distributed (gloo on CPUs, NCCL on GPUs) and
RANK, WORLD_SIZE, LOCAL_RANK; each worker then runs `finetune-kit train` as one rank of torchrun would: the HF
Trainer's accelerate state takes up the process group that is already there, only rank 0 writes the run folder,
and every rank measures its own emissions, summed in emissions.json.

Of Ray's transformers integration (`ray.train.huggingface.transformers`) nothing is used, on purpose:
`prepare_trainer` only feeds Ray Data iterators to the Trainer (each rank here loads the recipe's data and the
Trainer shards it), and `RayTrainReportCallback` copies every checkpoint into Ray's storage, while the run's
checkpoints already live in its run folder, where `--resume` continues them. Ray's storage therefore holds only
its own bookkeeping: a temporary folder. The driver reads the result from the run folder, which must be on storage
every node sees (the workers of a one-machine cluster share its filesystem).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetune_kit.cluster.connection import cluster_gpus, connected, enter, raised_user_error

try:
    from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer
except ImportError:  # ray without its train extra
    from finetune_kit.errors import UserError

    raise UserError("--ray needs Ray Train: pip install 'finetune-kit[ray]'") from None

from finetune_kit.config import load_recipe
from finetune_kit.runs import Layout, RunFiles
from finetune_kit.training import RunResult


@dataclass(frozen=True)
class RankJob:
    """What each worker needs to train its rank: the command as given, and where it was given."""

    folder: str  # the driver's working folder: relative recipe paths lead from there
    recipe: str
    overrides: list[str]
    resume: bool = False
    overwrite: bool = False
    force: bool = False
    verbose: bool = False
    quiet: bool = False


def train_on_ray(job: RankJob, address: str, workers: int | None, run_dir: Path) -> RunResult | None:
    """Train the run on the cluster; its result, read from the run folder (None when this machine does not see
    it). A failed rank's error is raised here: the toolkit's own as it is, one line."""
    with connected(address), tempfile.TemporaryDirectory(prefix="finetune-kit-ray-") as bookkeeping:
        gpus = cluster_gpus()
        trainer = TorchTrainer(
            _train_rank,
            train_loop_config=asdict(job),
            scaling_config=ScalingConfig(num_workers=workers or gpus or 1, use_gpu=gpus > 0),
            # No restarts: a run that failed is continued with --resume, from its own last checkpoint.
            run_config=RunConfig(
                storage_path=bookkeeping,
                failure_config=FailureConfig(max_failures=0, max_preemption_failures=0),
                logging_config=LoggingConfig(log_level="WARNING"),
                # print stays print: Ray Train's patch also catches output the libraries capture (dill's, under
                # datasets' fingerprints) and floods the console with it
                worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
            ),
        )
        try:
            trainer.fit()
        except TrainingFailedError as failed:
            raise (raised_user_error(failed) or failed) from None
    files = RunFiles(run_dir)
    if not files.path(Layout.METRICS).is_file():
        return None
    return RunResult(run_dir, files.metrics(), files.emissions())


def _train_rank(config: dict[str, Any]) -> None:
    """One Ray Train worker: `finetune-kit train` as one rank (Ray has set RANK and the process group)."""
    from finetune_kit.commands.train import train
    from finetune_kit.console import configure_output

    job = RankJob(**config)
    enter(job.folder)
    configure_output(job.verbose, job.quiet)  # all but rank 0 quiet, as under torchrun
    train(load_recipe(Path(job.recipe), job.overrides), resume=job.resume, overwrite=job.overwrite, force=job.force)


def rank_job(recipe: Path, overrides: list[str], flags: dict[str, bool]) -> RankJob:
    """The job of `train RECIPE --set ... --resume ...` given in this process's working folder."""
    return RankJob(os.getcwd(), str(recipe), overrides, **flags)
