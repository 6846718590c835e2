"""The rollout under the policy and the frozen reference: log-probs of the sampled tokens, the exact KL over the
vocabulary, and values where the estimator trains a critic. Optionally the first training minibatch's forward is
this one (`reuse`): run with gradients, kept for the update, so its rows cost one forward instead of two."""
from __future__ import annotations

import time

import torch
from accelerate import Accelerator

from cory import _trl
from cory.ppo.batch import Scored
from cory.ppo.math import exact_kl_from_logits
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.rollout import Rollout


class RolloutScorer:
    """Scores rollouts in chunks of `chunk` rows; `forward_seconds` holds the last call's policy and reference time."""

    def __init__(self, model, policy: ValueHeadPolicy, reference: FrozenReference, accelerator: Accelerator, chunk: int,
                 with_values: bool):
        self.model, self.policy, self.reference, self.accelerator = model, policy, reference, accelerator
        self.chunk, self.with_values = chunk, with_values
        self.forward_seconds = {"policy": 0.0, "reference": 0.0}

    def __call__(self, batch: Rollout, reuse: torch.Tensor | None = None) -> Scored:
        n, keep = len(batch.responses), batch.responses.shape[1] + 1
        chunks = self._chunks(n, reuse, batch.responses.device)
        keys = ("logprobs", "ref_logprobs", "exact_kl") + (("values",) if self.with_values else ())
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        self.forward_seconds = {"policy": 0.0, "reference": 0.0}
        reused = None
        for i, idx in enumerate(chunks):
            rows, train = batch.rows(idx), reuse is not None and i == 0
            logits, values, ref_logits = self._forwards(rows, keep, train)
            if train:
                reused = (logits, values)
                logits, values = logits.detach(), values.detach() if self.with_values else values
            with torch.no_grad():
                logits, ref_logits = logits[:, :-1], ref_logits[:, :-1]
                parts["logprobs"].append(_trl.selective_log_softmax(logits, rows.responses))
                if self.with_values:
                    parts["values"].append(values[:, :-1])
                parts["ref_logprobs"].append(_trl.selective_log_softmax(ref_logits, rows.responses))
                parts["exact_kl"].append(exact_kl_from_logits(logits, ref_logits))
        where = torch.cat(chunks).argsort()  # back to the batch's order
        return Scored(**{k: torch.cat(v)[where] for k, v in parts.items()}, reused=reused)

    def _chunks(self, n: int, reuse: torch.Tensor | None, device) -> list[torch.Tensor]:
        """Row indices per forward: `reuse` (the first minibatch's rows) first when given, then the rest in order."""
        if reuse is None:
            return [torch.arange(start, min(start + self.chunk, n), device=device) for start in range(0, n, self.chunk)]
        rest = torch.ones(n, dtype=torch.bool, device=device)
        rest[reuse] = False
        return [reuse, *(c for c in rest.nonzero()[:, 0].split(self.chunk) if len(c))]

    def _forwards(self, rows: Rollout, keep: int, train: bool):
        """The policy's forward (with gradients when `train`: the update's own) and the reference's, timed."""
        t0 = time.perf_counter()
        self.policy.train(train)
        with torch.set_grad_enabled(train), self.accelerator.autocast():  # the training forward's autocast: ratio 1 at the start
            logits, values = (self.model if train else self.policy)(rows.input_ids, rows.attention_mask, keep)
        t1 = time.perf_counter()
        with torch.no_grad(), self.accelerator.autocast():
            ref_logits = self.reference.logits(rows.input_ids, rows.attention_mask, keep)
        self.forward_seconds["policy"] += t1 - t0
        self.forward_seconds["reference"] += time.perf_counter() - t1
        return logits, values, ref_logits
