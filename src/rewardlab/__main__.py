"""``python -m rewardlab`` and the ``rewardlab`` command: ``kedro run`` without a command (every option of
``kedro run`` works), else one of the commands of `rewardlab.commands` (``rewardlab --help`` lists them)."""

import os
import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

from rewardlab.console import setup as setup_console


def main(*args, **kwargs) -> Any:
    from rewardlab.commands import COMMANDS, commands

    argv = list(args[0]) if args else sys.argv[1:]
    if argv and (argv[0] in COMMANDS or argv[0] in ("--help", "-h") and COMMANDS):
        return commands.main(args=argv, prog_name="rewardlab", standalone_mode=not hasattr(sys, "ps1"))
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    setup_console()  # what the `kedro` CLI does through the project's `kedro.init` entry point
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
