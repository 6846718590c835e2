"""Legacy trl 0.11's `PPOTrainer.step` timed on the same model, batch and lengths as our `update` mode.

Not a project dependency: run it in a throw-away environment holding trl==0.11.4 (see scripts/trl_oracle.py for
the install line), from the repo root:
    /tmp/trl011/bin/python -m benchmarks.trl_step_time --model_path ~/.cache/cory/models/smollm2-135m-instruct
Settings mirror configs/imdb.py's offline preset. Prints one JSON line (median seconds of `step`).
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.synthetic import synthetic_rollout

from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer
from transformers import AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--mini_batch_size", type=int, default=16)
    parser.add_argument("--ppo_epochs", type=int, default=1)
    parser.add_argument("--query_tokens", type=int, default=8)
    parser.add_argument("--response_tokens", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    path = str(Path(args.model_path).expanduser())
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLMWithValueHead.from_pretrained(path)
    ref = AutoModelForCausalLMWithValueHead.from_pretrained(path)
    config = PPOConfig(learning_rate=5e-5, batch_size=args.batch_size, mini_batch_size=args.mini_batch_size,
                       ppo_epochs=args.ppo_epochs, init_kl_coef=0.3, adap_kl_ctrl=True, target=6.0, horizon=10000,
                       gamma=1.0, lam=0.95, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, kl_penalty="full", seed=0)
    trainer = PPOTrainer(config, model, ref, tokenizer)
    queries, responses, scores = synthetic_rollout(args.batch_size, args.query_tokens, args.response_tokens, len(tokenizer))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        trainer.step(queries, responses, list(scores))
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"trl_update_step": statistics.median(times), "threads": torch.get_num_threads(), "times": times}))


if __name__ == "__main__":
    main()
