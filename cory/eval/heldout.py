"""Held-out evaluation of one policy: task reward, drift from the reference, and their trade-off.

For a fixed set of held-out prompts and a fixed sampling seed: mean/std task reward; KL(pi || pi_ref) summed
over response tokens, exact over the vocabulary (the paper's measure) and as the sampled log-ratio; the paper's
combined reward r_c = r - eta * KL for a few eta; response length; distinct-1/2; a few samples; and the
per-prompt values (reward, KL, length, response ids) that paired confidence intervals need. The whole evaluation
(sampling and scoring) runs under a forked RNG, so evaluating during training does not change the training run.
"""
from __future__ import annotations

import numpy as np
import torch

from cory.ppo.rollout import Rollout
from cory.ppo.trainer import PPOTrainer
from cory.tasks.task import Prompt, Task, safe_rewards

ETAS = (0.01, 0.05, 0.1, 0.2)


def distinct_n(responses: list[list[int]], n: int) -> float:
    """Unique n-grams over all n-grams of all responses (0 when there are none)."""
    grams = [tuple(r[i : i + n]) for r in responses for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def evaluate_agent(trainer: PPOTrainer, task: Task, prompts: list[Prompt], gen_kwargs: dict, seed: int = 0,
                   batch_size: int = 64, etas=ETAS, n_samples: int = 3, queries: list[torch.Tensor] | None = None) -> dict:
    """Sample one response per held-out prompt from `trainer`'s policy and measure it.

    By default the policy answers each prompt alone; `queries` (e.g. observer prompts holding another
    response) replace what it sees, while the reward still scores prompt text + response, as in training,
    and the KL compares policy and reference on the same queries. A prompt too long for the context keeps its
    last tokens, as in training.
    """
    # the whole evaluation under a forked RNG: sampling, and scoring too (a reward pipeline's DataLoader draws a seed
    # from the global RNG on every call), so that how often a run evaluates never changes its training
    with torch.random.fork_rng(devices=[trainer.device] if trainer.device.type == "cuda" else []):
        torch.manual_seed(seed)
        queries = [p.input_ids for p in prompts] if queries is None else queries
        # as in training: a long prompt keeps its end
        queries, _ = trainer.fit_to_context(queries, gen_kwargs["max_new_tokens"])
        responses = trainer.generate(queries, batch_size=batch_size, **gen_kwargs)
        texts = trainer.tokenizer.batch_decode(responses, skip_special_tokens=True)
        rewards, failures, _ = safe_rewards(task, prompts, texts)
        kl_exact, kl_sampled = [], []
        for start in range(0, len(queries), batch_size):
            rollout = Rollout.from_lists(queries[start : start + batch_size], responses[start : start + batch_size],
                                         trainer.pad_id, trainer.device)
            scored = trainer.score_rollout(rollout)
            mask = rollout.response_mask.float()
            kl_exact.append((scored.exact_kl * mask).sum(-1).cpu())
            kl_sampled.append(((scored.logprobs - scored.ref_logprobs) * mask).sum(-1).cpu())
        kl_exact, kl_sampled = torch.cat(kl_exact), torch.cat(kl_sampled)
        tokens = [r.tolist() for r in responses]
        per_prompt = {"reward": [_finite_or_none(v) for v in rewards.tolist()], "kl_exact": kl_exact.tolist(),
                      "response_len": [len(t) for t in tokens], "response_ids": tokens, "response_text": texts}
        result = {
            "reward_mean": rewards.nanmean().item(),
            "reward_std": float(np.nanstd(rewards.numpy())),
            "kl_exact": kl_exact.mean().item(),
            "kl_sampled": kl_sampled.mean().item(),
            "response_len": float(np.mean([len(t) for t in tokens])),
            "distinct_1": distinct_n(tokens, 1),
            "distinct_2": distinct_n(tokens, 2),
            "reward_failures": float(failures),
            "n_prompts": float(len(prompts)),
        }
        for eta in etas:
            result[f"combined_eta{eta:g}"] = result["reward_mean"] - eta * result["kl_exact"]
        samples = [{"query": p.text, "response": t, "reward": r}
                   for p, t, r in zip(prompts[:n_samples], texts, rewards.tolist())]
        return {"metrics": result, "samples": samples, "per_prompt": per_prompt, "responses": responses}


def twins(names: list[str], agents: list[PPOTrainer]) -> dict[str, str]:
    """name -> the first agent's name with exactly the same policy weights (itself if none): CORY's agents start as
    copies, so at step 0 one evaluation stands for all of them, to the bit (same weights, same seed, same prompts).
    Only full models in one process are compared; adapters and sharded weights count as different (evaluated)."""
    def weights(agent):
        return agent.policy.lm.state_dict() if agent.policy.adapter_name is None and agent.accelerator.num_processes == 1 else None

    canonical = {}
    for name, agent in zip(names, agents):
        mine = weights(agent)
        canonical[name] = next((other for other, twin in zip(names, agents)
                                if other in canonical and _equal_weights(mine, weights(twin))), name)
    return canonical


def _equal_weights(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None
