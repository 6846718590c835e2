"""The named tensors of one PPO step, so that they travel together instead of as a dozen loose arguments.

`Scored`: the rollout under the policy and the reference (detached); `TokenRewards`: the scores and the KL penalty
laid on the tokens; `TrainBatch`: what the update trains on, one row per response (`rows(idx)` takes a minibatch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from cory.ppo.math import kl_per_token, per_token_rewards
from cory.ppo.rollout import Rollout


@dataclass
class Scored:
    """Per-token [batch, response_len] views of the sampled tokens, detached."""

    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    exact_kl: torch.Tensor
    values: torch.Tensor | None = None
    """the value head's, where the estimator trains a critic"""
    reused: tuple | None = None
    """the first training minibatch's forward (logits, values) with its graph, when the rollout's forward is reused"""


@dataclass
class TokenRewards:
    """The step's scores (raw and as trained on) and the per-token reward: the KL penalty on every token, the score
    on the last one (legacy trl). `penalty_coef` is 0 when the KL is a loss term instead (`kl_in_loss`)."""

    raw_scores: torch.Tensor
    scores: torch.Tensor
    kl: torch.Tensor
    kl_coef: float
    penalty_coef: float
    per_token: torch.Tensor
    non_score: torch.Tensor

    @classmethod
    def build(cls, raw_scores, scores, scored: Scored, mask, kl_penalty: str, kl_coef: float, kl_in_loss: bool) -> "TokenRewards":
        kl = kl_per_token(scored.logprobs, scored.ref_logprobs, kl_penalty, scored.exact_kl)
        penalty_coef = 0.0 if kl_in_loss else kl_coef
        per_token, non_score = per_token_rewards(scores, kl, penalty_coef, mask)
        return cls(raw_scores, scores, kl, kl_coef, penalty_coef, per_token, non_score)


@dataclass
class TrainBatch:
    """One row per response: its tokens, which of them train (`loss_mask`), their rollout log-probs under the policy
    and the reference, and the estimator's result (advantages, and a critic's targets where there is one)."""

    rows: Rollout
    loss_mask: torch.Tensor
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    estimate: object  # cory.ppo.advantages.Estimate or CriticEstimate
    kl_coef: float
    """the step's KL coefficient, for the KL as a loss term (`kl_in_loss`)"""

    def select(self, idx: torch.Tensor) -> "TrainBatch":
        return TrainBatch(self.rows.rows(idx), self.loss_mask[idx], self.old_logprobs[idx], self.ref_logprobs[idx],
                          self.estimate.select(idx), self.kl_coef)

    def __len__(self) -> int:
        return len(self.rows.responses)
