r"""Your own task without writing a task class: prompts from a file, a reward that is a plain Python function.

    python own_task/train.py --algorithm cory --model_name smollm2-135m-instruct \
        --dataset_path prompts.jsonl --reward_fn my_rewards:politeness

The reward is `reward(prompts: list[str], responses: list[str], **columns) -> list[float | None]`, named
`module:function` (a module importable from the working directory or the repo root), as trl's `reward_funcs`:
several, comma-separated, are summed with `--reward_weights`, and a function that names a column of the data file
(e.g. `answer`) gets it (cory/tasks/reward_functions.py). CORY's observer is scored on the query and its own response,
like the pioneer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cory.errors import UsageError
from cory.tasks.data import read_records
from cory.tasks.reward_functions import RewardFunctions, parse_specs, parse_weights
from cory.tasks.task import Prompt
from cory.tasks.templates import chat_wrap


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
    """the reward, 'module:function' with function(prompts, responses, **columns) -> list[float | None]; several:
    comma-separated, summed with reward_weights (cory/tasks/reward_functions.py)"""
    reward_weights: str = ""
    """one weight per reward function, comma-separated ('' = all 1)"""
    max_prompt_tokens: int = 0
    """keep each prompt's first N tokens (0: whole; e.g. 8 turns reviews into IMDB-style prefixes)"""
    use_chat_template: bool = False
    """send each prompt (and the observer's) as one user turn of the tokenizer's chat template (an instruct model
    answering questions); off: the raw text, continued (IMDB-style)"""
    template_fields: ClassVar[set[str]] = {"prompt"}
    """text fields each prompt offers to an observer template: {prompt}, the prompt's text ({query} is its tokens)"""

    def __post_init__(self) -> None:
        if not self.dataset_path:
            raise UsageError("dataset_path is required: a file of prompts with a column named by prompt_column")
        parse_weights(self.reward_weights, len(parse_specs(self.reward_fn)))
        if self.max_prompt_tokens < 0:
            raise UsageError(f"max_prompt_tokens must be >= 0, got {self.max_prompt_tokens}")


class TextTask:
    name = "text"
    template_fields = TextTaskConfig.template_fields
    response_template = "{response}\n"

    def __init__(self, config: TextTaskConfig, tokenizer, seed: int = 0):
        self.config, self.tokenizer, self.seed = config, tokenizer, seed
        self.reward_fn = RewardFunctions(config.reward_fn, config.reward_weights)
        self.observer_template = ("{prompt}\n\nAn earlier answer:\n{pioneer_response}\n\nA better answer:" if config.use_chat_template
                                  else "{query}{pioneer_response}\n\nA better answer:\n{query}")

    @classmethod
    def from_config(cls, config: TextTaskConfig, tokenizer, seed: int, device) -> "TextTask":
        """A plain-function reward needs no device."""
        return cls(config, tokenizer, seed)

    def wrap_template(self, template: str) -> str:
        return chat_wrap(template, self.tokenizer) if self.config.use_chat_template else template

    def prompts(self, split: str = "train") -> list[Prompt]:
        cfg = self.config
        path = cfg.dataset_path if split == "train" else (cfg.eval_dataset_path or cfg.dataset_path)
        rows = read_records(path, {cfg.prompt_column: str}, split, keep_others=True)
        if not cfg.eval_dataset_path:  # a fixed 10% is held out of the training file
            held_out = set(np.random.default_rng(1234).permutation(len(rows))[: max(1, len(rows) // 10)].tolist())
            rows = [r for i, r in enumerate(rows) if (i in held_out) == (split != "train")]
        texts = [row[cfg.prompt_column] for row in rows]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        if cfg.max_prompt_tokens:
            ids = [i[: cfg.max_prompt_tokens] for i in ids]
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        if cfg.use_chat_template:  # the model sees a user turn; the reward and the templates see the prompt's text
            turn = chat_wrap("{prompt}", self.tokenizer)
            ids = self.tokenizer([turn.format(prompt=t) for t in texts], add_special_tokens=False)["input_ids"]
        others = [{k: v for k, v in row.items() if k != cfg.prompt_column} for row in rows]
        return [Prompt(torch.tensor(i), t, {"prompt": t}, columns=c) for i, t, c in zip(ids, texts, others) if i]

    def reward(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return self.reward_fn([p.text for p in prompts], responses, [p.columns for p in prompts])
