"""Every training script runs end to end on tiny models, writes its outputs, and fails early on bad input."""
import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cory.run.checkpoint import MARKER
from cory.errors import UsageError
from cory.studies.ledger import check_same_setting, make_entry, read_entry, write_entry
from cory.studies.queue import StudyQueue
from cory.run.rundir import RunDirLock

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--steps", "2", "--batch_size", "4", "--mini_batch_size", "2", "--ppo_epochs", "1", "--response_min_tokens", "2",
          "--response_max_tokens", "3", "--run_name", "run", "--mixed_precision", "no"]  # in-process: accelerate's state is fp32


def run_script(path: str, argv: list[str]) -> dict:
    return runpy.run_path(str(ROOT / path))["main"](argv)


def task_args(task, assets, cory=True):
    if task == "imdb":
        return ["--reward_model", str(assets / "classifier"), "--dataset_path", str(assets / "reviews.jsonl")]
    observer = ["--observer_template", "Q: {question} Hint: {pioneer_response} A:"] if cory else []
    return ["--dataset_path", str(assets / "problems.jsonl"), "--prompt_template", "Q: {question} A:", *observer,
            "--lora_target_modules", "c_attn", "--use_chat_template", "false"]


@pytest.mark.parametrize("script", ["imdb_train/ppo.py", "imdb_train/cory.py", "gsm8k_train/ppo.py", "gsm8k_train/cory.py"])
def test_script_runs_and_writes_its_outputs(script, assets, tmp_path):
    task = script.split("_")[0]
    argv = ["--model_name", str(assets / "lm"), "--output_dir", str(tmp_path), *COMMON,
            *task_args(task, assets, cory=script.endswith("cory.py"))]
    stats = run_script(script, argv)
    run_dir = tmp_path / "run"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and stats
    assert (run_dir / "curves.png").stat().st_size > 0 and (run_dir / "config.json").exists()
    names = ["agent_a", "agent_b"] if script.endswith("cory.py") else ["policy"]
    merged = [f"{n}-merged" for n in names] if task == "gsm8k" else []  # LoRA on a tiny model: save_merged auto
    assert sorted(p.name for p in (run_dir / "final").iterdir()) == sorted(names + merged)
    if task == "gsm8k":  # LoRA: each agent is a standard peft adapter directory that plain peft loads on its base
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, pipeline

        agent = run_dir / "final" / names[-1]
        config = json.loads((agent / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(assets / "lm") and (agent / "adapter_model.safetensors").exists()
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"]), str(agent))
        plain = AutoModelForCausalLM.from_pretrained(run_dir / "final" / merged[-1])  # ... and merged, plain transformers
        ids = torch.tensor([[1, 2, 3, 4]])
        with torch.no_grad():
            assert torch.allclose(adapted(ids).logits, plain(ids).logits, atol=1e-5)
            with adapted.disable_adapter():  # the trained adapter moved the logits: the merge carried it
                assert not torch.allclose(adapted(ids).logits, plain(ids).logits, atol=1e-5)
        assert pipeline("text-generation", model=str(run_dir / "final" / merged[-1]))("Q: 1+1 A:", max_new_tokens=2)
    assert not (run_dir / "checkpoints").exists()  # no save_every: final/ only, no 2 GB end-of-run checkpoint


@pytest.mark.parametrize("argv, error, message", [
    (["--batch_size", "5"], ValueError, "divisible"),
    (["--swap_freq", "-1"], ValueError, "swap_freq must be >= 0"),
    (["--observer_template", "{query} only"], ValueError, "lacks field"),
    (["--load_in_4bit", "true"], ValueError, "set lora_r > 0"),
    (["--load_in_4bit", "true", "--lora_r", "8"], ValueError, "needs a CUDA GPU"),
    (["--dataset_path", "no/such.parquet"], FileNotFoundError, "no/such.parquet does not exist"),
    (["--model_name", "./no/such/model"], FileNotFoundError, "does not exist"),
])
def test_bad_input_fails_before_training(argv, error, message, assets, tmp_path):
    base = ["--model_name", str(assets / "lm"), "--output_dir", str(tmp_path), *COMMON, *task_args("imdb", assets)]
    with pytest.raises(error, match=message):
        run_script("imdb_train/cory.py", base + argv)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_cory_key_given_to_a_ppo_script_is_refused(assets, tmp_path):
    base = ["--model_name", str(assets / "lm"), "--output_dir", str(tmp_path), *COMMON, *task_args("imdb", assets)]
    with pytest.raises(UsageError, match="--swap_freq is a CORY setting"):
        run_script("imdb_train/ppo.py", base + ["--swap_freq", "3"])


def test_compare_is_a_study_with_a_ledger_the_report_is_rebuilt_from(assets, tmp_path):
    """Two runs at once as subprocesses, each a ledger entry when it finishes; a second call trains nothing; the
    report comes back from the ledger alone; a missing entry is the only run redone; other settings are refused."""
    compare = runpy.run_path(str(ROOT / "scripts" / "compare.py"))["main"]
    argv = ["--results_dir", str(tmp_path), "--name", "tiny", "--seeds", "0", "--steps", "2", "--eval_every", "1",
            "--eval_prompts", "3", "--jobs", "2", "--mixed_precision", "no", "--allow_uncommitted", "--model_name",
            str(assets / "lm"), "--eval_dataset_path", str(assets / "reviews.jsonl"), *COMMON[2:-4], *task_args("imdb", assets)]
    compare(argv)
    out = tmp_path / "tiny"
    study = json.loads((out / "study.json").read_text())
    assert study["mixed_precision"] == "no" and study["settings"] == {"default": {"flags": [], "seeds": [0]}}
    assert study["decision_rule"] == "seed-level" and study["frontier"] == {  # decided on the frontier, never at final points
        "kl_levels": [3.0, 5.0, 8.0, 12.0], "reward_levels": [], "baselines": ["ppo"], "degeneration": True,
        "answer": "per_agent_some_level_above"}
    entries = {run: out / "ledger" / "default" / f"{run}.json.gz" for run in ("ppo-seed0", "cory-seed0")}
    for run, path in entries.items():
        assert not (out / "runs" / "default" / run / "checkpoints").exists()  # finished: checkpoints dropped
        entry = read_entry(path)
        assert entry["config"]["mixed_precision"] == "no" and entry["machine"]["cores"] >= 1 and entry["wall_seconds"] > 0
        assert path.stat().st_size < 50_000 and str(ROOT) not in path.read_bytes().decode("latin-1")
        weights = hashlib.sha256((assets / "lm" / "model.safetensors").read_bytes()).hexdigest()[:16]
        assert entry["model_fingerprints"]["model_name"] == weights  # recorded by the run when it loaded them
    rows = read_entry(entries["cory-seed0"])["evals"]
    assert {(r["step"], r["role"]) for r in rows} >= {(0, "observer_of_other"), (2, "observer_of_self"), (1, "alone")}
    assert set(rows[0]["per_prompt"]) == {"reward", "kl_exact", "response_len", "response_ids", "judge_vader"}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["comparison"] for r in summary["paired"]] == ["CORY agent A - PPO", "CORY agent B - PPO"]
    report = (out / "summary.md").read_text()
    assert "## Pre-registered frontier endpoints: setting default" in report and "## Answer to the claim" in report
    assert "- CORY agent A against PPO: **not decided (1 of 1 seeds landed" in report  # 2 steps reach no KL level
    degeneration = runpy.run_path(str(ROOT / "scripts" / "degeneration.py"))["main"]
    table = degeneration(["tiny", "--results_dir", str(tmp_path)])  # from the ledger: each arm's responses by step
    assert all(f"**{arm}**" in table for arm in ("PPO", "CORY agent A", "CORY agent B")) and "| 2 | " in table
    with pytest.raises(UsageError, match="--setting 'kl0': study tiny has \\['default'\\]"):
        degeneration(["tiny", "--results_dir", str(tmp_path), "--setting", "kl0"])
    judge = runpy.run_path(str(ROOT / "scripts" / "judge_agreement.py"))["main"]
    agreement = judge(["tiny", "--results_dir", str(tmp_path)])  # the classifier built here re-scores what it scored
    assert {r["run"]: r["prompts"] for r in agreement["runs"]} == {"cory-seed0": 2 * 3 * 3, "ppo-seed0": 3 * 3}  # agents x evals x prompts
    assert agreement["max_abs"] < 1e-6
    stamp = entries["cory-seed0"].stat().st_mtime_ns
    shutil.rmtree(out / "runs")  # the ledger alone rebuilds every table
    (out / "summary.md").unlink()
    compare(["--results_dir", str(tmp_path), "--name", "tiny", "--report_only"])
    assert (out / "summary.md").read_text() == report  # to the byte, and it names the command that rebuilt it
    assert "`python scripts/compare.py --name tiny --report_only`" in report and str(tmp_path) not in report
    entries["ppo-seed0"].unlink()  # a missing entry: only that run trains again
    compare(argv)
    assert entries["ppo-seed0"].exists() and entries["cory-seed0"].stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"steps=3 \(study.json: 2\)"):
        compare([*argv, "--steps", "3"])


