"""A run directory belongs to one run, a checkpoint loads only if it verifies, and a user's mistake is one
line: each test here reproduces a case that once destroyed data, resumed the wrong weights or ran silently."""
import json
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from cory.checkpoint import MARKER, check_same_config, complete_checkpoints, find_checkpoint, manifest, verify_checkpoint
from cory.errors import UsageError
from cory.paths import atomic_directory, remove_stale_temporaries
from cory.rundir import RunDirLock
from tests.test_resume import ENV, ROOT, run_command


def run(assets, out, *extra, check=True):
    command = run_command(assets, out, "--steps", "2", "--save_every", "1", "--eval_every", "0", *extra)
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    if check and result.returncode:
        raise AssertionError(result.stderr[-2000:])
    return result


@pytest.fixture(scope="module")
def finished(assets, tmp_path_factory):
    """A tiny CORY run of 2 steps with a checkpoint after each step (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("finished")
    run(assets, out)
    return out / "run"


def copy_of(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def test_a_fresh_run_in_a_used_directory_is_refused_in_one_line(assets, finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    before = (run_dir / "metrics.jsonl").read_text()
    result = run(assets, tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cory.py: error: run directory")
    assert "--resume_from auto" in result.stderr and "--overwrite" in result.stderr
    assert (run_dir / "metrics.jsonl").read_text() == before  # nothing touched
    assert [c.name for c in complete_checkpoints(run_dir)] == ["step-0000001", "step-0000002"]
    result = run(assets, tmp_path, "--overwrite", "true", "--steps", "1")
    assert "deleting the earlier run" in result.stdout + result.stderr
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [0]
    assert [c.name for c in complete_checkpoints(run_dir)] == ["step-0000001"]  # none of the old run's left


def test_a_moved_run_resumes_and_more_steps_are_needed_to_train_on(assets, finished, tmp_path):
    copy_of(finished, tmp_path / "elsewhere")
    result = run(assets, tmp_path / "elsewhere", "--resume_from", "auto", "--steps", "3")
    assert "resumed from" in result.stdout and "after step 2" in result.stdout
    result = run(assets, tmp_path / "elsewhere", "--resume_from", "auto", "--steps", "2")
    assert "nothing to train: the checkpoint has 3 steps done and --steps is 2" in result.stdout
    config = json.loads((tmp_path / "elsewhere" / "run" / "config.json").read_text())
    assert config["algorithm"] == "cory"


def test_resume_falls_back_past_a_truncated_checkpoint(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    newest = run_dir / "checkpoints" / "step-0000002"
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    assert "state.pt has" in verify_checkpoint(newest) and "truncated" in verify_checkpoint(newest)
    messages = []
    assert find_checkpoint("auto", run_dir, log=messages.append).name == "step-0000001"
    assert "skipping checkpoint" in messages[0] and (run_dir / "checkpoints" / "step-0000002.corrupt").is_dir()
    assert [c.name for c in complete_checkpoints(run_dir)] == ["step-0000001"]  # out of retention's way
    with pytest.raises(UsageError, match="cannot be loaded: .*truncated"):
        find_checkpoint(str(run_dir / "checkpoints" / "step-0000002.corrupt"), run_dir)


def test_a_poisoned_value_head_is_caught_by_its_hash_and_by_the_finite_check(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    checkpoint = run_dir / "checkpoints" / "step-0000002"
    head = checkpoint / "agent_a" / "value_head.safetensors"
    weights = load_file(head)
    weights["weight"][0, 0] = float("nan")
    save_file(weights, head)  # same size, other bytes
    assert "does not match its sha256" in verify_checkpoint(checkpoint)
    marker = json.loads((checkpoint / MARKER).read_text())
    (checkpoint / MARKER).write_text(json.dumps({**marker, "files": manifest(checkpoint)}))  # a checkpoint written with NaN
    assert "non-finite values in weight" in verify_checkpoint(checkpoint)
    assert verify_checkpoint(run_dir / "checkpoints" / "step-0000001") is None


def test_a_checkpoint_of_another_algorithm_is_refused_in_one_line():
    with pytest.raises(UsageError, match="written by a ppo run, this is a cory run"):
        check_same_config({"algorithm": "ppo", "batch_size": 8}, {"algorithm": "cory", "batch_size": 8})
    check_same_config({"algorithm": "cory", "output_dir": "a", "run_name": "x"}, {"algorithm": "cory", "output_dir": "b", "run_name": "y"})


def test_a_live_lock_is_refused_and_a_dead_one_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": __import__("socket").gethostname()}))
        with pytest.raises(UsageError, match=f"in use by process {sleeper.pid}"):
            RunDirLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    messages = []
    lock = RunDirLock(tmp_path, log=messages.append)
    lock.acquire()  # the owner is gone now
    assert "taking over the lock" in messages[0] and json.loads((tmp_path / ".lock").read_text())["pid"] != sleeper.pid
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_replacing_a_directory_never_leaves_zero_copies(tmp_path):
    target = tmp_path / "step-0000003"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("half")
            raise KeyboardInterrupt  # killed mid-write: the old copy stays whole
    assert (target / "weights").read_text() == "old"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    (tmp_path / ".step-0000004.tmp-abc").mkdir()  # what a SIGKILL mid-write leaves
    (tmp_path / ".step-0000003.old-def").mkdir()
    assert sorted(p.name for p in remove_stale_temporaries(tmp_path)) == [".step-0000003.old-def", ".step-0000004.tmp-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000003"]


def test_a_bad_value_is_one_line_and_exit_2_with_the_traceback_behind_debug(assets, tmp_path):
    command = run_command(assets, tmp_path, "--init_kl_coef", "-0.1")
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip() == "cory.py: error: init_kl_coef must be >= 0, got -0.1"
    result = subprocess.run(command + ["--debug"], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert str(ROOT) in command[1]
