"""Step-time benchmark: where a PPO step and a CORY step spend their time, and what a role swap costs.

    python -m benchmarks.step_time                         # IMDB offline preset (SmolLM2-135M, batch 32), CPU, fp32 and bf16
    python -m benchmarks.step_time --lora_r 16             # the same with LoRA (for the memory ratio)
    python -m benchmarks.step_time --preset paper --model_name gpt2 --reward_model lvwerra/distilbert-imdb   # GPU

Each mode runs in its own process (so peak memory is per mode): `ppo` and `cory` time full steps (generate,
score, policy+value forward, reference forward, PPO update) at fixed query/response lengths;
`cory_no_transfer` is CORY with the observer prompted by x alone (equal work per agent: the loop's own
overhead, since with knowledge transfer the observer's prompt is the template plus x plus y1); `ppo_observer` is
PPO alone on prompts shaped like the observer's (template + x + a random y1), so that CORY's step can be compared
with the two agents' own work (`ppo` + `ppo_observer`); `update` times
`PPOTrainer.step` alone on a fixed synthetic rollout (compare with benchmarks/trl_step_time.py); `swap` times
our role exchange (a relabelling) and the official code's (save both models, reload them, new optimizers);
`peak` measures the machine's matmul GFLOP/s at the model's shapes (benchmarks/gemm_peak.py). Every full-step
mode also counts the FLOPs of each phase (benchmarks/flops.py: real tokens and padding apart), so the JSON's
`distance_to_limit` gives each phase's GFLOP/s and its fraction of that peak.
Every mode runs once per `--precisions` entry (`no` = fp32, `bf16`), each in its own process.
Medians over `--steps` after `--warmup`. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
import torch

from benchmarks import gemm_peak
from benchmarks.flops import FlopCounter
from benchmarks.synthetic import synthetic_rollout
from cory.platform.memory import peak_memory_mb
from cory.platform.cpu_memory import tune_allocator

PHASES = ("generate", "score", "policy_value_forward", "reference_forward", "ppo_update")
MODES = ("ppo", "ppo_observer", "cory", "cory_no_transfer", "update", "swap", "peak")
PRECISION_LABEL = {"no": "fp32", "bf16": "bf16"}


def build(args):
    """The experiment (config, accelerator, tokenizer) exactly as the training scripts set it up (`cory.run.setup.setup`)."""
    from cory.config import RunConfig
    from cory.algorithms.cory import CORYConfig
    from cory.tasks.imdb import IMDBConfig
    from cory.ppo.config import PPOConfig
    from cory.run.setup import setup

    flags = ["--preset", args.preset, "--batch_size", args.batch_size, "--mini_batch_size", args.mini_batch_size or args.batch_size,
             "--ppo_epochs", args.ppo_epochs, "--reuse_rollout_forward", args.reuse_rollout_forward, "--lora_r", args.lora_r, "--query_min_tokens", args.query_tokens,
             "--query_max_tokens", args.query_tokens, "--mixed_precision", args.mixed_precision]
    flags += [f for key in ("model_name", "reward_model", "dataset_path") if getattr(args, key) for f in (f"--{key}", getattr(args, key))]
    return setup("imdb", "cory", "", (RunConfig, PPOConfig, CORYConfig, IMDBConfig), [str(f) for f in flags])


def trainers(exp, n):
    """`n` agents through the scripts' own factory (`runner.build_agents`)."""
    from cory.run.setup import build_agents

    return build_agents(exp, n)


def timed_steps(step_fn, warmup: int, steps: int) -> list[dict]:
    for i in range(warmup):
        step_fn(i)
    return [step_fn(warmup + i) for i in range(steps)]


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def phases(rows: list[dict], prefixes: list[str]) -> dict:
    """Median seconds per phase, summed over agents (`prefixes` = '' for PPO, 'agent_a/', 'agent_b/' for CORY)."""
    total = lambda key: statistics.median(sum(r[p + key] for p in prefixes) for r in rows)  # noqa: E731
    return {"generate": median(rows, "time/generate"), "score": median(rows, "time/score"),
            "policy_value_forward": total("time/ppo/policy_forward"), "reference_forward": total("time/ppo/reference_forward"),
            "ppo_update": total("time/ppo/optimize_step"), "step": median(rows, "time/step")}


