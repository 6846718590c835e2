"""PPO vs CORY as a study (IMDB by default; --task gsm8k or text too): fixed settings, one ledger entry per
finished run, a report from the ledger.

    python scripts/compare.py                       # offline preset: SmolLM2-135M, 5 seeds x 60 steps (see PRESETS)
    python scripts/compare.py --name imdb-claims    # a study whose results/imdb-claims/study.json is committed: runs what is missing
    python scripts/compare.py --sweep kl0:init_kl_coef=0,adap_kl_ctrl=false   # a named extra setting beside the default
    python scripts/compare.py --name imdb-claims --report_only                 # tables and plots from the ledger alone
    python scripts/compare.py --seeds 0 1 --steps 10 --name quick --batch_size 16   # unknown flags go to both scripts
    python scripts/compare.py --name grpo --names ppo=GRPO cory=CORY-GRPO --algorithm_args ppo:batch_size=64 \
        --advantage_estimator grpo --samples_per_prompt 4      # critic-free, equal responses per step (CORY makes 2 a prompt)

The first call on a new name writes results/<name>/study.json from its flags (commit it before the runs: it
pre-registers the settings, the budget claim and the endpoints: each CORY agent's reward at matched KL against PPO at
`--kl_levels`, decided with seeds as the unit, and the rule `--answer` that turns them into the summary's plain
answer; `--prepare_only` stops there); a later call with other settings is refused. The runs,
their ledger entries and resuming after a kill: `cory.studies.queue`. Runs of a study use one training-code commit
(run from a `git worktree` pinned at it, with --results_dir pointing at the main checkout's results/;
`scripts/run_study.sh`). Writes results/<name>/: summary.md (+ .json), curves.png, pareto.png, sweep.png; runs/
stays out of git.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from tqdm import tqdm

from cory.errors import UsageError, run_script
from cory.platform.paths import read_json
from cory.studies.answer import RULES
from cory.studies.arms import arm_names, budget_table, response_decoder, study_arms
from cory.studies.budget import MATCHES, QUANTITIES, require
from cory.studies.checks import lock_study, verified
from cory.studies.ledger import entry_path, git_commit, native_bf16, read_study, write_study
from cory.studies.overview import BASELINES as CLAIMS_SHOWN, draw_claims
from cory.studies.queue import DEFAULT_SETTING, TASK_SCRIPTS, StudyQueue, clear_unresumable, study_jobs
from cory.studies.report import write_report

ROOT = Path(__file__).resolve().parent.parent

PRESETS = {
    # the task preset each training script runs, and the comparison's own settings (fixed before the runs)
    # (5 seeds: the seed-level rule decides nothing on fewer, `cory.studies.intervals.MIN_DECISION_SEEDS`)
    "offline": dict(task_preset="offline", steps=60, eval_every=10, eval_prompts=128, seeds=[0, 1, 2, 3, 4], sweep_seeds=[0, 1, 2, 3, 4]),
    "paper": dict(task_preset="paper", steps=100, eval_every=10, eval_prompts=256, seeds=[0, 1, 2, 3, 4], sweep_seeds=[0, 1, 2, 3, 4]),
}
KL_LEVELS = [3.0, 5.0, 8.0, 12.0]
"""a new study's default KL levels (nats, summed over the response): those of imdb-frontier"""
ALGORITHMS = ("ppo", "cory")
ADDENDUM = "addendum.json"
"""a study's dated, post-hoc re-reading of its ledger (`cory.studies.addendum`), shown in its summary"""


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


def parse_frontier(kl_levels: list[float], reward_levels: list[float], answer: str) -> dict:
    """The endpoints a new study decides on (`cory.studies.addendum.build_section`): each CORY agent's reward at
    matched KL, and KL at matched reward, against the baseline arm; each arm's degeneration by step; and the rule
    (`cory.studies.answer.RULES`) that turns them into the summary's plain answer."""
    for flag, levels in (("--kl_levels", kl_levels), ("--reward_levels", reward_levels)):
        if not all(math.isfinite(v) for v in levels) or levels != sorted(set(levels)):
            raise SystemExit(f"{flag} {levels}: must be distinct finite numbers in increasing order")
    if not kl_levels or kl_levels[0] <= 0:
        raise SystemExit(f"--kl_levels {kl_levels}: at least one, each above 0 (every run starts at KL 0)")
    return {"kl_levels": kl_levels, "reward_levels": reward_levels, "baselines": ["ppo"], "degeneration": True, "answer": answer}


