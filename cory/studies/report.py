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

from cory.eval.heldout import ETAS
from cory.platform.paths import atomic_file
from cory.run.plots import plot_grid, plot_mean_std, plot_trajectories
from cory.studies.addendum import build_section
from cory.studies.answer import answer_section, plain_answer
from cory.studies.arms import arm_names, baseline_arm, study_arms
from cory.studies.endpoints import MIN_SEEDS, claim_1, claim_2, fisher_exact, verdict
from cory.studies.evaluations import ETA_PLOT, METRICS, PRECISION, SHORT, agent_of, evals_of, load, value
from cory.studies.status import first_runs, update_page
from cory.studies.tables import final_table, markdown, paired_table, role_table, sweep_table


def endpoint_lines(tables: dict, endpoints: dict, baseline: str, cory_name: str) -> list[str]:
    """The pre-registered endpoints (study.json), each decided or undecided by the rule of the studies before
    2026-12-07 (`report_tables` leaves those verdicts empty for a study that registered the seed-level rule, which
    `frontier_sections` decides), and the seed-level view. The verdict
    of claim 1's rule is shown only where the study registered claim 1 (another study's endpoints are its own)."""
    metrics = {"reward_mean": "reward", "kl_exact": "KL", "combined_eta0.05": "r-0.05KL"}
    lines = ["## Pre-registered endpoints", "", *[f"- {k}: {v}" for k, v in endpoints.items()], ""]
    if tables["claim_1"]:
        if any(key.startswith("claim 1") for key in endpoints):
            lines += ["Claim 1 (default setting): " + ", ".join(
                f"{r['comparison']}: {'holds' if r['holds'] else 'not shown' if r['kl_exact']['seeds'] < MIN_SEEDS else 'does not hold'}"
                for r in tables["claim_1"]), ""]
        lines += markdown([{"comparison": r["comparison"], **{metrics[m]: verdict(r[m]) for m in metrics}} for r in tables["claim_1"]],
                          ["comparison", *metrics.values()]).splitlines() + [""]
    if tables["claim_2"]:
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
    """The pre-registered frontier endpoints of each setting (`cory.studies.addendum.build_section`), and the collapsed seeds
    of each arm, each CORY agent against each baseline by Fisher's exact test."""
    spec = {**meta["frontier"], "budget_claims": meta.get("budget", [])}
    baselines = [names[b] for b in spec.get("baselines", [baseline_arm(meta)])]
    parts, tables["frontier"] = ["## Collapsed seeds per setting (final evaluation; the collapse definition above)", "",
                                 "| setting | arm | collapsed | hacked | degenerate | vs " + " / ".join(baselines) + " (Fisher exact p) "
                                 "| one token on most prompts, not in the definition (of them not collapsed) |",
                                 "| --- | --- | --- | --- | --- | --- | --- |"], {}
    for row in tables["sweep"]:
        by_curve = {r["curve"]: r for r in tables["sweep"] if r["setting"] == row["setting"]}
        tests = [f"{fisher_exact(row['collapsed'], row['seeds'], b['collapsed'], b['seeds']):.3f}" for b in
                 (by_curve.get(name) for name in baselines) if b is not None and row["curve"] not in baselines]
        parts.append(f"| {row['setting']} | {row['curve']} | {row['collapsed']}/{row['seeds']} | {row['hacked']} | {row['degenerate']} | "
                     f"{' / '.join(tests) or '-'} | {row['one_token']} ({row['one_token_outside']}) |")
    parts.append("")
    for setting, by_curve in runs.items():
        plot_path = out / ("frontier.png" if setting == "default" else f"frontier-{setting}.png")
        lines, tables["frontier"][setting] = build_section(by_curve, baselines, spec, budget if setting == "default" else None,
                                                           names, decode, plot_path)
        parts += [f"## Pre-registered frontier endpoints: setting {setting}", "", *lines]
    return parts


def completeness(missing: list) -> str:
    """How far the study got, in words a reader takes in at a glance: 'complete' rather than '0 runs missing'."""
    if not missing:
        return "complete (every run of study.json is in the ledger)"
    return f"{len(missing)} run(s) missing ({first_runs(missing)})"


