"""CORY (Ma et al., NeurIPS 2024): one LLM duplicated into a pioneer and an observer, trained together.

Each step: the pioneer answers x with y1; the observer answers a prompt built from x and y1 with y2
(knowledge transfer); both are trained by PPO on the collective reward r(x,y1) + r(x,y2); every `swap_freq`
steps the two agents exchange roles. Role exchange is a relabelling in memory: each agent keeps its
weights, value head, optimizer state and KL controller (the official code saved and reloaded both models
every swap, which also reset Adam).

Beyond the paper, `n_agents` > 2 makes a chain: the agent at position i answers a prompt holding x and the
responses of positions 0..i-1, every agent learns the sum of all task rewards, and every `swap_freq` steps each
agent moves one position on (the last becomes the pioneer).
"""
from __future__ import annotations

import string
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from cory.algorithms.agents import agent_names
from cory.errors import UsageError
from cory.eval.roles import evaluate_observer_roles
from cory.ppo.trainer import PPOTrainer
from cory.tasks.task import Prompt, RewardErrorReport, Task, safe_rewards
from cory.tasks.templates import RESPONSE_FIELDS, check_observer_template, check_template

CREDITS = ("collective", "downstream")
GROUPINGS = ("query", "prompt")


@dataclass
class CORYConfig:
    """The multi-agent settings; each agent's PPO settings are a `PPOConfig`."""

    n_agents: int = 2
    """agents in the chain: 2 is the paper's pioneer and observer; with N > 2 the agent at position i sees the
    query and the responses of positions 0..i-1"""
    swap_freq: int = 5
    """exchange roles every N steps (0: never); with more than two agents each moves one position on"""
    other_reward_coef: float = 1.0
    """score = r_self + c * (sum of the other agents' task rewards): 1 cooperative (the paper), 0 independent, < 0 competitive"""
    knowledge_transfer: bool = True
    """observers see the earlier responses; False: every prompt is the query alone"""
    observer_template: str = ""
    """observer prompt, with {query} (the prompt's tokens) or a task's text fields, and {pioneer_response} (the
    response just before) or {previous_responses} (every earlier one; needed for n_agents > 2); checked against
    the task's fields when CORY is built; '' = the task's own (the paper's; for N > 2 with {previous_responses})"""
    response_template: str = ""
    """how each earlier response appears inside {previous_responses}, in order: fields {response} and {position}
    (1 = the pioneer); '' = the task's own"""
    credit: str = "collective"
    """which rewards join a position's own in its score: collective (every other agent's; the paper's Eq. 4) or
    downstream (only the positions after it: the earlier ones are fixed once its prompt is, so leaving them out
    keeps the gradient unbiased and lowers its variance)"""
    group_by: str = "query"
    """critic-free: the group an observer is compared within. query: the k responses to one query, each seeing
    another pioneer response (N*k generations per query); prompt: the last position answers each earlier
    chain observer_samples (m) times, so its group shares the exact prompt and earlier positions score the
    mean of its m rewards ((N-1)*k + k*m generations per query; k = samples_per_prompt)"""
    observer_samples: int = 2
    """m, the last position's answers per prompt with group_by prompt"""

    def __post_init__(self) -> None:
        if not 2 <= self.n_agents <= 26:
            raise UsageError(f"n_agents must lie in 2..26 (agents are named agent_a..agent_z; one agent is the PPO "
                             f"baseline), got {self.n_agents}")
        if self.swap_freq < 0:
            raise UsageError(f"swap_freq must be >= 0 (0 disables role exchange), got {self.swap_freq}")
        if self.credit not in CREDITS:
            raise UsageError(f"credit must be one of {CREDITS}, got {self.credit!r}")
        if self.group_by not in GROUPINGS:
            raise UsageError(f"group_by must be one of {GROUPINGS}, got {self.group_by!r}")
        if self.group_by == "prompt" and self.observer_samples < 2:
            raise UsageError(f"group_by prompt compares an observer's answers to one prompt: observer_samples must be >= 2, "
                             f"got {self.observer_samples}")
        if self.response_template:
            check_template("response_template", self.response_template, RESPONSE_FIELDS, required={"response"})


def check_with_ppo(config: CORYConfig, critic_free: bool) -> None:
    """Settings of CORY that need a critic-free PPO (checked before any model loads)."""
    if config.group_by == "prompt" and not critic_free:
        raise UsageError("group_by prompt builds critic-free groups: set advantage_estimator rloo or grpo")


def roles_at(step: int, swap_freq: int, n_agents: int = 2) -> tuple[int, ...]:
    """The agent index at each position of the chain at `step` (position 0: the pioneer): (0, 1, ..., N-1) for
    the first `swap_freq` steps, then every `swap_freq` steps each agent moves one position on (mod N)."""
    shift = step // swap_freq if swap_freq else 0
    return tuple((position - shift) % n_agents for position in range(n_agents))


def role_names(n_agents: int) -> tuple[str, ...]:
    """The positions' names in logs: pioneer, observer (the paper), or pioneer, observer_1, observer_2, ..."""
    if n_agents == 2:
        return ("pioneer", "observer")
    return ("pioneer",) + tuple(f"observer_{i}" for i in range(1, n_agents))


