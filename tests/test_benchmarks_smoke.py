"""The benchmark scripts run end to end on CPU in their tiny mode and print their ratio lines (no timing checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = PROJECT_ROOT / "benchmarks"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
def test_bench_train_tiny_prints_every_configuration_and_the_ratios(tmp_path):
    out = _run("bench_train.py", "--model", "tiny", "--steps", "2", "--no-trl", "--json", str(tmp_path / "r.json"))
    for name in ("bt_padded", "bt_packed", "grm_sft_padded", "grm_sft_packed", "grm_dpo_noref_padded",
                 "grm_dpo_noref_packed"):
        assert f"ratio vs bt_padded: {name}" in out
    assert "ratio pairs/s vs TRL default: not measured (--no-trl)" in out
    assert "ratio GRM-SFT vs BT (padded): step time" in out and "ratio GRM-SFT vs BT (packed): step time" in out
    assert "peak RSS" in out  # CPU memory is reported as the process's resident set
    assert (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_bench_score_tiny_prints_the_ratios():
    out = _run("bench_score.py", "--model", "tiny")
    assert "ratio pairs/s batched vs naive:" in out
    assert "ratio responses/s batched vs naive (best-of-n):" in out
    assert "ratio pairs/s packed vs batched:" in out and "ratio responses/s packed vs batched (best-of-n):" in out