def step_setup(mode: str, args, exp):
    """(algorithm, prompts, generation kwargs) for a full-step mode: PPO, CORY, or one of their variants."""
    from cory.algorithms.cory import CORY, CORYConfig
    from cory.tasks.imdb import IMDBTask
    from cory.algorithms.single import SinglePPO

    tokenizer = exp.tokenizer
    task = IMDBTask.from_config(exp.task, tokenizer, exp.run.seed, exp.accelerator.device)
    prompts = [p for p in task.prompts("train") if len(p.input_ids) == args.query_tokens]
    two = mode.startswith("cory")
    agents = trainers(exp, 2 if two else 1)
    cory_config = CORYConfig(knowledge_transfer=mode == "cory")
    algorithm = CORY(cory_config, agents, tokenizer, task) if two else SinglePPO(agents[0], tokenizer, task)
    if mode == "ppo_observer":
        prompts = observer_shaped(prompts, task.wrap_template(task.observer_template), tokenizer, args.response_tokens, agents[0].eos_ids)
    gen = dict(do_sample=True, top_k=0, top_p=1.0, max_new_tokens=args.response_tokens, min_new_tokens=args.response_tokens)
    return algorithm, prompts, gen


def worker(args) -> dict:
    from cory.algorithms.cory import roles_at

    exp = build(args)
    result = {"mode": args.worker, "mixed_precision": exp.run.mixed_precision, "device": str(exp.accelerator.device),
              "threads": torch.get_num_threads()}

    if args.worker == "update":
        [trainer] = trainers(exp, 1)
        queries, responses, scores = synthetic_rollout(args.batch_size, args.query_tokens, args.response_tokens, len(exp.tokenizer))

        def update(_):
            t0 = time.perf_counter()
            trainer.step(queries, responses, scores)
            return {"time/update": time.perf_counter() - t0}

        result["update_step"] = median(timed_steps(update, args.warmup, args.steps), "time/update")

    elif args.worker == "peak":
        from transformers import AutoConfig

        from cory.models.load import resolve_model

        config = AutoConfig.from_pretrained(resolve_model(exp.run.model_name))
        rows = {"decode batch": args.batch_size, "minibatch tokens": args.mini_batch_size * (args.query_tokens + args.response_tokens),
                "2048 tokens": 2048}  # the observer's longer prompts make larger products
        dtype = torch.bfloat16 if exp.run.mixed_precision == "bf16" else torch.float32
        result.update(gemm_peak.measure(config, rows, dtype))

    elif args.worker == "swap":
        agents = trainers(exp, 2)
        t0 = time.perf_counter()
        for step in range(1000):
            pioneer, observer = (agents[i] for i in roles_at(step, 1))
        result["swap_relabel"] = (time.perf_counter() - t0) / 1000
        result["swap_official_reload"] = official_swap_seconds(agents, exp)

    else:
        algorithm, prompts, gen = step_setup(args.worker, args, exp)
        agents, two = algorithm.agents, args.worker.startswith("cory")

        counter = count_flops(algorithm)

        def step(i):
            counter.take()
            t0 = time.perf_counter()
            stats, _ = algorithm.step(i, prompts[i * args.batch_size : (i + 1) * args.batch_size], gen)
            stats["time/step"] = time.perf_counter() - t0
            stats["gflop"] = counter.take()
            return stats

        rows = timed_steps(step, args.warmup, args.steps)
        prefixes = ["agent_a/", "agent_b/"] if two else [""]
        result.update(phases(rows, prefixes))
        result["gflop"] = rows[-1]["gflop"]  # the same shapes every step (fixed lengths): the last step's count
        result["prompt_tokens_per_agent"] = [median(rows, p + "tokens/queries_len_mean") for p in prefixes]
        result["tokens_per_second"] = len(agents) * args.batch_size * args.response_tokens / result["generate"]
    result["peak_memory_mb"] = peak_memory_mb()
    return result


def count_flops(algorithm) -> FlopCounter:
    """A FLOP counter on every model of a step (each once: LoRA agents and their reference share one base), with
    each phase's entry point booking its forwards to it."""
    counter = FlopCounter()
    models, references = {}, {}
    for trainer in algorithm.agents:
        for model in (trainer.policy.lm, trainer.reference.lm, algorithm.task.sentiment.pipe.model):
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            models[id(base)] = base
        references[id(trainer.reference)] = trainer.reference
        trainer.generate = counter.book("generate", trainer.generate)
        trainer.score_rollout = counter.book("policy_value_forward", trainer.score_rollout)
        trainer.update.optimise = counter.book("ppo_update", trainer.update.optimise)
    for reference in references.values():
        reference.logits = counter.book("reference_forward", reference.logits)  # inside the scoring: the inner phase wins
    for model in models.values():
        counter.watch(model)
    algorithm.task.reward = counter.book("score", algorithm.task.reward)
    return counter


