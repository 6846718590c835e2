"""One `step` equals legacy trl 0.11.4's `PPOTrainer.step` (fixture recorded by scripts/trl_oracle.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.ppo.config import PPOConfig
from tests.tiny import param_checksum, tiny_gpt2

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "trl_0_11_4_step.json").read_text())
KEYS = ["ppo/loss/policy", "ppo/loss/value", "objective/kl", "ppo/policy/approxkl", "ppo/policy/clipfrac",
        "ppo/val/vpred", "objective/entropy", "objective/kl_coef"]


class ReplayedPermutations:
    """Stands in for the trainer's numpy Generator: hands out the recorded permutations in order."""

    def __init__(self, permutations):
        self.permutations = iter(permutations)

    def permutation(self, n):
        order = np.array(next(self.permutations))
        assert len(order) == n
        return order


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_step_matches_trl_0_11_4(case, tokenizer, accelerator):
    lm = tiny_gpt2()
    assert param_checksum(lm) == pytest.approx(case["checksum"], rel=1e-9), "tiny model init differs from the fixture's"
    policy = ValueHeadPolicy(lm)
    g = torch.Generator().manual_seed(1)  # same value head as scripts/trl_oracle.py
    policy.v_head.weight.data.copy_(torch.randn(1, lm.config.n_embd, generator=g) * 0.1)
    policy.v_head.bias.data.zero_()
    config = PPOConfig(**{k: v for k, v in case["config"].items() if k != "seed"})
    trainer = PPOTrainer(config, policy, FrozenReference(tiny_gpt2(seed=1)), tokenizer, accelerator)
    if config.max_grad_norm is not None:
        # trl 0.11.4 clips with an exhausted `filter` object after its first optimizer step, i.e. only once
        # per trainer; we clip every step. Replay its behaviour to show that this is the only difference.
        clip, calls = trainer.accelerator.clip_grad_norm_, []
        trainer.accelerator.clip_grad_norm_ = lambda p, n: calls.append(1) or (clip(p, n) if len(calls) == 1 else None)
    trainer.rng = ReplayedPermutations(case["permutations"])  # the minibatch orders trl drew

    queries = [torch.tensor(q) for q in case["queries"]]
    responses = [torch.tensor(r) for r in case["responses"]]
    stats = trainer.step(queries, responses, case["scores"])

    for key in KEYS:
        assert stats[key] == pytest.approx(case["stats"][key], rel=1e-4, abs=1e-6), key
