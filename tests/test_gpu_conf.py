"""The `gpu` environment (conf/gpu) and the accelerate configs (conf/accelerate), checked without a GPU,
a download or a model: the configuration is read with Kedro's own loader and the project's settings, and
every pipeline's datasets and parameters must resolve in it."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, DatasetError

from rewardlab.adapters import FORMATS
from rewardlab.datasets import PairSourceDataset, PretrainedDataset
from rewardlab.evalsets import EVAL_KINDS, HHH_CONFIGS, MT_BENCH_SPLITS
from rewardlab.pipeline_registry import register_pipelines
from rewardlab.config import GrmTrainConfig, check_parameters
from rewardlab.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF = PROJECT_ROOT / "conf"
ACCELERATE_CONFIGS = {
    "multi_gpu.yaml": "MULTI_GPU",
    "fsdp.yaml": "FSDP",
}
# What `kedro run --env gpu --pipelines ingest,grm_train,ood_eval,bon` runs, and `--pipelines rl` after it (the world
# pipeline is not meant for it).
GPU_PIPELINES = ("ingest", "grm_train", "ood_eval", "bon", "rl")
# Node outputs that live in memory by design: made and used within one pipeline run.
MEMORY_BY_DESIGN = {"extra_eval_sets", "ood_response_scores"}
# The synthetic world's entries the gpu environment replaces with real data (or with empty sets).
REPLACED_WORLD_ENTRIES = ("base_model", "raw_train_pairs", "world_test_pairs", "world_ood_prompt_pairs",
                          "world_ood_response_pairs", "world_ood_both_pairs", "world_eval_responses", "bon_prompts")


def _loader(runtime_params: dict[str, Any] | None = None) -> CONFIG_LOADER_CLASS:
    return CONFIG_LOADER_CLASS(conf_source=str(CONF), env="gpu", runtime_params=runtime_params, **CONFIG_LOADER_ARGS)


@pytest.fixture(scope="module")
def config() -> CONFIG_LOADER_CLASS:
    return _loader()


@pytest.fixture(scope="module")
def catalog_conf(config) -> dict[str, Any]:
    return config["catalog"]


@pytest.fixture(scope="module")
def params(config) -> dict[str, Any]:
    return config["parameters"]


@pytest.fixture(scope="module")
def base_catalog_conf() -> dict[str, Any]:
    return CONFIG_LOADER_CLASS(conf_source=str(CONF), env="base", **CONFIG_LOADER_ARGS)["catalog"]


@pytest.fixture(scope="module")
def catalog(catalog_conf) -> DataCatalog:
    return DataCatalog.from_config(catalog_conf)


@pytest.fixture(scope="module")
def pipelines():
    return register_pipelines()


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"params:{dotted} does not resolve (no '{part}')"
        value = value[part]
    return value


def test_gpu_environment_exists_beside_base():
    assert (CONF / "gpu" / "catalog.yml").is_file()
    assert list((CONF / "gpu").glob("parameters*.yml")), "conf/gpu has no parameter overrides"


@pytest.mark.parametrize("pipeline_name", sorted({*GPU_PIPELINES, "world", "__default__"}))
def test_every_dataset_of_every_pipeline_resolves(pipeline_name, pipelines, catalog):
    pipeline = pipelines[pipeline_name]
    for name in sorted(pipeline.datasets()):
        if name.startswith("params:") or name == "parameters":
            continue
        if name in MEMORY_BY_DESIGN:
            assert name not in catalog, f"'{name}' is meant to stay in memory"
            continue
        assert name in catalog, f"pipeline '{pipeline_name}': dataset '{name}' is not in the gpu catalog"
        assert catalog.get(name) is not None


@pytest.mark.parametrize("pipeline_name", GPU_PIPELINES)
def test_each_gpu_pipeline_reads_only_persisted_inputs(pipeline_name, pipelines, catalog):
    """A pipeline run on its own reads its free inputs from the catalog, never from memory."""
    pipeline = pipelines[pipeline_name]
    for name in pipeline.inputs():
        if name.startswith("params:") or name == "parameters":
            continue
        assert name not in MEMORY_BY_DESIGN, f"'{name}' would be empty when '{pipeline_name}' runs alone"
        assert name in catalog


def test_memory_datasets_are_made_and_used_within_one_pipeline(pipelines):
    for name in MEMORY_BY_DESIGN:
        owners = [p for p in GPU_PIPELINES if name in pipelines[p].all_outputs()]
        assert owners, f"no gpu pipeline makes '{name}'"
        assert all(name not in pipelines[p].inputs() for p in GPU_PIPELINES)


def test_every_params_input_resolves(pipelines, params):
    for node in pipelines["__default__"].nodes:
        for name in node.inputs:
            if name.startswith("params:"):
                _lookup(params, name.removeprefix("params:"))


def test_every_parameter_block_passes_the_typed_check(params):
    check_parameters(params)


def test_every_variant_gives_a_valid_training_config(params):
    grm = params["grm_train"]
    assert grm["variant"] in grm["variants"]
    for variant in grm["variants"]:
        cfg = GrmTrainConfig.from_dict({**copy.deepcopy(grm), "variant": variant}, "grm_train").train_config()
        assert cfg.loss.name == grm["variants"][variant]["loss"]["name"]
        assert cfg.mixed_precision == "bf16"
        assert cfg.tuning == "lora"


def test_training_follows_the_grm_paper_with_lora(params):
    grm = params["grm_train"]
    cfg = GrmTrainConfig.from_dict(grm, "grm_train").train_config()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (32, 64, 0.05)
    assert sorted(cfg.lora_target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert cfg.learning_rate == pytest.approx(1e-5)
    assert cfg.warmup_ratio == pytest.approx(0.03)
    assert (cfg.num_epochs, cfg.max_length) == (2, 1024)
    base = CONFIG_LOADER_CLASS(conf_source=str(CONF), env="base", **CONFIG_LOADER_ARGS)["parameters"]["grm_train"]
    base_cfg = GrmTrainConfig.from_dict(base, "grm_train").train_config()
    assert cfg.gradient_accumulation_steps > base_cfg.gradient_accumulation_steps
    assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps > (
        base_cfg.per_device_batch_size * base_cfg.gradient_accumulation_steps)
    assert grm["log_checkpoint_artifact"] is False
    assert cfg.packing and cfg.dtype == "bfloat16" and cfg.attn_implementation == "sdpa"
    # Soft merge: what conf/gpu does not name comes from base.
    assert grm["variants"] == base["variants"]
    assert grm["ensemble_reduce"] == base["ensemble_reduce"]


def test_base_model_is_a_local_directory_used_as_is(catalog_conf, catalog):
    entry = catalog_conf["base_model"]
    assert entry["type"] == "rewardlab.datasets.PretrainedDataset"
    assert entry.get("kind", "path") == "path"
    assert not entry.get("versioned", False), "a downloaded backbone is one directory, not versions of one"
    assert isinstance(catalog.get("base_model"), PretrainedDataset)
    globals_ = yaml.safe_load((CONF / "gpu" / "globals.yml").read_text())
    assert entry["filepath"] == globals_["base_model_dir"]


def test_paths_can_be_replaced_for_one_run():
    loader = _loader({"base_model_dir": "/models/llama-3-8b-instruct", "gold_reward_model_dir": "/models/gold"})
    assert loader["catalog"]["base_model"]["filepath"] == "/models/llama-3-8b-instruct"
    assert loader["parameters"]["bon"]["gold"] == "/models/gold"


def test_training_data_is_unified_feedback(catalog_conf):
    source = catalog_conf["raw_train_pairs"]["source"]
    assert catalog_conf["raw_train_pairs"]["type"] == "rewardlab.datasets.PairSourceDataset"
    assert source["format"] == "unified_feedback"
    assert bool(source.get("path")) != bool(source.get("hub_id"))
    test = catalog_conf["world_test_pairs"]["source"]
    assert (test["hub_id"], test["name"], test["split"], test["format"]) == (
        "llm-blender/Unified-Feedback", "all", "val", "unified_feedback")


def test_world_entries_are_replaced_and_refuse_to_be_overwritten(base_catalog_conf, catalog):
    base_catalog = DataCatalog.from_config(base_catalog_conf)
    for name in REPLACED_WORLD_ENTRIES:
        assert str(catalog.get(name)) != str(base_catalog.get(name)), f"'{name}' still is the synthetic world's"
    frame = pd.DataFrame({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]})
    for name in ("raw_train_pairs", "world_test_pairs", "world_ood_prompt_pairs"):
        dataset = catalog.get(name)
        assert isinstance(dataset, PairSourceDataset)
        with pytest.raises(DatasetError):
            dataset.save(frame)


def test_world_only_sets_are_empty_and_load_offline(catalog):
    for name in ("world_ood_prompt_pairs", "world_ood_response_pairs", "world_ood_both_pairs"):
        pairs = catalog.get(name).load()
        assert len(pairs) == 0
        assert {"id", "prompt", "chosen", "rejected"} <= set(pairs.columns)
    responses = catalog.get("world_eval_responses").load()
    assert len(responses) == 0
    assert {"eval_set", "prompt", "response", "gold"} <= set(responses.columns)


def test_outputs_stay_apart_from_the_synthetic_world(pipelines, catalog_conf, base_catalog_conf, params):
    """Every persisted output of the gpu pipelines has its own path: reports never mix world and real runs."""
    root = yaml.safe_load((CONF / "gpu" / "globals.yml").read_text())["data_root"]
    outputs = set().union(*(pipelines[p].all_outputs() for p in GPU_PIPELINES))
    for name in sorted(outputs):
        entry = catalog_conf.get(name)
        if entry is None or entry["type"].startswith("kedro_mlflow.io.metrics"):
            continue
        path = entry.get("filepath") or entry.get("path") or entry.get("dataset", {}).get("filepath")
        assert path, f"'{name}' has no path"
        assert str(path).startswith(f"{root}/"), f"'{name}' writes to {path}, outside {root}"
    assert params["grm_train"]["state_dir"].startswith(f"{root}/")
    assert params["rl"]["state_dir"].startswith(f"{root}/")


def test_extra_eval_sets_have_what_load_eval_set_needs(params):
    specs = params["ood_eval"]["extra_sets"]
    names = [spec["name"] for spec in specs]
    assert len(set(names)) == len(names), f"duplicate eval set names {names}"
    assert {"hhh", "mt_bench", "reward_bench"} <= {spec["kind"] for spec in specs}
    for spec in specs:
        assert spec["kind"] in EVAL_KINDS, spec
        assert spec["name"] not in {"test", "ood_prompt", "ood_response", "ood_both"}, spec
        if spec["kind"] in ("pairs", "world"):
            assert spec.get("path") or (spec["kind"] == "pairs" and spec.get("hub_id")), spec
        if spec["kind"] == "pairs":
            assert spec.get("format", "pairs") in FORMATS, spec
        if spec["kind"] == "hhh":
            assert set(spec.get("configs") or HHH_CONFIGS) <= set(HHH_CONFIGS), spec
        if spec["kind"] == "mt_bench":
            splits = spec.get("split") or list(MT_BENCH_SPLITS)
            assert set([splits] if isinstance(splits, str) else splits) <= set(MT_BENCH_SPLITS), spec
        if spec["kind"] == "reward_bench":
            assert spec.get("split", "filtered") == "filtered", spec
    by_kind = {spec["kind"]: spec for spec in specs}
    assert by_kind["hhh"]["hub_id"] == "HuggingFaceH4/hhh_alignment"
    assert by_kind["mt_bench"]["hub_id"] == "lmsys/mt_bench_human_judgments"
    assert by_kind["reward_bench"]["hub_id"] == "allenai/reward-bench"


def test_best_of_n_uses_a_gold_reward_model(params):
    bon = params["bon"]
    assert bon["gold"] != "world"
    assert int(bon["num_samples"]) >= 2 and int(bon["num_prompts"]) >= 1


def test_policy_optimization_trains_the_backbone_with_lora_against_a_gold_reward_model(params):
    from rewardlab.config import RlPipelineConfig

    rl = RlPipelineConfig.from_dict(params["rl"], "rl")
    assert rl.tuning == "lora" and rl.algorithm in ("rloo", "grpo")
    assert rl.gold == params["bon"]["gold"] != "world"
    assert rl.dtype == "bfloat16" and rl.max_length == params["bon"]["max_length"]
    assert _loader({"gold_reward_model_dir": "/models/gold"})["parameters"]["rl"]["gold"] == "/models/gold"


def test_runs_go_to_their_own_mlflow_experiment(config):
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    mlflow_conf = config["mlflow"]
    KedroMlflowConfig(**mlflow_conf)  # the schema kedro-mlflow validates at start-up
    assert mlflow_conf["tracking"]["experiment"]["name"] != "rewardlab"
    project = CONF.parent.resolve().as_posix()
    assert mlflow_conf["server"]["mlflow_tracking_uri"] == f"sqlite:///{project}/mlflow.db"
    assert mlflow_conf["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] == \
        f"{project}/mlartifacts"


SESSION_SCRIPT = """
import json
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from rewardlab import settings

