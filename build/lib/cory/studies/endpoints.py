"""Pre-registered endpoints: each one decided or undecided, with the seeds a decision would need.

An endpoint is a paired difference (CORY agent - PPO, same seeds and prompts) with a 95 % bootstrap CI. It is
decided when its CI excludes 0 (a direction) or is narrow enough to bound the effect (half-width at most
`bound`: 0.1 reward, 2 KL); else undecided, and the seeds it would need at the observed spread follow from the
half-width shrinking as 1/sqrt(seeds) (the seed spread dominates these CIs).
"""
from __future__ import annotations

import math

import numpy as np

MIN_SEEDS = 2
"""below this, the CI holds the prompts' noise only, not the seed-to-seed spread that dominates: never decided"""
BOUNDS = {"reward_mean": 0.1, "kl_exact": 2.0, "combined_eta0.05": 0.1}
"""a CI half-width at most this bounds the effect: the endpoint is decided even if the CI holds 0"""


def decide(ci: dict, bound: float, seeds: int) -> dict:
    """ci: {diff, low, high}. Returns the verdict, the half-width and the seeds a decision would need."""
    half = (ci["high"] - ci["low"]) / 2
    excludes_zero = ci["low"] > 0 or ci["high"] < 0
    decided = seeds >= MIN_SEEDS and (excludes_zero or half <= bound)
    # an undecided endpoint needs more seeds than it has, even where a skewed bootstrap CI makes the square-root
    # rule promise fewer (the imdb-claims default reward of agent B: 8 seeds, undecided, "~7 seeds")
    needed = seeds if decided else max(MIN_SEEDS, seeds + 1, math.ceil(seeds * (half / max(bound, abs(ci["diff"]))) ** 2))
    return {**ci, "half_width": half, "decided": decided, "excludes_zero": excludes_zero, "seeds": seeds, "seeds_needed": needed}


def seed_view(base: list[float], mine: list[float]) -> dict:
    """One difference per seed (mean over prompts), so a reader sees how many seeds point each way."""
    diffs = [b - a for a, b in zip(base, mine)]
    return {"per_seed": [round(d, 4) for d in diffs], "above_0": sum(d > 0 for d in diffs), "below_0": sum(d < 0 for d in diffs)}


def fisher_exact(a_yes: int, a_n: int, b_yes: int, b_n: int) -> float:
    """Two-sided Fisher exact test of a 2x2 table (collapsed seeds of two methods): the probability, under equal
    rates and the observed margins, of a table no more likely than the observed one."""
    total_yes, total = a_yes + b_yes, a_n + b_n

    def p(k: int) -> float:
        return math.comb(a_n, k) * math.comb(b_n, total_yes - k) / math.comb(total, total_yes)

    observed = p(a_yes)
    ks = range(max(0, total_yes - b_n), min(a_n, total_yes) + 1)
    return float(min(1.0, sum(p(k) for k in ks if p(k) <= observed * (1 + 1e-9))))


def claim_1(paired_rows: list[dict]) -> list[dict]:
    """Default setting: CORY's KL lower than PPO's (CI below 0) at a reward no worse than 0.1 below (CI's low end)."""
    rows = []
    for row in paired_rows:
        kl, reward = row["kl_exact"], row["reward_mean"]
        rows.append({"comparison": row["comparison"], "holds": row["seeds"] >= MIN_SEEDS and kl["high"] < 0 and reward["low"] > -0.1,
                     "kl_exact": decide(kl, BOUNDS["kl_exact"], row["seeds"]),
                     "reward_mean": decide(reward, BOUNDS["reward_mean"], row["seeds"]),
                     "combined_eta0.05": decide(row["combined_eta0.05"], BOUNDS["combined_eta0.05"], row["seeds"])})
    return rows


def claim_2(sweep_rows: list[dict], paired_rows: list[dict], baseline: str) -> list[dict]:
    """Fixed KL coefficient 0: collapsed seeds, PPO vs each CORY agent (Fisher exact), and r - 0.05 KL."""
    by_curve = {row["curve"]: row for row in sweep_rows}
    if baseline not in by_curve:
        return []
    base = by_curve[baseline]
    rows = []
    for row in paired_rows:
        curve = row["comparison"].split(" - ")[0]
        mine = by_curve[curve]
        rows.append({"comparison": row["comparison"], "collapsed": f"{mine['collapsed']}/{mine['seeds']} vs "
                     f"{base['collapsed']}/{base['seeds']}",
                     "fisher_p": fisher_exact(mine["collapsed"], mine["seeds"], base["collapsed"], base["seeds"]),
                     "combined_eta0.05": decide(row["combined_eta0.05"], BOUNDS["combined_eta0.05"], row["seeds"])})
    return rows


def verdict(endpoint: dict) -> str:
    """'decided: +0.12 [+0.03, +0.21]' or 'undecided: ... (about N seeds)'."""
    text = f"{endpoint['diff']:+.3f} [{endpoint['low']:+.3f}, {endpoint['high']:+.3f}]"
    if endpoint["decided"]:
        how = "CI excludes 0" if endpoint["excludes_zero"] else f"bounded, |effect| <= {abs(endpoint['diff']) + endpoint['half_width']:.2f}"
        return f"decided ({how}): {text}"
    if endpoint["seeds"] < MIN_SEEDS:
        return f"undecided ({endpoint['seeds']} seed: its CI holds the prompts' noise only): {text}"
    return f"undecided: {text}; ~{endpoint['seeds_needed']} seeds at this spread"


def mean_per_seed(per_prompt_by_seed: list[list[float]]) -> list[float]:
    return [float(np.nanmean(np.asarray(v, dtype=float))) for v in per_prompt_by_seed]
