"""The benchmark's FLOP count, by hand on a tiny GPT-2 (2 layers, width 32, 2 heads, the GPT-2 vocabulary)."""
import pytest
import torch

from benchmarks.flops import FlopCounter, ModelShape
from tests.tiny import tiny_gpt2

BODY = 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32)  # per layer: qkv, attention out, MLP up and down; 2 layers
HEAD = 50257 * 32
PAIR = 4 * 2 * 16 * 2  # scores and mixing, 2 heads of 16, 2 layers


def test_a_forward_counts_real_tokens_and_padding_apart():
    ids = torch.ones(2, 3, dtype=torch.long)
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    work = ModelShape(tiny_gpt2()).forward(ids, mask, keep=2)
    real = 2 * BODY * 5 + 2 * HEAD * 4 + PAIR * (2 * 2 + 3 * 3)
    done = 2 * BODY * 6 + 2 * HEAD * 4 + PAIR * 2 * 3 * 3
    assert work["real"] == real
    assert work["padding"] == done - real
    assert work["backward"] == 2 * PAIR * 18 + 2 * (2 * BODY * 6) + 2 * (2 * HEAD * 4)  # every weight trains


def test_a_frozen_model_books_only_activation_gradients():
    model = tiny_gpt2()
    for p in model.parameters():
        p.requires_grad_(False)
    model.transformer.h[0].mlp.c_fc.weight.requires_grad_(True)  # one matrix trains
    work = ModelShape(model).forward(torch.ones(1, 4, dtype=torch.long), None, keep=0)
    body = 2 * BODY * 4
    assert work["backward"] == pytest.approx(2 * PAIR * 16 + body * (1 + 32 * 128 / BODY) + 2 * HEAD * 4)


def test_the_innermost_phase_gets_the_forward_and_the_update_its_backward():
    policy, reference = tiny_gpt2(), tiny_gpt2(seed=1)
    counter = FlopCounter()
    counter.watch(policy)
    counter.watch(reference)
    ids = torch.ones(1, 2, dtype=torch.long)
    with counter.phase("policy_value_forward"):
        with torch.no_grad(), counter.phase("reference_forward"):
            reference(input_ids=ids)
        policy(input_ids=ids)  # with gradients: its backward goes to the update
    policy(input_ids=ids)  # outside any phase: not counted
    flops = counter.take()
    forward = (2 * BODY * 2 + 2 * HEAD * 2 + PAIR * 4) / 1e9
    assert flops["reference_forward"]["real"] == pytest.approx(forward)
    assert flops["policy_value_forward"]["real"] == pytest.approx(forward)
    assert flops["ppo_update"]["real"] == pytest.approx((2 * PAIR * 4 + 2 * (2 * BODY * 2) + 2 * (2 * HEAD * 2)) / 1e9)
    assert counter.take() == {}


def test_a_peft_model_is_counted_through_its_base_without_its_adapters():
    from cory.models.lora import lora_config
    from peft import get_peft_model

    model = get_peft_model(tiny_gpt2(), lora_config(tiny_gpt2(), 4, 8, 0.0, "c_attn"))
    counter = FlopCounter()
    counter.watch(model)
    with torch.no_grad(), counter.phase("generate"):
        model(input_ids=torch.ones(1, 2, dtype=torch.long))
    assert counter.take()["generate"]["real"] == pytest.approx((2 * BODY * 2 + 2 * HEAD * 2 + PAIR * 4) / 1e9)


def test_make_bench_runs_every_full_step_mode_and_writes_its_json(assets, tmp_path):
    """The step benchmark end to end on tiny models (its observer-shaped PPO mode once broke unseen)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks.step_time", "--model_name", str(assets / "lm"), "--reward_model",
               str(assets / "classifier"), "--dataset_path", str(assets / "reviews.jsonl"), "--batch_size", "4",
               "--mini_batch_size", "2", "--query_tokens", "4", "--response_tokens", "3", "--steps", "1", "--warmup", "0",
               "--precisions", "no", "--modes", "ppo_observer", "cory", "--out", str(out)]
    done = subprocess.run(command, cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert set(summary["modes"]) == {"ppo_observer_fp32", "cory_fp32"}
    assert all(result["step"] > 0 for result in summary["modes"].values())
