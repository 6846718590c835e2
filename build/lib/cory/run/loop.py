"""The training loop shared by every script: resume, step, log, checkpoint, save, plot.

A script builds a task, agents and an algorithm (`SinglePPO` or `CORY`, both `step(step, prompts, gen_kwargs)`)
and hands them to `train`; everything that must behave the same for PPO and CORY lives here once.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from tqdm import tqdm

from cory.algorithms.agents import save_merged_policy, save_policy, wants_merged
from cory.config import RunConfig
from cory.errors import UsageError
from cory.models.load import weight_fingerprints
from cory.platform.memory import peak_memory_mb
from cory.platform.paths import atomic_file, remove_stale_temporaries
from cory.ppo.distributed import mean_over_processes
from cory.run.checkpoint import (
    checkpoints_dir,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cory.run.evaluation import eval_table, evaluate_all, held_out_prompts
from cory.run.plots import plot_curves
from cory.run.rundir import LOADED_MODELS, RunDirLock, claim_fresh, earlier_outputs
from cory.run.setup import Experiment
from cory.run.tracking import Tracker, read_metrics, summary_line
from cory.tasks.data import LengthSampler, PromptLoader
from cory.tasks.task import Algorithm, Task


def train(exp: Experiment, algorithm: Algorithm, task: Task, batch_size: int, plots: dict[str, list[str]], console: dict[str, str]) -> dict:
    """Run `exp.run.steps` steps of `algorithm` on `task` (resuming if asked), holding the run directory's
    lock throughout; returns the last step's stats."""
    new_directory = not exp.run_dir.exists()
    lock = RunDirLock(exp.run_dir, tqdm.write)
    if exp.accelerator.is_main_process:
        lock.acquire()
    try:
        return _train(exp, algorithm, task, batch_size, plots, console)
    except UsageError:
        if lock.held and new_directory and not earlier_outputs(exp.run_dir):  # refused before it wrote anything (its
            shutil.rmtree(exp.run_dir, ignore_errors=True)  # data, say): it leaves no directory and no lock behind
        raise
    finally:
        lock.release()


def open_run_dir(run_dir: Path, run: RunConfig) -> Path | None:
    """The checkpoint to resume from (None: start afresh), after clearing what killed writes left behind;
    a fresh run never starts on top of an earlier one's outputs. Main process only, under the lock."""
    for directory in (run_dir, checkpoints_dir(run_dir), run_dir / "final"):
        for done in remove_stale_temporaries(directory):
            tqdm.write(done)
    checkpoint = find_checkpoint(run.resume_from, run_dir)
    if checkpoint is None and not run.resume_from:
        claim_fresh(run_dir, run.overwrite, tqdm.write)
    elif checkpoint is None and earlier_outputs(run_dir):
        tqdm.write(f"resume_from auto: no checkpoint in {run_dir} verifies; starting afresh")
    return checkpoint


def _train(exp: Experiment, algorithm: Algorithm, task: Task, batch_size: int, plots: dict[str, list[str]], console: dict[str, str]) -> dict:
    run, accelerator = exp.run, exp.accelerator
    rank, main = accelerator.process_index, accelerator.is_main_process
    k = exp.ppo.samples_per_prompt  # batch_size counts responses: batch_size / k prompts, each answered k times
    n_prompts = batch_size // k
    loader = PromptLoader(task.prompts("train"), n_prompts * accelerator.num_processes, run.seed)  # one global batch, one shard per process
    response_len = LengthSampler(run.response_min_tokens, run.response_max_tokens, np.random.default_rng(run.seed))
    start = resume(exp, algorithm, loader, response_len)
    if main:
        record_loaded_models(exp.run_dir, exp.config, start)
    tracker = Tracker(exp.run_dir, exp.config, run.log_with, resume_step=start, enabled=main)
    eval_set = held_out_prompts(task, run.eval_prompts) if run.eval_every else []
    if eval_set and start == 0:
        evaluate_all(algorithm, task, eval_set, run, tracker, 0)

    stats: dict = {}
    bar = tqdm(range(start, run.steps), initial=start, total=run.steps, desc=exp.run_dir.name, disable=not main)
    for step in bar:
        t0 = time.perf_counter()
        # 1. this process's share of the step's prompts, each repeated k times in a row (a critic-free group)
        shard = [p for p in loader.next_batch()[rank * n_prompts : (rank + 1) * n_prompts] for _ in range(k)]
        # 2. the algorithm's step (PPO: generate, score, update; CORY: pioneer, observer, both updates)
        stats, samples = algorithm.step(step, shard, run.generation_kwargs(response_len()))
        stats["time/step"] = time.perf_counter() - t0
        stats["memory/peak_mb"] = peak_memory_mb()  # so far in this process: weights, activations, optimizer states
        stats = mean_over_processes(accelerator, stats)  # the task rewards are per process
        # 3. log
        log_samples = run.log_samples_every and step % run.log_samples_every == 0
        tracker.log(step, stats, samples[:4] if log_samples else None)
        bar.set_postfix_str(summary_line(stats, console))
        if main:
            tqdm.write(f"step {step:4d} " + summary_line(stats, console))
        done = step + 1
        # 4. evaluate on held-out prompts, 5. checkpoint
        if eval_set and (done % run.eval_every == 0 or done == run.steps):
            evaluate_all(algorithm, task, eval_set, run, tracker, done)
        if run.save_every and (done % run.save_every == 0 or done == run.steps):  # final/ is saved regardless
            checkpoint_now(exp, algorithm, done, loader, response_len)

    if accelerator.num_processes > 1:
        check_in_sync(accelerator, algorithm)
    if main:
        save_final(exp, algorithm, tracker, plots)
    tracker.close()
    accelerator.wait_for_everyone()
    return stats


