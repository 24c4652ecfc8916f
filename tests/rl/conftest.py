"""One tiny world per session for the policy-optimization tests: its pre-trained policy, a reward model on the
policy's backbone (untrained head: any reward will do as the proxy), the reward model exported, and prompts."""

from __future__ import annotations

import pytest
import torch

from rewardlab.world import WorldConfig, build_world

# Small enough to build (LM pretraining included) in a couple of seconds.
RL_TINY_WORLD = {
    "seed": 0, "responses_per_prompt": 3, "pairs_per_prompt": 2, "n_train_pairs": 200, "n_test_pairs": 40,
    "n_eval_prompts": 4, "vocab_size": 400, "max_length": 128, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
    "intermediate_size": 64, "pretrain_steps": 20, "warmup_steps": 2, "batch_size": 8, "block_size": 64,
    "max_new_tokens": 24, "progress": False,
}
HEAD_BIAS = 0.5


@pytest.fixture(scope="session")
def rl_world(tmp_path_factory) -> dict:
    from rewardlab.export import export_reward_model
    from rewardlab.modeling import RewardModel

    root = tmp_path_factory.mktemp("rl-world")
    world = build_world(WorldConfig.from_dict(RL_TINY_WORLD))
    tokenizer = world["tokenizer"]
    world["lm"].save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    torch.manual_seed(0)
    reward_model = RewardModel.from_base(root / "policy").eval()
    with torch.no_grad():
        reward_model.reward_head[1].bias.fill_(HEAD_BIAS)
    reward_model.save_pretrained(root / "reward_model", tokenizer=tokenizer)
    export_reward_model(root / "reward_model", root / "exported")
    return {
        "root": root,
        "policy": root / "policy",
        "reward_model": root / "reward_model",
        "exported": root / "exported",
        "tokenizer": tokenizer,
        "train_prompts": world["splits"]["train"]["prompt"].drop_duplicates().tolist(),
        "eval_prompts": world["eval_prompts"]["prompt"].tolist(),
        "corpus": world["corpus"],
    }


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and multi-threaded kernels slow down badly when another process
    holds one of the two cores; restored afterwards for the rest of the suite."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
