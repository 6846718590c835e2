"""PPO vs CORY as a study (IMDB by default; --task gsm8k or text too): fixed settings, one ledger entry per
finished run, a report from the ledger.

    python scripts/compare.py                       # offline preset: SmolLM2-135M, 3 seeds x 60 steps (see PRESETS)
    python scripts/compare.py --name imdb-claims    # a study whose results/imdb-claims/study.json is committed: runs what is missing
    python scripts/compare.py --sweep kl0:init_kl_coef=0,adap_kl_ctrl=false   # a named extra setting beside the default
    python scripts/compare.py --name imdb-claims --report_only                 # tables and plots from the ledger alone
    python scripts/compare.py --seeds 0 1 --steps 10 --name quick --batch_size 16   # unknown flags go to both scripts
    python scripts/compare.py --name grpo --names ppo=GRPO cory=CORY-GRPO --algorithm_args ppo:batch_size=64 \
        --advantage_estimator grpo --samples_per_prompt 4      # critic-free, equal responses per step (CORY makes 2 a prompt)

The first call on a new name writes results/<name>/study.json from its flags (commit it before the runs: it
pre-registers the settings; `--prepare_only` stops there); a later call with other settings is refused. Every (setting, algorithm, seed) runs
as its own process (`imdb_train/{ppo,cory}.py`, `gsm8k_train/...`, `own_task/train.py`), `--jobs` at a time (each with its share of the cores), with
held-out evaluation every `eval_every` steps and checkpoints, so a killed study resumes where it stopped. A
finished run becomes its ledger entry (results/<name>/ledger/<setting>/<alg>-seed<s>.json.gz; `--commit`
commits it at once) and is never run again. Runs of a study use one training-code commit (run from a
`git worktree` pinned at it, with --results_dir pointing at the main checkout's results/). Writes
results/<name>/: summary.md (+ .json), curves.png, pareto.png, sweep.png; runs/ stays out of git.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from cory.errors import RunStopped, UsageError, run_script
from cory.platform.paths import atomic_file, read_json
from cory.run.checkpoint import complete_checkpoints
from cory.run.rundir import RunDirLock
from cory.studies.arms import arm_flags, arm_names, budget_table, resolved_config, study_arms
from cory.studies.budget import MATCHES, QUANTITIES, require
from cory.studies.checks import lock_study, stated, tidy, uncommitted, verified
from cory.studies.evaluations import judge
from cory.studies.ledger import (check_same_setting, commit_entry, entry_path, git_commit, make_entry, native_bf16, read_entry,
                                 read_study, training_code_dirty, write_entry, write_study)
from cory.studies.report import write_report

ROOT = Path(__file__).resolve().parent.parent

PRESETS = {
    # the task preset each training script runs, and the comparison's own settings (fixed before the runs)
    "offline": dict(task_preset="offline", steps=60, eval_every=10, eval_prompts=128, seeds=[0, 1, 2], sweep_seeds=[0, 1]),
    "paper": dict(task_preset="paper", steps=100, eval_every=10, eval_prompts=256, seeds=[0, 1, 2], sweep_seeds=[0, 1]),
}
ALGORITHMS = ("ppo", "cory")
DEFAULT_SETTING = "default"
TASK_SCRIPTS = {"imdb": ["imdb_train/{algorithm}.py"], "gsm8k": ["gsm8k_train/{algorithm}.py"],
                "text": ["own_task/train.py", "--algorithm", "{algorithm}"]}
"""each task's training script for an algorithm (your own task: own_task/train.py)"""
ADDENDUM = "addendum.json"
"""a study's dated, post-hoc re-reading of its ledger (`cory.studies.addendum`), shown in its summary"""
JUDGES = {"imdb": judge}
"""a task's second judge, scored into every ledger entry (IMDB: VADER positivity); other tasks have none"""


