"""One run identity: which variant, noise rate and seed, and every parameter that differs from the defaults.

The label names a run everywhere: its MLflow tags, its per-run result files, its resumable training state, the
comparison reports and `kedro grid`'s check for points already done. Two runs share a label only when every
parameter that can change their results is the same, so runs of different configurations never overwrite,
mix or skip each other:

    bt__noise0.25__seed0                              the defaults
    bt__noise0.25__seed0__learning_rate=0.002,tuning=lora
    bt__noise0.25__seed0__cfg-3f9a1c2e                more differences than a readable label holds

Settings that change only speed or how a run is observed (batch sizes for scoring, packing, progress bars,
checkpoint cadence, ...) are marked `observational` in the typed configs and are not part of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from rewardlab.config import DEFAULT_VARIANTS, PIPELINE_CONFIGS, GrmTrainConfig
from rewardlab.training.config import TrainConfig
from rewardlab.typed_config import TypedConfig

# Longest readable list of differences; a longer one is replaced by a hash of it.
MAX_READABLE = 60
_READABLE = re.compile(r"^[A-Za-z0-9_.=,+-]+$")
# Parts of grm_train that the label spells out itself, or that the resolved training config already holds.
_GRM_IN_LABEL = {"variant", "noise_rate", "seed", "ensemble_size", "ensemble_reduce", "train", "variants"}


@dataclass(frozen=True)
class RunIdentity:
    variant: str
    noise_rate: float
    seed: int
    ensemble_size: int = 1
    ensemble_reduce: str = "mean"
    differences: dict[str, Any] = field(default_factory=dict)

    @property
    def config_tag(self) -> str:
        """The differences from the defaults as `key=value,...` (or a hash of them); '' for the defaults."""
        if not self.differences:
            return ""
        text = ",".join(f"{key}={_short(value)}" for key, value in sorted(self.differences.items()))
        if len(text) <= MAX_READABLE and _READABLE.match(text):
            return text
        digest = hashlib.sha256(json.dumps(self.differences, sort_keys=True, default=str).encode()).hexdigest()
        return f"cfg-{digest[:8]}"

    @property
    def variant_label(self) -> str:
        """The variant with its configuration (and ensemble), without noise and seed: what reports group by."""
        label = self.variant
        if self.ensemble_size > 1:
            label += f"__ens{self.ensemble_size}{self.ensemble_reduce}"
        return label + (f"__{self.config_tag}" if self.config_tag else "")

    @property
    def label(self) -> str:
        base = f"{self.variant}__noise{self.noise_rate:g}__seed{self.seed}"
        if self.ensemble_size > 1:
            base += f"__ens{self.ensemble_size}{self.ensemble_reduce}"
        return base + (f"__{self.config_tag}" if self.config_tag else "")

    def tags(self) -> dict[str, str]:
        """MLflow tags of the run."""
        return {"run_label": self.label, "variant": self.variant, "noise_rate": f"{self.noise_rate:g}",
                "seed": str(self.seed), "config_differences": json.dumps(self.differences, sort_keys=True,
                                                                          default=str)[:5000]}


def run_identity(parameters: dict[str, Any]) -> RunIdentity:
    """The identity of a run from its parameters (every block; blocks absent count as their defaults)."""
    grm = GrmTrainConfig.from_dict(parameters.get("grm_train"), "grm_train")
    differences = _training_differences(grm)
    differences |= _differences(grm, GrmTrainConfig(), "", skip=_GRM_IN_LABEL)
    for block, model in PIPELINE_CONFIGS.items():
        if block != "grm_train" and parameters.get(block) is not None:
            differences |= _differences(model.from_dict(parameters[block], block), model(), f"{block}.")
    return RunIdentity(grm.variant, grm.noise_rate, grm.seed, grm.ensemble_size, grm.ensemble_reduce, differences)


def _training_differences(grm: GrmTrainConfig) -> dict[str, Any]:
    """The run's training config against what the defaults give the same variant (a variant the defaults do
    not define is compared with its own settings on the default `train`)."""
    defaults = GrmTrainConfig(variants={**DEFAULT_VARIANTS, grm.variant: DEFAULT_VARIANTS.get(
        grm.variant, grm.variants[grm.variant])}, variant=grm.variant)
    ours, theirs = grm.train_config(), defaults.train_config()
    return _differences(ours, theirs, "", skip={"seed"})


def _differences(ours: TypedConfig, defaults: TypedConfig, prefix: str, skip: set[str] = frozenset()) -> dict:
    skipped = set(skip) | type(ours).observational_fields()
    out = {}
    for name in type(ours).model_fields:
        if name in skipped:
            continue
        mine, default = getattr(ours, name), getattr(defaults, name)
        if isinstance(mine, TypedConfig) and not isinstance(mine, TrainConfig):
            out |= _differences(mine, default, f"{prefix}{name}.")
        elif _plain(mine) != _plain(default):
            out[f"{prefix}{name}"] = _plain(mine)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, TypedConfig):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _short(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)
