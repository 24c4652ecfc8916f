"""The typed configurations: one place for defaults (conf/base spells out the same values), messages that name
the full parameter path, variants merged onto `train`, the blocks a pipeline reads, and the run identity."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from kedro.pipeline import Pipeline, node

from rewardlab.config import PIPELINE_CONFIGS, GrmTrainConfig, check_parameters, parameter_problems
from rewardlab.errors import ParameterError
from rewardlab.hooks import parameter_blocks
from rewardlab.run_identity import run_identity
from rewardlab.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def base_parameters() -> dict:
    return CONFIG_LOADER_CLASS(conf_source=str(CONF), env="base", **CONFIG_LOADER_ARGS)["parameters"]


@pytest.mark.parametrize("block", sorted(PIPELINE_CONFIGS))
def test_conf_base_spells_out_the_typed_defaults(base_parameters, block):
    model = PIPELINE_CONFIGS[block]
    assert model.from_dict(base_parameters[block], block).to_dict() == model().to_dict()


def test_every_field_has_a_line_of_help():
    from rewardlab.config import EvalSetSpec, LoadOptions
    from rewardlab.losses import LossConfig
    from rewardlab.training import TrainConfig

    for model in (*PIPELINE_CONFIGS.values(), TrainConfig, LossConfig, EvalSetSpec, LoadOptions):
        for name, info in model.model_fields.items():
            assert info.description and "\n" not in info.description, f"{model.__name__}.{name}"


@pytest.mark.parametrize("parameters, line", [
    ({"grm_train": {"train": {"learning_rate": -1}}}, "grm_train.train.learning_rate must be > 0.0, got -1"),
    ({"grm_train": {"train": {"learning_rate": "fast"}}}, "grm_train.train.learning_rate must be a number, got 'fast'"),
    ({"grm_train": {"noise_rate": "abc"}}, "grm_train.noise_rate must be a number, got 'abc'"),
    ({"grm_train": {"noise_rate": 1.5}}, "grm_train.noise_rate must be <= 1.0, got 1.5"),
    ({"grm_train": {"train": {"per_device_batch_size": 0}}},
     "grm_train.train.per_device_batch_size must be >= 1, got 0"),
    ({"grm_train": {"train": {"per_device_batch_size": True}}},
     "grm_train.train.per_device_batch_size must be a number, got True"),
    ({"grm_train": {"train": {"learning_rte": 1e-3}}},
     "grm_train.train.learning_rte is not a known parameter (did you mean 'learning_rate'?)"),
    ({"grm_train": {"variant": "nope"}}, "grm_train.variant must be one of ['bsr', 'bt', 'centered'"),
    ({"grm_train": {"variants": {"bt": {"loss": {"name": "hinge"}}}}},
     "grm_train.variants.bt.loss.name must be one of 'bt', 'margin'"),
    ({"grm_train": {"variants": {"grm_sft": {"loss": {"name": "grm_sft", "alpha": 2.0}}}}},
     "grm_train.variants.grm_sft.loss.alpha must be <= 1.0, got 2.0"),
    ({"grm_train": {"train": {"tuning": "frozen"}}},
     "grm_train.variants.grm_sft (merged onto grm_train.train): tuning='frozen' trains only the reward head"),
    ({"ingest": {"on_error": "fial"}}, "ingest.on_error must be one of 'drop' or 'fail', got 'fial'"),
    ({"ingest": {"validation_size": -3}}, "ingest.validation_size must be >= 0, got -3"),
    ({"ood_eval": {"extra_sets": [{"name": "hh", "kind": "pairs", "pth": "x"}]}},
     "ood_eval.extra_sets[0].pth is not a known parameter (did you mean 'path'?)"),
    ({"bon": {"temperature": 0}}, "bon.temperature must be > 0.0, got 0"),
    ({"bon": {"dtype": "fp8"}}, "bon.dtype must be one of 'auto', 'float32', 'bfloat16' or 'float16', got 'fp8'"),
    ({"world": {"marker_correlation": 2}}, "world.marker_correlation must be <= 1.0, got 2"),
])
def test_a_bad_value_is_named_by_its_full_path(parameters, line):
    problems = parameter_problems(parameters)
    assert any(problem.startswith(line) for problem in problems), problems
    with pytest.raises(ParameterError, match="Invalid parameters"):
        check_parameters(parameters)


def test_yaml_strings_that_are_numbers_are_numbers():
    cfg = GrmTrainConfig.from_dict({"noise_rate": "0.5", "train": {"learning_rate": "1e-5"}}, "grm_train")
    assert cfg.noise_rate == 0.5 and cfg.train.learning_rate == 1e-5


def test_a_variant_merges_onto_train_key_by_key():
    cfg = GrmTrainConfig.from_dict({
        "variant": "mine", "seed": 5,
        "train": {"learning_rate": 2e-3, "loss": {"beta": 0.3}},
        "variants": {"mine": {"loss": {"name": "grm_dpo_noref", "alpha": 0.2}, "per_device_batch_size": 4}},
    })
    train = cfg.train_config(member=2)
    assert (train.loss.name, train.loss.alpha, train.loss.beta) == ("grm_dpo_noref", 0.2, 0.3)
    assert (train.learning_rate, train.per_device_batch_size, train.seed) == (2e-3, 4, 7)
    assert cfg.global_batch_size == 4


def test_the_blocks_a_pipeline_reads():
    def f(*args):
        return None

    assert parameter_blocks(Pipeline([node(f, ["a", "params:ingest", "params:grm_train.seed"], "b")])) == [
        "ingest", "grm_train"]
    assert parameter_blocks(Pipeline([node(f, ["a", "parameters"], "b")])) == list(PIPELINE_CONFIGS)
    assert parameter_blocks(Pipeline([node(f, "a", "b")])) == []


def test_the_run_label_holds_every_difference_from_the_defaults(base_parameters):
    assert run_identity(base_parameters).label == "grm_sft__noise0.25__seed0"
    changed = copy.deepcopy(base_parameters)
    changed["grm_train"] |= {"variant": "bt", "noise_rate": 0.0, "seed": 2}
    changed["grm_train"]["train"] |= {"learning_rate": 2e-3, "tuning": "lora"}
    assert run_identity(changed).label == "bt__noise0__seed2__learning_rate=0.002,tuning=lora"
    other = copy.deepcopy(changed)
    other["grm_train"]["train"]["learning_rate"] = 4e-3
    assert run_identity(other).label != run_identity(changed).label
    # A variant's own settings changed count as well; an ensemble is named.
    alpha = copy.deepcopy(base_parameters)
    alpha["grm_train"]["variants"]["grm_sft"]["loss"]["alpha"] = 0.05
    alpha["grm_train"] |= {"ensemble_size": 3, "ensemble_reduce": "min"}
    assert run_identity(alpha).label == "grm_sft__noise0.25__seed0__ens3min__loss.alpha=0.05"
    assert run_identity(alpha).variant_label == "grm_sft__ens3min__loss.alpha=0.05"


def test_speed_and_observation_settings_leave_the_label_alone(base_parameters):
    changed = copy.deepcopy(base_parameters)
    changed["grm_train"]["train"] |= {"progress": False, "eval_every": 7, "packing": True}
    changed["bon"] |= {"batch_size": 8, "score_batch_size": 4}
    changed["ood_eval"] |= {"batch_size": 3}
    assert run_identity(changed).label == "grm_sft__noise0.25__seed0"


def test_many_differences_become_a_stable_hash(base_parameters):
    changed = copy.deepcopy(base_parameters)
    changed["world"] |= {"n_train_pairs": 100, "vocab_size": 300, "hidden_size": 64, "pretrain_steps": 3}
    label = run_identity(changed).label
    assert label.startswith("grm_sft__noise0.25__seed0__cfg-") and len(label) == len("grm_sft__noise0.25__seed0__cfg-") + 8
    assert run_identity(copy.deepcopy(changed)).label == label
    changed["world"]["pretrain_steps"] = 4
    assert run_identity(changed).label != label
