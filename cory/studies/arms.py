"""A study's arms: which training script each runs, with which flags, and the config that resolves to.

study.json names its arms under `arms` (id -> {"algorithm": "ppo" | "cory", "args": [flags], "name": label}); an
older study has none and its arms are its `algorithms` (with `algorithm_args` and `names`), so its ledger paths
(`<setting>/<arm>-seed<s>.json.gz`) are unchanged. The budget table (`cory.studies.budget`) is computed from the
config each arm's script would run, resolved here without loading a model.
"""
from __future__ import annotations

import dataclasses
import importlib

from cory.config import RunConfig, build, parse_args
from cory.errors import UsageError
from cory.ppo.config import PPOConfig
from cory.studies.budget import arm_budget

NAMES = {"ppo": "PPO", "cory": "CORY"}
AGENTS = {"ppo": ("policy",), "cory": ("agent_a", "agent_b")}
"""the agents whose held-out evaluations an algorithm's run logs (each CORY agent alone)"""
TASK_SECTIONS = {"imdb": ("cory.tasks.imdb", "IMDBConfig"), "gsm8k": ("cory.tasks.gsm8k", "GSM8KConfig"),
                 "text": ("cory.tasks.text", "TextTaskConfig")}
"""each task's config section, last among a training script's sections (as `cory.run.setup.setup` takes them)"""


def study_arms(study: dict) -> dict[str, dict]:
    """arm id -> {"algorithm", "args", "name"}, in the study's order."""
    if "arms" in study:
        return {arm: {"args": [], "name": arm, **spec} for arm, spec in study["arms"].items()}
    names, extra = {**NAMES, **study.get("names", {})}, study.get("algorithm_args", {})
    return {a: {"algorithm": a, "args": extra.get(a, []), "name": names[a]} for a in study.get("algorithms", list(NAMES))}


def baseline_arm(study: dict) -> str:
    """The arm every other arm is compared with (study.json `baseline`; default: the first PPO arm)."""
    arms = study_arms(study)
    return study.get("baseline") or next(a for a, spec in arms.items() if spec["algorithm"] == "ppo")


def arm_flags(study: dict, setting: str, arm: str) -> list[str]:
    """The flags every run of (setting, arm) shares: preset, length, evaluation, precision, the study's, the arm's
    and the setting's own flags (a run adds its seed and directories)."""
    return ["--preset", study["task_preset"], "--steps", str(study["steps"]), "--eval_every", str(study["eval_every"]),
            "--eval_prompts", str(study["eval_prompts"]),
            *(["--mixed_precision", study["mixed_precision"]] if study["mixed_precision"] else []),
            *study["extra_args"], *study_arms(study)[arm]["args"], *study["settings"][setting]["flags"]]


def resolved_config(study: dict, setting: str, arm: str) -> dict:
    """The config (every key) a run of (setting, arm) trains with, from configs/<task>.py, its preset and the flags."""
    from cory.algorithms.cory import CORYConfig  # the CORY loop's module: only its config is needed here

    task = study.get("task", "imdb")
    algorithm = study_arms(study)[arm]["algorithm"]
    module, name = TASK_SECTIONS[task]
    sections = (RunConfig, PPOConfig, *((CORYConfig,) if algorithm == "cory" else ()), getattr(importlib.import_module(module), name))
    raw = parse_args(task, "", sections, arm_flags(study, setting, arm), algorithm)[1]
    return {key: value for cls in sections for key, value in dataclasses.asdict(build(cls, raw)).items()}


def budget_table(study: dict, setting: str = "default") -> dict[str, dict]:
    """arm -> its budget over the run (`cory.studies.budget.arm_budget`)."""
    return {arm: arm_budget(resolved_config(study, setting, arm), spec["algorithm"]) for arm, spec in study_arms(study).items()}


def arm_names(study: dict) -> dict[str, str]:
    return {arm: spec["name"] for arm, spec in study_arms(study).items()}


def response_decoder(study: dict):
    """Token ids -> text with the study's tokenizer where it is built here (a report shows the commonest responses);
    None, and ids are shown, where it is not."""
    from cory.models.load import load_tokenizer  # transformers: only when a report decodes

    model = resolved_config(study, next(iter(study["settings"])), next(iter(study_arms(study))))["model_name"]
    try:
        tokenizer = load_tokenizer(model)
    except (OSError, UsageError):
        return None
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)
