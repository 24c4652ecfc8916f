"""One training process for the kill-and-resume tests: `python resume_child.py SPEC.json` (one process), or
one process of a launched run (`torchrun ... resume_child.py SPEC.json`, sharded training).

With `kill_at_step` in the spec, process 0 SIGKILLs itself from the metrics callback at that step, the way an
out-of-memory kill or a pre-empted machine would end it: no cleanup, no exception handlers. In a launched run
the other processes then wait in their next collective until torchrun stops them. Process 0 writes the results.
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
    torch.set_num_threads(1)  # one thread per tiny model, as the in-process tests
    spec = json.loads(Path(spec_file).read_text())
    kill_at = spec.get("kill_at_step")

    def log_metrics(metrics: dict, step: int) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    model, history = train_reward_model(spec["base"], None, pd.read_pickle(spec["pairs"]), None,
                                        TrainConfig.from_dict(spec["config"]), spec["state_dir"], log_metrics)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, spec["weights_out"])
        Path(spec["history_out"]).write_text(json.dumps(history))


if __name__ == "__main__":
    main(sys.argv[1])
