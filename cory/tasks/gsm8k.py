"""GSM8K: grade-school math word problems; reward 1 if the final answer equals the reference, else 0."""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import ClassVar

import torch

from cory.errors import UsageError
from cory.tasks.data import read_records
from cory.tasks.task import Prompt
from cory.tasks.templates import chat_wrap, check_template

ONE_SHOT = (
    "Question: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does "
    "he have now? Answer: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more "
    "toys. 5 + 4 = 9. "
)
NUMBER = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
"""a number as written in a solution: sign, $, thousands commas, decimals, or a fraction a/b (read as its value)"""
MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2013": "-"})
"""the Unicode minus and the en dash, as models write a negative answer"""
CALCULATION = re.compile(r"<<([^<>]*)>>")
"""a calculator annotation of a reference solution: one calculation step"""
EXTRACTION_MODES = ("flexible", "strict")


@dataclass
class GSM8KConfig:
    """Paper App. A.2: a one-shot prompt, binary exact-answer reward."""

    dataset_path: str = "openai/gsm8k"
    """hub id (config `main`) or a local jsonl/parquet with `question` and `answer` (train split)"""
    eval_dataset_path: str = "openai/gsm8k"
    """held-out problems (test split of a hub id, or a local file)"""
    prompt_template: str = ONE_SHOT + "Question: {question} Answer:"
    """the pioneer's prompt, with the field {question}"""
    use_chat_template: bool = False
    """wrap prompt (and observer) templates as one user turn of the tokenizer's chat template"""
    answer_extraction: str = "flexible"
    """flexible: the number after the last ####, else the last number; strict: only after ####"""
    stop_text: str = "Question:"
    """a completion is cut here before grading (a one-shot model goes on writing new questions)"""
    format_penalty: float = 0.0
    """subtracted from the reward of a completion without '####' (0: off, the paper's binary reward)"""
    max_solution_steps: int = -1
    """keep only problems whose reference solution has at most this many calculation steps (its `<<...>>`
    annotations), in the training and the held-out data alike; -1: every problem"""
    template_fields: ClassVar[set[str]] = {"question"}
    """text fields each prompt offers to an observer template (checked before any model loads)"""

    def __post_init__(self) -> None:
        if self.answer_extraction not in EXTRACTION_MODES:
            raise UsageError(f"answer_extraction must be one of {EXTRACTION_MODES}, got {self.answer_extraction!r}")
        check_template("prompt_template", self.prompt_template, {"question"}, required={"question"})
        if self.max_solution_steps < -1:
            raise UsageError(f"max_solution_steps must be >= 0 (or -1: every problem), got {self.max_solution_steps}")


def normalise_number(text: str) -> Decimal | None:
    """'$1,000.00' -> 1000, '72.' -> 72, '50%' -> 50, '−3' -> -3, '3/4' -> 0.75; None if it is not a number."""
    cleaned = text.strip().translate(MINUS_SIGNS).replace(",", "").replace("$", "").rstrip("%").rstrip(".")
    numerator, slash, denominator = cleaned.partition("/")
    try:
        value = Decimal(numerator) / Decimal(denominator) if slash else Decimal(cleaned)
    except (InvalidOperation, ArithmeticError):  # not a number, or a division by zero
        return None
    return value if value.is_finite() else None


def reference_answer(solution: str) -> str:
    """The reference's final answer: the text after its last '####'."""
    if "####" not in solution:
        raise ValueError(f"GSM8K solution has no '####' final answer: {solution[-80:]!r}")
    return solution.rsplit("####", 1)[1].strip()


def solution_steps(solution: str) -> int:
    """How many calculation steps a reference solution takes: its `<<expression=result>>` annotations."""
    steps = len(CALCULATION.findall(solution))
    if solution.count("<<") != steps or solution.count(">>") != steps:
        raise ValueError(f"GSM8K solution has an unclosed or nested '<<...>>' annotation: {solution[:80]!r}")
    return steps


