"""Checkpoints: a run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cory.algorithms.agents import build_policies, load_policy_weights, write_policy
from cory.run.checkpoint import MARKER, check_same_config, complete_checkpoints, find_checkpoint
from cory.config import RunConfig
from cory.platform.precision import bf16_supported
from tests.tiny import tiny_gpt2

ROOT = Path(__file__).resolve().parent.parent


def run_command(assets, out, *extra):
    return [sys.executable, str(ROOT / "imdb_train" / "cory.py"), "--model_name", str(assets / "lm"),
            "--reward_model", str(assets / "classifier"), "--dataset_path", str(assets / "reviews.jsonl"),
            "--steps", "6", "--batch_size", "4", "--mini_batch_size", "2", "--ppo_epochs", "1", "--learning_rate", "1e-3",
            "--swap_freq", "2", "--response_min_tokens", "2", "--response_max_tokens", "4", "--save_every", "3",
            "--log_samples_every", "1", "--eval_every", "3", "--eval_prompts", "4", "--eval_roles", "true", "--eval_dataset_path",
            str(assets / "reviews.jsonl"), "--output_dir", str(out), "--run_name", "run", *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


THREE_CRITIC_FREE = ("--n_agents", "3", "--advantage_estimator", "grpo", "--samples_per_prompt", "2")


@pytest.mark.parametrize("precision, variant", [("no", ()), pytest.param("bf16", (), marks=pytest.mark.skipif(
    not bf16_supported(False), reason="this CPU has no native bf16")), ("no", THREE_CRITIC_FREE)],
    ids=["fp32", "bf16", "three-agents-grpo"])
def test_kill_and_resume_equals_an_uninterrupted_run(assets, tmp_path, precision, variant):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    command = lambda out, *extra: run_command(assets, out, "--mixed_precision", precision, *variant, *extra)  # noqa: E731
    agents = ("agent_a", "agent_b", "agent_c") if variant else ("agent_a", "agent_b")
    critic = not variant
    subprocess.run(command(straight), env=ENV, check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(command(resumed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = resumed / "run" / "checkpoints" / "step-0000003" / MARKER
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (resumed / "run" / "final").exists()

    out = subprocess.run(command(resumed, "--resume_from", "auto"), env=ENV, check=True, capture_output=True,
                         text=True, timeout=600)
    assert "resumed from" in out.stderr + out.stdout

    for agent in agents:
        a = load_file(straight / "run" / "final" / agent / "model.safetensors")
        b = load_file(resumed / "run" / "final" / agent / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent
        head = [d / "run" / "final" / agent / "value_head.safetensors" for d in (straight, resumed)]
        assert head[0].exists() == critic
        assert not critic or torch.equal(load_file(head[0])["weight"], load_file(head[1])["weight"])
    rows = [[json.loads(line) for line in (d / "run" / "metrics.jsonl").read_text().splitlines()] for d in (straight, resumed)]
    assert [r["step"] for r in rows[1]] == list(range(6))  # no step logged twice
    observers = ("observer_1", "observer_2") if variant else ("observer",)
    for key in ("pioneer/task_reward", *(f"{o}/task_reward" for o in observers), "agent_a/objective/kl", "cory/pioneer_agent"):
        assert [r[key] for r in rows[0]] == [r[key] for r in rows[1]], key
    assert [c.name for c in complete_checkpoints(resumed / "run")] == ["step-0000003", "step-0000006"]
    evals = [[json.loads(line) for line in (d / "run" / "eval.jsonl").read_text().splitlines()] for d in (straight, resumed)]
    observer_roles = ("observer_of_other", "observer_of_self")
    expected = []
    for step in (0, 3, 6):  # each agent alone at every evaluation; both observer roles before and after training
        expected += [(step, a, "alone") for a in agents]
        expected += [(step, a, r) for a in agents for r in observer_roles] if step in (0, 6) else []
    assert [(r["step"], r["agent"], r["role"]) for r in evals[1]] == expected  # none twice after the resume
    assert [r["reward_mean"] for r in evals[0]] == [r["reward_mean"] for r in evals[1]]


def test_lora_adapter_round_trip(tmp_path, tokenizer):
    tiny_gpt2(n_embd=16).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    run = RunConfig(model_name=str(tmp_path / "lm"), lora_r=4, lora_target_modules="c_attn")
    (a, b), _ = build_policies(run, 2, "cpu")
    for p in b.trainable_parameters():
        p.data.normal_()
    write_policy(b, tokenizer, tmp_path / "b")
    saved = [p.detach().clone() for p in b.trainable_parameters()]
    for p in b.trainable_parameters():
        p.data.zero_()
    load_policy_weights(b, tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(saved, b.trainable_parameters()))
    assert not any(torch.equal(x, y) for x, y in zip(a.trainable_parameters()[:-2], b.trainable_parameters()[:-2]))


def test_incomplete_checkpoint_is_never_loaded(tmp_path):
    half = tmp_path / "checkpoints" / "step-0000004"
    half.mkdir(parents=True)
    assert find_checkpoint("auto", tmp_path) is None
    with pytest.raises(ValueError, match="no COMPLETE marker"):
        find_checkpoint(str(half), tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_checkpoint(str(tmp_path / "nope"), tmp_path)


def test_resume_refuses_a_changed_config():
    check_same_config({"batch_size": 8, "steps": 10}, {"batch_size": 8, "steps": 20})  # more steps: fine
    with pytest.raises(ValueError, match=r"config differs .*batch_size: 8 -> 16"):
        check_same_config({"batch_size": 8}, {"batch_size": 16})


def test_a_checkpoint_from_before_a_setting_existed_resumes_at_its_default():
    older = {"algorithm": "cory", "batch_size": 8}  # written before n_agents and advantage_estimator existed
    check_same_config(older, {"algorithm": "cory", "batch_size": 8, "n_agents": 2, "advantage_estimator": "gae"})
    with pytest.raises(ValueError, match=r"config differs .*n_agents: 2 -> 3"):
        check_same_config(older, {"algorithm": "cory", "batch_size": 8, "n_agents": 3})


def test_saved_lora_agent_loads_alone_for_evaluation(tmp_path, tokenizer):
    from cory.eval.loading import load_policy_for_eval

    tiny_gpt2(n_embd=16).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    (a, b), _ = build_policies(RunConfig(model_name=str(tmp_path / "lm"), lora_r=4, lora_target_modules="c_attn"), 2, "cpu")
    for p in b.trainable_parameters():
        p.data.normal_(0, 0.1)
    write_policy(b, tokenizer, tmp_path / "agent_b")
    lm, tok = load_policy_for_eval(str(tmp_path / "agent_b"))
    ids, mask = torch.randint(0, 1000, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        expected, _ = b(ids, mask, 5)
        torch.testing.assert_close(lm(ids, attention_mask=mask).logits, expected, atol=1e-4, rtol=1e-4)
    assert tok.eos_token == tokenizer.eos_token


class _RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    from cory.run.checkpoint import load_checkpoint

    checkpoint = tmp_path / "step-0000001"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    ran = tmp_path / "payload-ran"
    torch.save({"steps_done": 1, "agents": [], "evil": _RunsCode(ran)}, checkpoint / "state.pt")
    with pytest.raises(ValueError, match="refused, nothing was run"):
        load_checkpoint(checkpoint, algorithm=None, config={})
    assert not ran.exists()


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np

    from cory.run.checkpoint import rng_state, set_rng_state

    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_run_killed_before_its_first_checkpoint_logs_step_0_once(tmp_path):
    """Killed after the step-0 evaluation and before any checkpoint: the restart begins afresh and evaluates step 0
    again, so the logs keep none of the first attempt's rows (they kept its step-0 evaluations: duplicates)."""
    from cory.run.tracking import Tracker

    first = Tracker(tmp_path, {})
    first.log_eval(0, "policy", {"metrics": {"reward_mean": 0.1}, "samples": []})
    first.log(0, {"reward": 0.1})
    Tracker(tmp_path, {}, resume_step=0)  # the restart, afresh
    assert (tmp_path / "eval.jsonl").read_text() == "" and (tmp_path / "metrics.jsonl").read_text() == ""
    resumed = Tracker(tmp_path, {})
    resumed.log_eval(0, "policy", {"metrics": {}, "samples": []})
    resumed.log(0, {})
    resumed.log(1, {})
    resumed.log_eval(2, "policy", {"metrics": {}, "samples": []})  # a checkpoint after step 2, then a kill
    Tracker(tmp_path, {}, resume_step=2)
    assert [json.loads(line)["step"] for line in (tmp_path / "eval.jsonl").read_text().splitlines()] == [0, 2]


def test_how_often_a_run_evaluates_does_not_change_its_training(assets, tmp_path):
    """The reward classifier's pipeline draws a DataLoader seed from the global RNG on every call, so an evaluation
    scored outside the forked RNG moved every later step's samples: `eval_every`, which a resume may change, changed
    the run (found by starting a 6-step run from a 3-step run's last checkpoint, after its final evaluations)."""
    runs = {every: tmp_path / f"every{every}" for every in ("1", "4")}
    for every, out in runs.items():
        subprocess.run(run_command(assets, out, "--steps", "4", "--save_every", "0", "--eval_every", every),
                       env=ENV, check=True, capture_output=True, timeout=600)
    for agent in ("agent_a", "agent_b"):
        a, b = (load_file(out / "run" / "final" / agent / "model.safetensors") for out in runs.values())
        assert all(torch.equal(a[k], b[k]) for k in a), agent
    metrics = [[json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()] for out in runs.values()]
    assert [r["pioneer/task_reward"] for r in metrics[0]] == [r["pioneer/task_reward"] for r in metrics[1]]
