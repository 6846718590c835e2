"""A run directory belongs to one run, a checkpoint loads only if it verifies, and a user's mistake is one
line: each test here reproduces a case that once destroyed data, resumed the wrong weights or ran silently."""
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file, save_file

from cory.run.checkpoint import MARKER, check_same_config, complete_checkpoints, find_checkpoint, manifest, verify_checkpoint
from cory.errors import UsageError
from cory.platform.paths import atomic_directory, build_once, read_json, remove_stale_temporaries, write_json
from cory.run.rundir import RunDirLock
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
    # the resumed run rewrites step 2, which is truncated again: quarantined beside the first, resume still works
    shutil.copytree(run_dir / "checkpoints" / "step-0000002.corrupt", newest)
    assert find_checkpoint("auto", run_dir, log=messages.append).name == "step-0000001"
    assert "kept as step-0000002.corrupt-2" in messages[-1]
    assert [c.name for c in complete_checkpoints(run_dir)] == ["step-0000001"]


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


def _hold_lock(run_dir, ready, done):
    lock = RunDirLock(run_dir)
    lock.acquire()
    ready.set()
    done.wait(60)
    lock.release()


def test_a_live_lock_is_refused_and_a_dead_one_s_file_is_reused(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(tmp_path, ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(UsageError, match=f"in use by process {holder.pid}"):
            RunDirLock(tmp_path).acquire()
    finally:
        holder.kill()  # killed while holding it: the kernel drops the lock
        holder.join()
    lock = RunDirLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "another-machine"}))  # copied with a run
    RunDirLock(tmp_path).acquire()


def _try_lock(run_dir, barrier, won):
    barrier.wait()
    try:
        RunDirLock(run_dir).acquire()
        with won.get_lock():  # only holders get here
            won.value += 1
        barrier.wait()  # hold it until everyone has tried
    except UsageError:
        barrier.wait()


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_that_start_together_never_both_own_the_lock(tmp_path, processes):
    """A barrier releases every process at once, 50 times: exactly one owner each time (the O_EXCL-then-write lock
    gave two owners in 143 of 200 trials)."""
    context = multiprocessing.get_context("fork")
    for trial in range(50):
        run_dir = tmp_path / str(trial)
        barrier, won = context.Barrier(processes), context.Value("i", 0)
        workers = [context.Process(target=_try_lock, args=(run_dir, barrier, won)) for _ in range(processes)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert won.value == 1, f"trial {trial}: {won.value} owners"


def _build_together(target, barrier, builds):
    def build():
        with builds.get_lock():
            builds.value += 1
        time.sleep(0.2)  # long enough for the others to find it missing
        target.mkdir()

    barrier.wait()
    build_once(target, target.exists, build, log=lambda line: None)
    assert target.exists()


def test_an_asset_asked_for_by_processes_that_start_together_is_built_once(tmp_path):
    """Two studies started at once (one per core) both trained the missing classifier; now the second waits."""
    context = multiprocessing.get_context("fork")
    for trial in range(5):
        target = tmp_path / f"model-{trial}"
        barrier, builds = context.Barrier(3), context.Value("i", 0)
        workers = [context.Process(target=_build_together, args=(target, barrier, builds)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [worker.exitcode for worker in workers] == [0, 0, 0]
        assert builds.value == 1, f"trial {trial}: built {builds.value} times"


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(UsageError, match="cannot lock run directory"):
        RunDirLock(tmp_path / "file" / "run").acquire()


def test_a_symlink_loop_as_the_run_directory_is_one_line(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UsageError, match="cannot lock run directory"):
        RunDirLock(tmp_path / "loop").acquire()
    with pytest.raises(UsageError, match="cannot lock run directory"):
        RunDirLock(tmp_path / "loop" / "run").acquire()


def test_a_read_only_output_dir_is_one_line(tmp_path):
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        with pytest.raises(UsageError, match="cannot lock run directory"):
            RunDirLock(tmp_path / "run").acquire()
    finally:
        tmp_path.chmod(0o755)


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
    done = remove_stale_temporaries(tmp_path)
    assert [line.split()[1].rstrip(",").rsplit("/", 1)[-1] for line in done] == [".step-0000003.old-def", ".step-0000004.tmp-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000003"]


def test_a_write_killed_between_its_two_renames_keeps_the_last_copy(tmp_path):
    """The old copy was moved aside, the new one not yet in place: the next start restores the old one."""
    (tmp_path / ".step-0000006.old-abc").mkdir()
    (tmp_path / ".step-0000006.old-abc" / "state.pt").write_text("the last published copy")
    (tmp_path / ".step-0000006.tmp-def").mkdir()
    done = remove_stale_temporaries(tmp_path)
    assert done[0].startswith(f"restored {tmp_path / 'step-0000006'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000006"]
    assert (tmp_path / "step-0000006" / "state.pt").read_text() == "the last published copy"


def test_json_files_round_trip_plain_and_gzipped_and_gzip_bytes_are_reproducible(tmp_path):
    """Committed evidence (ledger entries, GSM8K evaluations) is gzipped JSON: the same value must give the same
    bytes, or every rewrite would show as a change in git."""
    value = {"rows": [{"reward": 0.25, "text": "a b"}] * 50, "n": 3}
    write_json(tmp_path / "a.json", value)
    write_json(tmp_path / "a.json.gz", value)
    assert read_json(tmp_path / "a.json") == value == read_json(tmp_path / "a.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic number
    assert (tmp_path / "a.json.gz").stat().st_size < (tmp_path / "a.json").stat().st_size / 5
    first = (tmp_path / "a.json.gz").read_bytes()
    time.sleep(1.1)  # gzip's header would carry a new mtime
    write_json(tmp_path / "a.json.gz", value)
    assert (tmp_path / "a.json.gz").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_a_bad_value_is_one_line_and_exit_2_with_the_traceback_behind_debug(assets, tmp_path):
    command = run_command(assets, tmp_path, "--init_kl_coef", "-0.1")
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip() == "cory.py: error: init_kl_coef must be >= 0, got -0.1"
    result = subprocess.run(command + ["--debug"], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert str(ROOT) in command[1]


def test_a_resume_takes_the_checkpoint_s_settings_and_refuses_only_a_changed_one(assets, finished, tmp_path):
    """Before: resuming needed every original flag again; one left out (the model, the batch size) was refused as a
    config that 'differs'. Now the checkpoint's settings hold unless a flag is given, and only a flag that changes
    a setting is refused."""
    copy_of(finished, tmp_path)
    where = [sys.executable, str(ROOT / "imdb_train" / "cory.py"), "--output_dir", str(tmp_path), "--run_name", "run",
             "--resume_from", "auto"]
    more = subprocess.run([*where, "--steps", "3"], env=ENV, capture_output=True, text=True, timeout=600)
    assert more.returncode == 0, more.stderr[-2000:]
    assert "resumed from" in more.stdout + more.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["batch_size"] == 4 and saved["model_name"] == str(assets / "lm") and saved["steps"] == 3
    changed = subprocess.run([*where, "--steps", "4", "--batch_size", "8"], env=ENV, capture_output=True, text=True, timeout=600)
    assert changed.returncode == 2 and "batch_size: 4 -> 8" in changed.stderr.strip().splitlines()[-1]
