from kedro.pipeline import Pipeline, node

from rewardlab.pipelines.ood_eval.nodes import compare_runs, load_extra_sets, score_eval_sets, summarize_eval


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(load_extra_sets, inputs="params:ood_eval", outputs="extra_eval_sets", name="load_extra_eval_sets"),
            node(
                score_eval_sets,
                inputs=[
                    "reward_model",
                    "world_test_pairs",
                    "world_ood_prompt_pairs",
                    "world_ood_response_pairs",
                    "world_ood_both_pairs",
                    "world_eval_responses",
                    "extra_eval_sets",
                    "params:ood_eval",
                ],
                outputs=["ood_scores", "ood_response_scores"],
                name="score_eval_sets",
            ),
            node(
                summarize_eval,
                inputs=["ood_scores", "ood_response_scores", "parameters"],
                outputs=["ood_metrics", "ood_mlflow_metrics", "ood_results_by_run"],
                name="summarize_eval",
            ),
            node(
                compare_runs,
                inputs="ood_results_by_run",
                outputs=["comparison_table", "comparison_plot"],
                name="compare_runs",
            ),
        ]
    )
