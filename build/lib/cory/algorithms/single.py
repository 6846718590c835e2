"""The PPO baseline as one agent behind the same `step(step, prompts, gen_kwargs)` interface as `CORY`."""
from __future__ import annotations

import time

from tqdm import tqdm

from cory.ppo.trainer import PPOTrainer
from cory.tasks.task import Prompt, RewardErrorReport, Task, safe_rewards


class SinglePPO:
    names = ("policy",)

    def __init__(self, trainer: PPOTrainer, tokenizer, task: Task):
        self.agents, self.tokenizer, self.task = [trainer], tokenizer, task
        self.report_reward_error = RewardErrorReport(tqdm.write)

    def role_evaluations(self, prompts: list[Prompt], gen_kwargs: dict, alone: dict[str, dict], seed: int) -> dict:
        """One agent has no other role."""
        return {}

    def step(self, step: int, prompts: list[Prompt], gen_kwargs: dict) -> tuple[dict, list[dict]]:
        trainer = self.agents[0]
        t0 = time.perf_counter()
        # 1. sample responses
        queries, cut = trainer.fit_to_context([x.input_ids for x in prompts], gen_kwargs["max_new_tokens"])
        responses = trainer.generate(queries, **gen_kwargs)
        t_gen = time.perf_counter()
        # 2. score them
        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        rewards, failures, error = safe_rewards(self.task, prompts, texts)
        self.report_reward_error(error, failures, len(texts))
        t_score = time.perf_counter()
        # 3. one PPO step
        stats = trainer.step(queries, responses, rewards, score_error=error)
        stats.update({
            "env/reward_failures": float(failures),
            "tokens/truncated_prompts": float(cut),
            "time/generate": t_gen - t0,
            "time/score": t_score - t_gen,
        })
        stats.setdefault("env/reward_mean", rewards.nanmean().item())
        samples = [{"query": x.text, "response": r, "reward": s} for x, r, s in zip(prompts, texts, rewards.tolist())]
        return stats, samples