def new_study(settings: dict, sweep: list[str], extra: list[str], precision: str, registered: dict | None = None) -> dict:
    """What a study fixes before its runs: every run's settings, seeds and the training code's commit, and what its
    flags register beside them (`names`, `algorithm_args`, the `budget` claims, the `frontier` endpoints)."""
    study = {key: settings[key] for key in ("task", "task_preset", "steps", "eval_every", "eval_prompts")}
    study["settings"] = {DEFAULT_SETTING: {"flags": [], "seeds": settings["seeds"]}}
    for spec in sweep:
        name, flags = parse_setting(spec)
        study["settings"][name] = {"flags": flags, "seeds": settings["sweep_seeds"]}
    optional = {key: value for key, value in (registered or {}).items() if value}
    if "frontier" in optional:  # decided on the frontier with seeds as the unit, never at the final points
        optional["decision_rule"] = "seed-level"
    return {**study, "algorithms": list(ALGORITHMS), "mixed_precision": precision, "extra_args": extra,
            **optional, "training_commits": [git_commit(ROOT)]}


def check_against_study(study: dict, requested: dict) -> None:
    """Flags given now that differ from the committed study are refused (a study's settings never change)."""
    differ = [f"{k}={requested[k]!r} (study.json: {study.get(k)!r})" for k in requested if study.get(k) != requested[k]]
    if differ:
        raise UsageError(f"these settings differ from the study's: {'; '.join(differ)}; a study's runs share one set of "
                         "settings (start another --name for others)")


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
    parser.add_argument("--kl_levels", type=float, nargs="+", metavar="KL",
                        help=f"a new study's primary endpoints: each CORY agent's reward - PPO's at these KLs (default {KL_LEVELS})")
    parser.add_argument("--reward_levels", type=float, nargs="*", metavar="R",
                        help="a new study's secondary endpoints: KL at these rewards (default none: reward scales differ by task)")
    parser.add_argument("--answer", choices=sorted(RULES), help=f"the rule of a new study's plain answer (default {next(iter(RULES))})")
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
    frontier = parse_frontier(args.kl_levels or KL_LEVELS, args.reward_levels or [], args.answer or next(iter(RULES)))
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
        registered = {"names": names, "algorithm_args": algorithm_args, "budget": [parse_budget(args.budget)], "frontier": frontier}
        study = new_study(settings, args.sweep, extra, args.mixed_precision, registered)
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
        if args.kl_levels or args.reward_levels or args.answer:
            given["frontier"] = frontier
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
        StudyQueue(out, study, ROOT, args.commit, args.keep_run_checkpoints).run(jobs, args.jobs, args.allow_uncommitted)
    finally:
        lock.release()
    report(out, study, name, jobs)


def report(out: Path, study: dict, name: str, jobs: list) -> None:
    """summary.md and plots from the verified entries; a refused entry is named and its run counted missing."""
    entries, refused = verified(out, study, jobs)
    for path, why in refused.items():
        print(f"{path}: refused: {why}")
    walls = {f"{s}/{a}-seed{seed}": e["wall_seconds"] for (s, a, seed), e in entries.items()}
    # the command that rebuilds this report from the committed ledger alone (not this run's, which may name this
    # machine's paths)
    meta = {**study, "name": name, "seeds": {k: v["seeds"] for k, v in study["settings"].items()},
            "command": f"python scripts/compare.py --name {name} --report_only",
            "machine": machines(entries), "git_commit": ", ".join(c[:10] for c in study["training_commits"]),
            "missing": [f"{s}/{a}-seed{seed}" + (" (refused)" if str(entry_path(out, s, a, seed)) in refused else "")
                        for s, a, seed in jobs if (s, a, seed) not in entries],
            "refused": {str(Path(p).relative_to(out)): why for p, why in refused.items()}}
    addendum = read_json(out / ADDENDUM) if (out / ADDENDUM).exists() else None
    rereads = addendum or study.get("frontier")
    write_report(out, meta, list(entries), walls, addendum, budget_table(study) if rereads else None,
                 response_decoder(study) if rereads else None)
    print(f"tables and plots in {out}")
    if name in CLAIMS_SHOWN:
        print(f"claim 1 across the studies: {draw_claims(out.parent)}")


if __name__ == "__main__":
    run_script(main, interrupted="interrupted: no run starts after Ctrl-C or kill; finished runs are in the ledger, the "
                                 "others continue from their checkpoints when the study is run again")
