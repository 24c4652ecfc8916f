"""Training across process boundaries: killed and resumed, and on two CPU processes (gloo)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import CHILD, assert_same_weights, fast_config, load_weights, write_child_spec

from rewardlab.training import BatchPlan, TrainingDivergedError, train_reward_model
from rewardlab.training.launch import run_training
from rewardlab.training.checkpoint import find_latest_checkpoint, list_checkpoints

# Measured: per-step loss components of 1 and 2 processes differ by at most ~1.2e-7 (float32 summation
# order in the all-reduce); weights by ~2e-8.
MULTIPROCESS_ATOL = 1e-5
# Pairwise losses give the reward head's bias an exactly-zero gradient; AdamW normalizes the float
# rounding left in it into steps of about +-lr, whose sign differs between process counts. The bias only
# shifts every reward equally, so the comparison uses shift-invariant statistics and leaves it out.
SHIFT_ONLY = {"reward_head.1.bias"}


def _run_child(tmp_path: Path, name: str, base: Path, pairs_file: Path, config: dict, state_dir: Path,
               kill_at_step: int | None = None) -> subprocess.CompletedProcess:
    spec_file = write_child_spec(tmp_path, name, base, pairs_file, config, state_dir, kill_at_step)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the in-process tests: one thread per tiny model
    return subprocess.run([sys.executable, str(CHILD), str(spec_file)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
def test_killed_run_resumes_bit_identically(tiny_base, pairs, tmp_path):
    base, _ = tiny_base
    pairs_file = tmp_path / "pairs.pkl"
    pairs.to_pickle(pairs_file)
    # Dropout on (the default) so the resumed run must also restore the RNG streams exactly.
    config = fast_config(num_epochs=2, checkpoint_every=2, loss={"name": "grm_sft"}).to_dict()

    whole = _run_child(tmp_path, "whole", base, pairs_file, config, tmp_path / "state-whole")
    assert whole.returncode == 0, whole.stderr

    killed = _run_child(tmp_path, "killed", base, pairs_file, config, tmp_path / "state", kill_at_step=5)
    assert killed.returncode == -9, killed.stderr  # SIGKILL: step 5 done, its work lost, step 4 saved
    assert find_latest_checkpoint(tmp_path / "state").name == "step-00000004"
    assert not (tmp_path / "killed.safetensors").exists()

    resumed = _run_child(tmp_path, "resumed", base, pairs_file, config, tmp_path / "state")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming training from" in resumed.stderr and "step-00000004" in resumed.stderr
    assert_same_weights(load_weights(tmp_path / "whole.safetensors"), load_weights(tmp_path / "resumed.safetensors"))
    assert json.loads((tmp_path / "whole.json").read_text()) == json.loads((tmp_path / "resumed.json").read_text())


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    common = {"num_epochs": 2, "disable_dropout": True, "checkpoint_every": 4, "loss": {"name": "grm_sft"}}
    logged = []
    two_model, two = run_training(
        path, tokenizer, pairs, pairs.iloc[:7], fast_config(per_device_batch_size=2, num_processes=2, **common),
        tmp_path / "two", log_metrics=lambda metrics, step: logged.append(step))
    one_model, one = train_reward_model(path, tokenizer, pairs, pairs.iloc[:7],
                                        fast_config(per_device_batch_size=4, **common), tmp_path / "one")
    assert logged == list(range(0, 9))  # forwarded from the subprocesses while they ran (0: the data counts)
    assert len(two) == len(one) == 8
    for a, b in zip(one, two):
        for key in ("loss", "bt", "reg", "accuracy", "margin_mean", "reward_std", "logps_chosen_mean"):
            assert a[key] == pytest.approx(b[key], abs=MULTIPROCESS_ATOL, rel=1e-5), (a["step"], key)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    for key in ("eval_accuracy", "eval_loss"):
        assert one[-1][key] == pytest.approx(two[-1][key], abs=MULTIPROCESS_ATOL)
    for name, tensor in one_model.state_dict().items():
        if name not in SHIFT_ONLY:
            torch.testing.assert_close(two_model.state_dict()[name], tensor, atol=1e-6, rtol=1e-5)
    saved = list_checkpoints(tmp_path / "two")[-1]
    assert {p.name for p in saved.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}


@pytest.mark.slow
def test_divergence_in_a_subprocess_reaches_the_caller(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    cfg = fast_config(per_device_batch_size=2, num_processes=2, checkpoint_every=1, loss={"name": "margin"})
    data = pairs.copy()
    data.loc[int(BatchPlan(len(pairs), 2, num_processes=2, seed=cfg.seed).global_batch(1)[3]), "margin"] = math.inf
    with pytest.raises(TrainingDivergedError, match=r"step 2.*loss=inf") as error:
        run_training(path, tokenizer, data, None, cfg, tmp_path)
    assert error.value.step == 2
    last = find_latest_checkpoint(tmp_path)
    assert last.name == "step-00000001"
    assert {p.name for p in last.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}
