"""The bon pipeline's sampling node and its sample cache: a sampling is drawn once per fingerprint and read back
bit for bit afterwards; a new prompt or sampling setting draws new samples; the cache folder, read and added to
under two catalog names, starts empty and keeps what earlier runs added."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import TINY_TEXTS, save_tiny_base  # noqa: E402

from rewardlab.bon import sample_responses  # noqa: E402
from rewardlab.datasets.atomic_datasets import partial_name  # noqa: E402
from rewardlab.datasets.keyed_cache_dataset import KeyedCacheDataset  # noqa: E402
from rewardlab.pipelines.bon.nodes import sample_policy  # noqa: E402
from rewardlab.pipelines.bon.pipeline import create_pipeline  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"num_prompts": 3, "num_samples": 3, "max_new_tokens": 5, "batch_size": 4, "seed": 1}


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    directory, _ = save_tiny_base(tmp_path_factory.mktemp("policy") / "base_model")
    return str(directory)


@pytest.fixture()
def prompts() -> pd.DataFrame:
    return pd.DataFrame({"prompt": [text.split("Assistant:")[0] + "Assistant:" for text in TINY_TEXTS[:5]]})


def _cache(path: Path) -> KeyedCacheDataset:
    return KeyedCacheDataset(path=str(path), dataset={"type": "rewardlab.datasets.AtomicParquetDataset"},
                             filename_suffix=".parquet")


def _reused(metrics: dict) -> float:
    return metrics["samples_reused"]["value"]


def _run(policy_dir, prompts, cache: KeyedCacheDataset, **params):
    """One run of the node against the cache folder, saving what it adds, as Kedro does."""
    samples, additions, metrics = sample_policy(policy_dir, prompts, PARAMS | params, cache.load())
    cache.save(additions)
    return samples, additions, metrics


def test_a_new_sampling_is_drawn_and_added_to_the_cache(policy_dir, prompts):
    samples, additions, metrics = sample_policy(policy_dir, prompts, PARAMS, {})
    assert _reused(metrics) == 0.0 and metrics["sampling_seconds"]["value"] > 0
    assert len(additions) == 1
    pd.testing.assert_frame_equal(next(iter(additions.values())), samples)
    model = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    fresh = sample_responses(model, AutoTokenizer.from_pretrained(policy_dir), prompts["prompt"].head(3).tolist(),
                             n=3, max_new_tokens=5, seed=1, batch_size=4, progress=False)
    pd.testing.assert_frame_equal(samples, fresh, check_exact=True)
    assert len(samples) == 9


def test_a_known_sampling_is_read_back_bit_for_bit_without_loading_the_policy(policy_dir, prompts, tmp_path,
                                                                                monkeypatch):
    cache = _cache(tmp_path / "bon_sample_cache")
    first, additions, _ = _run(policy_dir, prompts, cache)
    [key] = additions
    assert (tmp_path / "bon_sample_cache" / f"{key}.parquet").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the policy was loaded although its samples are cached")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    # Settings that only concern scoring leave the samples as they are.
    again, additions, metrics = _run(policy_dir, prompts, cache, score_batch_size=7, max_length=33)
    assert _reused(metrics) == 1.0 and additions == {}
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert again["response"].tolist() == first["response"].tolist()
    assert [p.name for p in (tmp_path / "bon_sample_cache").iterdir()] == [f"{key}.parquet"]


@pytest.mark.parametrize("change", [{"seed": 2}, {"temperature": 0.5}, {"top_p": 0.5}, {"max_new_tokens": 4},
                                    {"num_samples": 2}, {"num_prompts": 2}, {"prompt": "other"}])
def test_a_changed_setting_or_prompt_draws_new_samples(policy_dir, prompts, tmp_path, change):
    cache = _cache(tmp_path / "bon_sample_cache")
    first, _, _ = _run(policy_dir, prompts, cache)
    if "prompt" in change:
        prompts = prompts.assign(prompt=[change.pop("prompt"), *prompts["prompt"].iloc[1:]])
    second, additions, metrics = _run(policy_dir, prompts, cache, **change)
    assert _reused(metrics) == 0.0 and len(additions) == 1
    assert not second.equals(first)
    assert len(cache.load()) == 2  # the first sampling stays cached beside the new one
    _, _, back = _run(policy_dir, prompts, cache, **change)
    assert _reused(back) == 1.0


def test_the_cache_starts_empty_and_ignores_unfinished_saves(tmp_path):
    folder = tmp_path / "absent" / "cache"
    cache = _cache(folder)
    assert cache.load() == {} and cache.exists()
    frame = pd.DataFrame({"prompt_idx": [0], "sample_idx": [0], "prompt": ["p"], "response": ["r"],
                          "response_tokens": [1]})
    cache.save({"a" * 32: frame})
    (folder / partial_name("b" * 32 + ".parquet")).write_bytes(b"half a parq")  # a save that was killed
    cache.save({})
    loaded = cache.load()
    assert list(loaded) == ["a" * 32]
    pd.testing.assert_frame_equal(loaded["a" * 32](), frame)


@pytest.mark.parametrize("env", ["base", "gpu"])
def test_the_cache_is_read_and_added_to_under_two_names_for_one_folder(env):
    pipeline = create_pipeline()
    [node] = [n for n in pipeline.nodes if n.name == "sample_policy"]
    assert "bon_sample_cache" in node.inputs and "bon_sample_cache_additions" in node.outputs
    catalog = yaml.safe_load((PROJECT_ROOT / "conf" / env / "catalog.yml").read_text())
    read, added = catalog["bon_sample_cache"], catalog["bon_sample_cache_additions"]
    assert read == added and read["type"].endswith("KeyedCacheDataset")
    assert read["path"] != catalog["bon_samples"]["filepath"]