def test_a_run_of_other_settings_cannot_join_a_setting(tmp_path):
    base = {"setting": "default", "algorithm": "ppo", "seed": 0, "config": {"seed": 0, "learning_rate": 1e-5, "output_dir": "a"}}
    check_same_setting(base, {**base, "seed": 1, "config": {"seed": 1, "learning_rate": 1e-5, "output_dir": "b"}})
    with pytest.raises(ValueError, match="learning_rate=1e-05 vs 2e-05"):
        check_same_setting(base, {**base, "seed": 1, "config": {"seed": 1, "learning_rate": 2e-5}})


def test_a_study_continues_after_clearing_only_attempts_killed_before_their_first_checkpoint(tmp_path):
    """imdb-claims' pinned code appended a restarted run's step-0 evaluation to the killed attempt's log: before a
    study continues, a run with no checkpoint and no ledger entry is cleared; a resumable, a landed and a live one stay."""
    from cory.studies.queue import clear_unresumable, run_dir

    out = tmp_path / "study"
    jobs = [("default", algorithm, seed) for algorithm in ("ppo", "cory") for seed in (0, 1)]
    dirs = {job: run_dir(out, *job) for job in jobs}
    for directory in dirs.values():
        directory.mkdir(parents=True)
        (directory / "eval.jsonl").write_text('{"step": 0}\n')
    resumable = dirs[("default", "ppo", 1)] / "checkpoints" / "step-0000010"
    resumable.mkdir(parents=True)
    (resumable / MARKER).write_text("{}")
    landed = out / "ledger" / "default" / "cory-seed0.json.gz"
    landed.parent.mkdir(parents=True)
    landed.write_bytes(b"")
    live = RunDirLock(dirs[("default", "cory", 1)])
    live.acquire()
    try:
        assert clear_unresumable(out, jobs) == [dirs[("default", "ppo", 0)]]
    finally:
        live.release()
    assert [job for job, directory in dirs.items() if directory.exists()] == jobs[1:]


