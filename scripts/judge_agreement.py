"""Whether this machine's build of a study's reward model scores the ledger's held-out responses as each run's own
build did. Each machine builds the offline classifier itself, so entries from two CPU kinds name two fingerprints
(`model_fingerprints.reward_model`); their rewards are comparable only if the builds agree. This re-decodes every
stored response (`response_ids`), scores it here, and prints per entry the largest per-prompt difference (JSON last).

    python scripts/judge_agreement.py imdb-frontier
    python scripts/judge_agreement.py imdb-robustness --setting lr10x --limit 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cory.errors import UsageError, run_script
from cory.models.load import weight_fingerprints
from cory.studies.arms import resolved_config, study_arms
from cory.studies.evaluations import per_prompt
from cory.studies.queue import setting_entries

ROOT = Path(__file__).resolve().parent.parent


def disagreement(evals: list[dict], score, decode) -> dict:
    """Largest |here - stored| over every prompt of the entry's evaluations of each agent alone, and the mean shift;
    `score(texts) -> rewards` scores with this machine's build, `decode(ids) -> text` as the run decoded."""
    gaps = []
    for row in evals:
        if row.get("role", "alone") != "alone":
            continue
        stored = np.asarray(per_prompt(row, "reward_mean"), dtype=float)
        here = np.asarray(score([decode(ids) for ids in row["per_prompt"]["response_ids"]]), dtype=float)
        gaps.append(here - stored)
    gap = np.concatenate(gaps) if gaps else np.zeros(0)
    return {"evaluations": len(gaps), "prompts": int(np.isfinite(gap).sum()),
            "max_abs": float(np.nanmax(np.abs(gap))) if gap.size else 0.0, "mean": float(np.nanmean(gap)) if gap.size else 0.0}


def imdb_scorer(config: dict, seed: int):
    """texts -> rewards on the run's held-out prompts (they depend on its seed), with this machine's classifier."""
    from cory.models.load import load_tokenizer
    from cory.run.evaluation import held_out_prompts
    from cory.tasks.imdb import IMDBConfig, IMDBTask

    tokenizer = load_tokenizer(config["model_name"])
    task_config = IMDBConfig(**{f: config[f] for f in IMDBConfig.__dataclass_fields__ if f in config})
    task = IMDBTask(task_config, tokenizer, seed)
    prompts = held_out_prompts(task, config["eval_prompts"])
    return (lambda texts: task.reward(prompts, texts)), (lambda ids: tokenizer.decode(ids, skip_special_tokens=True))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the study: results/<name>/")
    parser.add_argument("--setting", default="default", help="which of the study's settings (default: default)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many entries (default: every one)")
    parser.add_argument("--results_dir", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: give 0 (every entry) or more")
    study, entries, _ = setting_entries(args.results_dir / args.name, args.setting)
    if study.get("task", "imdb") != "imdb":
        raise UsageError(f"study {args.name}: only IMDB's reward is a model built per machine (task {study['task']!r})")
    chosen = sorted(entries.items())[: args.limit or None]
    config = resolved_config(study, args.setting, next(iter(study_arms(study))))
    rows, scorers = [], {}
    for (_, arm, seed), entry in chosen:
        if seed not in scorers:  # one classifier load and prompt set per seed, not per entry
            scorers[seed] = imdb_scorer(config, seed)
        row = {"run": f"{arm}-seed{seed}", "build": entry.get("model_fingerprints", {}).get("reward_model", "not recorded"),
               **disagreement(entry["evals"], *scorers[seed])}
        print(f"{row['run']}: build {row['build']}, {row['prompts']} prompts: max |here - stored| {row['max_abs']:.2e}, mean {row['mean']:+.2e}")
        rows.append(row)
    summary = {"study": args.name, "setting": args.setting, "build_here": weight_fingerprints(config).get("reward_model"),
               "entries": len(rows), "max_abs": max(r["max_abs"] for r in rows), "runs": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    return summary


if __name__ == "__main__":
    run_script(main)
