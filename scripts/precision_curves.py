"""Does bf16 learn as well as fp32? PPO and CORY, same seed, same preset, once in each precision.

    python scripts/precision_curves.py                 # offline preset, 30 steps each (resumable)
    python scripts/precision_curves.py --steps 10 --name quick --algorithms ppo

Runs the four trainings in sequence, each as its own process with checkpoints (an interrupted run resumes),
then writes results/<name>/: summary.md (first/last-5-step means of task reward and KL, median s/step) and
curves.png (reward and KL vs step, fp32 beside bf16).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from cory.platform.paths import atomic_file
from cory.run.plots import plot_curves

PRECISIONS = {"fp32": "no", "bf16": "bf16"}
# what each algorithm's curve is: PPO's policy, and the mean of CORY's two agents (each alone is in its run's curves.png)
METRICS = {"ppo": {"reward": ["env/reward_mean"], "kl": ["objective/kl"]},
           "cory": {"reward": ["agent_a/task_reward", "agent_b/task_reward"], "kl": ["agent_a/objective/kl", "agent_b/objective/kl"]}}


def train(algorithm: str, label: str, args, runs: Path) -> Path:
    run_dir = runs / f"{algorithm}-{label}"
    if not (run_dir / "final").exists() and not args.summarise_only:
        subprocess.run([sys.executable, str(ROOT / "imdb_train" / f"{algorithm}.py"), "--preset", args.preset,
                        "--mixed_precision", PRECISIONS[label], "--steps", str(args.steps), "--seed", str(args.seed),
                        "--output_dir", str(runs), "--run_name", run_dir.name, "--save_every", "5", "--resume_from", "auto"],
                       check=True)
    return run_dir


def curve(run_dir: Path, keys: list[str]) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [statistics.mean(r[k] for k in keys) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="precision")
    parser.add_argument("--algorithms", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--summarise_only", action="store_true", help="train nothing; summarise the runs as far as they got")
    args = parser.parse_args()
    out = ROOT / "results" / args.name
    runs = ROOT / "runs" / f"precision-{args.name}"  # raw runs stay out of git
    lines = [f"# fp32 vs bf16, preset {args.preset}, seed {args.seed}, {args.steps} steps", "",
             "| run | steps | reward first 5 | reward last 5 | KL first 5 | KL last 5 | median s/step |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    rows_by_step: dict[int, dict] = {}
    for algorithm in args.algorithms:
        metrics = METRICS[algorithm]
        for label in PRECISIONS:
            run_dir = train(algorithm, label, args, runs)
            if not (run_dir / "metrics.jsonl").exists():
                continue
            reward, kl = curve(run_dir, metrics["reward"]), curve(run_dir, metrics["kl"])
            seconds = curve(run_dir, ["time/step"])
            name = f"{algorithm} {label}"
            lines.append(f"| {name} | {len(reward)} | {statistics.mean(reward[:5]):.3f} | {statistics.mean(reward[-5:]):.3f} | "
                         f"{statistics.mean(kl[:5]):.3f} | {statistics.mean(kl[-5:]):.3f} | {statistics.median(seconds):.1f} |")
            for step, (r, k) in enumerate(zip(reward, kl)):
                rows_by_step.setdefault(step, {"step": step}).update({f"{name} reward": r, f"{name} KL": k})
    names = [f"{a} {p}" for a in args.algorithms for p in PRECISIONS]
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(list(rows_by_step.values()), {"task reward (CORY: mean of both agents)": [f"{n} reward" for n in names],
                                              "KL to reference": [f"{n} KL" for n in names]},
                out / "curves.png", title=f"fp32 vs bf16, {args.preset} preset, seed {args.seed}")
    atomic_file(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
