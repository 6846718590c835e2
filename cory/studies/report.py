"""The PPO-vs-CORY report from a study's ledger: final tables per seed, paired CIs, endpoints, roles, sweep, plots.

Every number comes from the held-out evaluations the runs logged (fixed prompts, fixed sampling seed) and
their ledger entries keep (`cory.studies.ledger`), so the report can be rebuilt at any time from the repository. Per-prompt values give paired bootstrap CIs
over seeds and prompts (`cory.eval.bootstrap`). The second judge of positivity is VADER (a lexicon and rules,
Hutto & Gilbert 2014), independent of the reward model: a policy that raises the reward model's score while
VADER's falls is exploiting the reward model, not writing more positive text.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cory.studies.addendum import build as build_addendum
from cory.studies.arms import AGENTS, arm_names, baseline_arm, study_arms
from cory.eval.bootstrap import paired_difference_ci
from cory.studies.endpoints import MIN_SEEDS, claim_1, claim_2, fisher_exact, mean_per_seed, seed_view, verdict
from cory.eval.heldout import ETAS, distinct_n
from cory.studies.ledger import entry_path, read_entry
from cory.platform.paths import atomic_file
from cory.run.plots import plot_grid, plot_mean_std, plot_trajectories

ETA_PLOT = 0.05
METRICS = ("reward_mean", "kl_exact", *[f"combined_eta{e:g}" for e in ETAS], "distinct_1", "distinct_2", "response_len", "judge_vader")
SHORT = {"reward_mean": "reward", "kl_exact": "KL", "response_len": "length", "judge_vader": "VADER"}
DEGENERATE_FRACTION = 0.5
"""collapse (degenerate text): final distinct-2 below this fraction of the untrained model's"""
HACKED_SE = 2.0
"""collapse (reward hacking): the reward rose since step 0 while VADER fell by more than this many standard
errors of its per-prompt change (paired over the same prompts), so that sampling noise alone is not a collapse"""
ROLES = ("alone", "observer_of_other", "observer_of_self")
SEED_VIEW = ("reward_mean", "kl_exact", "combined_eta0.05")
PRECISION = {"no": "fp32 on every machine (mixed_precision no)", "bf16": "bf16 autocast", "": "the preset's"}


def judge(texts: list[str]) -> list[float]:
    """VADER compound positivity in [-1, 1] per text."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def per_prompt(row: dict, metric: str) -> list:
    """Per-prompt values of `metric` in one evaluation row (what the bootstrap resamples)."""
    values = row["per_prompt"]
    reward = [np.nan if v is None else v for v in values["reward"]]
    if metric == "reward_mean":
        return reward
    if metric.startswith("combined_eta"):
        eta = float(metric.removeprefix("combined_eta"))
        return [r - eta * k for r, k in zip(reward, values["kl_exact"])]
    if metric in ("distinct_1", "distinct_2"):
        return values["response_ids"]
    if metric == "judge_vader":
        if "judge_vader" not in values and "response_text" in values:  # a run's eval.jsonl holds the text
            values["judge_vader"] = judge(values["response_text"])
        return values.get("judge_vader", [np.nan] * len(reward))  # a task without a second judge (GSM8K, your own)
    return values[{"kl_exact": "kl_exact", "response_len": "response_len"}[metric]]


def statistic(metric: str):
    """How a list of per-prompt values becomes the metric (a mean, or corpus-level distinct-n)."""
    if metric in ("distinct_1", "distinct_2"):
        n = int(metric[-1])
        return lambda responses: distinct_n(responses, n)
    return lambda values: _mean_or_nan(np.asarray(values, dtype=float))


def _mean_or_nan(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def value(row: dict, metric: str) -> float:
    return statistic(metric)(per_prompt(row, metric))


def read_eval(directory: Path) -> list[dict]:
    """A run directory's evaluation rows (the variants report reads runs; a study's report reads its ledger)."""
    path = directory / "eval.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def evals_of(rows: list[dict], agent: str, role: str = "alone") -> list[dict]:
    """One agent's evaluations in one role, in step order (rows logged before roles existed count as alone)."""
    return sorted((r for r in rows if r["agent"] == agent and r.get("role", "alone") == role and r.get("per_prompt")),
                  key=lambda r: r["step"])


