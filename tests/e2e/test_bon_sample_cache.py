"""`kedro run --pipelines bon` after the default DAG: the policy's samples are read back from the sample cache,
the same bit for bit, and MLflow records that they were reused; another seed samples anew and adds to the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from project_copy import kedro

pytestmark = pytest.mark.slow


def _versions(path: Path) -> list[Path]:
    return sorted(p / path.name for p in path.iterdir() if not p.name.startswith("."))


def _latest_run_metrics(project: Path) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    (run,) = client.search_runs([experiment.experiment_id], order_by=["attribute.start_time DESC"], max_results=1)
    return run.data.metrics


def test_a_second_bon_run_reuses_the_samples_and_a_new_seed_does_not(tiny_project, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(tiny_project, project)
    outputs = project / "data" / "07_model_output"
    cache = outputs / "bon_sample_cache"
    samples = outputs / "bon_samples.parquet"
    [first_key] = [p.name for p in cache.iterdir()]
    [first] = _versions(samples)

    kedro(project, "run", "--pipelines", "bon")
    metrics = _latest_run_metrics(project)
    assert metrics["bon.samples_reused"] == 1.0
    assert "bon.gold" in metrics  # the rest of the pipeline ran on the reused samples
    [_, reused] = _versions(samples)
    pd.testing.assert_frame_equal(pd.read_parquet(reused), pd.read_parquet(first), check_exact=True)
    assert [p.name for p in cache.iterdir()] == [first_key]

    kedro(project, "run", "--pipelines", "bon", "--params", "bon.seed=5")
    assert _latest_run_metrics(project)["bon.samples_reused"] == 0.0
    assert len(list(cache.iterdir())) == 2
    other_seed = pd.read_parquet(_versions(samples)[-1])
    assert len(other_seed) == len(pd.read_parquet(first))
    assert other_seed["response"].tolist() != pd.read_parquet(first)["response"].tolist()
