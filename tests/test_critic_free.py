"""Critic-free advantages (RLOO, GRPO), the KL as a loss term, and k samples per prompt."""
import math

import numpy as np
import pytest
import torch

from cory.policy import FrozenReference, ValueHeadPolicy
from cory.ppo import PPOTrainer
from cory.ppo_config import PPOConfig
from cory.ppo_math import GRPO_EPS, group_advantages, kl_loss
from tests.learning import cory_learns, ppo_learns, target_token_agents
from tests.tiny import tiny_gpt2

approx = lambda x: pytest.approx(x, abs=1e-6)  # noqa: E731
SCORES = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])  # two prompts x three samples, in consecutive groups


def test_rloo_subtracts_the_mean_of_the_group_s_other_samples():
    # group 1: 1 - (2+6)/2 = -3, 2 - (1+6)/2 = -1.5, 6 - (1+2)/2 = 4.5; group 2: 0 - 3/2, 0 - 3/2, 3 - 0
    assert group_advantages(SCORES, 3, "rloo").tolist() == approx([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])


def test_grpo_standardises_within_the_group():
    # group 1: mean 3, deviations -2, -1, 3, unbiased var (4+1+9)/2 = 7; group 2: mean 1, deviations -1, -1, 2, var 6/2 = 3
    s7, s3 = math.sqrt(7) + GRPO_EPS, math.sqrt(3) + GRPO_EPS
    assert group_advantages(SCORES, 3, "grpo").tolist() == approx([-2 / s7, -1 / s7, 3 / s7, -1 / s3, -1 / s3, 2 / s3])


def test_a_group_of_equal_scores_has_zero_advantage():
    for estimator in ("rloo", "grpo"):
        assert group_advantages(torch.tensor([2.0, 2.0, 5.0, 1.0]), 2, estimator).tolist()[:2] == [0.0, 0.0]


def test_groups_must_fit_the_batch():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(SCORES, 4, "rloo")


def test_kl_loss_is_the_k3_estimator():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -2.0, 0.0]])  # the last token is padding
    # k3 = exp(ref - logp) - (ref - logp) - 1: exp(-0.5) + 0.5 - 1 = 0.106531, then 0; mean over the 2 valid tokens
    assert kl_loss(logprobs, ref, torch.tensor([[1, 1, 0]])).item() == approx((math.exp(-0.5) - 0.5) / 2)


@pytest.mark.parametrize("settings, message", [
    (dict(advantage_estimator="rloo"), "samples_per_prompt >= 2"),
    (dict(advantage_estimator="ppo"), "advantage_estimator must be one of"),
    (dict(samples_per_prompt=3), "divide batch_size"),
])
def test_bad_critic_free_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(batch_size=4, mini_batch_size=2, **settings)


def critic_free_trainer(tokenizer, accelerator, estimator="rloo", vocab=50257, **overrides):
    config = PPOConfig(**{"batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "learning_rate": 1e-3,
                          "advantage_estimator": estimator, "samples_per_prompt": 2, **overrides})
    policy = ValueHeadPolicy(tiny_gpt2(vocab, n_embd=16), critic=False)
    return PPOTrainer(config, policy, FrozenReference(tiny_gpt2(vocab, n_embd=16, seed=1)), tokenizer, accelerator)


def test_no_value_head_exists_when_critic_free(tokenizer, accelerator):
    trainer = critic_free_trainer(tokenizer, accelerator)
    assert trainer.policy.v_head is None
    assert not any("v_head" in name for name, _ in trainer.policy.named_parameters())
    assert sum(p.numel() for p in trainer.params) == sum(p.numel() for p in trainer.policy.lm.parameters())
    queries = [torch.tensor([10, 11]), torch.tensor([10, 11]), torch.tensor([20]), torch.tensor([20])]
    responses = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4, 5, 6]), torch.tensor([7])]
    stats = trainer.step(queries, responses, [1.0, 0.0, 0.5, 0.5])
    assert not [k for k in stats if "/val/" in k or k.startswith("ppo/returns") or k == "ppo/loss/value"]
    assert np.isfinite(stats["ppo/loss/policy"])


def test_a_policy_must_match_its_estimator(tokenizer, accelerator):
    config = PPOConfig(batch_size=4, mini_batch_size=2, advantage_estimator="grpo", samples_per_prompt=2)
    with pytest.raises(ValueError, match="without a value head"):
        PPOTrainer(config, ValueHeadPolicy(tiny_gpt2(n_embd=16)), FrozenReference(tiny_gpt2(n_embd=16)), tokenizer, accelerator)


def test_kl_in_loss_pulls_the_policy_to_the_reference_and_leaves_the_reward_alone(tokenizer, accelerator):
    """Equal scores in every group: zero advantage, so the only force is the KL term."""
    trainer = critic_free_trainer(tokenizer, accelerator, kl_in_loss=True, init_kl_coef=1.0, adap_kl_ctrl=False,
                                  learning_rate=1e-2, batch_size=8, mini_batch_size=8, ppo_epochs=1)
    with torch.no_grad():
        trainer.policy.lm.lm_head.weight.mul_(30)  # peaked logits: far from the reference
    queries = [torch.tensor([10 + i // 2, 11]) for i in range(8)]
    responses = [torch.tensor([1, 2, 3, 4]) for _ in range(8)]
    kls = []
    for _ in range(10):
        stats = trainer.step(queries, responses, [1.0] * 8)
        kls.append(stats["ppo/loss/kl"])  # k3 on these tokens, before this step's update
        assert stats["ppo/mean_non_score_reward"] == 0.0 and stats["ppo/loss/kl"] > 0
    assert kls[-1] < 0.5 * kls[0], kls


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_critic_free_ppo_learns_to_emit_a_target_token(tokenizer, accelerator, estimator):
    """8 prompts x 4 responses per step."""
    [trainer] = target_token_agents(tokenizer, accelerator, 1, advantage_estimator=estimator, samples_per_prompt=4)
    rewards = ppo_learns(trainer)
    assert np.mean(rewards[:3]) < 0.25
    assert np.mean(rewards[-3:]) > 0.5, rewards


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_critic_free_cory_agents_both_learn(tokenizer, accelerator, estimator):
    """Each agent's stand-alone share of the target token rises; the observer answers each of the pioneer's k responses."""
    agents = target_token_agents(tokenizer, accelerator, 2, advantage_estimator=estimator, samples_per_prompt=4)
    start, end = cory_learns(agents)
    assert max(start) < 0.3
    assert min(end) > 0.5, (start, end)
