"""A study's ledger stays whole: one study process at a time, no entry lost, none trusted blindly, one line per error."""
from __future__ import annotations

import gzip
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cory.errors import UsageError
from cory.studies.ledger import entry_path, git_commit, native_bf16, pinned_training_commit, write_entry
from cory.studies.queue import StudyQueue, stray_entries, study_jobs
from cory.studies.checks import lock_study, read_checked, tidy, uncommitted, verified

ROOT = Path(__file__).resolve().parent.parent
COMPARE = runpy.run_path(str(ROOT / "scripts" / "compare.py"))
STUDY = {"task": "imdb", "task_preset": "offline", "steps": 2, "eval_every": 1, "eval_prompts": 3, "mixed_precision": "no",
         "settings": {"default": {"flags": [], "seeds": [0, 1, 2]}}, "algorithms": ["ppo", "cory"], "extra_args": [],
         "training_commits": ["x"]}


def entry(algorithm: str, seed: int, reward: float = 1.0, steps: int = 2, **config) -> dict:
    agents = ("policy",) if algorithm == "ppo" else ("agent_a", "agent_b")
    evals = [{"step": step, "agent": agent, "role": "alone", "per_prompt": {"reward": [reward + seed + step] * 3,
             "kl_exact": [step] * 3, "response_len": [2] * 3, "response_ids": [[1, step]] * 3, "judge_vader": [0.1] * 3}}
             for step in range(steps + 1) for agent in agents]
    return {"setting": "default", "algorithm": algorithm, "seed": seed, "wall_seconds": 1.0, "machine": {"cpu": "test", "cores": 2, "bf16_native": False},
            "config": {"seed": seed, "preset": "offline", "steps": 2, "eval_every": 1, "eval_prompts": 3, "mixed_precision": "no",
                       "learning_rate": 5e-5, **config}, "evals": evals}


def ledger(tmp_path: Path, entries: dict, study: dict = STUDY) -> tuple[Path, list]:
    out = tmp_path / "study"
    out.mkdir(exist_ok=True)
    (out / "study.json").write_text(json.dumps(study))
    for (algorithm, seed), value in entries.items():
        write_entry(entry_path(out, "default", algorithm, seed), value)
    return out, study_jobs(study)


def test_entries_that_are_not_the_run_they_are_filed_as_are_refused_by_name(tmp_path):
    """Before: --report_only read all of these with rc 0 and no warning."""
    ppo_as_cory = entry("ppo", 2, reward=7.0)
    out, jobs = ledger(tmp_path, {("ppo", 0): entry("ppo", 0), ("cory", 0): entry("cory", 0),
                                  ("ppo", 1): entry("ppo", 0),  # seed 0's run filed as seed 1 (and a duplicate)
                                  ("cory", 1): entry("cory", 1, steps=1),  # no final evaluation
                                  ("ppo", 2): entry("ppo", 2, learning_rate=2e-4),  # another learning rate than seed 0's
                                  ("cory", 2): ppo_as_cory})
    good, refused = verified(out, STUDY, jobs)
    assert set(good) == {("default", "cory", 0)}
    why = {Path(p).name: text for p, text in refused.items()}
    assert "seed 0's run, filed as seed 1" in why["ppo-seed1.json.gz"] and "filed twice" in why["ppo-seed1.json.gz"]
    assert "filed twice" in why["ppo-seed0.json.gz"]  # a duplicate refuses both: which one is the real seed 0?
    assert "no final evaluation of agent_a (step 2)" in why["cory-seed1.json.gz"]
    assert "learning_rate=0.0002 vs 5e-05" in why["ppo-seed2.json.gz"]
    assert "a run of default/ppo (ppo), filed as default/cory (cory)" in why["cory-seed2.json.gz"]
    COMPARE["report"](out, STUDY, "study", jobs)  # the report names each refused run as missing
    assert "5 run(s) missing (default/ppo-seed0 (refused), default/ppo-seed1 (refused)" in (out / "summary.md").read_text()


