"""Why the PPO trainer's Adam is fused: one optimizer step over the offline model's parameters, torch's per-tensor
default vs `fused=True`, alternating (3 rounds of 3 steps each after a warm-up step), printed as JSON.

    python -m benchmarks.adam_step [--model_name smollm2-135m-instruct]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from cory.platform.cpu_memory import tune_allocator


def seconds_per_step(params: list[torch.Tensor], fused: bool, steps: int = 3) -> float:
    optimizer = torch.optim.Adam(params, lr=1e-5, fused=fused)
    optimizer.step()  # state allocated outside the timing
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    tune_allocator()  # before any tensor: huge pages and kept heap, as in a training run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="smollm2-135m-instruct")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    from cory.models.load import resolve_model

    params = list(AutoModelForCausalLM.from_pretrained(resolve_model(args.model_name)).parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    rounds = {"per_tensor": [], "fused": []}
    for _ in range(3):
        for kind in rounds:
            rounds[kind].append(round(seconds_per_step(params, fused=kind == "fused"), 4))
    print(json.dumps({"model": args.model_name, "parameters": sum(p.numel() for p in params), "threads": torch.get_num_threads(),
                      "seconds_per_adam_step": rounds}))


if __name__ == "__main__":
    main()
