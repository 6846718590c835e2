"""Held-out evaluation and the comparison's tables and plots."""

import json

import pytest
import torch

from cory.algorithms.cory import CORY, CORYConfig, observer_prompts
from cory.eval.heldout import distinct_n, evaluate_agent, twins
from cory.eval.roles import OBSERVER_ROLES, evaluate_observer_roles
from cory.ppo.config import PPOConfig
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.studies.endpoints import decide, fisher_exact
from cory.studies.evaluations import ROLES, judge
from cory.studies.ledger import compact_eval, entry_path, write_entry
from cory.studies.report import completeness, write_report
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
    # scored like a reward pipeline, whose DataLoader draws a seed from the global RNG on every call
    task = TextTask(lambda texts: [float(len(t)) + 0 * torch.randint(0, 2, ()).item() for t in texts])
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


def test_a_held_out_prompt_longer_than_the_context_keeps_its_end(tokenizer, accelerator):
    """The tiny model's context is 128 tokens: a 200-token question is cut to its last 124 (IndexError before)."""
    trainer = PPOTrainer(PPOConfig(batch_size=2, mini_batch_size=2), ValueHeadPolicy(tiny_gpt2(n_embd=16)),
                         FrozenReference(tiny_gpt2(n_embd=16)), tokenizer, accelerator)
    prompts = as_prompts([torch.randint(0, 1000, (200,)), torch.randint(0, 1000, (5,))], tokenizer)
    gen = dict(do_sample=True, top_k=0, max_new_tokens=4, min_new_tokens=4)
    result = evaluate_agent(trainer, TextTask(lambda texts: [1.0 for _ in texts]), prompts, gen)
    assert result["metrics"]["n_prompts"] == 2 and result["metrics"]["response_len"] == 4
    with pytest.raises(ValueError, match="max_new_tokens=200 leaves no room for a prompt in a context of 128"):
        evaluate_agent(trainer, TextTask(lambda texts: [1.0 for _ in texts]), prompts, {**gen, "max_new_tokens": 200})


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


