"""The run ledger: one small committed file per finished run of a study, from which every table is rebuilt.

A study (`results/<study>/study.json`) fixes its settings before its runs. When a run finishes, its entry
`results/<study>/ledger/<setting>/<algorithm>-seed<s>.json.gz` keeps what the report needs and nothing more: the
run's config, the training code's commit, the machine, the wall time, and for every held-out evaluation the
per-prompt reward, exact KL, length, response token ids and VADER score. So a fresh machine can add a seed to an
old study, and anyone can recompute every table from the repository alone.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from cory.errors import UsageError
from cory.models.load import weight_fingerprints
from cory.platform.paths import atomic_file, read_json, write_json
from cory.platform.precision import NATIVE_BF16_FLAGS, bf16_supported, cpu_flags, cpu_info
from cory.run.rundir import LOADED_MODELS

STUDY_FILE = "study.json"
PER_PROMPT_KEYS = ("reward", "kl_exact", "response_len", "response_ids", "judge_vader")
RUN_KEYS_FREE = ("seed", "run_name", "output_dir", "resume_from", "overwrite")
"""config keys that may differ between the runs of one setting (everything else must be equal)"""
TRAINING_CODE = ("cory", "imdb_train", "gsm8k_train", "configs")
"""what a study's runs execute: the folders whose commit a study pins"""
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def entry_path(study_dir: Path, setting: str, algorithm: str, seed: int) -> Path:
    return Path(study_dir) / "ledger" / setting / f"{algorithm}-seed{seed}.json.gz"


def machine_facts() -> dict:
    """CPU model, cores and the flags that decide precision and speed (timings only compare within one kind)."""
    model, flags = cpu_info().get("model name") or platform.processor(), cpu_flags() or set()
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags],
            "bf16_native": bf16_supported(cuda=False), "torch": torch.__version__}


def native_bf16(machine: dict) -> bool:
    """Whether an entry's machine has native bf16, read from its recorded flags: entries written before the flags
    decided recorded oneDNN's answer, which is yes on an AVX-512 CPU that only emulates bf16 (an Ice Lake Xeon)."""
    if "flags" in machine:
        return bool(NATIVE_BF16_FLAGS & set(machine["flags"]))
    return machine["bf16_native"]


def loaded_fingerprints(run_dir: Path, config: dict) -> dict[str, str]:
    """The weights the run loaded, as it recorded them at each (re)start (`runner.LOADED_MODELS`; '+' joins builds
    that differ between attempts); a run of older code recorded none: then the weights here now."""
    path = Path(run_dir) / LOADED_MODELS
    if not path.exists():
        return weight_fingerprints(config)
    joined: dict[str, list[str]] = {}
    for attempt in json.loads(path.read_text()):
        for key, value in attempt["fingerprints"].items():
            if value not in joined.setdefault(key, []):
                joined[key].append(value)
    return {key: "+".join(values) for key, values in joined.items()}


def compact_eval(row: dict, judge=None) -> dict:
    """One eval.jsonl row, reduced to what the report reads (a task's second judge scored now, so the text can go)."""
    values = row["per_prompt"]
    if judge is not None and "judge_vader" not in values:
        values = {**values, "judge_vader": [round(v, 4) for v in judge(values["response_text"])]}
    return {"step": row["step"], "agent": row["agent"], "role": row.get("role", "alone"),
            "per_prompt": {k: values[k] for k in PER_PROMPT_KEYS if k in values}}


def portable(config: dict, root: Path) -> dict:
    """The config with this checkout's absolute paths written relative to it (`<repo>`, `<repo>/..`), so that
    runs from different checkouts and machines compare equal and no machine's paths get committed."""
    root = Path(root).resolve()

    def relative(value):
        if not isinstance(value, str):
            return value
        return value.replace(str(root), "<repo>").replace(str(root.parent), "<repo>/..")

    return {k: relative(v) for k, v in config.items()}


