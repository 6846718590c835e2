"""The README's table across CPU kinds: each benchmark JSON's distance to the limit, one row per (kind, mode).

    python -m benchmarks.limit_table                 # every benchmarks/results/*.json that has `distance_to_limit`
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

PHASES = ("generate", "policy_value_forward", "reference_forward", "ppo_update", "step")


def rows(summary: dict) -> list[str]:
    kind = summary["machine"].get("cpu_kind", summary["machine"]["cpu"])
    lora = summary["settings"].get("lora_r", 0)
    out = []
    for key, limit in summary.get("distance_to_limit", {}).items():
        cells = [f"{p['seconds']:.1f} s, {p['gflops']:.0f} GF/s ({p['fraction_of_peak']:.0%})"
                 for p in (limit["phases"][name] for name in PHASES)]
        mode = f"{key}, LoRA r={lora}" if lora else key
        out.append(f"| {kind} | {mode} | {limit['peak_gflops']:.0f} | " + " | ".join(cells) + " |")
    return out


def table(paths: list[Path]) -> str:
    head = ("| CPU kind | mode | GEMM peak GF/s | generate | policy+value forward | reference forward | PPO update | step |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |")
    body = [row for path in paths for row in rows(json.loads(path.read_text()))]
    return "\n".join([head, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.paths or sorted(Path(__file__).resolve().parent.joinpath("results").glob("*.json"))
    print(table([p for p in paths if "distance_to_limit" in json.loads(p.read_text())]))


if __name__ == "__main__":
    main()
