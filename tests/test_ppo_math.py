"""PPO math against numbers worked by hand (the comments show the arithmetic)."""
import math

import pytest
import torch

from cory.ppo.kl_control import AdaptiveKLController, FixedKLController, RunningMoments
from cory.ppo.losses import policy_loss, value_loss
from cory.ppo.math import (
    exact_kl_from_logits,
    gae,
    kl_per_token,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_rewards,
)

approx = lambda x: pytest.approx(x, abs=1e-5)  # noqa: E731


def test_masked_mean_and_var_ignore_padding():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = torch.tensor([1, 1, 0, 1])
    # (1 + 2 + 4) / 3
    assert masked_mean(values, mask).item() == approx(7 / 3)
    # squared deviations 16/9 + 1/9 + 25/9 = 42/9; unbiased: / (3 - 1)
    assert masked_var(values, mask).item() == approx(7 / 3)
    assert masked_var(values, mask, unbiased=False).item() == approx(14 / 9)


def test_masked_mean_survives_nan_in_padding():
    assert masked_mean(torch.tensor([1.0, float("nan")]), torch.tensor([1, 0])).item() == 1.0


def test_masked_whiten_uses_valid_tokens_only():
    mask = torch.tensor([1, 1, 0, 1])
    whitened = masked_whiten(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask)
    std = math.sqrt(7 / 3)
    assert whitened[[0, 1, 3]].tolist() == [approx(-4 / 3 / std), approx(-1 / 3 / std), approx(5 / 3 / std)]
    # the padded value does not leak into the statistics
    other = masked_whiten(torch.tensor([1.0, 2.0, 1000.0, 4.0]), mask)
    assert torch.allclose(whitened[[0, 1, 3]], other[[0, 1, 3]])
    # shift_mean=False keeps the mean: -4/3/std + 7/3
    assert masked_whiten(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask, shift_mean=False)[0].item() == approx(-4 / 3 / std + 7 / 3)


def test_gae_three_tokens():
    rewards, values = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    # delta2 = 1 - 0.7 = 0.3;            A2 = 0.3
    # delta1 = 0.7 - 0.6 = 0.1;          A1 = 0.1 + 0.95 * 0.3 = 0.385
    # delta0 = 0.6 - 0.5 = 0.1;          A0 = 0.1 + 0.95 * 0.385 = 0.46575
    assert adv[0].tolist() == [approx(0.46575), approx(0.385), approx(0.3)]
    assert ret[0].tolist() == [approx(0.96575), approx(0.985), approx(1.0)]


def test_gae_padding_ends_the_episode():
    rewards, values = torch.tensor([[0.0, 2.0, 9.0]]), torch.tensor([[0.5, 1.0, 7.0]])
    adv, ret = gae(rewards, values, torch.tensor([[1, 1, 0]]), gamma=0.9, lam=0.5)
    # the padded token counts as reward 0, value 0:   A2 = 0
    # delta1 = 2 + 0.9 * 0 - 1 = 1;                    A1 = 1
    # delta0 = 0 + 0.9 * 1 - 0.5 = 0.4;                A0 = 0.4 + 0.45 * 1 = 0.85
    assert adv[0].tolist() == [approx(0.85), approx(1.0), approx(0.0)]
    assert ret[0, :2].tolist() == [approx(1.35), approx(2.0)]


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.5, 0.25]))
    ref = torch.log(torch.tensor([0.25, 0.5]))
    ln2 = math.log(2)
    assert kl_per_token(logp, ref, "kl").tolist() == [approx(ln2), approx(-ln2)]
    assert kl_per_token(logp, ref, "abs").tolist() == [approx(ln2), approx(ln2)]
    assert kl_per_token(logp, ref, "mse").tolist() == [approx(0.5 * ln2**2), approx(0.5 * ln2**2)]
    # k3 = exp(-k1) - 1 + k1: 0.5 - 1 + ln2 and 2 - 1 - ln2
    assert kl_per_token(logp, ref, "low_var_kl").tolist() == [approx(ln2 - 0.5), approx(1 - ln2)]
    exact = torch.tensor([0.1, 0.2])
    assert kl_per_token(logp, ref, "full", exact) is exact
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_per_token(logp, ref, "k9")


