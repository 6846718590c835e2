"""The training loop shared by every script: resume, step, log, checkpoint, save, plot.

A script builds a task, agents and an algorithm (`SinglePPO` or `CORY`, both `step(step, prompts, gen_kwargs)`)
and hands them to `train`; everything that must behave the same for PPO and CORY lives here once.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from tqdm import tqdm

from cory.algorithms.agents import build_policies, save_merged_policy, save_policy, wants_merged
from cory.run.checkpoint import checkpoints_dir, complete_checkpoints, find_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from cory.config import RunConfig, build, check_known_keys, glue_negative_numbers, parse_args
from cory.algorithms.cory import CORYConfig, check_with_ppo
from cory.platform.cpu_memory import tune_allocator
from cory.tasks.data import LengthSampler, PromptLoader, check_local_file
from cory.ppo.distributed import mean_over_processes
from cory.errors import MissingInput, UsageError
from cory.eval.bootstrap import paired_difference_ci
from cory.eval.heldout import evaluate_agent, twins
from cory.platform.memory import peak_memory_mb
from cory.models.load import load_tokenizer, weight_fingerprints
from cory.platform.paths import atomic_file, remove_stale_temporaries
from cory.run.plots import plot_curves
from cory.platform.precision import resolve_mixed_precision
from cory.ppo.trainer import PPOTrainer
from cory.ppo.advantages import estimator_for
from cory.ppo.config import PPOConfig
from cory.run.rundir import LOADED_MODELS, RunDirLock, claim_fresh, earlier_outputs
from cory.tasks.templates import check_observer_template
from cory.tasks.task import Algorithm, Task
from cory.run.tracking import Tracker, read_metrics, summary_line


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

    @property
    def ppo(self) -> PPOConfig:
        return self.sections[PPOConfig]

    @property
    def cory(self) -> CORYConfig:
        return self.sections[CORYConfig]

    @property
    def task(self):
        """The task's section (IMDBConfig, GSM8KConfig, TextTaskConfig): the last of the sections `setup` got."""
        return list(self.sections.values())[-1]


def setup(task: str, algorithm: str, description: str, sections: tuple[type, ...], argv=None,
          script_options: tuple[tuple[str, str], ...] = (), config: dict | None = None) -> Experiment:
    """Parse `configs/<task>.py` + preset + CLI (+ `config`, a Python sweep's dict, last) into the dataclasses of
    `sections`: RunConfig, PPOConfig, CORYConfig (for CORY), then the task's section, last (all errors before any model)."""
    tune_allocator()  # before the first model tensor (cory/platform/cpu_memory.py: a 2x faster step on these CPUs)
    argv, config = glue_negative_numbers(argv), dict(config or {})
    refuse_cory_keys([*argv, *(f"--{key}" for key in config)], sections)
    preset, raw = parse_args(task, description, sections, argv, algorithm, script_options)
    preset, raw = resumed_settings(task, algorithm, preset, {**raw, **config}, [*argv, *(f"--{key}" for key in config)], sections)
    check_known_keys(raw, sections)
    built = {cls: build(cls, raw) for cls in sections}
    check_across_sections(built)
    cuda = torch.cuda.is_available()
    run = built[RunConfig] = dataclasses.replace(
        built[RunConfig], mixed_precision=resolve_mixed_precision(built[RunConfig].mixed_precision, cuda, tqdm.write))
    run_dir = Path(run.output_dir) / (run.run_name or f"{task}-{algorithm}-{preset}-seed{run.seed}")
    accelerator = Accelerator(cpu=not cuda, mixed_precision=run.mixed_precision)  # one accelerator owns every agent
    set_seed(run.seed, device_specific=True)  # each process samples its own noise (process 0: plain seed)
    resolved = {"preset": preset, "algorithm": algorithm, **{k: v for cls in sections for k, v in dataclasses.asdict(built[cls]).items()}}
    return Experiment(preset, resolved, built, run_dir, accelerator, load_tokenizer(run.model_name))


WHERE_A_RUN_LIVES = ("output_dir", "run_name", "resume_from", "overwrite")


