"""Bad parameters stop `kedro run` before its first node, naming the full parameter path, in a project copy
that has no data at all: the check cannot depend on inputs existing, and nothing is written."""

from __future__ import annotations

import pytest
from project_copy import TINY_PARAMETERS, kedro, make_project_copy, mlflow_runs

pytestmark = pytest.mark.slow

CASES = {
    "learning_rate": (["--pipeline", "grm_train"], "grm_train.train.learning_rate=-1",
                      "grm_train.train.learning_rate must be > 0.0, got -1"),
    "alpha": (["--pipeline", "grm_train"], "grm_train.variants.grm_sft.loss.alpha=2.0",
              "grm_train.variants.grm_sft.loss.alpha must be <= 1.0, got 2.0"),
    "batch_size": (["--pipeline", "grm_train"], "grm_train.train.per_device_batch_size=0",
                   "grm_train.train.per_device_batch_size must be >= 1, got 0"),
    "unknown_loss": (["--pipeline", "grm_train"], "grm_train.variants.bt.loss.name=hinge",
                     "grm_train.variants.bt.loss.name must be one of 'bt', 'margin'"),
    "unknown_variant": ([], "grm_train.variant=grm_xyz", "grm_train.variant must be one of ['bsr', 'bt'"),
    "noise_rate": (["--pipeline", "grm_train"], "grm_train.noise_rate=abc",
                   "grm_train.noise_rate must be a number, got 'abc'"),
    "on_error": (["--pipeline", "ingest"], "ingest.on_error=fial", "ingest.on_error must be one of 'drop' or 'fail', "
                                                                   "got 'fial'"),
    "world": (["--pipeline", "world"], "world.num_heads=3", "world: hidden_size=32 must be divisible by "
                                                             "num_heads=3"),
    "bon": (["--pipeline", "bon"], "bon.top_p=1.5", "bon.top_p must be <= 1.0, got 1.5"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_parameter_stops_the_run_before_anything_happens(tmp_path, case):
    pipeline, override, message = CASES[case]
    project = make_project_copy(tmp_path / "p", TINY_PARAMETERS)
    result = kedro(project, "run", *pipeline, "--params", override, check=False)
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines on narrow consoles
    assert result.returncode != 0
    assert message in output, output[-3000:]
    # Checked before the missing-inputs guard and before kedro-mlflow opens a run: nothing was made or tracked.
    assert "does not exist yet" not in output
    assert not (project / "data").exists() or not any(p.is_file() for p in (project / "data").rglob("*"))
    assert mlflow_runs(project) == []




def test_every_problem_is_listed_at_once(tmp_path):
    project = make_project_copy(tmp_path / "p", TINY_PARAMETERS)
    result = kedro(project, "run", "--params",
                   "grm_train.train.learning_rate=-1,ingest.validation_size=abc,bon.num_samples=0", check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    for line in ("grm_train.train.learning_rate must be > 0.0, got -1",
                 "ingest.validation_size must be a whole number, got 'abc'", "bon.num_samples must be >= 1, got 0"):
        assert line in output, output[-3000:]
