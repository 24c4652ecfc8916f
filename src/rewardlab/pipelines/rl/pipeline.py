from kedro.pipeline import Pipeline, node

from rewardlab.pipelines.rl.nodes import compare_rl, optimize_policy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            # Trains on the prompts of the reward model's training pairs, evaluates on the held-out `bon_prompts`.
            node(
                optimize_policy,
                inputs=["base_model", "reward_model", "train_pairs", "bon_prompts", "params:rl", "parameters"],
                outputs=["rl_policy", "rl_curves", "rl_mlflow_metrics", "rl_curves_by_run"],
                name="optimize_policy",
            ),
            node(compare_rl, inputs="rl_curves_by_run", outputs=["rl_plot", "rl_peaks"], name="compare_rl"),
        ]
    )