def curve_label(name: str, agent: str) -> str:
    """'PPO' for a PPO arm's policy, 'CORY agent A' for a CORY agent (under the arm's name)."""
    return name if agent == "policy" else f"{name} agent {agent.removeprefix('agent_').upper()}"


def agent_of(label: str) -> str:
    """The agent a curve label shows (the inverse of `curve_label`)."""
    head, _, letter = label.rpartition(" agent ")
    return f"agent_{letter.lower()}" if head and len(letter) == 1 else "policy"


def load(out: Path, jobs: list[tuple[str, str, int]], arms: dict[str, dict]) -> dict[str, dict[str, dict[int, list[dict]]]]:
    """setting -> curve -> seed -> that run's evaluation rows (all agents and roles), from the ledger entries of
    the jobs (setting, arm, seed); `arms` (`cory.studies.arms.study_arms`) gives each arm's algorithm and name."""
    runs: dict = {}
    for setting, arm, seed in jobs:
        path = entry_path(out, setting, arm, seed)
        rows = read_entry(path)["evals"] if path.exists() else []
        for agent in AGENTS[arms[arm]["algorithm"]]:
            if evals_of(rows, agent):
                runs.setdefault(setting, {}).setdefault(curve_label(arms[arm]["name"], agent), {})[seed] = rows
    return runs


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
    """Per setting and curve: final means over seeds, change since the untrained model, and collapse counts."""
    table = []
    for setting, by_curve in runs.items():
        for label, by_seed in by_curve.items():
            finals, collapsed, hacked, degenerate = [], 0, 0, 0
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
                finals.append({**f, "d_reward": d_reward, "d_judge": d_judge})
            entry = {"setting": setting, "curve": label, "seeds": len(finals), "collapsed": collapsed,
                     "hacked": hacked, "degenerate": degenerate}
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


def endpoint_lines(tables: dict, endpoints: dict, baseline: str, cory_name: str, decided_the_old_way: bool = True) -> list[str]:
    """The pre-registered endpoints (study.json), each decided or undecided by the rule of the studies before
    2026-12-07 (`decided_the_old_way`; later studies register the seed-level rule and `frontier_sections` decides
    them), and the seed-level view. The verdict
    of claim 1's rule is shown only where the study registered claim 1 (another study's endpoints are its own)."""
    metrics = {"reward_mean": "reward", "kl_exact": "KL", "combined_eta0.05": "r-0.05KL"}
    lines = ["## Pre-registered endpoints", "", *[f"- {k}: {v}" for k, v in endpoints.items()], ""]
    if tables["claim_1"] and decided_the_old_way:
        if any(key.startswith("claim 1") for key in endpoints):
            lines += ["Claim 1 (default setting): " + ", ".join(
                f"{r['comparison']}: {'holds' if r['holds'] else 'not shown' if r['kl_exact']['seeds'] < MIN_SEEDS else 'does not hold'}"
                for r in tables["claim_1"]), ""]
        lines += markdown([{"comparison": r["comparison"], **{metrics[m]: verdict(r[m]) for m in metrics}} for r in tables["claim_1"]],
                          ["comparison", *metrics.values()]).splitlines() + [""]
    if tables["claim_2"] and decided_the_old_way:
        lines += [f"Claim 2 (fixed KL coefficient 0): collapsed seeds ({cory_name} agent vs {baseline}), two-sided "
                  "Fisher exact p, r - 0.05 KL", ""]
        lines += markdown([{**r, "r-0.05KL": verdict(r["combined_eta0.05"])} for r in tables["claim_2"]],
                          ["comparison", "collapsed", "fisher_p", "r-0.05KL"]).splitlines() + [""]
    views = [{"setting": setting, "comparison": row["comparison"], "metric": metrics[m],
              "per-seed difference": " ".join(f"{d:+.3f}" for d in view["per_seed"]),
              "seeds above / below 0": f"{view['above_0']} / {view['below_0']}"}
             for setting, rows in (("default", tables["paired"]), ("kl0", tables["paired_kl0"]))
             for row in rows for m, view in row["seed_view"].items()]
    if views:
        lines += ["Seed-level view (one difference per seed, mean over the prompts; seeds in order):", "",
                  markdown(views, ["setting", "comparison", "metric", "per-seed difference", "seeds above / below 0"]), ""]
    return lines


