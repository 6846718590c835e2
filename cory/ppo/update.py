"""The PPO update: epochs over shuffled minibatches of a `TrainBatch`, each minibatch's loss (clipped policy loss,
the estimator's critic term, the KL term if it is a loss) as its share of the optimizer step, with its guards."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from accelerate.utils import DistributedType

from cory import _trl
from cory.ppo.batch import TrainBatch
from cory.ppo.config import PPOConfig
from cory.ppo.distributed import any_process
from cory.ppo.guards import SkipGuard
from cory.ppo.losses import grads_finite, kl_loss, loss_reducer, policy_loss
from cory.ppo.math import masked_mean


class PPOUpdate:
    """Trains one agent's `model` (its optimizer, its trainable `params`) on a step's `TrainBatch`; `updates` counts
    the optimizer steps the last call made."""

    def __init__(self, config: PPOConfig, model, optimizer, accelerator, params: list, guard: SkipGuard):
        self.config, self.model, self.optimizer, self.accelerator = config, model, optimizer, accelerator
        self.policy, self.params, self.guard = accelerator.unwrap_model(model), params, guard
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        self.updates = 0

    def optimise(self, batch: TrainBatch, first_order: np.ndarray, reused: tuple | None, rng) -> list[dict]:
        """PPO epochs over minibatches; the first epoch in `first_order`, its first minibatch trained on `reused`
        (the rollout's forward of those rows) when given; later epochs' orders drawn from `rng`."""
        cfg, device = self.config, self.accelerator.device
        n, per_step = len(batch), cfg.backward_batch_size
        all_stats: list[dict] = []
        self.updates = 0
        self.policy.train()
        self.optimizer.zero_grad()
        for epoch in range(cfg.ppo_epochs):
            order = first_order if epoch == 0 else rng.permutation(n)
            for i, start in enumerate(range(0, n, cfg.mini_batch_size)):
                idx = torch.as_tensor(order[start : start + cfg.mini_batch_size], device=device)
                window = start - start % per_step  # the optimizer step's rows: its loss is a share of theirs
                step_mask = batch.loss_mask[torch.as_tensor(order[window : window + per_step], device=device)]
                reduce = loss_reducer(cfg.aggregation, step_mask, cfg.gradient_accumulation_steps, batch.rows.responses.shape[1])
                last_micro = (i + 1) % cfg.gradient_accumulation_steps == 0
                all_stats.append(self.train_minibatch(batch.select(idx), reduce, last_micro, reused if epoch == i == 0 else None))
            if cfg.target_kl is not None and any_process(self.accelerator, all_stats[-1]["policy/policykl"] > 1.5 * cfg.target_kl):
                break
        self.optimizer.zero_grad()
        return all_stats

    def train_minibatch(self, mini: TrainBatch, reduce, last_micro: bool, forward: tuple | None = None) -> dict:
        """Forward (unless given) and backward of one minibatch; its loss is its share of the optimizer step's (`reduce`)."""
        cfg, mask = self.config, mini.loss_mask
        sync = self.accelerator.no_sync(self.model) if not last_micro else contextlib.nullcontext()
        with sync:
            if forward is None:
                with self.accelerator.autocast():  # the model only: log-softmax and losses below run in fp32
                    forward = self.model(mini.rows.input_ids, mini.rows.attention_mask, mini.rows.responses.shape[1] + 1)
            logits, values = forward
            logits = logits[:, :-1]
            logprobs = _trl.selective_log_softmax(logits, mini.rows.responses)
            pg_loss, pg_stats = policy_loss(logprobs, mini.old_logprobs, mini.estimate.advantages, mask, cfg.cliprange,
                                            cfg.cliprange_high, reduce)
            loss, extra = mini.estimate.add_critic_loss(pg_loss, values, mask, cfg, reduce)
            if cfg.kl_in_loss:
                kl_term = kl_loss(logprobs, mini.old_logprobs, mini.ref_logprobs, mask, reduce)
                loss = loss + mini.kl_coef * kl_term
                extra["loss/kl"] = kl_term
            skip = any_process(self.accelerator, pg_stats["ratio_mean"].item() > cfg.ratio_threshold or not torch.isfinite(loss).item())
            if skip:
                self.guard.skipped_minibatches += 1
            else:
                # the loss is already this minibatch's share of the step; DeepSpeed's engine divides by its own
                # gradient_accumulation_steps (checked equal to ours), so it gets the share times that
                self.accelerator.backward(loss * cfg.gradient_accumulation_steps if self.deepspeed else loss)
        if last_micro:
            self._optimizer_step()
        with torch.no_grad():
            entropy = masked_mean(_trl.entropy_from_logits(logits.detach()), mask)
        return minibatch_stats(pg_loss, loss, entropy, pg_stats, masked_mean(mini.estimate.advantages, mask), extra,
                               float("nan") if skip else float(cfg.gradient_accumulation_steps))

    def _optimizer_step(self) -> None:
        """Step on the accumulated gradients unless they are not finite (weights and Adam's moments then untouched)."""
        scaled = self.accelerator.scaler is not None  # fp16: the grad scaler skips (and learns from) overflows
        if not scaled and not grads_finite(self.params):
            self.guard.skipped_minibatches += 1
        elif any(p.grad is not None for p in self.params):
            if self.config.max_grad_norm is not None:
                self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
            self.optimizer.step()
            if scaled and self.optimizer.step_was_skipped:
                self.guard.skipped_minibatches += 1
            else:
                self.updates += 1
        self.optimizer.zero_grad()


def minibatch_stats(pg_loss, loss, entropy, pg_stats: dict, advantages_mean, extra: dict, trained: float) -> dict[str, float]:
    """Logged per minibatch on the scale of one optimizer step's loss (`trained`: the accumulation steps, NaN for a
    skipped minibatch, which trained nothing and is not averaged in)."""
    stats = {
        "loss/policy": pg_loss.item() * trained,
        "loss/total": loss.item() * trained,
        "policy/entropy": entropy.item(),
        **{f"policy/{key}": pg_stats[key].item() for key in ("approxkl", "policykl", "clipfrac", "clipfrac_low", "clipfrac_high",
                                                            "ratio_mean")},
        "policy/advantages_mean": advantages_mean.item(),
    }
    stats.update({k: v.item() * (trained if k.startswith("loss/") else 1.0) for k, v in extra.items()})
    return stats
