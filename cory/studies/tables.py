"""The report's tables: final evaluation per seed, paired differences to the baseline with bootstrap CIs, each agent
in each role, the settings sweep; and how a table is written as markdown.
"""
from __future__ import annotations

import numpy as np

from cory.eval.bootstrap import paired_difference_ci
from cory.studies.endpoints import mean_per_seed, seed_view
from cory.studies.evaluations import (
    DEGENERATE_FRACTION,
    HACKED_SE,
    METRICS,
    ONE_TOKEN_SHARE,
    ROLES,
    SEED_VIEW,
    agent_of,
    evals_of,
    per_prompt,
    statistic,
    value,
)


def final_table(by_curve: dict[str, dict[int, list[dict]]]) -> list[dict]:
    """Final evaluation per (curve, seed), then mean and std per curve."""
    table = []
    for label, by_seed in by_curve.items():
        finals = {seed: evals_of(rows, agent_of(label))[-1] for seed, rows in sorted(by_seed.items())}
        values = {seed: {m: value(row, m) for m in METRICS} for seed, row in finals.items()}
        table += [{"curve": label, "seed": str(seed), "step": finals[seed]["step"], **values[seed]} for seed in values]
        for stat, fn in (("mean", np.mean), ("std", np.std)):
            table.append({"curve": label, "seed": stat, "step": "", **{m: float(fn([v[m] for v in values.values()])) for m in METRICS}})
    return table


def paired_table(by_curve: dict, baseline: str, n_boot: int = 2000) -> list[dict]:
    """For each CORY agent: final(agent) - final(PPO) on the same seeds and prompts, with a 95% bootstrap CI."""
    if baseline not in by_curve:
        return []
    table = []
    for label, by_seed in by_curve.items():
        seeds = sorted(set(by_seed) & set(by_curve[baseline]))
        if label == baseline or not seeds:
            continue
        base = [evals_of(by_curve[baseline][s], "policy")[-1] for s in seeds]
        mine = [evals_of(by_seed[s], agent_of(label))[-1] for s in seeds]
        row = {"comparison": f"{label} - {baseline}", "seeds": len(seeds), "seed_view": {
            m: seed_view(mean_per_seed([per_prompt(r, m) for r in base]), mean_per_seed([per_prompt(r, m) for r in mine]))
            for m in SEED_VIEW}}
        for m in METRICS:
            corpus = m in ("distinct_1", "distinct_2")  # a corpus statistic: seeds resampled, prompts kept whole
            row[m] = paired_difference_ci([per_prompt(r, m) for r in base], [per_prompt(r, m) for r in mine], statistic(m),
                                          n_boot // 4 if corpus else n_boot, resample_prompts=not corpus, nan_mean=not corpus)
        table.append(row)
    return table


def role_table(by_curve: dict) -> list[dict]:
    """Each CORY agent in each role, before training and at the end: mean +- std over seeds of reward and KL."""
    table = []
    for label, by_seed in by_curve.items():
        if agent_of(label) == "policy":
            continue
        for role in ROLES:
            for when in ("first", "last"):
                rows = [evals_of(r, agent_of(label), role) for r in by_seed.values()]
                picked = [r[0] if when == "first" else r[-1] for r in rows if r]
                if not picked:
                    continue
                entry = {"agent": label, "role": role, "step": picked[0]["step"], "seeds": len(picked)}
                for m in ("reward_mean", "kl_exact", "judge_vader", "distinct_2"):
                    vals = [value(r, m) for r in picked]
                    entry[m] = (float(np.mean(vals)), float(np.std(vals)))
                table.append(entry)
    return table


def sweep_table(runs: dict) -> list[dict]:
    """Per setting and curve: final means over seeds, change since the untrained model, collapse counts, and beside
    them the seeds that answer one token on most prompts (`ONE_TOKEN_SHARE`; of them, those the definition misses)."""
    table = []
    for setting, by_curve in runs.items():
        for label, by_seed in by_curve.items():
            finals, collapsed, hacked, degenerate, one_token, one_token_outside = [], 0, 0, 0, 0, 0
            for rows in by_seed.values():
                evals = evals_of(rows, agent_of(label))
                first, last = evals[0], evals[-1]
                f = {m: value(last, m) for m in ("reward_mean", "kl_exact", "distinct_2", "judge_vader")}
                d_reward = f["reward_mean"] - value(first, "reward_mean")
                judge_change = np.subtract(per_prompt(last, "judge_vader"), per_prompt(first, "judge_vader"))  # same prompts
                d_judge = float(judge_change.mean())
                is_hacked = d_reward > 0 and d_judge < -HACKED_SE * judge_change.std() / np.sqrt(len(judge_change))
                is_degenerate = f["distinct_2"] < DEGENERATE_FRACTION * value(first, "distinct_2")
                hacked, degenerate = hacked + bool(is_hacked), degenerate + bool(is_degenerate)
                collapsed += bool(is_hacked or is_degenerate)
                is_one_token = np.mean([n <= 1 for n in per_prompt(last, "response_len")]) > ONE_TOKEN_SHARE
                one_token += bool(is_one_token)
                one_token_outside += bool(is_one_token and not (is_hacked or is_degenerate))
                finals.append({**f, "d_reward": d_reward, "d_judge": d_judge})
            entry = {"setting": setting, "curve": label, "seeds": len(finals), "collapsed": collapsed,
                     "hacked": hacked, "degenerate": degenerate, "one_token": one_token, "one_token_outside": one_token_outside}
            for m in finals[0]:
                entry[m] = (float(np.mean([x[m] for x in finals])), float(np.std([x[m] for x in finals])))
            table.append(entry)
    return table


def markdown(rows: list[dict], columns: list[str], names: dict[str, str] | None = None) -> str:
    names = names or {}
    lines = ["| " + " | ".join(names.get(c, c) for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, dict) and "diff" in v:
        star = " *" if v["low"] > 0 or v["high"] < 0 else ""
        return f"{v['diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]{star}"
    if isinstance(v, tuple):
        return f"{v[0]:.3f} ± {v[1]:.3f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
