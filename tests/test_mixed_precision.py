"""bf16 mixed precision: the mode chosen, frozen weights stored in bf16 without changing a bit, and PPO under autocast."""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from transformers import LlamaConfig, LlamaForCausalLM

from cory.platform import precision
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.ppo.config import PPOConfig
from cory.platform.precision import resolve_mixed_precision
from tests.learning import ppo_learns, target_token_agents
from tests.test_ppo_trainer import batch
from tests.tiny import tiny_gpt2

SCRIPT = Path(__file__).resolve().parent.parent / "imdb_train" / "cory.py"
needs_bf16 = pytest.mark.skipif(not precision.bf16_supported(False), reason="this CPU has no native bf16")


@pytest.fixture
def bf16_accelerator():
    """accelerate's state is a process-wide singleton: switch it to bf16 for one test, then back."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield Accelerator(cpu=True, mixed_precision="bf16")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    Accelerator(cpu=True)


def tiny_llama(vocab: int = 300, seed: int = 0) -> LlamaForCausalLM:
    """SmolLM2's architecture in miniature: RMSNorm, rotary positions, input embedding tied to the head."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
                         bos_token_id=vocab - 1, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    return LlamaForCausalLM(config).eval()


def test_modes_are_resolved_before_anything_loads(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert resolve_mixed_precision("", cuda=False) == "no"
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_mixed_precision("fp16", cuda=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # what `accelerate launch --mixed_precision fp16` sets
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_mixed_precision("", cuda=False)
    assert resolve_mixed_precision("no", cuda=False) == "no"  # the config's own value wins over accelerate's


def test_bf16_falls_back_to_fp32_with_one_line_where_the_hardware_lacks_it(monkeypatch):
    monkeypatch.setattr(precision, "bf16_supported", lambda cuda: False)
    said = []
    assert resolve_mixed_precision("bf16", cuda=False, log=said.append) == "no"
    assert len(said) == 1 and "running in fp32" in said[0]


def test_fp16_on_cpu_stops_the_script_before_any_model_loads(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--mixed_precision", "fp16", "--model_name", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "fp16 needs a CUDA GPU" in out.stderr.strip().splitlines()[-1]


@needs_bf16
@pytest.mark.parametrize("make", [tiny_llama, lambda: tiny_gpt2(n_embd=16)], ids=["llama_tied", "gpt2_conv1d"])
def test_frozen_bf16_weights_give_bit_identical_autocast_logits(make):
    policy_lm = make()
    frozen = copy.deepcopy(policy_lm)
    reference = FrozenReference(frozen, store_dtype=torch.bfloat16)
    head, embedding = frozen.get_output_embeddings(), frozen.get_input_embeddings()
    assert head.weight.dtype == torch.bfloat16 and embedding.weight.dtype == torch.float32  # a tied head is untied
    assert all(p.dtype == torch.float32 for p in policy_lm.parameters())  # the trainable copy is untouched
    ids = torch.randint(0, 200, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours, _ = ValueHeadPolicy(policy_lm)(ids, mask, 5)
        theirs = reference.logits(ids, mask, 5)
    assert torch.equal(ours, theirs)


@needs_bf16
def test_bf16_first_minibatch_ratio_is_one_and_the_master_weights_stay_fp32(tokenizer, bf16_accelerator):
    config = PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=2, learning_rate=1e-3)
    reference = FrozenReference(tiny_gpt2(seed=1), store_dtype=torch.bfloat16)
    trainer = PPOTrainer(config, ValueHeadPolicy(tiny_gpt2()), reference, tokenizer, bf16_accelerator)
    seen = []
    train_minibatch = trainer.update.train_minibatch
    trainer.update.train_minibatch = lambda *a: seen.append(train_minibatch(*a)) or seen[-1]
    stats = trainer.step(*batch())
    # The rollout and the first training forward are one computation (same rows, same autocast): observed 1.0 exactly.
    # bf16 rounds a logit to 2^-8 of its size; the tolerance allows one such rounding per token, nothing more.
    assert abs(seen[0]["policy/ratio_mean"] - 1) < 1e-3
    assert seen[0]["policy/approxkl"] < 1e-6
    assert seen[-1]["policy/approxkl"] > 1e-8
    assert all(p.dtype == torch.float32 for p in trainer.params)
    assert all(s.dtype == torch.float32 for state in trainer.optimizer.state.values() for s in state.values() if s.dim())
    assert np.isfinite(stats["objective/kl_exact"]) and stats["objective/kl_exact"] > 0


@needs_bf16
def test_bf16_exact_kl_is_zero_while_policy_and_reference_are_equal(tokenizer, bf16_accelerator):
    from cory.ppo.rollout import Rollout

    lm = tiny_gpt2()
    reference = FrozenReference(copy.deepcopy(lm), store_dtype=torch.bfloat16)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), ValueHeadPolicy(lm), reference, tokenizer, bf16_accelerator)
    scored = trainer.score_rollout(Rollout.from_lists(*batch()[:2], pad_id=50256, device="cpu"))
    assert torch.equal(scored.logprobs, scored.ref_logprobs)
    assert scored.exact_kl.abs().max().item() == 0.0


@needs_bf16
def test_ppo_learns_to_emit_a_target_token_in_bf16(tokenizer, bf16_accelerator):
    rewards = ppo_learns(target_token_agents(tokenizer, bf16_accelerator, 1)[0])
    assert np.mean(rewards[:3]) < 0.25
    assert np.mean(rewards[-3:]) > 0.5


def test_native_bf16_is_read_from_the_cpu_flags_not_from_onednn(monkeypatch):
    """Before: oneDNN's check said yes on an AVX-512 Xeon without avx512_bf16 (Ice Lake), so --mixed_precision bf16
    ran emulated there instead of falling back to fp32 as documented."""
    for flags, native in (({"avx512f", "avx512bw"}, False), ({"avx512bw", "avx512_bf16"}, True), ({"amx_bf16"}, True)):
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        assert precision.bf16_supported(False) is native
        assert precision.resolve_mixed_precision("bf16", False, log=lambda line: None) == ("bf16" if native else "no")
    monkeypatch.setattr(precision, "cpu_flags", lambda: None)  # no /proc/cpuinfo: oneDNN's answer
    assert precision.bf16_supported(False) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
