"""Run the project as ``python -m rewardlab`` (same as ``kedro run``)."""

import os
import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

from rewardlab.console import setup as setup_console


def main(*args, **kwargs) -> Any:
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    setup_console()  # what the `kedro` CLI does through the project's `kedro.init` entry point
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
