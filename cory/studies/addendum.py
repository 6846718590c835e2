"""A study's dated addendum: its ledger re-read with the seed-level rules, on the reward-KL frontier, at its budgets.

A study's pre-registered verdicts stay as they were recorded (the summary's table above the addendum); the addendum
(`results/<study>/addendum.json`: its date, KL and reward levels, budget claims and a plain reading) adds, from the
same ledger: the budget table with each claim checked, how far each arm travelled, each agent's reward at matched KL
and KL at matched reward (`cory.studies.frontier`), the final-point endpoints re-decided at the seed level
(`cory.studies.intervals`), optionally a matched-update comparison and each arm's degeneration by step. It is post hoc
when its levels were chosen after the runs, and says so.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from cory.eval.heldout import distinct_n
from cory.run.plots import plot_frontier
from cory.studies import budget as budgets
from cory.studies.endpoints import BOUNDS
from cory.studies.evaluations import agent_of, evals_of, per_prompt
from cory.studies.frontier import compare_at_levels, comparison_key, mean_path, trajectory, travel
from cory.studies.intervals import MIN_DECISION_SEEDS, N_BOOT, seed_level, show

FINAL_METRICS = {"reward_mean": "final reward", "kl_exact": "final KL", "combined_eta0.05": "final r - 0.05 KL"}


def agent_runs(by_curve: dict) -> dict[str, dict[int, dict]]:
    """curve -> seed -> frontier trajectory of that curve's agent alone."""
    return {label: {seed: trajectory(evals_of(rows, agent_of(label))) for seed, rows in by_seed.items()}
            for label, by_seed in by_curve.items()}


def final_matrix(runs: dict[int, dict], seeds: list[int], metric: str, step_index: int = -1) -> list[np.ndarray]:
    """[seeds][prompts] of one metric at one evaluation (default: the last)."""
    out = []
    for seed in seeds:
        run = runs[seed]
        reward, kl = run["reward"][step_index], run["kl"][step_index]
        out.append({"reward_mean": reward, "kl_exact": kl, "combined_eta0.05": reward - 0.05 * kl}[metric])
    return out


def step_index(run: dict, step: int) -> int:
    where = np.flatnonzero(run["steps"] == step)
    if not len(where):
        raise ValueError(f"no evaluation at step {step} (evaluations at {run['steps'].tolist()})")
    return int(where[0])


def degeneration(by_seed: dict[int, list[dict]], agent: str, decode: Callable | None) -> list[dict]:
    """Per evaluation step, mean over seeds: response length, the share that ended before the evaluation's length
    (the longest step-0 response), distinct-2 as a fraction of step 0's, the commonest response's share, and the
    reward and KL of the responses that ended early and of the full-length ones (what a shortening trades: reward
    against the summed per-token KL; a seed with no response in a group counts in the other only)."""
    steps: dict[int, list[dict]] = {}
    for seed, rows in sorted(by_seed.items()):
        evals = evals_of(rows, agent)
        full = max(evals[0]["per_prompt"]["response_len"])
        d2_start = distinct_n(evals[0]["per_prompt"]["response_ids"], 2)
        for row in evals:
            values = row["per_prompt"]
            ids, early = values["response_ids"], np.array([n < full for n in values["response_len"]])
            (common, count), = Counter(tuple(r) for r in ids).most_common(1)
            steps.setdefault(row["step"], []).append({
                "length": float(np.mean(values["response_len"])), "ended_early": float(early.mean()),
                "distinct_2_vs_step_0": distinct_n(ids, 2) / d2_start if d2_start else float("nan"),
                **_split_by_length(row, early), "commonest": f"seed {seed}: {count / len(ids):.0%} {_text(common, decode)}"})
    return [{"step": step, "seeds": len(rows), **{k: _nanmean([r[k] for r in rows]) for k in DEGENERATION_MEANS},
             "commonest": "; ".join(r["commonest"] for r in rows)} for step, rows in sorted(steps.items())]


DEGENERATION_MEANS = ("length", "ended_early", "distinct_2_vs_step_0", "reward_early", "reward_full", "kl_early", "kl_full")


def _split_by_length(row: dict, early: np.ndarray) -> dict[str, float]:
    """Mean reward and exact KL of the responses that ended early and of the full-length ones (nan: none)."""
    reward, kl = (np.asarray(per_prompt(row, metric), dtype=float) for metric in ("reward_mean", "kl_exact"))
    return {f"{name}_{group}": _nanmean(metric[mask]) for name, metric in (("reward", reward), ("kl", kl))
            for group, mask in (("early", early), ("full", ~early))}


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _text(ids: tuple, decode: Callable | None) -> str:
    return repr(decode(list(ids))) if decode else f"ids {list(ids)}"


