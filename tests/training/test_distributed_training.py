"""Training beyond one process with PyTorch's launcher on CPU (gloo): FSDP2 sharding against one process and
DDP, a sharded run killed and resumed, and one run spread over two launchers as two machines would run it."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from training_helpers import CHILD, assert_same_weights, fast_config, load_weights, write_child_spec

from rewardlab.modeling import RewardModel
from rewardlab.training import TrainConfig, train_reward_model
from rewardlab.training.checkpoint import find_latest_checkpoint
from rewardlab.training.launch import (child_env, node_launch_command, raise_child_failure, read_result, run_training,
                                       write_job)

pytestmark = pytest.mark.slow

# As in test_training_processes: float32 summation order differs between 1 and 2 processes (measured ~1e-7).
MULTIPROCESS_ATOL = 1e-5
SHIFT_ONLY = {"reward_head.1.bias"}  # see test_training_processes
LAUNCH_TIMEOUT = 300
COMMON = {"num_epochs": 2, "disable_dropout": True, "checkpoint_every": 4, "loss": {"name": "grm_sft"}}
COMPARED = ("loss", "bt", "reg", "accuracy", "margin_mean", "reward_std", "logps_chosen_mean")
LOSSES = ("loss", "bt", "reg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_launchers(commands: list[list[str]]) -> list[str]:
    """Start every launcher at once, wait for all (bounded), return their combined output; fail on any error."""
    env = {**child_env(), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=LAUNCH_TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:  # SIGTERM first: torchrun then stops the workers it started
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    return outputs


def _launch(work: Path, base, tokenizer, pairs, cfg: TrainConfig, state_dir: Path, machines: int = 1):
    """The run as `launch_training` starts it, or over `machines` launchers meeting at one rendezvous."""
    write_job(work, base, pairs, pairs.iloc[:7], cfg, state_dir, tokenizer)
    if machines == 1:
        commands = [node_launch_command(work, num_processes=cfg.num_processes)]
    else:
        port = _free_port()
        commands = [node_launch_command(work, num_processes=cfg.num_processes // machines, num_machines=machines,
                                        machine_rank=rank, rdzv_host="127.0.0.1", rdzv_port=port)
                    for rank in range(machines)]
    try:
        outputs = _run_launchers(commands)
    except AssertionError:
        raise_child_failure(work, 1)  # the workers' own error report is clearer than the launcher's
        raise
    model, history = read_result(work)
    return model, history, "\n".join(outputs)


@pytest.fixture(scope="module")
def runs(tiny_base, tmp_path_factory):
    """One process (4 pairs per step), two with DDP and two with FSDP (2 pairs each): the same global batches."""
    from helpers_tiny import tiny_pairs_df

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path, tokenizer = tiny_base
    pairs = tiny_pairs_df(16)
    tmp = tmp_path_factory.mktemp("distributed")
    one_model, one = train_reward_model(path, tokenizer, pairs, pairs.iloc[:7],
                                        fast_config(per_device_batch_size=4, **COMMON), tmp / "one")
    results = {"one": (one_model, one, "")}
    # FSDP in two micro-batches per step: gradients stay unreduced on the first (set_requires_gradient_sync).
    split = {"ddp": {"per_device_batch_size": 2}, "fsdp": {"per_device_batch_size": 1, "gradient_accumulation_steps": 2}}
    for name in ("ddp", "fsdp"):
        cfg = fast_config(num_processes=2, distributed=name, **split[name], **COMMON)
        results[name] = _launch(tmp / f"work-{name}", path, tokenizer, pairs, cfg, tmp / f"state-{name}")
    yield results
    torch.set_num_threads(threads)


def _max_loss_difference(a: list[dict], b: list[dict]) -> float:
    assert [h["step"] for h in a] == [h["step"] for h in b]
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in LOSSES)


def _assert_same_steps(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) == 8
    assert _max_loss_difference(a, b) < MULTIPROCESS_ATOL
    for x, y in zip(a, b):
        for key in COMPARED:
            assert x[key] == pytest.approx(y[key], abs=MULTIPROCESS_ATOL, rel=1e-5), (x["step"], key)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4), x["step"]
    for key in ("eval_accuracy", "eval_loss"):
        assert a[-1][key] == pytest.approx(b[-1][key], abs=MULTIPROCESS_ATOL)


def test_fsdp_shards_every_parameter_and_matches_one_process_and_ddp(runs, tiny_base):
    one_model, one, _ = runs["one"]
    _, ddp, _ = runs["ddp"]
    fsdp_model, fsdp, output = runs["fsdp"]
    total = len(list(one_model.parameters()))
    # Logged by each of the two processes after sharding: every parameter is a DTensor during training.
    assert len(re.findall(rf"FSDP: {total} of {total} parameters are DTensors sharded over 2 processes", output)) == 2
    assert "FSDP:" not in runs["ddp"][2]
    _assert_same_steps(one, fsdp)
    _assert_same_steps(ddp, fsdp)
    print(f"max |loss difference|: fsdp-one {_max_loss_difference(one, fsdp):.3g}, "
          f"fsdp-ddp {_max_loss_difference(ddp, fsdp):.3g}")
    # The final model is an ordinary reward-model directory with the one-process weights (LM head included).
    from torch.distributed.tensor import DTensor

    assert not any(isinstance(p, DTensor) for p in fsdp_model.parameters())
    for name, tensor in one_model.state_dict().items():
        if name not in SHIFT_ONLY:
            torch.testing.assert_close(fsdp_model.state_dict()[name], tensor, atol=1e-6, rtol=1e-5)
    untrained = RewardModel.from_base(tiny_base[0]).state_dict()["lm.lm_head.weight"]
    assert not torch.equal(fsdp_model.state_dict()["lm.lm_head.weight"], untrained)  # S(y) trains the LM head


def _train_collecting_metrics(path, tokenizer, pairs, cfg, state_dir, **kwargs):
    """`run_training` as the grm_train node calls it; returns its result and the metrics it passed on, by step."""
    received: dict[int, dict] = {}
    model, history = run_training(path, tokenizer, pairs, pairs.iloc[:7], cfg, state_dir,
                                  lambda metrics, step: received.setdefault(step, {}).update(metrics), **kwargs)
    return model, history, received


def _assert_streamed(history: list[dict], received: dict[int, dict]) -> None:
    """Every step's metrics reached the caller's `log_metrics`, with the values of the history (step 0 carries
    the data's counts)."""
    assert sorted(received) == [0] + [h["step"] for h in history] and "data.pairs" in received[0]
    for h in history:
        assert received[h["step"]]["loss"] == h["loss"]


def test_two_machines_meet_at_the_rendezvous_and_match_the_two_process_run(runs, tiny_base, tmp_path):
    """Machine 0 is `run_training` with num_machines 2 (the Kedro run's path); machine 1 joins with
    `rewardlab train-node WORK_DIR --machine-rank 1`, as a second machine would."""
    path, tokenizer = tiny_base
    from helpers_tiny import tiny_pairs_df

    cfg = fast_config(per_device_batch_size=2, num_processes=2, num_machines=2, rdzv_port=_free_port(), **COMMON)
    state = tmp_path / "state"
    result: dict = {}
    machine0 = threading.Thread(target=lambda: result.update(
        zip(("model", "history", "received"),
            _train_collecting_metrics(path, tokenizer, tiny_pairs_df(16), cfg, state))))
    machine0.start()
    work = state / "launch"
    deadline = time.monotonic() + 120
    while not (work / "job.json").exists():  # machine 0 has written the job the other machine reads
        assert machine0.is_alive() and time.monotonic() < deadline
        time.sleep(0.2)
    machine1 = subprocess.run([sys.executable, "-m", "rewardlab", "train-node", str(work), "--machine-rank", "1"],
                              capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                              env={**child_env(), "OMP_NUM_THREADS": "1"})
    machine0.join(timeout=LAUNCH_TIMEOUT)
    assert machine1.returncode == 0, machine1.stderr[-4000:]
    assert not machine0.is_alive() and "history" in result
    _assert_same_steps(runs["ddp"][1], result["history"])
    _assert_streamed(result["history"], result["received"])
    print(f"max |loss difference|: two machines vs two processes "
          f"{_max_loss_difference(runs['ddp'][1], result['history']):.3g}")


def test_a_slurm_job_of_two_nodes_matches_the_two_process_run_and_streams_its_metrics(runs, tiny_base, tmp_path):
    """`launcher: slurm` through submitit's local executor: one job, one task per "node", each task starting
    its node's launcher; the caller receives every step's metrics while the job runs."""
    from rewardlab.slurm import SlurmConfig

    path, tokenizer = tiny_base
    from helpers_tiny import tiny_pairs_df

    cfg = fast_config(per_device_batch_size=2, num_processes=2, num_machines=2, launcher="slurm", **COMMON)
    slurm = SlurmConfig(cluster="local", time_min=10)
    model, history, received = _train_collecting_metrics(path, tokenizer, tiny_pairs_df(16), cfg, tmp_path / "state",
                                                         slurm=slurm)
    _assert_same_steps(runs["ddp"][1], history)
    _assert_streamed(history, received)
    logs = sorted((tmp_path / "state" / "launch" / "slurm").glob("*_log.out"))
    assert [log.name.split("_")[1] for log in logs] == ["0", "1"]  # one task per node
    for name, tensor in runs["ddp"][0].state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, atol=1e-6, rtol=1e-5)
    print(f"max |loss difference|: slurm job vs two processes {_max_loss_difference(runs['ddp'][1], history):.3g}")


