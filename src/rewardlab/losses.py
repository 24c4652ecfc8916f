"""Reward-model training losses: Bradley-Terry and its variants, BSR and the GRM regularizers.

All functions take per-pair 1-D tensors (chosen rewards first, rejected second) and return scalar means over
the pairs of the micro-batch. Every regularizer helper returns its term *unweighted*; `compute_loss` applies
the weights from `LossConfig`:

    bt               L_BT = -mean logsig(r_c - r_r)
    margin           -mean logsig(r_c - r_r - m)      (m per pair when known, else cfg.margin)
    label_smoothing  mean[-(1-e) logsig(d) - e logsig(-d)],  d = r_c - r_r
    centered         L_BT + c * mean((r_c + r_r)^2)
    bsr              L_BT + lam * B * mean(all 2B rewards)^2
    grm_*            (1-a) L_BT + a L_reg, with L_reg from the grm_*_reg helpers
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from rewardlab.typed_config import TypedConfig, setting

LOSS_NAMES = ("bt", "margin", "label_smoothing", "centered", "bsr",
              "grm_sft", "grm_sft_plain", "grm_dpo_noref", "grm_dpo")
GRM_LOSSES = ("grm_sft", "grm_sft_plain", "grm_dpo_noref", "grm_dpo")


class LossConfig(TypedConfig):
    """Which training loss, and its weights."""

    name: Literal[LOSS_NAMES] = setting("bt", "the loss: bt, margin, label_smoothing, centered, bsr or a GRM form")
    alpha: float = setting(0.01, "GRM weight a in (1-a) L_BT + a L_reg", ge=0.0, le=1.0)
    beta: float = setting(0.1, "GRM b inside the log-sigmoid regularizers")
    lam: float = setting(1e-3, "BSR lambda: L_BT + lam * B * mean(rewards)^2")
    eps: float = setting(0.1, "label smoothing e", ge=0.0, le=1.0)
    center_coef: float = setting(0.01, "centered rewards c: L_BT + c * mean((r_c + r_r)^2)")
    margin: float = setting(1.0, "margin m for pairs that carry none")

    @property
    def needs_logps(self) -> bool:
        return self.name in GRM_LOSSES

    @property
    def needs_rejected_logps(self) -> bool:
        """Whether the regularizer reads S(y_r) too; the SFT forms read S(y_c) only, so the LM head can skip
        every rejected response."""
        return self.name in ("grm_dpo_noref", "grm_dpo")

    @property
    def needs_reference(self) -> bool:
        return self.name == "grm_dpo"


def _pair_tensors(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Float32 1-D views, all of the same length."""
    out = [t.float().reshape(-1) for t in tensors]
    lengths = {t.shape[0] for t in out}
    if len(lengths) != 1:
        raise ValueError(f"per-pair tensors differ in length: {[t.shape[0] for t in out]}")
    if out[0].shape[0] == 0:
        raise ValueError("cannot compute a loss over zero pairs")
    return out


def bt_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    r_c, r_r = _pair_tensors(rewards_chosen, rewards_rejected)
    return -F.logsigmoid(r_c - r_r).mean()


def margin_loss(rewards_chosen, rewards_rejected, margins=None, default_margin: float = 1.0) -> torch.Tensor:
    """-mean logsig(r_c - r_r - m); NaN or missing margins fall back to default_margin."""
    r_c, r_r = _pair_tensors(rewards_chosen, rewards_rejected)
    if margins is None:
        m = torch.full_like(r_c, float(default_margin))
    else:
        m = torch.as_tensor(margins, dtype=torch.float32, device=r_c.device).reshape(-1)
        if m.shape[0] != r_c.shape[0]:
            raise ValueError(f"margins has {m.shape[0]} entries for {r_c.shape[0]} pairs")
        m = torch.where(torch.isnan(m), torch.full_like(m, float(default_margin)), m)
    return -F.logsigmoid(r_c - r_r - m).mean()


def label_smoothing_loss(rewards_chosen, rewards_rejected, eps: float) -> torch.Tensor:
    r_c, r_r = _pair_tensors(rewards_chosen, rewards_rejected)
    d = r_c - r_r
    return (-(1.0 - eps) * F.logsigmoid(d) - eps * F.logsigmoid(-d)).mean()


def centered_penalty(rewards_chosen, rewards_rejected) -> torch.Tensor:
    """mean((r_c + r_r)^2), the unweighted centering term."""
    r_c, r_r = _pair_tensors(rewards_chosen, rewards_rejected)
    return ((r_c + r_r) ** 2).mean()


def bsr_penalty(rewards_chosen, rewards_rejected) -> torch.Tensor:
    """B * (mean of the 2B rewards)^2, unweighted; B = pairs in the micro-batch."""
    r_c, r_r = _pair_tensors(rewards_chosen, rewards_rejected)
    n_pairs = r_c.shape[0]
    return n_pairs * torch.cat([r_c, r_r]).mean() ** 2