def observer_shaped(prompts, template: str, tokenizer, response_tokens: int, eos_ids: set[int]) -> list:
    """Prompts as long as the observer's: the template around x and a random y1 of `response_tokens` tokens."""
    from cory.algorithms.cory import observer_prompts
    from cory.tasks.task import Prompt

    g = torch.Generator().manual_seed(0)
    fake = [torch.randint(1000, 20000, (response_tokens,), generator=g) for _ in prompts]
    ids = observer_prompts(template, prompts, [fake], tokenizer, eos_ids)
    return [Prompt(q, p.text, p.fields) for q, p in zip(ids, prompts)]


def machine() -> dict:
    """What the numbers were measured on, and how busy it was when the benchmark started."""
    from cory.platform.precision import bf16_supported

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    info = {"cpu": model, "cpu_kind": cpu_kind(model, flags), "isa": [f for f in ISA_FLAGS if f in flags], "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "native_bf16": bf16_supported(torch.cuda.is_available()), "load_average_at_start": os.getloadavg()[0]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_kind(model: str, flags: list[str]) -> str:
    """A file name for the CPU kind: its model and the widest matmul instructions it has (the same model name
    covers EPYCs with and without AVX-512 bf16)."""
    isa = next((name for flag, name in (("amx_bf16", "amx"), ("avx512_bf16", "avx512bf16"), ("avx512f", "avx512"),
                                        ("avx2", "avx2")) if flag in flags), "baseline")
    words = "".join(c if c.isalnum() else "-" for c in model.lower()).split("-")
    return "-".join(w for w in words if w and w not in ("r", "tm", "cpu", "processor")) + "-" + isa


def distance_to_limit(results: dict) -> dict:
    """Per mode and precision, per phase: seconds, GFLOP done (real tokens and padding), GFLOP/s, and the
    fraction of the GEMM peak measured at the model's shapes in the same run."""
    out = {}
    for key, result in results.items():
        mode, label = key.rsplit("_", 1)
        peak = results.get(f"peak_{label}", {}).get("peak_gflops")
        if "gflop" not in result or not peak:
            continue
        rows = {}
        for phase in PHASES:
            work = result["gflop"].get(phase, {"real": 0.0, "padding": 0.0})
            rate = (work["real"] + work["padding"]) / result[phase] if result[phase] else 0.0
            rows[phase] = {"seconds": result[phase], "gflop_real": work["real"], "gflop_padding": work["padding"],
                           "gflops": rate, "fraction_of_peak": rate / peak}
        total = sum(r["gflop_real"] + r["gflop_padding"] for r in rows.values())
        rows["step"] = {"seconds": result["step"], "gflop_real": sum(r["gflop_real"] for r in rows.values()),
                        "gflop_padding": sum(r["gflop_padding"] for r in rows.values()),
                        "gflops": total / result["step"], "fraction_of_peak": total / result["step"] / peak}
        out[key] = {"peak_gflops": peak, "phases": rows}
    return out


def official_swap_seconds(agents, exp) -> float:
    """The official code's swap: save both models to disk, load them back, build fresh optimizers."""
    from cory.algorithms.agents import write_policy
    from cory.models.load import load_causal_lm
    from cory.ppo.policy import ValueHeadPolicy
    from cory.ppo.trainer import PPOTrainer

    run, ppo, accelerator, tokenizer = exp.run, exp.ppo, exp.accelerator, exp.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i, agent in enumerate(agents):
            write_policy(agent.policy, tokenizer, Path(tmp) / str(i))
        for i, agent in enumerate(agents):
            if run.lora_r:
                from cory.algorithms.agents import load_policy_weights

                load_policy_weights(agent.policy, Path(tmp) / str(i))
                PPOTrainer(ppo, agent.policy, agent.reference, tokenizer, accelerator)
            else:
                policy = ValueHeadPolicy(load_causal_lm(str(Path(tmp) / str(i)), run.dtype, accelerator.device))
                PPOTrainer(ppo, policy, agent.reference, tokenizer, accelerator)
        return time.perf_counter() - t0


def run_modes(args) -> dict:
    """Each (mode, precision) in a fresh process; the parent collects, compares, prints and writes."""
    results = {}
    from cory.platform.precision import bf16_supported

    if "bf16" in args.precisions and not bf16_supported(torch.cuda.is_available()):
        print("this CPU has no native bf16 (bf16 runs would fall back to fp32): fp32 only", file=sys.stderr)
        args.precisions = [p for p in args.precisions if p != "bf16"] or ["no"]
    for precision in args.precisions:
        label = PRECISION_LABEL[precision]
        for mode in args.modes:
            argv = [sys.executable, "-m", "benchmarks.step_time", "--worker", mode, "--mixed_precision", precision] + sys.argv[1:]
            out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                raise RuntimeError(f"benchmark mode {mode} ({label}) failed:\n{out.stderr[-3000:]}")
            results[f"{mode}_{label}"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mode} {label}: done", file=sys.stderr)
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "modes", "mixed_precision")}
    summary = {"machine": machine(), "settings": settings, "modes": results, "distance_to_limit": distance_to_limit(results),
               **headline(results)}
    return summary


