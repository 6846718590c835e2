"""Pure PPO math on masked per-token tensors of shape [batch, response_len]: masked statistics, KL estimators,
per-token rewards, GAE and the critic-free group advantages.

Every function here is unit-tested against numbers worked by hand (tests/test_ppo_math.py).
Masks are float or bool tensors built from response lengths, never from pad-token comparisons.
"""
from __future__ import annotations

import torch

KL_ESTIMATORS = ("kl", "abs", "mse", "low_var_kl", "full")
ADVANTAGE_ESTIMATORS = ("gae", "rloo", "grpo")
SCALE_REWARDS = ("group", "batch", "none")
GRPO_EPS = 1e-4
"""added to a group's std before dividing (trl's GRPO value): a near-tie is not blown up to huge advantages"""


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the positions where `mask` is 1 (all of them, or along `dim`)."""
    mask = mask.to(values.dtype)
    values = torch.where(mask.bool(), values, torch.zeros_like(values))  # pads may hold NaN
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over valid positions; Bessel-corrected by default, as legacy trl."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count < 2:
            raise ValueError("masked_var needs at least two valid tokens for an unbiased variance")
        variance = variance * count / (count - 1)
    return variance


def global_masked_mean_var(values: torch.Tensor, mask: torch.Tensor, sum_across) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and Bessel-corrected variance of the valid tokens of every process; `sum_across` all-reduces a sum."""
    mask = mask.to(values.dtype)
    values = torch.where(mask.bool(), values, torch.zeros_like(values))
    total, count = sum_across(torch.stack([(values * mask).sum(), mask.sum()]))
    mean = total / count
    if count < 2:
        raise ValueError("masked_var needs at least two valid tokens for an unbiased variance")
    return mean, sum_across(((values - mean) ** 2 * mask).sum()) / (count - 1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, sum_across=None) -> torch.Tensor:
    """Whiten with the mean and variance of the valid tokens only; padding does not leak in.

    Data-parallel: pass `sum_across` (a sum over processes) and every process uses the global statistics.
    """
    if sum_across is None:
        mean, var = masked_mean(values, mask), masked_var(values, mask)
    else:
        mean, var = global_masked_mean_var(values, mask, sum_across)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def kl_per_token(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    estimator: str,
    exact_kl: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate from log-probs of the sampled tokens.

    `kl` is k1 (log-ratio, unbiased, can be negative), `abs` |k1|, `mse` k2 = 0.5 * k1^2,
    `low_var_kl` k3 = exp(-k1) - 1 + k1 (Schulman's unbiased, non-negative estimator, clamped to
    [-10, 10] as verl does), and `full` the exact KL over the vocabulary, which the caller computes
    from the full distributions and passes as `exact_kl`.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "kl":
        return log_ratio
    if estimator == "abs":
        return log_ratio.abs()
    if estimator == "mse":
        return 0.5 * log_ratio.square()
    if estimator == "low_var_kl":
        return (torch.exp(-log_ratio) - 1 + log_ratio).clamp(-10.0, 10.0)
    if estimator == "full":
        if exact_kl is None:
            raise ValueError("kl estimator 'full' needs the exact per-token KL (exact_kl)")
        return exact_kl
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")


def exact_kl_from_logits(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || pi_ref) = sum_v p(v) (log p(v) - log q(v)) at every position."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logq = torch.log_softmax(ref_logits.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def per_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (rewards, non_score_rewards): -kl_coef * kl on every token, plus the score on the last valid one."""
    mask = mask.to(kl.dtype)
    non_score = -kl_coef * kl * mask
    lengths = mask.sum(-1).long()
    if (lengths == 0).any():
        raise ValueError("every response needs at least one valid token")
    rewards = non_score.clone()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, lengths - 1] += scores.to(rewards.dtype)
    return rewards, non_score


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses.

    Values and rewards past the end of a response count as zero, so the value after the last
    token is 0 (the episode ends there). Returns (advantages, returns), both unwhitened.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    last_gae = torch.zeros_like(values[:, 0])
    advantages_reversed = []
    length = rewards.shape[-1]
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages_reversed.append(last_gae)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, advantages + values


