"""The GPU check behind scripts/gpu_check.sh: the paper presets' code paths (CUDA, bf16, 4-bit LoRA, DeepSpeed) in
one run of at most ~8 minutes on one GPU, so that a second try fits in the 15 minutes a GPU is lent for.

No weights travel to the GPU machine: every model is built here from a config with random weights (a
SmolLM2-135M-shaped Llama, a GPT2-Large-shaped GPT-2, a tiny random sentiment classifier), with the GPT-2 tokenizer
of the tests. Timings and code paths, not learning. Each part runs in its own process under its own time limit;
a part whose prerequisite failed is skipped with the reason. `--cpu-dry-run`: each command line once at toy size on
the CPU (the GPT2-Large steps skip: the SmolLM2 command with another model; the test files are only checked to exist).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BATCH = 256  # the paper's batch
DRY_RUN_SLACK = 5
"""a dry run's parts get 5x the device's limits: they prove each command line, not its time, on a 2-core CPU that may
be busy (under load ~6, the SmolLM2 steps and the training loop went past 100 s and 60 s)"""
TEST_FILES = ["tests/test_ppo_math.py", "tests/test_ppo_trainer.py", "tests/test_cory.py", "tests/test_trl_parity.py",
              "tests/test_mixed_precision.py", "tests/test_guards.py"]


@dataclass
class Part:
    name: str
    what: str
    command: list[str]
    limit_s: int
    needs: list[str] = field(default_factory=list)
    skip: str = ""  # a reason not to run it at all (no CUDA, package missing)
    bench: Path | None = None  # the step-time JSON the part writes


def build_assets(work: Path, dry: bool, data: Path | None) -> dict[str, Path]:
    """Random models of the presets' shapes (toy shapes for a dry run), a random classifier, the prompt file."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from tests.tiny import gpt2_tokenizer, tiny_assets

    tokenizer = gpt2_tokenizer()
    tiny_assets(work / "tiny", tokenizer)  # its classifier is the reward model
    torch.manual_seed(0)
    smol = LlamaConfig(vocab_size=len(tokenizer), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    large = GPT2Config(n_embd=1280, n_layer=36, n_head=20, n_positions=1024, vocab_size=len(tokenizer))
    if dry:
        smol.hidden_size, smol.intermediate_size, smol.num_hidden_layers, smol.num_attention_heads, smol.num_key_value_heads = 32, 64, 2, 4, 2
        large.n_embd, large.n_layer, large.n_head = 32, 2, 4
    paths = {"smollm2_shaped": work / "smollm2-shaped", "gpt2_large_shaped": work / "gpt2-large-shaped"}
    for (name, path), model in zip(paths.items(), (LlamaForCausalLM(smol), GPT2LMHeadModel(large))):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    paths["classifier"] = work / "tiny" / "classifier"
    paths["data"] = data if data and data.exists() else imdb_slice(work / "imdb_train_slice.jsonl")
    return paths


def imdb_slice(target: Path) -> Path:
    """2000 IMDB training reviews from ../shared/data (what gpu_wheels.sh carries; here for a dry run)."""
    import pandas as pd

    source = ROOT.parent / "shared" / "data" / "imdb" / "train.parquet"
    if not source.exists():
        raise SystemExit(f"gpu_check: no prompt file: run scripts/gpu_wheels.sh first (it needs {source})")
    frame = pd.read_parquet(source, columns=["text"]).sample(2000, random_state=0)
    target.write_text("".join(json.dumps({"text": t}) + "\n" for t in frame["text"]))
    return target


def parts(assets: dict[str, Path], work: Path, dry: bool, cuda: bool) -> list[Part]:
    py = sys.executable
    batch, mini = (8, 4) if dry else (BATCH, 64)
    common = ["--reward_model", str(assets["classifier"]), "--dataset_path", str(assets["data"]),
              "--eval_dataset_path", str(assets["data"]), "--output_dir", str(work / "runs")]
    bench = lambda model, out, precisions, modes=("ppo", "cory"): [  # noqa: E731
        py, "-m", "benchmarks.step_time", "--model_name", str(assets[model]), "--reward_model", str(assets["classifier"]),
        "--dataset_path", str(assets["data"]), "--batch_size", str(batch), "--mini_batch_size", str(batch if dry else BATCH),
        "--response_tokens", "16", "--steps", "1" if dry else "2", "--warmup", "0" if dry else "1", "--modes", *modes,
        "--precisions", *precisions, "--out", str(out)]
    train = lambda script, name, *extra: [py, script, "--model_name", str(assets["smollm2_shaped"]), *common,  # noqa: E731
                                          "--run_name", name, "--steps", "2", "--batch_size", str(batch),
                                          "--mini_batch_size", str(mini), *extra]
    no_cuda = "" if cuda else "skipped: no CUDA"
    # a dry run proves each command line once: the GPT2-Large part is the SmolLM2 part's command with another model
    # (make bench runs GPT-2 steps), and make test runs the GPU test files on the CPU (here they must only exist)
    same_as_smollm2 = "skipped: dry run (smollm2_steps' command with another model; make bench runs GPT-2 steps)" if dry else ""
    tests = [py, "-m", "pytest", "-x", "-p", "no:cacheprovider", "-o", "addopts=", "-q", *TEST_FILES]
    if dry:
        tests = [py, "-c", "import sys, pathlib; missing = [f for f in sys.argv[1:] if not pathlib.Path(f).is_file()]; "
                 "sys.exit(f'no test file {missing}' if missing else print(len(sys.argv) - 1, 'test files present'))", *TEST_FILES]
    missing = lambda package, why: "" if importlib.util.find_spec(package) else f"skipped: {package} not installed ({why})"  # noqa: E731
    listed = [
        Part("tests", "PPO math, trainer, parity, CORY, bf16 and guard tests on the accelerator (a dry run checks the "
             "files: make test runs them on the CPU)", tests, 150),
        Part("smollm2_steps", f"PPO and CORY steps, SmolLM2-135M shape, batch {batch}, fp32 and bf16",
             bench("smollm2_shaped", work / "smollm2_steps.json", ["no"] if dry else ["no", "bf16"]), 100,
             bench=work / "smollm2_steps.json"),
        Part("training_loop", "imdb_train/cory.py end to end: 2 steps, checkpoints, evaluation, final save (bf16)",
             train("imdb_train/cory.py", "loop", "--save_every", "1", "--eval_every", "2", "--eval_prompts", str(batch // 4),
                   "--mixed_precision", "bf16" if cuda else "no"), 60),
        Part("lora_4bit", "CORY with --load_in_4bit --lora_r 16 (the GSM8K preset's path), 2 steps",
             train("imdb_train/cory.py", "lora4bit", "--load_in_4bit", "true", "--lora_r", "16", "--mixed_precision", "bf16"), 60,
             needs=["training_loop"], skip=no_cuda or missing("bitsandbytes", "its CUDA wheel exceeds the 64 MiB carry limit")),
        Part("deepspeed_zero2", "PPO under DeepSpeed ZeRO-2 (configs/accelerate/zero2.yaml), one GPU, 2 steps",
             [py, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/zero2.yaml", "--num_processes", "1",
              *train("imdb_train/ppo.py", "zero2")[1:]], 60,
             needs=["training_loop"], skip=no_cuda or missing("deepspeed", "no wheel on PyPI, only an sdist")),
        Part("gpt2_large_steps", f"PPO and CORY steps, GPT2-Large shape (the IMDB paper preset), batch {batch}, bf16",
             bench("gpt2_large_shaped", work / "gpt2_large_steps.json", ["bf16"], ("ppo", "cory")), 170,
             needs=["smollm2_steps"], skip=same_as_smollm2, bench=work / "gpt2_large_steps.json"),
    ]
    return [replace(part, limit_s=part.limit_s * DRY_RUN_SLACK) for part in listed] if dry else listed


def run_part(part: Part, done: dict[str, dict], env: dict) -> dict:
    failed = [n for n in part.needs if done.get(n, {}).get("status") != "ok"]
    if part.skip or failed:
        return {"status": "skipped", "reason": part.skip or f"skipped: {', '.join(failed)} did not pass"}
    t0 = time.perf_counter()
    try:
        out = subprocess.run(part.command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=part.limit_s)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-1500:]
        return {"status": "failed", "reason": f"over its {part.limit_s} s limit", "seconds": part.limit_s,
                "tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail}
    result = {"status": "ok" if out.returncode == 0 else "failed", "seconds": round(time.perf_counter() - t0, 1)}
    if out.returncode:
        result["tail"] = (out.stdout + out.stderr)[-1500:]
    elif part.name == "tests":
        result["summary"] = next((line.strip("= ") for line in reversed(out.stdout.splitlines()) if " passed" in line or " present" in line), "")
    if part.bench and part.bench.exists() and out.returncode == 0:
        result["metrics"] = bench_metrics(json.loads(part.bench.read_text()))
    return result


def bench_metrics(summary: dict) -> dict:
    """s/step, samples/s (CORY: both agents' samples), response tokens/s and peak memory per mode and precision."""
    settings, metrics = summary["settings"], {}
    for key, mode in summary["modes"].items():
        samples = settings["batch_size"] * (2 if key.startswith("cory") else 1)
        metrics[key] = {"s_per_step": round(mode["step"], 3), "samples_per_s": round(samples / mode["step"], 1),
                        "response_tokens_per_s": round(samples * settings["response_tokens"] / mode["step"], 1),
                        "peak_memory_mb": round(mode["peak_memory_mb"]), "phases_s": mode.get("phases")}
    return metrics


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({'CPU dry run' if report['dry_run'] else report['device']})", "",
             "| part | what | status | seconds | detail |", "| --- | --- | --- | --- | --- |"]
    for name, r in report["parts"].items():
        detail = r.get("reason") or r.get("summary") or ""
        lines.append(f"| {name} | {r['what']} | {r['status']} | {r.get('seconds', '')} | {detail} |")
    for name, r in report["parts"].items():
        if r.get("metrics"):
            lines += ["", f"## {name}", "", "| mode | s/step | samples/s | response tokens/s | peak memory (MB) |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {k} | {m['s_per_step']} | {m['samples_per_s']} | {m['response_tokens_per_s']} | {m['peak_memory_mb']} |"
                      for k, m in r["metrics"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check_results")
    parser.add_argument("--cpu-dry-run", action="store_true", help="every part at toy size on the CPU")
    parser.add_argument("--data", default=".gpu_carry/imdb_train_slice.jsonl")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_dry_run
    if not cuda and not args.cpu_dry_run:
        raise SystemExit("gpu_check: no CUDA device here; for the toy-size CPU run pass --cpu-dry-run")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CORY_TEST_DEVICE": "cuda" if cuda else "cpu", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        assets = build_assets(work, args.cpu_dry_run, ROOT / args.data)
        report = {"dry_run": args.cpu_dry_run, "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
                  "torch": torch.__version__, "assets_seconds": round(time.perf_counter() - t0, 1), "parts": {}}
        for part in parts(assets, work, args.cpu_dry_run, cuda):
            result = run_part(part, report["parts"], env)
            report["parts"][part.name] = {"what": part.what, **result}
            print(f"{part.name}: {result['status']} {result.get('seconds', '')} {result.get('reason', '')}", flush=True)
            (out / "gpu_check.json").write_text(json.dumps(report, indent=2))  # partial results survive a kill
        (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    sys.exit(1 if any(r["status"] == "failed" for r in report["parts"].values()) else 0)


if __name__ == "__main__":
    main()
