"""Quiet TRL, transformers and accelerate while a policy is loaded and trained: they announce defaults, load
reports and progress bars for every model and trainer. Errors still show."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

_LIBRARIES = ("trl", "transformers", "accelerate", "peft")


@contextmanager
def quiet_libraries():
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    loggers = [logging.getLogger(name) for name in _LIBRARIES]
    levels = [logger.level for logger in loggers]
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(trl|transformers|accelerate|peft)(\.|$)")
            # DataLoader warns that pinned memory needs an accelerator when there is none.
            warnings.filterwarnings("ignore", message=".*pin_memory.*")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
