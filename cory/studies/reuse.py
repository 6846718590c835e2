"""One study's run reused by another where the two are one computation, so that machine time is not spent twice.

Two runs are one computation when both studies pin the same training commit and the run resolves to the same config
(`cory.studies.arms.resolved_config`: every key, the seed and the evaluation included) but for its length and where
it lives. Then, on one CPU kind, the shorter is the longer's first steps to the bit (imdb-robustness and
imdb-frontier at cf570ea: every metric and evaluation of their PPO and CORY seeds 0-1 agreed through step 60).

- Same length: the target's ledger entry is the source's, marked `reused_from` (its wall time is the source's,
  spent once).
- Another length: the target's run directory starts from a checkpoint the source wrote before its last step and
  before the target's (hard-linked), with the source's logs; the target's own study resumes it there (bit-exact resume), truncating the logs past that step,
  and writes its entry as usual. The run's log says where it started.

The target's study must not be training meanwhile: its queue decides what to run when it starts.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cory.errors import UsageError
from cory.platform.paths import read_json, write_json
from cory.run.checkpoint import complete_checkpoints, verify_checkpoint
from cory.run.rundir import LOADED_MODELS
from cory.studies.arms import resolved_config, study_arms
from cory.studies.ledger import entry_path, read_study
from cory.studies.queue import run_dir

MAY_DIFFER = {"steps", "output_dir", "run_name", "resume_from", "overwrite"}
"""config keys in which a reused run may differ from the run it stands for: its length and where it lives"""
RUN_LOGS = ("eval.jsonl", "metrics.jsonl", LOADED_MODELS)
"""what a seeded run directory copies from the source's besides the checkpoint (the resumed run truncates the logs)"""


@dataclass(frozen=True)
class RunRef:
    """One run of a study: `STUDY:SETTING/ARM-seedN`, e.g. imdb-robustness:default/cory-seed2."""

    study: str
    setting: str
    arm: str
    seed: int

    @classmethod
    def parse(cls, text: str) -> RunRef:
        study, _, run = text.partition(":")
        setting, _, name = run.partition("/")
        arm, _, seed = name.rpartition("-seed")
        if not (study and setting and arm and seed.isdigit()):
            raise UsageError(f"{text!r}: a run is named STUDY:SETTING/ARM-seedN, e.g. imdb-robustness:default/cory-seed2")
        return cls(study, setting, arm, int(seed))

    def __str__(self) -> str:
        return f"{self.study}:{self.setting}/{self.arm}-seed{self.seed}"

    @property
    def job(self) -> tuple[str, str, int]:
        return self.setting, self.arm, self.seed


def _study(results: Path, ref: RunRef) -> dict:
    study = read_study(results / ref.study)
    if study is None:
        raise UsageError(f"{ref}: no study {results / ref.study / 'study.json'}")
    if ref.setting not in study["settings"] or ref.seed not in study["settings"][ref.setting]["seeds"]:
        raise UsageError(f"{ref}: study.json of {ref.study} has no seed {ref.seed} in a setting {ref.setting!r}")
    if ref.arm not in study_arms(study):
        raise UsageError(f"{ref}: study.json of {ref.study} has no arm {ref.arm!r} (it has {', '.join(study_arms(study))})")
    return study


def differences(results: Path, source: RunRef, target: RunRef) -> list[str]:
    """Why `source` is not `target`'s computation (empty if it is)."""
    studies = {ref: _study(results, ref) for ref in (source, target)}
    found = []
    if source.seed != target.seed:
        found.append(f"seed {source.seed} is not seed {target.seed}")
    for key in ("training_commits", "task", "mixed_precision"):
        if studies[source].get(key) != studies[target].get(key):
            found.append(f"{key}: {studies[source].get(key)!r} vs {studies[target].get(key)!r}")
    configs = {ref: resolved_config(studies[ref], ref.setting, ref.arm) for ref in (source, target)}
    found += [f"{key}={configs[source].get(key)!r} vs {configs[target].get(key)!r}" for key in sorted(set(configs[source]) | set(configs[target]))
              if key not in MAY_DIFFER and configs[source].get(key) != configs[target].get(key)]
    if study_arms(studies[source])[source.arm]["algorithm"] != study_arms(studies[target])[target.arm]["algorithm"]:
        found.append("the arms run different algorithms")
    return found