def test_exact_kl_over_the_vocabulary():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.75]])
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.346574 - 0.202733
    assert exact_kl_from_logits(p.log(), q.log()).item() == approx(0.143841)


def test_per_token_rewards_put_the_score_on_the_last_valid_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.9]])
    rewards, non_score = per_token_rewards(torch.tensor([1.0, 2.0]), kl, 0.5, torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert non_score.tolist() == [[approx(-0.05), approx(-0.1), approx(-0.15)], [approx(-0.2), approx(-0.25), 0.0]]
    assert rewards.tolist() == [[approx(-0.05), approx(-0.1), approx(0.85)], [approx(-0.2), approx(1.75), 0.0]]


def test_clipped_policy_loss():
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1]))  # ratios
    adv = torch.tensor([1.0, -1.0, 2.0])
    loss, stats = policy_loss(new, old, adv, torch.ones(3), cliprange=0.2)
    # max(-1*1.5, -1*1.2) = -1.2;  max(0.5, 0.8) = 0.8;  max(-2.2, -2.2) = -2.2  -> mean -2.6/3
    assert loss.item() == approx(-2.6 / 3)
    assert stats["clipfrac"].item() == approx(2 / 3)
    # 0.5 * mean(ln(r)^2) = 0.5 * (0.164402 + 0.480453 + 0.009084) / 3
    assert stats["approxkl"].item() == approx(0.108990)
    assert stats["ratio_mean"].item() == approx(3.1 / 3)


def test_clipped_value_loss():
    values, old, returns = torch.tensor([1.0, 0.4]), torch.tensor([0.5, 0.5]), torch.tensor([2.0, 0.0])
    loss, stats = value_loss(values, old, returns, torch.ones(2), cliprange_value=0.2)
    # token 1: clip(1.0) = 0.7: max((1-2)^2, (0.7-2)^2) = 1.69;  token 2: inside the range: 0.16
    assert loss.item() == approx(0.5 * (1.69 + 0.16) / 2)
    assert stats["clipfrac"].item() == approx(0.5)


def test_running_moments():
    moments = RunningMoments()
    moments.update(torch.tensor([1.0, 2.0, 3.0]))
    assert (moments.mean, moments.std) == (approx(2.0), approx(1.0))
    moments.update(torch.tensor([5.0]))
    # all of [1, 2, 3, 5]: mean 2.75, biased var 8.75 / 4, unbiased std sqrt(8.75 / 3)
    assert (moments.mean, moments.var, moments.std) == (approx(2.75), approx(2.1875), approx(math.sqrt(8.75 / 3)))


def test_adaptive_kl_controller():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(9.0, 256)  # error clip(0.5) = 0.2: x (1 + 0.2 * 256 / 10000)
    assert ctl.value == approx(0.2 * 1.00512)
    ctl.update(3.0, 100)  # error clip(-0.5) = -0.2: x (1 - 0.2 * 100 / 10000)
    assert ctl.value == approx(0.2 * 1.00512 * 0.998)
    ctl.update(6.6, 1000)  # error 0.1: x 1.01
    assert ctl.value == approx(0.2 * 1.00512 * 0.998 * 1.01)
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 256)
    assert fixed.value == 0.3


def test_global_whitening_equals_whitening_the_concatenated_batch():
    """Two processes holding the same shard: sum_across doubles each sum; stats must equal those of [x; x]."""
    from cory.ppo.math import global_masked_mean_var

    values = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    mean, var = global_masked_mean_var(values, mask, lambda t: 2 * t)
    # valid tokens of [x; x]: 1,2,3,4,1,2,3,4 -> mean 2.5, squared deviations sum 2*(2.25+0.25+0.25+2.25) = 10, /7
    assert mean.item() == pytest.approx(2.5) and var.item() == pytest.approx(10 / 7)
    doubled = masked_whiten(torch.cat([values, values]), torch.cat([mask, mask]))
    torch.testing.assert_close(masked_whiten(values, mask, sum_across=lambda t: 2 * t), doubled[:2])