def test_a_ledger_entry_with_an_evaluation_logged_twice_is_refused(tmp_path):
    rows = [{"step": 0, "agent": "agent_a", "role": "alone", "per_prompt": {"reward": [0.1]}}] * 2
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(UsageError, match=r"evaluation of step 0 \(agent_a, alone\) is logged twice"):
        make_entry(tmp_path, "default", "cory", 0, 1.0, "abc", None, tmp_path)
    path = tmp_path / "entry.json.gz"
    write_entry(path, {"evals": rows})
    with pytest.raises(UsageError, match="logged twice"):
        read_entry(path)


def test_a_ledger_entry_names_the_weights_each_attempt_loaded_not_those_there_at_the_end(tmp_path):
    """A classifier rebuilt while a run went on was named by the entry although the run never used it."""
    from cory.studies.ledger import loaded_fingerprints
    from cory.run.rundir import LOADED_MODELS

    model = tmp_path / "classifier"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"rebuilt during the run")
    config = {"reward_model": str(model)}
    now = hashlib.sha256(b"rebuilt during the run").hexdigest()[:16]
    assert loaded_fingerprints(tmp_path, config) == {"reward_model": now}  # older code recorded nothing
    attempts = [{"start_step": 0, "fingerprints": {"reward_model": "aaaa"}}, {"start_step": 10, "fingerprints": {"reward_model": "aaaa"}},
                {"start_step": 20, "fingerprints": {"reward_model": "bbbb"}}]
    (tmp_path / LOADED_MODELS).write_text(json.dumps(attempts))
    assert loaded_fingerprints(tmp_path, config) == {"reward_model": "aaaa+bbbb"}


