"""Experiment trackers of a training run (`training.report_to`). transformers' own reporters
(TensorBoardCallback, MLflowCallback, TrackioCallback) log every step; this module points them into the
run folder, offline, for the run's duration only, and ends with the run's emission totals in each.

Each reporter is configured the way transformers and the library read it: TensorBoard from
TENSORBOARD_LOGGING_DIR, MLflow from its tracking URI, trackio from TRACKIO_DIR. The MLflow run is opened
here rather than by its reporter, which closes it when training ends: the final evaluations and the
emission totals, logged after training, belong to the same run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import TracebackType

from transformers import Trainer
from transformers.integrations import get_reporting_integration_callbacks

from finetune_kit.config.recipe import Recipe
from finetune_kit.emissions import EmissionsRecord
from finetune_kit.errors import RecipeError
from finetune_kit.progress import SILENT, Progress
from finetune_kit.runs import Layout, RunFolder

INSTALL_HINT = "pip install 'finetune-kit[tracking]'"
MLFLOW_DB = "mlflow.db"
# What would send trackio's logs to a Hub Space or a server: unset while a run logs locally.
TRACKIO_REMOTE = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL")


class ExperimentTracking:
    """The trackers of one run, from before its folder opens to just before the folder moves into place.

    Built before the run folder exists, so bad settings fail before anything is written. Used as a context
    around building and training; `finish` logs the totals and closes the trackers while their stores are
    still in `<run>.partial/`. Leaving the context without `finish` (an error, Ctrl-C) marks the MLflow run
    failed or killed. The environment is restored either way: a process may train several runs.
    """

    def __init__(self, recipe: Recipe, *, is_main: bool, progress: Progress = SILENT) -> None:
        self.trackers = recipe.training.report_to
        self.progress = progress  # tells where to look, once the trackers are open
        self.name = recipe.name or "run"
        self.is_main = is_main
        self.store = RunFolder(recipe.run_dir).path(Layout.TRACKING)  # where they write while the run is built
        self.shown = recipe.run_dir / Layout.TRACKING  # where the user finds them once it is done
        for tracker in self.trackers:
            if importlib.util.find_spec(tracker) is None:
                raise RecipeError(f"training.report_to: {tracker} is not installed; {INSTALL_HINT}")
        self.mlflow_uri = _mlflow_uri(recipe, self.store) if "mlflow" in self.trackers else None
        self.trackio_dir = _trackio_dir(self.store / "trackio") if "trackio" in self.trackers else None
        self._saved_environment: dict[str, str | None] = {}
        self._previous_mlflow_uri: str | None = None
        self._mlflow_run_id: str | None = None  # the run opened here (main process only)
        self._open = False

    def __enter__(self) -> ExperimentTracking:
        if not self.trackers:
            return self
        variables: dict[str, str | None] = {}
        if "tensorboard" in self.trackers:
            variables["TENSORBOARD_LOGGING_DIR"] = str(self.store / "tensorboard")
        if self.trackio_dir is not None:
            variables |= {"TRACKIO_DIR": str(self.trackio_dir), **dict.fromkeys(TRACKIO_REMOTE)}
        self._saved_environment = _set_environment(variables)
        self._open = True
        if self.mlflow_uri is not None:
            try:
                self._open_mlflow_run()
            except BaseException:  # no context to exit yet: put the environment back here
                self._close("FAILED")
                raise
        if self.is_main:
            self.progress.note("tracking: " + " · ".join(self._where_to_look()))
        return self

    def finish(self, trainer: Trainer, record: EmissionsRecord | None) -> None:
        """The run's totals (all sessions and processes, final evaluations included) to every tracker at the
        last step, then each tracker closed. transformers' reporters close when training ends, but the
        evaluations after it reopen them."""
        if not self._open:
            return
        kinds = tuple(get_reporting_integration_callbacks(trainer.args.report_to))
        reporters = [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, kinds)]
        args, state, control = trainer.args, trainer.state, trainer.control
        if record is not None:
            totals = {
                "final_emissions_g": record.emissions_g,
                "final_energy_kwh": record.energy_kwh,
                "final_duration_s": record.duration_s,
            }
            for reporter in reporters:
                reporter.on_log(args, state, control, logs=dict(totals), model=trainer.model)
        for reporter in reporters:
            reporter.on_train_end(args, state, control, model=trainer.model)
        self._close("FINISHED")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._open:
            interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)  # Ctrl-C, or a stop on request
            self._close("KILLED" if interrupted else "FAILED")

    def _open_mlflow_run(self) -> None:
        import mlflow

        self._previous_mlflow_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(self.mlflow_uri)
        if not self.is_main:
            return
        own_store = self.mlflow_uri == _own_mlflow_uri(self.store)
        if own_store:
            self.store.mkdir(parents=True, exist_ok=True)  # SQLite creates its file, not the folder
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(self.name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # in the run folder's own store, the artifacts stay in the run folder too
            artifacts = (self.store / "mlflow-artifacts").absolute().as_uri() if own_store else None
            experiment_id = client.create_experiment(self.name, artifact_location=artifacts)
        self._mlflow_run_id = mlflow.start_run(experiment_id=experiment_id, run_name=self.name).info.run_id

    def _close(self, status: str) -> None:
        self._open = False
        if self.mlflow_uri is not None:
            import mlflow

            active = mlflow.active_run()
            if active is not None and active.info.run_id == self._mlflow_run_id:
                mlflow.end_run(status)
            mlflow.set_tracking_uri(self._previous_mlflow_uri)
        _set_environment(self._saved_environment)

    def _where_to_look(self) -> list[str]:
        """How to open each tracker once the run is done."""
        places = []
        if "tensorboard" in self.trackers:
            places.append(f"tensorboard --logdir {self.shown / 'tensorboard'}")
        if self.mlflow_uri == _own_mlflow_uri(self.store):
            places.append(f"mlflow ui --backend-store-uri sqlite:///{self.shown / MLFLOW_DB}")
        elif self.mlflow_uri is not None:
            places.append(f"mlflow at {self.mlflow_uri}, experiment {self.name}")
        if self.trackio_dir is not None:
            shown = self.shown / "trackio" if self.trackio_dir == (self.store / "trackio").absolute() else None
            places.append(f"{f'TRACKIO_DIR={shown} ' if shown else ''}trackio show --project {self.name}")
        return places


def _own_mlflow_uri(store: Path) -> str:
    return f"sqlite:///{(store / MLFLOW_DB).absolute()}"


def _mlflow_uri(recipe: Recipe, store: Path) -> str:
    """The recipe's tracking URI, else one already set (MLFLOW_TRACKING_URI), else a SQLite file in the run folder
    (MLflow's file store is retired)."""
    import mlflow

    if recipe.training.tracking_uri:
        return recipe.training.tracking_uri
    return mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else _own_mlflow_uri(store)


def _trackio_dir(own: Path) -> Path:
    """TRACKIO_DIR when the user set it, else the run folder's. trackio reads the variable once, when it is
    first imported: a process that already logged somewhere else (a notebook, a sweep) cannot move it."""
    wanted = Path(os.environ.get("TRACKIO_DIR") or own).absolute()
    if "trackio.utils" in sys.modules:
        from trackio.utils import TRACKIO_DIR

        if Path(TRACKIO_DIR).absolute() != wanted:
            raise RecipeError(
                f"training.report_to: trackio already writes to {TRACKIO_DIR} in this process (it reads TRACKIO_DIR "
                "once); train this run in a new process, or set TRACKIO_DIR to one folder for all runs"
            )
    return wanted


def _set_environment(variables: dict[str, str | None]) -> dict[str, str | None]:
    """Set (or, for None, unset) environment variables; returns their previous values, to restore them with."""
    previous = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return previous
