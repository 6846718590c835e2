"""Sweeps from Python: a dict of settings in, the run's summary out (the command line is the same call with flags).

    from cory.sweep import run
    for lr in (1e-5, 5e-5):
        summary = run("imdb_train/cory.py", {"learning_rate": lr, "steps": 10, "eval_every": 10})
        print(lr, summary["held_out"]["agent_a"]["reward_mean"], summary["held_out"]["agent_a"]["kl_exact"])

Keys are the script's settings (`--help` lists them), applied over the preset as flags would be and type-checked
the same way; each run gets a directory of its own, named after the preset and the values given, unless `run_name`
is one of them.
"""
from __future__ import annotations

import hashlib
import json
import re
import runpy
from pathlib import Path

from cory.config import DEFAULT_PRESET, REPO_ROOT
from cory.errors import MissingInput
from cory.run.tracking import read_metrics

WHERE = ("output_dir", "run_name", "resume_from", "overwrite")
"""settings that say where a run lives, not what it trains: left out of the directory's name"""


def run(script: str, config: dict | None = None, preset: str = DEFAULT_PRESET) -> dict:
    """Train `script` (a path from the repo root, e.g. imdb_train/cory.py, or any path) with `config` over `preset`;
    returns {"run_dir", "final_step": the last step's stats, "held_out": {agent: its last held-out evaluation}}."""
    path = Path(script) if Path(script).is_absolute() else REPO_ROOT / script
    if not path.is_file():
        raise MissingInput(f"sweep: no training script {script} (one of imdb_train/cory.py, imdb_train/ppo.py, "
                           "gsm8k_train/cory.py, gsm8k_train/ppo.py, own_task/train.py)")
    config = {"output_dir": "runs", **(config or {})}
    config.setdefault("run_name", run_name(path, preset, config))
    stats = runpy.run_path(str(path), run_name="cory_sweep")["main"](["--preset", preset], config)
    run_dir = Path(config["output_dir"]) / config["run_name"]
    return {"run_dir": str(run_dir), "final_step": stats, "held_out": last_evaluations(run_dir / "eval.jsonl")}


def run_name(script: Path, preset: str, config: dict) -> str:
    """e.g. imdb-cory-offline-learning_rate=1e-05-seed0: one directory per point of a sweep (a path value by its last
    part; a name over 100 characters is cut and ends in a hash of the whole config, so two points never share one)."""
    values = {key: Path(str(value)).name if "/" in str(value) else value for key, value in sorted(config.items())}
    swept = "-".join(f"{key}={value}" for key, value in values.items() if key not in (*WHERE, "seed"))
    name = re.sub(r"[^\w.=+-]+", "_", f"{script.parent.name.removesuffix('_train')}-{script.stem}-{preset}-{swept}")
    if len(name) > 100:
        name = name[:90] + "-" + hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{name}-seed{config.get('seed', 0)}"


def last_evaluations(path: Path) -> dict[str, dict]:
    """Each agent's last held-out evaluation alone (metrics only), from a run's eval.jsonl; {} without one."""
    if not path.exists():
        return {}
    rows = read_metrics(path)
    last = max(r["step"] for r in rows)
    return {r["agent"]: {k: v for k, v in r.items() if k not in ("agent", "role", "samples", "per_prompt")}
            for r in rows if r["step"] == last and r["role"] == "alone"}
