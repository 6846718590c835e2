"""Beyond the paper on IMDB: critic-free (GRPO) and three-agent CORY against PPO and CORY, from the runs' logs.

    python scripts/variants_report.py --runs "PPO=runs/variants/ppo" "GRPO k=4=runs/variants/grpo" \
        "CORY=runs/variants/cory" "CORY-GRPO k=4=runs/variants/cory-grpo" "CORY N=3=runs/variants/cory-n3" \
        --steps 30 20 --paired_to PPO CORY --out results/variants

A label may name several runs, one per seed: "GRPO k=4=runs/a/grpo-seed0,runs/a/grpo-seed1" (they must differ in
the seed alone). A run may also be a study's committed ledger entry (`results/<study>/ledger/<setting>/<alg>-seed<s>.json.gz`),
so a new variant is compared with a study's own runs without them: an entry keeps the evaluations, not the per-step
log, so its s/step is its wall time (evaluations included) over its steps and its peak memory is unknown. Per variant and agent (alone, on the runs' fixed held-out prompts) at each of `--steps` it
logged: held-out reward, exact KL, r - 0.05 KL, distinct-2 (means over seeds), the reward's change since step 0
(paired, with its 95% CI over seeds and prompts), each seed's reward, and the
responses generated so far by all agents (the sample budget); per variant the median s/step and peak memory;
for every agent at the first of `--steps`, the paired difference to each `--paired_to` variant (default: the
first) — to its agent of the same name where it has one, else its first — on the seeds both have, with a 95%
bootstrap CI over seeds and prompts (one seed: prompts only). `curves.png`: held-out reward and KL against
responses generated, mean and +-1 std over seeds.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from cory.eval.bootstrap import paired_difference_ci
from cory.platform.paths import atomic_file
from cory.run.plots import plot_mean_std
from cory.run.tracking import read_metrics
from cory.studies.evaluations import evals_of, per_prompt, read_eval, statistic, value
from cory.studies.ledger import read_entry, setting_differences
from cory.studies.tables import markdown

METRICS = {"reward_mean": "reward", "kl_exact": "KL", "combined_eta0.05": "r-0.05KL", "distinct_2": "distinct-2"}


def responses_per_step(settings: dict, logged: list[dict], n_agents: int) -> int:
    """Responses all agents generate per step: CORY logs it (with group_by prompt the last position answers m times
    per sample before it, cost k*(N-1) + k*m per query); a ledger entry has no log, so it is counted from the settings."""
    per_query = logged[0].get("cory/generations_per_query")
    if per_query is None:
        m = settings.get("observer_samples", 1) if settings.get("group_by") == "prompt" else 1
        return settings["batch_size"] * (n_agents - 1 + m)
    return round(per_query * settings["batch_size"] / settings.get("samples_per_prompt", 1))


def load_run(label: str, directories: list[Path]) -> dict:
    """A labelled variant over its seeds (one run directory each): settings, each agent's held-out evaluations
    (alone) per seed, responses per step, s/step (median over every step of every seed) and peak memory."""
    seeds = [read_seed(path) for path in directories]
    settings = seeds[0][0]
    differ = sorted({k for config, _, _ in seeds for k in setting_differences(settings, config)})
    if differ:
        raise SystemExit(f"variants_report.py: error: the runs of {label!r} differ in {differ}, not only in the seed")
    agents = sorted({r["agent"] for r in seeds[0][2]})
    logged = [row for _, metrics, _ in seeds for row in metrics]
    return {"label": label, "settings": settings, "seeds": [s[0]["seed"] for s in seeds],
            "agents": {a: [evals_of(rows, a) for _, _, rows in seeds] for a in agents},
            "responses_per_step": responses_per_step(settings, seeds[0][1], len(agents)),
            "s_per_step": statistics.median(r["time/step"] for r in logged),
            "peak_mb": max((r.get("memory/peak_mb", float("nan")) for r in logged), default=float("nan"))}


def read_seed(path: Path) -> tuple[dict, list[dict], list[dict]]:
    """One seed's settings, per-step log and evaluation rows: from a run directory, or from a ledger entry (whose
    one per-step figure is its wall time over its steps)."""
    if path.name.endswith(".json.gz"):
        if not path.is_file():
            raise SystemExit(f"variants_report.py: error: no ledger entry {path}")
        entry = read_entry(path)
        return entry["config"], [{"time/step": entry["wall_seconds"] / entry["config"]["steps"]}], entry["evals"]
    config, metrics, rows = path / "config.json", path / "metrics.jsonl", read_eval(path)
    if not (config.is_file() and metrics.is_file() and rows):
        raise SystemExit(f"variants_report.py: error: {path} holds no finished run (config.json, metrics.jsonl, eval.jsonl)")
    return json.loads(config.read_text()), read_metrics(metrics), rows


def name(run: dict, agent: str) -> str:
    return run["label"] if len(run["agents"]) == 1 else f"{run['label']} {agent.replace('agent_', '').upper()}"


def at_step(evals: list[dict], step: int) -> dict | None:
    return next((r for r in evals if r["step"] == step), None)


def agent_table(runs: list[dict], steps: list[int]) -> list[dict]:
    """Per agent and step: each metric's mean over the seeds that reached it, the reward of each seed, and the
    reward's change since step 0 (paired over the same prompts; 95% CI over seeds and prompts): did it learn?"""
    table = []
    for run in runs:
        for agent, per_seed in run["agents"].items():
            for step in steps:
                pairs = [(at_step(evals, 0), at_step(evals, step)) for evals in per_seed]
                rows = [r for _, r in pairs if r is not None]
                if rows:
                    start = [(first, r) for first, r in pairs if first is not None and r is not None]
                    change = paired_difference_ci([per_prompt(f, "reward_mean") for f, _ in start],
                                                  [per_prompt(r, "reward_mean") for _, r in start]) if start else ""
                    table.append({"policy": name(run, agent), "step": step, "seeds": len(rows),
                                  "responses": step * run["responses_per_step"],
                                  **{m: statistics.mean(value(r, m) for r in rows) for m in METRICS},
                                  "reward since step 0": change,
                                  "reward per seed": " / ".join(f"{value(r, 'reward_mean'):.3f}" for r in rows)})
    return table