def test_an_edited_study_json_or_a_removed_seed_is_refused_before_any_run(tmp_path):
    out, jobs = ledger(tmp_path, {("ppo", 0): entry("ppo", 0), ("cory", 0): entry("cory", 0)})
    edited = {**STUDY, "steps": 3}
    _, refused = verified(out, edited, study_jobs(edited))
    assert all("steps=2 where study.json gives '3'" in why for why in refused.values()) and len(refused) == 2
    fewer = {**STUDY, "settings": {"default": {"flags": [], "seeds": [1, 2]}}}
    assert [p.name for p in stray_entries(out, study_jobs(fewer))] == ["cory-seed0.json.gz", "ppo-seed0.json.gz"]
    queue = StudyQueue(out, {**edited, "training_commits": [git_commit(ROOT)]}, ROOT)
    with pytest.raises(UsageError, match=r"ppo-seed0.json.gz: it ran steps=2 where study.json gives '3' \(and 1 more entries\)"):
        queue.run(study_jobs(edited), n_parallel=1, allow_uncommitted=True)
    assert not (out / "runs").exists()  # refused before any run


def _commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True, capture_output=True)
    return git_commit(repo)


def test_a_study_continues_after_commits_outside_its_training_code_and_refuses_a_change_inside_it(tmp_path):
    """Before: an entry the study committed into its own checkout moved HEAD off the pinned commit, and the study
    refused to continue (as did a test run beside a study committing its entries)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    pinned = _commit(repo, {"cory/ppo.py": "step = 1\n", "results/s/study.json": "{}"})
    ledger_commit = _commit(repo, {"results/s/ledger/ppo-seed0.json": "{}", "README.md": "results"})
    assert pinned_training_commit(repo, pinned, [pinned]) == pinned
    assert pinned_training_commit(repo, ledger_commit, ["f" * 40, pinned]) == pinned  # runs as the pinned commit
    assert pinned_training_commit(repo, ledger_commit, ["f" * 40]) is None  # a commit git cannot read matches nothing
    out, _ = ledger(tmp_path, {})
    StudyQueue(out, {**STUDY, "training_commits": [pinned]}, repo).run([], n_parallel=1, allow_uncommitted=False)  # no refusal
    changed = _commit(repo, {"cory/ppo.py": "step = 2\n"})
    assert pinned_training_commit(repo, changed, [pinned]) is None
    before = sorted(out.rglob("*"))
    with pytest.raises(UsageError, match=rf"this checkout \({changed[:10]}\) is not the study's training code \['{pinned[:10]}'\]"):
        StudyQueue(out, {**STUDY, "training_commits": [pinned]}, repo).run(study_jobs(STUDY), n_parallel=1, allow_uncommitted=False)
    assert sorted(out.rglob("*")) == before  # refused before anything was written


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(b'{"evals": [', mtime=0)[:-5], gzip.compress(b"[1, 2]", mtime=0),
                                     json.dumps({"setting": "default"}).encode()], ids=["garbage", "truncated", "not-an-entry", "plain-json"])
def test_a_corrupt_entry_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "ppo-seed0.json.gz"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=r"ppo-seed0.json.gz: not a (readable )?ledger entry"):
        read_checked(path)


def test_a_second_study_process_refuses_in_one_line_naming_the_holder(tmp_path):
    """Before: a second compare.py on one study re-ran finished runs (16 of 16 with --jobs 2)."""
    out, _ = ledger(tmp_path, {})
    holder = lock_study(out, wait=False)
    try:
        with pytest.raises(UsageError, match=rf"study {out} is in use by process {os.getpid()} .*pass --wait"):
            COMPARE["main"](["--results_dir", str(tmp_path), "--name", "study", "--allow_uncommitted"])
    finally:
        holder.release()


def test_leftovers_are_tidied_and_an_uncommitted_entry_is_found(tmp_path):
    """A kill mid-write leaves `.x.json.gz.tmp-*`; a kill after writing and before `git commit` leaves the entry
    untracked: both are seen at the next start (and the entry committed with --commit)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    out, jobs = ledger(tmp_path, {("ppo", 0): entry("ppo", 0)})
    stale = out / "ledger" / "default" / ".ppo-seed1.json.gz.tmp-abc"
    stale.write_bytes(b"half")
    assert tidy(out) == [f"removed {stale}, left by an interrupted write"] and not stale.exists()
    assert uncommitted(out, jobs) == [entry_path(out, "default", "ppo", 0)]
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=tmp_path, check=True, env=env)
    assert uncommitted(out, jobs) == []


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a job started with `nohup ... &` inherits