def before_stop(completion: str, stop_text: str) -> str:
    """The completion up to `stop_text` (all of it when the text is absent or empty)."""
    return completion.split(stop_text, 1)[0] if stop_text else completion


def extract_answer(completion: str, mode: str = "flexible", stop_text: str = "") -> Decimal | None:
    """The completion's final number: after the last '####' (first number there), else (flexible) its last number."""
    completion = before_stop(completion, stop_text).translate(MINUS_SIGNS)
    if "####" in completion:
        numbers = NUMBER.findall(completion.rsplit("####", 1)[1])
        if numbers:
            return normalise_number(numbers[0])
        if mode == "strict":
            return None
    elif mode == "strict":
        return None
    numbers = NUMBER.findall(completion)
    return normalise_number(numbers[-1]) if numbers else None


def is_correct(completion: str, answer: str, mode: str = "flexible", stop_text: str = "") -> bool:
    predicted = extract_answer(completion, mode, stop_text)
    return predicted is not None and predicted == normalise_number(answer)


class GSM8KTask:
    name = "gsm8k"
    template_fields = GSM8KConfig.template_fields
    observer_template = ONE_SHOT + "Question: {question} Reference: {pioneer_response} Answer:"  # the paper's, App. A.2
    response_template = "{response}\n"  # N > 2: one earlier solution per line

    def __init__(self, config: GSM8KConfig, tokenizer):
        self.config, self.tokenizer = config, tokenizer

    @classmethod
    def from_config(cls, config: GSM8KConfig, tokenizer, seed: int, device) -> "GSM8KTask":
        """The reward is exact and needs no device; the prompts are the file's, in order (no seed)."""
        return cls(config, tokenizer)

    def wrap_template(self, template: str) -> str:
        return chat_wrap(template, self.tokenizer) if self.config.use_chat_template else template

    def problems(self, split: str = "train") -> list[tuple[dict, str]]:
        """(row, reference final answer) of each problem of `split` within `max_solution_steps`, in file order."""
        cfg = self.config
        path = cfg.dataset_path if split == "train" else cfg.eval_dataset_path
        problems = []
        for row_no, row in enumerate(read_records(path, {"question": str, "answer": str}, split, hub_config="main"), 1):
            try:
                answer = reference_answer(row["answer"])
                easy_enough = cfg.max_solution_steps < 0 or solution_steps(row["answer"]) <= cfg.max_solution_steps
            except ValueError as e:
                raise UsageError(f"{path} row {row_no}: {e}") from None
            if easy_enough:
                problems.append((row, answer))
        if not problems:
            within = f" with at most {cfg.max_solution_steps} calculation steps" if cfg.max_solution_steps >= 0 else ""
            raise UsageError(f"{path}: no problem{within}")
        return problems

    def prompts(self, split: str = "train") -> list[Prompt]:
        return self.prompts_of(self.problems(split))

    def prompts_of(self, problems: list[tuple[dict, str]]) -> list[Prompt]:
        """The prompts of `problems` (from `problems()`), in their order: for callers that also need the rows."""
        template = self.wrap_template(self.config.prompt_template)
        texts = [template.format(question=row["question"]) for row, _ in problems]
        # a chat template writes its own BOS; a plain prompt gets the tokenizer's
        ids = self.tokenizer(texts, add_special_tokens=not self.config.use_chat_template)["input_ids"]
        return [Prompt(torch.tensor(i), t, {"question": row["question"]}, answer) for i, t, (row, answer) in zip(ids, texts, problems)]

    def reward(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        """1.0 for the reference's number, else 0.0 (minus `format_penalty` without a '####')."""
        cfg = self.config
        rewards = []
        for prompt, response in zip(prompts, responses):
            reward = float(is_correct(response, prompt.answer, cfg.answer_extraction, cfg.stop_text))
            if cfg.format_penalty and "####" not in before_stop(response, cfg.stop_text):
                reward -= cfg.format_penalty
            rewards.append(reward)
        return rewards
