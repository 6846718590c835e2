"""A study's queue: its runs, the command of each, and running what is missing, `--jobs` at a time, each finished
run becoming its ledger entry at once (committed with `commit`). `scripts/compare.py` is its command line.

Every run is its own process (`imdb_train/{ppo,cory}.py`, `gsm8k_train/...`, `own_task/train.py`) with held-out
evaluation and checkpoints every `eval_every` steps, so a killed study resumes where it stopped; a finished run is
never trained again. The scripts run from `root`, the checkout whose training code the study pins (a `git worktree`
at the study's commit, its `cory` first on PYTHONPATH).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cory.errors import RunStopped, UsageError
from cory.platform.paths import atomic_file
from cory.run.checkpoint import complete_checkpoints
from cory.run.rundir import RunDirLock
from cory.studies.arms import arm_flags, arm_names, budget_table, study_arms
from cory.studies.budget import require
from cory.studies.checks import stated, tidy, uncommitted, verified
from cory.studies.evaluations import judge
from cory.studies.ledger import (TRAINING_CODE, check_same_setting, commit_entry, entry_path, git_commit, make_entry,
                                 pinned_training_commit, read_entry, read_study, training_code_dirty, write_entry)

Job = tuple[str, str, int]
"""(setting, arm, seed)"""
DEFAULT_SETTING = "default"
WALL_FLUSH_SECONDS = 60.0
"""a live run's wall time is added to wall_seconds.json this often, so an attempt that a kill or a session's end
stops still counts (at most this much of it is lost), and a resumed run's entry records all its attempts"""
TASK_SCRIPTS = {"imdb": ["imdb_train/{algorithm}.py"], "gsm8k": ["gsm8k_train/{algorithm}.py"],
                "text": ["own_task/train.py", "--algorithm", "{algorithm}"]}
"""each task's training script for an algorithm (your own task: own_task/train.py)"""
JUDGES = {"imdb": judge}
"""a task's second judge, scored into every ledger entry (IMDB: VADER positivity); other tasks have none"""


def study_jobs(study: dict) -> list[Job]:
    """(setting, arm, seed), seed-major: the first seeds of every setting finish first, paired."""
    seeds = sorted({s for spec in study["settings"].values() for s in spec["seeds"]})
    return [(name, arm, seed) for seed in seeds for name, spec in study["settings"].items() if seed in spec["seeds"]
            for arm in study_arms(study)]


def setting_entries(out: Path, setting: str) -> tuple[dict, dict[Job, dict], dict]:
    """A committed study, its verified ledger entries of one setting and the refused ones (path -> why), for the
    scripts that read a ledger; one line naming what is missing where there is no study, setting or entry."""
    study = read_study(out)
    if study is None:
        raise UsageError(f"no study in {out} (no study.json)")
    if setting not in study["settings"]:
        raise UsageError(f"--setting {setting!r}: study {out.name} has {sorted(study['settings'])}")
    entries, refused = verified(out, study, study_jobs(study))
    entries = {job: entry for job, entry in entries.items() if job[0] == setting}
    if not entries:
        raise UsageError(f"study {out.name} has no ledger entry in setting {setting} yet")
    return study, entries, refused


def run_dir(out: Path, setting: str, arm: str, seed: int) -> Path:
    return out / "runs" / setting / f"{arm}-seed{seed}"


def stray_entries(out: Path, jobs: list[Job]) -> list[Path]:
    """Entries in the ledger that no job of study.json names (a seed removed from it, a misnamed file)."""
    named = {entry_path(out, *job) for job in jobs}
    return sorted(p for p in (out / "ledger").glob("*/*.json.gz") if p not in named) if (out / "ledger").is_dir() else []


def clear_unresumable(out: Path, jobs: list[Job]) -> list[Path]:
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


def _steps_logged(directory: Path) -> int:
    path = directory / "metrics.jsonl"
    return sum(1 for _ in open(path)) if path.exists() else 0


