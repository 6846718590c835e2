"""PPO hyperparameters, with legacy trl's names and defaults (the paper's Table 1 uses them), checked on creation."""
from __future__ import annotations

from dataclasses import dataclass

from cory.errors import UsageError
from cory.ppo.losses import LOSS_AGGREGATIONS
from cory.ppo.math import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS, SCALE_REWARDS


@dataclass
class PPOConfig:
    """PPO hyperparameters; names follow legacy trl so its users can carry their configs over."""

    learning_rate: float = 1.41e-5
    """Adam learning rate (policy and value head share one optimizer)"""
    batch_size: int = 256
    """samples per PPO step (per process)"""
    mini_batch_size: int = 256
    """samples per gradient computation"""
    gradient_accumulation_steps: int = 1
    """minibatches whose gradients are summed before one optimizer step"""
    ppo_epochs: int = 4
    """passes over the batch per step"""
    forward_batch_size: int = 0
    """rows per no-grad forward when scoring the rollout (0: mini_batch_size)"""
    reuse_rollout_forward: bool = True
    """compute the first minibatch's policy forward once: the rollout's log-probs and values are taken from the
    training forward of the first minibatch of the first epoch (same weights, same rows), as trl's GRPO does;
    equal to the separate no-grad pass to rounding; holds that minibatch's graph while the rest is scored. Off
    by itself with more than one process or an active dropout"""
    gamma: float = 1.0
    """discount"""
    lam: float = 0.95
    """GAE lambda"""
    cliprange: float = 0.2
    """policy ratio clip"""
    cliprange_value: float = 0.2
    """value clip around the rollout's values"""
    vf_coef: float = 0.1
    """value loss weight"""
    adap_kl_ctrl: bool = True
    """adaptive KL coefficient (Ziegler et al.) instead of a fixed one"""
    init_kl_coef: float = 0.2
    """initial (or fixed) KL coefficient"""
    target: float = 6.0
    """adaptive controller: target KL per sequence"""
    horizon: float = 10000.0
    """adaptive controller: horizon in samples"""
    kl_penalty: str = "kl"
    """KL estimator in the per-token reward: kl (k1), abs, mse (k2), low_var_kl (k3), full (exact)"""
    advantage_estimator: str = "gae"
    """gae: a value head and GAE (the paper, legacy trl); rloo / grpo: critic-free, from the scores of
    samples_per_prompt responses to one prompt (no value head is built)"""
    samples_per_prompt: int = 1
    """responses drawn per prompt (k); batch_size counts responses, so a step holds batch_size / k prompts;
    rloo and grpo need k >= 2"""
    kl_in_loss: bool = False
    """the KL to the reference as a loss term (k3 times the ratio pi/pi_old, whose expected gradient is that of
    KL(pi||ref); weighted by the KL coefficient; GRPO's way) instead of a per-token penalty in the reward (the paper's)"""
    scale_rewards: str = "group"
    """grpo: divide the centred task scores by the std of their group (GRPO), of the whole batch, or none (with
    grpo: Dr. GRPO); the KL penalty is never divided"""
    loss_aggregation: str = "auto"
    """how per-token losses make an optimizer step's loss: minibatch_token_mean (legacy trl: each minibatch's
    token mean / accumulation steps), token_mean (every token of the optimizer step alike; DAPO, verl),
    seq_mean_token_mean (each response alike; GRPO's original), seq_mean_token_sum_norm (token sums over a
    constant; Dr. GRPO); auto: minibatch_token_mean with gae (trl parity), token_mean critic-free"""
    cliprange_high: float | None = None
    """upper ratio clip 1 + cliprange_high (clip-higher, DAPO); None: cliprange (symmetric)"""
    mask_truncated_completions: bool = False
    """a response that hit the token limit without an EOS trains no tokens (it stays in its group's baseline);
    refused for tasks whose responses are always cut (IMDB continuations)"""
    max_grad_norm: float | None = None
    """clip the gradient norm (None: no clipping)"""
    target_kl: float | None = None
    """stop the PPO epochs early once the policy KL exceeds 1.5 * target_kl (None: never)"""
    ratio_threshold: float = 10.0
    """skip a minibatch whose mean ratio exceeds this (counted in ppo/skipped_minibatches)"""
    whiten_rewards: bool = False
    """whiten per-token rewards (keeping their mean) before GAE"""
    use_score_scaling: bool = False
    """divide scores by their running std"""
    use_score_norm: bool = False
    """also subtract the running mean (needs use_score_scaling)"""
    score_clip: float | None = None
    """clip scaled scores to [-score_clip, score_clip]"""
    max_consecutive_skips: int = 10
    """stop with an error after this many steps in a row without an update (non-finite scores/loss/gradients)"""
    divergence_loss: float = 1e6
    """stop the run when a step's mean total loss exceeds this in size: the update diverged, e.g. from too high a
    learning_rate (a sane run's losses are O(1) to O(100); 0: never)"""

    def __post_init__(self) -> None:
        positive = ("learning_rate", "batch_size", "mini_batch_size", "gradient_accumulation_steps", "ppo_epochs",
                    "max_consecutive_skips", "cliprange", "cliprange_value", "target", "horizon", "ratio_threshold",
                    "max_grad_norm", "target_kl", "score_clip", "cliprange_high")  # a None of the optional ones means "off"
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UsageError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("init_kl_coef", "vf_coef", "forward_batch_size", "divergence_loss"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.backward_batch_size:
            raise UsageError(
                f"batch_size ({self.batch_size}) must be divisible by mini_batch_size * gradient_accumulation_steps "
                f"({self.mini_batch_size} * {self.gradient_accumulation_steps})"
            )
        if self.kl_penalty not in KL_ESTIMATORS:
            raise UsageError(f"kl_penalty must be one of {KL_ESTIMATORS}, got {self.kl_penalty!r}")
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise UsageError(f"advantage_estimator must be one of {ADVANTAGE_ESTIMATORS}, got {self.advantage_estimator!r}")
        if self.samples_per_prompt < 1 or self.batch_size % self.samples_per_prompt:
            raise UsageError(f"samples_per_prompt must be >= 1 and divide batch_size ({self.batch_size}), got {self.samples_per_prompt}")
        if self.critic_free and self.samples_per_prompt < 2:
            raise UsageError(f"advantage_estimator {self.advantage_estimator} compares responses to one prompt: "
                             f"set samples_per_prompt >= 2 (got {self.samples_per_prompt})")
        if self.scale_rewards not in SCALE_REWARDS:
            raise UsageError(f"scale_rewards must be one of {SCALE_REWARDS}, got {self.scale_rewards!r}")
        if self.scale_rewards != "group" and self.advantage_estimator != "grpo":
            raise UsageError(f"scale_rewards {self.scale_rewards} applies to advantage_estimator grpo only "
                             f"(got {self.advantage_estimator})")
        if self.loss_aggregation not in LOSS_AGGREGATIONS + ("auto",):
            raise UsageError(f"loss_aggregation must be auto or one of {LOSS_AGGREGATIONS}, got {self.loss_aggregation!r}")
        if self.critic_free and (self.gamma != 1 or self.whiten_rewards):
            raise UsageError(f"advantage_estimator {self.advantage_estimator} scores whole responses: gamma must be 1 "
                             f"and whiten_rewards false (got gamma={self.gamma}, whiten_rewards={self.whiten_rewards})")
        if self.use_score_norm and not self.use_score_scaling:
            raise UsageError("use_score_norm needs use_score_scaling=True (legacy trl silently ignored it)")
        if not 0 <= self.lam <= 1 or not 0 <= self.gamma <= 1:
            raise UsageError(f"gamma and lam must lie in [0, 1], got gamma={self.gamma}, lam={self.lam}")

    @property
    def critic_free(self) -> bool:
        return self.advantage_estimator != "gae"

    @property
    def aggregation(self) -> str:
        """loss_aggregation with auto resolved"""
        if self.loss_aggregation != "auto":
            return self.loss_aggregation
        return "token_mean" if self.critic_free else "minibatch_token_mean"

    @property
    def backward_batch_size(self) -> int:
        return self.mini_batch_size * self.gradient_accumulation_steps