def cost_table(runs: list[dict]) -> list[dict]:
    return [{"run": run["label"], "agents": len(run["agents"]), "value heads": run["settings"]["advantage_estimator"] == "gae",
             "responses/step": run["responses_per_step"], "s/step": run["s_per_step"], "peak memory (MB)": round(run["peak_mb"]) if math.isfinite(run["peak_mb"]) else "-"}
            for run in runs]


def paired_table(runs: list[dict], base_run: dict, step: int) -> list[dict]:
    """Each other run's agents at `step` minus the baseline run's at `step`, on the seeds both have and the same
    prompts: the agent of the same name where the baseline has one (CORY A against CORY A), else the baseline's
    first agent. The CI resamples seeds and prompts (cory.eval.bootstrap); with one seed, prompts only. Runs
    evaluated on different numbers of held-out prompts are not paired: their row says so."""
    first = next(iter(base_run["agents"]))
    table = []
    for run in (r for r in runs if r is not base_run):
        for agent, per_seed in run["agents"].items():
            base_agent = agent if agent in base_run["agents"] else first
            pairs = [(at_step(base_run["agents"][base_agent][base_run["seeds"].index(seed)], step), at_step(evals, step))
                     for seed, evals in zip(run["seeds"], per_seed) if seed in base_run["seeds"]]
            pairs = [(base, mine) for base, mine in pairs if base is not None and mine is not None]
            comparison = f"{name(run, agent)} - {name(base_run, base_agent)}"
            sizes = {(len(b["per_prompt"]["reward"]), len(x["per_prompt"]["reward"])) for b, x in pairs}
            unequal = [(n_base, n_mine) for n_base, n_mine in sizes if n_base != n_mine]  # e.g. 64 against 256 prompts
            if unequal:
                n_base, n_mine = unequal[0]
                table.append({"comparison": comparison, "seeds": 0, "reward_mean": f"not paired: {n_mine} vs {n_base} held-out prompts"})
            elif pairs:
                row = {"comparison": comparison, "seeds": len(pairs)}
                for m in ("reward_mean", "kl_exact", "combined_eta0.05"):
                    row[m] = paired_difference_ci([per_prompt(b, m) for b, _ in pairs], [per_prompt(x, m) for _, x in pairs], statistic(m))
                table.append(row)
    return table


