"""A question-answer task of your own: questions with a reference `answer` column, rewarded for the exact answer.

    python own_task/arithmetic.py runs/arithmetic.jsonl      # writes 400 questions like "What is 3 + 4?"
    python own_task/train.py --algorithm cory --dataset_path runs/arithmetic.jsonl --use_chat_template true \
        --reward_fn own_task.arithmetic:exact_answer,own_task.arithmetic:brevity --reward_weights 1,0.1 \
        --response_min_tokens 16 --response_max_tokens 16

`exact_answer` names the data file's `answer` column, so it receives it, one value per response (trl's
`reward_funcs` convention); `brevity` takes only prompts and responses. The file is generated, not shipped. The
offline 135M model, sampling freely, rarely answers right at first (0 of 16 held-out questions at step 0 on a
2-core Xeon, 2026-12-07): the example shows the wiring on a CPU; a larger `--model_name` gives the reward signal.
"""
from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path


def exact_answer(prompts: list[str], responses: list[str], answer: list[str]) -> list[float]:
    """1 if the last number in the response is the reference answer ("3 + 4 = 7" counts), else 0."""
    lasts = [re.findall(r"-?\d+", response)[-1:] for response in responses]
    return [float(last == [str(a)]) for last, a in zip(lasts, answer)]


def brevity(prompts: list[str], responses: list[str]) -> list[float]:
    """Minus the response's words over 20: a small push towards answering, not chatting."""
    return [-len(response.split()) / 20 for response in responses]


def write(path: Path, n: int = 400, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"prompt": f"What is {a} + {b}? Answer with the number only.", "answer": str(a + b)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/arithmetic.jsonl")
    write(target)
    print(f"wrote {target}")
