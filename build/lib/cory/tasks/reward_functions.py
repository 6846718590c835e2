"""Rewards as plain Python functions, the way trl's `reward_funcs` takes them: several, weighted, each seeing the
dataset's other columns.

A function is `f(prompts: list[str], responses: list[str], **columns) -> list[float | None]`: `columns` holds the
row's other fields, one list per column (e.g. `answer`), passed only to a function that names them or takes
`**kwargs` (so `f(prompts, responses)` keeps working). The reward of a response is the weighted sum of the
functions' scores. A function returns `None` for a row it does not apply to (a math reward on a code row): the sum
leaves it out. The rule for a row that no function scores: an error, one line naming the row (a reward that scores
nothing is a bug, not a reason to skip the row silently). A return of the wrong length, or a value that is not a
number (a string, NaN, infinity) is an error naming the function and the row.
"""
from __future__ import annotations

import importlib
import inspect
import math
import numbers
import sys
from pathlib import Path
from typing import Callable

from cory.errors import UsageError


def parse_specs(spec: str) -> list[str]:
    """'mod:f, mod:g' -> ['mod:f', 'mod:g'], each checked to be module:function with an absolute module name."""
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    for one in specs or [spec]:
        module, _, name = one.partition(":")
        if not module or not name or module.startswith("."):
            raise UsageError(f"reward_fn {one!r} must be module:function with an absolute module name "
                             "(e.g. own_task.example_reward:upbeat); several: comma-separated")
    return specs


def parse_weights(text: str, n: int) -> list[float]:
    """'' -> n ones; '1, 0.5' -> [1.0, 0.5] (one weight per function)."""
    if not text.strip():
        return [1.0] * n
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"reward_weights {text!r} must be numbers separated by commas") from None
    if len(weights) != n or not all(math.isfinite(w) for w in weights):
        raise UsageError(f"reward_weights {text!r}: need {n} finite weight(s), one per reward function")
    return weights


def load_function(spec: str) -> Callable:
    """`module:function` -> the function, importable from the working directory or the repo root."""
    module_name, _, name = parse_specs(spec)[0].partition(":")
    for path in (str(Path.cwd()), str(Path(__file__).resolve().parents[2])):
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


class RewardFunctions:
    """Several weighted reward functions as one reward over (prompts, responses, the rows' other columns)."""

    def __init__(self, spec: str, weights: str = ""):
        self.specs = parse_specs(spec)
        self.weights = parse_weights(weights, len(self.specs))
        self.functions = [load_function(s) for s in self.specs]
        self.wants = [_named_columns(f) for f in self.functions]

    def __call__(self, prompts: list[str], responses: list[str], columns: list[dict]) -> list[float]:
        total: list[float | None] = [None] * len(responses)
        for spec, function, wants, weight in zip(self.specs, self.functions, self.wants, self.weights):
            given = {k: [row.get(k) for row in columns] for k in (set().union(*columns) if columns else set())
                     if wants is all or k in wants}
            scores = function(prompts, responses, **given)
            for i, score in enumerate(checked(spec, scores, len(responses), prompts)):
                if score is not None:
                    total[i] = (total[i] or 0.0) + weight * score
        unscored = [i for i, t in enumerate(total) if t is None]
        if unscored:
            i = unscored[0]
            raise UsageError(f"no reward function scored row {i} of the batch ({len(unscored)} such rows; prompt "
                             f"{prompts[i][:60]!r}): every function returned None for it")
        return total


def checked(spec: str, scores, n: int, prompts: list[str]) -> list[float | None]:
    """A function's return as floats (or None), or one line naming the function and the first bad row."""
    try:
        scores = list(scores)
    except TypeError:
        raise UsageError(f"reward_fn {spec} returned {type(scores).__name__}, not a list of scores") from None
    if len(scores) != n:
        raise UsageError(f"reward_fn {spec} returned {len(scores)} scores for {n} responses")
    out = []
    for i, score in enumerate(scores):
        if score is not None and not (isinstance(score, numbers.Real) and not isinstance(score, bool) and math.isfinite(score)):
            raise UsageError(f"reward_fn {spec} returned {score!r} for row {i} (prompt {prompts[i][:60]!r}): a score "
                             "must be a finite number, or None where the function does not apply")
        out.append(None if score is None else float(score))
    return out


def _named_columns(function: Callable):
    """`all` if the function takes **kwargs, else the set of keyword parameters after (prompts, responses)."""
    parameters = list(inspect.signature(function).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return all
    return {p.name for p in parameters[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
