"""GSM8K tables and the pass@k plot from `python -m cory.eval.gsm8k` outputs: base rates, and before vs after RL.

    python scripts/gsm8k_report.py --base_rates "one-shot=runs/gsm8k/base-oneshot.json" ... \
        --compare "before (SFT)=runs/gsm8k/sft.json" "PPO=..." "CORY agent A=..." --out results/gsm8k

Base rates: per prompt format, pass@1 (greedy) and, where sampled, pass@k over the problems with at most 1, 2
and 3 calculation steps. Comparison: pass@1 greedy, unbiased pass@k for k = 1..n, the fraction of greedy
answers with a readable final number, mean greedy length; `passk.png` plots pass@k against k (the paper's Fig. 5).
`--paired_to LABEL ...`: every other policy minus each of these on the same problems, with 95% bootstrap CIs over problems.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from cory.eval.bootstrap import paired_difference_ci
from cory.eval.gsm8k import pass_at_k
from cory.tasks.gsm8k import GSM8KConfig, before_stop, extract_answer
from cory.platform.paths import atomic_file, read_json

STEP_LIMITS = (1, 2, 3)


def labelled(specs: list[str]) -> dict[str, dict]:
    """'label=path' -> {label: that evaluation's JSON (.json or .json.gz)}; a bad spec or path is a one-line error."""
    results = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"gsm8k_report.py: error: expected LABEL=PATH to an evaluation JSON, got {spec!r}")
        results[label] = read_json(path)
    return results


def rates(problems: list[dict], ks) -> dict:
    """pass@1 greedy, unbiased pass@k, readable-answer fraction over `problems`."""
    n = len(problems)
    row = {"problems": n, "pass@1 greedy": sum(p["greedy_correct"] for p in problems) / n,
           "readable answer": sum(extract_answer(before_stop(p["greedy"], GSM8KConfig.stop_text)) is not None for p in problems) / n}
    for k in ks:
        row[f"pass@{k}"] = sum(pass_at_k(len(p["samples_correct"]), sum(p["samples_correct"]), k) for p in problems) / n
    return row


def sampled_ks(result: dict) -> list[int]:
    samples = result["problems"][0].get("samples_correct")
    return list(range(1, len(samples) + 1)) if samples else []


def base_rate_table(results: dict[str, dict]) -> list[dict]:
    table = []
    for label, result in results.items():
        ks = [k for k in (1, 8) if k in sampled_ks(result)]
        for limit in STEP_LIMITS:
            subset = [p for p in result["problems"] if p["solution_steps"] <= limit]
            if subset:
                table.append({"format": label, "steps <=": limit, **rates(subset, ks)})
    return table


def comparison_table(results: dict[str, dict]) -> list[dict]:
    return [{"policy": label, **rates(r["problems"], sampled_ks(r)),
             "greedy tokens": r["summary"].get("response_tokens_greedy", float("nan"))} for label, r in results.items()]


def per_problem(result: dict, metric: str) -> list[float]:
    """One value per problem: greedy correctness, or the unbiased pass@k estimate."""
    if metric == "pass@1 greedy":
        return [float(p["greedy_correct"]) for p in result["problems"]]
    k = int(metric.removeprefix("pass@"))
    return [pass_at_k(len(p["samples_correct"]), sum(p["samples_correct"]), k) for p in result["problems"]]


def paired_table(results: dict[str, dict], baseline: str, against: list[str] | None = None) -> list[dict]:
    """Each policy (or only those `against`) minus `baseline` on the same problems (refused if the problem lists
    differ): pass@1 greedy, pass@1 and pass@n (n = samples per problem)."""
    for label in [baseline, *(against or [])]:
        if label not in results:
            raise SystemExit(f"gsm8k_report.py: error: --paired_to {label!r} is not one of the --compare labels {list(results)}")
    metrics = ("pass@1 greedy", *dict.fromkeys(f"pass@{k}" for k in (1, max(sampled_ks(results[baseline]), default=1))))
    questions = [p["question"] for p in results[baseline]["problems"]]
    table = []
    for label, result in results.items():
        if label == baseline or (against and label not in against):
            continue
        if [p["question"] for p in result["problems"]] != questions:
            raise SystemExit(f"gsm8k_report.py: error: {label!r} was evaluated on other problems than {baseline!r}")
        row = {"comparison": f"{label} - {baseline}"}
        for metric in metrics:
            ci = paired_difference_ci([per_problem(results[baseline], metric)], [per_problem(result, metric)])
            star = " *" if ci["low"] > 0 or ci["high"] < 0 else ""
            row[metric] = f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]{star}"
        table.append(row)
    return table


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows])


def plot_pass_at_k(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for row in table:
        ks = sorted(int(c[5:]) for c in row if c.startswith("pass@") and c != "pass@1 greedy")
        ax.plot(ks, [row[f"pass@{k}"] for k in ks], marker="o", label=row["policy"])
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k (unbiased)")
    ax.set_title(f"GSM8K held-out, {table[0]['problems']} problems")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base_rates", nargs="*", default=[], metavar="LABEL=PATH", help="untrained model, one per prompt format")
    parser.add_argument("--compare", nargs="*", default=[], metavar="LABEL=PATH", help="policies on the same held-out problems")
    parser.add_argument("--out", default=str(ROOT / "results" / "gsm8k"))
    parser.add_argument("--notes", nargs="*", default=[], help="markdown files whose text opens the summary, in order (settings, commands, findings)")
    parser.add_argument("--paired_to", nargs="*", default=[], metavar="LABEL[=LABEL,...]",
                        help="--compare labels: every other policy's differences to each, with CIs (after '=': only those policies')")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [part for notes in args.notes for part in (Path(notes).read_text().strip(), "")] or ["# GSM8K", ""]
    tables = {}
    if args.base_rates:
        tables["base_rates"] = base_rate_table(labelled(args.base_rates))
        parts += ["## Base rates of the untrained model, by prompt format and problem difficulty", "", markdown(tables["base_rates"]), ""]
    if args.compare:
        compared = labelled(args.compare)
        tables["comparison"] = comparison_table(compared)
        parts += ["## Held-out pass@k", "", markdown(tables["comparison"]), "", "![pass@k](passk.png)", ""]
        plot_pass_at_k(tables["comparison"], out / "passk.png")
        for spec in args.paired_to:
            baseline, _, against = spec.partition("=")
            tables[f"paired to {baseline}"] = paired_table(compared, baseline, against.split(",") if against else None)
            parts += [f"## Differences to {baseline} (same problems; 95% bootstrap CI over problems, * excludes 0)", "",
                      markdown(tables[f"paired to {baseline}"]), ""]
    atomic_file(out / "summary.md", "\n".join(parts))
    atomic_file(out / "summary.json", json.dumps(tables, indent=1))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