@pytest.mark.parametrize("how, start, stop, code", [
    ("Ctrl-C in a terminal", None, signal.SIGINT, 130),
    ("kill of a background job", ignore_sigint, signal.SIGTERM, 143),
])
def test_ctrl_c_or_kill_stops_the_study_queue_and_its_live_run_with_one_line(assets, tmp_path, how, start, stop, code):
    """Before: after Ctrl-C, compare.py trained and committed three more runs, then died with a traceback; a study
    started in the background ignored SIGINT, and `kill` ended compare.py at once with its run training on as an orphan."""
    from tests.test_scripts import COMMON, task_args

    argv = [sys.executable, str(ROOT / "scripts" / "compare.py"), "--results_dir", str(tmp_path), "--name", "tiny", "--seeds", "0", "1",
            "--steps", "20", "--eval_every", "1", "--eval_prompts", "3", "--jobs", "1", "--mixed_precision", "no", "--allow_uncommitted",
            "--model_name", str(assets / "lm"), "--eval_dataset_path", str(assets / "reviews.jsonl"), *COMMON[2:-4], *task_args("imdb", assets)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=start)
    first = tmp_path / "tiny" / "runs" / "default" / "ppo-seed0" / "config.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(stop)  # to compare.py alone, as `kill -INT` / `kill` would
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, f"{how}: {err[-2000:]}"
    assert err.strip().splitlines()[-1] == ("compare.py: interrupted: no run starts after Ctrl-C or kill; finished runs are in "
                                            "the ledger, the others continue from their checkpoints when the study is run again")
    assert sorted(p.name for p in (tmp_path / "tiny" / "runs" / "default").iterdir() if p.is_dir()) == ["ppo-seed0"]
    assert not (tmp_path / "tiny" / "ledger").exists()
    log = (tmp_path / "tiny" / "runs" / "default" / "ppo-seed0.log").read_text()
    assert log.strip().splitlines()[-1].startswith("ppo.py: interrupted"), f"{how}: the live run did not stop: {log[-1500:]}"


@pytest.mark.parametrize("source, spec, message", [
    ("def upbeat(:\n", "bad_syntax:upbeat", r"importing bad_syntax failed: SyntaxError: .*bad_syntax.py, line 1"),
    ("raise RuntimeError('needs a GPU')\n", "raises_at_import:f", r"importing raises_at_import failed: RuntimeError: needs a GPU"),
    ("", ".relative:f", r"must be module:function with an absolute module name"),
])
def test_a_reward_module_that_cannot_load_is_one_line(tmp_path, monkeypatch, source, spec, message):
    """Before: a SyntaxError, a module raising at import and a relative name each gave a traceback."""
    from cory.tasks.reward_functions import load_function as load_reward_fn

    module = spec.split(":")[0]
    if source:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match=message):
        load_reward_fn(spec)


def test_a_reward_that_exits_or_returns_the_wrong_length_stops_in_one_line(tmp_path, monkeypatch):
    """Before: SystemExit(3) in a reward ended the run silently with rc 3; a wrong length was reported with the
    per-sample retry's count ('0 scores for 1 responses')."""
    from cory.errors import RunStopped
    from cory.tasks.task import Prompt, safe_rewards
    from cory.tasks.text import TextTask, TextTaskConfig

    (tmp_path / "bad_rewards.py").write_text("def one(prompts, responses):\n    return [1.0]\n\n"
                                             "def leaves(prompts, responses):\n    exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    prompts = [Prompt(None, "a"), Prompt(None, "b"), Prompt(None, "c")]
    for name, error, message in (("one", UsageError, "reward_fn bad_rewards:one returned 1 scores for 3 responses"),
                                 ("leaves", RunStopped, r"the reward function called exit\(3\)")):
        task = TextTask(TextTaskConfig(dataset_path="p.jsonl", reward_fn=f"bad_rewards:{name}"), tokenizer=None)
        with pytest.raises(error, match=message):
            safe_rewards(task, prompts, ["x", "y", "z"])


def test_unreadable_weights_a_dataset_directory_and_a_full_disk_are_one_line(tmp_path):
    """Before: garbage weights gave a SafetensorError traceback, a dataset path that is a directory was reported as
    missing, and a full disk at the first checkpoint surfaced as `Exception: No space left on device`."""
    import errno

    from cory.tasks.data import check_local_file
    from cory.models.load import load_causal_lm
    from cory.platform.paths import atomic_directory
    from tests.tiny import tiny_gpt2

    model_dir = tmp_path / "lm"
    tiny_gpt2(16).save_pretrained(model_dir)
    (model_dir / "model.safetensors").write_bytes(b"garbage, not safetensors")
    with pytest.raises(UsageError, match=r"model .*lm: its weights cannot be read \(safetensors: "):
        load_causal_lm(str(model_dir))
    (tmp_path / "data.jsonl").mkdir()
    with pytest.raises(UsageError, match=r"data.jsonl is a directory"):
        check_local_file(str(tmp_path / "data.jsonl"))
    with pytest.raises(OSError) as full:
        with atomic_directory(tmp_path / "checkpoint"):
            raise Exception("Error while serializing: IoError(No space left on device (os error 28))")
    assert full.value.errno == errno.ENOSPC and not (tmp_path / "checkpoint").exists()


def test_a_run_refused_on_its_data_leaves_no_directory_or_lock(assets, tmp_path):
    """Before: a run that failed on its data left its .lock file (and an empty run directory) behind."""
    from tests.test_scripts import COMMON, run_script

    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(30)) + '{"text": "no prompt column"}\n')
    argv = ["--algorithm", "ppo", "--model_name", str(assets / "lm"), "--output_dir", str(tmp_path / "runs"), *COMMON,
            "--dataset_path", str(data), "--reward_fn", "own_task.example_reward:upbeat"]
    with pytest.raises(UsageError, match=r"prompts.jsonl:31: row lacks column\(s\) \['prompt'\]"):
        run_script("own_task/train.py", argv)
    assert not (tmp_path / "runs" / "run").exists()


