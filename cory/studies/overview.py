"""Claim 1 across the studies in one picture (results/claims.png): reward at matched KL, each CORY agent minus its
study's baseline, with the interval its study's rule decides on, read from the committed reports. A report rebuild
of a study shown here redraws it (`scripts/compare.py`), so the picture never lags the reports."""
from __future__ import annotations

import json
import math
from pathlib import Path

from cory.run.plots import plot_intervals
from cory.studies.answer import ABOVE, BELOW, BOUNDED
from cory.studies.endpoints import BOUNDS
from cory.studies.frontier import split_comparison

BASELINES = {"imdb-claims": "PPO", "imdb-critic-free-matched": "GRPO per-model", "imdb-frontier": "PPO"}
"""each study shown, in order, and the baseline of its primary endpoint, matched to CORY per trained model (imdb-claims:
its post-hoc re-reading)"""


def kind(label: str) -> str:
    return "decided" if label.startswith((ABOVE, BELOW, BOUNDED)) else "not reached" if label.startswith("not reached") else "undecided"


def matched_kl_rows(results: Path) -> list[dict]:
    """One row per (study, CORY agent, KL level) with an estimate, in the order of BASELINES; a study without a
    report yet is skipped."""
    rows = []
    for study, baseline in BASELINES.items():
        path = results / study / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        tables = summary["addendum"] if "addendum" in summary else summary.get("frontier", {}).get("default", {})
        for comparison, levels in tables.get("frontier", {}).items():
            parts = split_comparison(comparison)
            if parts is None or (parts["read"], parts["along"], parts["base"]) != ("reward", "kl", baseline):
                continue
            agent = parts["arm"]
            for level in levels:
                if isinstance(level.get("diff"), float) and math.isfinite(level["diff"]):
                    rows.append({"name": f"{study}: {agent} - {baseline}, KL {level['level']:g}, {level['seeds']} seeds",
                                 "diff": level["diff"], "low": level["low"], "high": level["high"], "kind": kind(level["label"])})
    return rows


def draw_claims(results: Path, out: Path | None = None) -> Path:
    """results/claims.png (or `out`) from the reports under `results`."""
    return plot_intervals(matched_kl_rows(results), out or results / "claims.png", BOUNDS["reward_mean"],
                          "held-out reward at matched KL, CORY agent - baseline",
                          title="Claim 1: reward at matched KL against a baseline matched per model, seeds as the unit")
