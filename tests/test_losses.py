"""Every loss against values worked out by hand with math.log / math.exp."""

import math

import pytest
import torch

from rewardlab.losses import (
    LossConfig,
    bsr_penalty,
    bt_loss,
    compute_loss,
    grm_dpo_noref_reg,
    grm_dpo_reg,
    grm_sft_plain_reg,
    grm_sft_reg,
    label_smoothing_loss,
    margin_loss,
)

R_C = [1.0, -0.5, 2.0]
R_R = [0.0, 0.5, 2.0]  # differences d = 1, -1, 0
S_C = [-3.0, -10.0, -1.0]
S_R = [-4.0, -8.0, -2.0]
REF_C = [-3.5, -9.0, -1.5]
REF_R = [-4.2, -8.1, -2.5]


def logsig(x: float) -> float:
    return -math.log(1.0 + math.exp(-x))


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def mean(values):
    return sum(values) / len(values)


HAND_BT = -mean([logsig(1.0), logsig(-1.0), logsig(0.0)])


def test_bt_loss_by_hand():
    assert bt_loss(t(R_C), t(R_R)).item() == pytest.approx(HAND_BT, rel=1e-6)
    assert HAND_BT == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.e) + math.log(2)) / 3)


def test_margin_loss_uses_given_margin_and_default_for_nan():
    margins = t([0.5, float("nan"), 2.0])  # the NaN falls back to the default 1.0
    expected = -mean([logsig(1.0 - 0.5), logsig(-1.0 - 1.0), logsig(0.0 - 2.0)])
    assert margin_loss(t(R_C), t(R_R), margins, default_margin=1.0).item() == pytest.approx(expected, rel=1e-6)
    expected_default = -mean([logsig(1.0 - 0.25), logsig(-1.0 - 0.25), logsig(-0.25)])
    assert margin_loss(t(R_C), t(R_R), None, default_margin=0.25).item() == pytest.approx(expected_default, rel=1e-6)
    cfg = LossConfig(name="margin", margin=1.0)
    assert compute_loss(cfg, t(R_C), t(R_R), margins=margins)["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_by_hand():
    e = 0.1
    expected = mean([-(1 - e) * logsig(d) - e * logsig(-d) for d in (1.0, -1.0, 0.0)])
    assert label_smoothing_loss(t(R_C), t(R_R), e).item() == pytest.approx(expected, rel=1e-6)
    out = compute_loss(LossConfig(name="label_smoothing", eps=e), t(R_C), t(R_R))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["bt"].item() == pytest.approx(HAND_BT, rel=1e-6)


def test_centered_by_hand():
    c = 0.01
    sums_squared = [(1.0 + 0.0) ** 2, (-0.5 + 0.5) ** 2, (2.0 + 2.0) ** 2]  # 1, 0, 16
    expected = HAND_BT + c * (17.0 / 3.0)
    assert mean(sums_squared) == pytest.approx(17.0 / 3.0)
    out = compute_loss(LossConfig(name="centered", center_coef=c), t(R_C), t(R_R))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["reg"].item() == pytest.approx(17.0 / 3.0, rel=1e-6)


def test_bsr_by_hand():
    lam = 0.5
    all_mean = (1.0 - 0.5 + 2.0 + 0.0 + 0.5 + 2.0) / 6  # 5/6
    penalty = 3 * all_mean**2  # B = 3 pairs
    assert bsr_penalty(t(R_C), t(R_R)).item() == pytest.approx(penalty, rel=1e-6)
    out = compute_loss(LossConfig(name="bsr", lam=lam), t(R_C), t(R_R))
    assert out["loss"].item() == pytest.approx(HAND_BT + lam * 3 * (5 / 6) ** 2, rel=1e-6)
    assert out["reg"].item() == pytest.approx(penalty, rel=1e-6)


def test_grm_sft_by_hand():
    a, b = 0.2, 0.1
    reg = -mean([logsig(b * s) for s in S_C])
    assert grm_sft_reg(t(S_C), b).item() == pytest.approx(reg, rel=1e-6)
    out = compute_loss(LossConfig(name="grm_sft", alpha=a, beta=b), t(R_C), t(R_R), logps_chosen=t(S_C))
    assert out["loss"].item() == pytest.approx((1 - a) * HAND_BT + a * reg, rel=1e-6)
    assert out["reg"].item() == pytest.approx(reg, rel=1e-6)


def test_grm_sft_plain_by_hand():
    a = 0.3
    reg = (3.0 + 10.0 + 1.0) / 3
    assert grm_sft_plain_reg(t(S_C)).item() == pytest.approx(reg, rel=1e-6)
    out = compute_loss(LossConfig(name="grm_sft_plain", alpha=a), t(R_C), t(R_R), logps_chosen=t(S_C))
    assert out["loss"].item() == pytest.approx((1 - a) * HAND_BT + a * reg, rel=1e-6)


def test_grm_dpo_noref_by_hand():
    a, b = 0.25, 0.5
    reg = -mean([logsig(b * (c - r)) for c, r in zip(S_C, S_R)])  # differences 1, -2, 1
    assert reg == pytest.approx(-(2 * logsig(0.5) + logsig(-1.0)) / 3)
    assert grm_dpo_noref_reg(t(S_C), t(S_R), b).item() == pytest.approx(reg, rel=1e-6)
    out = compute_loss(LossConfig(name="grm_dpo_noref", alpha=a, beta=b), t(R_C), t(R_R),
                       logps_chosen=t(S_C), logps_rejected=t(S_R))
    assert out["loss"].item() == pytest.approx((1 - a) * HAND_BT + a * reg, rel=1e-6)


def test_grm_dpo_by_hand():
    a, b = 0.1, 2.0
    # (s_c - ref_c) - (s_r - ref_r) = (0.5 - 0.2), (-1.0 - 0.1), (0.5 - 0.5) = 0.3, -1.1, 0.0
    reg = -mean([logsig(b * 0.3), logsig(b * -1.1), logsig(0.0)])
    assert grm_dpo_reg(t(S_C), t(S_R), t(REF_C), t(REF_R), b).item() == pytest.approx(reg, rel=1e-5)
    out = compute_loss(LossConfig(name="grm_dpo", alpha=a, beta=b), t(R_C), t(R_R), logps_chosen=t(S_C),
                       logps_rejected=t(S_R), ref_logps_chosen=t(REF_C), ref_logps_rejected=t(REF_R))
    assert out["loss"].item() == pytest.approx((1 - a) * HAND_BT + a * reg, rel=1e-5)


def test_grm_dpo_sends_no_gradient_into_reference_logps():
    ref_c = t(REF_C).requires_grad_(True)
    ref_r = t(REF_R).requires_grad_(True)
    s_c = t(S_C).requires_grad_(True)
    grm_dpo_reg(s_c, t(S_R), ref_c, ref_r, 1.0).backward()
    assert ref_c.grad is None and ref_r.grad is None
    assert s_c.grad is not None and bool((s_c.grad != 0).all())


@pytest.mark.parametrize("name", ["grm_sft", "grm_sft_plain", "grm_dpo_noref", "grm_dpo"])
def test_alpha_zero_is_exactly_bradley_terry(name):
    r_c = torch.randn(7)
    r_r = torch.randn(7)
    logps = {"logps_chosen": torch.randn(7) - 5, "logps_rejected": torch.randn(7) - 5,
             "ref_logps_chosen": torch.randn(7) - 5, "ref_logps_rejected": torch.randn(7) - 5}
    out = compute_loss(LossConfig(name=name, alpha=0.0), r_c, r_r, **logps)
    assert torch.equal(out["loss"], compute_loss(LossConfig(name="bt"), r_c, r_r)["loss"])
    assert torch.equal(out["loss"], bt_loss(r_c, r_r))


def test_diagnostics_by_hand():
    out = compute_loss(LossConfig(), t(R_C), t(R_R))
    all_rewards = R_C + R_R
    mu = mean(all_rewards)
    std = math.sqrt(mean([(r - mu) ** 2 for r in all_rewards]))
    assert out["loss"].item() == pytest.approx(HAND_BT, rel=1e-6)
    assert out["accuracy"].item() == pytest.approx(1 / 3)  # the tie (d = 0) does not count as correct
    assert out["reward_mean"].item() == pytest.approx(mu, rel=1e-6)
    assert out["reward_std"].item() == pytest.approx(std, rel=1e-6)
    assert out["margin_mean"].item() == pytest.approx(0.0, abs=1e-7)
    for key, value in out.items():
        assert value.dim() == 0
        assert key == "loss" or not value.requires_grad


def test_loss_gradient_flows_to_rewards():
    r_c = t(R_C).requires_grad_(True)
    r_r = t(R_R).requires_grad_(True)
    compute_loss(LossConfig(name="bsr", lam=0.1), r_c, r_r)["loss"].backward()
    # d/dr_c of -logsig(d)/B is -(1 - sig(d))/B; the penalty adds lam * 2 * B * mean / (2B).
    sig = 1 / (1 + math.exp(-1.0))
    expected = -(1 - sig) / 3 + 0.1 * (5 / 6)
    assert r_c.grad[0].item() == pytest.approx(expected, rel=1e-5)


def test_config_validation_and_properties():
    assert LossConfig.from_dict({"name": "grm_dpo", "alpha": 0.5}).needs_reference
    assert LossConfig(name="grm_sft").needs_logps and not LossConfig(name="grm_sft").needs_reference
    assert not LossConfig(name="bsr").needs_logps
    with pytest.raises(ValueError, match="name"):
        LossConfig(name="hinge")
    with pytest.raises(ValueError, match="gamma is not a known parameter"):
        LossConfig.from_dict({"name": "bt", "gamma": 1.0})
    with pytest.raises(ValueError, match="alpha"):
        LossConfig(name="grm_sft", alpha=1.5)


def test_missing_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="logps_chosen"):
        compute_loss(LossConfig(name="grm_sft"), t(R_C), t(R_R))
    with pytest.raises(ValueError, match="logps_rejected"):
        compute_loss(LossConfig(name="grm_dpo_noref"), t(R_C), t(R_R), logps_chosen=t(S_C))
    with pytest.raises(ValueError, match="ref_logps"):
        compute_loss(LossConfig(name="grm_dpo"), t(R_C), t(R_R), logps_chosen=t(S_C), logps_rejected=t(S_R))
    with pytest.raises(ValueError, match="differ in length"):
        compute_loss(LossConfig(), t(R_C), t(R_R[:2]))
