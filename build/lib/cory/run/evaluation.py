"""Held-out evaluation inside a run: each agent alone every `eval_every` steps (and in its other roles before and
after), and the closing table a user reads: reward and KL first vs last, the change with its CI over the prompts.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cory.config import RunConfig
from cory.eval.bootstrap import paired_difference_ci
from cory.eval.heldout import evaluate_agent, twins
from cory.run.tracking import Tracker, summary_line
from cory.tasks.task import Algorithm

EVAL_CONSOLE = {"reward_mean": "reward", "kl_exact": "kl", "combined_eta0.05": "r-0.05kl", "distinct_2": "distinct2"}


def eval_table(rows: list[dict]) -> str:
    """What a user came for, at the end of a run: held-out reward and KL of each agent (and role), first vs last,
    and the reward's change with a 95% CI over the prompts (paired: the same prompts and sampling seed before and
    after), so "it learnt" is read off the interval, not off two means."""
    first, last = min(r["step"] for r in rows), max(r["step"] for r in rows)
    keyed = {(r["agent"], r.get("role", "alone"), r["step"]): r for r in rows}
    lines = [f"held-out evaluation ({len(rows[0]['per_prompt']['reward'])} prompts), after {first} -> {last} steps:",
             f"  {'agent':8} {'role':18} {'reward':>17} {'KL':>15}   reward change, 95% CI over prompts"]
    for agent, role in dict.fromkeys((a, r) for a, r, _ in keyed):
        before, after = keyed.get((agent, role, first)), keyed.get((agent, role, last))
        if before and after:
            change = reward_change(before["per_prompt"]["reward"], after["per_prompt"]["reward"])
            lines.append(f"  {agent:8} {role:18} {before['reward_mean']:7.3f} -> {after['reward_mean']:6.3f} "
                         f"{before['kl_exact']:6.2f} -> {after['kl_exact']:5.2f}   {change}")
    if any(line.endswith(UNCLEAR) for line in lines):
        lines.append(f"  ({UNCLEAR}: on these prompts that change is not told apart from none; more steps or --eval_prompts narrow it)")
    return "\n".join(lines)


UNCLEAR = "CI holds 0"


def reward_change(before: list, after: list) -> str:
    """'+0.240 [+0.121, +0.364] up' for the paired mean change over the prompts both scored (a failed reward is
    None), with what the interval says: up, down, or CI holds 0 (a demo's reader should not have to read signs)."""
    pairs = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    if len(pairs) < 2:
        return "n/a"
    ci = paired_difference_ci([[b for b, _ in pairs]], [[a for _, a in pairs]])
    verdict = "up" if ci["low"] > 0 else "down" if ci["high"] < 0 else UNCLEAR
    return f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] {verdict}"


def held_out_prompts(task, n: int) -> list:
    """A fixed random subset of the task's eval split (the same for every run, seed and algorithm)."""
    prompts = task.prompts("test")
    return [prompts[i] for i in np.random.default_rng(1234).permutation(len(prompts))[:n]]


def evaluate_all(algorithm: Algorithm, task, prompts, run: RunConfig, tracker: Tracker, steps_done: int) -> None:
    """Each agent alone on the held-out prompts (a CORY agent answers x without the other's response); before
    and after training, each agent in the algorithm's other roles (CORY: observer of the other's and of its own answer)."""
    gen = run.generation_kwargs(run.response_max_tokens)
    alone, same = {}, twins(algorithm.names, algorithm.agents)
    for name, agent in zip(algorithm.names, algorithm.agents):  # every process runs it (ZeRO-3 gathers weights to generate)
        alone[name] = alone[same[name]] if same[name] != name else evaluate_agent(agent, task, prompts, gen, seed=run.seed)
        tracker.log_eval(steps_done, name, alone[name])
        if tracker.enabled:
            tqdm.write(f"eval after {steps_done} steps, {name}: " + summary_line(alone[name]["metrics"], EVAL_CONSOLE))
    if run.eval_roles and steps_done in (0, run.steps):
        for (name, role), result in algorithm.role_evaluations(prompts, gen, alone, run.seed).items():
            tracker.log_eval(steps_done, name, result, role=role)
            if tracker.enabled:
                tqdm.write(f"eval after {steps_done} steps, {name} as {role}: " + summary_line(result["metrics"], EVAL_CONSOLE))
