"""A PPO step's stats under legacy trl's names: the KL and reward views of the rollout, the minibatches' means, and
the estimator's own (a critic's returns and values, or the critic-free groups')."""
from __future__ import annotations

import numpy as np

from cory.ppo.batch import Scored, TokenRewards
from cory.ppo.math import masked_mean
from cory.ppo.rollout import Rollout, is_eos


def step_stats(batch: Rollout, scored: Scored, rewards: TokenRewards, estimate, train_stats: list[dict], eos_ids: set[int]) -> dict:
    mask = batch.response_mask.float()
    seq_sum = lambda x: (x * mask).sum(-1).mean().item()  # noqa: E731  mean over sequences of a token sum
    scores, raw = rewards.scores, rewards.raw_scores
    stats = {
        "objective/kl": seq_sum(rewards.kl),
        "objective/kl_exact": seq_sum(scored.exact_kl),
        "objective/kl_k1": seq_sum(scored.logprobs - scored.ref_logprobs),
        "objective/kl_coef": rewards.kl_coef,
        "objective/entropy": seq_sum(-scored.logprobs),
        "ppo/mean_non_score_reward": masked_mean(rewards.non_score, mask).item(),
        "ppo/mean_scores": scores.mean().item(),
        "ppo/std_scores": scores.std().item() if len(scores) > 1 else 0.0,
        "env/reward_mean": raw.mean().item(),
        "env/reward_std": raw.std().item() if len(raw) > 1 else 0.0,
        "tokens/queries_len_mean": (batch.attention_mask.sum(-1) - batch.response_mask.sum(-1)).float().mean().item(),
        "tokens/responses_len_mean": batch.response_mask.sum(-1).float().mean().item(),
        "tokens/eos_only_responses": float(((batch.response_mask.sum(-1) == 1) & is_eos(batch.responses[:, 0], eos_ids)).sum()),
        **estimate.critic_stats(mask),
    }
    for key in train_stats[0]:  # losses: over the minibatches that trained (NaN if none did)
        values = np.array([s[key] for s in train_stats])
        if key.startswith("loss/"):
            values = values[~np.isnan(values)]
        stats[f"ppo/{key}"] = float(np.mean(values)) if len(values) else float("nan")
    return {**stats, **estimate.explained(stats), **estimate.stats}
