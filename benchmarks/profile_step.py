"""Profile one step (torch.profiler): which operators a PPO or CORY step spends its time in.

    python benchmarks/profile_step.py --mode cory --mixed_precision bf16     # top operators by self CPU time

Builds exactly what `benchmarks/step_time.py` builds (same flags), runs `--warmup` steps, then profiles one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.step_time import build, observer_shaped, trainers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="cory", choices=["ppo", "cory", "cory_no_transfer", "ppo_observer"])
    parser.add_argument("--mixed_precision", default="bf16")
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--model_name", default="")
    parser.add_argument("--reward_model", default="")
    parser.add_argument("--dataset_path", default="")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--mini_batch_size", type=int, default=16)
    parser.add_argument("--ppo_epochs", type=int, default=1)
    parser.add_argument("--query_tokens", type=int, default=8)
    parser.add_argument("--response_tokens", type=int, default=16)
    parser.add_argument("--lora_r", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rows", type=int, default=30, help="operators to print")
    args = parser.parse_args()

    from cory.cory import CORY, CORYConfig
    from cory.single import SinglePPO

    run, ppo, imdb, accelerator, tokenizer, IMDBTask = build(args)
    task = IMDBTask(imdb, tokenizer, run.seed, accelerator.device)
    prompts = [p for p in task.prompts("train") if len(p.input_ids) == args.query_tokens]
    two = args.mode.startswith("cory")
    agents = trainers(run, ppo, accelerator, tokenizer, 2 if two else 1)
    cory_config = CORYConfig(knowledge_transfer=args.mode == "cory")
    algorithm = CORY(cory_config, agents, tokenizer, task) if two else SinglePPO(agents[0], tokenizer, task)
    if args.mode == "ppo_observer":
        prompts = observer_shaped(prompts, cory_config, tokenizer, args.response_tokens, agents[0].eos_ids)
    gen = dict(do_sample=True, top_k=0, top_p=1.0, max_new_tokens=args.response_tokens, min_new_tokens=args.response_tokens)
    batches = [prompts[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.warmup + 1)]
    for batch in batches[:-1]:
        algorithm.step(0, batch, gen)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        stats, _ = algorithm.step(0, batches[-1], gen)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print({k: round(v, 3) for k, v in stats.items() if k.startswith("time/") or k.endswith("/time/ppo/optimize_step")})


if __name__ == "__main__":
    main()