def test_compare_refuses_a_malformed_sweep_setting(tmp_path):
    compare = runpy.run_path(str(ROOT / "scripts" / "compare.py"))["main"]
    with pytest.raises(SystemExit, match="key=value"):
        compare(["--results_dir", str(tmp_path), "--sweep", "init_kl_coef"])
    assert not (tmp_path / "imdb" / "runs").exists()


def test_a_study_names_its_algorithms_and_gives_one_algorithm_its_own_flags(tmp_path):
    """A critic-free study at equal responses per step: GRPO's runs alone get --batch_size 64; the names are kept in
    study.json; a later call with other names is refused; malformed items fail before any run."""
    compare = runpy.run_path(str(ROOT / "scripts" / "compare.py"))
    settings = {**compare["PRESETS"]["offline"], "task": "imdb"}
    registered = {"names": compare["parse_names"](["ppo=GRPO", "cory=CORY-GRPO"]), "algorithm_args": compare["parse_algorithm_args"](["ppo:batch_size=64"])}
    study = compare["new_study"](settings, [], ["--advantage_estimator", "grpo", "--samples_per_prompt", "4"], "no", registered)
    assert study["names"] == {"ppo": "GRPO", "cory": "CORY-GRPO"} and study["algorithm_args"] == {"ppo": ["--batch_size", "64"]}
    queue = StudyQueue(tmp_path, study, ROOT)
    ppo = queue.command(("default", "ppo", 0), tmp_path / "ppo-seed0")
    cory = queue.command(("default", "cory", 0), tmp_path / "cory-seed0")
    assert ppo[ppo.index("--batch_size") + 1] == "64" and "--batch_size" not in cory
    assert ppo[-6:] == ["--advantage_estimator", "grpo", "--samples_per_prompt", "4", "--batch_size", "64"]
    plain = compare["new_study"](settings, [], [], "no")  # a study without them keeps the old form (imdb-claims)
    assert "names" not in plain and "algorithm_args" not in plain
    for bad in (["--names", "ppo"], ["--names", "grpo=GRPO"], ["--algorithm_args", "batch_size=64"], ["--algorithm_args", "sac:lr=1"],
                ["--kl_levels", "5", "3"], ["--kl_levels", "0", "3"], ["--reward_levels", "0.5", "nan"]):
        with pytest.raises(SystemExit, match="--names|--algorithm_args|--kl_levels|--reward_levels"):
            compare["main"](["--results_dir", str(tmp_path), *bad])
    grpo = ["--results_dir", str(tmp_path), "--name", "grpo", "--names", "ppo=GRPO", "cory=CORY-GRPO", "--algorithm_args",
            "ppo:batch_size=64", "--advantage_estimator", "grpo", "--samples_per_prompt", "4", "--prepare_only"]
    with pytest.raises(UsageError, match="responses_per_step per model differs: GRPO 64, CORY-GRPO 32"):
        compare["main"](grpo)  # the default claim (matched per model) does not hold for these settings: nothing written
    assert not (tmp_path / "grpo").exists()
    compare["main"]([*grpo, "--budget", "per system:responses_per_step,optimizer_steps"])
    written = json.loads((tmp_path / "grpo" / "study.json").read_text())  # pre-registered, nothing run
    assert {k: written[k] for k in ("names", "algorithm_args", "extra_args")} == {k: study[k] for k in ("names", "algorithm_args", "extra_args")}
    assert written["frontier"]["answer"] == "per_agent_some_level_above" and written["decision_rule"] == "seed-level"
    with pytest.raises(ValueError, match=r"frontier=\{'kl_levels': \[3.0, 6.0\]"):  # endpoints, like settings, never change
        compare["main"](["--results_dir", str(tmp_path), "--name", "grpo", "--kl_levels", "3", "6", "--report_only"])
    with pytest.raises(ValueError, match="names="):
        compare["main"](["--results_dir", str(tmp_path), "--name", "grpo", "--names", "ppo=PPO", "--report_only"])
    assert not (tmp_path / "imdb").exists() and not (tmp_path / "grpo" / "runs").exists()