def parse_setting(spec: str) -> tuple[str, list[str]]:
    """'kl0:init_kl_coef=0,adap_kl_ctrl=false' -> ('kl0', ['--init_kl_coef', '0', '--adap_kl_ctrl', 'false']);
    without 'name:' the setting is named by its spec."""
    name, colon, items = spec.partition(":")
    name, items = (name, items) if colon else (spec, spec)
    flags = []
    for item in items.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"setting {spec!r}: each item must be key=value, got {item!r}")
        flags += [f"--{key.strip()}", value.strip()]
    return name, flags


def parse_names(items: list[str]) -> dict[str, str]:
    """['ppo=GRPO', 'cory=CORY-GRPO'] -> {'ppo': 'GRPO', 'cory': 'CORY-GRPO'}: how the report names each algorithm."""
    names = dict(item.partition("=")[::2] for item in items)
    wrong = [item for item in items if "=" not in item or item.partition("=")[0] not in ALGORITHMS or not item.partition("=")[2]]
    if wrong:
        raise SystemExit(f"--names {wrong[0]!r}: each item must be ALGORITHM=NAME with ALGORITHM one of {ALGORITHMS}")
    return names


def parse_algorithm_args(specs: list[str]) -> dict[str, list[str]]:
    """['ppo:batch_size=64'] -> {'ppo': ['--batch_size', '64']}: flags for one algorithm's runs only."""
    parsed = dict(parse_setting(spec) for spec in specs)
    if any(":" not in spec for spec in specs) or set(parsed) - set(ALGORITHMS):
        raise SystemExit(f"--algorithm_args {specs}: each must be ALGORITHM:KEY=V[,KEY=V] with ALGORITHM one of {ALGORITHMS}")
    return parsed


def parse_budget(spec: str) -> dict:
    """'per model:responses_per_step,optimizer_steps' -> the study's budget claim (`cory.studies.budget`)."""
    match, _, quantities = spec.partition(":")
    claim = {"match": match.strip(), "equal": [q.strip() for q in quantities.split(",") if q.strip()]}
    if claim["match"] not in MATCHES or not claim["equal"] or set(claim["equal"]) - set(QUANTITIES):
        raise SystemExit(f"--budget {spec!r}: must be MATCH:QUANTITY[,QUANTITY] with MATCH one of {sorted(MATCHES)} and "
                         f"QUANTITY of {sorted(QUANTITIES)}")
    return claim


def new_study(settings: dict, sweep: list[str], extra: list[str], precision: str, names: dict | None = None,
              algorithm_args: dict | None = None, budget: dict | None = None) -> dict:
    """What a study fixes before its runs: every run's settings, seeds and the training code's commit."""
    study = {key: settings[key] for key in ("task", "task_preset", "steps", "eval_every", "eval_prompts")}
    study["settings"] = {DEFAULT_SETTING: {"flags": [], "seeds": settings["seeds"]}}
    for spec in sweep:
        name, flags = parse_setting(spec)
        study["settings"][name] = {"flags": flags, "seeds": settings["sweep_seeds"]}
    optional = {"names": names, "algorithm_args": algorithm_args, "budget": [budget] if budget else None}
    return {**study, "algorithms": list(ALGORITHMS), "mixed_precision": precision, "extra_args": extra,
            **{key: value for key, value in optional.items() if value}, "training_commits": [git_commit(ROOT)]}


def check_against_study(study: dict, requested: dict) -> None:
    """Flags given now that differ from the committed study are refused (a study's settings never change)."""
    differ = [f"{k}={requested[k]!r} (study.json: {study.get(k)!r})" for k in requested if study.get(k) != requested[k]]
    if differ:
        raise UsageError(f"these settings differ from the study's: {'; '.join(differ)}; a study's runs share one set of "
                         "settings (start another --name for others)")


def study_jobs(study: dict) -> list[tuple[str, str, int]]:
    """(setting, arm, seed), seed-major: the first seeds of every setting finish first, paired."""
    seeds = sorted({s for spec in study["settings"].values() for s in spec["seeds"]})
    return [(name, arm, seed) for seed in seeds for name, spec in study["settings"].items() if seed in spec["seeds"]
            for arm in study_arms(study)]


