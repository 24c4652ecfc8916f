"""SignalHooks: SIGTERM and SIGINT raise RunTerminated while a pipeline runs; the previous handlers come back after."""

from __future__ import annotations

import signal
import threading

import pytest

from rewardlab.hooks import RunTerminated, SignalHooks, _raise_run_terminated


def _previous(signum, frame):  # stands for whatever handler the process had before the run
    pass


@pytest.fixture
def handlers():
    """SIGTERM and SIGINT set to `_previous` for the test, the real handlers restored afterwards."""
    saved = {s: signal.getsignal(s) for s in SignalHooks.SIGNALS}
    for signum in SignalHooks.SIGNALS:
        signal.signal(signum, _previous)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("end", ["after_pipeline_run", "on_pipeline_error"])
@pytest.mark.parametrize("signum", SignalHooks.SIGNALS)
def test_signal_raises_during_the_run_and_previous_handler_is_restored(handlers, signum, end):
    hooks = SignalHooks()
    hooks.before_pipeline_run()
    assert signal.getsignal(signum) is _raise_run_terminated
    with pytest.raises(RunTerminated, match=signal.Signals(signum).name):
        signal.raise_signal(signum)
    getattr(hooks, end)()
    for s in SignalHooks.SIGNALS:
        assert signal.getsignal(s) is _previous


def test_run_terminated_takes_kedros_error_path():
    # The session calls on_pipeline_error for an Exception only; a KeyboardInterrupt would skip it.
    assert issubclass(RunTerminated, Exception)


def test_an_ignored_signal_stays_ignored(handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hooks = SignalHooks()
    hooks.before_pipeline_run()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is _raise_run_terminated
    hooks.after_pipeline_run()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is _previous


def test_outside_the_main_thread_nothing_changes(handlers):
    hooks = SignalHooks()
    errors = []

    def run():
        try:
            hooks.before_pipeline_run()
            hooks.after_pipeline_run()
        except Exception as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []
    assert all(signal.getsignal(s) is _previous for s in SignalHooks.SIGNALS)


def test_registered_in_the_project_settings():
    from rewardlab import settings

    assert any(isinstance(hook, SignalHooks) for hook in settings.HOOKS)
