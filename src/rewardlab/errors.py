"""Failures a user can fix (bad data, a bad parameter, inputs never made): the message says what and where.

`kedro run` ends such a failure with its message and a non-zero exit instead of a traceback; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class ExpectedError(Exception):
    """A failure whose message is the whole story for the user (no traceback needed)."""


class ParameterError(ExpectedError, ValueError):
    """One or more parameters are invalid; the message names each by its full path (`grm_train.seed`)."""


class MissingInputsError(ExpectedError, RuntimeError):
    """A run needs datasets that were never made; the message names the command that makes each."""
