"""What starts a run (without starting one): the per-machine launch command and who refuses what."""

import sys

import pytest
from training_helpers import fast_config

from rewardlab.training import TrainConfig, train_reward_model
from rewardlab.training.launch import node_launch_command


def test_node_launch_command_for_one_machine_of_several(tmp_path):
    command = node_launch_command(tmp_path, num_processes=4, num_machines=3, machine_rank=2,
                                  rdzv_host="node-a", rdzv_port=29400)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    options = dict(zip(command[3:-3:2], command[4:-3:2]))
    assert options == {"--nnodes": "3", "--nproc-per-node": "4", "--node-rank": "2", "--rdzv-backend": "c10d",
                       "--rdzv-endpoint": "node-a:29400", "--rdzv-conf": "is_host=false", "--max-restarts": "0"}
    assert command[-3:] == ["-m", "rewardlab.training.launch", str(tmp_path)]
    host = node_launch_command(tmp_path, num_processes=4, num_machines=3, machine_rank=0, rdzv_port=29400)
    assert "is_host=true" in host and "127.0.0.1:29400" in host


@pytest.mark.parametrize("kwargs, message", [({"num_machines": 2, "machine_rank": 2, "rdzv_port": 1}, "machine_rank"),
                                             ({"num_machines": 2, "machine_rank": 1}, "port")])
def test_node_launch_command_refuses_what_cannot_meet(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        node_launch_command(tmp_path, num_processes=1, **kwargs)


def test_the_loop_trains_only_in_its_own_process_group(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    with pytest.raises(ValueError, match="num_processes is 2 but this process group has 1"):
        train_reward_model(path, tokenizer, pairs, None, fast_config(num_processes=2), tmp_path)


def test_distributed_setting_and_what_fsdp_refuses():
    assert TrainConfig().distributed == "ddp"
    # The default leaves the hash of earlier runs as it was; sharded checkpoints never resume a DDP run.
    # d029ef9f3a81253b: the default configuration's hash before the setting existed.
    assert TrainConfig(distributed="ddp").config_hash({"x": 1}) == "d029ef9f3a81253b"
    assert TrainConfig(distributed="fsdp").config_hash({"x": 1}) != "d029ef9f3a81253b"
    with pytest.raises(ValueError, match="distributed"):
        TrainConfig.from_dict({"distributed": "deepspeed"})
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch"):
        TrainConfig.from_dict({"distributed": "fsdp", "max_tokens_per_micro_batch": 256})
    with pytest.raises(ValueError, match="torch_compile"):
        TrainConfig.from_dict({"distributed": "fsdp", "torch_compile": True})


def test_where_processes_run_changes_neither_the_hash_nor_the_run_label():
    from rewardlab.run_identity import run_identity

    placed = {"launcher": "slurm", "num_machines": 2, "num_processes": 4, "rdzv_host": "gpu-a", "rdzv_port": 29400}
    # d029ef9f3a81253b: the default configuration's hash (see above); the launch settings stay out of it.
    assert TrainConfig(**{**placed, "num_processes": 1, "num_machines": 1}).config_hash({"x": 1}) == "d029ef9f3a81253b"
    assert TrainConfig(**placed).processes_per_machine == 2
    plain = {"grm_train": {"variant": "bt", "train": {"num_processes": 4}}}
    spread = {"grm_train": {"variant": "bt", "train": placed}}
    assert run_identity(plain).label == run_identity(spread).label


def test_machines_get_equal_shares_of_the_processes():
    with pytest.raises(ValueError, match=r"num_processes \(3\) must be a multiple of num_machines \(2\)"):
        TrainConfig.from_dict({"num_processes": 3, "num_machines": 2})
    with pytest.raises(ValueError, match="launcher"):
        TrainConfig.from_dict({"launcher": "mpi"})


def test_the_command_another_machine_runs_to_join_a_job(tmp_path, pairs):
    import json

    from rewardlab.training.launch import machine_command, write_job

    cfg = fast_config(num_processes=4, num_machines=2, rdzv_host="gpu-a", rdzv_port=29400)
    write_job(tmp_path, "some/base", pairs, None, cfg, tmp_path / "state")
    command = machine_command(tmp_path, 1)
    options = dict(zip(command[3:-3:2], command[4:-3:2]))
    assert options["--nnodes"] == "2" and options["--nproc-per-node"] == "2" and options["--node-rank"] == "1"
    assert options["--rdzv-endpoint"] == "gpu-a:29400" and options["--rdzv-conf"] == "is_host=false"
    assert command[-1] == str(tmp_path.resolve())
    assert json.loads((tmp_path / "job.json").read_text())["config"]["num_machines"] == 2
    for rank in (0, 2):  # machine 0 is the Kedro run's own; there is no machine 2
        with pytest.raises(ValueError, match=rf"machine rank {rank} is not one of those that join it \(1\.\.1\)"):
            machine_command(tmp_path, rank)


def test_train_node_refuses_a_rank_the_job_does_not_have(tmp_path, pairs):
    from click.testing import CliRunner

    from rewardlab.commands import commands
    from rewardlab.training.launch import write_job

    write_job(tmp_path, "some/base", pairs, None, fast_config(num_processes=2, num_machines=2), tmp_path / "state")
    result = CliRunner().invoke(commands, ["train-node", str(tmp_path), "--machine-rank", "3"])
    assert result.exit_code != 0 and "machine rank 3 is not one of those that join it" in result.output
