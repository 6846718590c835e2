"""CORY (Ma et al., NeurIPS 2024): one LLM duplicated into a pioneer and an observer, trained together.

Each step: the pioneer answers x with y1; the observer answers a prompt built from x and y1 with y2
(knowledge transfer); both are trained by PPO on the collective reward r(x,y1) + r(x,y2); every `swap_freq`
steps the two agents exchange roles. Role exchange is a relabelling in memory: each agent keeps its
weights, value head, optimizer state and KL controller (the official code saved and reloaded both models
every swap, which also reset Adam).
"""
from __future__ import annotations

import string
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from cory.agents import AGENT_NAMES
from cory.errors import UsageError
from cory.ppo import PPOTrainer
from cory.task import Prompt, RewardErrorReport, Task, safe_rewards
from cory.templates import check_observer_template


@dataclass
class CORYConfig:
    """The two-agent settings; each agent's PPO settings are a `PPOConfig`."""

    swap_freq: int = 5
    """exchange roles every N steps (0: never)"""
    other_reward_coef: float = 1.0
    """score = r_self + c * r_other: 1 cooperative (the paper), 0 independent, < 0 competitive"""
    knowledge_transfer: bool = True
    """observer sees the pioneer's response; False: its prompt is the query alone"""
    observer_template: str = ""
    """observer prompt, with the field {pioneer_response} and {query} (the prompt's tokens) or a task's text fields
    (checked against the task's fields when CORY is built); '' = the task's own (the paper's)"""

    def __post_init__(self) -> None:
        if self.swap_freq < 0:
            raise UsageError(f"swap_freq must be >= 0 (0 disables role exchange), got {self.swap_freq}")


