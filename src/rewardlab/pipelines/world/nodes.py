"""World nodes: the synthetic preference world the default configuration trains and evaluates on."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rewardlab import world as synthetic


def build_corpus(params: dict[str, Any]) -> pd.DataFrame:
    return synthetic.generate_corpus(synthetic.WorldConfig.from_dict(params, "world"))


def build_base_model(corpus: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Train the tokenizer and pre-train the tiny policy LM (also the reward models' backbone)."""
    cfg = synthetic.WorldConfig.from_dict(params, "world")
    texts = synthetic.corpus_texts(corpus)
    tokenizer = synthetic.train_tokenizer(texts, vocab_size=cfg.vocab_size, model_max_length=cfg.max_length)
    model = synthetic.pretrain_lm(texts, tokenizer, cfg)
    return {"model": model, "tokenizer": tokenizer}


def build_preference_sets(corpus: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, ...]:
    """Pairs labelled by Bradley-Terry sampling on the gold reward, and every eval response with its gold score."""
    cfg = synthetic.WorldConfig.from_dict(params, "world")
    gold = synthetic.GoldReward()
    splits = synthetic.make_preference_splits(corpus, gold, cfg)
    eval_responses = gold_scored_responses(
        {name: splits[name] for name in ("test", "ood_prompt", "ood_response", "ood_both")}, gold
    )
    bon_prompts = synthetic.make_eval_prompts(corpus, cfg)
    return (
        splits["train"],
        splits["test"],
        splits["ood_prompt"],
        splits["ood_response"],
        splits["ood_both"],
        eval_responses,
        bon_prompts,
    )


def gold_scored_responses(eval_sets: dict[str, pd.DataFrame], gold: Any) -> pd.DataFrame:
    """Every distinct (prompt, response) of each eval set with its gold score, for rank correlations."""
    frames = []
    for name, pairs in eval_sets.items():
        responses = pd.concat(
            [
                pairs[["prompt", "chosen"]].rename(columns={"chosen": "response"}),
                pairs[["prompt", "rejected"]].rename(columns={"rejected": "response"}),
            ]
        ).drop_duplicates(ignore_index=True)
        responses["gold"] = gold.score(responses["prompt"].tolist(), responses["response"].tolist())
        responses.insert(0, "eval_set", name)
        frames.append(responses)
    return pd.concat(frames, ignore_index=True)
