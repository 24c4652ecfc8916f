"""Project pipelines: world -> ingest -> grm_train -> ood_eval -> bon, the default run; and rl, which optimizes a
policy against the trained reward model, run on its own (`kedro run --pipelines rl`)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from rewardlab.pipelines import bon, grm_train, ingest, ood_eval, rl, world


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "world": world.create_pipeline(),
        "ingest": ingest.create_pipeline(),
        "grm_train": grm_train.create_pipeline(),
        "ood_eval": ood_eval.create_pipeline(),
        "bon": bon.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    # Minutes of policy optimization on top of the default run's: not part of it.
    pipelines["rl"] = rl.create_pipeline()
    return pipelines
