"""One policy-optimization process for the kill-and-resume test: `python rl_child.py SPEC.json`.

With `kill_at_step` in the spec, the process SIGKILLs itself from its metrics callback at that step, the way an
out-of-memory kill or a pre-empted machine would end it: no cleanup, no exception handlers. Otherwise it writes
the trained policy's weights and the curves.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from rewardlab.rl.config import RlConfig
from rewardlab.rl.rewards import load_proxy_reward
from rewardlab.rl.train import train_policy


def main(spec_file: str) -> None:
    torch.set_num_threads(1)  # one thread per tiny model, as the in-process tests
    spec = json.loads(Path(spec_file).read_text())
    kill_at = spec.get("kill_at_step")
    logged = []

    def log_metrics(metrics: dict, step: int) -> None:
        logged.append(step)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = RlConfig.from_dict(spec["config"])
    proxy = load_proxy_reward(spec["proxy"], cfg, device="cpu")
    model, _, curves = train_policy(spec["policy"], proxy, spec["train_prompts"], spec["eval_prompts"], cfg,
                                    spec["state_dir"], log_metrics=log_metrics)
    # clone: the world LM ties its input and output embeddings, which safetensors refuses to write twice
    save_file({name: tensor.detach().clone() for name, tensor in model.state_dict().items()}, spec["weights_out"])
    Path(spec["curves_out"]).write_text(json.dumps({"curves": curves.to_dict(orient="list"), "logged": logged}))


if __name__ == "__main__":
    main(sys.argv[1])