def _run_child(tmp_path: Path, name: str, base: Path, pairs_file: Path, config: dict, state_dir: Path,
               kill_at_step: int | None = None) -> subprocess.CompletedProcess:
    spec_file = write_child_spec(tmp_path, name, base, pairs_file, config, state_dir, kill_at_step)
    command = node_launch_command(tmp_path, num_processes=2)
    assert command[-3:-1] == ["-m", "rewardlab.training.launch"]
    env = {**child_env(), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command[:-3], str(CHILD), str(spec_file)], capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT, env=env)


def test_killed_fsdp_run_resumes_bit_identically(tiny_base, pairs, tmp_path):
    base, _ = tiny_base
    pairs_file = tmp_path / "pairs.pkl"
    pairs.to_pickle(pairs_file)
    # LoRA with dropout on: the adapters, the reward head and the LM head train; the RNG streams must resume too.
    config = fast_config(num_epochs=2, checkpoint_every=2, per_device_batch_size=2, num_processes=2,
                         distributed="fsdp", tuning="lora", lora_r=4, lora_alpha=8,
                         lora_target_modules=["q_proj", "v_proj"], loss={"name": "grm_sft"}).to_dict()

    whole = _run_child(tmp_path, "whole", base, pairs_file, config, tmp_path / "state-whole")
    assert whole.returncode == 0, whole.stderr[-4000:]

    killed = _run_child(tmp_path, "killed", base, pairs_file, config, tmp_path / "state", kill_at_step=5)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-4000:]
    assert find_latest_checkpoint(tmp_path / "state").name == "step-00000004"
    assert not (tmp_path / "killed.safetensors").exists()

    resumed = _run_child(tmp_path, "resumed", base, pairs_file, config, tmp_path / "state")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Resuming training from" in resumed.stderr and "step-00000004" in resumed.stderr
    assert_same_weights(load_weights(tmp_path / "whole.safetensors"), load_weights(tmp_path / "resumed.safetensors"))
    assert json.loads((tmp_path / "whole.json").read_text()) == json.loads((tmp_path / "resumed.json").read_text())


