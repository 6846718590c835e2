"""The training loop shared by every script: resume, step, log, checkpoint, save, plot.

A script builds a task, agents and an algorithm (`SinglePPO` or `CORY`, both `step(step, prompts, gen_kwargs)`)
and hands them to `train`; everything that must behave the same for PPO and CORY lives here once.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from cory.agents import save_policy
from cory.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from cory.config import RunConfig, build, check_known_keys, parse_args
from cory.data import LengthSampler, PromptLoader
from cory.eval.heldout import evaluate_agent
from cory.models import load_tokenizer
from cory.plots import plot_curves
from cory.tracking import Tracker, read_metrics, summary_line


EVAL_CONSOLE = {"reward_mean": "reward", "kl_exact": "kl", "combined_eta0.05": "r-0.05kl", "distinct_2": "distinct2"}


@dataclass
class Experiment:
    """A parsed, validated config and what every script needs before it builds models."""

    preset: str
    config: dict
    sections: dict[type, object]
    run_dir: Path
    accelerator: Accelerator
    tokenizer: object

    @property
    def run(self) -> RunConfig:
        return self.sections[RunConfig]


def setup(task: str, algorithm: str, description: str, sections: tuple[type, ...], argv=None) -> Experiment:
    """Parse `configs/<task>.py` + preset + CLI into the dataclasses of `sections` (all errors before any model)."""
    preset, raw = parse_args(task, description, sections, argv, algorithm)
    check_known_keys(raw, sections)
    built = {cls: build(cls, raw) for cls in sections}
    run: RunConfig = built[RunConfig]
    set_seed(run.seed)
    run_dir = Path(run.output_dir) / (run.run_name or f"{task}-{algorithm}-{preset}-seed{run.seed}")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # one accelerator owns every agent
    config = {"preset": preset, **{k: v for cls in sections for k, v in dataclasses.asdict(built[cls]).items()}}
    return Experiment(preset, config, built, run_dir, accelerator, load_tokenizer(run.model_name))


def train(exp: Experiment, algorithm, task, batch_size: int, plots: dict[str, list[str]], console: dict[str, str]) -> dict:
    """Run `exp.run.steps` steps of `algorithm` on `task` (resuming if asked); returns the last step's stats."""
    run, accelerator = exp.run, exp.accelerator
    loader = PromptLoader(task.prompts("train"), batch_size, run.seed)
    response_len = LengthSampler(run.response_min_tokens, run.response_max_tokens, np.random.default_rng(run.seed))
    start = 0
    checkpoint = find_checkpoint(run.resume_from, exp.run_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, algorithm, exp.config)
        loader.load_state_dict(state["loop"]["loader"])
        response_len.rng.bit_generator.state = state["loop"]["response_len"]
        set_rng_state(state["rng"])
        start = state["steps_done"]
        tqdm.write(f"resumed from {checkpoint} after step {start}")
    tracker = Tracker(exp.run_dir, exp.config, run.log_with, resume_step=start)
    eval_set = held_out_prompts(task, run.eval_prompts) if run.eval_every else []
    if eval_set and start == 0:
        evaluate_all(algorithm, task, eval_set, run, tracker, 0)

    stats: dict = {}
    bar = tqdm(range(start, run.steps), initial=start, total=run.steps, desc=exp.run_dir.name,
               disable=not accelerator.is_main_process)
    for step in bar:
        t0 = time.perf_counter()
        stats, samples = algorithm.step(step, loader.next_batch(), run.generation_kwargs(response_len()))
        stats["time/step"] = time.perf_counter() - t0
        log_samples = run.log_samples_every and step % run.log_samples_every == 0
        tracker.log(step, stats, samples[:4] if log_samples else None)
        bar.set_postfix_str(summary_line(stats, console))
        tqdm.write(f"step {step:4d} " + summary_line(stats, console))
        done = step + 1
        if eval_set and (done % run.eval_every == 0 or done == run.steps):
            evaluate_all(algorithm, task, eval_set, run, tracker, done)
        if (run.save_every and done % run.save_every == 0) or done == run.steps:
            loop_state = {"loader": loader.state_dict(), "response_len": response_len.rng.bit_generator.state}
            save_checkpoint(exp.run_dir, done, algorithm, exp.tokenizer, loop_state, exp.config, run.keep_checkpoints)

    for name, agent in zip(algorithm.names, algorithm.agents):
        save_policy(agent.policy, exp.tokenizer, exp.run_dir / "final" / name)
    plot_curves(read_metrics(tracker.metrics_path), plots, exp.run_dir / "curves.png", title=exp.run_dir.name)
    tracker.close()
    print(f"metrics.jsonl, curves.png, checkpoints/ and final/ are in {exp.run_dir}")
    return stats


def held_out_prompts(task, n: int) -> list:
    """A fixed random subset of the task's eval split (the same for every run, seed and algorithm)."""
    prompts = task.prompts("test")
    return [prompts[i] for i in np.random.default_rng(1234).permutation(len(prompts))[:n]]


def evaluate_all(algorithm, task, prompts, run: RunConfig, tracker: Tracker, steps_done: int) -> None:
    """Each agent alone on the held-out prompts (a CORY agent answers x without the other's response)."""
    gen = run.generation_kwargs(run.response_max_tokens)
    for name, agent in zip(algorithm.names, algorithm.agents):
        result = evaluate_agent(agent, task, prompts, gen, seed=run.seed)
        tracker.log_eval(steps_done, name, result)
        tqdm.write(f"eval after {steps_done} steps, {name}: " + summary_line(result["metrics"], EVAL_CONSOLE))
