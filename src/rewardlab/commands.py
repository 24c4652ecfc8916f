"""`rewardlab <command>` (also `python -m rewardlab <command>`): working with trained reward models outside a
Kedro run. Without a command, `rewardlab` is `kedro run` (see `rewardlab.__main__`).

Each command lives beside the code it drives and is added here.
"""

from __future__ import annotations

import click

COMMANDS: dict[str, str] = {
    # name: "module:attribute" of a click command, imported only when that command runs
    "export": "rewardlab.export:export_command",
    "score": "rewardlab.score_command:score",
    "serve": "rewardlab.serving:serve",
    "train-node": "rewardlab.training.launch:train_node_command",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it is called or listed, so `rewardlab --help` stays quick."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        import importlib

        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup, name="rewardlab")
def commands() -> None:
    """Work with trained reward models: export, score, serve; join a training across machines (train-node)."""
