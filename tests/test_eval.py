"""Held-out evaluation and the comparison's tables and plots."""
import json

import pytest
import torch

from cory.cory import CORY, CORYConfig, observer_prompts
from cory.eval.heldout import distinct_n, evaluate_agent
from cory.eval.report import ROLES, write_report
from cory.eval.roles import OBSERVER_ROLES, evaluate_observer_roles
from cory.policy import FrozenReference, ValueHeadPolicy
from cory.ppo import PPOTrainer
from cory.ppo_config import PPOConfig
from tests.tiny import TextTask, as_prompts, tiny_gpt2


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


def test_each_agent_as_observer_of_the_other_and_of_itself(tokenizer, accelerator):
    """Greedy decoding makes every role's responses reproducible by hand from the public pieces."""
    reference = FrozenReference(tiny_gpt2(n_embd=16))
    config = PPOConfig(batch_size=4, mini_batch_size=4)
    agents = [PPOTrainer(config, ValueHeadPolicy(tiny_gpt2(n_embd=16, seed=seed)), reference, tokenizer, accelerator)
              for seed in (0, 1)]  # agent A has the reference's weights, agent B does not
    task = TextTask(lambda texts: [float(len(t)) for t in texts])
    cory = CORY(CORYConfig(), agents, tokenizer, task)
    prompts = as_prompts([torch.randint(0, 1000, (n,)) for n in (2, 3, 4)], tokenizer)
    gen = dict(do_sample=False, max_new_tokens=3, min_new_tokens=3)
    alone = {name: evaluate_agent(agent, task, prompts, gen) for name, agent in zip(cory.names, agents)}
    roles = evaluate_observer_roles(cory, prompts, gen, alone)
    assert set(roles) == {(n, r) for n in cory.names for r in OBSERVER_ROLES}
    for i, name in enumerate(cory.names):
        for role, leader in (("observer_of_other", cory.names[1 - i]), ("observer_of_self", name)):
            seen = observer_prompts(cory.template, prompts, [alone[leader]["responses"]], tokenizer, agents[0].eos_ids)
            expected = agents[i].generate(seen, **gen)
            result = roles[name, role]
            assert result["per_prompt"]["response_ids"] == [r.tolist() for r in expected]
            texts = result["per_prompt"]["response_text"]  # scored on x + y2, not on the observer prompt
            assert result["per_prompt"]["reward"] == [float(len(p.text + t)) for p, t in zip(prompts, texts)]
    assert abs(roles["agent_a", "observer_of_other"]["metrics"]["kl_exact"]) < 1e-5  # A == reference on any prompt
    assert roles["agent_b", "observer_of_self"]["metrics"]["kl_exact"] > 1e-3


def _eval_rows(agent: str, role: str, steps_rewards: dict[int, float], text: str, kl: float = 1.0) -> list[dict]:
    """Synthetic eval.jsonl rows: two prompts per evaluation, every response the same `text`."""
    return [{"step": step, "agent": agent, "role": role,
             "per_prompt": {"reward": [reward - 0.5, reward + 0.5], "kl_exact": [kl * step, kl * step], "response_len": [2, 2],
                            "response_ids": [[1, 2], [3, step]], "response_text": [text, text] if step else ["a fine film", "a good film"]}}
            for step, reward in steps_rewards.items()]


def test_compare_report_tables_and_plots_from_eval_logs(tmp_path):
    jobs = [(setting, algorithm, seed) for setting in ("default", "init_kl_coef=0") for algorithm in ("ppo", "cory") for seed in (0, 1)]
    for setting, algorithm, seed in jobs:
        run = tmp_path / "runs" / setting / f"{algorithm}-seed{seed}"
        run.mkdir(parents=True)
        if algorithm == "ppo":  # reward rises while the second judge falls: hacked
            rows = _eval_rows("policy", "alone", {0: 1.0, 5: 2.0 + seed, 10: 3.0 + seed}, "awful terrible boring", kl=2.0)
        else:
            rows = []
            for agent, bonus in (("agent_a", 0.5), ("agent_b", 0.0)):
                for role in ROLES:
                    rows += _eval_rows(agent, role, {0: 1.0, 5: 2.5 + seed, 10: 3.0 + seed + bonus}, "a wonderful great film")
        (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tables = write_report(tmp_path, {"steps": 10, "seeds": [0, 1], "command": "test"}, jobs, {"default/ppo-seed0": 60.0})
    final = {(r["curve"], r["seed"]): r for r in tables["final"]}
    assert final["PPO", "mean"]["reward_mean"] == pytest.approx(3.5) and final["PPO", "1"]["step"] == 10
    assert final["PPO", "mean"]["kl_exact"] == pytest.approx(20.0) and final["CORY agent A", "0"]["kl_exact"] == 10.0
    assert final["PPO", "0"]["combined_eta0.1"] == pytest.approx(3.0 - 0.1 * 20.0)
    paired = {r["comparison"]: r for r in tables["paired"]}
    assert paired["CORY agent A - PPO"]["reward_mean"] == pytest.approx({"diff": 0.5, "low": 0.5, "high": 0.5})
    assert paired["CORY agent B - PPO"]["kl_exact"]["diff"] == pytest.approx(-10.0)
    roles = {(r["agent"], r["role"], r["step"]): r for r in tables["roles"]}
    assert roles["CORY agent A", "observer_of_other", 10]["reward_mean"] == pytest.approx((3.5 + 0.5 + 0.0, 0.5))
    sweep = {(r["setting"], r["curve"]): r for r in tables["sweep"]}
    assert sweep["init_kl_coef=0", "PPO"]["hacked"] == 2 and sweep["default", "CORY agent A"]["collapsed"] == 0
    for name in ("summary.md", "summary.json", "curves.png", "pareto.png", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_end_of_run_table_shows_each_agent_and_role_first_vs_last():
    from cory.runner import eval_table

    def row(step, agent, role, reward, kl):
        return {"step": step, "agent": agent, "role": role, "reward_mean": reward, "kl_exact": kl,
                "per_prompt": {"reward": [reward] * 4}}

    rows = [row(0, "agent_a", "alone", 0.25, 0.0), row(5, "agent_a", "alone", 0.5, 1.5), row(10, "agent_a", "alone", 0.75, 3.0),
            row(0, "agent_a", "observer_of_other", 0.2, 0.0), row(10, "agent_a", "observer_of_other", 0.9, 2.0)]
    lines = eval_table(rows).splitlines()
    assert lines[0] == "held-out evaluation (4 prompts), after 0 -> 10 steps:"
    assert lines[2].split() == ["agent_a", "alone", "0.250", "->", "0.750", "0.00", "->", "3.00"]
    assert lines[3].split() == ["agent_a", "observer_of_other", "0.200", "->", "0.900", "0.00", "->", "2.00"]
