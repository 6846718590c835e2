"""GSM8K: answer extraction and reward, prompts, pass@k, and a tiny-model CORY step on synthetic arithmetic."""
import copy
import json
import runpy
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cory.algorithms.cory import CORY, CORYConfig, observer_prompts
from cory.eval.gsm8k import pass_at_k
from cory.tasks.gsm8k import ONE_SHOT, GSM8KConfig, GSM8KTask, extract_answer, is_correct, normalise_number, reference_answer
from cory.platform.paths import write_json
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.ppo.config import PPOConfig
from tests.tiny import tiny_gpt2

GSM8K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gsm8k"


@pytest.mark.parametrize("completion, expected", [
    ("#### 72", "72"),
    ("so the total is #### 72.", "72"),
    ("#### 1,000", "1000"),
    ("She pays $18.00 in total. #### $18.00", "18"),
    ("The answer is -3", "-3"),
    ("#### -3", "-3"),
    ("half of it: 0.5", "0.5"),
    ("#### 0.50", "0.5"),
    ("#### 12 #### 15", "15"),  # the last ####
    ("#### 7 apples, not 9", "7"),  # the first number after the last ####
    ("It grows by 50%", "50"),
    ("5 + 4 = 9.", "9"),
    ("5 + 4 = 9.0", "9"),
    ("2 * 3 = 6, then 6 + 1 = 7", "7"),
    ("Total: 1,234,567 dollars", "1234567"),
    ("I think it is 3. Question: Tom has 8 apples.", "3"),  # cut at the next one-shot question
    ("#### 5\n\nQuestion: 17 cows", "5"),
    ("there are 24 eggs #### ", "24"),  # nothing after ####: flexible falls back to the last number
    ("twelve", None),  # a number in words only
    ("no number here", None),
    ("", None),
    ("#### .5", "0.5"),
    ("-$4 is the loss", "-4"),
    ("#### 3/4", "0.75"),  # a fraction is its value, not its numerator
    ("half of 6 is 6/2 = 3", "3"),
    ("#### \u22123", "-3"),  # the Unicode minus sign
    ("#### \u20133", "-3"),  # an en dash used as a minus
    ("#### 1/0", None),
])
def test_extract_answer(completion, expected):
    got = extract_answer(completion, "flexible", stop_text="Question:")
    assert got == (None if expected is None else Decimal(expected))


def test_fraction_and_unicode_minus_do_not_score_as_the_integer():
    assert not is_correct("#### 3/4", "3") and is_correct("#### 3/4", "0.75")
    assert not is_correct("#### \u22123", "3") and is_correct("#### \u22123", "-3")


def test_strict_mode_needs_the_marker():
    assert extract_answer("the answer is 5", "strict") is None
    assert extract_answer("#### nothing", "strict") is None
    assert extract_answer("so #### 5", "strict") == 5


def test_normalise_and_reference():
    assert normalise_number("$1,000.00") == normalise_number("1000") == Decimal(1000)
    assert normalise_number("72.") == 72 and normalise_number("abc") is None
    assert reference_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "72"
    with pytest.raises(ValueError, match="no '####'"):
        reference_answer("no final answer")


def test_reference_solutions_score_one_on_the_real_training_file():
    if not GSM8K.exists():
        pytest.skip(f"shared data not found at {GSM8K}")
    rows = [json.loads(line) for line in (GSM8K / "train.jsonl").read_text().splitlines()[:200]]
    assert len(rows) == 200
    for row in rows:
        assert is_correct(row["answer"], reference_answer(row["answer"])), row["answer"][-60:]
        assert not is_correct(row["answer"], str(normalise_number(reference_answer(row["answer"])) + 1))


