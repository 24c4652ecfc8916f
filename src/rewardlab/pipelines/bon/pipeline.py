from kedro.pipeline import Pipeline, node

from rewardlab.pipelines.bon.nodes import best_of_n_curves, compare_bon, sample_policy, score_samples


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            # `bon_sample_cache` and `bon_sample_cache_additions` are one folder: read here, added to here.
            node(
                sample_policy,
                inputs=["base_model", "bon_prompts", "params:bon", "bon_sample_cache"],
                outputs=["bon_samples", "bon_sample_cache_additions", "bon_sampling_metrics"],
                name="sample_policy",
            ),
            node(score_samples, inputs=["reward_model", "bon_samples", "params:bon"], outputs="bon_scores",
                 name="score_samples"),
            node(
                best_of_n_curves,
                inputs=["bon_scores", "parameters"],
                outputs=["bon_curves", "bon_mlflow_metrics", "bon_curves_by_run"],
                name="best_of_n_curves",
            ),
            node(compare_bon, inputs="bon_curves_by_run", outputs=["bon_plot", "bon_peaks"], name="compare_bon"),
        ]
    )
