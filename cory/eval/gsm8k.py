"""pass@k on GSM8K for any saved policy: `python -m cory.eval.gsm8k --model PATH [--n_problems 200 --k 1 4]`.

pass@1 greedy; pass@k as the paper defines it (k samples, passes if any is correct); and the unbiased pass@k
estimator 1 - C(n-c, k) / C(n, k) from n >= k samples (Chen et al., 2021); the fraction of greedy answers
with a final number the grader can read, and their mean length in tokens (up to the stop text). Writes
per-problem results and a summary as JSON, prints a table.
"""
from __future__ import annotations

import argparse
from math import comb
from pathlib import Path

import torch
from tqdm import tqdm

from cory.config import load_task_config
from cory.eval.loading import load_policy_for_eval
from cory.platform.paths import write_json
from cory.ppo.rollout import left_pad
from cory.tasks.gsm8k import GSM8KConfig, GSM8KTask, before_stop, extract_answer, is_correct, solution_steps


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from c correct out of n."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


@torch.no_grad()
def complete(lm, tokenizer, prompts, n: int, greedy: bool, max_new_tokens: int, batch_size: int, stop_text: str) -> list[list[str]]:
    """n completions per prompt (greedy: one), generated in left-padded batches."""
    pad = tokenizer.pad_token_id
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, do_sample=not greedy)
    if not greedy:
        kwargs.update(top_k=0, top_p=1.0)
    if stop_text:
        kwargs.update(stop_strings=[stop_text], tokenizer=tokenizer)
    flat = [p for p in prompts for _ in range(n)]
    texts = []
    for start in tqdm(range(0, len(flat), batch_size), desc="generate", unit="batch"):
        ids, mask = left_pad([p.input_ids for p in flat[start : start + batch_size]], pad)
        out = lm.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), **kwargs)
        texts += tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def evaluate(lm, tokenizer, config: GSM8KConfig, n_problems: int, n_samples: int, ks: list[int], max_new_tokens: int,
             batch_size: int, seed: int = 0) -> dict:
    task = GSM8KTask(config, tokenizer)
    rows = task.problems("test")[:n_problems]
    prompts = task.prompts_of(rows)
    grade = lambda text, p: is_correct(text, p.answer, config.answer_extraction, config.stop_text)  # noqa: E731
    greedy = complete(lm, tokenizer, prompts, 1, True, max_new_tokens, batch_size, config.stop_text)
    torch.manual_seed(seed)
    sampled = complete(lm, tokenizer, prompts, n_samples, False, max_new_tokens, batch_size, config.stop_text) if n_samples else []
    problems = []
    for i, p in enumerate(prompts):
        row = {"question": p.fields["question"], "answer": p.answer, "solution_steps": solution_steps(rows[i][0]["answer"]),
               "greedy": greedy[i][0], "greedy_correct": grade(greedy[i][0], p)}
        if n_samples:
            row["samples"] = sampled[i]
            row["samples_correct"] = [grade(t, p) for t in sampled[i]]
        problems.append(row)
    answered = [before_stop(r["greedy"], config.stop_text) for r in problems]
    summary = {"n_problems": len(problems), "pass@1_greedy": sum(r["greedy_correct"] for r in problems) / len(problems),
               "parseable_greedy": sum(extract_answer(t, config.answer_extraction) is not None for t in answered) / len(problems),
               "response_tokens_greedy": sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in answered) / len(problems)}
    for k in ks if n_samples else []:
        correct = [sum(r["samples_correct"]) for r in problems]
        summary[f"pass@{k}_any_of_first_k"] = sum(any(r["samples_correct"][:k]) for r in problems) / len(problems)
        summary[f"pass@{k}_unbiased"] = sum(pass_at_k(n_samples, c, k) for c in correct) / len(problems)
    return {"summary": summary, "problems": problems}


def without_sample_texts(result: dict) -> dict:
    """The evaluation less each sampled completion's text: every score the report reads (greedy text and correctness,
    each sample's correctness) stays; the texts are five sixths of a gzipped file."""
    return {**result, "problems": [{k: v for k, v in p.items() if k != "samples"} for p in result["problems"]]}


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; `--preset` supplies defaults that explicit flags override."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved policy dir (full model or adapter), alias or hub id")
    parser.add_argument("--dataset_path", default="openai/gsm8k", help="test problems: hub id or local jsonl/parquet")
    parser.add_argument("--n_problems", type=int, default=200)
    parser.add_argument("--n_samples", type=int, default=0, help="sampled completions per problem (0: greedy only)")
    parser.add_argument("--k", type=int, nargs="+", default=[1])
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--preset", default="", help="take the prompt, chat template, problem subset and held-out file of "
                        "this configs/gsm8k.py preset (e.g. offline: what its runs trained on); explicit flags override it")
    parser.add_argument("--use_chat_template", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--prompt_template", default=GSM8KConfig.prompt_template, help="with the field {question} (default: the paper's one-shot prompt)")
    parser.add_argument("--max_solution_steps", type=int, default=-1, help="only problems whose reference takes at most N calculation steps (-1: all)")
    parser.add_argument("--answer_extraction", default="flexible", choices=["flexible", "strict"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample_texts", action=argparse.BooleanOptionalAction, default=True,
                        help="keep each sampled completion's text in the output (--no-sample_texts: only whether each was "
                             "right, what the report reads: ~26 KB gzipped for 200 problems x 8 samples instead of ~134 KB)")
    parser.add_argument("--out", default="", help="JSON output, gzip-compressed if it ends in .gz (default: <model dir>/gsm8k_eval.json, or ./gsm8k_eval.json)")
    if preset := parser.parse_known_args(argv)[0].preset:
        task = load_task_config("gsm8k", preset)
        parser.set_defaults(**{key: task[key] for key in ("use_chat_template", "prompt_template", "max_solution_steps") if key in task},
                            **({"dataset_path": task["eval_dataset_path"]} if "eval_dataset_path" in task else {}))
    args = parser.parse_args(argv)
    if args.n_samples and max(args.k) > args.n_samples:
        parser.error(f"--k {max(args.k)} needs --n_samples >= {max(args.k)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = GSM8KConfig(eval_dataset_path=args.dataset_path, use_chat_template=args.use_chat_template, prompt_template=args.prompt_template,
                         answer_extraction=args.answer_extraction, max_solution_steps=args.max_solution_steps)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm, tokenizer = load_policy_for_eval(args.model, args.dtype, device)
    result = evaluate(lm, tokenizer, config, args.n_problems, args.n_samples, args.k, args.max_new_tokens, args.batch_size, args.seed)
    if not args.sample_texts:
        result = without_sample_texts(result)
    result["model"], result["settings"] = args.model, vars(args)
    out = Path(args.out or (Path(args.model) / "gsm8k_eval.json" if Path(args.model).is_dir() else "gsm8k_eval.json"))
    write_json(out, result)
    print("| metric | value |\n| --- | --- |")
    for key, value in result["summary"].items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    print(f"per-problem results: {out}")
    return result


if __name__ == "__main__":
    main()