def centre_in_groups(values: torch.Tensor, group_size: int, estimator: str) -> torch.Tensor:
    """Each value minus its group's baseline (groups: consecutive `group_size` values): the mean of the group's
    other values (RLOO, Ahmadian et al. 2024) or the group mean (GRPO, Shao et al. 2024)."""
    if group_size < 2 or values.numel() % group_size:
        raise ValueError(f"{values.numel()} values do not split into groups of {group_size} >= 2")
    groups = values.reshape(-1, group_size)
    if estimator == "rloo":
        return (groups - (groups.sum(1, keepdim=True) - groups) / (group_size - 1)).flatten()
    if estimator == "grpo":
        return (groups - groups.mean(1, keepdim=True)).flatten()
    raise ValueError(f"unknown critic-free estimator {estimator!r}; choose rloo or grpo")


def zero_variance_groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """One flag per group: all its scores tie (such a group carries no task signal)."""
    groups = scores.reshape(-1, group_size)
    return (groups == groups[:, :1]).all(1)


def within_group_share(values: torch.Tensor, keys: list) -> float:
    """The share of the variance of `values` that lies within rows of equal key: sum of squared deviations from
    each key's mean over those from the overall mean (NaN if the values do not vary)."""
    values = values.double()
    total = (values - values.mean()).square().sum()
    index = torch.tensor([{k: i for i, k in enumerate(dict.fromkeys(keys))}[k] for k in keys])
    means = torch.zeros(int(index.max()) + 1, dtype=values.dtype).index_add_(0, index, values) \
        / torch.bincount(index).to(values.dtype)
    within = (values - means[index]).square().sum()
    return (within / total).item() if total > 0 else float("nan")


def critic_free_stats(prompt_keys: list, scores: torch.Tensor, advantages: torch.Tensor, group_size: int) -> dict[str, float]:
    """What a critic-free step learnt from: the share of groups whose scores tie, how much of the advantages'
    variance lies between responses to the exact same prompt (1: every comparison is within one prompt), and
    their mean size."""
    return {
        "critic_free/zero_variance_groups": zero_variance_groups(scores, group_size).float().mean().item(),
        "critic_free/within_prompt_share": within_group_share(advantages, prompt_keys),
        "critic_free/advantage_abs_mean": advantages.abs().mean().item(),
    }


def group_advantages(scores: torch.Tensor, group_size: int, estimator: str, scale: str = "group",
                     kl_sums: torch.Tensor | None = None, kl_coef: float = 0.0) -> torch.Tensor:
    """Critic-free advantage of each response: its task score against its group's (centre_in_groups), for GRPO
    divided by the std of the scores (`scale`: the group's, the batch's, or none: Dr. GRPO), then minus
    `kl_coef` times its summed KL against its group's the same way, unscaled.

    Only the task score is standardised: were the KL inside the standardised return, a group whose scores tie
    would be divided by the KL's own std, the coefficient would cancel and the KL alone would set O(1)
    advantages. So a tied group gets `-kl_coef * (K - baseline)`, and no group is ever divided by ~0 (a group
    of tied scores has score advantage exactly 0; GRPO_EPS floors the std of near-ties). For RLOO this is the
    same as leave-one-out on the KL-penalised return `score - kl_coef * K` (as trl's RLOO), since both are linear.
    """
    advantages = centre_in_groups(scores, group_size, estimator)
    if estimator == "grpo" and scale != "none":
        if scale == "group":
            std = scores.reshape(-1, group_size).std(1, keepdim=True).expand(-1, group_size).flatten()
        elif scale == "batch":
            std = scores.std().expand_as(scores)
        else:
            raise ValueError(f"scale must be one of {SCALE_REWARDS}, got {scale!r}")
        advantages = advantages / (std + GRPO_EPS)
    advantages = torch.where(zero_variance_groups(scores, group_size).repeat_interleave(group_size), 0.0, advantages)
    if kl_sums is not None and kl_coef:
        advantages = advantages - kl_coef * centre_in_groups(kl_sums, group_size, estimator)
    return advantages
