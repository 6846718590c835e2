"""Seed-level decisions: seeds are the experimental unit, so no interval may be narrower than the seeds allow.

A paired difference (one arm minus a baseline, same seeds, same prompts) gets two 95 % intervals: (a) a t-interval
over the per-seed means (mean over the prompts), and (b) the crossed seeds x prompts percentile bootstrap
(`cory.eval.bootstrap`) at `N_BOOT` replicates from a fixed generator. The decision interval is the wider of the two:
with 3 seeds the bootstrap is about 3x narrower than the t-interval (it cannot see that 3 seeds say little about
the spread of seeds). The label is

- "not decided (N seeds < 5)": fewer than `MIN_DECISION_SEEDS` seeds, whatever the interval says;
- "borderline": the decision interval is the bootstrap's and one of its ends lies within the Monte-Carlo error of 0
  (the label would flip with the bootstrap's random seed);
- "above 0" / "below 0": the interval excludes 0; "bounded within +-b": it holds 0 and lies within +-b (the
  endpoint's bound: 0.1 reward, 2 KL), so the effect is at most b either way; else "undecided", with the seeds a
  decision would need at this spread.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cory.eval.bootstrap import crossed_mean_replicates

MIN_DECISION_SEEDS = 5
"""no endpoint is decided on fewer seeds (the seed-to-seed spread cannot be estimated from 3)"""
N_BOOT = 10_000
LEVEL = 0.95


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (p > 0.5), by bisection on its CDF, the CDF by
    Simpson's rule on the density (exact to ~1e-9 here; numpy has no t distribution and scipy is not a dependency)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf_above_half(x: float) -> float:  # P(0 < T < x)
        n = 4000
        grid = np.linspace(0.0, x, n + 1)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
        return float((x / n) / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum()))

    low, high = 0.0, 1.0
    while cdf_above_half(high) < p - 0.5:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf_above_half(mid) < p - 0.5 else (low, mid)
    return (low + high) / 2


def t_interval(per_seed: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """Mean and t-interval of per-seed differences (at least two seeds)."""
    d = np.asarray(per_seed, dtype=float)
    if len(d) < 2:
        return {"diff": float(d.mean()) if len(d) else float("nan"), "low": float("-inf"), "high": float("inf")}
    half = t_quantile(1 - (1 - level) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return {"diff": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half)}


def monte_carlo_band(replicates: np.ndarray, p: float) -> tuple[float, float]:
    """The values the bootstrap's p-quantile could have taken with another random seed: the quantiles at
    p +- 2 sqrt(p (1-p) / B) (the binomial spread of how many of B replicates fall below the true quantile)."""
    spread = 2 * math.sqrt(p * (1 - p) / len(replicates))
    return tuple(float(q) for q in np.quantile(replicates, [max(p - spread, 0.0), min(p + spread, 1.0)]))


def seed_level(base: Sequence[Sequence[float]], mine: Sequence[Sequence[float]], bound: float,
               n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """mine - base on the same seeds x prompts ([seeds][prompts] of per-prompt values; NaN-free rows): both
    intervals, the decision interval (the wider), and its label."""
    per_seed = [float(np.nanmean(m)) - float(np.nanmean(b)) for b, m in zip(base, mine)]
    t = t_interval(per_seed)
    diff, replicates = crossed_mean_replicates(base, mine, n_boot, seed)
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    boot = {"diff": diff, "low": float(low), "high": float(high), "n_boot": n_boot,
            "band_low": monte_carlo_band(replicates, alpha), "band_high": monte_carlo_band(replicates, 1 - alpha)}
    chosen = "t" if t["high"] - t["low"] >= boot["high"] - boot["low"] else "bootstrap"
    decision = t if chosen == "t" else boot
    return {"diff": t["diff"], "seeds": len(per_seed), "per_seed": [round(d, 4) for d in per_seed], "t": t,
            "bootstrap": boot, "interval": chosen, "low": decision["low"], "high": decision["high"],
            **label(decision, chosen, len(per_seed), bound, boot)}


def label(decision: dict, chosen: str, seeds: int, bound: float, boot: dict) -> dict:
    """The verdict of a decision interval (see the module's docstring), and the seeds a decision would need at
    this spread (the half-width shrinks as 1/sqrt(seeds): enough to exclude 0, or to fit within +-bound)."""
    low, high, diff = decision["low"], decision["high"], decision["diff"]
    half = (high - low) / 2
    excludes, within = low > 0 or high < 0, -bound <= low and high <= bound
    if seeds >= MIN_DECISION_SEEDS and (excludes or within):
        needed = seeds
    else:
        shrink = min(half / abs(diff) if diff else math.inf, half / (bound - abs(diff)) if abs(diff) < bound else math.inf)
        needed = max(MIN_DECISION_SEEDS, seeds + 1, math.ceil(seeds * shrink**2) if math.isfinite(shrink) else seeds + 1)
    if seeds < MIN_DECISION_SEEDS:
        text = f"not decided ({seeds} seeds < {MIN_DECISION_SEEDS})"
    elif chosen == "bootstrap" and any(a <= 0 <= b for a, b in (boot["band_low"], boot["band_high"])):
        text = "borderline (a CI end within the bootstrap's Monte-Carlo error of 0)"
    elif excludes:
        text = "above 0" if low > 0 else "below 0"
    elif within:
        text = f"bounded within +-{bound:g}"
    else:
        text = f"undecided (~{needed} seeds at this spread)"
    return {"label": text, "seeds_needed": needed}


def show(result: dict) -> str:
    """'+0.031 [-0.059, +0.120] (t, 8 seeds): undecided (~12 seeds at this spread)'."""
    if "diff" not in result:
        return result["text"]
    return (f"{result['diff']:+.3f} [{result['low']:+.3f}, {result['high']:+.3f}] ({result['interval']}, "
            f"{result['seeds']} seeds): {result['label']}")
