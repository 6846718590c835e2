"""The learning tests' common task: a random 10-token model is rewarded for the share of one target token."""
from __future__ import annotations

import numpy as np
import torch

from cory.algorithms.cory import CORY, CORYConfig
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.ppo.config import PPOConfig
from cory.tasks.task import Prompt
from tests.tiny import TextTask, tiny_gpt2

VOCAB, TARGET = 10, 3
GEN = dict(do_sample=True, top_k=0, max_new_tokens=6, min_new_tokens=6, pad_token_id=VOCAB - 1)
SETTINGS = dict(batch_size=32, mini_batch_size=8, ppo_epochs=4, learning_rate=3e-3, init_kl_coef=0.01, adap_kl_ctrl=False)


def target_token_agents(tokenizer, accelerator, n: int, **settings) -> list[PPOTrainer]:
    """`n` agents (value heads unless critic-free) on one reference; EOS = pad = the last token."""
    torch.manual_seed(0)
    config = PPOConfig(**{**SETTINGS, **settings})
    reference = FrozenReference(tiny_gpt2(VOCAB, n_embd=16))
    agents = [PPOTrainer(config, ValueHeadPolicy(tiny_gpt2(VOCAB, n_embd=16), critic=not config.critic_free), reference,
                         tokenizer, accelerator, seed=i) for i in range(n)]
    for agent in agents:
        agent.eos_ids, agent.pad_id = {VOCAB - 1}, VOCAB - 1
    return agents


def share_of_target(responses) -> list[float]:
    return [(r == TARGET).float().mean().item() for r in responses]


def grouped_queries(n_responses: int, k: int) -> list[torch.Tensor]:
    """n_responses / k random 3-token queries, each repeated k times in a row (the loop's layout)."""
    return [q for q in (torch.randint(0, VOCAB - 1, (3,)) for _ in range(n_responses // k)) for _ in range(k)]


def ppo_learns(trainer: PPOTrainer, steps: int = 40) -> list[float]:
    """One agent trained alone; the batch mean reward of each step."""
    rewards = []
    for _ in range(steps):
        queries = grouped_queries(trainer.config.batch_size, trainer.config.samples_per_prompt)
        responses = trainer.generate(queries, **GEN)
        scores = share_of_target(responses)
        rewards.append(float(np.mean(scores)))
        trainer.step(queries, responses, scores)
    return rewards


def cory_learns(agents: list[PPOTrainer], steps: int = 30, **cory_settings) -> tuple[list[float], list[float]]:
    """CORY without knowledge transfer (texts: one character per token); each agent's stand-alone share of the
    target token on 64 fresh queries, before and after."""
    decode = lambda ids: ["".join(chr(65 + int(t)) for t in row) for row in ids]  # noqa: E731
    tokenizer_stub = type("Tok", (), {"batch_decode": staticmethod(lambda ids, skip_special_tokens=True: decode(ids))})()
    reward = TextTask(lambda texts: [t[-6:].count(chr(65 + TARGET)) / 6 for t in texts])  # texts: query + response
    cory = CORY(CORYConfig(swap_freq=5, knowledge_transfer=False, n_agents=len(agents), **cory_settings), agents, tokenizer_stub, reward)
    alone = lambda agent: float(np.mean(share_of_target(agent.generate(grouped_queries(64, 1), **GEN))))  # noqa: E731
    start = [alone(a) for a in agents]
    config = agents[0].config
    for step in range(steps):
        prompts = [Prompt(q, decode([q])[0]) for q in grouped_queries(config.batch_size, config.samples_per_prompt)]
        cory.step(step, prompts, GEN)
    return start, [alone(a) for a in agents]
