"""One typed configuration per pipeline: the only place that holds its defaults, types, ranges and allowed names.

`conf/base/parameters_<pipeline>.yml` spells the same values out for users to read and override (a test keeps
the two equal). Every node turns its `params:<pipeline>` block into the pipeline's config, and a hook
(`rewardlab.hooks.ParameterCheckHooks`) checks every block a run will use before its first node, so a bad
value stops the run before anything is written, naming its full path:

    grm_train.train.learning_rate must be > 0.0, got -1
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from omegaconf import OmegaConf
from pydantic import ValidationError, ValidationInfo, field_validator, model_validator

from rewardlab.errors import ParameterError
from rewardlab.rl.config import RlConfig
from rewardlab.training.config import WEIGHT_DTYPES, TrainConfig
from rewardlab.typed_config import TypedConfig, describe_errors, error_items, join_path, setting
from rewardlab.world.config import WorldConfig

# The variants of the GRM paper and of the BSR paper, and the baselines; each one's keys override `train`.
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "bt": {"loss": {"name": "bt"}},
    "grm_sft": {"loss": {"name": "grm_sft", "alpha": 0.01, "beta": 0.1}},
    "grm_sft_plain": {"loss": {"name": "grm_sft_plain", "alpha": 0.01}},
    "grm_dpo": {"loss": {"name": "grm_dpo", "alpha": 0.01, "beta": 0.1}},
    "grm_dpo_noref": {"loss": {"name": "grm_dpo_noref", "alpha": 0.01, "beta": 0.1}},
    "bsr": {"loss": {"name": "bsr", "lam": 1.0e-3}},
    "margin": {"loss": {"name": "margin", "margin": 1.0}},
    "label_smoothing": {"loss": {"name": "label_smoothing", "eps": 0.1}},
    "centered": {"loss": {"name": "centered", "center_coef": 0.01}},
}


class IngestConfig(TypedConfig):
    on_error: Literal["drop", "fail"] = setting("drop", "drop-and-count bad rows, or fail at the first report")
    validation_size: int = setting(200, "pairs held out for evaluation during training (0: none)", ge=0)
    limit: int | None = setting(None, "keep at most this many pairs (after validation), e.g. for a quick run", ge=1)
    seed: int = setting(0, "seed of the validation split")


class GrmTrainConfig(TypedConfig):
    # `variants` comes first so that `variant` is checked against it.
    variants: dict[str, dict[str, Any]] = setting(lambda: copy.deepcopy(DEFAULT_VARIANTS),
                                                  "named overrides of `train` (loss and anything else)")
    variant: str = setting("grm_sft", "which entry of `variants` this run trains")
    seed: int = setting(0, "training seed (ensemble member k uses seed + k)")
    noise_rate: float = setting(0.25, "fraction of pairs whose chosen and rejected are swapped", ge=0.0, le=1.0)
    noise_seed: int = setting(0, "seed of the label noise")
    state_dir: str = setting("data/06_models/training_state", "resumable training state, per run label",
                             observational=True)
    ensemble_size: int = setting(1, "K > 1 trains K reward models with seeds seed..seed+K-1", ge=1)
    ensemble_reduce: Literal["mean", "min"] = setting("mean", "how an ensemble combines its members' rewards")
    log_checkpoint_artifact: bool = setting(True, "copy the trained reward model into the MLflow run's artifacts",
                                            observational=True)
    export: bool = setting(True, "export a linear-head reward model as a standard Hugging Face model, logged and "
                                 "registered in MLflow", observational=True)
    registered_model_name: str | None = setting(None, "MLflow Model Registry name of the exported model (null: "
                                                      "rewardlab-<variant>)", pattern=r"\S", observational=True)
    train: TrainConfig = setting(TrainConfig, "training settings shared by every variant")

    @field_validator("variant")
    @classmethod
    def _variant_is_defined(cls, variant: str, info: ValidationInfo) -> str:
        variants = info.data.get("variants")
        if variants is not None and variant not in variants:
            raise ValueError(f"must be one of {sorted(variants)}, got {variant!r}")
        return variant

    def variant_problems(self, path: str = "grm_train") -> list[str]:
        """Every variant merged onto `train` must be a valid training config: one line per problem."""
        problems = []
        for name, override in self.variants.items():
            where = f"{path}.variants.{name}"
            try:
                self._merge(override)
            except ValidationError as error:
                for loc, text in error_items(error, TrainConfig):
                    if not loc:  # a rule across fields, e.g. a frozen LM with a GRM loss
                        problems.append(f"{where} (merged onto {path}.train){text}")
                    else:  # a field the variant sets is its own; the others come from `train`
                        owner = where if loc[0] in (override or {}) else f"{path}.train"
                        problems.append(f"{join_path(owner, loc)}{text}")
            except ValueError as error:
                problems.append(f"{where}: {error}")
        return problems

    def _merge(self, override: dict[str, Any] | None) -> TrainConfig:
        if override is not None and not isinstance(override, dict):
            raise ValueError(f"must be a mapping of training settings, got {override!r}")
        merged = OmegaConf.merge(self.train.to_dict(), override or {})
        return TrainConfig.model_validate(OmegaConf.to_container(merged))

    def train_config(self, member: int = 0) -> TrainConfig:
        """The run's variant merged onto `train`, with the member's seed."""
        try:
            merged = self._merge(self.variants[self.variant])
        except ValidationError:
            raise ParameterError("\n".join(self.variant_problems())) from None
        return merged.model_copy(update={"seed": self.seed + member})

    @property
    def global_batch_size(self) -> int:
        """Pairs per optimizer step of the run's variant."""
        return self.train_config().global_batch_size


