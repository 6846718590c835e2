"""Claim 1 in one picture: reward at matched KL, each CORY agent minus its study's baseline, with the interval its
study decides on, from the committed reports (results/<study>/summary.json; run after `compare.py --report_only`).

    python scripts/claims_figure.py            # -> results/claims.png

Filled: decided by the study's rule (above or below 0, or bounded within the dashed +-0.1); hollow: undecided;
x: a level too few seeds reached (the interval over those that did). imdb-claims is its post-hoc re-reading.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from cory.errors import run_script
from cory.run.plots import plot_intervals
from cory.studies.endpoints import BOUNDS

ROOT = Path(__file__).resolve().parent.parent

BASELINES = {"imdb-claims": "PPO", "imdb-critic-free-matched": "GRPO per-model", "imdb-frontier": "PPO"}
"""each study shown, and the baseline of its primary endpoint"""
DECIDED = ("above 0", "below 0", "bounded")


def kind(label: str) -> str:
    return "decided" if label.startswith(DECIDED) else "not reached" if label.startswith("not reached") else "undecided"


def matched_kl_rows(results: Path) -> list[dict]:
    """One row per (study, CORY agent, KL level) with an estimate, in the order of BASELINES."""
    rows = []
    for study, baseline in BASELINES.items():
        path = results / study / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        tables = summary["addendum"] if "addendum" in summary else summary.get("frontier", {}).get("default", {})
        for comparison, levels in tables.get("frontier", {}).items():
            agent, _, base = comparison.removeprefix("reward at kl: ").partition(" - ")
            if not comparison.startswith("reward at kl: ") or base != baseline:
                continue
            for level in levels:
                if isinstance(level.get("diff"), float) and math.isfinite(level["diff"]):
                    rows.append({"name": f"{study}: {agent} - {baseline}, KL {level['level']:g}, {level['seeds']} seeds",
                                 "diff": level["diff"], "low": level["low"], "high": level["high"], "kind": kind(level["label"])})
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--out", type=Path, default=None, help="default: <results>/claims.png")
    args = parser.parse_args(argv)
    rows = matched_kl_rows(args.results)
    out = args.out or args.results / "claims.png"
    plot_intervals(rows, out, BOUNDS["reward_mean"], "held-out reward at matched KL, CORY agent - baseline",
                   title="Claim 1: reward at matched KL, each study's decision interval")
    print(f"{out}: {len(rows)} intervals")


if __name__ == "__main__":
    run_script(main)