def resumed_settings(task: str, algorithm: str, preset: str, raw: dict, argv: list[str] | None,
                     sections: tuple[type, ...]) -> tuple[str, dict]:
    """Resuming, every setting not given on the command line is the checkpoint's (its config.json), the preset
    included; a flag that changes one is refused later, naming it (`check_same_config`). Before, every original flag
    had to be repeated, else the run was refused for a config that 'differs'."""
    run = build(RunConfig, raw)
    if not run.resume_from:
        return preset, raw
    run_dir = Path(run.output_dir) / (run.run_name or f"{task}-{algorithm}-{preset}-seed{run.seed}")
    found = complete_checkpoints(run_dir) if run.resume_from == "auto" else [Path(run.resume_from).expanduser()]
    if not found or not (found[-1] / "config.json").is_file():
        return preset, raw  # nothing to resume (auto) or a bad path: the usual checks say so
    saved = json.loads((found[-1] / "config.json").read_text())
    given = {arg.partition("=")[0][2:].replace("-", "_") for arg in (sys.argv[1:] if argv is None else argv) if arg.startswith("--")}
    known = {f.name for cls in sections for f in dataclasses.fields(cls)}
    raw = {**raw, **{k: v for k, v in saved.items() if k in known and k not in given and k not in WHERE_A_RUN_LIVES}}
    return (preset if "preset" in given else saved.get("preset", preset)), raw


def refuse_cory_keys(argv: list[str] | None, sections: tuple[type, ...]) -> None:
    """A CORY setting given to a PPO script: say that is why it is unknown (not just 'unknown option')."""
    if CORYConfig in sections:
        return
    cory_only = {f.name for f in dataclasses.fields(CORYConfig)} - {f.name for cls in sections for f in dataclasses.fields(cls)}
    for arg in sys.argv[1:] if argv is None else argv:
        key = arg.partition("=")[0][2:].replace("-", "_") if arg.startswith("--") else ""
        if key in cory_only:
            raise UsageError(f"--{key} is a CORY setting (CORYConfig); this script trains PPO alone: use its cory.py")


def check_across_sections(built: dict[type, object]) -> None:
    """Before any model loads: settings that are fine alone but not together (each section checks itself on
    creation), and the files the settings name."""
    ppo, run = built[PPOConfig], built[RunConfig]
    if run.resume_from not in ("", "auto") and not Path(run.resume_from).expanduser().is_dir():
        raise MissingInput(f"resume_from: checkpoint {run.resume_from} does not exist")
    task = list(built.values())[-1]
    if CORYConfig in built:
        check_with_ppo(built[CORYConfig], ppo.critic_free)
        cory = built[CORYConfig]
        if cory.observer_template:  # the task's own template is checked when CORY is built
            check_observer_template(cory.observer_template, getattr(task, "template_fields", set()), cory.n_agents)
    for key in ("dataset_path", "eval_dataset_path"):
        if isinstance(getattr(task, key, None), str):
            check_local_file(getattr(task, key))
    if ppo.mask_truncated_completions and getattr(task, "responses_always_cut", False):
        raise UsageError(f"mask_truncated_completions would train nothing: every {type(task).__name__[:-6]} response is "
                         "cut at its token limit (a continuation has no end)")


def build_agents(exp: Experiment, n: int) -> list[PPOTrainer]:
    """`n` PPO agents (copies of one LLM, or LoRA adapters on one base) sharing one frozen reference; agent i
    draws its minibatch orders from seed + i. Critic-free estimators build no value heads."""
    policies, reference = build_policies(exp.run, n, exp.accelerator.device, critic=estimator_for(exp.ppo).needs_values)
    return [PPOTrainer(exp.ppo, policy, reference, exp.tokenizer, exp.accelerator, seed=exp.run.seed + i) for i, policy in enumerate(policies)]


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


