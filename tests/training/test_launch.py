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