def run_dir(out: Path, setting: str, arm: str, seed: int) -> Path:
    return out / "runs" / setting / f"{arm}-seed{seed}"


def run_command(study: dict, setting: str, arm: str, seed: int, directory: Path) -> list[str]:
    """The training script's command line for one run of the study (the arm's flags: `cory.studies.arms.arm_flags`)."""
    algorithm = study_arms(study)[arm]["algorithm"]
    script = [part.format(algorithm=algorithm) for part in TASK_SCRIPTS[study.get("task", "imdb")]]
    return [sys.executable, str(ROOT / script[0]), *script[1:], "--seed", str(seed), "--save_every", str(study["eval_every"]),
            "--resume_from", "auto", "--output_dir", str(directory.parent), "--run_name", directory.name,
            "--log_samples_every", "0", "--eval_roles", "true", *arm_flags(study, setting, arm)]


def train_missing(out: Path, study: dict, todo: list, n_parallel: int, keep_checkpoints: bool, commit: bool, code: str,
                  n_jobs: int) -> None:
    """Run (or finish) each job of `todo`, `n_parallel` at a time; each finished run becomes its entry at once
    (committed with `commit`)."""
    walls_path = out / "runs" / "wall_seconds.json"
    walls_path.parent.mkdir(parents=True, exist_ok=True)
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # taskset; macOS has none
    threads = str(max(1, cores // n_parallel))
    lock, stop, live = threading.Lock(), threading.Event(), {}
    steps = {job: resolved_steps(study, job) for job in todo}
    bar = tqdm(total=sum(steps.values()), desc=f"{out.name}: {len(todo)} of {n_jobs} runs to do", unit="step")

    def one(job) -> None:
        if stop.is_set():  # Ctrl-C or kill: no new run starts
            return
        setting, arm, seed = job
        directory = run_dir(out, *job)
        directory.parent.mkdir(parents=True, exist_ok=True)
        cmd = run_command(study, setting, arm, seed, directory)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,  # ROOT's own cory first: a pinned
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}  # worktree trains its code
        t0 = time.time()
        with open(directory.parent / f"{directory.name}.log", "a") as log:
            live[job] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            code_ = live[job].wait()
            del live[job]
        if stop.is_set():
            return
        if code_ != 0:
            raise RunStopped(f"{directory} failed (exit {code_}); see {directory}.log (the study continues from its "
                             "checkpoints when run again)")
        key = f"{setting}/{directory.name}"
        with lock:
            walls[key] = walls.get(key, 0.0) + time.time() - t0
            atomic_file(walls_path, json.dumps(walls, indent=2))
            record(out, study, job, directory, walls[key], commit, code)
        if not keep_checkpoints:
            shutil.rmtree(directory / "checkpoints", ignore_errors=True)

    with ThreadPoolExecutor(n_parallel) as pool, bar:
        futures = [pool.submit(one, job) for job in todo]
        try:
            while not all(f.done() for f in futures):
                time.sleep(1)
                bar.n = sum(steps_logged(run_dir(out, *job)) for job in todo)
                bar.refresh()
        except KeyboardInterrupt:
            stop.set()
            for future in futures:
                future.cancel()
            for proc in list(live.values()):
                proc.send_signal(signal.SIGINT)  # each run writes nothing half: it stops at a step's edge
            raise
        for future in futures:
            future.result()  # re-raise the first failure


def resolved_steps(study: dict, job: tuple[str, str, int]) -> int:
    """The run length of a job's arm (an arm may run longer than the study's `steps`)."""
    return int(stated(study, job[0], job[1])["steps"])


def clear_unresumable(out: Path, jobs: list) -> list[Path]:
    """Delete the run directory of each job that has no ledger entry and no complete checkpoint (an attempt killed
    before its first checkpoint): it starts afresh anyway, and the training code of imdb-claims (before 5372ab1)
    appended the new attempt's step-0 evaluation to the killed one's log. `run_study.sh` calls it first."""
    cleared = []
    for job in jobs:
        directory = run_dir(out, *job)
        if not directory.is_dir() or entry_path(out, *job).exists() or complete_checkpoints(directory):
            continue
        lock = RunDirLock(directory)
        try:
            lock.acquire()
        except UsageError:
            continue  # a live run's
        shutil.rmtree(directory)
        lock.release()
        cleared.append(directory)
        print(f"{directory}: no checkpoint to resume from; cleared, it starts afresh")
    return cleared


def record(out: Path, study: dict, job: tuple[str, str, int], directory: Path, wall: float, commit: bool, code: str) -> None:
    """The finished run's ledger entry, after checking it ran the study's settings (precision included)."""
    setting, arm, seed = job
    entry = make_entry(directory, setting, study_arms(study)[arm]["algorithm"], seed, wall, code, JUDGES.get(study.get("task", "imdb")), ROOT)
    if arm != entry["algorithm"]:
        entry["arm"] = arm
    entry["study_flags"] = arm_flags(study, setting, arm)  # what study.json gave this run: an edit later is caught
    if study["mixed_precision"] and entry["config"]["mixed_precision"] != study["mixed_precision"]:
        raise UsageError(f"{directory} ran in {entry['config']['mixed_precision']}, the study fixes {study['mixed_precision']}")
    for other_seed in study["settings"][setting]["seeds"]:
        other = entry_path(out, setting, arm, other_seed)
        if other_seed != seed and other.exists():
            check_same_setting(entry, read_entry(other))
            break
    path = entry_path(out, *job)
    write_entry(path, entry)
    if commit:
        commit_entry(path, f"ledger {out.name}: {setting}/{arm}-seed{seed} ({entry['machine']['cpu']}, {wall / 60:.0f} min)")


def steps_logged(directory: Path) -> int:
    path = directory / "metrics.jsonl"
    return sum(1 for _ in open(path)) if path.exists() else 0


def machines(entries: dict) -> str:
    """Which machine kinds contributed which seeds."""
    seeds: dict[str, set] = {}
    for job, entry in entries.items():
        machine, reward = entry["machine"], entry.get("model_fingerprints", {}).get("reward_model", "not recorded")
        kind = f"{machine['cpu']} ({machine['cores']} cores, {'bf16' if native_bf16(machine) else 'no bf16'}; classifier {reward})"
        seeds.setdefault(kind, set()).add(job[2])
    return "; ".join(f"{kind}: seeds {sorted(s)}" for kind, s in seeds.items()) or "none yet"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any other --key value goes to both training scripts.")
    parser.add_argument("--task", default="imdb", choices=sorted(TASK_SCRIPTS), help="which task's scripts run (default imdb)")
    parser.add_argument("--preset", default="offline", choices=sorted(PRESETS))
    parser.add_argument("--name", default="", help="results/<name> (default: imdb for offline, imdb-<preset> otherwise)")
    parser.add_argument("--results_dir", default=str(ROOT / "results"), help="where results/<name> goes (default: the repo's results/)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the default setting")
    parser.add_argument("--sweep_seeds", type=int, nargs="+", help="seeds of each --sweep setting")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--eval_every", type=int)
    parser.add_argument("--eval_prompts", type=int)
    parser.add_argument("--mixed_precision", default="", help="fixed for every run of the study (no: fp32 on every CPU kind)")
    parser.add_argument("--sweep", nargs="*", default=[], metavar="[NAME:]KEY=V[,KEY=V]",
                        help="extra settings (each: overrides for both scripts), run beside the default one")
    parser.add_argument("--names", nargs="*", default=[], metavar="ALGORITHM=NAME",
                        help="how the report names the algorithms, e.g. ppo=GRPO cory=CORY-GRPO (a critic-free study)")
    parser.add_argument("--algorithm_args", nargs="*", default=[], metavar="ALGORITHM:KEY=V[,KEY=V]",
                        help="flags for one algorithm's runs only, e.g. ppo:batch_size=64 (equal responses per step)")
    parser.add_argument("--budget", default="per model:responses_per_step,optimizer_steps", metavar="MATCH:QUANTITY[,...]",
                        help="what a new study matches between its arms, checked against the budgets its settings give "
                             "(default: per model, responses learnt from and optimizer steps); e.g. 'per system:responses_per_step'")
    parser.add_argument("--wait", action="store_true", help="if another process is running this study, wait for it (default: refuse)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, each with cores/jobs threads (default 2)")
    parser.add_argument("--keep_run_checkpoints", action="store_true", help="keep each finished run's checkpoints")
    parser.add_argument("--commit", action="store_true", help="git-commit each run's ledger entry as soon as it is written")
    parser.add_argument("--report_only", action="store_true", help="tables and plots from the ledger, no training")
    parser.add_argument("--clear_unresumable", action="store_true",
                        help="delete the run directories of unfinished runs with no checkpoint (before a pinned study continues), then stop")
    parser.add_argument("--prepare_only", action="store_true",
                        help="write a new study's study.json and stop: add its endpoints, commit it, then run (pre-registration)")
    parser.add_argument("--allow_uncommitted", action="store_true",
                        help="run with uncommitted training code (a quick try; its entries name the commit '+uncommitted')")
    args, extra = parser.parse_known_args(argv)
    for spec in args.sweep:
        parse_setting(spec)  # a malformed setting fails before any run
    names, algorithm_args = parse_names(args.names), parse_algorithm_args(args.algorithm_args)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    settings = {**PRESETS[args.preset], "task": args.task,
                **{k: v for k, v in vars(args).items() if v is not None and k in PRESETS["offline"]}}
    name = args.name or (args.task if args.preset == "offline" else f"{args.task}-{args.preset}")
    out = Path(args.results_dir) / name
    study = read_study(out)
    if study is None:
        if args.report_only:
            raise SystemExit(f"no study in {out} (no study.json): nothing to report")
        study = new_study(settings, args.sweep, extra, args.mixed_precision, names, algorithm_args, parse_budget(args.budget))
        require(budget_table(study), study["budget"], arm_names(study))  # before it is written: a claim that fails is refused
        write_study(out, study)
        print(f"wrote {out / 'study.json'}: commit it before the runs (it fixes the study's settings)")
        if args.prepare_only:
            return
    else:
        given = {k: getattr(args, k) for k in ("steps", "eval_every", "eval_prompts", "mixed_precision") if getattr(args, k)}
        if args.sweep or args.seeds or args.sweep_seeds:
            given["settings"] = new_study(settings, args.sweep, extra, args.mixed_precision)["settings"]
        given.update({key: value for key, value in (("extra_args", extra), ("names", names), ("algorithm_args", algorithm_args)) if value})
        check_against_study(study, given)
    jobs = study_jobs(study)
    if args.report_only:
        report(out, study, name, jobs)
        return
    lock = lock_study(out, args.wait, tqdm.write)  # one process trains a study at a time
    try:
        if args.clear_unresumable:
            clear_unresumable(out, jobs)
            return
        train_study(out, study, jobs, args)
    finally:
        lock.release()
    report(out, study, name, jobs)


def train_study(out: Path, study: dict, jobs: list, args) -> None:
    """Under the study's lock: tidy and check the ledger, recover entries a kill left uncommitted, then run what is missing."""
    commit, dirty = git_commit(ROOT), training_code_dirty(ROOT)
    if commit not in study["training_commits"] or (dirty and not args.allow_uncommitted):
        raise UsageError(f"this checkout ({commit[:10]}{', with uncommitted changes to ' + ', '.join(dirty) if dirty else ''}) is not "
                         f"the study's training code {[c[:10] for c in study['training_commits']]}: run from `git worktree add "
                         f"<dir> {study['training_commits'][0][:10]}` with --results_dir pointing here")
    for line in tidy(out):
        print(line)
    good, refused = verified(out, study, jobs)
    strays = stray_entries(out, jobs)
    if refused or strays:  # an edited study.json, or an entry filed under the wrong name: nothing runs
        what = {**refused, **{str(p): "not a run of study.json (its setting, arm or seed is not in it)" for p in strays}}
        first = next(iter(what))
        raise UsageError(f"{first}: {what[first]}" + (f" (and {len(what) - 1} more entries)" if len(what) > 1 else "")
                         + "; restore study.json and the ledger with git, or start another --name")
    for path in uncommitted(out, list(good)):
        if args.commit:
            commit_entry(path, f"ledger {out.name}: {path.parent.name}/{path.name.removesuffix('.json.gz')} (recovered: written, not committed)")
            print(f"{path}: committed (a kill had left it written but not committed)")
        else:
            print(f"{path}: written but not committed (commit it, or run with --commit)")
    if not args.keep_run_checkpoints:
        for job in good:
            shutil.rmtree(run_dir(out, *job) / "checkpoints", ignore_errors=True)  # its entry is whole
    if len(good) < len(jobs):  # runs to do: only at the budgets the study states
        require(budget_table(study), study.get("budget", []), arm_names(study))
    code = commit + ("+uncommitted" if dirty else "")
    train_missing(out, study, [job for job in jobs if job not in good], args.jobs, args.keep_run_checkpoints, args.commit, code, len(jobs))


def stray_entries(out: Path, jobs: list) -> list[Path]:
    """Entries in the ledger that no job of study.json names (a seed removed from it, a misnamed file)."""
    named = {entry_path(out, *job) for job in jobs}
    return sorted(p for p in (out / "ledger").glob("*/*.json.gz") if p not in named) if (out / "ledger").is_dir() else []


def report(out: Path, study: dict, name: str, jobs: list) -> None:
    """summary.md and plots from the verified entries; a refused entry is named and its run counted missing."""
    entries, refused = verified(out, study, jobs)
    for path, why in refused.items():
        print(f"{path}: refused: {why}")
    walls = {f"{s}/{a}-seed{seed}": e["wall_seconds"] for (s, a, seed), e in entries.items()}
    # the command that rebuilds this report from the committed ledger alone (not this run's, which may name this
    # machine's paths)
    meta = {**study, "seeds": {k: v["seeds"] for k, v in study["settings"].items()},
            "command": f"python scripts/compare.py --name {name} --report_only",
            "machine": machines(entries), "git_commit": ", ".join(c[:10] for c in study["training_commits"]),
            "missing": [f"{s}/{a}-seed{seed}" + (" (refused)" if str(entry_path(out, s, a, seed)) in refused else "")
                        for s, a, seed in jobs if (s, a, seed) not in entries],
            "refused": {str(Path(p).relative_to(out)): why for p, why in refused.items()}}
    addendum = read_json(out / ADDENDUM) if (out / ADDENDUM).exists() else None
    rereads = addendum or study.get("frontier")
    write_report(out, meta, list(entries), walls, addendum, budget_table(study) if rereads else None,
                 decoder(study) if rereads else None)
    print(f"tables and plots in {out}")


def decoder(study: dict):
    """Token ids -> text with the study's tokenizer where it is built here (the addendum shows the commonest
    responses); None, and ids are shown, where it is not."""
    from cory.models.load import load_tokenizer

    model = resolved_config(study, DEFAULT_SETTING, next(iter(study_arms(study))))["model_name"]
    try:
        tokenizer = load_tokenizer(model)
    except (OSError, UsageError):
        return None
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)


if __name__ == "__main__":
    run_script(main, interrupted="interrupted: no run starts after Ctrl-C or kill; finished runs are in the ledger, the "
                                 "others continue from their checkpoints when the study is run again")
