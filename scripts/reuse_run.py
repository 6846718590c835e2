"""Reuse one study's run in another where the two are one computation (`cory.studies.reuse`), instead of training it
again: the same training commit and config but for the length and the run directory.

    python scripts/reuse_run.py imdb-robustness:default/ppo-seed2 imdb-frontier:default/ppo-seed2 --commit
    python scripts/reuse_run.py imdb-robustness:default/cory-seed2 imdb-frontier:default/cory-seed2 \\
        --checkpoint results/imdb-robustness/runs/default/cory-seed2/checkpoints/step-0000050

Same length: the target's ledger entry is the source's, marked `reused_from` (committed with --commit). A longer
target: its run directory starts from the source's checkpoint (default: the newest), and the target's study
resumes it when run next. Stop the target's study first: its queue fixes what it will run when it starts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cory.errors import run_script
from cory.studies.checks import lock_study
from cory.studies.ledger import commit_entry
from cory.studies.reuse import RunRef, reuse_entry, seed_run, steps

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="STUDY:SETTING/ARM-seedN, the run that was trained")
    parser.add_argument("target", help="STUDY:SETTING/ARM-seedN, the run it stands for")
    parser.add_argument("--checkpoint", type=Path, help="a longer target: start from this checkpoint of the source (default: its newest)")
    parser.add_argument("--results_dir", type=Path, default=ROOT / "results")
    parser.add_argument("--commit", action="store_true", help="git-commit a reused entry")
    args = parser.parse_args(argv)
    args.source, args.target = RunRef.parse(args.source), RunRef.parse(args.target)  # a malformed name: its own line
    lock = lock_study(args.results_dir / args.target.study, wait=False)  # not while its queue runs (code since a28f11c)
    try:
        if steps(args.results_dir, args.source) == steps(args.results_dir, args.target):
            path = reuse_entry(args.results_dir, args.source, args.target)
            if args.commit:
                commit_entry(path, f"ledger {args.target.study}: {args.target.setting}/{args.target.arm}-seed{args.target.seed} "
                                   f"(reused: {args.source}, one computation)")
            print(f"{path}: {args.source}'s entry (reused_from)")
        else:
            checkpoint = seed_run(args.results_dir, args.source, args.target, args.checkpoint)
            print(f"{args.target}: starts from {checkpoint}; run its study to continue it")
    finally:
        lock.release()


if __name__ == "__main__":
    run_script(main)