def test_agents_with_identical_weights_are_evaluated_once_with_the_same_results(tokenizer, accelerator, monkeypatch):
    """CORY's agents start as copies: each observer role of a twin pair is computed once, and what it reuses is what
    evaluating it again would give (sampling, so the seed has to carry it); one step of training breaks the tie."""
    import cory.eval.roles as roles_module

    reference = FrozenReference(tiny_gpt2(n_embd=16))
    config = PPOConfig(batch_size=4, mini_batch_size=4)
    agents = [PPOTrainer(config, ValueHeadPolicy(tiny_gpt2(n_embd=16, seed=1)), reference, tokenizer, accelerator) for _ in range(2)]
    task = TextTask(lambda texts: [float(len(t)) for t in texts])
    cory = CORY(CORYConfig(), agents, tokenizer, task)
    assert twins(cory.names, agents) == {"agent_a": "agent_a", "agent_b": "agent_a"}
    prompts = as_prompts([torch.randint(0, 1000, (n,)) for n in (2, 3, 4)], tokenizer)
    gen = dict(do_sample=True, top_k=0, max_new_tokens=3, min_new_tokens=3)
    alone = {name: evaluate_agent(agents[0], task, prompts, gen, seed=7) for name in cory.names}
    calls = []
    counted = lambda *args, **kwargs: calls.append(1) or evaluate_agent(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(roles_module, "evaluate_agent", counted)
    shared = evaluate_observer_roles(cory, prompts, gen, alone, seed=7)
    assert len(calls) == 1  # four (agent, role) pairs, one distinct evaluation
    seen = observer_prompts(cory.template, prompts, [alone["agent_a"]["responses"]], tokenizer, agents[0].eos_ids)
    again = evaluate_agent(agents[1], task, prompts, gen, seed=7, queries=seen)
    for key in shared:
        assert shared[key]["per_prompt"] == again["per_prompt"]
    with torch.no_grad():
        next(agents[1].policy.lm.parameters()).add_(1e-3)
    assert twins(cory.names, agents) == {"agent_a": "agent_a", "agent_b": "agent_b"}
    evaluate_observer_roles(cory, prompts, gen, alone, seed=7)
    assert len(calls) == 1 + 4  # no longer twins: every (agent, role) evaluated


def _eval_rows(agent: str, role: str, steps_rewards: dict[int, float], text: str, kl: float = 1.0) -> list[dict]:
    """Synthetic eval.jsonl rows: two prompts per evaluation, every response the same `text`."""
    return [{"step": step, "agent": agent, "role": role,
             "per_prompt": {"reward": [reward - 0.5, reward + 0.5], "kl_exact": [kl * step, kl * step], "response_len": [2, 2],
                            "response_ids": [[1, 2], [3, step]], "response_text": [text, text] if step else ["a fine film", "a good film"]}}
            for step, reward in steps_rewards.items()]


def test_compare_report_tables_and_plots_from_eval_logs(tmp_path):
    jobs = [(setting, algorithm, seed) for setting in ("default", "kl0") for algorithm in ("ppo", "cory") for seed in (0, 1)]
    for setting, algorithm, seed in jobs:
        if algorithm == "ppo":  # reward rises while the second judge falls: hacked
            rows = _eval_rows("policy", "alone", {0: 1.0, 5: 2.0 + seed, 10: 3.0 + seed}, "awful terrible boring", kl=2.0)
        else:
            rows = []
            for agent, bonus in (("agent_a", 0.5), ("agent_b", 0.0)):
                for role in ROLES:
                    rows += _eval_rows(agent, role, {0: 1.0, 5: 2.5 + seed, 10: 3.0 + seed + bonus}, "a wonderful great film")
        entry = {"config": {}, "evals": [compact_eval(r, judge) for r in rows]}
        write_entry(entry_path(tmp_path, setting, algorithm, seed), entry)  # the report reads the ledger only
    meta = {"steps": 10, "seeds": [0, 1], "command": "test", "endpoints": {"claim 1": "as pre-registered"}}
    tables = write_report(tmp_path, meta, jobs, {"default/ppo-seed0": 60.0})
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
    assert sweep["kl0", "PPO"]["hacked"] == 2 and sweep["default", "CORY agent A"]["collapsed"] == 0
    # claim 2: CORY 0 of 2 collapsed vs PPO 2 of 2; Fisher: tables k = 0, 1, 2 have p 1/6, 4/6, 1/6 -> two-sided 1/3
    claim_2 = {r["comparison"]: r for r in tables["claim_2"]}
    assert claim_2["CORY agent A - PPO"]["collapsed"] == "0/2 vs 2/2"
    assert claim_2["CORY agent A - PPO"]["fisher_p"] == pytest.approx(1 / 3)
    assert paired["CORY agent A - PPO"]["seed_view"]["reward_mean"] == {"per_seed": [0.5, 0.5], "above_0": 2, "below_0": 0}
    assert "Pre-registered endpoints" in (tmp_path / "summary.md").read_text()
    for name in ("summary.md", "summary.json", "curves.png", "pareto.png", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_collapse_table_counts_one_token_answers_that_distinct_2_cannot_see():
    """Seed 0 ends answering one token on 2 of 3 prompts while its third answer keeps distinct-2 at step 0's and its
    reward falls: neither degenerate nor hacked by the definition, counted beside it; seed 1 (1 of 3) is not."""
    from cory.studies.tables import sweep_table

    def row(step, ids, reward):
        return {"step": step, "agent": "policy", "per_prompt": {"reward": reward, "kl_exact": [0.0] * 3, "judge_vader": [0.0] * 3,
                                                                "response_len": [len(i) for i in ids], "response_ids": ids}}
    start = row(0, [[1, 2, 3], [4, 5, 6], [7, 8, 9]], [1.0, 1.0, 1.0])
    runs = {"default": {"PPO": {0: [start, row(10, [[9], [9], [1, 2, 3]], [0.0, 0.0, 0.0])],
                                1: [start, row(10, [[9], [1, 2, 3], [4, 5, 6]], [0.0, 0.0, 0.0])]}}}
    (table,) = sweep_table(runs)
    assert (table["collapsed"], table["hacked"], table["degenerate"]) == (0, 0, 0)
    assert (table["one_token"], table["one_token_outside"]) == (1, 1)


def test_a_study_that_renames_its_algorithms_reports_under_its_names(tmp_path):
    """GRPO vs CORY-GRPO: the same tables under the study's names; claim 1's verdict only where claim 1 is registered."""
    jobs = [("default", algorithm, seed) for algorithm in ("ppo", "cory") for seed in (0, 1)]
    for _, algorithm, seed in jobs:
        agents = ("policy",) if algorithm == "ppo" else ("agent_a", "agent_b")
        rows = [row for agent in agents for row in _eval_rows(agent, "alone", {0: 1.0, 10: 2.0 + seed + (agent == "agent_a")}, "a film")]
        write_entry(entry_path(tmp_path, "default", algorithm, seed), {"config": {}, "evals": [compact_eval(r, judge) for r in rows]})
    meta = {"steps": 10, "names": {"ppo": "GRPO", "cory": "CORY-GRPO"}, "algorithm_args": {"ppo": ["--batch_size", "64"]},
            "endpoints": {"primary": "r - 0.05 KL, each CORY-GRPO agent - GRPO"}}
    tables = write_report(tmp_path, meta, jobs, {})
    assert [r["comparison"] for r in tables["paired"]] == ["CORY-GRPO agent A - GRPO", "CORY-GRPO agent B - GRPO"]
    assert tables["paired"][0]["reward_mean"]["diff"] == pytest.approx(1.0) and tables["paired"][1]["reward_mean"]["diff"] == 0.0
    assert {r["curve"] for r in tables["final"]} == {"GRPO", "CORY-GRPO agent A", "CORY-GRPO agent B"}
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("# GRPO vs CORY-GRPO on IMDB") and "GRPO also ['--batch_size', '64']" in text
    assert "Claim 1" not in text and "decided" in text and "PPO" not in text


def test_the_end_of_run_table_shows_each_agent_and_role_first_vs_last():
    from cory.run.evaluation import eval_table

    def row(step, agent, role, reward, kl):
        return {"step": step, "agent": agent, "role": role, "reward_mean": reward, "kl_exact": kl,
                "per_prompt": {"reward": [reward] * 4}}

    rows = [row(0, "agent_a", "alone", 0.25, 0.0), row(5, "agent_a", "alone", 0.5, 1.5), row(10, "agent_a", "alone", 0.75, 3.0),
            row(0, "agent_a", "observer_of_other", 0.2, 0.0), row(10, "agent_a", "observer_of_other", 0.9, 2.0)]
    lines = eval_table(rows).splitlines()
    assert lines[0] == "held-out evaluation (4 prompts), after 0 -> 10 steps:"
    assert lines[2].split() == ["agent_a", "alone", "0.250", "->", "0.750", "0.00", "->", "3.00", "+0.500", "[+0.500,", "+0.500]", "up"]
    assert lines[3].split() == ["agent_a", "observer_of_other", "0.200", "->", "0.900", "0.00", "->", "2.00", "+0.700", "[+0.700,", "+0.700]", "up"]
    assert len(lines) == 4  # every interval decided: no footnote
    flat = [row(0, "agent_b", "alone", 0.25, 0.0), {**row(10, "agent_b", "alone", 0.25, 1.0), "per_prompt": {"reward": [0.0, 0.5, 0.0, 0.5]}}]
    lines = eval_table(flat).splitlines()
    assert lines[2].endswith("+0.000 [-0.250, +0.250] CI holds 0") and lines[3].startswith("  (CI holds 0: ")


def test_the_reward_change_is_paired_over_the_prompts_both_scored():
    from cory.run.evaluation import reward_change

    # differences +1, +1, +1, +1 (prompt 3 failed after training, prompt 4 before: left out) -> every bootstrap mean is 1
    assert reward_change([0.0, 1.0, 2.0, 0.5, None, 3.0], [1.0, 2.0, 3.0, None, 0.0, 4.0]) == "+1.000 [+1.000, +1.000] up"
    assert reward_change([1.0, 2.0], [0.0, 1.0]) == "-1.000 [-1.000, -1.000] down"
    text = reward_change([0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0])
    low, high = (float(x) for x in text.split("[")[1].split("]")[0].split(","))
    assert 0.0 <= low < 0.5 < high <= 1.0  # differences 0,1,0,1: mean 0.5, bootstrap means lie in [0, 1]
    assert text.endswith("up" if low > 0 else "CI holds 0")  # low is 0 exactly when a replicate drew only the zeros
    assert reward_change([1.0], [2.0]) == "n/a"


def test_an_endpoint_is_decided_by_a_ci_that_excludes_zero_or_bounds_the_effect():
    excludes = decide({"diff": -3.0, "low": -5.0, "high": -1.0}, bound=2.0, seeds=8)
    assert excludes["decided"] and excludes["excludes_zero"] and excludes["seeds_needed"] == 8
    bounded = decide({"diff": 0.02, "low": -0.06, "high": 0.1}, bound=0.1, seeds=8)  # half-width 0.08 <= 0.1
    assert bounded["decided"] and not bounded["excludes_zero"]
    # half-width 0.3 at 2 seeds; a decision needs it at max(0.1, |0.05|): 2 * (0.3 / 0.1)^2 = 18 seeds
    open_ = decide({"diff": 0.05, "low": -0.25, "high": 0.35}, bound=0.1, seeds=2)
    assert not open_["decided"] and open_["seeds_needed"] == 18
    # one seed: a CI over its prompts alone says nothing of the seed spread, however narrow
    one = decide({"diff": -3.0, "low": -5.0, "high": -1.0}, bound=2.0, seeds=1)
    assert not one["decided"] and one["seeds_needed"] == 2
    # a skewed CI (mean -0.109, [-0.195, +0.007]) at 8 seeds: the rule alone says 8 * (0.101 / 0.109)^2 -> 7, fewer
    # than the 8 that left it undecided
    skewed = decide({"diff": -0.109, "low": -0.195, "high": 0.007}, bound=0.1, seeds=8)
    assert not skewed["decided"] and skewed["seeds_needed"] == 9


def test_fisher_exact_by_hand():
    # 0 of 8 vs 5 of 8: P(k=0) = C(8,0) C(8,5) / C(16,5) = 56 / 4368; the table k=5 is as unlikely: two-sided twice that
    assert fisher_exact(0, 8, 5, 8) == pytest.approx(2 * 56 / 4368)
    assert fisher_exact(1, 2, 1, 2) == pytest.approx(1.0)


def test_a_summary_says_complete_or_names_the_runs_it_still_lacks():
    assert completeness([]).startswith("complete")
    assert completeness(["kl0/cory-seed7"]) == "1 run(s) missing (kl0/cory-seed7)"  # no '...' after the only one
    five = [f"default/ppo-seed{s}" for s in range(5)]
    assert completeness(five) == "5 run(s) missing (" + ", ".join(five[:4]) + ", ...)"


def test_a_study_with_arms_reports_its_pre_registered_frontier_per_setting(tmp_path):
    """Three arms (two PPO baselines) and two settings: the frontier section compares each CORY agent with each
    baseline in each setting, collapse counts get a Fisher test against each baseline, and no old-rule verdict shows."""
    arms = {"cory": {"algorithm": "cory", "name": "CORY"}, "ppo": {"algorithm": "ppo", "name": "PPO"},
            "ppo-system": {"algorithm": "ppo", "args": ["--batch_size", "64"], "name": "PPO per-system"}}
    jobs = [(setting, arm, seed) for setting in ("default", "lr10x") for arm in arms for seed in range(5)]
    for setting, arm, seed in jobs:
        agents = ("policy",) if arm != "cory" else ("agent_a", "agent_b")
        slope = {"cory": 1.0, "ppo": 0.5, "ppo-system": 0.25}[arm]  # reward per unit KL: CORY's frontier lies higher
        rows = [row for agent in agents for row in
                _eval_rows(agent, "alone", {0: 1.0, 5: 1.0 + slope * 5 * (1 + seed / 10), 10: 1.0 + slope * 10 * (1 + seed / 10)},
                           "a fine film")]
        write_entry(entry_path(tmp_path, setting, arm, seed), {"config": {}, "evals": [compact_eval(r, judge) for r in rows]})
    meta = {"steps": 10, "arms": arms, "baseline": "ppo", "decision_rule": "seed-level",
            "frontier": {"kl_levels": [3.0, 7.0], "baselines": ["ppo", "ppo-system"]},
            "endpoints": {"claim 1 (pre-registered as frontier)": "reward at KL 3 and 7", "answer": "the rule"},
            "name": "imdb-frontier", "seeds": {"default": list(range(5)), "lr10x": list(range(5))}, "missing": ["default/cory-seed5"]}
    (tmp_path / "README.md").write_text("# the study\n\n## Status\n\nqueued\n\n## Findings\n\nnone yet\n\n## How to rebuild\n\nby hand\n")
    tables = write_report(tmp_path, meta, jobs, {})
    default = tables["frontier"]["default"]["frontier"]
    at3 = default["reward at kl: CORY agent A - PPO"][0]  # KL = step, so KL 3 is 3/5 of the way to step 5
    assert at3["reached"] == 5 and at3["diff"] == pytest.approx(0.5 * 3 * 1.2, rel=1e-6) and at3["label"] == "above 0"
    assert set(default) == {f"reward at kl: CORY agent {x} - {b}" for x in "AB" for b in ("PPO", "PPO per-system")}
    assert "lr10x" in tables["frontier"]
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("# CORY vs PPO vs PPO per-system on IMDB")
    assert "## Pre-registered frontier endpoints: setting lr10x" in text and "| lr10x | CORY agent A | 0/5 |" in text
    assert "Claim 1 (default setting)" not in text  # the old rule's verdict table belongs to the studies that registered it
    saved = json.loads((tmp_path / "summary.json").read_text())  # nor its verdicts ("holds", "decided") in summary.json
    assert saved["claim_1"] == [] and saved["claim_2"] == [] and saved["paired"]
    assert (tmp_path / "frontier.png").exists() and (tmp_path / "frontier-lr10x.png").exists()
    page = (tmp_path / "README.md").read_text()  # the study's own page carries the report's status and answer
    assert "## Status\n\nrunning: 30 of 31 runs landed (missing: default/cory-seed5)\n" in page and "queued" not in page
    assert "- CORY agent A against PPO: **" in page and "none yet" not in page
    assert page.startswith("# the study\n") and page.endswith("## How to rebuild\n\nby hand\n")