def headline(results: dict) -> dict:
    """Top-level numbers: step seconds per mode and precision, and the ratios the targets are stated in."""
    out = {f"{key.rsplit('_', 1)[0]}_step_s_{key.rsplit('_', 1)[1]}": r["step"] for key, r in results.items() if "step" in r}
    for label in PRECISION_LABEL.values():
        ppo, cory, observer = (results.get(f"{m}_{label}") for m in ("ppo", "cory", "ppo_observer"))
        if ppo and cory:
            out[f"cory_over_ppo_{label}"] = cory["step"] / ppo["step"]
            out[f"cory_peak_memory_over_ppo_{label}"] = cory["peak_memory_mb"] / ppo["peak_memory_mb"]
        if ppo and cory and observer:
            out[f"cory_over_both_agents_work_{label}"] = cory["step"] / (ppo["step"] + observer["step"])
        swap = results.get(f"swap_{label}")
        if swap and cory:
            out[f"swap_over_cory_step_{label}"] = swap["swap_relabel"] / cory["step"]
            out[f"official_swap_over_cory_step_{label}"] = swap["swap_official_reload"] / cory["step"]
    for mode in ("ppo", "cory", "cory_no_transfer", "ppo_observer"):
        if f"{mode}_fp32" in results and f"{mode}_bf16" in results:
            out[f"{mode}_bf16_over_fp32"] = results[f"{mode}_bf16"]["step"] / results[f"{mode}_fp32"]["step"]
    return out


def print_table(summary: dict) -> None:
    modes = summary["modes"]
    keys = ["generate", "score", "policy_value_forward", "reference_forward", "ppo_update", "step", "tokens_per_second", "peak_memory_mb"]
    columns = [m for m in modes if "step" in modes[m]]
    print("| phase (median s) | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{modes[m][key]:.3f}" for m in columns) + " |")
    for mode, result in modes.items():
        for key in ("update_step", "swap_relabel", "swap_official_reload", "peak_gflops"):
            if key in result:
                print(f"| {mode}: {key} | {result[key]:.6f} |")
    for key, value in summary.items():
        if isinstance(value, float):
            print(f"| {key} | {value:.4f} |")
    for key, limit in summary["distance_to_limit"].items():
        print(f"\n{key}: GEMM peak {limit['peak_gflops']:.0f} GFLOP/s at the model's shapes")
        print("| phase | s | GFLOP real | GFLOP padding | GFLOP/s | of peak |\n| --- | --- | --- | --- | --- | --- |")
        for phase, r in limit["phases"].items():
            print(f"| {phase} | {r['seconds']:.2f} | {r['gflop_real']:.0f} | {r['gflop_padding']:.0f} | {r['gflops']:.1f} | {r['fraction_of_peak']:.0%} |")


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that decide what is built and at which shapes (shared with benchmarks/profile_step.py)."""
    parser.add_argument("--preset", default="offline", help="preset of configs/imdb.py")
    parser.add_argument("--model_name", default="")
    parser.add_argument("--reward_model", default="")
    parser.add_argument("--dataset_path", default="")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--mini_batch_size", type=int, default=16)
    parser.add_argument("--ppo_epochs", type=int, default=1)
    parser.add_argument("--query_tokens", type=int, default=8)
    parser.add_argument("--response_tokens", type=int, default=16)
    parser.add_argument("--lora_r", type=int, default=0)
    parser.add_argument("--reuse_rollout_forward", type=int, default=1, choices=[0, 1],
                        help="0: the rollout's policy forward as a separate no-grad pass (to measure what reusing it saves)")
    parser.add_argument("--warmup", type=int, default=1)


def main() -> None:
    tune_allocator()  # before any tensor: huge pages and kept heap, as in a training run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(parser)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--precisions", nargs="+", default=["no", "bf16"], choices=list(PRECISION_LABEL))
    parser.add_argument("--mixed_precision", default="no", help=argparse.SUPPRESS)  # set per worker by the parent
    parser.add_argument("--out", default="", help="JSON to write (default: benchmarks/results/<cpu kind>[-lora<r>].json)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    summary = run_modes(args)
    print_table(summary)
    from cory.platform.paths import atomic_file

    lora = f"-lora{args.lora_r}" if args.lora_r else ""
    out = Path(args.out or f"benchmarks/results/{summary['machine']['cpu_kind']}{lora}.json")
    atomic_file(out, json.dumps(summary, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
