"""What `kedro run` shows on the console: known third-party warnings left out, plain log lines in pipes."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import yaml

from rewardlab.console import KNOWN_WARNINGS, ignore_known_warnings, is_terminal, plain_logging_config
from rewardlab.run_command import run

KEDRO_RICH_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"rich": {"class": "kedro.logging.RichHandler", "rich_tracebacks": True}},
    "loggers": {"kedro": {"level": "INFO"}},
    "root": {"handlers": ["rich"]},
}


def _shown(message: str, module: str, category: type[Warning] = UserWarning) -> list[str]:
    """What `warnings.warn(message)` shows when raised from `module` (as its stack attributes it)."""
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        ignore_known_warnings()
        warnings.warn_explicit(message, category, f"/site-packages/{module.replace('.', '/')}.py", 1,
                               module=module)
        # A library that puts its own filter first (mlflow's "once" for UserWarnings) still gets nothing shown.
        warnings.simplefilter("always")
        warnings.warn_explicit(message, category, f"/site-packages/{module.replace('.', '/')}.py", 2,
                               module=module)
    return shown


def test_known_warnings_are_left_out_only_where_they_are_known():
    deprecated = "register_new_resolver() is deprecated and will be removed in a future release."
    assert _shown(deprecated, "kedro.config.omegaconf_config") == []
    assert _shown(deprecated, "kedro_mlflow.framework.hooks.mlflow_hook") == []
    assert _shown("\x1b[33mAdd type hints to the `predict` method to enable data validation",
                  "mlflow.pyfunc.utils.data_validation") == []
    # The project's own call, another warning of the same module, another category: all still shown.
    assert _shown(deprecated, "rewardlab.config_loader") == [deprecated] * 2
    assert _shown("something else", "kedro.config.omegaconf_config") == ["something else"] * 2
    assert len(_shown(deprecated, "kedro.config.omegaconf_config", DeprecationWarning)) == 2


def test_installing_the_filters_again_adds_nothing():
    with warnings.catch_warnings():
        ignore_known_warnings()
        filters, showwarning = list(warnings.filters), warnings.showwarning
        ignore_known_warnings()
        assert warnings.filters == filters and warnings.showwarning is showwarning
    assert len(KNOWN_WARNINGS) == 3


def test_rich_handlers_become_the_plain_handler():
    plain = plain_logging_config(KEDRO_RICH_CONFIG)
    assert plain["root"]["handlers"] == ["plain"]
    assert plain["handlers"] == {"plain": {"class": "logging.StreamHandler", "formatter": "plain",
                                           "stream": "ext://sys.stdout"}}
    assert "%(message)s" in plain["formatters"]["plain"]["format"]
    assert KEDRO_RICH_CONFIG["root"]["handlers"] == ["rich"]  # the original is left as it was
    assert plain_logging_config(plain) is plain


def test_the_projects_logging_configuration_has_its_own_plain_handler():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "logging.yml").read_text())
    plain = plain_logging_config(config)
    assert plain["root"]["handlers"] == ["plain"]
    assert plain["handlers"]["plain"] == config["handlers"]["plain"]
    assert plain["formatters"] == config["formatters"]
    assert set(plain["loggers"]) == set(config["loggers"])


def test_only_a_tty_is_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert is_terminal(Tty())
    assert not is_terminal(io.StringIO())
    assert not is_terminal(None)
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)


def test_the_projects_run_command_keeps_every_option_of_kedros():
    from kedro.framework.cli.project import run as kedro_run

    from rewardlab import cli

    assert [p.name for p in run.params] == [p.name for p in kedro_run.params]
    assert cli.cli.get_command(None, "run") is run
    assert cli.run is run  # what `python -m rewardlab` (Kedro's find_run_command) takes
