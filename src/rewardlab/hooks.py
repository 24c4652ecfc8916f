"""Project hooks: stop a run at once when a parameter is invalid, or, with the command to fix it, when its inputs
were never made; end a run stopped by SIGTERM or Ctrl-C as failed; mark KILLED the MLflow runs of processes
killed outright; log saved reward models to MLflow and register exported ones; show runs in MLflow as model
training, named by their label, with the pair sets they use; print a short summary once a run succeeded."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from rewardlab.errors import MissingInputsError

logger = logging.getLogger(__name__)

# Which pipeline makes each dataset that other pipelines read: the order a user runs them in.
_PIPELINE_ORDER = ("world", "ingest", "grm_train", "ood_eval", "bon", "rl")


def missing_inputs_message(pipeline: Pipeline, catalog: Any, registry: dict[str, Pipeline]) -> str | None:
    """A message naming every persisted input that does not exist yet and the pipeline that makes it, and, when
    several pipelines make them, the one command that runs them all in order."""
    lines, makers = [], set()
    for name in sorted(pipeline.inputs()):
        if name.startswith("params:") or name == "parameters":
            continue
        try:
            exists = catalog.exists(name)
        except Exception:  # an unregistered or unreadable dataset counts as missing
            exists = False
        if exists:
            continue
        # all_outputs: a dataset a pipeline also reads itself (reward_model, read by the export) is still its own.
        maker = next((p for p in _PIPELINE_ORDER if p in registry and name in registry[p].all_outputs()), None)
        hint = f"`kedro run --pipelines {maker}`" if maker else "the catalog entry"
        lines.append(f"  - '{name}' does not exist yet: make it with {hint}")
        makers.add(maker)
    if not lines:
        return None
    if len(makers - {None}) > 1:
        ordered = ",".join(p for p in _PIPELINE_ORDER if p in makers)
        lines.append(f"Make them all with `kedro run --pipelines {ordered}`.")
    return (
        "This run needs inputs that were never made:\n"
        + "\n".join(lines)
        + "\nOr run the whole DAG once with `kedro run` (the default pipeline)."
    )


def parameter_blocks(pipeline: Pipeline) -> list[str]:
    """The parameter blocks (`grm_train`, ...) the pipeline's nodes read; every block for a node that takes
    the whole `parameters`."""
    from rewardlab.config import PIPELINE_CONFIGS

    inputs = pipeline.inputs()
    if "parameters" in inputs:
        return list(PIPELINE_CONFIGS)
    used = {name.removeprefix("params:").split(".", 1)[0] for name in inputs if name.startswith("params:")}
    return [block for block in PIPELINE_CONFIGS if block in used]


class RunGuardHooks:
    """Before the first node, and before an MLflow run is opened: every parameter the run will use is checked
    against its typed configuration (`rewardlab.config`), then every input it reads must exist."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        from kedro.framework.project import pipelines as registry

        from rewardlab.config import check_parameters

        check_parameters(catalog.load("parameters"), parameter_blocks(pipeline))
        message = missing_inputs_message(pipeline, catalog, dict(registry))
        if message:
            raise MissingInputsError(message)


class RunTerminated(Exception):
    """The run received SIGTERM or SIGINT. An `Exception`, unlike `KeyboardInterrupt`, so Kedro's error path runs."""


def _raise_run_terminated(signum: int, frame: Any) -> None:
    raise RunTerminated(f"received {signal.Signals(signum).name}")


