"""Advantage estimators behind one contract, chosen once per trainer (`estimator_for(config)`).

GAE needs a value head (the paper, legacy trl); the critic-free estimators (RLOO, GRPO) compare each response with
the others in its group: consecutive rows of the batch that answer one prompt (`PromptGroups`, laid out by the loop
or the algorithm). Every estimator returns per-token advantages, zero past each response.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from cory.ppo.config import PPOConfig
from cory.ppo.math import critic_free_stats, gae, group_advantages, masked_whiten


@dataclass
class PromptGroups:
    """The batch's layout: consecutive `size` rows answer one prompt (`queries`: each row's prompt tokens)."""

    size: int
    queries: list[torch.Tensor]

    @cached_property
    def keys(self) -> list[tuple]:
        """Each row's exact prompt, to tell rows that share one (a CORY observer's group may not)."""
        return [tuple(q.tolist()) for q in self.queries]


@dataclass
class Estimate:
    advantages: torch.Tensor
    """[batch, response_len]"""
    returns: torch.Tensor | None = None
    """GAE: the value head's targets (None critic-free)"""
    old_values: torch.Tensor | None = None
    """GAE: the rollout's values (None critic-free)"""
    stats: dict | None = None


class GAEEstimator:
    """Per-token rewards (score on the last token, KL penalty on each) through GAE, then whitened over the batch."""

    def __init__(self, config: PPOConfig, sum_across=None):
        self.config, self.sum_across = config, sum_across

    def __call__(self, scores, kl_sums, kl_coef, rewards, rollout, mask, groups: PromptGroups) -> Estimate:
        if self.config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False, sum_across=self.sum_across)
        advantages, returns = gae(rewards, rollout["values"], mask, self.config.gamma, self.config.lam)
        advantages = masked_whiten(advantages, mask, sum_across=self.sum_across).detach()
        return Estimate(advantages, returns, rollout["values"] * mask, {})


class GroupEstimator:
    """RLOO / GRPO: each response's task score against its group's (GRPO: divided by a std, `scale_rewards`),
    minus `kl_coef` times its summed KL against the group's, never divided (ppo_math.group_advantages)."""

    def __init__(self, config: PPOConfig):
        self.config = config

    def __call__(self, scores, kl_sums, kl_coef, rewards, rollout, mask, groups: PromptGroups) -> Estimate:
        cfg = self.config
        per_response = group_advantages(scores, groups.size, cfg.advantage_estimator, cfg.scale_rewards, kl_sums, kl_coef)
        return Estimate(per_response[:, None] * mask, stats=critic_free_stats(groups.keys, scores, per_response, groups.size))


def estimator_for(config: PPOConfig, sum_across=None):
    """The trainer's estimator, chosen once from `advantage_estimator`."""
    return GroupEstimator(config) if config.critic_free else GAEEstimator(config, sum_across)
