"""Slurm jobs through submitit: the sbatch script of a 2-node x 8-GPU job, the per-node training launcher,
conf/slurm.yml, the grid's point order, and grid jobs run, failed and stopped with submitit's local executor."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rewardlab.cli import cli, grid_points
from rewardlab.errors import ExpectedError, ParameterError
from rewardlab.training import TrainConfig
from rewardlab.training.slurm_job import training_job_parameters
from rewardlab.slurm import (GridJob, GridStopped, SlurmConfig, job_parameters, load_slurm_config, make_executor,
                             node_command, run_grid_jobs, sbatch_script)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_grid_points_run_seed_major_so_a_stopped_grid_stays_balanced():
    points = grid_points(["bt", "bsr"], ["0", "0.25"], ["0", "1"])
    assert points == [("bt", "0", "0"), ("bsr", "0", "0"), ("bt", "0.25", "0"), ("bsr", "0.25", "0"),
                      ("bt", "0", "1"), ("bsr", "0", "1"), ("bt", "0.25", "1"), ("bsr", "0.25", "1")]
    first_half = points[:4]  # a grid stopped here has every variant at every noise rate, on seed 0
    assert {(variant, noise) for variant, noise, _ in first_half} == {(v, n) for v in ("bt", "bsr")
                                                                      for n in ("0", "0.25")}


def test_the_sbatch_script_of_a_two_node_eight_gpu_job(tmp_path):
    config = SlurmConfig(partition="gpu", cpus_per_task=64, mem_gb=512, time_min=720,
                         sbatch_options={"account": "rl", "exclusive": True}, setup=["module load cuda/12.4"])
    folder = tmp_path / "%j"
    # The training job of 16 processes on 2 machines: num_processes / num_machines GPUs per node.
    training = TrainConfig(launcher="slurm", num_processes=16, num_machines=2)
    script = sbatch_script(training_job_parameters(config, training), folder)
    assert script.splitlines() == [
        "#!/bin/bash",
        "",
        "# Parameters",
        "#SBATCH --account=rl",
        "#SBATCH --cpus-per-task=64",
        "#SBATCH --exclusive",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --job-name=rewardlab-train",
        "#SBATCH --mem=512GB",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={folder}/%j_0_log.out",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --time=720",
        "#SBATCH --wckey=submitit",
        "",
        "# setup",
        "module load cuda/12.4",
        "",
        "# command",
        "export SUBMITIT_EXECUTOR=slurm",
        # One task per node (--ntasks-per-node=1 on 2 nodes): srun starts one launcher on each node.
        f"srun --unbuffered --output {folder}/%j_%t_log.out {shlex.quote(sys.executable)} -u -m "
        f"submitit.core._submit {folder}",
    ]


def test_the_grid_job_asks_for_one_node_and_leaves_unset_what_the_config_leaves_unset(tmp_path):
    config = SlurmConfig(partition=None, mem_gb=None, gpus_per_node=2, cpus_per_task=16, time_min=30)
    lines = sbatch_script(job_parameters(config, job_name="rewardlab-grid"), tmp_path).splitlines()
    flags = [line for line in lines if line.startswith("#SBATCH")]
    assert {"#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=2",
            "#SBATCH --cpus-per-task=16", "#SBATCH --time=30", "#SBATCH --job-name=rewardlab-grid"} <= set(flags)
    assert not [flag for flag in flags if flag.startswith(("#SBATCH --partition", "#SBATCH --mem"))], flags
    assert "# setup" not in lines


def test_each_node_of_a_two_node_job_starts_its_launcher_at_node_zeros_rendezvous():
    hostnames = ["gpu-a", "gpu-b"]
    commands = [node_command("/shared/work", gpus_per_node=8, node=node, hostnames=hostnames, rdzv_port=29500)
                for node in (0, 1)]
    for node, command in enumerate(commands):
        options = dict(zip(command[3:-3:2], command[4:-3:2]))
        assert command[1:3] == ["-m", "torch.distributed.run"] and command[-3:] == [
            "-m", "rewardlab.training.launch", "/shared/work"]
        assert options["--nnodes"] == "2" and options["--nproc-per-node"] == "8"
        assert options["--node-rank"] == str(node) and options["--rdzv-endpoint"] == "gpu-a:29500"
        assert options["--rdzv-conf"] == f"is_host={'true' if node == 0 else 'false'}"


def test_conf_slurm_yml_spells_out_the_defaults():
    written = yaml.safe_load((PROJECT_ROOT / "conf" / "slurm.yml").read_text())
    assert written == SlurmConfig().to_dict()
    assert load_slurm_config(PROJECT_ROOT / "conf" / "slurm.yml") == SlurmConfig()


def test_a_misspelt_or_missing_slurm_config_is_refused_by_name(tmp_path):
    path = tmp_path / "slurm.yml"
    path.write_text("partiton: gpu\ntime_min: 0\n")
    with pytest.raises(ParameterError) as error:
        load_slurm_config(path)
    assert "slurm.partiton" in str(error.value) and "slurm.time_min must be >= 1" in str(error.value)
    with pytest.raises(ExpectedError, match="not found"):
        load_slurm_config(tmp_path / "absent.yml")


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_local_grid_jobs_run_at_most_max_parallel_at_once_and_report_their_states(tmp_path):
    executor = make_executor(SlurmConfig(cluster="local", gpus_per_node=0), tmp_path / "logs" / "%j",
                             job_parameters(SlurmConfig(gpus_per_node=0), job_name="test"))
    points = [GridJob("ok", _python("open('ok', 'w').write('done')")),
              GridJob("bad", _python("import sys; sys.exit(3)"))]
    lines: list[str] = []
    run_grid_jobs(points, executor, tmp_path, max_parallel=1, poll_seconds=0.2, echo=lines.append)
    assert (tmp_path / "ok").read_text() == "done"  # ran in the given directory
    assert [point.state for point in points] == ["COMPLETED", "FAILED"]
    # One at a time: the second job is submitted after the first one ended.
    assert lines.index(next(line for line in lines if line.startswith("bad: submitted"))) > lines.index(
        next(line for line in lines if line.startswith("ok: COMPLETED")))
    assert any(line.startswith("bad: FAILED") for line in lines), lines


def test_a_stopped_grid_sends_sigterm_to_each_running_jobs_command(tmp_path):
    executor = make_executor(SlurmConfig(cluster="local", gpus_per_node=0), tmp_path / "logs" / "%j",
                             job_parameters(SlurmConfig(gpus_per_node=0), job_name="test"))
    waits_for_sigterm = ("import pathlib, signal, sys, time\n"
                         "def stop(signum, frame):\n"
                         "    pathlib.Path(f'stopped-{sys.argv[1]}').write_text(signal.Signals(signum).name)\n"
                         "    sys.exit(1)\n"
                         "signal.signal(signal.SIGTERM, stop)\n"
                         "pathlib.Path(f'started-{sys.argv[1]}').touch()\n"
                         "time.sleep(120)\n")
    points = [GridJob(name, [*_python(waits_for_sigterm), name]) for name in ("a", "b", "c")]

    def stop_when_started(deadline: float = time.monotonic() + 60):  # SIGTERM to the grid once both run
        while time.monotonic() < deadline:
            if all((tmp_path / f"started-{name}").exists() for name in "ab"):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.2)

    threading.Thread(target=stop_when_started, daemon=True).start()
    lines: list[str] = []
    with pytest.raises(GridStopped) as stopped:
        run_grid_jobs(points, executor, tmp_path, max_parallel=2, poll_seconds=0.2, echo=lines.append,
                      stop_wait_s=60)
    assert stopped.value.signal_name == "SIGTERM" and stopped.value.cancelled == ["a", "b"]
    assert [(tmp_path / f"stopped-{name}").read_text() for name in "ab"] == ["SIGTERM", "SIGTERM"]
    assert points[2].job is None  # never submitted
    assert [point.state for point in points[:2]] == ["CANCELLED", "CANCELLED"], lines


@pytest.mark.skipif(shutil.which("srun") is not None, reason="would submit to this machine's Slurm cluster")
def test_the_slurm_grid_off_a_cluster_stops_before_its_first_job_pointing_to_slurm_local(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    result = CliRunner().invoke(cli, ["grid", "--executor", "slurm", "--variants", "bt", "--noise", "0",
                                      "--seeds", "0", "--pipelines", "grm_train"])
    assert result.exit_code == 1 and 'Could not detect "srun"' in result.output, result.output
    assert "--slurm-local runs the jobs on this machine" in result.output
    assert "submitted" not in result.output


def test_slurm_local_goes_with_the_slurm_executor_only(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    result = CliRunner().invoke(cli, ["grid", "--slurm-local", "--variants", "bt"])
    assert result.exit_code == 2 and "--slurm-local goes with --executor slurm" in result.output, result.output


GRID_SCRIPT = """
import sys
from pathlib import Path
from rewardlab.slurm import GridJob, GridStopped, SlurmConfig, job_parameters, make_executor, run_grid_jobs
here = Path.cwd()
executor = make_executor(SlurmConfig(cluster="local", gpus_per_node=0), here / "logs" / "%j",
                         job_parameters(SlurmConfig(gpus_per_node=0), job_name="test"))
try:
    run_grid_jobs([GridJob("a", [sys.executable, "-c", sys.argv[1], "a"])], executor, here, max_parallel=1,
                  poll_seconds=0.2, echo=print, stop_wait_s=60)
except GridStopped as stopped:
    print("stopped by", stopped.signal_name, flush=True)
"""


def test_ctrl_c_in_the_grids_terminal_reaches_the_grid_alone_which_stops_its_jobs_with_sigterm(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the job's command must not die of it."""
    waits_for_sigterm = ("import pathlib, signal, sys, time\n"
                         "def stop(signum, frame):\n"
                         "    pathlib.Path('stopped').write_text(signal.Signals(signum).name)\n"
                         "    sys.exit(1)\n"
                         "signal.signal(signal.SIGTERM, stop)\n"
                         "pathlib.Path('started').touch()\n"
                         "time.sleep(120)\n")
    grid = subprocess.Popen([sys.executable, "-c", GRID_SCRIPT, waits_for_sigterm], cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert grid.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(grid.pid, signal.SIGINT)
        output = grid.communicate(timeout=60)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(grid.pid, signal.SIGKILL)
    assert "stopped by SIGINT" in output, output
    assert (tmp_path / "stopped").read_text() == "SIGTERM"
