"""Reward-KL frontier endpoints: compare methods at matched KL, not at the last step of runs that drifted apart.

Each run's held-out trajectory (step 0 and every evaluation; each agent alone) is a list of (KL, reward) points, one
per evaluation, each the mean over the fixed prompts. The reward at a KL level is read by **linear interpolation at
the first crossing**: the first evaluation whose mean KL is >= the level and the one before it, weighted so the
interpolated mean KL equals the level (a trajectory that starts at or above the level is read at its first point).
The same weights interpolate every prompt's value, so the seeds x prompts bootstrap of `cory.studies.intervals` applies
unchanged. A seed that never reaches a level has no value there: it is counted and named; a level that fewer than
`MIN_DECISION_SEEDS` seeds reach in both arms is "not reached", never decided. The same rule gives the KL at a
reward level, and the step at which a level is reached ("how far it travelled", reported apart from "how good
the trade-off is").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cory.studies.intervals import MIN_DECISION_SEEDS, seed_level


def trajectory(rows: list[dict]) -> dict[str, np.ndarray]:
    """One agent's evaluations (step order) as arrays: steps (T,), per-prompt reward and KL (T, prompts)."""
    reward = np.array([[np.nan if v is None else v for v in r["per_prompt"]["reward"]] for r in rows], dtype=float)
    kl = np.array([r["per_prompt"]["kl_exact"] for r in rows], dtype=float)
    return {"steps": np.array([r["step"] for r in rows], dtype=float), "reward": reward, "kl": kl}


def crossing(x: Sequence[float], level: float) -> tuple[int, float] | None:
    """(i, t) with level = (1 - t) x[i-1] + t x[i] at the first i where x reaches the level; (0, 0.0) if x starts
    there; None if it never does."""
    if x[0] >= level:
        return 0, 0.0
    for i in range(1, len(x)):
        if x[i] >= level:
            return i, float((level - x[i - 1]) / (x[i] - x[i - 1]))
    return None


def at(values: np.ndarray, where: tuple[int, float]) -> np.ndarray:
    """values (T, ...) read at a crossing: (1 - t) values[i-1] + t values[i]."""
    i, t = where
    return values[0] if i == 0 else (1 - t) * values[i - 1] + t * values[i]


def read_at_level(run: dict, level: float, along: str = "kl", read: str = "reward") -> dict | None:
    """Per-prompt `read` and the step where the run's mean `along` first reaches `level`; None if it never does."""
    means = np.nanmean(run[along], axis=1)
    where = crossing(means, level)
    if where is None:
        return None
    return {"values": at(run[read], where), "step": float(at(run["steps"], where))}


def comparison_key(arm: str, base: str, read: str = "reward", along: str = "kl") -> str:
    """How a report's tables (summary.json `frontier`) name one matched-level comparison, e.g.
    "reward at kl: CORY agent A - PPO"; `split_comparison` reads it back."""
    return f"{read} at {along}: {arm} - {base}"


def split_comparison(key: str) -> dict[str, str] | None:
    """The parts of a `comparison_key` (read, along, arm, base); None for a key of another form."""
    head, sep, pair = key.partition(": ")
    read, at, along = head.partition(" at ")
    arm, dash, base = pair.partition(" - ")
    if not (sep and at and dash):
        return None
    return {"read": read, "along": along, "arm": arm, "base": base}


def compare_at_levels(base: dict[int, dict], mine: dict[int, dict], levels: Sequence[float], bound: float,
                      along: str = "kl", read: str = "reward", names: tuple[str, str] = ("baseline", "arm")) -> list[dict]:
    """mine - base of `read` at each level of `along`, paired over the seeds both arms have (seed -> trajectory);
    the seeds that do not reach a level are named, and a level reached by too few seeds is not decided."""
    seeds = sorted(set(base) & set(mine))
    rows = []
    for level in levels:
        got = {s: (read_at_level(base[s], level, along, read), read_at_level(mine[s], level, along, read)) for s in seeds}
        reached = [s for s in seeds if None not in got[s]]
        missing = [f"{name} seed {s}" for s in seeds for name, g in zip(names, got[s]) if g is None]
        row = {"level": level, "seeds": len(seeds), "reached": len(reached), "not_reached": missing}
        if len(reached) >= 2:
            row.update(seed_level([got[s][0]["values"] for s in reached], [got[s][1]["values"] for s in reached], bound))
        if len(reached) < min(MIN_DECISION_SEEDS, len(seeds)):
            row["label"] = row["text"] = f"not reached ({len(reached)} of {len(seeds)} seeds in both arms; {MIN_DECISION_SEEDS} needed)"
        elif len(reached) < 2:
            row["label"] = row["text"] = f"{len(reached)} seed: nothing to decide ({MIN_DECISION_SEEDS} needed)"
        rows.append(row)
    return rows


def travel(runs: dict[int, dict], levels: Sequence[float]) -> dict:
    """How far an arm went: final KL and reward (mean over seeds) and, per KL level, how many seeds reached it and
    the median step at which they did."""
    final_kl = [float(np.nanmean(r["kl"][-1])) for r in runs.values()]
    final_reward = [float(np.nanmean(r["reward"][-1])) for r in runs.values()]
    out = {"seeds": len(runs), "final_kl": float(np.mean(final_kl)), "final_reward": float(np.mean(final_reward)), "levels": {}}
    for level in levels:
        steps = [hit["step"] for r in runs.values() if (hit := read_at_level(r, level)) is not None]
        out["levels"][level] = {"reached": len(steps), "median_step": float(np.median(steps)) if steps else None}
    return out


def mean_path(runs: dict[int, dict]) -> tuple[np.ndarray, np.ndarray]:
    """The arm's mean trajectory: at each evaluation step every seed has, the mean over seeds of (KL, reward)."""
    common = sorted(set.intersection(*(set(r["steps"].tolist()) for r in runs.values())))
    pick = lambda r, key: np.array([np.nanmean(r[key][list(r["steps"]).index(s)]) for s in common])  # noqa: E731
    return (np.mean([pick(r, "kl") for r in runs.values()], axis=0), np.mean([pick(r, "reward") for r in runs.values()], axis=0))
