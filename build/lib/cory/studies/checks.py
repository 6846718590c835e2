"""What keeps a study's ledger whole: one study process at a time, nothing half-written or left uncommitted, and no
entry trusted before it is checked against the study it is filed under.

An entry is read back only after checking that it is the run its path names (setting, arm, algorithm, seed), that
it ran the study's settings (every config key the study fixes, the steps, the evaluation, the precision, and for
entries written since 2026-12-07 the exact flags of study.json it ran under), that it holds its final evaluation,
and that no other entry holds the same evaluations (one run filed twice). A study process holds a kernel lock on
the study directory (`cory.run.rundir.RunDirLock`), so a second process refuses (or waits) instead of re-running
finished runs.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import time
import zlib
from pathlib import Path

from cory.errors import UsageError
from cory.platform.paths import read_json, remove_stale_temporaries
from cory.run.rundir import RunDirLock
from cory.studies.arms import AGENTS, arm_flags, study_arms
from cory.studies.ledger import check_each_evaluation_once, check_same_setting, entry_path, setting_differences


def lock_study(out: Path, wait: bool, log=print) -> RunDirLock:
    """The study's lock (one process trains a study at a time); with `wait`, wait for the holder to finish."""
    lock = RunDirLock(out, log, what="study", advice="wait for it to finish, or pass --wait to queue behind it")
    while True:
        try:
            lock.acquire()
            return lock
        except UsageError as busy:
            if not wait:
                raise
            log(f"{busy}: waiting")
            time.sleep(30)


def tidy(out: Path) -> list[str]:
    """Remove what killed writes left in the study's result and ledger folders (call it holding the study's lock)."""
    folders = [out, *(p for p in (out / "ledger").glob("*") if p.is_dir())] if (out / "ledger").is_dir() else [out]
    return [line for folder in folders for line in remove_stale_temporaries(folder)]


def uncommitted(out: Path, jobs: list) -> list[Path]:
    """Ledger entries on disk that git does not hold as committed (a kill between writing and committing)."""
    paths = [entry_path(out, *job) for job in jobs if entry_path(out, *job).exists()]
    if not paths:
        return []
    done = subprocess.run(["git", "status", "--porcelain", "--", *map(str, paths)], cwd=out, capture_output=True, text=True)
    if done.returncode:  # not a git checkout (a copy of the results): nothing to commit from here
        return []
    dirty = {line[3:].strip() for line in done.stdout.splitlines()}
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=out, capture_output=True, text=True).stdout.strip()
    return [p for p in paths if str(p.resolve().relative_to(root)) in dirty]