def frontier_sections(runs: dict, meta: dict, budget: dict | None, names: dict, decode, out: Path, tables: dict) -> list[str]:
    """The pre-registered frontier endpoints of each setting (`cory.studies.addendum.build`), and the collapsed seeds
    of each arm, each CORY agent against each baseline by Fisher's exact test."""
    spec = {**meta["frontier"], "budget_claims": meta.get("budget", [])}
    baselines = [names[b] for b in spec.get("baselines", [baseline_arm(meta)])]
    parts, tables["frontier"] = ["## Collapsed seeds per setting (final evaluation; the collapse definition above)", "",
                                 "| setting | arm | collapsed | hacked | degenerate | vs " + " / ".join(baselines) + " (Fisher exact p) |",
                                 "| --- | --- | --- | --- | --- | --- |"], {}
    for row in tables["sweep"]:
        by_curve = {r["curve"]: r for r in tables["sweep"] if r["setting"] == row["setting"]}
        tests = [f"{fisher_exact(row['collapsed'], row['seeds'], b['collapsed'], b['seeds']):.3f}" for b in
                 (by_curve.get(name) for name in baselines) if b is not None and row["curve"] not in baselines]
        parts.append(f"| {row['setting']} | {row['curve']} | {row['collapsed']}/{row['seeds']} | {row['hacked']} | {row['degenerate']} | "
                     f"{' / '.join(tests) or '-'} |")
    parts.append("")
    for setting, by_curve in runs.items():
        plot_path = out / ("frontier.png" if setting == "default" else f"frontier-{setting}.png")
        lines, tables["frontier"][setting] = build_addendum(by_curve, baselines, spec, budget if setting == "default" else None,
                                                            names, evals_of, agent_of, decode, plot_path)
        parts += [f"## Pre-registered frontier endpoints: setting {setting}", "", *lines]
    return parts


def completeness(missing: list) -> str:
    """How far the study got, in words a reader takes in at a glance: 'complete' rather than '0 runs missing'."""
    if not missing:
        return "complete (every run of study.json is in the ledger)"
    shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
    return f"{len(missing)} run(s) missing ({shown})"