def collective_scores(task_rewards: list[torch.Tensor], coef: float, credit: str = "collective", branch: int = 1) -> list[torch.Tensor]:
    """Each position's training score: its own task reward plus `coef` times the sum of the others' (`collective`,
    Eq. 4 at coef=1 and two agents) or of the later positions' only (`downstream`).

    `task_rewards[i]` holds one reward per chain, except the last position's, which holds `branch` consecutive
    rewards per chain (group_by prompt): an earlier position counts their mean, and the last position counts each
    earlier reward once per branch."""
    last = len(task_rewards) - 1
    per_chain = task_rewards[:last] + [task_rewards[last].reshape(-1, branch).mean(1)]
    scores = []
    for i, reward in enumerate(task_rewards):
        others = [j for j in range(len(task_rewards)) if j != i and (credit == "collective" or j > i)]
        spread = (lambda r: r.repeat_interleave(branch)) if i == last else (lambda r: r)  # noqa: E731
        scores.append(reward + coef * sum(spread(per_chain[j]) for j in others))
    return scores


def observer_prompts(template: str, prompts: list[Prompt], previous: list[list[torch.Tensor]], tokenizer, eos_ids: set[int],
                     response_template: str = "{response}") -> list[torch.Tensor]:
    """Token ids of an observer's prompts, built piece by piece from the template; `previous[j][b]` is the
    response of position j to prompt b ({pioneer_response} is the last of them; {previous_responses} all, each
    formatted by `response_template`).

    The query and the responses enter as their own token ids (each response without its EOS), so the observer
    sees exactly what the earlier agents wrote; only literal text and task text fields are tokenized.
    """
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"] if text else []  # noqa: E731
    pieces = [(encode(text), field) for text, field, _, _ in string.Formatter().parse(template)]
    response_pieces = [(encode(text), field) for text, field, _, _ in string.Formatter().parse(response_template)]
    eos = torch.tensor(sorted(eos_ids))
    strip = lambda response: response[~torch.isin(response, eos.to(response.device))].tolist()  # noqa: E731

    def fill(parts, values: dict, prompt: Prompt) -> list[int]:
        ids: list[int] = []
        for literal, field in parts:
            ids += literal
            if field is not None:
                ids += values[field] if field in values else encode(prompt.fields[field])
        return ids

    result = []
    for b, prompt in enumerate(prompts):
        responses = [strip(position[b]) for position in previous]
        earlier = [fill(response_pieces, {"response": r, "position": encode(str(j + 1))}, prompt) for j, r in enumerate(responses)]
        values = {"query": prompt.input_ids.tolist(), "pioneer_response": responses[-1], "previous_responses": sum(earlier, [])}
        result.append(torch.tensor(fill(pieces, values, prompt), dtype=torch.long))
    return result