def test_variants_report_tabulates_critic_free_and_three_agent_runs(assets, tmp_path):
    """A PPO baseline and a three-agent CORY-GRPO run on tiny models, then the report over both."""
    common = ["--model_name", str(assets / "lm"), "--output_dir", str(tmp_path), *COMMON[:-4], "--mixed_precision", "no",
              "--eval_every", "1", "--eval_prompts", "3", "--eval_dataset_path", str(assets / "reviews.jsonl"),
              *task_args("imdb", assets)]
    run_script("imdb_train/ppo.py", [*common, "--run_name", "ppo"])
    stats = run_script("imdb_train/cory.py", [*common, "--run_name", "chain", "--n_agents", "3", "--eval_roles", "false",
                                              "--advantage_estimator", "grpo", "--samples_per_prompt", "2"])
    assert {"observer_2/task_reward", "agent_c/task_reward", "memory/peak_mb"} <= set(stats)
    roles = {json.loads(line)["role"] for line in (tmp_path / "chain" / "eval.jsonl").read_text().splitlines()}
    assert roles == {"alone"}  # --eval_roles false: no observer-role evaluations
    assert not any("/val/" in k for k in stats)  # no value heads
    report = runpy.run_path(str(ROOT / "scripts" / "variants_report.py"))["main"]
    report(["--runs", f"PPO={tmp_path / 'ppo'}", f"CORY-GRPO N=3={tmp_path / 'chain'}", "--steps", "2", "--out", str(tmp_path / "out")])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(r["policy"], r["responses"]) for r in summary["agents"]] == [("PPO", 8)] + [(f"CORY-GRPO N=3 {a}", 24) for a in "ABC"]
    assert [r["comparison"] for r in summary["paired"]["PPO"]] == [f"CORY-GRPO N=3 {a} - PPO" for a in "ABC"]
    assert [(r["agents"], r["value heads"]) for r in summary["cost"]] == [(1, True), (3, False)]
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no finished run"):
        report(["--runs", f"PPO={tmp_path / 'nothing'}", "--out", str(tmp_path / "out")])
    # a study's ledger entry stands for its run: the same evaluations, s/step = wall time over steps, memory unknown
    entry = tmp_path / "ledger" / "default" / "ppo-seed0.json.gz"
    write_entry(entry, make_entry(tmp_path / "ppo", "default", "ppo", 0, 30.0, "abc1234", None, ROOT))
    report(["--runs", f"PPO (ledger)={entry}", f"PPO={tmp_path / 'ppo'}", "--steps", "2", "--out", str(tmp_path / "ledger_out")])
    summary = json.loads((tmp_path / "ledger_out" / "summary.json").read_text())
    assert summary["cost"][0]["s/step"] == pytest.approx(30.0 / 2) and summary["cost"][0]["peak memory (MB)"] == "-"
    assert summary["agents"][0]["responses"] == summary["agents"][1]["responses"] == 8
    [row] = summary["paired"]["PPO (ledger)"]
    assert row["reward_mean"] == {"diff": 0.0, "low": 0.0, "high": 0.0} and row["kl_exact"]["diff"] == 0.0
    with pytest.raises(SystemExit, match="no ledger entry"):
        report(["--runs", f"PPO={tmp_path / 'missing-seed0.json.gz'}", "--out", str(tmp_path / "out")])


