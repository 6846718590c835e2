"""Rewards as trl takes them: several weighted functions, the data's other columns as keyword arguments, None where
a function does not apply; a bad return is one line naming the function and the row."""
from __future__ import annotations

import json

import pytest

from cory.errors import UsageError
from cory.tasks.reward_functions import RewardFunctions

MODULE = '''
def exact(prompts, responses, answer):
    return [1.0 if r.strip() == a else 0.0 for r, a in zip(responses, answer)]

def short(prompts, responses):
    return [-len(r) / 10 for r in responses]

def only_math(prompts, responses, **columns):
    return [None if kind != "math" else 2.0 for kind in columns["kind"]]

def text(prompts, responses):
    return ["high"] * len(responses)

def nan(prompts, responses):
    return [float("nan")] * len(responses)

def never(prompts, responses):
    return [None] * len(responses)
'''


@pytest.fixture
def rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return lambda spec, weights="": RewardFunctions(spec, weights)


ROWS = [{"answer": "4", "kind": "math"}, {"answer": "9", "kind": "chat"}]


def test_two_weighted_functions_see_the_answer_column_by_hand(rewards):
    """exact (weight 1) + short (weight 0.5): '4' is right (1 - 0.5 x 0.1), '10' is wrong (0 - 0.5 x 0.2)."""
    score = rewards("my_rewards:exact, my_rewards:short", "1, 0.5")
    assert score(["2+2?", "3*3?"], ["4", "10"], ROWS) == pytest.approx([0.95, -0.1])


def test_none_leaves_a_function_out_and_a_row_nothing_scores_is_an_error(rewards):
    assert rewards("my_rewards:only_math,my_rewards:short")(["a", "b"], ["xy", "x"], ROWS) == pytest.approx([2.0 - 0.2, -0.1])
    with pytest.raises(UsageError, match=r"no reward function scored row 1 of the batch \(1 such rows; prompt 'b'\)"):
        rewards("my_rewards:only_math")(["a", "b"], ["x", "y"], ROWS)


@pytest.mark.parametrize("name, message", [("text", r"my_rewards:text returned 'high' for row 0 \(prompt 'a'\)"),
                                           ("nan", r"my_rewards:nan returned nan for row 0"),
                                           ("never", r"no reward function scored row 0")])
def test_a_bad_return_names_the_function_and_the_row(rewards, name, message):
    with pytest.raises(UsageError, match=message):
        rewards(f"my_rewards:{name}")(["a", "b"], ["x", "y"], ROWS)


def test_bad_weights_are_one_line(rewards):
    with pytest.raises(UsageError, match="need 2 finite weight"):
        rewards("my_rewards:exact,my_rewards:short", "1")
    with pytest.raises(UsageError, match="must be numbers"):
        rewards("my_rewards:exact", "one")


def test_a_text_task_passes_its_file_s_other_columns_to_the_reward(rewards, tmp_path, tokenizer):
    from cory.tasks.text import TextTask, TextTaskConfig

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(20)))
    task = TextTask(TextTaskConfig(dataset_path=str(data), reward_fn="my_rewards:exact"), tokenizer)
    prompts = task.prompts("train")
    assert len(prompts) == 18 and prompts[0].columns == {"answer": str(2 * int(prompts[0].text.split()[2]))}
    right = [p.columns["answer"] for p in prompts[:3]]
    assert task.reward(prompts[:3], right) == [1.0, 1.0, 1.0] and task.reward(prompts[:3], ["no"] * 3) == [0.0] * 3


def test_a_question_task_is_sent_as_a_user_turn_and_its_observer_too(rewards, tmp_path, tokenizer):
    """use_chat_template: the model sees each prompt as one user turn (before, the text task sent an instruct model
    the raw prompt), the reward still sees the prompt's text, and CORY's observer prompt is one user turn holding
    the question and the pioneer's answer."""
    import copy

    import torch

    from cory.algorithms.cory import observer_prompts
    from cory.tasks.text import TextTask, TextTaskConfig

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}<assistant>"
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(10)))
    task = TextTask(TextTaskConfig(dataset_path=str(data), reward_fn="my_rewards:exact", use_chat_template=True), tok)
    prompt = task.prompts("train")[0]
    assert tok.decode(prompt.input_ids) == f"<user>{prompt.text}</user><assistant>" and prompt.text.startswith("What is")
    template = task.wrap_template(task.observer_template)
    pioneer = torch.tensor(tok("12", add_special_tokens=False)["input_ids"])
    [observer] = observer_prompts(template, [prompt], [[pioneer]], tok, {tok.eos_token_id})
    assert tok.decode(observer) == f"<user>{prompt.text}\n\nAn earlier answer:\n12\n\nA better answer:</user><assistant>"