RULES = (f"Rules: decisions take seeds as the unit: the decision interval is the wider of a t-interval over the per-seed "
         f"means and the crossed seeds x prompts bootstrap ({N_BOOT:,} replicates, fixed generator); nothing is decided on "
         f"fewer than {MIN_DECISION_SEEDS} seeds; a bootstrap CI end within its Monte-Carlo error of 0 is 'borderline'. "
         "Frontier values are read by linear interpolation at the first crossing of each level along each seed's held-out "
         "trajectory (`cory/studies/frontier.py`).")


def build_section(runs: dict, baselines: list[str], spec: dict, table: dict | None, names: dict,
                  decode: Callable | None = None, plot_path: Path | None = None) -> tuple[list[str], dict]:
    """The section's markdown lines (after its heading) and its numbers, from one setting's runs (curve -> seed ->
    ledger rows): every curve that is not a baseline is compared with each baseline curve present."""
    trajectories = agent_runs(runs)
    baselines = [b for b in baselines if b in trajectories]
    pairs = [(label, base) for base in baselines for label in trajectories if label not in baselines]
    lines, numbers = [RULES, ""], {"spec": spec}
    if table is not None:
        lines += budget_lines(table, spec.get("budget_claims", []), names, numbers)
    lines += travel_lines(trajectories, spec.get("kl_levels", []), numbers)
    lines += matched_level_lines(trajectories, pairs, spec, numbers)
    lines += final_point_lines(trajectories, pairs, numbers)
    if spec.get("matched_updates"):
        lines += matched_updates(trajectories, baselines[0], [label for label, _ in pairs], spec["matched_updates"], numbers)
    if spec.get("degeneration"):
        lines += degeneration_lines(runs, decode, numbers)
    if plot_path is not None and trajectories:
        lines += frontier_plot(trajectories, plot_path)
    return lines, numbers


def travel_lines(trajectories: dict, kl_levels: list, numbers: dict) -> list[str]:
    """How far each arm travelled: final KL and reward, and at each KL level the seeds that reach it and when."""
    travelled = {label: travel(runs_, kl_levels) for label, runs_ in trajectories.items()}
    numbers["travel"] = travelled
    lines = ["### How far each arm travelled (mean over seeds; KL levels: seeds that reach it, median step)", "",
             "| arm | seeds | final KL | final reward | " + " | ".join(f"KL {lv:g}" for lv in kl_levels) + " |",
             "|" + " --- |" * (4 + len(kl_levels))]
    for label, t in travelled.items():
        cells = [f"{v['reached']}/{t['seeds']}" + (f", step {v['median_step']:.0f}" if v["median_step"] is not None else "")
                 for v in t["levels"].values()]
        lines.append(f"| {label} | {t['seeds']} | {t['final_kl']:.2f} | {t['final_reward']:.3f} | " + " | ".join(cells) + " |")
    return lines + [""]


def matched_level_lines(trajectories: dict, pairs: list[tuple[str, str]], spec: dict, numbers: dict) -> list[str]:
    """Reward at matched KL and KL at matched reward, arm - baseline, at the spec's levels."""
    numbers["frontier"], lines = {}, []
    for along, read, levels, bound, head in (("kl", "reward", spec.get("kl_levels", []), BOUNDS["reward_mean"], "Reward at matched KL"),
                                             ("reward", "kl", spec.get("reward_levels", []), BOUNDS["kl_exact"], "KL at matched reward")):
        if not levels or not pairs:
            continue
        lines += [f"### {head} (arm - baseline; 'bounded' means within +-{bound:g})", "",
                  "| comparison | level | seeds reaching it in both | difference [95% decision interval] (which interval, seeds): label | not reached |",
                  "| --- | --- | --- | --- | --- |"]
        for label, base in pairs:
            rows = compare_at_levels(trajectories[base], trajectories[label], levels, bound, along, read, (base, label))
            numbers["frontier"][comparison_key(label, base, read, along)] = rows
            lines += [f"| {label} - {base} | {along} {r['level']:g} | {r['reached']}/{r['seeds']} | {show(r)} | "
                      f"{', '.join(r['not_reached']) or '-'} |" for r in rows]
        lines.append("")
    return lines


