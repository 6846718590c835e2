"""What a task gives the training loop: prompts (token ids + named text fields) and a reward on responses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from cory.errors import RunStopped, UsageError


@dataclass
class Prompt:
    """One query: its token ids, its text (what the reward sees before the response), and named fields
    an observer template may use (e.g. `question`); `answer` is the reference answer where a task has one."""

    input_ids: torch.Tensor
    text: str
    fields: dict[str, str] = field(default_factory=dict)
    answer: str | None = None
    columns: dict = field(default_factory=dict)
    """the data row's other columns (your own task: what a reward function may take as keyword arguments)"""


class Task(Protocol):
    name: str
    template_fields: set[str]
    """text fields each prompt offers to an observer template, besides {query} and the earlier responses"""
    observer_template: str
    """the observer prompt CORY uses unless the config names one (the paper's, for the paper's tasks)"""
    response_template: str
    """how each earlier response appears in {previous_responses} (more than two agents) unless the config names one"""

    @classmethod
    def from_config(cls, config, tokenizer, seed: int, device) -> "Task":
        """Every task is built one way, from its config section (scripts: `Task.from_config(exp.task, ...)`)."""

    def wrap_template(self, template: str) -> str:
        """The observer template as the model should see it (e.g. inside a chat turn)."""

    def prompts(self, split: str) -> list[Prompt]: ...

    def reward(self, prompts: list[Prompt], responses: list[str]) -> list[float]: ...


class Algorithm(Protocol):
    """What the training loop drives (`SinglePPO`, `CORY`): named agents (each a `PPOTrainer`) and one step."""

    names: tuple[str, ...]
    agents: list

    def step(self, step: int, prompts: list[Prompt], gen_kwargs: dict) -> tuple[dict, list[dict]]:
        """One iteration on a batch of prompts; returns (stats, samples)."""

    def role_evaluations(self, prompts: list[Prompt], gen_kwargs: dict, alone: dict[str, dict], seed: int) -> dict:
        """(agent name, role) -> held-out evaluation in the algorithm's other roles, before and after training;
        `alone[name]` is each agent's evaluation alone on `prompts`."""


def safe_rewards(task: Task, prompts: list[Prompt], responses: list[str]) -> tuple[torch.Tensor, int, str | None]:
    """Task rewards, never raising: a failing batch is retried sample by sample and a sample that still
    fails scores NaN (the PPO step then skips the update). Returns (rewards, number of failed samples,
    the first failure as 'ExceptionType: message', or None)."""
    try:
        return torch.tensor(task.reward(prompts, responses), dtype=torch.float32), 0, None
    except UsageError:
        raise  # the reward broke its contract (e.g. a wrong number of scores): stop with its own line, not a retry's
    except SystemExit as error:
        raise RunStopped(f"the reward function called exit({error.code}); the last checkpoint is whole") from None
    except Exception:  # noqa: BLE001  a reward model may raise anything; isolate the culprit
        rewards, first_error = [], None
        for prompt, response in zip(prompts, responses):
            try:
                rewards.append(float(task.reward([prompt], [response])[0]))
            except Exception as error:  # noqa: BLE001
                rewards.append(float("nan"))
                first_error = first_error or f"{type(error).__name__}: {error}"
        rewards = torch.tensor(rewards, dtype=torch.float32)
        return rewards, int(rewards.isnan().sum()), first_error


class RewardErrorReport:
    """Prints the reward's exception once per distinct message, so a failing reward is visible in the log."""

    def __init__(self, log):
        self.log, self.seen = log, set()

    def __call__(self, error: str | None, failures: int, total: int) -> None:
        if error is not None and error not in self.seen:
            self.seen.add(error)
            self.log(f"the reward failed on {failures} of {total} samples ({error}); those samples score NaN and "
                     "their agent skips this step's update")