def roles_at(step: int, swap_freq: int) -> tuple[int, int]:
    """(pioneer, observer) agent indices at `step`: (0, 1) for the first `swap_freq` steps, then swapped."""
    if swap_freq == 0 or (step // swap_freq) % 2 == 0:
        return 0, 1
    return 1, 0


def collective_scores(r_pioneer: torch.Tensor, r_observer: torch.Tensor, coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each agent's training score: its own task reward plus `coef` times the other's (Eq. 4 at coef=1)."""
    return r_pioneer + coef * r_observer, r_observer + coef * r_pioneer


def observer_prompts(template: str, prompts: list[Prompt], pioneer_responses: list[torch.Tensor], tokenizer, eos_ids: set[int]) -> list[torch.Tensor]:
    """Token ids of the observer's prompts, built piece by piece from the template.

    The query and the pioneer's response enter as their own token ids (the response without its EOS), so
    the observer sees exactly what the pioneer wrote; only literal text and task text fields are tokenized.
    """
    pieces = list(string.Formatter().parse(template))
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"] if text else []  # noqa: E731
    literal_ids = [encode(text) for text, *_ in pieces]
    eos = torch.tensor(sorted(eos_ids))
    result = []
    for prompt, response in zip(prompts, pioneer_responses):
        values = {"query": prompt.input_ids.tolist(), "pioneer_response": response[~torch.isin(response, eos.to(response.device))].tolist()}
        ids: list[int] = []
        for literal, (_, field, _, _) in zip(literal_ids, pieces):
            ids += literal
            if field is not None:
                ids += values[field] if field in values else encode(prompt.fields[field])
        result.append(torch.tensor(ids, dtype=torch.long))
    return result


class CORY:
    """Drives two `PPOTrainer`s (agent A and agent B) through the CORY loop on a task."""

    names = AGENT_NAMES

    def __init__(self, config: CORYConfig, agents: list[PPOTrainer], tokenizer, task: Task):
        if len(agents) != 2:
            raise ValueError(f"CORY needs exactly two agents, got {len(agents)}")
        template = config.observer_template or task.observer_template
        check_observer_template(template, task.template_fields)
        if agents[0].deepspeed and agents[0].policy.lm is agents[1].policy.lm:
            raise UsageError("two LoRA agents share one base model, which two DeepSpeed engines cannot hold: "
                             "use DDP (configs/accelerate/ddp.yaml) for LoRA CORY, or full fine-tuning with DeepSpeed")
        self.config, self.agents, self.tokenizer, self.task = config, agents, tokenizer, task
        self.template = task.wrap_template(template)
        self.report_reward_error = RewardErrorReport(tqdm.write)

    def observer_queries(self, observer: PPOTrainer, prompts: list[Prompt], queries: list[torch.Tensor],
                         pioneer_responses: list[torch.Tensor], max_new_tokens: int) -> tuple[list[torch.Tensor], int]:
        """What the observer sees (the template around x and y1, or x alone without knowledge transfer),
        cut to its context; returns (queries, number cut)."""
        if self.config.knowledge_transfer:
            eos_ids = set().union(*(agent.eos_ids for agent in self.agents))
            queries = observer_prompts(self.template, prompts, pioneer_responses, self.tokenizer, eos_ids)
        return observer.fit_to_context(queries, max_new_tokens)

    def step(self, step: int, prompts: list[Prompt], gen_kwargs: dict) -> tuple[dict, list[dict]]:
        """One CORY iteration on a batch of prompts; returns (stats, samples)."""
        cfg = self.config
        p, o = roles_at(step, cfg.swap_freq)
        pioneer, observer = self.agents[p], self.agents[o]
        decode = lambda ids: self.tokenizer.batch_decode(ids, skip_special_tokens=True)  # noqa: E731
        t0 = time.perf_counter()

        # 1. the pioneer answers the query
        queries, cut_pioneer = pioneer.fit_to_context([x.input_ids for x in prompts], gen_kwargs["max_new_tokens"])
        pioneer_responses = pioneer.generate(queries, **gen_kwargs)
        # 2. knowledge transfer: the observer answers a prompt holding the query and the pioneer's answer
        obs_queries, cut_observer = self.observer_queries(observer, prompts, queries, pioneer_responses, gen_kwargs["max_new_tokens"])
        observer_responses = observer.generate(obs_queries, **gen_kwargs)
        t_gen = time.perf_counter()

        # 3. task rewards, each on the query plus the agent's own response; then the collective scores
        pioneer_texts, observer_texts = decode(pioneer_responses), decode(observer_responses)
        rewards, reward_failures, reward_error = safe_rewards(self.task, prompts + prompts, pioneer_texts + observer_texts)
        self.report_reward_error(reward_error, reward_failures, len(rewards))
        r_pioneer, r_observer = rewards[: len(prompts)], rewards[len(prompts) :]
        s_pioneer, s_observer = collective_scores(r_pioneer, r_observer, cfg.other_reward_coef)
        t_score = time.perf_counter()

        # 4. each agent's own PPO step, against the shared frozen reference
        pioneer_stats = pioneer.step(queries, pioneer_responses, s_pioneer, score_error=reward_error)
        observer_stats = observer.step(obs_queries, observer_responses, s_observer, score_error=reward_error)
        t_step = time.perf_counter()

        stats = {
            "cory/pioneer_agent": float(p),
            "cory/collective_reward": (r_pioneer + r_observer).mean().item(),
            "env/reward_failures": float(reward_failures),
            "tokens/truncated_prompts": float(cut_pioneer + cut_observer),
            "time/generate": t_gen - t0,
            "time/score": t_score - t_gen,
            "time/ppo_step": t_step - t_score,
        }
        per_role = {"pioneer": (p, pioneer_stats, r_pioneer, s_pioneer), "observer": (o, observer_stats, r_observer, s_observer)}
        for role, (idx, agent_stats, task_reward, score) in per_role.items():
            stats.update({  # the role's view, once
                f"{role}/task_reward": task_reward.mean().item(),
                f"{role}/task_reward_std": task_reward.std().item(),
                f"{role}/score": score.mean().item(),
                f"{role}/kl": agent_stats.get("objective/kl", float("nan")),
                f"{role}/kl_exact": agent_stats.get("objective/kl_exact", float("nan")),
                f"{role}/kl_coef": agent_stats.get("objective/kl_coef", float("nan")),
                f"{role}/response_len": agent_stats.get("tokens/responses_len_mean", float("nan")),
            })
            # the agent's view (a curve follows an agent across swaps): its task reward and its PPO step's stats
            stats[f"{self.names[idx]}/task_reward"] = task_reward.mean().item()
            stats.update({f"{self.names[idx]}/{k}": v for k, v in agent_stats.items()})
        samples = [
            {"query": x.text, "pioneer": pr, "observer": ob, "r_pioneer": a, "r_observer": b}
            for x, pr, ob, a, b in zip(prompts, pioneer_texts, observer_texts, r_pioneer.tolist(), r_observer.tolist())
        ]
        return stats, samples
