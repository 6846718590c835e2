"""A run's settings, checked, and what every script needs before it trains: `setup` (task file + preset + flags,
or a sweep's dict, into the dataclasses; every error before any model), and the agents (`build_agents`).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from cory.algorithms.agents import build_policies
from cory.algorithms.cory import CORYConfig, check_with_ppo
from cory.config import RunConfig, build, check_known_keys, glue_negative_numbers, parse_args
from cory.errors import MissingInput, UsageError
from cory.models.load import load_tokenizer
from cory.platform.cpu_memory import tune_allocator
from cory.platform.precision import resolve_mixed_precision
from cory.ppo.advantages import estimator_for
from cory.ppo.config import PPOConfig
from cory.ppo.trainer import PPOTrainer
from cory.run.checkpoint import complete_checkpoints
from cory.tasks.data import check_local_file
from cory.tasks.templates import check_observer_template


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
    given = [*argv, *(f"--{key}" for key in config)]  # what the user set, by flag or by the sweep's dict
    refuse_cory_keys(given, sections)
    preset, raw = parse_args(task, description, sections, argv, algorithm, script_options)
    preset, raw = resumed_settings(task, algorithm, preset, {**raw, **config}, given, sections)
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
