"""`kedro run` as Kedro's own command, every option included, except for how a failure the user can fix ends.

A `rewardlab.errors.ExpectedError` (bad data, a bad parameter, inputs never made), raised by a hook or inside a
node (Kedro's runners raise a node's exception as it is), ends with `Error: <message>` and exit code 1: its
message is the whole story. Any other exception is a bug and keeps its traceback.

rewardlab.cli adds this command to the project's commands, which Kedro puts before its own: `kedro run` and
`python -m rewardlab` (Kedro's `find_run_command` takes `rewardlab.cli.run`) both run it.
"""

from __future__ import annotations

from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from rewardlab.errors import ExpectedError


def _run(**options: Any) -> Any:
    try:
        return kedro_run.callback(**options)
    except ExpectedError as error:
        raise click.ClickException(str(error)) from None


run = click.Command(
    name="run",
    callback=_run,
    params=list(kedro_run.params),
    help=kedro_run.help,
    short_help=kedro_run.short_help,
    context_settings=dict(kedro_run.context_settings),
)
