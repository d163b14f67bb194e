"""`finetune-kit sweep RECIPE --ray ADDRESS --workers N`: the sweep's trials run by N Ray tasks.

Each task is one more process of the shared sweep that `--storage` already supports: it joins the study and runs
trials until the study holds `sweep.trials` finished ones; the driver creates the study first (the sweep folder's
checks, `--resume`) and writes the report once every task is done. Ray only places the processes. Ray Tune with its
Optuna searcher was not used: it would keep the study apart from the sweep's storage, so the trial folders,
pruning, the retry of a dead worker's trial, `--resume` and the report would all be rebuilt around Tune's trials.

Tasks start together on an empty study: each gets its own sampler seed, so they do not draw the same first values.
Tasks of one machine take turns to count and add a trial (a file lock), so they never run more trials than planned;
across machines, give a PostgreSQL `--storage` (SQLite serves one machine).
"""

from __future__ import annotations

import os
from pathlib import Path

from finetune_kit.cluster.connection import cluster_gpus, cluster_machines, connected, enter, raised_user_error, ray
from finetune_kit.console import configure_output
from finetune_kit.errors import UserError
from finetune_kit.sweep.plan import plan_sweep
from finetune_kit.sweep.report import SweepReport
from finetune_kit.sweep.run import check_sweep, quiet_optuna, report_sweep, run_trials
from finetune_kit.sweep.study import folder_url, open_study

CPUS_PER_TASK = 1  # a trial trains in one process; Ray sets its threads to the CPUs it holds
# Each task's sampler seed: the recipe's plus its index times this. A process joining a study adds the trials it
# holds to its seed, so seeds one apart would meet (0 + 1 trial held = 1 + none held).
SEED_STRIDE = 10_000


def sweep_on_ray(
    recipe: Path,
    overrides: list[str],
    address: str,
    workers: int | None,
    *,
    resume: bool = False,
    storage: str | None = None,
    output: tuple[bool, bool] = (False, False),
) -> SweepReport:
    """The sweep (or its share of one shared with `--storage`) by tasks on the cluster; the whole study's report.
    `output`: --verbose and --quiet, for the tasks' lines."""
    plan = check_sweep(recipe, overrides)
    opened = open_study(plan, storage, resume=resume)  # the folder's checks, once; the tasks join the study
    with connected(address):
        if storage is None and cluster_machines() > 1:
            raise UserError(
                f"--ray {address}: the cluster spans several machines, which cannot share the sweep folder's SQLite "
                "study: give --storage a database every machine reaches (postgresql+psycopg://...)"
            )
        gpus = cluster_gpus()
        count = min(workers or gpus or 1, plan.config.trials)  # a task beyond the planned trials would only wait
        task = _join_sweep.options(num_cpus=CPUS_PER_TASK, num_gpus=1 if gpus else 0)
        url = storage or folder_url(plan)
        seeds = [f"sweep.seed={plan.config.seed + index * SEED_STRIDE}" for index in range(count)]
        running = [task.remote(os.getcwd(), str(recipe), [*overrides, seed], url, output) for seed in seeds]
        stops, failures = [], []
        for ref in running:  # each to its end: the others go on when one fails
            try:
                stops.append(ray.get(ref))
            except ray.exceptions.RayError as failed:
                failures.append(failed)
    if failures:
        raise (raised_user_error(failures[0]) or failures[0]) from None
    return report_sweep(plan, opened, next((stop for stop in stops if stop), None))


# Ray starts a task again whose process died (its default for tasks): it joins the study anew, fails the trial
# the dead process left running and runs its values again.
@ray.remote
def _join_sweep(folder: str, recipe: str, overrides: list[str], url: str, output: tuple[bool, bool]) -> str | None:
    """One process of the shared sweep: trials until the study holds the planned number; why it stopped early."""
    enter(folder)
    configure_output(*output)
    quiet_optuna()
    plan = plan_sweep(Path(recipe), overrides)
    return run_trials(plan, open_study(plan, url, resume=True))
