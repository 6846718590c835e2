"""What GRPO's advantages are in groups whose task scores tie, on GSM8K, for one version of the training code.

The critic-free fix 1 (results/critic-free) standardises the task score only and adds the KL unscaled. Before it,
GRPO standardised `score - beta * sum KL`: a group of k answers that are all right or all wrong (most GSM8K groups
early on) was divided by beta times the std of its KL sums, beta cancelled, and the KL alone set full-size
advantages. This script runs `gsm8k_train/ppo.py` of a given checkout (a git worktree pinned at the commit before
or after the fix) and records per step, from that code's own `PPOTrainer.step` and `group_advantages`: the share of
tied groups (all 0 / all 1), the mean |advantage| in tied and in untied groups, the mean response length, the task
reward and the sampled KL. The same recorder serves both versions: it reads only the step's arguments and the
advantages `group_advantages` returns.

    python results/critic-free/grpo_tied_groups.py run ../cory-before runs/fix1/before.jsonl -- --advantage_estimator grpo --samples_per_prompt 4 ...
    python results/critic-free/grpo_tied_groups.py report "before=runs/fix1/before.jsonl" "after=runs/fix1/after.jsonl" --out results/critic-free/gsm8k-fix1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def tied_group_stats(scores: list[float], advantages: list[float], group_size: int) -> dict:
    """Per-step numbers from one batch of consecutive groups: task scores and the advantages the code used."""
    groups = [(scores[i : i + group_size], advantages[i : i + group_size]) for i in range(0, len(scores), group_size)]
    tied = [g for g in groups if max(g[0]) == min(g[0])]
    untied = [g for g in groups if max(g[0]) != min(g[0])]
    mean_abs = lambda gs: sum(abs(a) for _, adv in gs for a in adv) / sum(len(adv) for _, adv in gs) if gs else None  # noqa: E731
    return {"groups": len(groups), "tied_share": len(tied) / len(groups),
            "tied_all_right_share": sum(min(s) > 0 for s, _ in tied) / len(groups),
            "tied_adv_abs_mean": mean_abs(tied), "untied_adv_abs_mean": mean_abs(untied)}


def run(tree: Path, out: Path, argv: list[str]) -> None:
    """Train with `tree`'s code (the caller puts it first: PYTHONPATH=TREE), appending one JSON line per step to `out`."""
    import importlib

    try:  # the trainer and its math: cory/ppo/ since 2026-12-07, flat modules before
        ppo, ppo_math = importlib.import_module("cory.ppo.trainer"), importlib.import_module("cory.ppo.math")
    except ModuleNotFoundError:
        ppo, ppo_math = importlib.import_module("cory.ppo"), importlib.import_module("cory.ppo_math")
    if not Path(ppo.__file__).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"imported {ppo.__file__}, not {tree}'s code: run with PYTHONPATH={tree}")
    callers = [m for name, m in list(sys.modules.items())  # the modules that call it (the trainer, or later the estimators)
               if name.startswith("cory.") and m is not ppo_math and getattr(m, "group_advantages", None) is ppo_math.group_advantages]
    if out.exists():
        raise SystemExit(f"{out} exists: these runs are short and not resumed; delete it to run again")
    seen: dict = {}
    steps = iter(range(10**9))
    original_advantages, original_step = ppo_math.group_advantages, ppo.PPOTrainer.step

    def recording_advantages(*args, **kwargs):
        seen["advantages"] = original_advantages(*args, **kwargs)
        return seen["advantages"]

    def recording_step(self, queries, responses, scores, *args, **kwargs):
        seen.clear()
        stats = original_step(self, queries, responses, scores, *args, **kwargs)
        task_scores = [float(s) for s in scores]
        row = {"step": next(steps),
               **tied_group_stats(task_scores, seen["advantages"].flatten().tolist(), self.config.samples_per_prompt),
               "reward_mean": sum(task_scores) / len(task_scores), "response_len_mean": sum(map(len, responses)) / len(responses),
               "kl_sampled": stats.get("objective/kl"), "kl_coef": stats.get("objective/kl_coef")}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return stats

    assert callers, "no module of this code version calls ppo_math.group_advantages"
    for module in callers:
        module.group_advantages = recording_advantages
    ppo.PPOTrainer.step = recording_step
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.argv = [str(tree / "gsm8k_train" / "ppo.py"), *argv]
    import runpy

    runpy.run_path(sys.argv[0], run_name="__main__")


def report(runs: dict[str, Path], out: Path, title: str = "GRPO's advantages in groups whose task scores tie") -> None:
    """A markdown table (per run: means over steps, and step by step) and a plot of tied share and |A| per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {label: [json.loads(line) for line in path.read_text().splitlines()] for label, path in runs.items()}
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    keys = ("tied_share", "tied_all_right_share", "tied_adv_abs_mean", "untied_adv_abs_mean", "reward_mean", "response_len_mean", "kl_sampled")
    lines = [f"# {title}", "", "Per step, from each code version's own `PPOTrainer.step` and `group_advantages` "
             "(results/critic-free/grpo_tied_groups.py): the share of groups whose k task scores tie (all right: tied_all_right_share), "
             "the mean |advantage| in tied and in untied groups, the task reward, response length (tokens) and sampled KL; "
             "the first table averages over the steps.", "",
             "| code | steps | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 2) + "|"]
    for label, steps in rows.items():
        cells = [mean([s[k] for s in steps if s[k] is not None]) for k in keys]
        lines.append(f"| {label} | {len(steps)} | " + " | ".join(f"{c:.3g}" for c in cells) + " |")
    lines += ["", "Step by step (tied share; mean |A| in tied groups; sampled KL):", ""]
    for label, steps in rows.items():
        lines.append(f"- {label}: " + ", ".join(
            f"{s['step']}: {s['tied_share']:.2f}/{s['tied_adv_abs_mean'] if s['tied_adv_abs_mean'] is not None else float('nan'):.2g}/"
            f"{s['kl_sampled']:.2g}" for s in steps))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for label, steps in rows.items():
        x = [s["step"] for s in steps]
        axes[0].plot(x, [s["tied_share"] for s in steps], marker="o", label=label)
        axes[1].plot(x, [s["tied_adv_abs_mean"] for s in steps], marker="o", label=label)
        axes[2].plot(x, [s["kl_sampled"] for s in steps], marker="o", label=label)
    for ax, title in zip(axes, ("share of tied groups", "mean |advantage| in tied groups", "sampled KL")):
        ax.set_title(title), ax.set_xlabel("step")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=90)
    print(out.with_suffix(".md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("tree", type=Path, help="a checkout (git worktree) of the code version to run")
    go.add_argument("out", type=Path, help="JSON lines, one per step (appended)")
    go.add_argument("flags", nargs=argparse.REMAINDER, help="after --: gsm8k_train/ppo.py's flags")
    show = sub.add_parser("report")
    show.add_argument("runs", nargs="+", help="LABEL=PATH.jsonl")
    show.add_argument("--out", type=Path, required=True, help="PATH without suffix: writes PATH.md and PATH.png")
    show.add_argument("--title", default="GRPO's advantages in groups whose task scores tie")
    args = parser.parse_args()
    if args.command == "run":
        run(args.tree, args.out, [f for f in args.flags if f != "--"])
    else:
        report({label: Path(path) for label, path in (r.split("=", 1) for r in args.runs)}, args.out, args.title)


if __name__ == "__main__":
    main()