def final_point_lines(trajectories: dict, pairs: list[tuple[str, str]], numbers: dict) -> list[str]:
    """The final-point endpoints re-decided at the seed level (arm - baseline)."""
    numbers["final"], lines = {}, []
    if pairs:
        lines += ["### The final-point endpoints at the seed level (arm - baseline)", "",
                  "| comparison | " + " | ".join(FINAL_METRICS.values()) + " |", "|" + " --- |" * (1 + len(FINAL_METRICS))]
    for label, base in pairs:
        seeds = sorted(set(trajectories[label]) & set(trajectories[base]))
        cells = {metric: seed_level(final_matrix(trajectories[base], seeds, metric), final_matrix(trajectories[label], seeds, metric),
                                    BOUNDS[metric]) for metric in FINAL_METRICS} if len(seeds) >= 2 else {}
        numbers["final"][f"{label} - {base}"] = cells
        lines.append(f"| {label} - {base} | " + " | ".join(show(c) for c in cells.values()) + " |" if cells else
                     f"| {label} - {base} | " + " | ".join(["fewer than 2 paired seeds"] * len(FINAL_METRICS)) + " |")
    return lines + [""]


def degeneration_lines(runs: dict, decode: Callable | None, numbers: dict) -> list[str]:
    lines = [("### Degeneration by step (mean over seeds; 'ended early': shorter than the evaluation's length; "
             "reward and exact KL of those and of the full-length responses)"), ""]
    numbers["degeneration"] = {}
    for label, by_seed in runs.items():
        rows = degeneration(by_seed, agent_of(label), decode)
        numbers["degeneration"][label] = rows
        lines += [f"**{label}**", "", "| step | length | ended early | reward: early / full-length | KL: early / full-length "
                  "| distinct-2 / step 0's | commonest response per seed |", "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['step']} | {r['length']:.1f} | {r['ended_early']:.0%} | {_pair(r, 'reward', '+.2f')} | {_pair(r, 'kl', '.1f')} "
                  f"| {r['distinct_2_vs_step_0']:.2f} | {r['commonest']} |" for r in rows] + [""]
    return lines


def _pair(row: dict, metric: str, spec: str) -> str:
    return " / ".join("–" if np.isnan(row[f"{metric}_{g}"]) else format(row[f"{metric}_{g}"], spec) for g in ("early", "full"))


def frontier_plot(trajectories: dict, plot_path: Path) -> list[str]:
    paths = {label: {s: (np.nanmean(r["kl"], 1).tolist(), np.nanmean(r["reward"], 1).tolist()) for s, r in runs_.items()}
             for label, runs_ in trajectories.items()}
    plot_frontier(paths, {label: mean_path(r) for label, r in trajectories.items()}, plot_path,
                  title="held-out reward vs KL, each seed thin, the mean bold")
    return [f"![frontier]({plot_path.name})", ""]


def budget_lines(table: dict, claims: list[dict], names: dict, numbers: dict) -> list[str]:
    """The budget table and each claim, checked."""
    lines = ["### Budgets, computed from the settings (`cory/studies/budget.py`)", "", *budgets.markdown_rows(table, names), ""]
    numbers["budget"] = {"table": table, "claims": []}
    for claim in claims:
        problems = budgets.check(table, claim, names)
        numbers["budget"]["claims"].append({**claim, "problems": problems})
        verdict = "holds" if not problems else "does NOT hold: " + "; ".join(problems)
        lines.append(f"- {claim.get('as', '')}: {claim['match']}, equal {', '.join(claim['equal'])}: **{verdict}**")
    return lines + [""]


def matched_updates(trajectories: dict, baseline: str, others: list[str], steps: dict[str, int], numbers: dict) -> list[str]:
    """Each arm at the step where its models have had as many optimizer updates as the baseline's at its step."""
    base_step, lines = steps["baseline"], []
    lines += [f"### Matched updates and samples per model: arm at step {steps['arm']} vs {baseline} at step {base_step}", "",
              "| comparison | reward | KL |", "| --- | --- | --- |"]
    numbers["matched_updates"] = {}
    for label in others:
        seeds = sorted(set(trajectories[label]) & set(trajectories[baseline]))
        cells = {}
        for metric, bound in (("reward_mean", BOUNDS["reward_mean"]), ("kl_exact", BOUNDS["kl_exact"])):
            base = [final_matrix({s: trajectories[baseline][s]}, [s], metric, step_index(trajectories[baseline][s], base_step))[0] for s in seeds]
            mine = [final_matrix({s: trajectories[label][s]}, [s], metric, step_index(trajectories[label][s], steps["arm"]))[0] for s in seeds]
            cells[metric] = seed_level(base, mine, bound)
        numbers["matched_updates"][f"{label} - {baseline}"] = cells
        lines.append(f"| {label} (step {steps['arm']}) - {baseline} (step {base_step}) | {show(cells['reward_mean'])} | {show(cells['kl_exact'])} |")
    return lines + [""]