def write_problems(path: Path, n: int = 8) -> Path:
    rows = [{"question": f"What is {i} plus {i + 1}?", "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompts_rewards_and_observer_template(tmp_path, tokenizer):
    task = GSM8KTask(GSM8KConfig(dataset_path=str(write_problems(tmp_path / "train.jsonl"))), tokenizer)
    prompts = task.prompts("train")
    assert prompts[1].text == ONE_SHOT + "Question: What is 1 plus 2? Answer:"
    assert prompts[1].answer == "3" and prompts[1].fields == {"question": "What is 1 plus 2?"}
    assert tokenizer.decode(prompts[1].input_ids) == prompts[1].text
    assert task.reward(prompts[:2], [" 0 + 1 = 1. #### 1", " I do not know. Question: 3"]) == [1.0, 0.0]
    penalised = GSM8KTask(GSM8KConfig(format_penalty=0.1), tokenizer)
    assert penalised.reward(prompts[:2], [" 1", " #### 4"]) == [0.9, 0.0]  # right without ####; wrong with it
    assert penalised.reward(prompts[:1], [" no idea"]) == [-0.1]

    template = ONE_SHOT + "Question: {question} Reference: {pioneer_response} Answer:"
    pioneer = [torch.tensor(tokenizer(" 3 #### 3")["input_ids"] + [50256])]
    [ids] = observer_prompts(template, prompts[1:2], [pioneer], tokenizer, {50256})
    assert tokenizer.decode(ids) == ONE_SHOT + "Question: What is 1 plus 2? Reference:  3 #### 3 Answer:"


def test_malformed_answer_names_the_row(tmp_path, tokenizer):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"question": "q", "answer": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: GSM8K solution has no '####'"):
        GSM8KTask(GSM8KConfig(dataset_path=str(path)), tokenizer).prompts("train")


def test_solution_steps_filter(tmp_path, tokenizer):
    rows = [{"question": f"q{n}", "answer": "".join(f"<<{i}+1={i + 1}>>{i + 1} " for i in range(n)) + f"#### {n}"} for n in (0, 1, 2, 3)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = lambda steps: [p.fields["question"] for p in GSM8KTask(GSM8KConfig(dataset_path=str(path), max_solution_steps=steps), tokenizer).prompts()]  # noqa: E731
    assert kept(-1) == ["q0", "q1", "q2", "q3"] and kept(2) == ["q0", "q1", "q2"] and kept(0) == ["q0"]
    held_out = GSM8KConfig(eval_dataset_path=str(path), max_solution_steps=1)  # the held-out data is filtered alike
    assert [p.answer for p in GSM8KTask(held_out, tokenizer).prompts("test")] == ["0", "1"]
    path.write_text(json.dumps(rows[1]) + "\n" + json.dumps({"question": "q", "answer": "2+1=<<2+1=3 so 3\n#### 3"}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl row 2: GSM8K solution has an unclosed"):
        kept(2)
    with pytest.raises(ValueError, match="max_solution_steps must be >= 0"):
        GSM8KConfig(max_solution_steps=-2)


def test_solution_steps_on_the_real_files(tokenizer):
    if not GSM8K.exists():
        pytest.skip(f"shared data not found at {GSM8K}")
    counts = {split: len(GSM8KTask(GSM8KConfig(dataset_path=str(GSM8K / "train.jsonl"), eval_dataset_path=str(GSM8K / "test.jsonl"),
                                               max_solution_steps=2), tokenizer).prompts(split)) for split in ("train", "test")}
    assert counts == {"train": 2674, "test": 440}


def test_chat_template_wraps_prompts(tokenizer):
    from cory.tasks.templates import chat_wrap

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}<assistant>"
    assert chat_wrap("Q: {question}", tok) == "<user>Q: {question}</user><assistant>"
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        chat_wrap("Q: {question}", tok)


def test_cory_step_on_synthetic_arithmetic(tmp_path, tokenizer, accelerator):
    task = GSM8KTask(GSM8KConfig(dataset_path=str(write_problems(tmp_path / "train.jsonl", 4))), tokenizer)
    config = PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, learning_rate=1e-3)
    reference = FrozenReference(tiny_gpt2(n_embd=16))
    agents = [PPOTrainer(config, ValueHeadPolicy(tiny_gpt2(n_embd=16)), reference, tokenizer, accelerator, seed=i) for i in range(2)]
    template = "Question: {question} Reference: {pioneer_response} Answer:"
    cory = CORY(CORYConfig(observer_template=template), agents, tokenizer, task)
    before = [p.clone() for p in agents[1].policy.parameters()]
    stats, samples = cory.step(0, task.prompts("train"), dict(do_sample=True, top_k=0, max_new_tokens=4, min_new_tokens=4))
    assert stats["pioneer/task_reward"] in (0.0, 0.25, 0.5, 0.75, 1.0) and stats["env/reward_failures"] == 0
    assert stats["tokens/truncated_prompts"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, agents[1].policy.parameters()))


def test_template_fields_the_task_does_not_offer_are_rejected(tokenizer):
    from tests.tiny import TextTask

    with pytest.raises(ValueError, match=r"unknown field\(s\) \[.question.\]"):
        CORY(CORYConfig(observer_template="{question}{pioneer_response}"), [None, None], tokenizer, TextTask(None))


@pytest.mark.parametrize("n, c, k, expected", [(5, 0, 1, 0.0), (5, 5, 3, 1.0), (4, 1, 1, 0.25), (4, 1, 2, 0.5), (5, 2, 2, 0.7), (3, 1, 3, 1.0)])
def test_pass_at_k_unbiased_estimator(n, c, k, expected):
    # (5, 2, 2): 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)


def report_script() -> SimpleNamespace:
    """scripts/gsm8k_report.py's functions (a script, not a module of the installed package)."""
    return SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "gsm8k_report.py")))