def make_entry(run_dir: Path, setting: str, algorithm: str, seed: int, wall_seconds: float, commit: str, judge, root: Path) -> dict:
    config = portable(json.loads((run_dir / "config.json").read_text()), root)
    rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line]
    return {"setting": setting, "algorithm": algorithm, "seed": seed, "training_commit": commit, "machine": machine_facts(),
            "model_fingerprints": loaded_fingerprints(run_dir, config),
            "wall_seconds": round(wall_seconds, 1), "config": config,
            "evals": check_each_evaluation_once([compact_eval(r, judge) for r in rows if r.get("per_prompt")], run_dir)}


def check_each_evaluation_once(evals: list[dict], where) -> list[dict]:
    """An evaluation (step, agent, role) logged twice means two attempts share one log (code before 5372ab1 appended
    a restarted run's step 0 to a killed attempt's): such a run is re-run, never reported."""
    seen = set()
    for row in evals:
        key = (row["step"], row["agent"], row["role"])
        if key in seen:
            raise UsageError(f"{where}: the evaluation of step {key[0]} ({key[1]}, {key[2]}) is logged twice, so two "
                             "attempts share this log: delete the run and run it again")
        seen.add(key)
    return evals


def write_entry(path: Path, entry: dict) -> None:
    write_json(path, entry)


def read_entry(path: Path) -> dict:
    entry = read_json(path)
    check_each_evaluation_once(entry["evals"], path)
    return entry


def setting_differences(mine: dict, theirs: dict) -> list[str]:
    """The config keys in which two runs differ beyond their seed and where they ran (RUN_KEYS_FREE)."""
    return sorted(k for k in set(mine) | set(theirs) if k not in RUN_KEYS_FREE and mine.get(k) != theirs.get(k))


def check_same_setting(entry: dict, other: dict) -> None:
    """Two runs of one setting may differ only in their seed and where they ran: refuse anything else."""
    mine, theirs = entry["config"], other["config"]
    differ = setting_differences(mine, theirs)
    if differ:
        raise UsageError(f"{entry['setting']}/{entry['algorithm']}-seed{entry['seed']} differs from seed {other['seed']} of the "
                         f"same setting in {', '.join(f'{k}={mine.get(k)!r} vs {theirs.get(k)!r}' for k in differ)}")


def read_study(study_dir: Path) -> dict | None:
    path = Path(study_dir) / STUDY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_study(study_dir: Path, study: dict) -> None:
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    atomic_file(Path(study_dir) / STUDY_FILE, json.dumps(study, indent=2) + "\n")


def git_commit(root: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def training_code_dirty(root: Path) -> list[str]:
    """Uncommitted changes to the code a run executes (a study's runs must all run one commit)."""
    done = subprocess.run(["git", "status", "--porcelain", "--", *TRAINING_CODE], cwd=root, capture_output=True, text=True)
    return [line[3:] for line in done.stdout.splitlines()]


def training_tree(root: Path, commit: str) -> str | None:
    """The git objects of the code a run executes, at `commit`; None where git cannot read that commit here."""
    done = subprocess.run(["git", "ls-tree", commit, "--", *TRAINING_CODE], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 and done.stdout else None


def pinned_training_commit(root: Path, commit: str, pinned: list[str]) -> str | None:
    """The study's commit whose training code `commit` runs: itself, or one it differs from only outside that code
    (a ledger entry committed since, a README); None where the training code differs from every pinned commit."""
    if commit in pinned:
        return commit
    mine = training_tree(root, commit)
    return next((c for c in pinned if mine is not None and training_tree(root, c) == mine), None)


def commit_entry(path: Path, message: str, attempts: int = 20) -> None:
    """Commit one ledger entry (only that file) in the repository that holds it; retried while another git
    process holds the index."""
    for attempt in range(attempts):
        add = subprocess.run(["git", "add", path.name], cwd=path.parent, capture_output=True, text=True)
        done = add if add.returncode else subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", path.name], cwd=path.parent, capture_output=True, text=True)
        if done.returncode == 0:
            return
        if "index.lock" not in done.stderr or attempt == attempts - 1:
            raise RuntimeError(f"could not commit {path}: {done.stderr.strip()}")
        time.sleep(3)