class LoadOptions(TypedConfig):
    """How saved models are loaded for scoring and sampling."""

    dtype: Literal[WEIGHT_DTYPES] | None = setting(None, "weights as loaded: null (as saved) | float32 | bfloat16 | "
                                                         "float16")
    attn_implementation: str | None = setting(None, "null (transformers' default, sdpa) | eager | flex_attention | "
                                                    "flash_attention_2", pattern=r"\S", observational=True)
    packing: bool = setting(False, "score in packed rows, no padding (pays off with flex_attention or flash kernels)",
                            observational=True)
    max_tokens_per_batch: int | None = setting(None, "at most this many tokens per scored batch (null: batch size "
                                                     "only)", ge=1, observational=True)
    max_length: int = setting(160, "tokens per scored sequence (prompt + response)", ge=1)
    min_response_tokens: int = setting(64, "response tokens a cut sequence keeps at least", ge=1)

    def load_args(self) -> dict[str, Any]:
        """`from_pretrained` keyword arguments: only what is set, so transformers' defaults stay."""
        from rewardlab.modeling import lm_load_args

        return lm_load_args(self.to_dict(), "load options")


class EvalSetSpec(TypedConfig):
    """One evaluation set beside the world's (see `rewardlab.evalsets.load_eval_set`)."""

    name: str = setting(..., "the set's name in reports", pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["pairs", "hhh", "mt_bench", "reward_bench", "reward_bench_2", "rm_bench", "world"] = setting(
        "pairs", "how its rows are read (reward_bench_2, rm_bench: every response scored, the benchmark's own scores)")
    path: str | None = setting(None, "a local file or directory (tried first)")
    hub_id: str | None = setting(None, "a dataset on the hub")
    split: str | list[str] | None = setting(None, "split (a list for MT-Bench; default test for reward_bench_2, "
                                                   "train for rm_bench)")
    format: str | None = setting(None, "kind pairs: the adapter (rewardlab.adapters.FORMATS)")
    config: str | None = setting(None, "kind pairs: a dataset configuration")
    configs: list[str] | None = setting(None, "kind hhh: its configurations")
    subsets: list[str] | None = setting(None, "kind reward_bench: its subsets; reward_bench_2: its sections; "
                                              "rm_bench: its domains")
    keep_ties: bool = setting(False, "kind mt_bench: keep tied judgments")
    turns: list[int] | None = setting(None, "kind mt_bench: which turns")
    on_error: Literal["drop", "fail"] | None = setting(None, "kind pairs: drop (default) or fail on defective rows")
    limit: int | None = setting(None, "kind pairs: rows read", ge=1)
    source: str | None = setting(None, "kind pairs: the source column where rows have none")
    data_files: Any = setting(None, "kind pairs: passed to datasets.load_dataset")
    cache_dir: str | None = setting(None, "kind pairs: passed to datasets.load_dataset", observational=True)
    optional: bool = setting(False, "skip the set (with a warning) when it cannot be found")

    @model_validator(mode="after")
    def _one_location(self) -> EvalSetSpec:
        if self.path is not None and self.hub_id is not None:
            raise ValueError("give one of path and hub_id, not both")
        if self.path is None and self.kind in ("world", "pairs") and self.hub_id is None:
            raise ValueError(f"kind {self.kind!r} needs a path or a hub_id")
        return self

    def as_spec(self) -> dict[str, Any]:
        """The keys that are set, as `load_eval_set` takes them."""
        return self.model_dump(exclude_none=True)


class OodEvalConfig(LoadOptions):
    batch_size: int = setting(64, "sequences per scored batch", ge=1, observational=True)
    bootstrap_samples: int = setting(1000, "bootstrap resamples of each accuracy's confidence interval", ge=1)
    seed: int = setting(0, "bootstrap seed")
    extra_sets: list[EvalSetSpec] = setting(list, "evaluation sets beside the world's test and OOD splits")

    @model_validator(mode="after")
    def _unique_names(self) -> OodEvalConfig:
        names = [spec.name for spec in self.extra_sets]
        taken = {"test", "ood_prompt", "ood_response", "ood_both"}
        clashes = sorted({n for n in names if names.count(n) > 1 or n in taken})
        if clashes:
            raise ValueError(f"extra_sets names must be unique and differ from the world's sets; clash: {clashes}")
        return self


class BonConfig(LoadOptions):
    num_prompts: int = setting(32, "prompts sampled from `bon_prompts`", ge=1)
    num_samples: int = setting(128, "N samples per prompt (KL_BoN up to log N - (N-1)/N)", ge=1)
    max_new_tokens: int = setting(48, "tokens per sample", ge=1)
    temperature: float = setting(1.0, "sampling temperature", gt=0.0)
    top_p: float = setting(1.0, "nucleus sampling mass", gt=0.0, le=1.0)
    seed: int = setting(0, "sampling seed")
    batch_size: int = setting(128, "sequences per generation batch", ge=1, observational=True)
    gold: str = setting("world", "the gold reward: `world` (the world's scorer) or a saved reward model directory")
    score_batch_size: int = setting(128, "sequences per scored batch", ge=1, observational=True)


class RlPipelineConfig(RlConfig):
    """The `rl` block: the settings of policy optimization (`rewardlab.rl.config.RlConfig`) and where each run
    keeps its resumable state."""

    state_dir: str = setting("data/06_models/rl_state", "resumable policy-optimization state, per run label",
                             observational=True)


PIPELINE_CONFIGS: dict[str, type[TypedConfig]] = {
    "world": WorldConfig,
    "ingest": IngestConfig,
    "grm_train": GrmTrainConfig,
    "ood_eval": OodEvalConfig,
    "bon": BonConfig,
    "rl": RlPipelineConfig,
}


def parameter_problems(parameters: dict[str, Any], blocks: list[str] | None = None) -> list[str]:
    """Every problem of the named parameter blocks (all known blocks by default), one line each."""
    problems = []
    for block in blocks if blocks is not None else list(PIPELINE_CONFIGS):
        model = PIPELINE_CONFIGS.get(block)
        if model is None:
            continue
        values = parameters.get(block)
        if values is not None and not isinstance(values, dict):
            problems.append(f"{block} must be a mapping of parameters, got {values!r}")
            continue
        try:
            config = model.model_validate(values or {})
        except ValidationError as error:
            problems += describe_errors(error, model, block)
            continue
        if isinstance(config, GrmTrainConfig):
            problems += config.variant_problems(block)
    return problems


def check_parameters(parameters: dict[str, Any], blocks: list[str] | None = None) -> None:
    """Raise ParameterError listing every problem of the named blocks."""
    problems = parameter_problems(parameters, blocks)
    if problems:
        raise ParameterError("Invalid parameters:\n" + "\n".join(f"  - {line}" for line in problems))