def test_variants_report_pairs_several_seeds_by_seed_not_by_order():
    """Seeds listed in another order are paired by their seed; a seed the baseline lacks is left out."""
    module = runpy.run_path(str(ROOT / "scripts" / "variants_report.py"))

    def run(label, rewards_by_seed):
        return {"label": label, "seeds": list(rewards_by_seed), "agents": {"policy": [
            [{"step": 0, "per_prompt": {"reward": [0.0, 0.0], "kl_exact": [0.0, 0.0], "response_ids": [[1], [2]]}},
             {"step": 10, "per_prompt": {"reward": r, "kl_exact": [1.0, 1.0], "response_ids": [[1], [2]]}}] for r in rewards_by_seed.values()]},
            "responses_per_step": 32}

    base = run("PPO", {0: [0.0, 0.0], 1: [1.0, 1.0]})
    other = run("GRPO", {1: [2.0, 2.0], 0: [0.5, 0.5], 5: [9.0, 9.0]})
    [row] = module["paired_table"]([base, other], base, 10)
    assert row["seeds"] == 2 and row["reward_mean"]["diff"] == pytest.approx((0.5 + 1.0) / 2)
    assert 0.5 <= row["reward_mean"]["low"] <= row["reward_mean"]["high"] <= 1.0  # each replicate: a mix of +0.5 and +1
    assert row["kl_exact"] == pytest.approx({"diff": 0.0, "low": 0.0, "high": 0.0})
    wider = run("256 prompts", {0: [0.5, 0.5, 0.5]})  # evaluated on more prompts: nothing to pair prompt by prompt
    assert module["paired_table"]([base, wider], base, 10) == [
        {"comparison": "256 prompts - PPO", "seeds": 0, "reward_mean": "not paired: 3 vs 2 held-out prompts"}]
    table = module["agent_table"]([other], [10])
    assert table[0]["seeds"] == 3 and table[0]["reward_mean"] == pytest.approx((2.0 + 0.5 + 9.0) / 3)
    assert table[0]["reward per seed"] == "2.000 / 0.500 / 9.000"
    change = table[0]["reward since step 0"]  # each seed from 0 to its reward, every prompt alike: only the seeds vary
    assert change["diff"] == pytest.approx((2.0 + 0.5 + 9.0) / 3) and 0.5 <= change["low"] < change["diff"] < change["high"] <= 9.0


def test_tied_group_stats_by_hand():
    tied_groups = runpy.run_path(str(ROOT / "results" / "critic-free" / "grpo_tied_groups.py"))["tied_group_stats"]
    # groups of 2: (1, 1) tied right, (0, 0) tied wrong, (0, 1) not tied
    stats = tied_groups([1.0, 1.0, 0.0, 0.0, 0.0, 1.0], [0.2, -0.2, 0.1, -0.3, -0.7, 0.7], 2)
    assert stats["groups"] == 3 and stats["tied_share"] == pytest.approx(2 / 3) and stats["tied_all_right_share"] == pytest.approx(1 / 3)
    assert stats["tied_adv_abs_mean"] == pytest.approx((0.2 + 0.2 + 0.1 + 0.3) / 4) and stats["untied_adv_abs_mean"] == pytest.approx(0.7)
    assert tied_groups([0.0, 1.0], [-1.0, 1.0], 2)["tied_adv_abs_mean"] is None