def test_fsdp_in_bf16_with_lora_follows_the_one_process_bf16_run(tiny_base, pairs, tmp_path):
    """bf16 compute from float32 master shards (MixedPrecisionPolicy) against accelerate's bf16 autocast: other
    roundings, so only close; the adapters and the reward head train, sharded."""
    path, tokenizer = tiny_base
    common = {"max_steps": 3, "mixed_precision": "bf16", "tuning": "lora", "lora_r": 4, "lora_alpha": 8,
              "lora_target_modules": ["q_proj", "v_proj"], "disable_dropout": True, "loss": {"name": "grm_sft"}}
    _, one = train_reward_model(path, tokenizer, pairs, None, fast_config(per_device_batch_size=4, **common),
                                tmp_path / "one")
    cfg = fast_config(per_device_batch_size=2, num_processes=2, distributed="fsdp", **common)
    model, sharded, output = _launch(tmp_path / "work", path, tokenizer, pairs, cfg, tmp_path / "state")
    assert output.count("FSDP: ") == 2
    difference = _max_loss_difference(one, sharded)
    print(f"max |loss difference|: fsdp bf16 vs one process bf16 {difference:.3g}")
    assert difference < 0.02  # measured 2.3e-3
    assert len(sharded) == 3 and all(h["grad_norm"] > 0 for h in sharded)
    assert not model.is_peft  # adapters merged into the saved model
