"""Project hooks: stop a run at once, with the command to fix it, when its inputs were never made; end a run
stopped by SIGTERM or Ctrl-C as failed; log saved reward models to MLflow."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Which pipeline makes each dataset that other pipelines read: the order a user runs them in.
_PIPELINE_ORDER = ("world", "ingest", "grm_train", "ood_eval", "bon")


def missing_inputs_message(pipeline: Pipeline, catalog: Any, registry: dict[str, Pipeline]) -> str | None:
    """A message naming every persisted input that does not exist yet and the pipeline that makes it."""
    lines = []
    for name in sorted(pipeline.inputs()):
        if name.startswith("params:") or name == "parameters":
            continue
        try:
            exists = catalog.exists(name)
        except Exception:  # an unregistered or unreadable dataset counts as missing
            exists = False
        if exists:
            continue
        maker = next((p for p in _PIPELINE_ORDER if p in registry and name in registry[p].outputs()), None)
        hint = f"`kedro run --pipeline {maker}`" if maker else "the catalog entry"
        lines.append(f"  - '{name}' does not exist yet: make it with {hint}")
    if not lines:
        return None
    return (
        "This run needs inputs that were never made:\n"
        + "\n".join(lines)
        + "\nOr run the whole DAG once with `kedro run` (the default pipeline)."
    )


class RunGuardHooks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        from kedro.framework.project import pipelines as registry

        message = missing_inputs_message(pipeline, catalog, dict(registry))
        if message:
            raise RuntimeError(message)


class RunTerminated(Exception):
    """The run received SIGTERM or SIGINT. An `Exception`, unlike `KeyboardInterrupt`, so Kedro's error path runs."""


def _raise_run_terminated(signum: int, frame: Any) -> None:
    raise RunTerminated(f"received {signal.Signals(signum).name}")


class SignalHooks:
    """Turns SIGTERM (`kill`, `timeout`, a scheduler's preemption) and Ctrl-C during `kedro run` into a failed node.

    By default SIGTERM ends the process on the spot, leaving the MLflow run RUNNING for good, and Ctrl-C raises a
    `KeyboardInterrupt`, which skips `on_pipeline_error`, so mlflow's exit handler marks the run FINISHED. Raised
    as `RunTerminated` instead, the signal fails the running node: kedro-mlflow's `on_pipeline_error` ends the run
    FAILED, `launch_training` stops its `accelerate launch` processes, and what was saved before stays as it was.
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