def _check(results: Path, source: RunRef, target: RunRef) -> None:
    found = differences(results, source, target)
    if found:
        raise UsageError(f"{source} is not {target}'s computation: " + "; ".join(found[:4]))
    if entry_path(results / target.study, *target.job).exists():
        raise UsageError(f"{target} has a ledger entry already: nothing to reuse")


def steps(results: Path, ref: RunRef) -> int:
    """How many steps `ref`'s run trains, as its study states it."""
    return resolved_config(_study(results, ref), ref.setting, ref.arm)["steps"]


def reuse_entry(results: Path, source: RunRef, target: RunRef) -> Path:
    """Write `target`'s ledger entry as `source`'s (one computation of the same length), marked `reused_from`."""
    _check(results, source, target)
    if steps(results, source) != steps(results, target):
        raise UsageError(f"{source} runs {steps(results, source)} steps, {target} {steps(results, target)}: seed the "
                         "longer run from a checkpoint instead")
    path = entry_path(results / source.study, *source.job)
    if not path.exists():
        raise UsageError(f"{source} has no ledger entry yet: run it first")
    entry = read_json(path)
    out = entry_path(results / target.study, *target.job)
    write_json(out, {**entry, "reused_from": str(source)})
    return out


def seed_run(results: Path, source: RunRef, target: RunRef, checkpoint: Path | None = None) -> Path:
    """Start `target`'s run directory from `checkpoint` (default: `source`'s newest complete one; a copy kept
    elsewhere will do, named step-NNNNNNN): hard links, so no space is spent and the source keeps its own. Returns
    the checkpoint it starts from."""
    _check(results, source, target)
    source_dir, target_dir = run_dir(results / source.study, *source.job), run_dir(results / target.study, *target.job)
    checkpoint = Path(checkpoint) if checkpoint else next(iter(reversed(complete_checkpoints(source_dir))), None)
    if checkpoint is None:
        raise UsageError(f"{source} has no complete checkpoint in {source_dir / 'checkpoints'}")
    if not checkpoint.name.startswith("step-"):
        raise UsageError(f"{checkpoint}: not a checkpoint directory (step-NNNNNNN)")
    step = int(checkpoint.name.removeprefix("step-"))
    if step >= steps(results, source):
        raise UsageError(f"{checkpoint}: written at {source}'s last step, after its final evaluations (which drew from "
                         "the training RNG before 2026-12-07): start from an earlier checkpoint")
    if step >= steps(results, target):
        raise UsageError(f"{checkpoint}: {target} runs {steps(results, target)} steps, so it would train nothing from "
                         f"step {step}: start from an earlier checkpoint")
    problem = verify_checkpoint(checkpoint)
    if problem:
        raise UsageError(f"{checkpoint}: {problem}")
    start_from(checkpoint, source_dir, target_dir)
    with open(target_dir.parent / f"{target_dir.name}.log", "a") as log:
        log.write(f"seeded from {source}'s checkpoint {checkpoint.name} (cory.studies.reuse: one computation); "
                  "this run resumes there\n")
    return checkpoint


def start_from(checkpoint: Path, source_dir: Path, target_dir: Path) -> None:
    """Make `target_dir` a run that resumes at `checkpoint` of the run in `source_dir`: the checkpoint hard-linked,
    the logs copied (the resumed run drops their lines past the checkpoint's step)."""
    if complete_checkpoints(target_dir) or (target_dir / "eval.jsonl").exists():
        raise UsageError(f"{target_dir} holds a run already: delete it first to start it from {checkpoint}")
    missing = [name for name in RUN_LOGS if not (source_dir / name).exists()]
    if missing:
        raise UsageError(f"{source_dir} has no {', '.join(missing)}: not a run directory to start from")
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_LOGS:
        shutil.copy2(source_dir / name, target_dir / name)
    shutil.copytree(checkpoint, target_dir / "checkpoints" / checkpoint.name, copy_function=_link_or_copy)


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link (no space spent; deleting either name keeps the other), or a copy across file systems."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