def test_a_path_beside_the_checkout_is_the_same_path_in_its_portable_entry():
    """Before: a study whose files lay beside the checkout (../data) had every entry refused: the entry holds
    `<repo>/../data/x` (no machine's paths are committed), study.json the absolute path."""
    from cory.studies.checks import _same

    assert _same("<repo>/../data/reviews.jsonl", "/home/me/data/reviews.jsonl")
    assert _same("<repo>/configs/x.py", "/home/me/cory/configs/x.py")
    assert not _same("<repo>/../data/reviews.jsonl", "/home/me/data/other.jsonl")
    assert _same("plain", "plain") and not _same("plain", "other")


def test_a_machine_s_bf16_is_read_from_its_recorded_flags_not_from_an_older_entry_s_onednn_answer():
    """Entries of the Ice Lake Xeon written before the flags decided say bf16_native True (oneDNN emulates it)."""
    ice_lake = {"cpu": "Intel(R) Xeon(R) Processor @ 2.80GHz", "flags": ["avx2", "avx512f"], "bf16_native": True}
    assert not native_bf16(ice_lake)
    assert native_bf16({**ice_lake, "flags": ["avx2", "avx512f", "amx_bf16"], "bf16_native": False})
    assert native_bf16({"cpu": "older entry, no flags recorded", "bf16_native": True})


def test_a_live_run_s_wall_time_is_on_disk_before_it_ends(tmp_path, monkeypatch):
    """Before: a run's wall time was written only when the run finished, so an attempt that a session's end killed
    counted nothing and a resumed run's entry recorded its last attempt alone (12 of the three-claims runs)."""
    import cory.studies.queue as queue

    walls, seen = tmp_path / "study" / "runs" / "wall_seconds.json", tmp_path / "seen.json"
    peek = f"import pathlib, time; time.sleep(1.0); pathlib.Path({str(seen)!r}).write_text(pathlib.Path({str(walls)!r}).read_text())"
    monkeypatch.setattr(queue, "WALL_FLUSH_SECONDS", 0.2)
    monkeypatch.setattr(StudyQueue, "command", lambda self, job, directory: [sys.executable, "-c", peek])
    monkeypatch.setattr(StudyQueue, "_record", lambda self, job, directory, wall, code: None)
    StudyQueue(tmp_path / "study", STUDY, ROOT)._train([("default", "ppo", 0)], 1, "x", 1)
    while_live, after = json.loads(seen.read_text())["default/ppo-seed0"], json.loads(walls.read_text())["default/ppo-seed0"]
    assert 0.2 <= while_live < after and after >= 1.0


def test_a_report_rebuild_of_a_study_in_the_claims_figure_redraws_it(tmp_path, monkeypatch):
    """results/claims.png is drawn from the reports: rebuilding one it shows redraws it, so the README's picture
    never lags the tables; another study's rebuild leaves it alone (the report's own tables are tested elsewhere)."""
    out, jobs = ledger(tmp_path, {("ppo", 0): entry("ppo", 0), ("cory", 0): entry("cory", 0)})
    monkeypatch.setitem(COMPARE["report"].__globals__, "write_report", lambda *args: None)
    COMPARE["report"](out, STUDY, "study", jobs)
    assert not (tmp_path / "claims.png").exists()
    COMPARE["report"](out, STUDY, "imdb-frontier", jobs)
    assert (tmp_path / "claims.png").exists()