def record_loaded_models(run_dir: Path, config: dict, start: int) -> None:
    """Append this attempt's weight fingerprints to the run's record: taken when the entry was written, a fingerprint
    named a classifier rebuilt during the run, not the one the run had loaded."""
    path = Path(run_dir) / LOADED_MODELS
    attempts = json.loads(path.read_text()) if path.exists() else []
    attempts.append({"start_step": start, "fingerprints": weight_fingerprints(config)})
    atomic_file(path, json.dumps(attempts, indent=1))


def resume(exp: Experiment, algorithm: Algorithm, loader: PromptLoader, response_len: LengthSampler) -> int:
    """Steps already done: 0 for a fresh run; else the checkpoint's, with everything it holds restored (agents,
    optimizers, data position, response lengths, every process's RNGs)."""
    run, accelerator = exp.run, exp.accelerator
    world = accelerator.num_processes
    checkpoint = open_run_dir(exp.run_dir, run) if accelerator.is_main_process else None
    if world > 1:
        checkpoint = broadcast_object_list([checkpoint])[0]
    if checkpoint is None:
        return 0
    state = load_checkpoint(checkpoint, algorithm, exp.config)
    loader.load_state_dict(state["loop"]["loader"])
    response_len.rng.bit_generator.state = state["loop"]["response_len"]
    if len(state["rng"]) != world:
        raise UsageError(f"checkpoint {checkpoint} was written by {len(state['rng'])} process(es); resume with as many, not {world}")
    set_rng_state(state["rng"][accelerator.process_index])
    start = state["steps_done"]
    tqdm.write(f"resumed from {checkpoint} after step {start}")
    if start >= run.steps and accelerator.is_main_process:
        tqdm.write(f"nothing to train: the checkpoint has {start} steps done and --steps is {run.steps} (raise "
                   "--steps to train on); final/ is written from the checkpoint")
    return start


def checkpoint_now(exp: Experiment, algorithm: Algorithm, done: int, loader: PromptLoader, response_len: LengthSampler) -> None:
    """A checkpoint after `done` steps, with what `resume` needs to continue bit-exactly."""
    accelerator = exp.accelerator
    loop_state = {"loader": loader.state_dict(), "response_len": response_len.rng.bit_generator.state}
    rngs = gather_object([rng_state()]) if accelerator.num_processes > 1 else [rng_state()]
    if accelerator.is_main_process:
        save_checkpoint(exp.run_dir, done, algorithm, exp.tokenizer, loop_state, rngs, exp.config, exp.run.keep_checkpoints)
    accelerator.wait_for_everyone()


def save_final(exp: Experiment, algorithm: Algorithm, tracker: Tracker, plots: dict[str, list[str]]) -> None:
    """final/<agent>/ (and a merged copy for small LoRA models), curves.png, the closing evaluation table."""
    run = exp.run
    for name, agent in zip(algorithm.names, algorithm.agents):
        save_policy(agent.policy, exp.tokenizer, exp.run_dir / "final" / name, base_model=run.model_name)
        if wants_merged(run, agent.policy):
            save_merged_policy(exp.run_dir / "final" / name, run.model_name, exp.tokenizer, exp.run_dir / "final" / f"{name}-merged")
    plot_curves(read_metrics(tracker.metrics_path), plots, exp.run_dir / "curves.png", title=exp.run_dir.name)
    if tracker.eval_path.exists():
        print(eval_table(read_metrics(tracker.eval_path)))
    written = ["metrics.jsonl", "curves.png"] + (["eval.jsonl"] if tracker.eval_path.exists() else []) \
        + (["checkpoints/"] if run.save_every else [])
    print(f"{', '.join(written)} and final/ are in {exp.run_dir}")


def check_in_sync(accelerator: Accelerator, algorithm) -> None:
    """Every process must hold the same weights after data-parallel training; stop loudly if not."""
    for name, agent in zip(algorithm.names, algorithm.agents):
        checksum = torch.stack([p.detach().double().square().sum() for p in agent.params]).sum().reshape(1)
        sums = accelerator.gather(checksum.to(accelerator.device)).tolist()
        if max(sums) - min(sums) > 1e-9 * max(abs(s) for s in sums):
            raise RuntimeError(f"{name}'s weights differ across processes (checksums {sums})")
    if accelerator.is_main_process:
        tqdm.write(f"weights of {', '.join(algorithm.names)} identical on all {accelerator.num_processes} processes")