def write_report(out: Path, meta: dict, jobs: list[tuple[str, str, int]], walls: dict, addendum: dict | None = None,
                 budget: dict | None = None, decode=None) -> dict:
    """summary.md, summary.json and the plots in `out`; returns what summary.json holds. With `addendum` (a study's
    addendum.json) its dated section follows the pre-registered endpoints (`cory.studies.addendum`)."""
    arms, names = study_arms(meta), arm_names(meta)
    baseline = names[baseline_arm(meta)]
    cory_name = next((spec["name"] for spec in arms.values() if spec["algorithm"] == "cory"), "CORY")
    runs = load(out, jobs, arms)
    default = runs.get("default", {})
    tables = report_tables(runs, baseline, meta)
    columns = {**SHORT, **{f"combined_eta{e:g}": f"r-{e:g}KL" for e in ETAS}}
    parts = header_lines(meta, names, arms, runs, walls)
    if meta.get("endpoints"):
        parts += endpoint_lines(tables, meta["endpoints"], baseline, cory_name)
    if meta.get("frontier"):  # a study that pre-registered frontier endpoints (seed-level rules): one section per setting
        parts += frontier_sections(runs, meta, budget, names, decode, out, tables)
    if addendum:
        parts.insert(2, f"**Read the addendum of {addendum['written']} below the pre-registered endpoints first**: "
                        f"{addendum['headline']}")
        parts.insert(3, "")
        lines, tables["addendum"] = build_section(default, [baseline], addendum, budget, names, decode, out / "frontier.png")
        parts += [f"## Addendum, {addendum['written']} ({addendum['post_hoc']})", "", addendum.get("why", ""), "", *lines,
                  "### What this study can and cannot say", "", addendum.get("reading", ""), ""]
    parts += ["## Final held-out evaluation, per seed and mean ± std", "",
              markdown(tables["final"], ["curve", "seed", "step", *METRICS], columns), "",
              f"## Paired difference to {baseline} (same seeds, same prompts), 95% bootstrap CI over seeds and prompts "
              "(distinct-n, a corpus statistic: over seeds, each seed's prompts kept whole)", "",
              "`*`: the CI excludes 0." + (" Descriptive only: the arms' final points lie at different distances along "
                                          "the reward-KL frontier; the frontier endpoints above decide." if meta.get("frontier") else ""), "",
              markdown(tables["paired"], ["comparison", "seeds", *METRICS], columns), ""]
    if tables["paired_kl0"]:
        parts += [f"## Paired difference to {baseline} at a fixed KL coefficient 0 (setting kl0)", "",
                  markdown(tables["paired_kl0"], ["comparison", "seeds", *METRICS], columns), ""]
    parts += ["![curves](curves.png)", "", "![reward vs KL](pareto.png)", ""]
    if len(runs) > 1:
        parts += ["![sweep](sweep.png)", ""]
    if walls:
        parts += ["## Wall time per run (minutes)", "", markdown([{"run": k, "minutes": v / 60} for k, v in sorted(walls.items())], ["run", "minutes"]), ""]
    answer = []
    if meta.get("frontier"):  # a study with frontier endpoints ends with its plain answer, by its registered rule
        agents = sorted(curve for curve in default if agent_of(curve) != "policy")  # the CORY agents' curves
        answer = plain_answer(meta.get("name", ""), meta, tables, agents, names[meta["frontier"].get("baselines", [baseline_arm(meta)])[0]])
        parts += answer_section(meta.get("name", ""), meta, answer)
    atomic_file(out / "summary.md", "\n".join(parts))
    atomic_file(out / "summary.json", json.dumps({"meta": meta, **tables, "wall_seconds": walls}, indent=1, default=list))
    plot(out, runs)
    if answer:  # the study's own page shows the same status and answer
        update_page(out, len(jobs), meta.get("missing", []), answer)
    print("\n".join(parts[:30]))
    return tables


def report_tables(runs: dict, baseline: str, meta: dict) -> dict:
    """Every table of the report, from the ledger's evaluations: final, paired (default and kl0), roles, sweep, and the
    verdicts of claims 1 and 2 by the final-point rule of the studies before 2026-12-07: empty for a study that
    registered the seed-level rule, whose summary.json must not carry verdicts its rule does not make (4 seeds
    'decided' at the final step, where it decides on the frontier and never under 5 seeds)."""
    default = runs.get("default", {})
    tables = {"final": final_table(default), "paired": paired_table(default, baseline), "roles": role_table(default),
              "sweep": sweep_table(runs), "paired_kl0": paired_table(runs.get("kl0", {}), baseline)}
    final_point_rule = meta.get("decision_rule") != "seed-level"
    tables["claim_1"] = claim_1(tables["paired"]) if final_point_rule else []
    tables["claim_2"] = claim_2([r for r in tables["sweep"] if r["setting"] == "kl0"], tables["paired_kl0"], baseline) if final_point_rule else []
    if meta.get("extra_args"):  # the default setting of this comparison is not the preset's: name it by its flags
        for row in tables["sweep"]:
            row["setting"] = " ".join(meta["extra_args"]) if row["setting"] == "default" else row["setting"]
    return tables


def header_lines(meta: dict, names: dict, arms: dict, runs: dict, walls: dict) -> list[str]:
    """The report's title and what it was made from: settings fixed before the runs, seeds, machines, metrics."""
    hours = sum(walls.values()) / 3600
    seeds = {setting: sorted({s for by_seed in by_curve.values() for s in by_seed}) for setting, by_curve in runs.items()}
    task = {"imdb": "IMDB", "gsm8k": "GSM8K", "text": "your own task"}.get(meta.get("task", "imdb"), meta.get("task"))
    return [f"# {' vs '.join(names.values())} on {task} ({meta.get('task_preset', '')} preset)", "",
            f"- this report, from the committed ledger alone: `{meta.get('command', '')}`",
            f"- settings (fixed before the runs in study.json): {meta.get('steps')} steps, seeds {meta.get('seeds')}, held-out "
            f"evaluation on {meta.get('eval_prompts')} fixed held-out prompts every {meta.get('eval_every')} steps (sampling seed = "
            f"run seed), precision {PRECISION.get(meta.get('mixed_precision'), 'the preset')}, extra args {meta.get('extra_args', [])}"
            + "".join(f", {spec['name']} also {spec['args']}" for spec in arms.values() if spec["args"]),
            f"- seeds in the ledger: {seeds}; {completeness(meta.get('missing', []))}",
            f"- machines: {meta.get('machine', '')}; {hours:.2f} h of runs in all; training commit(s) {meta.get('git_commit', '')}",
            "- metrics: held-out task reward, exact KL(pi || pi_ref) summed over the response, r - eta KL, distinct-1/2, "
            "response length (tokens), and for IMDB the VADER compound of the response (an independent judge; NaN elsewhere)", ""]


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
