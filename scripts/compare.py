"""PPO vs CORY on IMDB over several seeds, and the KL-robustness sweep: paired CIs, role table, paper-style plots.

    python scripts/compare.py                       # offline preset: SmolLM2-135M, 3 seeds x 60 steps (see PRESETS)
    python scripts/compare.py --sweep init_kl_coef=0.05,adap_kl_ctrl=false init_kl_coef=0,adap_kl_ctrl=false
    python scripts/compare.py --preset paper        # GPT-2 Large / distilbert-imdb, batch 256 (GPU + hub)
    python scripts/compare.py --seeds 0 1 --steps 10 --name quick --batch_size 16   # unknown flags go to both scripts

Runs every (setting, algorithm, seed) as its own process (`imdb_train/{ppo,cory}.py`), `--jobs` at a time
(each with its share of the cores), with held-out evaluation every `eval_every` steps and checkpoints, so a
killed comparison resumes where it stopped; a finished run keeps its logs and final agents, not its
checkpoints (unless --keep_run_checkpoints). Each CORY agent trains on as many samples per step as the PPO
policy. Writes results/<name>/: summary.md (+ .json), curves.png, pareto.png, sweep.png; runs/ stays out of git.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cory.paths import atomic_file  # noqa: E402
from cory.eval.report import write_report  # noqa: E402

PRESETS = {
    # the task preset each training script runs, and the comparison's own settings (fixed before the runs)
    "offline": dict(task_preset="offline", steps=60, eval_every=10, eval_prompts=128, seeds=[0, 1, 2], sweep_seeds=[0, 1]),
    "paper": dict(task_preset="paper", steps=100, eval_every=10, eval_prompts=256, seeds=[0, 1, 2], sweep_seeds=[0, 1]),
}
ALGORITHMS = ("ppo", "cory")
DEFAULT_SETTING = "default"


def parse_setting(spec: str) -> list[str]:
    """'init_kl_coef=0.05,adap_kl_ctrl=false' -> ['--init_kl_coef', '0.05', '--adap_kl_ctrl', 'false']."""
    flags = []
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--sweep setting {spec!r}: each item must be key=value, got {item!r}")
        flags += [f"--{key.strip()}", value.strip()]
    return flags


def run_jobs(settings: dict, sweep: list[str]) -> list[tuple[str, str, int]]:
    """(setting, algorithm, seed) of every run: the default setting over all seeds, each sweep setting over sweep_seeds."""
    jobs = [(DEFAULT_SETTING, a, s) for s in settings["seeds"] for a in ALGORITHMS]
    jobs += [(spec, a, s) for spec in sweep for s in settings["sweep_seeds"] for a in ALGORITHMS]
    return jobs


def run_dir(out: Path, setting: str, algorithm: str, seed: int) -> Path:
    return out / "runs" / setting / f"{algorithm}-seed{seed}"


def train_all(out: Path, settings: dict, jobs: list, extra: list[str], n_parallel: int, keep_checkpoints: bool) -> dict:
    """Run (or finish) every job, `n_parallel` at a time; returns wall seconds per run (now or before)."""
    walls_path = out / "wall_seconds.json"
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    todo = [job for job in jobs if not (run_dir(out, *job) / "final").exists()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # taskset; macOS has none
    threads = str(max(1, cores // n_parallel))
    total = len(jobs) * settings["steps"]
    lock = threading.Lock()
    bar = tqdm(total=total, desc=f"compare {out.name} ({len(todo)} of {len(jobs)} runs to do)", unit="step")

    def one(job) -> None:
        setting, algorithm, seed = job
        directory = run_dir(out, *job)
        directory.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "imdb_train" / f"{algorithm}.py"), "--preset", settings["task_preset"],
               "--seed", str(seed), "--steps", str(settings["steps"]), "--eval_every", str(settings["eval_every"]),
               "--eval_prompts", str(settings["eval_prompts"]), "--save_every", str(settings["eval_every"]),
               "--resume_from", "auto", "--output_dir", str(directory.parent), "--run_name", directory.name,
               "--log_samples_every", "0", *extra, *([] if setting == DEFAULT_SETTING else parse_setting(setting))]
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        t0 = time.time()
        with open(directory.parent / f"{directory.name}.log", "a") as log:
            done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"{directory} failed (exit {done.returncode}); see {directory}.log")
        with lock:
            walls[f"{setting}/{directory.name}"] = walls.get(f"{setting}/{directory.name}", 0.0) + time.time() - t0
            atomic_file(walls_path, json.dumps(walls, indent=2))
        if not keep_checkpoints:
            shutil.rmtree(directory / "checkpoints", ignore_errors=True)

    with ThreadPoolExecutor(n_parallel) as pool:
        futures = [pool.submit(one, job) for job in todo]
        while not all(f.done() for f in futures):
            time.sleep(5)
            bar.n = sum(steps_logged(run_dir(out, *job)) for job in jobs)
            bar.refresh()
        for future in futures:
            future.result()  # re-raise the first failure
    bar.n = total
    bar.close()
    return walls


def steps_logged(directory: Path) -> int:
    path = directory / "metrics.jsonl"
    return sum(1 for _ in open(path)) if path.exists() else 0


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{model}, {os.cpu_count()} cores"


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any other --key value goes to both training scripts.")
    parser.add_argument("--preset", default="offline", choices=sorted(PRESETS))
    parser.add_argument("--name", default="", help="results/<name> (default: imdb for offline, imdb-<preset> otherwise)")
    parser.add_argument("--results_dir", default=str(ROOT / "results"), help="where results/<name> goes (default: the repo's results/)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the default setting")
    parser.add_argument("--sweep_seeds", type=int, nargs="+", help="seeds of each --sweep setting")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--eval_every", type=int)
    parser.add_argument("--eval_prompts", type=int)
    parser.add_argument("--sweep", nargs="*", default=[], metavar="KEY=V[,KEY=V]",
                        help="extra settings (each: overrides for both scripts), run beside the default one")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, each with cores/jobs threads (default 2)")
    parser.add_argument("--keep_run_checkpoints", action="store_true", help="keep each finished run's checkpoints")
    parser.add_argument("--report_only", action="store_true", help="tables and plots from the runs there, no training")
    args, extra = parser.parse_known_args(argv)
    for spec in args.sweep:
        parse_setting(spec)  # a malformed setting fails before any run
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    settings = {**PRESETS[args.preset], **{k: v for k, v in vars(args).items() if v is not None and k in PRESETS["offline"]}}
    name = args.name or ("imdb" if args.preset == "offline" else f"imdb-{args.preset}")
    out = Path(args.results_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    jobs = run_jobs(settings, args.sweep)
    command = "python scripts/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {**settings, "sweep": args.sweep, "extra_args": extra, "command": command.strip(), "jobs": args.jobs,
            "machine": machine(), "git_commit": git_commit()}
    elapsed_path = out / "elapsed_seconds.txt"  # wall time of the comparison itself, over all invocations
    if not args.report_only:
        atomic_file(out / "settings.json", json.dumps(meta, indent=2))
        t0 = time.time()
        walls = train_all(out, settings, jobs, extra, args.jobs, args.keep_run_checkpoints)
        previous = float(elapsed_path.read_text()) if elapsed_path.exists() else 0.0
        atomic_file(elapsed_path, f"{previous + time.time() - t0:.1f}\n")
    else:
        walls = json.loads((out / "wall_seconds.json").read_text()) if (out / "wall_seconds.json").exists() else {}
        if (out / "settings.json").exists():
            meta = {**meta, **json.loads((out / "settings.json").read_text())}
    meta["elapsed_hours"] = float(elapsed_path.read_text()) / 3600 if elapsed_path.exists() else float("nan")
    write_report(out, meta, jobs, walls)
    print(f"tables and plots in {out}")


if __name__ == "__main__":
    main()