class CORY:
    """Drives `n_agents` `PPOTrainer`s (agent A, agent B, ...) through the CORY loop on a task."""

    def __init__(self, config: CORYConfig, agents: list[PPOTrainer], tokenizer, task: Task):
        if len(agents) != config.n_agents:
            raise ValueError(f"CORY with n_agents={config.n_agents} got {len(agents)} agents")
        template = config.observer_template or task.observer_template
        if config.n_agents > 2 and not config.observer_template:  # the task's (paper's) template shows one response
            template = template.replace("{pioneer_response}", "{previous_responses}")
        check_observer_template(template, task.template_fields, config.n_agents)
        check_with_ppo(config, agents[0].config.critic_free)
        if agents[0].deepspeed and agents[0].policy.lm is agents[1].policy.lm:
            raise UsageError("LoRA agents share one base model, which several DeepSpeed engines cannot hold: "
                             "use DDP (configs/accelerate/ddp.yaml) for LoRA CORY, or full fine-tuning with DeepSpeed")
        self.config, self.agents, self.tokenizer, self.task = config, agents, tokenizer, task
        self.names, self.roles = agent_names(len(agents)), role_names(len(agents))
        self.template = task.wrap_template(template)
        self.response_template = config.response_template or task.response_template
        self.report_reward_error = RewardErrorReport(tqdm.write)

    def observer_queries(self, observer: PPOTrainer, prompts: list[Prompt], queries: list[torch.Tensor],
                         previous: list[list[torch.Tensor]], max_new_tokens: int) -> tuple[list[torch.Tensor], int]:
        """What an observer sees (the template around x and the earlier responses `previous[position][prompt]`,
        or x alone without knowledge transfer), cut to its context; returns (queries, number cut)."""
        if self.config.knowledge_transfer:
            eos_ids = set().union(*(agent.eos_ids for agent in self.agents))
            queries = observer_prompts(self.template, prompts, previous, self.tokenizer, eos_ids, self.response_template)
        return observer.fit_to_context(queries, max_new_tokens)

    def role_evaluations(self, prompts: list[Prompt], gen_kwargs: dict, alone: dict[str, dict], seed: int) -> dict:
        """Beyond each agent alone: each agent as observer of the other's answer and of its own (cory.eval.roles)."""
        return evaluate_observer_roles(self, prompts, gen_kwargs, alone, seed=seed)

    def step(self, step: int, prompts: list[Prompt], gen_kwargs: dict) -> tuple[dict, list[dict]]:
        """One CORY iteration on a batch of prompts; returns (stats, samples)."""
        cfg = self.config
        order = roles_at(step, cfg.swap_freq, len(self.agents))  # agent index at each position
        last, branch = len(order) - 1, cfg.observer_samples if cfg.group_by == "prompt" else 1
        t0 = time.perf_counter()

        # 1. the pioneer answers the query; 2. each observer answers a prompt holding the query and the earlier
        #    answers (group_by prompt: the last one answers each prompt `branch` times, in a row)
        queries, responses, cut = self._answer_in_chain(order, prompts, gen_kwargs, branch)
        t_gen = time.perf_counter()

        # 3. task rewards, each on the query plus the agent's own response; then the collective scores
        texts = [self.tokenizer.batch_decode(r, skip_special_tokens=True) for r in responses]
        scored_prompts = prompts * last + [p for p in prompts for _ in range(branch)]
        rewards, reward_failures, reward_error = safe_rewards(self.task, scored_prompts, sum(texts, []))
        self.report_reward_error(reward_error, reward_failures, len(rewards))
        task_rewards = list(rewards.split([len(prompts)] * last + [len(prompts) * branch]))
        scores = collective_scores(task_rewards, cfg.other_reward_coef, cfg.credit, branch)
        t_score = time.perf_counter()

        # 4. each agent's own PPO step (in chain order), against the shared frozen reference
        agent_stats = [self.agents[idx].step(queries[position], responses[position], scores[position], score_error=reward_error,
                                             group_size=branch if position == last and branch > 1 else None)
                       for position, idx in enumerate(order)]
        stats = {
            "cory/pioneer_agent": float(order[0]),
            "cory/collective_reward": sum(r.reshape(len(prompts), -1).mean(1) for r in task_rewards).mean().item(),
            "cory/generations_per_query": sum(map(len, responses)) * self.agents[0].config.samples_per_prompt / len(prompts),
            "env/reward_failures": float(reward_failures),
            "tokens/truncated_prompts": float(cut),
            "time/generate": t_gen - t0,
            "time/score": t_score - t_gen,
            "time/ppo_step": time.perf_counter() - t_score,
            **self._role_and_agent_stats(order, agent_stats, task_rewards, scores),
        }
        return stats, self._samples(prompts, texts, task_rewards)

    def _answer_in_chain(self, order, prompts: list[Prompt], gen_kwargs: dict, branch: int):
        """Each position's queries and responses, in chain order; returns (queries, responses, prompts cut)."""
        max_new, last = gen_kwargs["max_new_tokens"], len(order) - 1
        queries, responses, cut = [], [], 0
        for position, idx in enumerate(order):
            agent = self.agents[idx]
            if position == 0:
                agent_queries, n_cut = agent.fit_to_context([x.input_ids for x in prompts], max_new)
            else:
                agent_queries, n_cut = self.observer_queries(agent, prompts, queries[0], responses, max_new)
            if position == last and branch > 1:
                agent_queries = [q for q in agent_queries for _ in range(branch)]
            queries.append(agent_queries)
            responses.append(agent.generate(agent_queries, **gen_kwargs))
            cut += n_cut
        return queries, responses, cut

    def _role_and_agent_stats(self, order, agent_stats, task_rewards, scores) -> dict[str, float]:
        """Each role's view once (pioneer/..., observer/...), and each agent's (a curve follows an agent across swaps)."""
        stats = {}
        for role, idx, own_stats, task_reward, score in zip(self.roles, order, agent_stats, task_rewards, scores):
            stats.update({
                f"{role}/task_reward": task_reward.mean().item(),
                f"{role}/task_reward_std": task_reward.std().item(),
                f"{role}/score": score.mean().item(),
                f"{role}/kl": own_stats.get("objective/kl", float("nan")),
                f"{role}/kl_exact": own_stats.get("objective/kl_exact", float("nan")),
                f"{role}/kl_coef": own_stats.get("objective/kl_coef", float("nan")),
                f"{role}/response_len": own_stats.get("tokens/responses_len_mean", float("nan")),
                f"{role}/within_prompt_share": own_stats.get("critic_free/within_prompt_share", float("nan")),
            })
            stats[f"{self.names[idx]}/task_reward"] = task_reward.mean().item()
            stats.update({f"{self.names[idx]}/{k}": v for k, v in own_stats.items()})
        return stats

    def _samples(self, prompts: list[Prompt], texts: list[list[str]], task_rewards) -> list[dict]:
        samples = []
        for b, prompt in enumerate(prompts):
            sample = {"query": prompt.text}
            for role, role_texts, task_reward in zip(self.roles, texts, task_rewards):
                first = b * len(role_texts) // len(prompts)  # the last position's first answer to this chain
                sample[role], sample[f"r_{role}"] = role_texts[first], task_reward[first].item()
            samples.append(sample)
        return samples
