from kedro.pipeline import Pipeline, node

from rewardlab.pipelines.grm_train.nodes import export_trained_model, inject_noise, train_reward_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                inject_noise,
                inputs=["train_pairs", "params:grm_train"],
                outputs=["noisy_train_pairs", "noise_record", "noise_metrics"],
                name="inject_label_noise",
            ),
            node(
                train_reward_models,
                inputs=["base_model", "noisy_train_pairs", "validation_pairs", "parameters", "slurm_settings"],
                outputs=["reward_model", "training_history"],
                name="train_reward_model",
            ),
            node(
                export_trained_model,
                inputs=["reward_model", "training_history", "noisy_train_pairs", "validation_pairs", "parameters"],
                outputs="exported_reward_model",
                name="export_reward_model",
            ),
        ]
    )