def test_tied_group_recorder_runs_a_code_version_and_reports(assets, tmp_path):
    """The recorder drives a checkout's own gsm8k_train/ppo.py (here this one) and logs one row per step."""
    out = tmp_path / "rows.jsonl"
    flags = ["--model_name", str(assets / "lm"), "--output_dir", str(tmp_path), *COMMON, *task_args("gsm8k", assets, cory=False),
             "--advantage_estimator", "grpo", "--samples_per_prompt", "2"]
    subprocess.run([sys.executable, str(ROOT / "results" / "critic-free" / "grpo_tied_groups.py"), "run", str(ROOT), str(out), "--", *flags],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=300)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and all(r["groups"] == 2 for r in rows)
    assert all(r["tied_share"] in (0.0, 0.5, 1.0) and r["response_len_mean"] > 0 for r in rows)
    report = runpy.run_path(str(ROOT / "results" / "critic-free" / "grpo_tied_groups.py"))["report"]
    report({"this": out}, tmp_path / "fix1")
    assert "| this | 2 |" in (tmp_path / "fix1.md").read_text() and (tmp_path / "fix1.png").stat().st_size > 0


@pytest.mark.parametrize("algorithm", ["ppo", "cory"])
def test_your_own_task_trains_with_a_reward_function(algorithm, assets, tmp_path):
    """The README's own-task path: prompts from a file, the reward a plain Python function, no preset needed."""
    argv = ["--algorithm", algorithm, "--model_name", str(assets / "lm"), "--output_dir", str(tmp_path), *COMMON,
            "--dataset_path", str(assets / "reviews.jsonl"), "--prompt_column", "text", "--max_prompt_tokens", "4",
            "--reward_fn", "own_task.example_reward:upbeat", "--eval_every", "2", "--eval_prompts", "3"]
    stats = run_script("own_task/train.py", argv)
    assert ("env/reward_mean" if algorithm == "ppo" else "observer/task_reward") in stats
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows} == {0, 2} and len(rows[0]["per_prompt"]["reward"]) == 3


def test_a_reward_function_that_does_not_exist_is_one_line(tmp_path):
    from cory.errors import UsageError
    from cory.tasks.reward_functions import load_function as load_reward_fn
    from cory.tasks.text import TextTaskConfig

    with pytest.raises(UsageError, match="reward_fn own_task.example_reward:nothing"):
        load_reward_fn("own_task.example_reward:nothing")
    with pytest.raises(UsageError, match="reward_fn 'upbeat' must be module:function"):
        TextTaskConfig(dataset_path="p.jsonl", reward_fn="upbeat")
    assert load_reward_fn("own_task.example_reward:upbeat")(["x"], ["a great fun film", "bad"])[0] == pytest.approx(0.5)


def test_a_study_runs_and_reports_on_gsm8k(assets, tmp_path):
    """compare.py and the report are not IMDB's only: a GSM8K study (no second judge: VADER is IMDB's) on tiny models."""
    compare = runpy.run_path(str(ROOT / "scripts" / "compare.py"))["main"]
    argv = ["--task", "gsm8k", "--results_dir", str(tmp_path), "--name", "tiny-gsm8k", "--seeds", "0", "--steps", "1",
            "--eval_every", "1", "--eval_prompts", "2", "--jobs", "2", "--mixed_precision", "no", "--allow_uncommitted",
            "--model_name", str(assets / "lm"), "--eval_dataset_path", str(assets / "problems.jsonl"), *COMMON[2:-4],
            *task_args("gsm8k", assets, cory=False)]
    compare(argv)
    out = tmp_path / "tiny-gsm8k"
    entry = read_entry(out / "ledger" / "default" / "cory-seed0.json.gz")
    assert entry["config"]["algorithm"] == "cory" and "judge_vader" not in entry["evals"][0]["per_prompt"]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["comparison"] for r in summary["paired"]] == ["CORY agent A - PPO", "CORY agent B - PPO"]
    assert (out / "summary.md").read_text().startswith("# PPO vs CORY on GSM8K")


