"""The PPO trainer: rollout/train consistency, padding, the reference, the ratio guard, and learning."""
import numpy as np
import pytest
import torch

from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.ppo.config import PPOConfig
from cory.ppo.rollout import Rollout, truncate_after_eos
from tests.learning import ppo_learns, target_token_agents
from tests.tiny import tiny_gpt2

EOS = 50256


def make_trainer(tokenizer, accelerator, **overrides):
    config = PPOConfig(**{"batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 2, "learning_rate": 1e-3, **overrides})
    return PPOTrainer(config, ValueHeadPolicy(tiny_gpt2()), FrozenReference(tiny_gpt2(seed=1)), tokenizer, accelerator)


def batch():
    queries = [torch.tensor([10, 11, 12, 13, 14]), torch.tensor([20]), torch.tensor([30, 31]), torch.tensor([40, 41, 42])]
    responses = [torch.tensor([1, 2, EOS]), torch.tensor([3, 4, 5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10, EOS])]
    return queries, responses, [1.0, -0.5, 0.3, 2.0]


def test_first_minibatch_ratio_is_exactly_one(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    seen = []
    train_minibatch = trainer.update.train_minibatch
    trainer.update.train_minibatch = lambda *a: seen.append(train_minibatch(*a)) or seen[-1]
    trainer.step(*batch())
    assert abs(seen[0]["policy/ratio_mean"] - 1) < 1e-6
    assert seen[0]["policy/approxkl"] < 1e-12
    assert seen[-1]["policy/approxkl"] > 1e-8  # later minibatches see an updated policy


def rows_through_the_policy(trainer) -> list[int]:
    """Rows of every forward the policy's LM runs from now on."""
    rows = []
    trainer.policy.lm.register_forward_hook(lambda m, args, kwargs, out: rows.append(len(kwargs["input_ids"])),
                                            with_kwargs=True)
    return rows


@pytest.mark.parametrize("reuse, expected", [(True, 4 + 2 * 4 - 2), (False, 4 + 2 * 4)])
def test_the_first_minibatch_forward_is_computed_once(tokenizer, accelerator, reuse, expected):
    """4 rows scored, then 2 epochs of 2 minibatches of 2: reusing the rollout's forward saves one minibatch's."""
    trainer = make_trainer(tokenizer, accelerator, reuse_rollout_forward=reuse)
    rows = rows_through_the_policy(trainer)
    trainer.step(*batch())
    assert sum(rows) == expected


def test_an_active_dropout_keeps_the_separate_rollout_forward(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    trainer.policy.lm.transformer.drop.p = 0.1  # train and eval forwards now differ: nothing to reuse
    rows = rows_through_the_policy(trainer)
    trainer.step(*batch())
    assert sum(rows) == 4 + 2 * 4


@pytest.mark.parametrize("overrides", [
    {},  # critic: GAE, 2 epochs
    {"advantage_estimator": "grpo", "samples_per_prompt": 2, "kl_in_loss": True, "mini_batch_size": 1,
     "gradient_accumulation_steps": 2, "ppo_epochs": 1},
], ids=["gae", "grpo-accumulated"])
def test_reusing_the_rollout_forward_equals_the_separate_pass_to_rounding(tokenizer, accelerator, overrides):
    """Three steps each way from the same weights: the stats and weights agree to float32 rounding (measured
    at most ~1e-7 on these; the bound leaves room for Adam's division by small second moments)."""
    results = []
    for reuse in (True, False):
        torch.manual_seed(0)
        config = PPOConfig(**{"batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 2, "learning_rate": 1e-3,
                              "reuse_rollout_forward": reuse, **overrides})
        policy = ValueHeadPolicy(tiny_gpt2(), critic=config.advantage_estimator == "gae")
        trainer = PPOTrainer(config, policy, FrozenReference(tiny_gpt2(seed=1)), tokenizer, accelerator)
        stats = [trainer.step(*batch()) for _ in range(3)]
        results.append((stats, [p.detach().clone() for p in trainer.policy.parameters()]))
    (fused, fused_params), (separate, separate_params) = results
    gap = max((a - b).abs().max().item() for a, b in zip(fused_params, separate_params))
    assert gap < 1e-5
    for a, b in zip(fused, separate):
        for key in ("objective/kl_exact", "ppo/loss/policy", "ppo/policy/approxkl", "ppo/mean_scores"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), key


def test_log_probs_do_not_depend_on_padding(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    queries, responses, _ = batch()
    together = trainer.score_rollout(Rollout.from_lists(queries, responses, EOS, "cpu"))
    for i in range(len(queries)):
        alone = trainer.score_rollout(Rollout.from_lists([queries[i]], [responses[i]], EOS, "cpu"))
        n = len(responses[i])
        for key in ("logprobs", "values", "ref_logprobs", "exact_kl"):
            torch.testing.assert_close(getattr(together, key)[i, :n], getattr(alone, key)[0, :n], atol=1e-5, rtol=0)


def test_mask_keeps_a_real_eos_that_equals_the_pad_token(tokenizer):
    rollout = Rollout.from_lists(*batch()[:2], pad_id=EOS, device="cpu")
    assert rollout.response_mask.sum(-1).tolist() == [3, 5, 1, 3]  # the EOS ending responses 0 and 3 counts


def test_step_moves_the_policy_never_the_reference(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    policy_before = [p.clone() for p in trainer.policy.parameters()]
    ref_before = [p.clone() for p in trainer.reference.lm.parameters()]
    stats = trainer.step(*batch())
    assert any(not torch.equal(a, b) for a, b in zip(policy_before, trainer.policy.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ref_before, trainer.reference.lm.parameters()))
    for key in ("objective/kl", "objective/kl_exact", "objective/kl_coef", "objective/entropy", "ppo/loss/policy",
                "ppo/loss/value", "ppo/policy/clipfrac", "ppo/policy/approxkl", "ppo/returns/mean", "ppo/val/vpred",
                "env/reward_mean", "env/reward_std", "tokens/responses_len_mean", "time/ppo/total"):
        assert np.isfinite(stats[key]), key
    assert stats["env/reward_mean"] == pytest.approx(np.mean([1.0, -0.5, 0.3, 2.0]))
    assert stats["objective/kl_exact"] > 0


def test_ratio_guard_skips_minibatches_and_counts_them(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator, ratio_threshold=0.5)  # ratio ~1 > 0.5: every minibatch skipped
    before = [p.clone() for p in trainer.policy.parameters()]
    stats = trainer.step(*batch())
    assert stats["ppo/skipped_minibatches"] == 4  # 2 epochs x 2 minibatches
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))
    assert all(np.isnan(stats[f"ppo/loss/{k}"]) for k in ("policy", "value", "total"))  # nothing trained: no loss to log
    assert np.isfinite(stats["ppo/policy/ratio_mean"])  # what was measured is still logged


def test_step_rejects_a_wrong_batch_size(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    queries, responses, scores = batch()
    with pytest.raises(ValueError, match="batch_size"):
        trainer.step(queries[:3], responses[:3], scores[:3])


def test_truncate_after_first_eos():
    assert truncate_after_eos(torch.tensor([5, 6, 9, 9, 9]), {9}).tolist() == [5, 6, 9]
    assert truncate_after_eos(torch.tensor([5, 6, 7]), {9}).tolist() == [5, 6, 7]


def test_ppo_learns_to_emit_a_target_token(tokenizer, accelerator):
    """PPO must raise the target token's share from ~0.1 to > 0.5."""
    rewards = ppo_learns(target_token_agents(tokenizer, accelerator, 1)[0])
    assert np.mean(rewards[:3]) < 0.25
    assert np.mean(rewards[-3:]) > 0.5


def test_target_kl_stops_the_epochs_early(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator, ppo_epochs=4, target_kl=1e-12)
    trainer.step(*batch())
    first_param_state = next(iter(trainer.optimizer.state.values()))
    assert int(first_param_state["step"]) == 2  # one epoch of 2 minibatches, then policy KL > 1.5 * target_kl
    untargeted = make_trainer(tokenizer, accelerator, ppo_epochs=4)
    untargeted.step(*batch())
    assert int(next(iter(untargeted.optimizer.state.values()))["step"]) == 8