def grm_sft_reg(logps_chosen, beta: float) -> torch.Tensor:
    (s_c,) = _pair_tensors(logps_chosen)
    return -F.logsigmoid(beta * s_c).mean()


def grm_sft_plain_reg(logps_chosen) -> torch.Tensor:
    (s_c,) = _pair_tensors(logps_chosen)
    return -s_c.mean()


def grm_dpo_noref_reg(logps_chosen, logps_rejected, beta: float) -> torch.Tensor:
    s_c, s_r = _pair_tensors(logps_chosen, logps_rejected)
    return -F.logsigmoid(beta * (s_c - s_r)).mean()


def grm_dpo_reg(logps_chosen, logps_rejected, ref_logps_chosen, ref_logps_rejected, beta: float) -> torch.Tensor:
    s_c, s_r, ref_c, ref_r = _pair_tensors(logps_chosen, logps_rejected, ref_logps_chosen, ref_logps_rejected)
    # The reference is a fixed target: no gradient flows into it even if the caller forgot no_grad.
    return -F.logsigmoid(beta * ((s_c - ref_c.detach()) - (s_r - ref_r.detach()))).mean()


def _grm_reg(cfg: LossConfig, logps_chosen, logps_rejected, ref_logps_chosen, ref_logps_rejected) -> torch.Tensor:
    if logps_chosen is None:
        raise ValueError(f"loss {cfg.name!r} needs logps_chosen (response log-probs S(y_c))")
    if cfg.name == "grm_sft":
        return grm_sft_reg(logps_chosen, cfg.beta)
    if cfg.name == "grm_sft_plain":
        return grm_sft_plain_reg(logps_chosen)
    if logps_rejected is None:
        raise ValueError(f"loss {cfg.name!r} needs logps_rejected (response log-probs S(y_r))")
    if cfg.name == "grm_dpo_noref":
        return grm_dpo_noref_reg(logps_chosen, logps_rejected, cfg.beta)
    if ref_logps_chosen is None or ref_logps_rejected is None:
        raise ValueError("loss 'grm_dpo' needs ref_logps_chosen and ref_logps_rejected from the frozen reference")
    return grm_dpo_reg(logps_chosen, logps_rejected, ref_logps_chosen, ref_logps_rejected, cfg.beta)


def compute_loss(cfg: LossConfig, rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor,
                 logps_chosen=None, logps_rejected=None, ref_logps_chosen=None, ref_logps_rejected=None,
                 margins=None) -> dict[str, torch.Tensor]:
    """Total loss ("loss", what is backpropagated) plus its parts and detached diagnostics.

    "bt" is always the plain Bradley-Terry loss (a diagnostic for margin/label_smoothing); "reg" is the
    unweighted extra term for GRM, BSR and centered losses.
    """
    if not isinstance(cfg, LossConfig):
        raise ValueError(f"cfg must be a LossConfig, got {type(cfg).__name__}")
    r_c, r_r = _pair_tensors(rewards_chosen, rewards_rejected)
    bt = bt_loss(r_c, r_r)
    parts: dict[str, torch.Tensor] = {"bt": bt}
    if cfg.name == "bt":
        loss = bt
    elif cfg.name == "margin":
        loss = margin_loss(r_c, r_r, margins, cfg.margin)
    elif cfg.name == "label_smoothing":
        loss = label_smoothing_loss(r_c, r_r, cfg.eps)
    elif cfg.name == "centered":
        parts["reg"] = centered_penalty(r_c, r_r)
        loss = bt + cfg.center_coef * parts["reg"]
    elif cfg.name == "bsr":
        parts["reg"] = bsr_penalty(r_c, r_r)
        loss = bt + cfg.lam * parts["reg"]
    else:
        parts["reg"] = _grm_reg(cfg, logps_chosen, logps_rejected, ref_logps_chosen, ref_logps_rejected)
        # With a = 0 the total is exactly L_BT (and no gradient reaches the LM head through the regularizer).
        loss = bt if cfg.alpha == 0 else (1.0 - cfg.alpha) * bt + cfg.alpha * parts["reg"]
    with torch.no_grad():
        all_rewards = torch.cat([r_c, r_r])
        diagnostics = {
            "accuracy": (r_c > r_r).float().mean(),
            "reward_mean": all_rewards.mean(),
            "reward_std": all_rewards.std(correction=0),
            "margin_mean": (r_c - r_r).mean(),
        }
    out = {"loss": loss}
    out.update({key: value if key == "loss" else value.detach() for key, value in parts.items()})
    out.update({key: value.detach() for key, value in diagnostics.items()})
    return out