def write_report(out: Path, meta: dict, jobs: list[tuple[str, str, int]], walls: dict, addendum: dict | None = None,
                 budget: dict | None = None, decode=None) -> dict:
    """summary.md, summary.json and the plots in `out`; returns what summary.json holds. With `addendum` (a study's
    addendum.json) its dated section follows the pre-registered endpoints (`cory.studies.addendum`)."""
    arms = study_arms(meta)
    names = arm_names(meta)
    baseline = names[baseline_arm(meta)]
    cory_name = next((spec["name"] for spec in arms.values() if spec["algorithm"] == "cory"), "CORY")
    runs = load(out, jobs, arms)
    default = runs.get("default", {})
    tables = {"final": final_table(default), "paired": paired_table(default, baseline), "roles": role_table(default),
              "sweep": sweep_table(runs), "paired_kl0": paired_table(runs.get("kl0", {}), baseline)}
    tables["claim_1"] = claim_1(tables["paired"])
    tables["claim_2"] = claim_2([r for r in tables["sweep"] if r["setting"] == "kl0"], tables["paired_kl0"], baseline)
    if meta.get("extra_args"):  # the default setting of this comparison is not the preset's: name it by its flags
        for row in tables["sweep"]:
            row["setting"] = " ".join(meta["extra_args"]) if row["setting"] == "default" else row["setting"]
    hours = sum(walls.values()) / 3600
    columns = {**SHORT, **{f"combined_eta{e:g}": f"r-{e:g}KL" for e in ETAS}}
    seeds = {setting: sorted({s for by_seed in by_curve.values() for s in by_seed}) for setting, by_curve in runs.items()}
    task = {"imdb": "IMDB", "gsm8k": "GSM8K", "text": "your own task"}.get(meta.get("task", "imdb"), meta.get("task"))
    parts = [f"# {' vs '.join(names.values())} on {task} ({meta.get('task_preset', '')} preset)", "",
             f"- this report, from the committed ledger alone: `{meta.get('command', '')}`",
             f"- settings (fixed before the runs in study.json): {meta.get('steps')} steps, seeds {meta.get('seeds')}, held-out "
             f"evaluation on {meta.get('eval_prompts')} fixed held-out prompts every {meta.get('eval_every')} steps (sampling seed = "
             f"run seed), precision {PRECISION.get(meta.get('mixed_precision'), 'the preset')}, extra args {meta.get('extra_args', [])}"
             + "".join(f", {spec['name']} also {spec['args']}" for spec in arms.values() if spec["args"]),
             f"- seeds in the ledger: {seeds}; {completeness(meta.get('missing', []))}",
             f"- machines: {meta.get('machine', '')}; {hours:.2f} h of runs in all; training commit(s) {meta.get('git_commit', '')}",
             "- metrics: held-out task reward, exact KL(pi || pi_ref) summed over the response, r - eta KL, distinct-1/2, "
             "response length (tokens), and for IMDB the VADER compound of the response (an independent judge; NaN elsewhere)", ""]
    if meta.get("endpoints"):
        parts += endpoint_lines(tables, meta["endpoints"], baseline, cory_name, meta.get("decision_rule") != "seed-level")
    if meta.get("frontier"):  # a study that pre-registered frontier endpoints (seed-level rules): one section per setting
        parts += frontier_sections(runs, meta, budget, names, decode, out, tables)
    if addendum:
        parts.insert(2, f"**Read the addendum of {addendum['written']} below the pre-registered endpoints first**: "
                        f"{addendum['headline']}")
        parts.insert(3, "")
        lines, tables["addendum"] = build_addendum(default, [baseline], addendum, budget, names, evals_of, agent_of, decode, out / "frontier.png")
        parts += [f"## Addendum, {addendum['written']} ({addendum['post_hoc']})", "", addendum.get("why", ""), "", *lines,
                  "### What this study can and cannot say", "", addendum.get("reading", ""), ""]
    parts += ["## Final held-out evaluation, per seed and mean ± std", "",
              markdown(tables["final"], ["curve", "seed", "step", *METRICS], columns), "",
              f"## Paired difference to {baseline} (same seeds, same prompts), 95% bootstrap CI over seeds and prompts "
              "(distinct-n, a corpus statistic: over seeds, each seed's prompts kept whole)", "",
              "`*`: the CI excludes 0.", "",
              markdown(tables["paired"], ["comparison", "seeds", *METRICS], columns), ""]
    if tables["paired_kl0"]:
        parts += [f"## Paired difference to {baseline} at a fixed KL coefficient 0 (setting kl0)", "",
                  markdown(tables["paired_kl0"], ["comparison", "seeds", *METRICS], columns), ""]
    parts += ["![curves](curves.png)", "", "![reward vs KL](pareto.png)", ""]
    if len(runs) > 1:
        parts += ["![sweep](sweep.png)", ""]
    if walls:
        parts += ["## Wall time per run (minutes)", "", markdown([{"run": k, "minutes": v / 60} for k, v in sorted(walls.items())], ["run", "minutes"]), ""]
    atomic_file(out / "summary.md", "\n".join(parts))
    atomic_file(out / "summary.json", json.dumps({"meta": meta, **tables, "wall_seconds": walls}, indent=1, default=list))
    plot(out, runs)
    print("\n".join(parts[:30]))
    return tables


def series_of(by_curve: dict, metrics) -> dict:
    """curve -> metric -> step -> [value per seed], from the `alone` evaluations."""
    series = {}
    for label, by_seed in by_curve.items():
        series[label] = {m: {} for m in metrics}
        for rows in by_seed.values():
            for row in evals_of(rows, agent_of(label)):
                for m in metrics:
                    series[label][m].setdefault(row["step"], []).append(value(row, m))
    return series


def plot(out: Path, runs: dict) -> None:
    combined = f"combined_eta{ETA_PLOT:g}"
    default = runs.get("default", {})
    panels = {"reward_mean": "held-out task reward", "kl_exact": "KL to reference (exact, summed)",
              combined: f"combined reward r - {ETA_PLOT} KL"}
    series = series_of(default, panels)
    plot_mean_std(series, panels, out / "curves.png", title="mean ± std over seeds")
    plot_trajectories(series, "kl_exact", "reward_mean", out / "pareto.png", title="reward vs KL (mean over seeds; large: end)")
    if len(runs) > 1:
        grid = {setting: series_of(by_curve, ("reward_mean", "kl_exact", "judge_vader")) for setting, by_curve in runs.items()}
        plot_grid(grid, {"reward_mean": "task reward", "kl_exact": "KL", "judge_vader": "VADER (2nd judge)"}, out / "sweep.png")
