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

import contextlib
import time

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from cory._trl import entropy_from_logits, selective_log_softmax, unwrap_model_for_generation
from cory.ppo.advantages import PromptGroups, estimator_for
from cory.ppo.distributed import check_deepspeed_accumulation, ddp_only_own_parameters, mean_over_processes
from cory.errors import RunStopped, UsageError
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.config import PPOConfig
from cory.ppo.math import (AdaptiveKLController, FixedKLController, RunningMoments, exact_kl_from_logits, grads_finite,
                           kl_loss, kl_per_token, loss_reducer, masked_mean, masked_var, per_token_rewards, policy_loss,
                           value_loss)
from cory.ppo.rollout import Rollout, context_length, eos_token_ids, is_eos, left_pad, truncate_after_eos
from cory.ppo.sampling import fast_cpu_sampling, sampler_gap


class PPOTrainer:
    """Owns one policy (with a value head unless critic-free), its optimizer and KL controller; shares a frozen
    reference. Critic-free, `step` reads its batch as consecutive groups of `group_size` (default
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
        if config.critic_free != (policy.v_head is None):
            raise UsageError(f"advantage_estimator {config.advantage_estimator} needs a policy "
                             f"{'without' if config.critic_free else 'with'} a value head")
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        if self.deepspeed:
            check_deepspeed_accumulation(self.accelerator, config.gradient_accumulation_steps)
            reference.prepare_for_deepspeed(self.accelerator)
        self.reference = reference
        self.params = policy.trainable_parameters()  # listed once: with peft this walks every named parameter
        # fused: one kernel over all tensors, ~3x faster than torch's per-tensor default on a 2-core CPU (~0.7 s of a CORY
        # step: benchmarks/adam_step.py); the same update up to rounding. Not with DeepSpeed, which brings its own step.
        self.optimizer = torch.optim.Adam(self.params, lr=config.learning_rate, fused=not self.deepspeed)
        if self.accelerator.num_processes > 1:
            ddp_only_own_parameters(policy, self.params)
        with policy.active():  # peft trains only the active adapter: DDP must see this agent's as trainable
            self.model, self.optimizer = self.accelerator.prepare(policy, self.optimizer)
        self.policy: ValueHeadPolicy = self.accelerator.unwrap_model(self.model)
        self.kl_ctl = (
            AdaptiveKLController(config.init_kl_coef, config.target, config.horizon)
            if config.adap_kl_ctrl
            else FixedKLController(config.init_kl_coef)
        )
        self.score_stats = RunningMoments()
        self.rng = np.random.default_rng(seed)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = eos_token_ids(self.policy.lm, tokenizer)
        self.skipped_minibatches = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self._updates = 0
        self.context_length = context_length(self.policy.lm)
        self.forward_seconds = {"policy": 0.0, "reference": 0.0}  # of the last rollout scoring, for benchmarks
        self.distributed = self.accelerator.num_processes > 1
        self._sampled = None  # the last generate's responses and their log-probs under the sampler
        self._sum_across = (lambda t: self.accelerator.reduce(t, "sum")) if self.distributed else None
        self.estimator = estimator_for(config, self._sum_across)  # GAE, or a group estimator when critic-free

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

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
        with unwrap_model_for_generation(self.model, self.accelerator) as unwrapped:
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

    def score_rollout(self, batch: Rollout, reuse: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Log-probs, values (with a critic), reference log-probs and exact KL of the sampled tokens (detached).
        With `reuse` (the first training minibatch's rows) those rows' policy forward runs with gradients, as the
        update would run it, and its output stays under "reused" for the update to train on."""
        chunk = self.config.forward_batch_size or self.config.mini_batch_size
        n, keep = len(batch.responses), batch.responses.shape[1] + 1
        if reuse is None:
            chunks = [torch.arange(start, min(start + chunk, n), device=self.device) for start in range(0, n, chunk)]
        else:
            rest = torch.ones(n, dtype=torch.bool, device=self.device)
            rest[reuse] = False
            chunks = [reuse, *(c for c in rest.nonzero()[:, 0].split(chunk) if len(c))]
        keys = ("logprobs", "ref_logprobs", "exact_kl") + (() if self.config.critic_free else ("values",))
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        self.forward_seconds = {"policy": 0.0, "reference": 0.0}
        reused = None
        for i, idx in enumerate(chunks):
            rows, train = batch.rows(idx), reuse is not None and i == 0
            t0 = time.perf_counter()
            self.policy.train(train)
            with torch.set_grad_enabled(train), self.accelerator.autocast():  # the training forward's autocast: ratio 1 at the start
                logits, values = (self.model if train else self.policy)(rows.input_ids, rows.attention_mask, keep)
            t1 = time.perf_counter()
            with torch.no_grad(), self.accelerator.autocast():
                ref_logits = self.reference.logits(rows.input_ids, rows.attention_mask, keep)
            self.forward_seconds["policy"] += t1 - t0
            self.forward_seconds["reference"] += time.perf_counter() - t1
            if train:
                reused = (logits, values)
                logits, values = logits.detach(), None if values is None else values.detach()
            with torch.no_grad():
                logits, ref_logits = logits[:, :-1], ref_logits[:, :-1]
                parts["logprobs"].append(selective_log_softmax(logits, rows.responses))
                if values is not None:
                    parts["values"].append(values[:, :-1])
                parts["ref_logprobs"].append(selective_log_softmax(ref_logits, rows.responses))
                parts["exact_kl"].append(exact_kl_from_logits(logits, ref_logits))
        where = torch.cat(chunks).argsort()  # back to the batch's order
        scored = {k: torch.cat(v)[where] for k, v in parts.items()}
        return scored if reuse is None else {**scored, "reused": reused}

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
        if self._any_process(not torch.isfinite(raw_scores).all()):
            return self._count_skip("non-finite score(s)" + (f"; the reward raised {score_error}" if score_error else ""))
        scores, batch = self._scale_scores(raw_scores), Rollout.from_lists(queries, responses, self.pad_id, self.device)
        mask = batch.response_mask.float()

        # 1. log-probs and values of the rollout, and the reference's; the first epoch's shuffle is drawn first so
        #    that its first minibatch's forward is this one
        order = self.rng.permutation(len(queries))
        first = torch.as_tensor(order[: cfg.mini_batch_size], device=self.device) if self._reuses_rollout_forward() else None
        rollout = self.score_rollout(batch, first)
        # 2. per-token rewards: the score on the last token, the KL penalty on every token (unless it is a loss term)
        kl = kl_per_token(rollout["logprobs"], rollout["ref_logprobs"], cfg.kl_penalty, rollout["exact_kl"])
        kl_coef = self.kl_ctl.value
        penalty_coef = 0.0 if cfg.kl_in_loss else kl_coef
        rewards, non_score = per_token_rewards(scores, kl, penalty_coef, mask)
        # 3. advantages, by the estimator chosen for this trainer (GAE, or a group estimator over each prompt's responses)
        groups = PromptGroups(group_size or cfg.samples_per_prompt, queries)
        estimate = self.estimator(scores, (kl * mask).sum(-1), penalty_coef, rewards, rollout, mask, groups)
        # 4. PPO epochs over shuffled minibatches (with mask_truncated_completions, a cut response trains no tokens)
        truncated = ~is_eos(batch.responses[torch.arange(len(mask), device=self.device), batch.response_mask.sum(-1) - 1], self.eos_ids)
        loss_mask = mask * (~truncated)[:, None] if cfg.mask_truncated_completions else mask
        t_opt, self._updates = time.perf_counter(), 0
        train_stats = self._optimise(batch, loss_mask, rollout["logprobs"], rollout["ref_logprobs"], estimate.old_values,
                                     estimate.advantages, estimate.returns, order, rollout.get("reused"))
        t_opt = time.perf_counter() - t_opt
        if self._updates == 0:
            self._count_skip("every minibatch had a non-finite loss or gradient, or a ratio over ratio_threshold")
        else:
            self.consecutive_skips = 0
        # 5. stats (averaged over processes), then the KL controller sees this step's penalty KL
        stats = self._stats(batch, rollout, kl, non_score, kl_coef, raw_scores, scores, estimate, train_stats)
        stats.update({"tokens/truncated_fraction": truncated.float().mean().item(), **self._sampler_stats(responses, rollout, mask)})
        stats = mean_over_processes(self.accelerator, stats)
        self.kl_ctl.update(stats["objective/kl"], len(queries) * self.accelerator.num_processes)
        self._stop_if_diverged(stats.get("ppo/loss/total", float("nan")))  # averaged: the same on every process
        stats.update(self._timings(t0, t_opt))
        return stats

    def _sampler_stats(self, responses, rollout, mask) -> dict[str, float]:
        return {} if self._sampled is None else sampler_gap(*self._sampled, responses, rollout["logprobs"], mask)

    def _stop_if_diverged(self, loss: float) -> None:
        cfg = self.config
        if cfg.divergence_loss and abs(loss) > cfg.divergence_loss:  # a NaN loss is the skip counter's business
            raise RunStopped(f"the update diverged: loss {loss:.3g} > divergence_loss {cfg.divergence_loss:g}; lower "
                             "learning_rate or set max_grad_norm (this step is not saved: the newest checkpoint is from before it)")

    def _timings(self, t0: float, t_opt: float) -> dict[str, float]:
        return {
            "time/ppo/forward_pass": self.forward_seconds["policy"] + self.forward_seconds["reference"],
            "time/ppo/policy_forward": self.forward_seconds["policy"],
            "time/ppo/reference_forward": self.forward_seconds["reference"],
            "time/ppo/optimize_step": t_opt,
            "time/ppo/total": time.perf_counter() - t0,
            "ppo/learning_rate": self.optimizer.param_groups[0]["lr"],
        }

    def _any_process(self, flag: bool) -> bool:
        """True if `flag` is true on any process: every process must take the same branch, or DDP hangs."""
        if not self.distributed:
            return bool(flag)
        return bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.device), "sum").item() > 0)

    def _count_skip(self, why: str) -> dict[str, float]:
        """Count a step without any update; too many in a row means the run is broken, so stop."""
        self.skipped_steps += 1
        self.consecutive_skips += 1
        if self.consecutive_skips >= self.config.max_consecutive_skips:
            raise RunStopped(
                f"{self.consecutive_skips} PPO steps in a row made no update (last: {why}); stopping. Check the reward "
                "function, lower learning_rate, or set max_grad_norm."
            )
        return {"ppo/skipped_steps": float(self.skipped_steps), "ppo/skipped_minibatches": float(self.skipped_minibatches)}

    def _optimise(self, batch: Rollout, loss_mask, old_logprobs, ref_logprobs, old_values, advantages, returns,
                  first_order: np.ndarray, reused: tuple | None) -> list[dict]:
        """PPO epochs over minibatches; the first epoch in `first_order`, its first minibatch trained on `reused`
        (the rollout's forward of those rows) when given."""
        cfg = self.config
        keep = batch.responses.shape[1] + 1
        n, per_step = len(batch.responses), cfg.backward_batch_size
        all_stats: list[dict] = []
        self.policy.train()
        self.optimizer.zero_grad()
        for epoch in range(cfg.ppo_epochs):
            order = first_order if epoch == 0 else self.rng.permutation(n)
            for i, start in enumerate(range(0, n, cfg.mini_batch_size)):
                idx = torch.as_tensor(order[start : start + cfg.mini_batch_size], device=self.device)
                last_micro = (i + 1) % cfg.gradient_accumulation_steps == 0
                window = start - start % per_step  # the optimizer step's rows: its loss is a share of theirs
                step_mask = loss_mask[torch.as_tensor(order[window : window + per_step], device=self.device)]
                reduce = loss_reducer(cfg.aggregation, step_mask, cfg.gradient_accumulation_steps, batch.responses.shape[1])
                pick = lambda t: None if t is None else t[idx]  # noqa: E731  critic-free: no values nor returns
                stats = self._train_minibatch(batch.rows(idx), loss_mask[idx], old_logprobs[idx], ref_logprobs[idx],
                                              pick(old_values), advantages[idx], pick(returns), keep, last_micro, reduce,
                                              reused if epoch == i == 0 else None)
                all_stats.append(stats)
            if cfg.target_kl is not None and self._any_process(all_stats[-1]["policy/policykl"] > 1.5 * cfg.target_kl):
                break
        self.optimizer.zero_grad()
        return all_stats

    def _train_minibatch(self, rows: Rollout, mask, old_logprobs, ref_logprobs, old_values, advantages, returns, keep,
                         last_micro, reduce, forward: tuple | None = None) -> dict:
        """Forward (unless given) and backward of one minibatch; its loss is its share of the optimizer step's (`reduce`)."""
        cfg = self.config
        sync = self.accelerator.no_sync(self.model) if not last_micro else contextlib.nullcontext()
        with sync:
            if forward is None:
                with self.accelerator.autocast():  # the model only: log-softmax and losses below run in fp32
                    forward = self.model(rows.input_ids, rows.attention_mask, keep)
            logits, vpreds = forward
            logits = logits[:, :-1]
            logprobs = selective_log_softmax(logits, rows.responses)
            pg_loss, pg_stats = policy_loss(logprobs, old_logprobs, advantages, mask, cfg.cliprange, cfg.cliprange_high, reduce)
            loss, extra = pg_loss, {}
            if vpreds is not None:
                vpreds = vpreds[:, :-1]
                vf_loss, vf_stats = value_loss(vpreds, old_values, returns, mask, cfg.cliprange_value, reduce)
                loss = loss + cfg.vf_coef * vf_loss
                extra = {"loss/value": vf_loss, "val/vpred": masked_mean(vpreds, mask), "val/error": vf_stats["error"],
                         "val/clipfrac": vf_stats["clipfrac"]}
            if cfg.kl_in_loss:
                kl_term = kl_loss(logprobs, old_logprobs, ref_logprobs, mask, reduce)
                loss = loss + self.kl_ctl.value * kl_term
                extra["loss/kl"] = kl_term
            skip = self._any_process(pg_stats["ratio_mean"].item() > cfg.ratio_threshold or not torch.isfinite(loss).item())
            if skip:
                self.skipped_minibatches += 1
            else:
                # the loss is already this minibatch's share of the step; DeepSpeed's engine divides by its own
                # gradient_accumulation_steps (checked equal to ours), so it gets the share times that
                self.accelerator.backward(loss * cfg.gradient_accumulation_steps if self.deepspeed else loss)
        if last_micro:
            scaled = self.accelerator.scaler is not None  # fp16: the grad scaler skips (and learns from) overflows
            if not scaled and not grads_finite(self.params):
                self.skipped_minibatches += 1  # leave the weights (and Adam's moments) untouched
            elif any(p.grad is not None for p in self.params):
                if cfg.max_grad_norm is not None:
                    self.accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                if scaled and self.optimizer.step_was_skipped:
                    self.skipped_minibatches += 1
                else:
                    self._updates += 1
            self.optimizer.zero_grad()
        with torch.no_grad():
            entropy = masked_mean(entropy_from_logits(logits.detach()), mask)
        # logged per minibatch on the scale of one optimizer step's loss; a skipped one's trained nothing: not averaged in
        trained = float("nan") if skip else float(cfg.gradient_accumulation_steps)
        stats = {
            "loss/policy": pg_loss.item() * trained,
            "loss/total": loss.item() * trained,
            "policy/entropy": entropy.item(),
            "policy/approxkl": pg_stats["approxkl"].item(),
            "policy/policykl": pg_stats["policykl"].item(),
            "policy/clipfrac": pg_stats["clipfrac"].item(),
            "policy/clipfrac_low": pg_stats["clipfrac_low"].item(),
            "policy/clipfrac_high": pg_stats["clipfrac_high"].item(),
            "policy/ratio_mean": pg_stats["ratio_mean"].item(),
            "policy/advantages_mean": masked_mean(advantages, mask).item(),
        }
        stats.update({k: v.item() * (trained if k.startswith("loss/") else 1.0) for k, v in extra.items()})
        return stats

    def _stats(self, batch, rollout, kl, non_score, kl_coef, raw_scores, scores, estimate, train_stats):
        mask, returns, old_values = batch.response_mask.float(), estimate.returns, estimate.old_values
        seq_sum = lambda x: (x * mask).sum(-1).mean().item()  # noqa: E731  mean over sequences of a token sum
        stats = {
            "objective/kl": seq_sum(kl),
            "objective/kl_exact": seq_sum(rollout["exact_kl"]),
            "objective/kl_k1": seq_sum(rollout["logprobs"] - rollout["ref_logprobs"]),
            "objective/kl_coef": kl_coef,
            "objective/entropy": seq_sum(-rollout["logprobs"]),
            "ppo/mean_non_score_reward": masked_mean(non_score, mask).item(),
            "ppo/mean_scores": scores.mean().item(),
            "ppo/std_scores": scores.std().item() if len(scores) > 1 else 0.0,
            "env/reward_mean": raw_scores.mean().item(),
            "env/reward_std": raw_scores.std().item() if len(raw_scores) > 1 else 0.0,
            "tokens/queries_len_mean": (batch.attention_mask.sum(-1) - batch.response_mask.sum(-1)).float().mean().item(),
            "tokens/responses_len_mean": batch.response_mask.sum(-1).float().mean().item(),
            "ppo/skipped_minibatches": float(self.skipped_minibatches),
            "ppo/skipped_steps": float(self.skipped_steps),
            "tokens/eos_only_responses": float(((batch.response_mask.sum(-1) == 1) & is_eos(batch.responses[:, 0], self.eos_ids)).sum()),
        }
        if returns is not None:  # the critic's view
            stats.update({
                "ppo/returns/mean": masked_mean(returns, mask).item(),
                "ppo/returns/var": masked_var(returns, mask).item(),
                "ppo/val/mean": masked_mean(old_values, mask).item(),
                "ppo/val/var": masked_var(old_values, mask).item(),
            })
        for key in train_stats[0]:  # losses: over the minibatches that trained (NaN if none did)
            values = np.array([s[key] for s in train_stats])
            if key.startswith("loss/"):
                values = values[~np.isnan(values)]
            stats[f"ppo/{key}"] = float(np.mean(values)) if len(values) else float("nan")
        if returns is not None:
            stats["ppo/val/var_explained"] = 1 - stats["ppo/val/error"] / stats["ppo/returns/var"]
        return {**stats, **estimate.stats}

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything beyond the weights that a resumed run needs."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            "score_stats": self.score_stats.state_dict(),
            "rng": self.rng.bit_generator.state,
            "skipped_minibatches": self.skipped_minibatches,
            "skipped_steps": self.skipped_steps,
            "consecutive_skips": self.consecutive_skips,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.score_stats.load_state_dict(state["score_stats"])
        self.rng.bit_generator.state = state["rng"]
        self.skipped_minibatches = state["skipped_minibatches"]
        self.skipped_steps = state["skipped_steps"]
        self.consecutive_skips = state["consecutive_skips"]
