"""PPO vs CORY on one task, model and budget, over several seeds: tables and the paper's Fig. 2c/3-style plots.

    python scripts/compare.py                      # offline preset: SmolLM2-135M on IMDB, 3 seeds (about an hour on 2 cores)
    python scripts/compare.py --preset paper       # GPT-2 Large / distilbert-imdb, batch 256 (GPU + hub)
    python scripts/compare.py --seeds 0 1 --steps 10 --name quick

Runs every (algorithm, seed) in sequence as its own process (`imdb_train/{ppo,cory}.py`), with held-out
evaluation every `eval_every` steps and checkpoints, so an interrupted comparison resumes where it stopped.
Each agent trains on the same number of samples per step as the PPO policy. Writes to results/<name>/:
runs/ (each run), summary.md and summary.csv (final reward, KL and reward - eta * KL per run and mean +- std),
curves.png (reward, KL, combined vs step, mean +- std over seeds) and pareto.png (reward vs KL).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cory.eval.heldout import ETAS  # noqa: E402
from cory.paths import atomic_file  # noqa: E402
from cory.plots import plot_mean_std, plot_pareto  # noqa: E402

PRESETS = {
    # the task preset each training script runs, and the comparison's own settings
    "offline": dict(task_preset="offline", steps=20, eval_every=5, eval_prompts=48, seeds=[0, 1, 2]),
    "paper": dict(task_preset="paper", steps=100, eval_every=10, eval_prompts=256, seeds=[0, 1, 2]),
}
ALGORITHMS = ("ppo", "cory")
CURVES = {("ppo", "policy"): "PPO", ("cory", "agent_a"): "CORY agent A", ("cory", "agent_b"): "CORY agent B"}
ETA_PLOT = 0.05


def train_all(name: str, settings: dict, extra: list[str]) -> dict:
    """Run (or finish) every (algorithm, seed); returns wall seconds per run (measured now or before)."""
    out = ROOT / "results" / name
    walls_path = out / "wall_seconds.json"
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    jobs = [(a, s) for s in settings["seeds"] for a in ALGORITHMS]
    for algorithm, seed in tqdm(jobs, desc=f"compare {name}", unit="run"):
        run = f"{algorithm}-seed{seed}"
        if (out / "runs" / run / "final").exists():
            continue
        cmd = [sys.executable, str(ROOT / "imdb_train" / f"{algorithm}.py"), "--preset", settings["task_preset"],
               "--seed", str(seed), "--steps", str(settings["steps"]), "--eval_every", str(settings["eval_every"]),
               "--eval_prompts", str(settings["eval_prompts"]), "--save_every", str(settings["eval_every"]),
               "--resume_from", "auto", "--output_dir", str(out / "runs"), "--run_name", run, *extra]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        walls[run] = walls.get(run, 0.0) + time.time() - t0
        atomic_file(walls_path, json.dumps(walls, indent=2))
    return walls


def read_evals(out: Path, settings: dict) -> dict[str, dict[int, list[dict]]]:
    """curve -> seed -> evaluation rows, in step order."""
    curves: dict[str, dict[int, list[dict]]] = {label: {} for label in CURVES.values()}
    for (algorithm, agent), label in CURVES.items():
        for seed in settings["seeds"]:
            path = out / "runs" / f"{algorithm}-seed{seed}" / "eval.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
            curves[label][seed] = sorted((r for r in rows if r["agent"] == agent), key=lambda r: r["step"])
    return curves


def summarise(out: Path, curves: dict, walls: dict) -> list[dict]:
    """Final evaluation per (curve, seed), plus mean and std per curve, as Markdown and CSV."""
    metrics = ["reward_mean", "kl_exact", *[f"combined_eta{e:g}" for e in ETAS]]
    table = []
    for label, by_seed in curves.items():
        finals = {seed: rows[-1] for seed, rows in by_seed.items() if rows}
        algorithm = "ppo" if label == "PPO" else "cory"
        for seed, row in finals.items():
            table.append({"curve": label, "seed": seed, "step": row["step"], **{m: row[m] for m in metrics},
                          "wall_minutes": walls.get(f"{algorithm}-seed{seed}", float("nan")) / 60})
        if finals:
            for stat, fn in (("mean", np.mean), ("std", np.std)):
                table.append({"curve": label, "seed": stat, "step": "", **{m: fn([r[m] for r in finals.values()]) for m in metrics},
                              "wall_minutes": fn([walls.get(f"{algorithm}-seed{s}", np.nan) / 60 for s in finals])})
    columns = ["curve", "seed", "step", *metrics, "wall_minutes"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in columns) + " |" for row in table]
    atomic_file(out / "summary.md", "\n".join(lines) + "\n")
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    print("\n".join(lines))
    return table


def plot(out: Path, curves: dict, name: str) -> None:
    combined = f"combined_eta{ETA_PLOT:g}"
    series = {}
    for label, by_seed in curves.items():
        series[label] = {m: {} for m in ("reward_mean", "kl_exact", combined)}
        for rows in by_seed.values():
            for row in rows:
                for m in series[label]:
                    series[label][m].setdefault(row["step"], []).append(row[m])
    panels = {"reward_mean": "held-out task reward", "kl_exact": "KL to reference (exact, summed)",
              combined: f"combined reward r - {ETA_PLOT} KL"}
    plot_mean_std(series, panels, out / "curves.png", title=f"{name}: mean +- std over seeds")
    points = {label: [(r["kl_exact"], r["reward_mean"], i == len(rows) - 1) for rows in by_seed.values() for i, r in enumerate(rows)]
              for label, by_seed in curves.items()}
    plot_pareto(points, out / "pareto.png", title=f"{name}: reward vs KL")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="offline", choices=sorted(PRESETS))
    parser.add_argument("--name", default="", help="results/<name> (default: the preset)")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--eval_every", type=int)
    args, extra = parser.parse_known_args(argv)  # anything else goes to both training scripts, e.g. --batch_size 16
    settings = {**PRESETS[args.preset], **{k: v for k, v in vars(args).items() if v is not None and k in PRESETS["offline"]}}
    name = args.name or args.preset
    out = ROOT / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    atomic_file(out / "settings.json", json.dumps({**settings, "extra_args": extra}, indent=2))
    walls = train_all(name, settings, extra)
    curves = read_evals(out, settings)
    summarise(out, curves, walls)
    plot(out, curves, name)
    print(f"tables and plots in {out}")


if __name__ == "__main__":
    main()
