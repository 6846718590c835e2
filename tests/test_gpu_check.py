"""The prepared GPU check cannot rot: its CPU dry run runs each command line once at toy size (CUDA-only parts and
the GPT2-Large steps, the SmolLM2 steps' command with another model, skip)."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_passes_and_reports_every_part(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", "scripts/gpu_check.sh", "--cpu-dry-run"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {name: part["status"] for name, part in report["parts"].items()}
    assert status == {"tests": "ok", "smollm2_steps": "ok", "training_loop": "ok", "lora_4bit": "skipped",
                      "deepspeed_zero2": "skipped", "gpt2_large_steps": "skipped"}
    assert report["parts"]["lora_4bit"]["reason"] == "skipped: no CUDA"
    assert report["parts"]["tests"]["summary"] == "6 test files present"  # make test runs them; the GPU run runs them there
    steps = report["parts"]["smollm2_steps"]["metrics"]
    assert set(steps) == {"ppo_fp32", "cory_fp32"} and all(m["s_per_step"] > 0 and m["peak_memory_mb"] > 0 for m in steps.values())
    assert "| gpt2_large_steps |" in (tmp_path / "gpu_check.md").read_text()