def test_long_running_scripts_are_parsed_whole_before_they_run(tmp_path):
    """bash reads a script while it runs it: a run_*.sh edited mid-run (a size pre-registered while the last one runs
    for hours) would go on with the new file's bytes at the old offset. Each body is one `{ ...; exit; }` block, which
    bash parses whole before it starts; the `exit` keeps it from reading what was appended meanwhile."""
    for path in sorted((ROOT / "scripts").glob("run_*.sh")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        start = lines.index("set -euo pipefail")
        assert lines[start + 1].startswith("{") and lines[-2:] == ["exit", "}"], path.name
    script = tmp_path / "run_demo.sh"
    script.write_text("set -euo pipefail\n{\necho before\nsleep 1\necho after\nexit\n}\n")
    running = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    with open(script, "a") as f:
        f.write("echo appended\n")
    script.write_text(script.read_text().replace("echo after", "echo edited"))
    assert running.communicate(timeout=30)[0].split() == ["before", "after"]


def test_a_sweep_from_python_runs_each_point_in_its_own_directory(assets, tmp_path):
    """The README's sweep: two values of one key, a dict in (typed values, not flag strings), a summary out."""
    from cory.errors import WrongType
    from cory.sweep import run, run_name

    base = {"model_name": str(assets / "lm"), "output_dir": str(tmp_path), "steps": 2, "batch_size": 4, "mini_batch_size": 2,
            "ppo_epochs": 1, "response_min_tokens": 2, "response_max_tokens": 3, "mixed_precision": "no", "eval_every": 2,
            "eval_prompts": 3, "reward_model": str(assets / "classifier"), "dataset_path": str(assets / "reviews.jsonl"),
            "eval_dataset_path": str(assets / "reviews.jsonl")}
    summaries = {lr: run("imdb_train/ppo.py", {**base, "learning_rate": lr}) for lr in (1e-5, 1e-3)}
    assert len({s["run_dir"] for s in summaries.values()}) == 2  # a long name ends in a hash of the whole config
    assert run_name(Path("imdb_train/cory.py"), "offline", {"learning_rate": 1e-5}) == "imdb-cory-offline-learning_rate=1e-05-seed0"
    for lr, summary in summaries.items():
        assert Path(summary["run_dir"], "metrics.jsonl").exists()
        assert summary["final_step"]["ppo/learning_rate"] == lr and set(summary["held_out"]) == {"policy"}
        assert summary["held_out"]["policy"]["step"] == 2 and "reward_mean" in summary["held_out"]["policy"]
    with pytest.raises(UsageError, match=r"unknown config key\(s\) \['learning_rte'\]; did you mean learning_rate"):
        run("imdb_train/ppo.py", {**base, "learning_rte": 1e-5})
    with pytest.raises(WrongType, match="config key 'steps' must be int, got '2'"):
        run("imdb_train/ppo.py", {**base, "steps": "2", "run_name": "typed"})
    assert not (tmp_path / "typed").exists()


def test_judge_agreement_compares_each_stored_reward_with_this_builds():
    disagreement = runpy.run_path(str(ROOT / "scripts" / "judge_agreement.py"))["disagreement"]
    evals = [{"step": 0, "agent": "a", "role": "alone", "per_prompt": {"reward": [3.0, None, 1.5], "response_ids": [[1, 2, 3], [4], [5]]}},
             {"step": 0, "agent": "a", "role": "observer_of_self", "per_prompt": {"reward": [9.0], "response_ids": [[1]]}},
             {"step": 1, "agent": "a", "per_prompt": {"reward": [2.0], "response_ids": [[6, 7]]}}]
    score = lambda texts: [float(len(t)) for t in texts]  # a "build" that scores a text by its length
    result = disagreement(evals, score, lambda ids: "x" * len(ids))
    # alone rows only (the observer row is skipped); the failed reward (None) is not a prompt; 1 vs 1.5 is the gap
    assert result == {"evaluations": 2, "prompts": 3, "max_abs": 0.5, "mean": pytest.approx(-0.5 / 3)}
