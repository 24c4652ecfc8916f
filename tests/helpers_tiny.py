"""Tiny tokenizer / causal LM / pair builders shared by tests (fast on CPU, no network)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}

TINY_TEXTS = [
    "Human: How do I bake bread? Assistant: Mix flour, water, yeast and salt, then let it rise.",
    "Human: What is the capital of France? Assistant: The capital of France is Paris.",
    "Human: Can you help me with my homework? Assistant: Sure, tell me what the question is.",
    "Human: Tell me a joke. Assistant: Why did the chicken cross the road? To get to the other side.",
    "Human: How can I stay healthy? Assistant: Sleep well, eat vegetables and walk every day.",
    "Human: Write a short poem. Assistant: The river runs, the morning sings, the light returns.",
    "I am sorry, I cannot help with that request because it could cause harm.",
    "Thank you for asking! Here is a careful, detailed and friendly answer to your question.",
]


def build_tiny_tokenizer(texts: list[str] | None = None, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few sentences, with pad/bos/eos and right padding."""
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(texts or TINY_TEXTS, vocab_size=vocab_size, min_frequency=1,
                                special_tokens=list(SPECIAL_TOKENS.values()), show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, **SPECIAL_TOKENS)
    tokenizer.padding_side = "right"
    return tokenizer


def build_tiny_llama(tokenizer, seed: int = 0, hidden_size: int = 32, **overrides) -> LlamaForCausalLM:
    """2-layer Llama sized to the tokenizer, weights drawn from a seeded generator."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, **overrides,
    )
    return LlamaForCausalLM(config).eval()


def save_tiny_base(directory: Path, seed: int = 0, tokenizer=None) -> tuple[Path, PreTrainedTokenizerFast]:
    """A base-model directory (LM + tokenizer) that `RewardModel.from_base` can load offline."""
    tokenizer = tokenizer or build_tiny_tokenizer()
    directory = Path(directory)
    build_tiny_llama(tokenizer, seed=seed).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory, tokenizer


def tiny_pairs_df(n: int = 12) -> pd.DataFrame:
    """Plain-text pairs in the pair schema, of varied lengths so padding matters."""
    rows = []
    for i in range(n):
        text = TINY_TEXTS[i % len(TINY_TEXTS)]
        prompt = f"Human: question number {i} about {text[:10 + 3 * i]}\n\nAssistant:"
        rows.append({
            "id": f"pair-{i:03d}",
            "prompt": prompt if i % 5 else "",
            "chosen": " " + TINY_TEXTS[(i + 1) % len(TINY_TEXTS)][: 20 + 5 * (i % 7)],
            "rejected": " " + TINY_TEXTS[(i + 3) % len(TINY_TEXTS)][: 8 + 4 * (i % 5)],
            "margin": float("nan"),
            "source": "tiny",
        })
    return pd.DataFrame(rows, columns=["id", "prompt", "chosen", "rejected", "margin", "source"])


def sqlite_tracking_store(root: Path, experiment: str):
    """A real sqlite MLflow tracking store and Model Registry in `root`, its artifacts beside it, active while the
    generator is (a module fixture's body: creating the tables takes seconds); yields its URI."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(experiment, str(root / "artifacts")))
    yield uri
    mlflow.set_tracking_uri(None)
