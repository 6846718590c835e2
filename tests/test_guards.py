"""Guards: non-finite scores and gradients skip the update and leave weights and Adam untouched; too many
in a row stop the run; failing rewards and over-long prompts are counted, not fatal."""
import time

import pytest
import torch

from cory.errors import RunStopped
from cory.tasks.task import Prompt, RewardErrorReport, safe_rewards
from tests.test_ppo_trainer import batch, make_trainer
from tests.tiny import TextTask


def snapshot(trainer):
    return [p.detach().clone() for p in trainer.params]


def unchanged(trainer, before):
    return all(torch.equal(a, b) for a, b in zip(before, trainer.params))


def test_non_finite_score_skips_the_step(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    queries, responses, scores = batch()
    before = snapshot(trainer)
    stats = trainer.step(queries, responses, [1.0, float("nan"), 0.3, 2.0])
    assert stats["ppo/skipped_steps"] == 1 and unchanged(trainer, before) and not trainer.optimizer.state
    stats = trainer.step(queries, responses, scores)  # a good step updates and resets the streak
    assert stats["ppo/skipped_steps"] == 1 and trainer.guard.consecutive_skips == 0 and not unchanged(trainer, before)


def test_non_finite_gradient_skips_the_optimizer_step(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator, ppo_epochs=1)
    trainer.policy.v_head.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    before = snapshot(trainer)
    stats = trainer.step(*batch())
    assert stats["ppo/skipped_minibatches"] == 2 and stats["ppo/skipped_steps"] == 1
    assert unchanged(trainer, before) and not trainer.optimizer.state  # Adam's moments untouched too


def test_consecutive_skips_stop_the_run(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator, max_consecutive_skips=3)
    queries, responses, _ = batch()
    bad = [float("inf")] * 4
    trainer.step(queries, responses, bad)
    trainer.step(queries, responses, bad)
    with pytest.raises(RuntimeError, match="3 PPO steps in a row made no update .*non-finite score"):
        trainer.step(queries, responses, bad)


def test_failing_reward_is_isolated_and_counted():
    def fragile(texts):
        if any("boom" in t for t in texts):
            raise RuntimeError("reward model failed")
        return [float(len(t)) for t in texts]

    prompts = [Prompt(torch.tensor([1]), t) for t in ("ab", "boom", "c")]
    rewards, failures, error = safe_rewards(TextTask(fragile), prompts, ["", "", "d"])
    assert failures == 1 and rewards[0] == 2.0 and rewards[1].isnan() and rewards[2] == 2.0
    assert error == "RuntimeError: reward model failed"


def test_prompts_longer_than_the_context_keep_their_end(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)  # tiny GPT-2: 128 positions
    fitted, cut = trainer.fit_to_context([torch.arange(200), torch.arange(5)], max_new_tokens=28)
    assert cut == 1 and fitted[0].tolist() == list(range(100, 200)) and fitted[1].tolist() == list(range(5))
    with pytest.raises(ValueError, match="leaves no room"):
        trainer.fit_to_context([torch.arange(3)], max_new_tokens=128)


def test_eos_only_responses_are_counted(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator)
    queries, responses, scores = batch()
    responses[2] = torch.tensor([50256])
    assert trainer.step(queries, responses, scores)["tokens/eos_only_responses"] == 1


def test_a_diverged_update_stops_the_run(tokenizer, accelerator):
    loss = make_trainer(tokenizer, accelerator).step(*batch())["ppo/loss/total"]
    trainer = make_trainer(tokenizer, accelerator, divergence_loss=abs(loss) / 2)
    with pytest.raises(RunStopped, match=r"the update diverged: loss .* > divergence_loss"):
        trainer.step(*batch())
    make_trainer(tokenizer, accelerator, divergence_loss=0).step(*batch())  # 0: never


def test_the_stop_names_the_reward_exception_and_it_is_printed_once(tokenizer, accelerator):
    trainer = make_trainer(tokenizer, accelerator, max_consecutive_skips=1)
    queries, responses, _ = batch()
    with pytest.raises(RunStopped, match="non-finite score.*the reward raised KeyError: 'label'"):
        trainer.step(queries, responses, [float("nan")] * 4, score_error="KeyError: 'label'")
    printed = []
    report = RewardErrorReport(printed.append)
    for _ in range(3):
        report("KeyError: 'label'", 4, 4)
    report(None, 0, 4)
    assert len(printed) == 1 and "failed on 4 of 4 samples (KeyError: 'label')" in printed[0]


@pytest.mark.parametrize("raised, code, message", [
    (KeyboardInterrupt(), 130, "interrupted; checkpoints already written are whole"),
    ("kill", 143, "interrupted; checkpoints already written are whole"),
    (OSError(28, "No space left on device", "runs/x/checkpoints/.step-0000004.tmp-a/state.pt"), 1,
     "no space left on the device writing runs/x/checkpoints/.step-0000004.tmp-a/state.pt"),
])
def test_ctrl_c_kill_and_a_full_disk_are_one_line(raised, code, message, capsys):
    import os
    import signal

    from cory.errors import run_script

    def main(argv):
        if raised == "kill":
            os.kill(os.getpid(), signal.SIGTERM)  # run_script's handler turns it into an interrupt here
            time.sleep(5)
        raise raised

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        run_script(main, [])
    assert stop.value.code == code and message in capsys.readouterr().err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # the caller's handlers are back


def test_a_checkpoint_the_disk_cannot_hold_stops_before_it_is_written(tmp_path, monkeypatch):
    """A run's checkpoints have the size of its last one: with less room than that, stop in one line first."""
    from collections import namedtuple

    from cory.run import checkpoint
    from cory.errors import RunStopped

    usage = namedtuple("usage", "total used free")
    last = tmp_path / "checkpoints" / "step-0000010"
    last.mkdir(parents=True)
    (last / "state.pt").write_bytes(b"x" * 5000)
    (last / checkpoint.MARKER).write_text("{}")
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage(10**9, 0, 6000))
    checkpoint.check_room(tmp_path, 20)  # 6000 bytes free, 5002 needed
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage(10**9, 0, 4000))
    with pytest.raises(RunStopped, match="checkpoint after step 20 not written: 0 MB free .* earlier checkpoints are whole"):
        checkpoint.check_room(tmp_path, 20)
    checkpoint.check_room(tmp_path / "fresh", 10)  # the first checkpoint of a run: nothing to measure


def test_torch_save_on_a_full_disk_is_the_oserror_that_run_script_says_in_one_line(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk as a RuntimeError ('unexpected pos ...'); with the disk (nearly) full
    it becomes ENOSPC, which run_script prints as one line; with room left, the RuntimeError is a bug and stays."""
    from collections import namedtuple

    from cory.run import checkpoint

    usage = namedtuple("usage", "total used free")

    def full_disk(state, path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 913459840 vs 913459732")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage(10**9, 0, 1 << 20))
    with pytest.raises(OSError) as raised:
        checkpoint.save_state({}, tmp_path / "state.pt")
    assert raised.value.errno == 28 and raised.value.filename == str(tmp_path / "state.pt")
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        checkpoint.save_state({}, tmp_path / "state.pt")
