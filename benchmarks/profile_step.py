"""Profile one step (torch.profiler): which operators a PPO or CORY step spends its time in.

    python -m benchmarks.profile_step --mode cory --mixed_precision bf16     # top operators by self CPU time

Builds exactly what `benchmarks/step_time.py` builds (same flags), runs `--warmup` steps, then profiles one.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.step_time import add_setup_arguments, build, step_setup
from cory.platform.cpu_memory import tune_allocator


def main() -> None:
    tune_allocator()  # before any tensor: huge pages and kept heap, as in a training run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(parser)
    parser.add_argument("--mode", default="cory", choices=["ppo", "cory", "cory_no_transfer", "ppo_observer"])
    parser.add_argument("--mixed_precision", default="bf16")
    parser.add_argument("--rows", type=int, default=30, help="operators to print")
    args = parser.parse_args()

    algorithm, prompts, gen = step_setup(args.mode, args, build(args))
    batches = [prompts[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.warmup + 1)]
    for batch in batches[:-1]:
        algorithm.step(0, batch, gen)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        stats, _ = algorithm.step(0, batches[-1], gen)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print({k: round(v, 3) for k, v in stats.items() if k.startswith("time/") or k.endswith("/time/ppo/optimize_step")})


if __name__ == "__main__":
    main()