@dataclass
class StudyQueue:
    """One study's runs, trained from the checkout `root` into `out` (results/<name>)."""

    out: Path
    study: dict
    root: Path
    commit: bool = False
    """git-commit each entry the moment it is written"""
    keep_checkpoints: bool = False
    """keep a finished run's checkpoints (else they go once its entry is written)"""

    def command(self, job: Job, directory: Path) -> list[str]:
        """The training script's command line for one run (the arm's flags: `cory.studies.arms.arm_flags`)."""
        setting, arm, seed = job
        algorithm = study_arms(self.study)[arm]["algorithm"]
        script = [part.format(algorithm=algorithm) for part in TASK_SCRIPTS[self.study.get("task", "imdb")]]
        return [sys.executable, str(self.root / script[0]), *script[1:], "--seed", str(seed), "--save_every",
                str(self.study["eval_every"]), "--resume_from", "auto", "--output_dir", str(directory.parent), "--run_name",
                directory.name, "--log_samples_every", "0", "--eval_roles", "true", *arm_flags(self.study, setting, arm)]

    def run(self, jobs: list[Job], n_parallel: int, allow_uncommitted: bool) -> None:
        """Check the checkout and the ledger, recover entries a kill left uncommitted, then train what is missing
        (only at the budgets the study states). The caller holds the study's lock."""
        commit, dirty = git_commit(self.root), training_code_dirty(self.root)
        pinned = self.study["training_commits"]
        same = pinned_training_commit(self.root, commit, pinned)
        if same is None or (dirty and not allow_uncommitted):
            raise UsageError(f"this checkout ({commit[:10]}{', with uncommitted changes to ' + ', '.join(dirty) if dirty else ''}) "
                             f"is not the study's training code {[c[:10] for c in pinned]} ({', '.join(TRAINING_CODE)}): run "
                             f"from `git worktree add <dir> {pinned[0][:10]}` with --results_dir pointing here")
        good = self._checked_ledger(jobs)
        if len(good) < len(jobs):
            require(budget_table(self.study), self.study.get("budget", []), arm_names(self.study))
        todo = [job for job in jobs if job not in good]
        self._train(todo, n_parallel, same + ("+uncommitted" if dirty else ""), len(jobs))

    def _checked_ledger(self, jobs: list[Job]) -> dict:
        """The verified entries; an edited study.json or a misfiled entry stops everything before any run."""
        for line in tidy(self.out):
            print(line)
        good, refused = verified(self.out, self.study, jobs)
        strays = stray_entries(self.out, jobs)
        if refused or strays:
            what = {**refused, **{str(p): "not a run of study.json (its setting, arm or seed is not in it)" for p in strays}}
            first = next(iter(what))
            raise UsageError(f"{first}: {what[first]}" + (f" (and {len(what) - 1} more entries)" if len(what) > 1 else "")
                             + "; restore study.json and the ledger with git, or start another --name")
        for path in uncommitted(self.out, list(good)):
            if self.commit:
                commit_entry(path, f"ledger {self.out.name}: {path.parent.name}/{path.name.removesuffix('.json.gz')} "
                                   "(recovered: written, not committed)")
                print(f"{path}: committed (a kill had left it written but not committed)")
            else:
                print(f"{path}: written but not committed (commit it, or run with --commit)")
        if not self.keep_checkpoints:
            for job in good:
                shutil.rmtree(run_dir(self.out, *job) / "checkpoints", ignore_errors=True)  # its entry is whole
        return good

    def _train(self, todo: list[Job], n_parallel: int, code: str, n_jobs: int) -> None:
        """Run (or finish) each job of `todo`, `n_parallel` at a time; Ctrl-C or kill starts no new run and sends
        Ctrl-C to the live ones."""
        walls_path = self.out / "runs" / "wall_seconds.json"
        walls_path.parent.mkdir(parents=True, exist_ok=True)
        walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # taskset; macOS has none
        threads = str(max(1, cores // n_parallel))
        lock, stop, live = threading.Lock(), threading.Event(), {}
        steps = {job: int(stated(self.study, job[0], job[1])["steps"]) for job in todo}  # an arm may run longer
        bar = tqdm(total=sum(steps.values()), desc=f"{self.out.name}: {len(todo)} of {n_jobs} runs to do", unit="step")

        def one(job: Job) -> None:
            if stop.is_set():
                return
            directory = run_dir(self.out, *job)
            directory.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,  # root's own cory first: a
                   "PYTHONPATH": os.pathsep.join(p for p in (str(self.root), os.environ.get("PYTHONPATH", "")) if p)}  # pinned worktree trains its code
            key, since = f"{job[0]}/{directory.name}", time.time()

            def count_wall() -> None:
                nonlocal since
                with lock:
                    now = time.time()
                    walls[key], since = walls.get(key, 0.0) + now - since, now
                    atomic_file(walls_path, json.dumps(walls, indent=2))

            with open(directory.parent / f"{directory.name}.log", "a") as log:
                live[job] = subprocess.Popen(self.command(job, directory), cwd=self.root, env=env, stdout=log,
                                             stderr=subprocess.STDOUT)
                while (exit_code := _wait(live[job], WALL_FLUSH_SECONDS)) is None:
                    count_wall()
                del live[job]
            count_wall()
            if stop.is_set():
                return
            if exit_code != 0:
                raise RunStopped(f"{directory} failed (exit {exit_code}); see {directory}.log (the study continues from its "
                                 "checkpoints when run again)")
            with lock:
                self._record(job, directory, walls[key], code)
            if not self.keep_checkpoints:
                shutil.rmtree(directory / "checkpoints", ignore_errors=True)

        with ThreadPoolExecutor(n_parallel) as pool, bar:
            futures = [pool.submit(one, job) for job in todo]
            try:
                while not all(f.done() for f in futures):
                    time.sleep(1)
                    bar.n = sum(_steps_logged(run_dir(self.out, *job)) for job in todo)
                    bar.refresh()
            except KeyboardInterrupt:
                stop.set()
                for future in futures:
                    future.cancel()
                for proc in list(live.values()):
                    proc.send_signal(signal.SIGINT)  # each run stops with nothing half-written (atomic checkpoints)
                raise
            for future in futures:
                future.result()  # re-raise the first failure

    def _record(self, job: Job, directory: Path, wall: float, code: str) -> None:
        """The finished run's ledger entry, after checking it ran the study's settings (precision included)."""
        setting, arm, seed = job
        study = self.study
        entry = make_entry(directory, setting, study_arms(study)[arm]["algorithm"], seed, wall, code,
                           JUDGES.get(study.get("task", "imdb")), self.root)
        if arm != entry["algorithm"]:
            entry["arm"] = arm
        entry["study_flags"] = arm_flags(study, setting, arm)  # what study.json gave this run: an edit later is caught
        if study["mixed_precision"] and entry["config"]["mixed_precision"] != study["mixed_precision"]:
            raise UsageError(f"{directory} ran in {entry['config']['mixed_precision']}, the study fixes {study['mixed_precision']}")
        for other_seed in study["settings"][setting]["seeds"]:
            other = entry_path(self.out, setting, arm, other_seed)
            if other_seed != seed and other.exists():
                check_same_setting(entry, read_entry(other))
                break
        path = entry_path(self.out, *job)
        write_entry(path, entry)
        if self.commit:
            commit_entry(path, f"ledger {self.out.name}: {setting}/{arm}-seed{seed} ({entry['machine']['cpu']}, {wall / 60:.0f} min)")


def _wait(process: subprocess.Popen, seconds: float) -> int | None:
    """The process's exit code, or None if it still runs after `seconds`."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None
