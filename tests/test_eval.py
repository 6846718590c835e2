"""Held-out evaluation and the comparison's tables and plots."""
import json
import runpy
from pathlib import Path

import pytest
import torch

from cory.eval.heldout import distinct_n, evaluate_agent
from cory.policy import FrozenReference, ValueHeadPolicy
from cory.ppo import PPOConfig, PPOTrainer
from tests.tiny import TextTask, as_prompts, tiny_gpt2

ROOT = Path(__file__).resolve().parent.parent


def test_distinct_n_by_hand():
    responses = [[1, 2, 3], [1, 2, 4], [5]]
    assert distinct_n(responses, 1) == pytest.approx(5 / 7)  # 7 unigrams, {1,2,3,4,5}
    assert distinct_n(responses, 2) == pytest.approx(3 / 4)  # (1,2) (2,3) (1,2) (2,4)
    assert distinct_n([[1]], 2) == 0.0


def test_evaluation_of_an_untrained_policy(tokenizer, accelerator):
    lm = tiny_gpt2(n_embd=16)
    reference = FrozenReference(tiny_gpt2(n_embd=16))  # same weights: KL must be 0
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=4), ValueHeadPolicy(lm), reference, tokenizer, accelerator)
    prompts = as_prompts([torch.randint(0, 1000, (n,)) for n in (2, 3, 4, 5, 6)], tokenizer)
    task = TextTask(lambda texts: [float(len(t)) for t in texts])
    gen = dict(do_sample=True, top_k=0, max_new_tokens=4, min_new_tokens=4)
    state = torch.get_rng_state()
    first = evaluate_agent(trainer, task, prompts, gen, seed=3, batch_size=2)
    assert torch.equal(state, torch.get_rng_state())  # evaluation leaves the training RNG alone
    again = evaluate_agent(trainer, task, prompts, gen, seed=3, batch_size=2)
    m = first["metrics"]
    assert m == pytest.approx(again["metrics"], abs=1e-5)  # fixed seed: the same samples every time
    assert abs(m["kl_exact"]) < 1e-5 and abs(m["kl_sampled"]) < 1e-5
    assert m["combined_eta0.1"] == pytest.approx(m["reward_mean"] - 0.1 * m["kl_exact"])
    assert m["response_len"] == 4 and m["n_prompts"] == 5 and len(first["samples"]) == 3


def test_compare_tables_and_plots_from_eval_logs(tmp_path, monkeypatch):
    compare = runpy.run_path(str(ROOT / "scripts" / "compare.py"))
    settings = {"seeds": [0, 1]}
    for algorithm, agents in (("ppo", ["policy"]), ("cory", ["agent_a", "agent_b"])):
        for seed in settings["seeds"]:
            run = tmp_path / "runs" / f"{algorithm}-seed{seed}"
            run.mkdir(parents=True)
            rows = [{"step": step, "agent": agent, "reward_mean": step + seed + (agent == "agent_b"), "kl_exact": 2.0 * step,
                     **{f"combined_eta{e:g}": step - e * 2.0 * step for e in (0.01, 0.05, 0.1, 0.2)}}
                    for step in (0, 5, 10) for agent in agents]
            (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = compare["read_evals"](tmp_path, settings)
    table = compare["summarise"](tmp_path, curves, {"ppo-seed0": 60.0})
    ppo_mean = next(r for r in table if r["curve"] == "PPO" and r["seed"] == "mean")
    assert ppo_mean["reward_mean"] == pytest.approx(10.5) and ppo_mean["kl_exact"] == 20.0
    b_final = next(r for r in table if r["curve"] == "CORY agent B" and r["seed"] == 1)
    assert b_final["reward_mean"] == 12 and b_final["step"] == 10
    compare["plot"](tmp_path, curves, "test")
    for name in ("summary.md", "summary.csv", "curves.png", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 0
