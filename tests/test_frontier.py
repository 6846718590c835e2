"""The re-decided endpoints: seed-level intervals, the reward-KL frontier and the budget check, on hand-made numbers
and on the committed ledgers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cory.errors import UsageError
from cory.eval.bootstrap import crossed_mean_replicates, paired_difference_ci
from cory.studies import budget
from cory.studies.arms import arm_names, budget_table
from cory.studies.frontier import compare_at_levels, comparison_key, crossing, read_at_level, split_comparison, travel
from cory.studies.intervals import label, monte_carlo_band, seed_level, t_interval, t_quantile

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (4, 2.776), (7, 2.365), (9, 2.262), (30, 2.042)])
def test_t_quantiles_match_the_printed_table(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=1e-3)


def test_t_interval_by_hand():
    """[0.1, 0.5, 0.9]: mean 0.5, sd 0.4, half-width 4.303 x 0.4 / sqrt(3) = 0.9937."""
    t = t_interval([0.1, 0.5, 0.9])
    assert t["diff"] == pytest.approx(0.5)
    assert t["high"] - t["diff"] == pytest.approx(4.3027 * 0.4 / math.sqrt(3), abs=1e-3)


def test_with_three_seeds_the_t_interval_is_the_wider_and_nothing_is_decided():
    """Three seeds 0.4 apart, each measured on 128 quiet prompts: the crossed bootstrap cannot reach beyond the
    seeds it has (its CI lies inside [0.1, 0.9]) while the t-interval spans [-0.49, +1.49]."""
    rng = np.random.default_rng(0)
    base = np.zeros((3, 128))
    mine = np.array([[d] * 128 for d in (0.1, 0.5, 0.9)]) + rng.normal(0, 0.01, (3, 128))
    result = seed_level(base, mine, bound=0.1)
    assert result["interval"] == "t"
    assert 0.1 - 0.01 < result["bootstrap"]["low"] and result["bootstrap"]["high"] < 0.9 + 0.01
    assert result["low"] == pytest.approx(0.5 - 0.9937, abs=0.01) and result["high"] == pytest.approx(0.5 + 0.9937, abs=0.01)
    assert result["label"] == "not decided (3 seeds < 5)" and result["seeds_needed"] > 3


def test_with_enough_seeds_an_interval_decides_a_direction_or_bounds_the_effect():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.3, (8, 64))
    shift = lambda d: base + d + rng.normal(0, 0.01, (8, 1))  # noqa: E731  (a seed-level spread of 0.01)
    assert seed_level(base, shift(0.5), bound=0.1)["label"] == "above 0"
    assert seed_level(base, shift(-0.5), bound=0.1)["label"] == "below 0"
    alternating = base + 0.05 * np.array([[1.0], [-1.0]] * 4)  # the seeds disagree by +-0.05 and cancel exactly
    assert seed_level(base, alternating, bound=0.1)["label"] == "bounded within +-0.1"
    wide = seed_level(base, base + 0.05 + 0.3 * np.array([[1.0], [-1.0]] * 4), bound=0.1)  # +0.05, seeds +-0.3 apart
    assert wide["label"].startswith("undecided") and wide["seeds_needed"] > 8


def test_a_bootstrap_end_within_its_monte_carlo_error_of_zero_is_borderline():
    """Replicates evenly spread over [-0.025, 0.975]: the 2.5 % quantile is 0, and with 10,000 replicates another
    random seed moves it by about 2 sqrt(0.025 x 0.975 / 10^4) = 0.0031 in probability, i.e. +-0.003 here."""
    replicates = np.linspace(-0.025, 0.975, 10_001)
    low_band = monte_carlo_band(replicates, 0.025)
    assert low_band[0] == pytest.approx(-0.0031, abs=2e-4) and low_band[1] == pytest.approx(0.0031, abs=2e-4)
    boot = {"band_low": low_band, "band_high": monte_carlo_band(replicates, 0.975)}
    decision = {"diff": 0.475, "low": 0.0005, "high": 0.95}  # excludes 0, but only by less than the Monte-Carlo error
    assert label(decision, "bootstrap", 8, 0.1, boot)["label"].startswith("borderline")
    assert label(decision, "t", 8, 0.1, boot)["label"] == "above 0"  # a t-interval has no Monte-Carlo error
    far = {"band_low": (0.2, 0.21), "band_high": (0.9, 0.91)}
    assert label({"diff": 0.5, "low": 0.2, "high": 0.9}, "bootstrap", 8, 0.1, far)["label"] == "above 0"


def test_the_vectorised_bootstrap_matches_the_general_one_and_its_expectation():
    """Both draw seeds and prompts crossed: their 95 % intervals agree to Monte-Carlo error, and the mean of the
    replicates is the point difference (each replicate's expectation over the draws is the overall mean)."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, (5, 40)), rng.normal(0.2, 1, (5, 40)) + rng.normal(0, 0.2, (5, 1))
    diff, replicates = crossed_mean_replicates(a, b, 10_000)
    general = paired_difference_ci(a, b, n_boot=4000)
    assert diff == pytest.approx(general["diff"])
    assert np.quantile(replicates, 0.025) == pytest.approx(general["low"], abs=0.03)
    assert np.quantile(replicates, 0.975) == pytest.approx(general["high"], abs=0.03)
    assert replicates.mean() == pytest.approx(diff, abs=4 * replicates.std() / math.sqrt(10_000))


def test_crossing_is_linear_interpolation_at_the_first_crossing():
    assert crossing([0.0, 2.0, 6.0, 3.0, 9.0], 4.0) == (2, 0.5)  # first crossing, not the later one
    assert crossing([5.0, 6.0], 4.0) == (0, 0.0)  # starts beyond the level: read at its first point
    assert crossing([0.0, 2.0, 3.9], 4.0) is None


def run(kl_means: list[float], reward_means: list[float], prompts: int = 4) -> dict:
    """A trajectory whose prompts all share the given means except a +-1 spread in reward (mean unchanged)."""
    spread = np.array([1.0, -1.0] * (prompts // 2))
    return {"steps": np.arange(len(kl_means), dtype=float) * 10, "kl": np.array([[k] * prompts for k in kl_means]),
            "reward": np.array([r + spread for r in reward_means])}


def test_reward_at_a_kl_level_by_hand():
    """KL 0, 2, 6 at steps 0, 10, 20 with reward 0, 0.2, 1.0: KL 4 is half way from step 10 to 20, so reward 0.6,
    step 15, and every prompt is interpolated with the same weights (so the bootstrap can resample them)."""
    hit = read_at_level(run([0, 2, 6], [0, 0.2, 1.0]), 4.0)
    assert hit["step"] == pytest.approx(15.0)
    assert hit["values"] == pytest.approx([1.6, -0.4, 1.6, -0.4])
    assert read_at_level(run([0, 2, 6], [0, 0.2, 1.0]), 0.6, along="reward", read="kl")["values"] == pytest.approx([4.0] * 4)


def test_a_seed_that_never_reaches_a_level_is_named_and_too_few_seeds_are_not_reached():
    base = {s: run([0, 4, 10], [0, 0.4, 0.8]) for s in range(6)}
    mine = {s: run([0, 3, 6], [0, 0.4, 0.7]) for s in range(6)}
    mine[5] = run([0, 1, 2], [0, 0.1, 0.2])  # seed 5 stays near the reference
    at5, at8 = compare_at_levels(base, mine, [5.0, 8.0], 0.1, names=("PPO", "CORY"))
    assert at5["reached"] == 5 and at5["not_reached"] == ["CORY seed 5"]
    assert at5["diff"] == pytest.approx((0.4 + 2 / 3 * 0.3) - (0.4 + 1 / 6 * 0.4))  # CORY at KL 5: t = 2/3; PPO: t = 1/6
    assert at8["reached"] == 0 and at8["label"].startswith("not reached (0 of 6")
    [alone] = compare_at_levels({0: base[0]}, {0: mine[0]}, [5.0], 0.1)
    assert alone["reached"] == 1 and alone["label"] == "1 seed: nothing to decide (5 needed)"  # reached, but alone
    far = travel(mine, [5.0])
    assert far["levels"][5.0]["reached"] == 5 and far["final_kl"] == pytest.approx((6 * 5 + 2) / 6)


def study(name: str) -> dict:
    return json.loads((ROOT / "results" / name / "study.json").read_text())


def test_the_budget_table_of_the_claims_study_by_hand():
    """PPO: one model, 32 rows, 2 minibatches of 16, 1 epoch, 60 steps -> 120 optimizer steps. CORY: two models,
    each 32 rows a step (so 64 responses a system), 120 steps each. Tokens: query 5 + response 10 (the means of
    2-8 and 4-16); the observer's query also holds the pioneer's 10; 2 x 3 + 6 x 1 = 12 FLOPs/N per token."""
    table = budget_table(study("imdb-claims"))
    assert table["ppo"]["optimizer_steps_per_model"] == 120 and table["ppo"]["responses_generated_per_step"] == 32
    assert table["cory"]["optimizer_steps_per_model"] == 120 and table["cory"]["optimizer_steps_per_system"] == 240
    assert table["cory"]["responses_learnt_per_model_per_step"] == 32 and table["cory"]["responses_generated_per_step"] == 64
    assert table["ppo"]["token_flops_per_system"] == 60 * 32 * 15 * 12
    assert table["cory"]["token_flops_per_system"] == 60 * (32 * 15 + 32 * 25) * 12
    assert budget.check(table, {"match": "per model", "equal": ["responses_per_step", "optimizer_steps"]}) == []
    longer = budget_table({**study("imdb-claims"), "arms": {"ppo": {"algorithm": "ppo"}, "cory": {"algorithm": "cory", "args": ["--steps", "120"]}}})
    assert longer["cory"]["optimizer_steps_per_model"] == 240  # an arm that runs longer spends more over its run ...
    assert budget.check(longer, {"match": "per model", "equal": ["optimizer_steps_per_step"]}) == []  # ... at the same rate
    assert budget.check(longer, {"match": "per model", "equal": ["optimizer_steps"]}) == ["optimizer_steps per model differs: ppo 120, cory 240"]


def test_the_critic_free_study_is_refused_as_written():
    """'Equal responses' and '4 optimizer steps per step in both' hold per system; per trained model each
    CORY-GRPO agent learns from 32 responses with 60 optimizer steps, against GRPO's 64 and 120."""
    s = study("imdb-critic-free")
    table = budget_table(s)
    per_model = {"match": "per model", "equal": ["responses_per_step", "optimizer_steps"]}
    with pytest.raises(UsageError, match=r"responses_per_step per model differs: GRPO 64, CORY-GRPO 32; optimizer_steps per model differs: GRPO 120, CORY-GRPO 60"):
        budget.require(table, [per_model], arm_names(s))
    budget.require(table, [{**per_model, "match": "per system"}], arm_names(s))
    with pytest.raises(UsageError, match="states no budget match"):
        budget.require(table, [], arm_names(s))
    assert budget.check(table, {"match": "per arm", "equal": ["responses_per_step"]})[0].startswith("budget claim")


def test_the_addendum_reads_the_committed_critic_free_ledger():
    """Matched updates (CORY-GRPO step 20 vs GRPO step 10: 40 updates per model each): CORY-GRPO's reward is lower
    (-0.23 / -0.28), and with 3 seeds nothing is decided; GRPO ends degenerate (most responses end early)."""
    from cory.studies.addendum import build_section
    from cory.studies.arms import study_arms
    from cory.studies.evaluations import load

    s = study("imdb-critic-free")
    out = ROOT / "results" / "imdb-critic-free"
    names = arm_names(s)
    runs = load(out, [("default", a, seed) for seed in (0, 1, 2) for a in ("ppo", "cory")], study_arms(s))["default"]
    spec = json.loads((out / "addendum.json").read_text())
    lines, numbers = build_section(runs, ["GRPO"], spec, None, names)
    matched = numbers["matched_updates"]
    assert matched["CORY-GRPO agent A - GRPO"]["reward_mean"]["diff"] == pytest.approx(-0.230, abs=1e-3)
    assert matched["CORY-GRPO agent B - GRPO"]["reward_mean"]["diff"] == pytest.approx(-0.283, abs=1e-3)
    assert all(c["label"].startswith("not decided") for cells in numbers["final"].values() for c in cells.values())
    grpo = {r["step"]: r for r in numbers["degeneration"]["GRPO"]}
    assert grpo[30]["ended_early"] > 0.7 and grpo[20]["ended_early"] < 0.1


def test_degeneration_splits_reward_and_kl_by_responses_that_ended_early():
    """By hand: the full length is step 0's longest (3); at step 1 seed 0 has one early response (reward 0.5, KL 2)
    and two full (1.0 and 2.0; KL 6 and 8), seed 1 none early (so it counts only in the full-length mean)."""
    from cory.studies.addendum import degeneration

    def row(step, lengths, rewards, kls):
        return {"step": step, "agent": "policy", "per_prompt": {"response_len": lengths, "reward": rewards, "kl_exact": kls,
                                                                "response_ids": [list(range(n)) for n in lengths]}}
    by_seed = {0: [row(0, [3, 3, 3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), row(1, [1, 3, 3], [0.5, 1.0, 2.0], [2.0, 6.0, 8.0])],
               1: [row(0, [3, 3, 3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), row(1, [3, 3, 3], [3.0, None, 1.0], [4.0, 4.0, 4.0])]}
    step0, step1 = degeneration(by_seed, "policy", None)
    assert math.isnan(step0["reward_early"]) and step0["reward_full"] == 0.0 and step0["ended_early"] == 0.0
    assert step1["ended_early"] == pytest.approx(1 / 6) and step1["length"] == pytest.approx((7 / 3 + 3) / 2)
    assert step1["reward_early"] == 0.5 and step1["kl_early"] == 2.0  # seed 0's alone
    assert step1["reward_full"] == pytest.approx((1.5 + 2.0) / 2) and step1["kl_full"] == pytest.approx((7.0 + 4.0) / 2)


def test_comparison_key_reads_back_its_parts_and_refuses_other_forms():
    key = comparison_key("CORY agent A", "GRPO per-model", "kl", "reward")
    assert key == "kl at reward: CORY agent A - GRPO per-model"
    assert split_comparison(key) == {"read": "kl", "along": "reward", "arm": "CORY agent A", "base": "GRPO per-model"}
    assert split_comparison(comparison_key("CORY agent B", "PPO"))["along"] == "kl"
    assert split_comparison("final r-0.05KL: CORY agent A") is None
    assert split_comparison("reward at kl CORY agent A - PPO") is None