def eval_table(rows: list[dict]) -> str:
    """What a user came for, at the end of a run: held-out reward and KL of each agent (and role), first vs last,
    and the reward's change with a 95% CI over the prompts (paired: the same prompts and sampling seed before and
    after), so "it learnt" is read off the interval, not off two means."""
    first, last = min(r["step"] for r in rows), max(r["step"] for r in rows)
    keyed = {(r["agent"], r.get("role", "alone"), r["step"]): r for r in rows}
    lines = [f"held-out evaluation ({len(rows[0]['per_prompt']['reward'])} prompts), after {first} -> {last} steps:",
             f"  {'agent':8} {'role':18} {'reward':>17} {'KL':>15}   reward change, 95% CI over prompts"]
    for agent, role in dict.fromkeys((a, r) for a, r, _ in keyed):
        before, after = keyed.get((agent, role, first)), keyed.get((agent, role, last))
        if before and after:
            change = reward_change(before["per_prompt"]["reward"], after["per_prompt"]["reward"])
            lines.append(f"  {agent:8} {role:18} {before['reward_mean']:7.3f} -> {after['reward_mean']:6.3f} "
                         f"{before['kl_exact']:6.2f} -> {after['kl_exact']:5.2f}   {change}")
    if any(line.endswith(UNCLEAR) for line in lines):
        lines.append(f"  ({UNCLEAR}: on these prompts that change is not told apart from none; more steps or --eval_prompts narrow it)")
    return "\n".join(lines)


UNCLEAR = "CI holds 0"


def reward_change(before: list, after: list) -> str:
    """'+0.240 [+0.121, +0.364] up' for the paired mean change over the prompts both scored (a failed reward is
    None), with what the interval says: up, down, or CI holds 0 (a demo's reader should not have to read signs)."""
    pairs = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    if len(pairs) < 2:
        return "n/a"
    ci = paired_difference_ci([[b for b, _ in pairs]], [[a for _, a in pairs]])
    verdict = "up" if ci["low"] > 0 else "down" if ci["high"] < 0 else UNCLEAR
    return f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] {verdict}"


def check_in_sync(accelerator: Accelerator, algorithm) -> None:
    """Every process must hold the same weights after data-parallel training; stop loudly if not."""
    for name, agent in zip(algorithm.names, algorithm.agents):
        checksum = torch.stack([p.detach().double().square().sum() for p in agent.params]).sum().reshape(1)
        sums = accelerator.gather(checksum.to(accelerator.device)).tolist()
        if max(sums) - min(sums) > 1e-9 * max(abs(s) for s in sums):
            raise RuntimeError(f"{name}'s weights differ across processes (checksums {sums})")
    if accelerator.is_main_process:
        tqdm.write(f"weights of {', '.join(algorithm.names)} identical on all {accelerator.num_processes} processes")


def held_out_prompts(task, n: int) -> list:
    """A fixed random subset of the task's eval split (the same for every run, seed and algorithm)."""
    prompts = task.prompts("test")
    return [prompts[i] for i in np.random.default_rng(1234).permutation(len(prompts))[:n]]


def evaluate_all(algorithm: Algorithm, task, prompts, run: RunConfig, tracker: Tracker, steps_done: int) -> None:
    """Each agent alone on the held-out prompts (a CORY agent answers x without the other's response); before
    and after training, each agent in the algorithm's other roles (CORY: observer of the other's and of its own answer)."""
    gen = run.generation_kwargs(run.response_max_tokens)
    alone, same = {}, twins(algorithm.names, algorithm.agents)
    for name, agent in zip(algorithm.names, algorithm.agents):  # every process runs it (ZeRO-3 gathers weights to generate)
        alone[name] = alone[same[name]] if same[name] != name else evaluate_agent(agent, task, prompts, gen, seed=run.seed)
        tracker.log_eval(steps_done, name, alone[name])
        if tracker.enabled:
            tqdm.write(f"eval after {steps_done} steps, {name}: " + summary_line(alone[name]["metrics"], EVAL_CONSOLE))
    if run.eval_roles and steps_done in (0, run.steps):
        for (name, role), result in algorithm.role_evaluations(prompts, gen, alone, run.seed).items():
            tracker.log_eval(steps_done, name, result, role=role)
            if tracker.enabled:
                tqdm.write(f"eval after {steps_done} steps, {name} as {role}: " + summary_line(result["metrics"], EVAL_CONSOLE))
