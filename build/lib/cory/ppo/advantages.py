"""Advantage estimators behind one contract, chosen once per trainer (`estimator_for(config)`), and the one place
that decides whether a critic exists.

GAE needs a value head (the paper, legacy trl): its estimate carries the critic's targets and adds the value loss
(`CriticEstimate`). The critic-free estimators (RLOO, GRPO) compare each response with the others in its group:
consecutive rows of the batch that answer one prompt (`PromptGroups`, laid out by the loop or the algorithm); their
estimate has no critic term. Every estimator returns per-token advantages, zero past each response.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from cory.ppo.batch import Scored, TokenRewards
from cory.ppo.config import PPOConfig
from cory.ppo.losses import value_loss
from cory.ppo.math import critic_free_stats, gae, group_advantages, masked_mean, masked_var, masked_whiten


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
    """Critic-free: per-token advantages [batch, response_len] and the estimator's own stats; nothing else to train."""

    advantages: torch.Tensor
    stats: dict = field(default_factory=dict)

    def select(self, idx: torch.Tensor) -> "Estimate":
        return Estimate(self.advantages[idx], self.stats)

    def add_critic_loss(self, loss: torch.Tensor, values, mask, config: PPOConfig, reduce) -> tuple[torch.Tensor, dict]:
        """The minibatch loss with the critic's term added, and that term's stats: none here."""
        return loss, {}

    def critic_stats(self, mask: torch.Tensor) -> dict[str, float]:
        return {}

    def explained(self, stats: dict) -> dict[str, float]:
        return {}


@dataclass
class CriticEstimate(Estimate):
    """GAE: also the value head's targets (`returns`) and the rollout's values (`old_values`, for the clipped loss)."""

    returns: torch.Tensor = None
    old_values: torch.Tensor = None

    def select(self, idx: torch.Tensor) -> "CriticEstimate":
        return CriticEstimate(self.advantages[idx], self.stats, self.returns[idx], self.old_values[idx])

    def add_critic_loss(self, loss, values, mask, config, reduce):
        vpreds = values[:, :-1]
        vf_loss, vf_stats = value_loss(vpreds, self.old_values, self.returns, mask, config.cliprange_value, reduce)
        return loss + config.vf_coef * vf_loss, {"loss/value": vf_loss, "val/vpred": masked_mean(vpreds, mask),
                                                  "val/error": vf_stats["error"], "val/clipfrac": vf_stats["clipfrac"]}

    def critic_stats(self, mask):
        return {"ppo/returns/mean": masked_mean(self.returns, mask).item(), "ppo/returns/var": masked_var(self.returns, mask).item(),
                "ppo/val/mean": masked_mean(self.old_values, mask).item(), "ppo/val/var": masked_var(self.old_values, mask).item()}

    def explained(self, stats):
        """The share of the returns' variance the value head explains, from the step's aggregated stats."""
        return {"ppo/val/var_explained": 1 - stats["ppo/val/error"] / stats["ppo/returns/var"]}


class GAEEstimator:
    """Per-token rewards (score on the last token, KL penalty on each) through GAE, then whitened over the batch."""

    needs_values = True

    def __init__(self, config: PPOConfig, sum_across=None):
        self.config, self.sum_across = config, sum_across

    def __call__(self, rewards: TokenRewards, scored: Scored, mask: torch.Tensor, groups: PromptGroups) -> CriticEstimate:
        per_token = rewards.per_token
        if self.config.whiten_rewards:
            per_token = masked_whiten(per_token, mask, shift_mean=False, sum_across=self.sum_across)
        advantages, returns = gae(per_token, scored.values, mask, self.config.gamma, self.config.lam)
        advantages = masked_whiten(advantages, mask, sum_across=self.sum_across).detach()
        return CriticEstimate(advantages, {}, returns, scored.values * mask)


class GroupEstimator:
    """RLOO / GRPO: each response's task score against its group's (GRPO: divided by a std, `scale_rewards`),
    minus `kl_coef` times its summed KL against the group's, never divided (ppo_math.group_advantages)."""

    needs_values = False

    def __init__(self, config: PPOConfig):
        self.config = config

    def __call__(self, rewards: TokenRewards, scored: Scored, mask: torch.Tensor, groups: PromptGroups) -> Estimate:
        cfg = self.config
        kl_sums = (rewards.kl * mask).sum(-1)
        per_response = group_advantages(rewards.scores, groups.size, cfg.advantage_estimator, cfg.scale_rewards, kl_sums,
                                        rewards.penalty_coef)
        return Estimate(per_response[:, None] * mask, critic_free_stats(groups.keys, rewards.scores, per_response, groups.size))


def estimator_for(config: PPOConfig, sum_across=None):
    """The trainer's estimator, chosen once from `advantage_estimator`; its `needs_values` says whether a critic exists."""
    return GroupEstimator(config) if config.critic_free else GAEEstimator(config, sum_across)