class SignalHooks:
    """Turns SIGTERM (`kill`, `timeout`, a scheduler's preemption) and Ctrl-C during `kedro run` into a failed node.

    By default SIGTERM ends the process on the spot, leaving the MLflow run RUNNING for good, and Ctrl-C raises a
    `KeyboardInterrupt`, which skips `on_pipeline_error`, so mlflow's exit handler marks the run FINISHED. Raised
    as `RunTerminated` instead, the signal fails the running node: kedro-mlflow's `on_pipeline_error` ends the run
    FAILED, `launch_training` stops its torchrun processes, and what was saved before stays as it was.
    SIGKILL cannot be caught: a run killed that way stays RUNNING in MLflow.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    # Last of the before_pipeline_run hooks: the handler is in place only once the runner starts, inside the
    # `try` whose `except` calls on_pipeline_error (and is not left behind when an earlier hook stops the run).
    @hook_impl(trylast=True)
    def before_pipeline_run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python sets signal handlers from the main thread only
        for signum in self.SIGNALS:
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue  # e.g. SIGINT in a background job (`kedro run &` in a script): it stays ignored
            self._previous[signum] = previous
            signal.signal(signum, _raise_run_terminated)

    # First of the after/error hooks: a second signal during clean-up gets the handler the process had before.
    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._restore()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        self._restore()

    def _restore(self) -> None:
        while self._previous:
            signum, previous = self._previous.popitem()
            # None: a handler set outside Python, which signal.signal cannot reinstall; the default is closest.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)


class MlflowCheckpointHooks:
    """Logs each saved reward model directory as an artifact of the active MLflow run.

    Set `grm_train.log_checkpoint_artifact: false` for large models whose copy in the artifact store is not wanted.
    """

    def __init__(self) -> None:
        self._catalog: Any = None
        self._enabled = True

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._enabled = bool(context.params.get("grm_train", {}).get("log_checkpoint_artifact", True))

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name != "reward_model" or not self._enabled or self._catalog is None:
            return
        import mlflow

        path = getattr(self._catalog.get(dataset_name), "last_saved_path", None)
        if mlflow.active_run() is not None and path:
            logger.info("Logging %s to MLflow as artifact 'reward_model'", path)
            mlflow.log_artifacts(path, artifact_path="reward_model")


class MlflowExportHooks:
    """Logs the exported reward model (`exported_reward_model`, rewardlab.export) to the active MLflow run with
    MLflow's transformers flavor and registers it in the Model Registry as `grm_train.registered_model_name`
    (default `rewardlab-<variant>`), so `mlflow.transformers.load_model("models:/<name>/<version>")` loads it.

    A directory that holds only the README of a model not exported (MLP head, ensemble, `grm_train.export: false`)
    is not logged. A failure to log or register is a warning: the exported directory is saved either way.
    """

    DATASET = "exported_reward_model"

    def __init__(self) -> None:
        self._catalog: Any = None
        self._registered_model_name: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._registered_model_name = context.params.get("grm_train", {}).get("registered_model_name")

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        if dataset_name != self.DATASET or self._catalog is None:
            return
        import mlflow

        from rewardlab.export import default_registered_name, is_exported_model, log_exported_model

        path = getattr(self._catalog.get(dataset_name), "last_saved_path", None)
        if mlflow.active_run() is None or not path:
            return
        if not is_exported_model(path):
            logger.info("No exported reward model to log to MLflow (%s says why)", Path(path) / "README.md")
            return
        name = self._registered_model_name or default_registered_name(path)
        started = time.perf_counter()
        try:
            info = log_exported_model(path, registered_model_name=name)
        except Exception:  # the run's results stand without their registry entry
            logger.warning("Could not log the exported reward model %s to MLflow", path, exc_info=True)
            return
        logger.info("Logged the exported reward model to MLflow as %s and registered it as models:/%s/%s (%.1fs)",
                    info.model_uri, name, info.registered_model_version, time.perf_counter() - started)


class MlflowRunOwnerHooks:
    """Tags each run's MLflow run with the process that owns it, and marks KILLED the RUNNING runs of this host
    whose process ended without ending them (SIGKILL, the OOM killer): see `rewardlab.run_registry`.

    A run stopped by SIGTERM or Ctrl-C ends FAILED (`SignalHooks`) and is not RUNNING, so it is never marked.
    """

    def __init__(self) -> None:
        self._tracking_uri: str | None = None
        self._owns_run = False

    # After kedro-mlflow's own after_context_created, which reads mlflow.yml and sets the tracking URI.
    @hook_impl(trylast=True)
    def after_context_created(self, context: Any) -> None:
        import mlflow

        config = getattr(context, "mlflow", None)  # absent when the kedro-mlflow plugin is off
        self._tracking_uri = config.server.mlflow_tracking_uri if config is not None else None
        # A run active before the session, or named by MLFLOW_RUN_ID, was opened by whoever started this process
        # (an orchestrator, a notebook), which may go on using it: that process owns it, not this one.
        self._owns_run = mlflow.active_run() is None and not os.environ.get("MLFLOW_RUN_ID")

    # After kedro-mlflow's before_pipeline_run, which opens the run. Listed before SignalHooks in HOOKS: among
    # trylast hooks the one registered last runs last, and SignalHooks must be the last of all.
    @hook_impl(trylast=True)
    def before_pipeline_run(self) -> None:
        if not self._tracking_uri:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        from rewardlab import run_registry

        try:
            client = MlflowClient(tracking_uri=self._tracking_uri)
            active = mlflow.active_run()
            if active is not None and self._owns_run:
                run_registry.tag_run(client, active.info.run_id)
            run_registry.mark_dead_runs_killed(client)
        except Exception:  # the bookkeeping of earlier runs never stops this one
            logger.warning("Could not check the MLflow store for runs of killed processes", exc_info=True)


class MlflowRunDescriptionHooks:
    """How a run shows in the MLflow UI (`rewardlab.pipelines.tracking`): its experiment tagged as model training
    (mlflow.yml's `create_experiment_kwargs.tags`, also set on an experiment made before them), the run named by
    its label instead of its pipeline's name, and the pair sets it trains and is evaluated on logged as its
    dataset inputs. Bookkeeping that fails is a warning: it never stops a run."""

    def __init__(self) -> None:
        self._config: Any = None  # kedro-mlflow's mlflow.yml, as `context.mlflow`
        self._configured_name: str | None = None
        self._catalog: Any = None
        self._logged: set[tuple[str, str]] = set()

    # After kedro-mlflow's after_context_created, which reads mlflow.yml and makes the experiment.
    @hook_impl(trylast=True)
    def after_context_created(self, context: Any) -> None:
        from rewardlab.pipelines import tracking

        self._config = getattr(context, "mlflow", None)  # absent when the kedro-mlflow plugin is off
        if self._config is None:
            return
        self._configured_name = self._config.tracking.run.name
        experiment = self._config.tracking.experiment
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self._config.server.mlflow_tracking_uri)
            tracking.add_missing_experiment_tags(client, experiment.name, experiment.create_experiment_kwargs.tags)
        except Exception:
            logger.warning("Could not tag the MLflow experiment %r", experiment.name, exc_info=True)

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    # Before kedro-mlflow's before_pipeline_run, which opens the run named by mlflow.yml's `tracking.run.name`
    # (null: the pipeline's name): the run is made with its label. Listed before RunGuardHooks in HOOKS: of the
    # `tryfirst` hooks the last registered runs first, so the parameters are checked before they name a run.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        from rewardlab.pipelines import tracking

        self._logged = set()
        if self._config is None or self._configured_name:  # a name in mlflow.yml names every run
            return
        try:
            name = tracking.run_name(catalog.load("parameters"), parameter_blocks(pipeline))
        except Exception:
            logger.warning("Could not name the MLflow run by its label", exc_info=True)
            name = None
        self._config.tracking.run.name = name

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        from rewardlab.pipelines import tracking

        context = tracking.dataset_context(dataset_name)
        if context is None:
            return
        try:
            if dataset_name == tracking.EXTRA_EVAL_SETS:
                sets = [(name, frame, frame.attrs.get("info", {}).get("location")) for name, frame in data.items()]
            else:
                dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
                sets = [(dataset_name, data, tracking.dataset_location(dataset) if dataset is not None else None)]
            for name, frame, location in sets:
                if (name, context) not in self._logged:
                    tracking.log_pairs_input(frame, name, context, location)
                    self._logged.add((name, context))
        except Exception:
            logger.warning("Could not log %r as an MLflow dataset input", dataset_name, exc_info=True)


class RunSummaryHooks:
    """Prints, once a run succeeded, its main metrics as MLflow recorded them, the reports it wrote and how to open
    the MLflow UI on it (`rewardlab.run_summary`)."""

    def __init__(self) -> None:
        self._context: Any = None
        self._catalog: Any = None
        self._run_id: str | None = None
        self._saved: list[str] = []

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    # After kedro-mlflow's before_pipeline_run, which opens the run; listed before SignalHooks in HOOKS.
    @hook_impl(trylast=True)
    def before_pipeline_run(self) -> None:
        import mlflow

        active = mlflow.active_run()
        self._run_id = active.info.run_id if active is not None else None
        self._saved = []

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        self._saved.append(dataset_name)

    # After kedro-mlflow's after_pipeline_run has ended the run: the summary is the last thing the run prints.
    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        try:
            text = self._summary()
        except Exception:  # a run that succeeded does not fail over its summary
            logger.warning("Could not summarise the run", exc_info=True)
            return
        print(f"\n{text}", flush=True)

    def _summary(self) -> str:
        import mlflow

        from rewardlab import run_summary

        project_path = Path(self._context.project_path) if self._context is not None else Path.cwd()
        reports = []
        for name in dict.fromkeys(self._saved):
            path = run_summary.dataset_path(self._catalog.get(name)) if self._catalog is not None else None
            if path is not None and run_summary.is_report(path):
                reports.append(run_summary.relative_to_project(path, project_path))
        if self._run_id is None:
            return run_summary.format_run_summary(run_id=None, metrics={}, reports=reports)
        tracking_uri = mlflow.get_tracking_uri()
        metrics, bon_gold, experiment_id = run_summary.read_run(tracking_uri, self._run_id)
        rl_gold = run_summary.metric_history(tracking_uri, self._run_id, run_summary.RL_GOLD) \
            if run_summary.RL_GOLD in metrics else []
        ui = getattr(getattr(self._context, "mlflow", None), "ui", None)  # kedro-mlflow's mlflow.yml `ui`
        host, port = getattr(ui, "host", None) or "127.0.0.1", getattr(ui, "port", None) or 5000
        return run_summary.format_run_summary(
            run_id=self._run_id, metrics=metrics, bon_gold=bon_gold, rl_gold=rl_gold, reports=reports,
            mlflow_ui=run_summary.mlflow_ui_command(tracking_uri, project_path, host, port),
            run_url=f"http://{host}:{port}/#/experiments/{experiment_id}/runs/{self._run_id}",
            # MLflow 3.17 opens an experiment on its GenAI overview unless the address asks for model training.
            runs_url=f"http://{host}:{port}/#/experiments/{experiment_id}?workflowType=machine_learning",
        )