bootstrap_project(Path.cwd())
with KedroSession.create(project_path=Path.cwd(), env="gpu") as session:
    context = session.load_context()
    catalog = context.catalog
    print(json.dumps({
        "base_model": str(catalog.get("base_model")._filepath),
        "raw_train_pairs": catalog.get("raw_train_pairs")._source,
        "train_pairs": str(catalog.get("train_pairs")._filepath),
        "tuning": context.params["grm_train"]["train"]["tuning"],
        "experiment": context.mlflow.tracking.experiment.name,
        "checkpoint_artifacts": [getattr(hook, "_enabled", None) for hook in settings.HOOKS],
    }))
"""


def test_kedro_session_loads_the_gpu_environment(tmp_path):
    """What `kedro run --env gpu` does before its first node: the session, its hooks (kedro-mlflow's and the
    project's) and the catalog, in a copy of the project so that nothing is written here."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    for env in ("base", "gpu"):
        shutil.copytree(CONF / env, project / "conf" / env)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    environ |= {"KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", SESSION_SCRIPT], cwd=project, env=environ, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    globals_ = yaml.safe_load((CONF / "gpu" / "globals.yml").read_text())
    assert loaded["base_model"] == str(project / globals_["base_model_dir"])
    assert loaded["raw_train_pairs"]["path"] == str(project / globals_["train_pairs_dir"])
    assert loaded["train_pairs"].startswith(str(project / globals_["data_root"]))
    assert loaded["tuning"] == "lora"
    assert loaded["experiment"] == "rewardlab-gpu"
    assert False in loaded["checkpoint_artifacts"], "the reward model would be copied into MLflow's artifacts"


# ---- accelerate ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(ACCELERATE_CONFIGS))
def test_accelerate_config_is_valid(filename):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = CONF / "accelerate" / filename
    raw = yaml.safe_load(path.read_text())
    assert {"compute_environment", "distributed_type", "mixed_precision", "num_machines", "num_processes"} <= set(raw)
    assert raw["distributed_type"] == ACCELERATE_CONFIGS[filename]
    assert raw["mixed_precision"] == "bf16"
    config = load_config_from_file(str(path))  # refuses unknown keys
    assert isinstance(config, ClusterConfig)
    if raw["distributed_type"] == "FSDP":
        assert raw["fsdp_config"]["fsdp_version"] == 2
        assert raw["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert raw["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"


@pytest.mark.parametrize("filename", sorted(ACCELERATE_CONFIGS))
def test_accelerate_launch_accepts_config(filename):
    """`accelerate launch --config_file` parses the file into its arguments (nothing is started)."""
    from accelerate.commands import launch

    if not hasattr(launch, "_validate_launch_command"):
        pytest.skip("this accelerate version has no _validate_launch_command")
    parser = launch.launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONF / "accelerate" / filename), "--num_processes", "2", "x.py"])
    args, _, _ = launch._validate_launch_command(args)
    kind = ACCELERATE_CONFIGS[filename]
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (kind == "MULTI_GPU", kind == "FSDP", False)
    assert args.mixed_precision == "bf16"
    if kind == "FSDP":
        assert args.fsdp_transformer_layer_cls_to_wrap
