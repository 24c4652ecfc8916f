from kedro.pipeline import Pipeline, node

from rewardlab.pipelines.ingest.nodes import ingest_pairs


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                ingest_pairs,
                inputs=["raw_train_pairs", "params:ingest", "params:grm_train"],
                outputs=["train_pairs", "validation_pairs", "ingest_report", "ingest_metrics"],
                name="ingest_pairs",
            )
        ]
    )
