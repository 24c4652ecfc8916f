"""What `kedro run` shows on the console: no warnings the user cannot act on, and one line per log record when
stdout is not a terminal (a pipe, a file, CI), where Kedro's rich handler would wrap every record at 80 columns.

`setup` runs as the `kedro` CLI starts (the `kedro.init` entry point in pyproject.toml: before Kedro loads its
plugins, whose imports raise one of these warnings) and as `python -m rewardlab` starts. settings.py installs the
warning filters again for sessions started from Python (notebooks, `KedroSession.create`).
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, TextIO


@dataclass(frozen=True)
class KnownWarning:
    """A third-party warning about third-party code, which the user cannot act on."""

    message: str  # a regex matched at the start of the text, ignoring case, as `warnings.filterwarnings` does
    category: type[Warning]
    # The module the warning is attributed to: the same warning raised by the project's own code still shows.
    module: str

    def matches(self, message: Warning | str, category: type[Warning], filename: str) -> bool:
        parts = PurePath(filename).with_suffix("").parts
        names = tuple(self.module.split("."))
        return (issubclass(category, self.category) and parts[-len(names):] == names
                and re.match(self.message, str(message), flags=re.IGNORECASE) is not None)


KNOWN_WARNINGS = (
    # omegaconf 2.4 deprecates register_new_resolver(); Kedro's OmegaConfigLoader and kedro-mlflow still call it.
    KnownWarning(r"register_new_resolver\(\) is deprecated", UserWarning, "kedro.config.omegaconf_config"),
    KnownWarning(r"register_new_resolver\(\) is deprecated", UserWarning, "kedro_mlflow.framework.hooks.mlflow_hook"),
    # MLflow asks every PythonModel subclass for type hints on `predict`; kedro-mlflow's KedroPipelineModel,
    # imported with kedro-mlflow's CLI commands, has none. MLflow colours the text, hence the escape code.
    KnownWarning(r"(\x1b\[[0-9;]*m)?Add type hints to the `predict` method", UserWarning,
                 "mlflow.pyfunc.utils.data_validation"),
)

RICH_HANDLER_CLASSES = frozenset({"kedro.logging.RichHandler", "rich.logging.RichHandler"})
PLAIN_HANDLER = "plain"
# Used when the logging configuration defines no `plain` handler of its own (Kedro's default configuration).
DEFAULT_PLAIN_HANDLER = {"class": "logging.StreamHandler", "formatter": PLAIN_HANDLER, "stream": "ext://sys.stdout"}
DEFAULT_PLAIN_FORMATTER = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
                           "datefmt": "%Y-%m-%d %H:%M:%S"}


def ignore_known_warnings() -> None:
    """Leaves out exactly the KNOWN_WARNINGS; any caller may install this again.

    Two layers: a filter for each, and a guard around `warnings.showwarning` for the warnings raised where the
    library puts its own filters first (mlflow shows its UserWarnings "once" inside `warnings.catch_warnings`).
    """
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category,
                                module=re.escape(known.module) + r"\Z")
    if not getattr(warnings.showwarning, "drops_known_warnings", False):
        warnings.showwarning = _dropping_known_warnings(warnings.showwarning)


def _dropping_known_warnings(showwarning: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(showwarning)
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if not any(known.matches(message, category, filename) for known in KNOWN_WARNINGS):
            showwarning(message, category, filename, lineno, file, line)

    show.drops_known_warnings = True  # type: ignore[attr-defined]
    return show


def plain_logging_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with every rich handler replaced by its `plain` handler (a default one if it defines none).

    Returns `config` itself when it has no rich handler.
    """
    rich = {name for name, handler in (config.get("handlers") or {}).items()
            if isinstance(handler, dict) and handler.get("class") in RICH_HANDLER_CLASSES}
    if not rich:
        return config
    plain = copy.deepcopy(config)
    handlers = plain["handlers"]
    for name in rich:
        del handlers[name]  # not even created: a RichHandler installs rich tracebacks as it is made
    if PLAIN_HANDLER not in handlers:
        handlers[PLAIN_HANDLER] = dict(DEFAULT_PLAIN_HANDLER)
        plain.setdefault("formatters", {}).setdefault(PLAIN_HANDLER, dict(DEFAULT_PLAIN_FORMATTER))
    for section in [plain.get("root"), *(plain.get("loggers") or {}).values()]:
        if isinstance(section, dict) and section.get("handlers"):
            names = [PLAIN_HANDLER if name in rich else name for name in section["handlers"]]
            section["handlers"] = list(dict.fromkeys(names))
    return plain


def is_terminal(stream: TextIO | None) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def use_plain_logging_when_piped(stream: TextIO | None = None) -> bool:
    """Switches Kedro's logging to the plain handler when `stream` (stdout) is not a terminal; True if it did.

    Goes through Kedro's own `configure_logging`, so the configuration Kedro applies again later (the project's
    logger, ParallelRunner's workers) is the plain one too.
    """
    if is_terminal(sys.stdout if stream is None else stream):
        return False
    from kedro.framework.project import LOGGING, configure_logging

    plain = plain_logging_config(LOGGING.data)
    if plain is LOGGING.data:
        return False
    configure_logging(plain)
    # The rich handler made first also boxed tracebacks, wrapped at 80 columns like its records.
    if getattr(sys.excepthook, "__module__", "").startswith("rich."):
        sys.excepthook = sys.__excepthook__
    return True


def setup() -> None:
    """Everything above, for a process that is about to run Kedro from its command line."""
    ignore_known_warnings()
    try:
        use_plain_logging_when_piped()
    except Exception:  # how records look never stops a command (this runs before every `kedro` command)
        logging.getLogger(__name__).warning("Kept the logging configuration as it was", exc_info=True)
