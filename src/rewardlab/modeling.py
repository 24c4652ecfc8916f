"""Reward models: a causal LM (LM head kept) plus a scalar reward head on the last layer's hidden state.

The LM head stays so that GRM regularizers can score response log-probs S(y) with the same backbone.
Batches come either padded (left or right) or packed (several sequences in one row, position ids restarting
at 0, no attention mask); rewards are read at each sequence's last real token in both layouts.

Which models can read packed rows is decided in `rewardlab.packing`.

S(y) is computed from the last hidden states in chunks of `logp_chunk_size` response positions: only a
chunk x vocabulary block of float32 logits exists at a time, and under autograd each chunk's logits are
recomputed in backward instead of being stored.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM, PreTrainedModel

from rewardlab.packing import PackingNotSupportedError, attention_implementation, packing_problem

FORMAT_VERSION = 1
REWARD_CONFIG_FILE = "reward_config.json"
REWARD_HEAD_FILE = "reward_head.safetensors"
ENSEMBLE_CONFIG_FILE = "ensemble_config.json"
HEAD_TYPES = ("linear", "mlp")
ENSEMBLE_REDUCTIONS = ("mean", "min")
MLP_HEAD_WIDTH = 1024
HEAD_DROPOUT = 0.1
# Rows of hidden states pushed through the LM head at once when computing S(y): bounds the fp32 logits
# buffer to chunk x vocab instead of tokens x vocab.
DEFAULT_LOGP_CHUNK_SIZE = 1024
@dataclass
class RewardOutput:
    rewards: torch.Tensor  # [N] float32, read at each sequence's last real token
    last_hidden: torch.Tensor  # [N, h] last-layer hidden state at that token
    response_logps: torch.Tensor | None = None  # [N] S(y), only when asked for


def build_reward_head(hidden_size: int, head_type: str = "linear") -> nn.Sequential:
    """Dropout -> Linear(h, 1), or Dropout -> Linear(h, 1024) -> ReLU -> Linear(1024, 1); float32, seeded by torch."""
    if head_type == "linear":
        head = nn.Sequential(nn.Dropout(HEAD_DROPOUT), nn.Linear(hidden_size, 1))
    elif head_type == "mlp":
        head = nn.Sequential(
            nn.Dropout(HEAD_DROPOUT),
            nn.Linear(hidden_size, MLP_HEAD_WIDTH),
            nn.ReLU(),
            nn.Linear(MLP_HEAD_WIDTH, 1),
        )
    else:
        raise ValueError(f"unknown reward head type {head_type!r}; expected one of {HEAD_TYPES}")
    for layer in head:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features + 1))
            nn.init.zeros_(layer.bias)
    return head.float()


def lm_load_args(options: dict, where: str = "options") -> dict:
    """`from_pretrained` keyword arguments among `options` (training config or pipeline parameters): the
    weights' `dtype` and `attn_implementation`; keys absent or null keep transformers' defaults (the saved
    dtype, sdpa). `where` names the options in errors (e.g. "ood_eval")."""
    args = {key: options[key] for key in ("dtype", "attn_implementation") if options.get(key) is not None}
    if "dtype" in args:
        try:
            resolve_dtype(args["dtype"])
        except ValueError:
            raise ValueError(f"{where}.dtype: {args['dtype']!r} is neither 'auto' nor a torch dtype "
                             "(e.g. bfloat16, float32)") from None
    return args


def resolve_dtype(dtype: str | torch.dtype | None) -> str | torch.dtype | None:
    """Accept torch dtypes, their names ("bfloat16", "torch.float16") or "auto"."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    name = str(dtype).removeprefix("torch.")
    resolved = getattr(torch, name, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return resolved


def last_token_positions(attention_mask: torch.Tensor | None, seq_len: int, n_rows: int, device) -> torch.Tensor:
    """Index of the last position whose mask is 1 in each row (works for left and right padding)."""
    if attention_mask is None:
        return torch.full((n_rows,), seq_len - 1, dtype=torch.long, device=device)
    real = attention_mask.bool()
    if not bool(real.any(dim=-1).all()):
        raise ValueError("a sequence in the batch has no real token (attention_mask all zero)")
    from_end = real.flip(-1).int().argmax(dim=-1)
    return (seq_len - 1 - from_end).long()


def _unwrap_peft(lm: nn.Module) -> PreTrainedModel:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), or the model itself."""
    if not isinstance(lm, PreTrainedModel) and hasattr(lm, "get_base_model"):
        return lm.get_base_model()
    return lm


class RewardModel(nn.Module):
    """Causal LM + reward head. `lm` may be a transformers causal LM or a PEFT wrapper around one."""

    def __init__(self, lm: nn.Module, head_type: str = "linear", reward_head: nn.Sequential | None = None,
                 base_model: str | None = None):
        super().__init__()
        self.lm = lm
        self.head_type = head_type
        causal_lm = _unwrap_peft(lm)
        self.hidden_size = int(causal_lm.config.get_text_config().hidden_size)
        self.reward_head = reward_head if reward_head is not None else build_reward_head(self.hidden_size, head_type)
        self.base_model_name = base_model or str(getattr(causal_lm.config, "_name_or_path", "") or "")
        self.logp_chunk_size = DEFAULT_LOGP_CHUNK_SIZE

    # ---------------------------------------------------------------- construction / persistence
    @classmethod
    def from_base(cls, name_or_path: str | Path, head: str = "linear", dtype=None, trust_remote_code: bool = False,
                  **lm_kwargs) -> "RewardModel":
        """Start from a pretrained causal LM (local directory or hub id) with a freshly initialised head."""
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown reward head type {head!r}; expected one of {HEAD_TYPES}")
        lm = AutoModelForCausalLM.from_pretrained(
            str(name_or_path), dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code, **lm_kwargs
        )
        return cls(lm, head_type=head, base_model=str(name_or_path))

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype=None, trust_remote_code: bool = False,
                        **lm_kwargs) -> "RewardModel":
        directory = Path(directory)
        config_path = directory / REWARD_CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"{config_path} not found: not a saved reward model directory")
        config = json.loads(config_path.read_text())
        if int(config.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{config_path}: format_version {config['format_version']} is newer than {FORMAT_VERSION}")
        lm = AutoModelForCausalLM.from_pretrained(
            str(directory), dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code, **lm_kwargs
        )
        head = build_reward_head(int(config["hidden_size"]), config["head_type"])
        head.load_state_dict(load_file(str(directory / REWARD_HEAD_FILE)))
        model = cls(lm, head_type=config["head_type"], reward_head=head, base_model=config.get("base_model"))
        if model.hidden_size != int(config["hidden_size"]):
            raise ValueError(f"{config_path}: hidden_size {config['hidden_size']} does not match "
                             f"the LM ({model.hidden_size})")
        return model

    @property
    def is_peft(self) -> bool:
        return _unwrap_peft(self.lm) is not self.lm

    def merged_for_saving(self) -> PreTrainedModel:
        """Plain transformers LM to save: adapters merged into a copy, so training can go on with the adapters."""
        if not self.is_peft:
            return self.lm
        return copy.deepcopy(self.lm).merge_and_unload()

    def reward_config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "head_type": self.head_type,
            "hidden_size": self.hidden_size,
            "base_model": self.base_model_name,
        }

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.merged_for_saving().save_pretrained(str(directory))
        head_state = {k: v.detach().float().cpu().contiguous() for k, v in self.reward_head.state_dict().items()}
        save_file(head_state, str(directory / REWARD_HEAD_FILE), metadata={"format": "pt"})
        (directory / REWARD_CONFIG_FILE).write_text(json.dumps(self.reward_config(), indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))

    def frozen_reference(self) -> "RewardModel":
        """Frozen copy (adapters merged, eval mode, no grads) for S_ref(y) in GRM-DPO."""
        lm = self.merged_for_saving() if self.is_peft else copy.deepcopy(self.lm)
        reference = RewardModel(lm, head_type=self.head_type,
                                reward_head=copy.deepcopy(self.reward_head), base_model=self.base_model_name)
        reference.requires_grad_(False)
        return reference.eval()

    # ---------------------------------------------------------------- forward
    def causal_lm(self) -> PreTrainedModel:
        """The transformers causal LM (inside the PEFT wrapper when there is one)."""
        return _unwrap_peft(self.lm)

    def attention_implementation(self) -> str:
        return attention_implementation(self.causal_lm())

    def packing_problem(self) -> str | None:
        """Why packed batches would mix sequences in this model, or None when packing is supported."""
        return packing_problem(self.causal_lm(), self._backbone())

    def supports_packing(self) -> bool:
        """Whether packed batches (restarting position ids, no attention mask) keep sequences apart here."""
        return self.packing_problem() is None

    def _backbone(self) -> nn.Module:
        causal_lm = self.causal_lm()
        backbone = getattr(causal_lm, causal_lm.base_model_prefix, None)
        return backbone if backbone is not None else causal_lm.get_decoder()

    def _final_hidden(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        """Last-layer hidden states (after the final norm) without computing any logits."""
        backbone = self._backbone()
        accepted = inspect.signature(backbone.forward).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        if position_ids is None and attention_mask is not None:
            # Real tokens are numbered 0.. whatever the padding side, so left padding matches right padding.
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if position_ids is not None and ("position_ids" in accepted or takes_kwargs):
            kwargs["position_ids"] = position_ids
        if "use_cache" in accepted or takes_kwargs:
            # With a cache object present, transformers does not split packed rows into separate sequences.
            kwargs["use_cache"] = False
        out = backbone(**kwargs)
        return out[0] if isinstance(out, tuple) else out.last_hidden_state

    def _score_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        head_dtype = next(self.reward_head.parameters()).dtype
        # The head stays in its own precision even under mixed-precision autocast.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return self.reward_head(hidden.to(head_dtype)).squeeze(-1).float()

    def forward(self, input_ids, attention_mask=None, position_ids=None, response_mask=None,
                last_token_index=None, sequence_ids=None, compute_logps: bool = False) -> RewardOutput:
        self._check_layout(attention_mask, position_ids, last_token_index, sequence_ids)
        hidden = self._final_hidden(input_ids, attention_mask, position_ids)
        n_rows, seq_len = input_ids.shape
        flat_hidden = hidden.reshape(n_rows * seq_len, hidden.shape[-1])
        if last_token_index is not None:
            flat_last = last_token_index.to(hidden.device).long()
        else:
            rows = torch.arange(n_rows, device=hidden.device)
            flat_last = rows * seq_len + last_token_positions(attention_mask, seq_len, n_rows, hidden.device)
        last_hidden = flat_hidden[flat_last]
        rewards = self._score_hidden(last_hidden)
        logps = None
        if compute_logps:
            if response_mask is None:
                raise ValueError("compute_logps=True needs a response_mask")
            logps = self._sum_response_logps(hidden, input_ids, response_mask, attention_mask, sequence_ids,
                                             n_sequences=flat_last.shape[0])
        return RewardOutput(rewards=rewards, last_hidden=last_hidden, response_logps=logps)

    def response_logps(self, input_ids, response_mask, attention_mask=None, position_ids=None,
                       sequence_ids=None, n_sequences: int | None = None) -> torch.Tensor:
        """S(y) per sequence without the reward head (e.g. for a frozen reference LM)."""
        self._check_layout(attention_mask, position_ids, None, sequence_ids)
        hidden = self._final_hidden(input_ids, attention_mask, position_ids)
        if n_sequences is None:
            n_sequences = input_ids.shape[0] if sequence_ids is None else int(sequence_ids.max()) + 1
        return self._sum_response_logps(hidden, input_ids, response_mask, attention_mask, sequence_ids, n_sequences)

    def _check_layout(self, attention_mask, position_ids, last_token_index, sequence_ids) -> None:
        packed = attention_mask is None and position_ids is not None and (
            last_token_index is not None or sequence_ids is not None)
        if packed:
            problem = self.packing_problem()
            if problem is not None:
                raise PackingNotSupportedError(f"packed batch refused: {problem}. Use padded batches "
                                               "(TrainConfig.packing: false) or another attention implementation.")

    # ---------------------------------------------------------------- S(y)
    def _token_logps(self, hidden_rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        causal_lm = self.causal_lm()
        logits = causal_lm.get_output_embeddings()(hidden_rows).float()
        softcap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    def _sum_response_logps(self, hidden, input_ids, response_mask, attention_mask, sequence_ids,
                            n_sequences: int) -> torch.Tensor:
        n_rows, seq_len = input_ids.shape
        device = hidden.device
        # Position t predicts token t+1: keep the positions whose next token is a response token.
        counts = response_mask[:, 1:].to(device).bool()
        if attention_mask is not None:
            real = attention_mask.to(device).bool()
            counts = counts & real[:, 1:] & real[:, :-1]
        if sequence_ids is not None:
            sequence_ids = sequence_ids.to(device)
            counts = counts & (sequence_ids[:, 1:] == sequence_ids[:, :-1])
            owner = sequence_ids[:, 1:]
        else:
            owner = torch.arange(n_rows, device=device).unsqueeze(1).expand(n_rows, seq_len - 1)
        rows, cols = counts.nonzero(as_tuple=True)
        source = hidden.reshape(n_rows * seq_len, -1)[rows * seq_len + cols]
        targets = input_ids.to(device)[rows, cols + 1]
        token_owner = owner[rows, cols].long()
        pieces = []
        recompute = torch.is_grad_enabled() and source.requires_grad
        for start in range(0, source.shape[0], self.logp_chunk_size):
            chunk = (source[start:start + self.logp_chunk_size], targets[start:start + self.logp_chunk_size])
            if recompute:
                # Keep only the chunk's hidden rows for backward; its logits are recomputed there.
                pieces.append(checkpoint(self._token_logps, *chunk, use_reentrant=False))
            else:
                pieces.append(self._token_logps(*chunk))
        totals = torch.zeros(n_sequences, dtype=torch.float32, device=device)
        if not pieces:
            return totals
        return totals.index_add(0, token_owner, torch.cat(pieces))


class RewardEnsemble(nn.Module):
    """Several reward models scored as one: rewards combined per sequence by mean or min."""

    def __init__(self, models: list[RewardModel], reduce: str = "mean"):
        super().__init__()
        if not models:
            raise ValueError("a reward ensemble needs at least one member")
        if reduce not in ENSEMBLE_REDUCTIONS:
            raise ValueError(f"unknown ensemble reduction {reduce!r}; expected one of {ENSEMBLE_REDUCTIONS}")
        self.members = nn.ModuleList(models)
        self.reduce = reduce

    def forward(self, input_ids, attention_mask=None, position_ids=None, response_mask=None,
                last_token_index=None, sequence_ids=None, compute_logps: bool = False) -> RewardOutput:
        outputs = [
            member(input_ids, attention_mask=attention_mask, position_ids=position_ids, response_mask=response_mask,
                   last_token_index=last_token_index, sequence_ids=sequence_ids,
                   compute_logps=compute_logps and index == 0)
            for index, member in enumerate(self.members)
        ]
        stacked = torch.stack([out.rewards for out in outputs])
        rewards = stacked.mean(dim=0) if self.reduce == "mean" else stacked.min(dim=0).values
        # Hidden states and S(y) come from the first member: they are diagnostics, not ensemble quantities.
        return RewardOutput(rewards=rewards, last_hidden=outputs[0].last_hidden,
                            response_logps=outputs[0].response_logps)

    def packing_problem(self) -> str | None:
        return next((problem for problem in (m.packing_problem() for m in self.members) if problem), None)

    def supports_packing(self) -> bool:
        return self.packing_problem() is None

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = [f"member_{index:02d}" for index in range(len(self.members))]
        for name, member in zip(names, self.members):
            member.save_pretrained(directory / name, tokenizer=tokenizer)
        config = {"format_version": FORMAT_VERSION, "reduce": self.reduce, "members": names}
        (directory / ENSEMBLE_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype=None, trust_remote_code: bool = False,
                        reduce: str | None = None, **lm_kwargs) -> "RewardEnsemble":
        directory = Path(directory)
        config_path = directory / ENSEMBLE_CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"{config_path} not found: not a saved reward ensemble directory")
        config = json.loads(config_path.read_text())
        members = [
            RewardModel.from_pretrained(directory / name, dtype=dtype, trust_remote_code=trust_remote_code,
                                        **lm_kwargs)
            for name in config["members"]
        ]
        return cls(members, reduce=reduce or config["reduce"])


def load_reward_model(path: str | Path, dtype=None, trust_remote_code: bool = False,
                      **lm_kwargs) -> RewardModel | RewardEnsemble:
    """Load a saved RewardModel or RewardEnsemble, whichever the directory holds; `lm_kwargs` (e.g.
    `attn_implementation`) go to the causal LM's `from_pretrained`."""
    path = Path(path)
    if (path / ENSEMBLE_CONFIG_FILE).exists():
        return RewardEnsemble.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **lm_kwargs)
    if (path / REWARD_CONFIG_FILE).exists():
        return RewardModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **lm_kwargs)
    raise FileNotFoundError(f"{path} holds neither {REWARD_CONFIG_FILE} nor {ENSEMBLE_CONFIG_FILE}")
