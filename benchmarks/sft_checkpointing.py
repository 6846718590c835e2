"""Why the GSM8K warm start checkpoints activations: a few SFT batches of the offline build with and without it, each
in its own process (peak RSS is per process), alternating, printed as JSON with the per-batch losses' agreement.

    python -m benchmarks.sft_checkpointing [--batches 6] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from cory.platform.cpu_memory import tune_allocator



def one_build(checkpointing: bool, batches: int) -> dict:
    """`train_sft` on the first `batches` batches of the offline build's examples (the time per batch includes the
    LoRA wrap and merge, the same in both modes); checkpointing off by making the model's switch a no-op (the library
    has no off switch: the build always checkpoints)."""

    from cory.config import build, load_task_config
    from cory.tasks.gsm8k import GSM8KConfig
    from cory.models.load import SMOLLM2_ALIAS
    from cory.assets.sft import SFTConfig, sft_inputs, train_sft

    config = replace(SFTConfig(), n_examples=batches * SFTConfig().batch_size)
    model, tokenizer, examples = sft_inputs(SMOLLM2_ALIAS, build(GSM8KConfig, load_task_config("gsm8k", "offline")), config)
    if not checkpointing:
        model.activation_checkpointing_enable = lambda *a, **k: None
    start = time.perf_counter()
    _, losses = train_sft(model, tokenizer, examples, config)
    seconds = time.perf_counter() - start
    return {"checkpointing": checkpointing, "seconds_per_batch": round(seconds / batches, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), "losses": losses}


def main() -> None:
    tune_allocator()  # before any tensor: huge pages and kept heap, as in a training run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_build(args.child == "on", args.batches)))
        return
    runs = []
    for _ in range(args.rounds):
        for mode in ("on", "off"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--batches", str(args.batches)],
                                 check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    by_mode = {m: [r for r in runs if r["checkpointing"] == (m == "on")] for m in ("on", "off")}
    print(json.dumps({
        "batches": args.batches, "rounds": args.rounds,
        "seconds_per_batch": {m: [r["seconds_per_batch"] for r in rs] for m, rs in by_mode.items()},
        "peak_rss_gb": {m: [r["peak_rss_gb"] for r in rs] for m, rs in by_mode.items()},
        "max_abs_loss_difference": max(abs(a - b) for a, b in zip(by_mode["on"][0]["losses"], by_mode["off"][0]["losses"])),
    }, indent=1))


if __name__ == "__main__":
    main()
