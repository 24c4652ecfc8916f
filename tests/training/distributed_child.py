"""One process of a launched training run, for the kill-and-resume test of sharded training:
`torchrun ... distributed_child.py SPEC.json`.

With `kill_at_step` in the spec, process 0 SIGKILLs itself from the metrics callback at that step, the way an
out-of-memory kill would end it; the other process then waits in its next collective until torchrun stops it.
"""

import json
import logging
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from rewardlab.training import TrainConfig, train_reward_model


def main(spec_file: str) -> None:
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    spec = json.loads(Path(spec_file).read_text())
    kill_at = spec.get("kill_at_step")

    def log_metrics(metrics: dict, step: int) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    model, history = train_reward_model(spec["base"], None, pd.read_pickle(spec["pairs"]), None,
                                        TrainConfig.from_dict(spec["config"]), spec["state_dir"], log_metrics)
    if int(os.environ["RANK"]) == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, spec["weights_out"])
        Path(spec["history_out"]).write_text(json.dumps(history))


if __name__ == "__main__":
    main(sys.argv[1])
