"""A run is reused across studies only where the two are one computation, and a longer run started from a shorter
one's checkpoint ends where an uninterrupted run ends."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cory.errors import UsageError
from cory.platform.paths import read_json, write_json
from cory.run.checkpoint import MARKER, manifest
from cory.studies.ledger import entry_path
from cory.studies.queue import run_dir
from cory.studies.reuse import RunRef, differences, reuse_entry, seed_run, start_from
from tests.test_resume import ENV, run_command

STUDY = {"task": "imdb", "task_preset": "offline", "steps": 3, "eval_every": 1, "eval_prompts": 4, "mixed_precision": "no",
         "extra_args": [], "training_commits": ["abc"], "settings": {"default": {"flags": [], "seeds": [0, 1]},
                                                                      "lr4x": {"flags": ["--learning_rate", "2e-4"], "seeds": [0]}},
         "arms": {"ppo": {"algorithm": "ppo", "args": []}, "cory": {"algorithm": "cory", "args": []}}}


def studies(tmp_path: Path) -> Path:
    """results/short (STUDY) and results/long (the same, but CORY runs 6 steps)."""
    long = copy.deepcopy(STUDY)
    long["arms"]["cory"]["args"] = ["--steps", "6"]
    for name, study in (("short", STUDY), ("long", long)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.json").write_text(json.dumps(study))
    return tmp_path


def test_run_names_parse_and_a_malformed_one_says_the_form():
    assert RunRef.parse("imdb-robustness:default/cory-seed2") == RunRef("imdb-robustness", "default", "cory", 2)
    assert str(RunRef("a", "lr4x", "ppo-system", 10)) == "a:lr4x/ppo-system-seed10"
    with pytest.raises(UsageError, match="STUDY:SETTING/ARM-seedN"):
        RunRef.parse("imdb-robustness/default/cory-seed2")


def test_only_one_computation_but_for_its_length_is_reused(tmp_path):
    results = studies(tmp_path)
    assert differences(results, RunRef.parse("short:default/cory-seed1"), RunRef.parse("long:default/cory-seed1")) == []
    assert differences(results, RunRef.parse("short:default/ppo-seed0"), RunRef.parse("long:default/ppo-seed0")) == []
    assert differences(results, RunRef.parse("short:default/ppo-seed0"), RunRef.parse("long:default/ppo-seed1")) == ["seed 0 is not seed 1"]
    assert differences(results, RunRef.parse("short:lr4x/ppo-seed0"), RunRef.parse("long:default/ppo-seed0")) == \
        ["learning_rate=0.0002 vs 5e-05"]
    assert "the arms run different algorithms" in differences(results, RunRef.parse("short:default/ppo-seed0"),
                                                              RunRef.parse("long:default/cory-seed0"))
    other = json.loads((results / "long" / "study.json").read_text())
    other["training_commits"] = ["def"]
    (results / "long" / "study.json").write_text(json.dumps(other))
    assert differences(results, RunRef.parse("short:default/ppo-seed0"), RunRef.parse("long:default/ppo-seed0")) == \
        ["training_commits: ['abc'] vs ['def']"]
    with pytest.raises(UsageError, match="long:default/ppo-seed5: study.json of long has no seed 5"):
        differences(results, RunRef.parse("short:default/ppo-seed0"), RunRef.parse("long:default/ppo-seed5"))


def test_an_entry_of_the_same_length_is_reused_marked_and_never_twice(tmp_path):
    results = studies(tmp_path)
    source, target = RunRef.parse("short:default/ppo-seed1"), RunRef.parse("long:default/ppo-seed1")
    with pytest.raises(UsageError, match="has no ledger entry yet"):
        reuse_entry(results, source, target)
    entry = {"setting": "default", "algorithm": "ppo", "seed": 1, "training_commit": "abc", "config": {"steps": 3}, "evals": []}
    write_json(entry_path(results / "short", *source.job), entry)
    path = reuse_entry(results, source, target)
    assert path == entry_path(results / "long", "default", "ppo", 1)
    assert read_json(path) == {**entry, "reused_from": "short:default/ppo-seed1"}
    assert read_json(entry_path(results / "short", *source.job)) == entry  # the source's is untouched
    with pytest.raises(UsageError, match="has a ledger entry already"):
        reuse_entry(results, source, target)
    with pytest.raises(UsageError, match="runs 3 steps, long:default/cory-seed1 6: seed the longer run"):
        reuse_entry(results, RunRef.parse("short:default/cory-seed1"), RunRef.parse("long:default/cory-seed1"))


def fake_run(directory: Path, step: int) -> Path:
    """A run directory with its checkpoint of `step` and its logs."""
    checkpoint = directory / "checkpoints" / f"step-{step:07d}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.pt").write_bytes(b"state")
    (checkpoint / MARKER).write_text(json.dumps({"files": manifest(checkpoint)}))
    (directory / "eval.jsonl").write_text("".join(json.dumps({"step": s, "agent": "agent_a"}) + "\n" for s in range(step + 2)))
    (directory / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(step + 1)))
    (directory / "loaded_models.json").write_text("[]")
    return checkpoint


def test_a_longer_run_is_seeded_by_hard_links_from_a_checkpoint_before_the_source_s_end(tmp_path):
    results = studies(tmp_path)
    source, target = RunRef.parse("short:default/cory-seed0"), RunRef.parse("long:default/cory-seed0")
    with pytest.raises(UsageError, match="has no complete checkpoint"):
        seed_run(results, source, target)
    checkpoint = fake_run(run_dir(results / "short", *source.job), 2)
    assert seed_run(results, source, target) == checkpoint
    seeded = run_dir(results / "long", *target.job)
    linked = seeded / "checkpoints" / checkpoint.name / "state.pt"
    assert linked.read_bytes() == b"state" and linked.stat().st_ino == (checkpoint / "state.pt").stat().st_ino
    assert (seeded / "eval.jsonl").read_text() == (checkpoint.parent.parent / "eval.jsonl").read_text()
    assert "seeded from short:default/cory-seed0's checkpoint step-0000002" in (seeded.parent / f"{seeded.name}.log").read_text()
    with pytest.raises(UsageError, match="holds a run already"):
        seed_run(results, source, target)
    shutil.rmtree(seeded)
    (checkpoint / "state.pt").write_bytes(b"STATE")  # corrupted after it was written: never seeded from
    with pytest.raises(UsageError, match="does not match its sha256"):
        seed_run(results, source, target, checkpoint)
    assert not seeded.exists()


def test_a_run_is_seeded_only_from_a_checkpoint_before_both_runs_end(tmp_path):
    results = studies(tmp_path)
    short, long = RunRef.parse("short:default/cory-seed1"), RunRef.parse("long:default/cory-seed1")
    last = fake_run(run_dir(results / "short", *short.job), 3)
    with pytest.raises(UsageError, match="written at short:default/cory-seed1's last step, after its final evaluations"):
        seed_run(results, short, long, last)
    late = fake_run(run_dir(results / "long", *long.job), 4)
    with pytest.raises(UsageError, match="short:default/cory-seed1 runs 3 steps, so it would train nothing from step 4"):
        seed_run(results, long, short, late)
    early = fake_run(run_dir(results / "long", "default", "cory", 0), 2)  # a shorter run from a longer one's checkpoint
    assert seed_run(results, RunRef.parse("long:default/cory-seed0"), RunRef.parse("short:default/cory-seed0")) == early


def test_a_run_started_from_a_shorter_run_s_checkpoint_ends_as_an_uninterrupted_run(assets, tmp_path):
    """The shorter run (4 steps) went on past its checkpoint of step 3; the longer one (6) continues from it to the bit."""
    straight, short, seeded = tmp_path / "straight", tmp_path / "short", tmp_path / "seeded"
    subprocess.run(run_command(assets, straight), env=ENV, check=True, capture_output=True, timeout=600)
    subprocess.run(run_command(assets, short, "--steps", "4"), env=ENV, check=True, capture_output=True, timeout=600)
    start_from(short / "run" / "checkpoints" / "step-0000003", short / "run", seeded / "run")
    out = subprocess.run(run_command(assets, seeded, "--resume_from", "auto"), env=ENV, check=True, capture_output=True,
                         text=True, timeout=600)
    assert "resumed from" in out.stderr + out.stdout
    for agent in ("agent_a", "agent_b"):
        a, b = (load_file(d / "run" / "final" / agent / "model.safetensors") for d in (straight, seeded))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent
    logs = {d: [json.loads(line) for line in (d / "run" / "eval.jsonl").read_text().splitlines()] for d in (straight, seeded)}
    assert [(r["step"], r["agent"], r["role"], r["reward_mean"]) for r in logs[seeded]] == \
        [(r["step"], r["agent"], r["role"], r["reward_mean"]) for r in logs[straight]]
    metrics = {d: [json.loads(line) for line in (d / "run" / "metrics.jsonl").read_text().splitlines()] for d in (straight, seeded)}
    assert [r["agent_a/objective/kl"] for r in metrics[seeded]] == [r["agent_a/objective/kl"] for r in metrics[straight]]
