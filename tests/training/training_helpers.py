"""Small inputs shared by the training tests: a tiny base model, pairs and a fast configuration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from rewardlab.training import TrainConfig

FAST = {
    "per_device_batch_size": 4,
    "max_length": 48,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.1,
    "progress": False,
}


def fast_config(**overrides) -> TrainConfig:
    loss = overrides.pop("loss", {"name": "bt"})
    return TrainConfig.from_dict({**FAST, "loss": loss, **overrides})


def separable_pairs(n: int) -> pd.DataFrame:
    """Chosen answers are friendly and helpful, rejected ones refuse: one feature separates every pair."""
    topics = ["bread", "rivers", "homework", "jokes", "health", "poems", "Paris", "salt"]
    good = [" Thank you for asking! Here is a careful answer.", " Sure, here is a friendly and detailed answer."]
    bad = [" I am sorry, I cannot help with that.", " No. I cannot help with that request."]
    rows = []
    for i in range(n):
        rows.append({
            "id": f"sep-{i:03d}",
            "prompt": f"Human: Tell me about {topics[i % len(topics)]} number {i}.\n\nAssistant:",
            "chosen": good[i % 2],
            "rejected": bad[(i // 2) % 2],
            "margin": float("nan"),
            "source": "toy",
        })
    return pd.DataFrame(rows)


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


CHILD = Path(__file__).with_name("resume_child.py")


def write_child_spec(tmp_path: Path, name: str, base: Path, pairs_file: Path, config: dict, state_dir: Path,
                     kill_at_step: int | None = None) -> Path:
    """The spec file `resume_child.py` reads; its results go to `<name>.safetensors` and `<name>.json`."""
    import json

    spec = {"base": str(base), "pairs": str(pairs_file), "config": config, "state_dir": str(state_dir),
            "kill_at_step": kill_at_step, "weights_out": str(tmp_path / f"{name}.safetensors"),
            "history_out": str(tmp_path / f"{name}.json")}
    spec_file = tmp_path / f"{name}-spec.json"
    spec_file.write_text(json.dumps(spec))
    return spec_file
