"""Policy optimization against a proxy reward model, watched by a gold reward: reward over-optimization by RL.

- `rewardlab.rl.config.RlConfig`: every setting and its default;
- `rewardlab.rl.rewards`: the proxy reward model as a TRL reward function (`ProxyReward`, `load_proxy_reward`);
- `rewardlab.rl.kl`: per-token log-probabilities of completions and their sampled KL to a reference;
- `rewardlab.rl.train.train_policy`: RLOO or GRPO (TRL) with per-step proxy, gold, KL, length and marker curves,
  atomic checkpoints and resumption.

Submodules are imported on use: importing this package loads neither torch nor TRL.
"""
