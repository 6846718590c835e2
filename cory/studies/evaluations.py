"""A study's held-out evaluations as the report reads them: from ledger entries (or a run's eval.jsonl) to
per-prompt values and metrics, one curve per agent (`PPO`, `CORY agent A`), and VADER, the independent judge.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cory.eval.heldout import ETAS, distinct_n
from cory.studies.arms import AGENTS
from cory.studies.ledger import entry_path, read_entry

ETA_PLOT = 0.05
METRICS = ("reward_mean", "kl_exact", *[f"combined_eta{e:g}" for e in ETAS], "distinct_1", "distinct_2", "response_len", "judge_vader")
SHORT = {"reward_mean": "reward", "kl_exact": "KL", "response_len": "length", "judge_vader": "VADER"}
DEGENERATE_FRACTION = 0.5
"""collapse (degenerate text): final distinct-2 below this fraction of the untrained model's"""
ONE_TOKEN_SHARE = 0.5
"""not in the collapse definition, counted beside it: a seed whose final answers are one token (in practice EOS
alone) on more than this share of prompts. distinct-2 cannot see such a collapse (a one-token answer has no bigram,
so the few longer answers decide it), and a falling reward is not hacking; found after imdb-robustness registered
its definition, which stays as registered"""
HACKED_SE = 2.0
"""collapse (reward hacking): the reward rose since step 0 while VADER fell by more than this many standard
errors of its per-prompt change (paired over the same prompts), so that sampling noise alone is not a collapse"""
ROLES = ("alone", "observer_of_other", "observer_of_self")
SEED_VIEW = ("reward_mean", "kl_exact", "combined_eta0.05")
PRECISION = {"no": "fp32 on every machine (mixed_precision no)", "bf16": "bf16 autocast", "": "the preset's"}


def judge(texts: list[str]) -> list[float]:
    """VADER compound positivity in [-1, 1] per text."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def per_prompt(row: dict, metric: str) -> list:
    """Per-prompt values of `metric` in one evaluation row (what the bootstrap resamples)."""
    values = row["per_prompt"]
    reward = [np.nan if v is None else v for v in values["reward"]]
    if metric == "reward_mean":
        return reward
    if metric.startswith("combined_eta"):
        eta = float(metric.removeprefix("combined_eta"))
        return [r - eta * k for r, k in zip(reward, values["kl_exact"])]
    if metric in ("distinct_1", "distinct_2"):
        return values["response_ids"]
    if metric == "judge_vader":
        if "judge_vader" not in values and "response_text" in values:  # a run's eval.jsonl holds the text
            values["judge_vader"] = judge(values["response_text"])
        return values.get("judge_vader", [np.nan] * len(reward))  # a task without a second judge (GSM8K, your own)
    return values[{"kl_exact": "kl_exact", "response_len": "response_len"}[metric]]


def statistic(metric: str):
    """How a list of per-prompt values becomes the metric (a mean, or corpus-level distinct-n)."""
    if metric in ("distinct_1", "distinct_2"):
        n = int(metric[-1])
        return lambda responses: distinct_n(responses, n)
    return lambda values: _mean_or_nan(np.asarray(values, dtype=float))


def _mean_or_nan(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def value(row: dict, metric: str) -> float:
    return statistic(metric)(per_prompt(row, metric))


def read_eval(directory: Path) -> list[dict]:
    """A run directory's evaluation rows (the variants report reads runs; a study's report reads its ledger)."""
    path = directory / "eval.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def evals_of(rows: list[dict], agent: str, role: str = "alone") -> list[dict]:
    """One agent's evaluations in one role, in step order (rows logged before roles existed count as alone)."""
    return sorted((r for r in rows if r["agent"] == agent and r.get("role", "alone") == role and r.get("per_prompt")),
                  key=lambda r: r["step"])


def curve_label(name: str, agent: str) -> str:
    """'PPO' for a PPO arm's policy, 'CORY agent A' for a CORY agent (under the arm's name)."""
    return name if agent == "policy" else f"{name} agent {agent.removeprefix('agent_').upper()}"


def agent_of(label: str) -> str:
    """The agent a curve label shows (the inverse of `curve_label`)."""
    head, _, letter = label.rpartition(" agent ")
    return f"agent_{letter.lower()}" if head and len(letter) == 1 else "policy"


def load(out: Path, jobs: list[tuple[str, str, int]], arms: dict[str, dict]) -> dict[str, dict[str, dict[int, list[dict]]]]:
    """setting -> curve -> seed -> that run's evaluation rows (all agents and roles), from the ledger entries of
    the jobs (setting, arm, seed); `arms` (`cory.studies.arms.study_arms`) gives each arm's algorithm and name."""
    runs: dict = {}
    for setting, arm, seed in jobs:
        path = entry_path(out, setting, arm, seed)
        rows = read_entry(path)["evals"] if path.exists() else []
        for agent in AGENTS[arms[arm]["algorithm"]]:
            if evals_of(rows, agent):
                runs.setdefault(setting, {}).setdefault(curve_label(arms[arm]["name"], agent), {})[seed] = rows
    return runs
