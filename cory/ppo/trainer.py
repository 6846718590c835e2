"""A step-wise PPO trainer for causal LMs with the classic (legacy trl) semantics.

API: `responses = trainer.generate(queries, **gen_kwargs)`, then `stats = trainer.step(queries, responses, scores)`.
One `step` matches legacy `trl==0.11.4` `PPOTrainer.step` to 1e-4 (tests/test_trl_parity.py), except where
a docstring below says we differ on purpose:
- positions come from the attention mask, so a padded row is computed exactly as alone (trl counted pads);
- a minibatch whose mean ratio exceeds `ratio_threshold` is skipped (no optimizer step at all); legacy trl
  zeroed the loss but still stepped Adam, whose momentum then moved the weights anyway;
- `use_score_norm` without `use_score_scaling` is an error (legacy trl silently did nothing);
- the KL used in the penalty (`objective/kl`, estimator `kl_penalty`) is logged beside the exact KL over the
  vocabulary (`objective/kl_exact`) and the sampled log-ratio (`objective/kl_k1`).
Beyond legacy trl (off by default): critic-free advantages (`advantage_estimator` rloo / grpo over
`samples_per_prompt` responses per prompt, no value head), the KL as a loss term (`kl_in_loss`), named loss
aggregations, clip-higher and masking of truncated responses.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from cory import _trl
from cory.errors import UsageError
from cory.ppo.advantages import PromptGroups, estimator_for
from cory.ppo.batch import TokenRewards, TrainBatch
from cory.ppo.config import PPOConfig
from cory.ppo.distributed import any_process, check_deepspeed_accumulation, ddp_only_own_parameters, mean_over_processes
from cory.ppo.guards import SkipGuard
from cory.ppo.kl_control import AdaptiveKLController, FixedKLController, RunningMoments
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.rollout import Rollout, context_length, eos_token_ids, is_eos, left_pad, truncate_after_eos
from cory.ppo.sampling import fast_cpu_sampling, sampler_gap
from cory.ppo.scoring import RolloutScorer
from cory.ppo.step_stats import step_stats
from cory.ppo.update import PPOUpdate


class PPOTrainer:
    """Owns one policy (with a value head where the estimator trains a critic), its optimizer and KL controller;
    shares a frozen reference. Critic-free, `step` reads its batch as consecutive groups of `group_size` (default
    `samples_per_prompt`) responses to one prompt."""

    def __init__(
        self,
        config: PPOConfig,
        policy: ValueHeadPolicy,
        reference: FrozenReference,
        tokenizer,
        accelerator: Accelerator | None = None,
        seed: int = 0,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.distributed = self.accelerator.num_processes > 1
        self.estimator = estimator_for(config, (lambda t: self.accelerator.reduce(t, "sum")) if self.distributed else None)
        if self.estimator.needs_values != (policy.v_head is not None):
            raise UsageError(f"advantage_estimator {config.advantage_estimator} needs a policy "
                             f"{'with' if self.estimator.needs_values else 'without'} a value head")
        self.deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        if self.deepspeed:
            check_deepspeed_accumulation(self.accelerator, config.gradient_accumulation_steps)
            reference.prepare_for_deepspeed(self.accelerator)
        self.reference = reference
        self.params = policy.trainable_parameters()  # listed once: with peft this walks every named parameter
        # fused: one kernel over all tensors, ~3x faster than torch's per-tensor default on a 2-core CPU (~0.7 s of a CORY
        # step: benchmarks/adam_step.py); the same update up to rounding. Not with DeepSpeed, which brings its own step.
        self.optimizer = torch.optim.Adam(self.params, lr=config.learning_rate, fused=not self.deepspeed)
        if self.distributed:
            ddp_only_own_parameters(policy, self.params)
        with policy.active():  # peft trains only the active adapter: DDP must see this agent's as trainable
            self.model, self.optimizer = self.accelerator.prepare(policy, self.optimizer)
        self.policy: ValueHeadPolicy = self.accelerator.unwrap_model(self.model)
        self.kl_ctl = (AdaptiveKLController(config.init_kl_coef, config.target, config.horizon) if config.adap_kl_ctrl
                       else FixedKLController(config.init_kl_coef))
        self.score_stats = RunningMoments()
        self.rng = np.random.default_rng(seed)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = eos_token_ids(self.policy.lm, tokenizer)
        self.context_length = context_length(self.policy.lm)
        self.guard = SkipGuard(config.max_consecutive_skips, config.divergence_loss)
        self.scorer = RolloutScorer(self.model, self.policy, reference, self.accelerator,
                                    config.forward_batch_size or config.mini_batch_size, self.estimator.needs_values)
        self.update = PPOUpdate(config, self.model, self.optimizer, self.accelerator, self.params, self.guard)
        self._sampled = None  # the last generate's responses and their log-probs under the sampler

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def forward_seconds(self) -> dict[str, float]:
        """The last rollout scoring's policy and reference forward time, for benchmarks."""
        return self.scorer.forward_seconds

    # ----------------------------------------------------------------- rollout
    @torch.no_grad()
    def generate(self, query_tensors: list[torch.Tensor], batch_size: int | None = None, **gen_kwargs) -> list[torch.Tensor]:
        """Sample one response per query, batched with left padding; each is cut after its first EOS. The
        sampler's own log-probs of the sampled tokens (after repetition penalty, top-k/p, temperature) are kept
        for the next `step`, which logs how far the sampler is from pi (`sampling/kl_sampler_policy`)."""
        batch_size = batch_size or len(query_tensors)
        gen_kwargs.setdefault("pad_token_id", self.pad_id)
        responses, sampler_logprobs = [], []
        sampling = bool(gen_kwargs.get("do_sample"))  # greedy decoding has no sampler to compare with pi
        self.policy.eval()
        with _trl.unwrap_model_for_generation(self.model, self.accelerator) as unwrapped:
            for start in range(0, len(query_tensors), batch_size):
                ids, mask = left_pad(query_tensors[start : start + batch_size], self.pad_id)
                # one autocast region: each weight is cast once per call, not once per token
                with self.accelerator.autocast(), fast_cpu_sampling():
                    out = unwrapped.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                             output_scores=sampling, return_dict_in_generate=True, **gen_kwargs)
                tokens = out.sequences[:, ids.shape[1] :]
                chosen = torch.stack([torch.log_softmax(scores.float(), -1).gather(1, tokens[:, t : t + 1])[:, 0]
                                      for t, scores in enumerate(out.scores)], 1) if sampling else tokens.float()
                rows = [truncate_after_eos(row, self.eos_ids) for row in tokens]
                responses += rows
                sampler_logprobs += [lp[: len(row)] for lp, row in zip(chosen, rows)]
        self._sampled = (responses, sampler_logprobs) if sampling else None
        return responses

    def fit_to_context(self, queries: list[torch.Tensor], max_new_tokens: int) -> tuple[list[torch.Tensor], int]:
        """Keep the last tokens of any prompt too long to leave `max_new_tokens` of context; returns (prompts, count cut)."""
        limit = self.context_length - max_new_tokens
        if limit <= 0:
            raise UsageError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a context of {self.context_length}")
        return [q[-limit:] for q in queries], sum(len(q) > limit for q in queries)

    def score_rollout(self, batch: Rollout, reuse: torch.Tensor | None = None):
        """Log-probs, values (with a critic), reference log-probs and exact KL of the sampled tokens (cory.ppo.scoring)."""
        return self.scorer(batch, reuse)

    def _reuses_rollout_forward(self) -> bool:
        """The rollout's policy forward can be the first minibatch's training forward: one process (DDP and
        DeepSpeed pair each training forward with its backward) and no dropout (train and eval mode agree)."""
        dropout = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.policy.modules())
        return self.config.reuse_rollout_forward and not self.distributed and not self.deepspeed and not dropout

    def _scale_scores(self, scores: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.use_score_scaling:
            self.score_stats.update(self.accelerator.gather(scores))
            scale = self.score_stats.std + torch.finfo(scores.dtype).eps
            scores = (scores - self.score_stats.mean) / scale if cfg.use_score_norm else scores / scale
        if cfg.score_clip is not None:
            scores = scores.clamp(-cfg.score_clip, cfg.score_clip)
        return scores

    # -------------------------------------------------------------------- step
    def step(self, queries: list[torch.Tensor], responses: list[torch.Tensor], scores, score_error: str | None = None,
             group_size: int | None = None) -> dict[str, float]:
        """One PPO update on a batch of (query, response, score); returns legacy-named stats. `score_error`: why
        some scores are NaN (the reward's exception), named if the run stops over them. The batch holds
        `batch_size` rows, or a multiple of it (a CORY observer answering each pioneer response several times);
        critic-free, consecutive `group_size` rows (default `samples_per_prompt`) answer one prompt."""
        cfg, t0 = self.config, time.perf_counter()
        if not queries or len(queries) % cfg.batch_size:
            raise ValueError(f"step got {len(queries)} samples, config.batch_size is {cfg.batch_size}")
        raw_scores = torch.as_tensor([float(s) for s in scores], dtype=torch.float32, device=self.device)
        if any_process(self.accelerator, not torch.isfinite(raw_scores).all()):
            return self.guard.skip_step("non-finite score(s)" + (f"; the reward raised {score_error}" if score_error else ""))
        scores, batch = self._scale_scores(raw_scores), Rollout.from_lists(queries, responses, self.pad_id, self.device)
        mask = batch.response_mask.float()

        # 1. log-probs and values of the rollout, and the reference's; the first epoch's shuffle is drawn first so
        #    that its first minibatch's forward is this one
        order = self.rng.permutation(len(queries))
        first = torch.as_tensor(order[: cfg.mini_batch_size], device=self.device) if self._reuses_rollout_forward() else None
        scored = self.score_rollout(batch, first)
        # 2. per-token rewards: the score on the last token, the KL penalty on every token (unless it is a loss term)
        rewards = TokenRewards.build(raw_scores, scores, scored, mask, cfg.kl_penalty, self.kl_ctl.value, cfg.kl_in_loss)
        # 3. advantages, by the estimator chosen for this trainer (GAE, or a group estimator over each prompt's responses)
        estimate = self.estimator(rewards, scored, mask, PromptGroups(group_size or cfg.samples_per_prompt, queries))
        # 4. PPO epochs over shuffled minibatches (with mask_truncated_completions, a cut response trains no tokens)
        last = batch.responses[torch.arange(len(mask), device=self.device), batch.response_mask.sum(-1) - 1]
        truncated = ~is_eos(last, self.eos_ids)
        loss_mask = mask * (~truncated)[:, None] if cfg.mask_truncated_completions else mask
        t_opt = time.perf_counter()
        train_stats = self.update.optimise(TrainBatch(batch, loss_mask, scored.logprobs, scored.ref_logprobs, estimate, rewards.kl_coef),
                                           order, scored.reused, self.rng)
        t_opt = time.perf_counter() - t_opt
        self.guard.stepped(self.update.updates)
        # 5. stats (averaged over processes), then the KL controller sees this step's penalty KL
        stats = {**step_stats(batch, scored, rewards, estimate, train_stats, self.eos_ids), **self.guard.counts(),
                 "tokens/truncated_fraction": truncated.float().mean().item(), **self._sampler_stats(responses, scored, mask)}
        stats = mean_over_processes(self.accelerator, stats)
        self.kl_ctl.update(stats["objective/kl"], len(queries) * self.accelerator.num_processes)
        self.guard.stop_if_diverged(stats.get("ppo/loss/total", float("nan")))  # averaged: the same on every process
        stats.update(self._timings(t0, t_opt))
        return stats

    def _sampler_stats(self, responses, scored, mask) -> dict[str, float]:
        return {} if self._sampled is None else sampler_gap(*self._sampled, responses, scored.logprobs, mask)

    def _timings(self, t0: float, t_opt: float) -> dict[str, float]:
        seconds = self.forward_seconds
        return {
            "time/ppo/forward_pass": seconds["policy"] + seconds["reference"],
            "time/ppo/policy_forward": seconds["policy"],
            "time/ppo/reference_forward": seconds["reference"],
            "time/ppo/optimize_step": t_opt,
            "time/ppo/total": time.perf_counter() - t0,
            "ppo/learning_rate": self.optimizer.param_groups[0]["lr"],
        }

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything beyond the weights that a resumed run needs."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            "score_stats": self.score_stats.state_dict(),
            "rng": self.rng.bit_generator.state,
            **self.guard.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.score_stats.load_state_dict(state["score_stats"])
        self.rng.bit_generator.state = state["rng"]
        self.guard.load_state_dict(state)
