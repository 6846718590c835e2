r"""Your own task without writing a task class: prompts from a file, a reward that is a plain Python function.

    python own_task/train.py --algorithm cory --model_name smollm2-135m-instruct \
        --dataset_path prompts.jsonl --reward_fn my_rewards:politeness

The reward is `reward(prompts: list[str], responses: list[str]) -> list[float]`, named `module:function` (a module
importable from the working directory or the repo root), as trl's `reward_funcs=callable`. It sees each prompt's
text and the response alone; CORY's observer is scored on the query and its own response, like the pioneer.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch

from cory.data import read_records
from cory.errors import UsageError
from cory.task import Prompt


@dataclass
class TextTaskConfig:
    """Prompts from a local file (one column), reward = a Python function of (prompts, responses)."""

    dataset_path: str = ""
    """training prompts: a local .jsonl / .parquet / .csv / .json file (or a hub id)"""
    eval_dataset_path: str = ""
    """held-out prompts ('' = a fixed 10% of dataset_path, never trained on)"""
    prompt_column: str = "prompt"
    """the column that holds each prompt's text"""
    reward_fn: str = ""
    """the reward, 'module:function' with function(prompts: list[str], responses: list[str]) -> list[float]"""
    max_prompt_tokens: int = 0
    """keep each prompt's first N tokens (0: whole; e.g. 8 turns reviews into IMDB-style prefixes)"""
    template_fields: ClassVar[set[str]] = set()
    """text fields each prompt offers to an observer template (none: the query's tokens only)"""

    def __post_init__(self) -> None:
        if not self.dataset_path:
            raise UsageError("dataset_path is required: a file of prompts with a column named by prompt_column")
        if ":" not in self.reward_fn:
            raise UsageError(f"reward_fn must be 'module:function', got {self.reward_fn!r}")
        if self.max_prompt_tokens < 0:
            raise UsageError(f"max_prompt_tokens must be >= 0, got {self.max_prompt_tokens}")


def load_reward_fn(spec: str):
    """`module:function` -> the function, importable from the working directory or the repo root."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name or module_name.startswith("."):
        raise UsageError(f"reward_fn {spec!r} must be module:function with an absolute module name (e.g. own_task.example_reward:upbeat)")
    for path in (str(Path.cwd()), str(Path(__file__).resolve().parent.parent)):
        if path not in sys.path:
            sys.path.append(path)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001  a user's module may fail to import in any way (SyntaxError, its own raise)
        where = f" ({error.filename}, line {error.lineno})" if isinstance(error, SyntaxError) else ""
        raise UsageError(f"reward_fn {spec}: importing {module_name} failed: {type(error).__name__}: {error}{where}") from None
    try:
        function = getattr(module, name)
    except AttributeError as error:
        raise UsageError(f"reward_fn {spec}: {error}") from None
    if not callable(function):
        raise UsageError(f"reward_fn {spec} is not a function")
    return function


class TextTask:
    name = "text"
    template_fields = TextTaskConfig.template_fields
    observer_template = "{query}{pioneer_response}\n\nA better answer:\n{query}"
    response_template = "{response}\n"

    def __init__(self, config: TextTaskConfig, tokenizer, seed: int = 0):
        self.config, self.tokenizer, self.seed = config, tokenizer, seed
        self.reward_fn = load_reward_fn(config.reward_fn)

    @classmethod
    def from_config(cls, config: TextTaskConfig, tokenizer, seed: int, device) -> "TextTask":
        """A plain-function reward needs no device."""
        return cls(config, tokenizer, seed)

    def wrap_template(self, template: str) -> str:
        return template

    def prompts(self, split: str = "train") -> list[Prompt]:
        cfg = self.config
        path = cfg.dataset_path if split == "train" else (cfg.eval_dataset_path or cfg.dataset_path)
        texts = [row[cfg.prompt_column] for row in read_records(path, {cfg.prompt_column: str}, split)]
        if not cfg.eval_dataset_path:  # a fixed 10% is held out of the training file
            held_out = set(np.random.default_rng(1234).permutation(len(texts))[: max(1, len(texts) // 10)].tolist())
            texts = [t for i, t in enumerate(texts) if (i in held_out) == (split != "train")]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        if cfg.max_prompt_tokens:
            ids = [i[: cfg.max_prompt_tokens] for i in ids]
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [Prompt(torch.tensor(i), t) for i, t in zip(ids, texts) if i]

    def reward(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        scores = self.reward_fn([p.text for p in prompts], responses)
        if len(scores) != len(responses):
            raise UsageError(f"reward_fn {self.config.reward_fn} returned {len(scores)} scores for {len(responses)} responses")
        return [float(s) for s in scores]