def plot(runs: list[dict], path: Path) -> None:
    series = {}
    for run in runs:
        for agent, per_seed in run["agents"].items():
            series[name(run, agent)] = {m: {} for m in ("reward_mean", "kl_exact")}
            for evals in per_seed:
                for r in evals:
                    for m in series[name(run, agent)]:
                        series[name(run, agent)][m].setdefault(r["step"] * run["responses_per_step"], []).append(value(r, m))
    seeds = sorted({s for run in runs for s in run["seeds"]})
    plot_mean_std(series, {"reward_mean": "held-out reward vs responses generated", "kl_exact": "KL (exact) vs responses generated"},
                  path, title=f"IMDB offline, seeds {', '.join(map(str, seeds))}: each agent alone (mean, +-1 std over seeds)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True,
                        help='LABEL=RUN_DIR[,RUN_DIR...] (one directory per seed), the baseline first (the last "=" splits)')
    parser.add_argument("--steps", nargs="+", type=int, default=[30], help="evaluation steps to tabulate (the first: paired differences)")
    parser.add_argument("--paired_to", nargs="*", default=[], metavar="LABEL", help="baselines of the paired tables (default: the first run)")
    parser.add_argument("--out", default="results/variants")
    parser.add_argument("--title", default="Beyond the paper: critic-free and three-agent CORY (IMDB offline)")
    args = parser.parse_args(argv)
    specs = [spec.rpartition("=") for spec in args.runs]  # a label may hold "=" (k=4), a path rarely does
    if any(not sep for _, sep, _ in specs):
        parser.error(f"expected LABEL=RUN_DIR, got {args.runs}")
    runs = [load_run(label, [Path(p) for p in paths.split(",")]) for label, _, paths in specs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    by_label = {run["label"]: run for run in runs}
    unknown = [label for label in args.paired_to if label not in by_label]
    if unknown:
        parser.error(f"--paired_to {unknown} not among the run labels {list(by_label)}")
    baselines = [by_label[label] for label in args.paired_to] or runs[:1]
    agents, cost = agent_table(runs, args.steps), cost_table(runs)
    paired = {base["label"]: paired_table(runs, base, args.steps[0]) for base in baselines}
    md = [f"# {args.title}", "",
          "Each agent alone on the runs' fixed held-out prompts; `responses` = responses generated by all agents so far.", "",
          markdown(agents, ["policy", "step", "seeds", "responses", *METRICS, "reward since step 0", "reward per seed"], METRICS), "",
          "Cost per step (median over the run; peak memory of the process):", "",
          markdown(cost, list(cost[0])), "",
          f"Paired differences at step {args.steps[0]} (the same seeds and held-out prompts; 95% bootstrap CI over seeds and prompts; * excludes 0):", "",
          markdown(sum(paired.values(), []), ["comparison", "seeds", "reward_mean", "kl_exact", "combined_eta0.05"], METRICS), ""]
    atomic_file(out / "summary.md", "\n".join(md))
    settings = ("advantage_estimator", "samples_per_prompt", "n_agents", "group_by", "observer_samples", "credit", "steps",
                "batch_size", "seed", "mixed_precision")
    atomic_file(out / "summary.json", json.dumps({"agents": agents, "cost": cost, "paired": paired, "runs": {
        r["label"]: {**{k: r["settings"].get(k) for k in settings}, "seeds": r["seeds"]} for r in runs}}, indent=1))
    plot(runs, out / "curves.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
