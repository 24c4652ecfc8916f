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


def model_loading_options(command):
    """The options of a command that loads a model by `load_scorer`: --device, --dtype and --tracking-uri."""
    for option in reversed([
        click.option("--device", default="auto", show_default=True,
                     help="auto (the GPU when there is one), cpu, cuda..."),
        click.option("--dtype", default=None,
                     help="Weights as loaded: float32, bfloat16, float16, auto (default: as saved)."),
        click.option("--tracking-uri", default=None,
                     help="MLflow store for MLflow URIs (default: MLFLOW_TRACKING_URI, else ./mlflow.db)."),
    ]):
        command = option(command)
    return command


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