def test_pass_at_k_curve_and_base_rate_tables(tmp_path):
    gsm8k_report = report_script()

    problems = [{"solution_steps": 1, "greedy": "#### 3", "greedy_correct": True, "samples_correct": [True, False, False, False]},
                {"solution_steps": 3, "greedy": "no idea", "greedy_correct": False, "samples_correct": [False] * 4}]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"summary": {"response_tokens_greedy": 4.0}, "problems": problems}))
    write_json(tmp_path / "eval.json.gz", json.loads(path.read_text()))  # how a committed evaluation is kept
    assert gsm8k_report.labelled([f"a={path}"])["a"] == gsm8k_report.labelled([f"a={tmp_path / 'eval.json.gz'}"])["a"]
    [row] = gsm8k_report.comparison_table(gsm8k_report.labelled([f"PPO={path}"]))
    # problem 1: c=1 of n=4 -> pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2, pass@4 1; problem 2: all 0
    assert row["pass@1"] == 0.125 and row["pass@2"] == 0.25 and row["pass@4"] == 0.5
    assert row["pass@1 greedy"] == 0.5 and row["readable answer"] == 0.5 and row["greedy tokens"] == 4.0
    base = gsm8k_report.base_rate_table(gsm8k_report.labelled([f"chat={path}"]))
    assert [(r["steps <="], r["problems"], r["pass@8"] if "pass@8" in r else None) for r in base] == [(1, 1, None), (2, 1, None), (3, 2, None)]
    gsm8k_report.plot_pass_at_k([row], tmp_path / "passk.png")
    assert (tmp_path / "passk.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="expected LABEL=PATH"):
        gsm8k_report.labelled(["PPO=/no/such/file.json"])


def test_paired_differences_to_the_policy_before_training():
    gsm8k_report = report_script()

    def result(greedy, samples, questions=("q1", "q2")):
        return {"problems": [{"question": q, "greedy_correct": g, "samples_correct": c} for q, g, c in zip(questions, greedy, samples)]}

    before = result([True, False], [[True, False, False, False], [False] * 4])
    after = result([True, True], [[True, True, False, False], [True, False, False, False]])
    [row] = gsm8k_report.paired_table({"before": before, "after": after}, "before")
    # greedy 1/2 -> 2/2: +0.5; pass@1 (1/4 + 0)/2 -> (2/4 + 1/4)/2: +0.25; pass@4 (1 + 0)/2 -> (1 + 1)/2: +0.5
    assert [row[m].split(" [")[0] for m in ("pass@1 greedy", "pass@1", "pass@4")] == ["+0.500", "+0.250", "+0.500"]
    later = result([False, True], [[False] * 4, [True] * 4])
    rows = gsm8k_report.paired_table({"before": before, "after": after, "later": later}, "before", ["later"])
    assert [r["comparison"] for r in rows] == ["later - before"] and rows[0]["pass@1 greedy"].startswith("+0.000")
    with pytest.raises(SystemExit, match="not one of"):
        gsm8k_report.paired_table({"before": before, "after": after}, "before", ["PPO"])
    with pytest.raises(SystemExit, match="other problems"):
        gsm8k_report.paired_table({"before": before, "other": result([True, True], [[True] * 4] * 2, ("q1", "q3"))}, "before")
    with pytest.raises(SystemExit, match="not one of"):
        gsm8k_report.paired_table({"before": before}, "PPO")


def test_eval_preset_supplies_the_training_prompt_and_flags_override_it():
    from cory.eval.gsm8k import parse_args

    args = parse_args(["--model", "m", "--preset", "offline"])
    assert args.use_chat_template and args.max_solution_steps == 2 and "####" in args.prompt_template
    assert args.dataset_path.endswith("gsm8k/test.jsonl")
    args = parse_args(["--model", "m", "--preset", "offline", "--max_solution_steps", "3", "--no-use_chat_template"])
    assert args.max_solution_steps == 3 and not args.use_chat_template
    assert parse_args(["--model", "m"]).max_solution_steps == -1  # no preset: every problem, the paper's prompt
    assert parse_args(["--model", "m"]).sample_texts and not parse_args(["--model", "m", "--no-sample_texts"]).sample_texts


def test_without_sample_texts_keeps_every_score_the_report_reads():
    from cory.eval.gsm8k import without_sample_texts

    problem = {"question": "q", "greedy": "#### 3", "greedy_correct": True, "samples": ["#### 3", "4"], "samples_correct": [True, False]}
    result = {"pass_at_k": {"1": 0.5}, "problems": [problem]}
    assert without_sample_texts(result) == {"pass_at_k": {"1": 0.5}, "problems": [{k: v for k, v in problem.items() if k != "samples"}]}
    assert "samples" in problem  # the full result is not changed under its caller