def read_checked(path: Path) -> dict:
    """An entry, or one line naming the file and what is wrong with it."""
    try:
        entry = read_json(path)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: not a readable ledger entry ({type(error).__name__}: {error}); restore it with "
                         "`git checkout -- <file>` or delete it to run it again") from None
    missing = [k for k in ("setting", "algorithm", "seed", "config", "evals") if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise UsageError(f"{path}: not a ledger entry (no {', '.join(missing)}); restore it or delete it to run it again")
    check_each_evaluation_once(entry["evals"], path)
    return entry


def problems(entry: dict, study: dict, job: tuple[str, str, int]) -> list[str]:
    """How `entry` differs from the run of `study` its path names; empty if it is that run."""
    setting, arm, seed = job
    algorithm = study_arms(study)[arm]["algorithm"]
    found = []
    if entry["setting"] != setting or entry.get("arm", entry["algorithm"]) != arm or entry["algorithm"] != algorithm:
        found.append(f"it is a run of {entry['setting']}/{entry.get('arm', entry['algorithm'])} ({entry['algorithm']}), "
                     f"filed as {setting}/{arm} ({algorithm})")
    if entry["seed"] != seed or entry["config"].get("seed") != seed:
        found.append(f"it is seed {entry['config'].get('seed', entry['seed'])}'s run, filed as seed {seed}")
    config = entry["config"]
    differ = [f"{key}={config.get(key)!r} where study.json gives {value!r}" for key, value in stated(study, setting, arm).items()
              if not _same(config.get(key), value)]
    if differ:
        found.append("it ran " + "; ".join(differ[:4]))
    if "study_flags" in entry and entry["study_flags"] != arm_flags(study, setting, arm):
        found.append(f"it ran under other study.json settings ({' '.join(entry['study_flags'])}; now "
                     f"{' '.join(arm_flags(study, setting, arm))})")
    for agent in AGENTS[algorithm]:
        if not any(r["agent"] == agent and r.get("role", "alone") == "alone" and r["step"] == config.get("steps") for r in entry["evals"]):
            found.append(f"it has no final evaluation of {agent} (step {config.get('steps')})")
    return found


def stated(study: dict, setting: str, arm: str) -> dict[str, str]:
    """What study.json fixes for a run of (setting, arm), key -> value as the flags give it (the last flag wins,
    as in the training scripts); the preset's own values are not stated here, and the runs of one setting are
    checked against each other for those (`check_same_setting`)."""
    flags = ["--preset", study["task_preset"], *arm_flags(study, setting, arm)]
    return {flag[2:]: value for flag, value in zip(flags[::2], flags[1::2])}


def _same(value, text: str) -> bool:
    if isinstance(value, bool):
        return text.lower() in ("true", "1", "yes") if value else text.lower() in ("false", "0", "no")
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    if isinstance(value, str) and value.startswith("<repo>") and text.startswith("/"):  # an entry's path is portable
        return text.endswith(value.removeprefix("<repo>/..").removeprefix("<repo>"))  # (`ledger.portable`): its tail
    return str(value) == text


def fingerprint(entry: dict) -> str:
    """The entry's evaluations, hashed: two entries with one fingerprint are one run filed twice."""
    return hashlib.sha256(json.dumps(entry["evals"], sort_keys=True).encode()).hexdigest()[:16]


def verified(out: Path, study: dict, jobs: list) -> tuple[dict, dict[str, str]]:
    """(job -> entry) for every entry that is the run its path names, and (entry path -> why it is refused) for
    the others; a job without an entry is in neither. Two entries with the same evaluations are both refused (which
    is the real run?). The runs of one (setting, arm) must share one config but for their seeds: the config most of
    them share is the reference, and one that differs is refused."""
    candidates, refused, by_print = {}, {}, {}
    for job in jobs:
        path = entry_path(out, *job)
        if not path.exists():
            continue
        try:
            entry = read_checked(path)
        except UsageError as error:
            refused[str(path)] = str(error).split(": ", 1)[1]
            continue
        by_print.setdefault(fingerprint(entry), []).append(path)
        found = problems(entry, study, job)
        if found:
            refused[str(path)] = "; ".join(found)
        else:
            candidates[job] = entry
    for paths in (p for p in by_print.values() if len(p) > 1):
        for path in paths:
            twins = ", ".join(str(t.relative_to(out)) for t in paths if t != path)
            refused[str(path)] = "; ".join(filter(None, [refused.get(str(path)), f"its evaluations are those of {twins} (one run filed twice)"]))
    for job in [j for j in candidates if not _agrees_with_most(j, candidates)]:
        refused[str(entry_path(out, *job))] = _disagreement(job, candidates)
    return {j: e for j, e in candidates.items() if str(entry_path(out, *j)) not in refused}, refused


def _peers(job, good: dict) -> list:
    return [j for j in good if j[:2] == job[:2]]


def _agrees_with_most(job, good: dict) -> bool:
    peers = _peers(job, good)
    agree = [j for j in peers if not setting_differences(good[job]["config"], good[j]["config"])]
    return len(agree) * 2 > len(peers) or (len(agree) * 2 == len(peers) and min(agree) == min(peers))


def _disagreement(job, good: dict) -> str:
    reference = next(j for j in _peers(job, good) if _agrees_with_most(j, good))
    try:
        check_same_setting(good[job], good[reference])
    except UsageError as error:
        return str(error)
    return "its config differs from the other seeds of its setting"
