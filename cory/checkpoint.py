"""Checkpoints: everything a run needs to continue exactly, written atomically, the newest K kept.

Layout: `run_dir/checkpoints/step-0000012/` = one directory per agent (HF model or peft adapter, value head),
`state.pt` (optimizers, KL controllers, score statistics, trainer and loop RNGs, data position, step),
`config.json`, and the marker `COMPLETE`, written last. The directory is built under a temporary name and
renamed, so a crash leaves either the whole checkpoint or none; a directory without the marker is never loaded.
"""
from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from cory.agents import load_policy_weights, write_policy
from cory.paths import atomic_directory

MARKER = "COMPLETE"
RESUME_MAY_CHANGE = {"steps", "resume_from", "save_every", "keep_checkpoints", "log_with", "log_samples_every", "eval_every"}


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / MARKER).exists())


def rng_state() -> dict:
    """Every global RNG, as tensors and plain types only (what `torch.load(weights_only=True)` accepts)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, steps_done: int, algorithm, tokenizer, loop_state: dict, rngs: list[dict], config: dict,
                    keep: int) -> Path:
    """Write the checkpoint after `steps_done` steps (with the RNG state of every process), then delete all but the newest `keep`."""
    target = checkpoints_dir(run_dir) / f"step-{steps_done:07d}"
    with atomic_directory(target) as tmp:
        for name, trainer in zip(algorithm.names, algorithm.agents):
            write_policy(trainer.policy, tokenizer, tmp / name)
        state = {"steps_done": steps_done, "agents": [t.state_dict() for t in algorithm.agents], "loop": loop_state, "rng": rngs}
        torch.save(state, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        (tmp / MARKER).write_text(str(steps_done))
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return target


def find_checkpoint(resume_from: str, run_dir: Path) -> Path | None:
    """`auto`: the newest complete checkpoint of this run (None if there is none); else the given path."""
    if not resume_from:
        return None
    if resume_from == "auto":
        found = complete_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume_from).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from: checkpoint {path} does not exist")
    if not (path / MARKER).exists():
        raise ValueError(f"resume_from: {path} has no {MARKER} marker (a checkpoint cut off mid-write); use another")
    return path


def check_same_config(saved: dict, current: dict) -> None:
    """Resuming with different settings would silently mix two experiments: refuse, naming the keys."""
    keys = (set(saved) | set(current)) - RESUME_MAY_CHANGE
    changed = sorted(k for k in keys if saved.get(k) != current.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume: the config differs from the checkpoint's ({detail})")


def load_checkpoint(path: Path, algorithm, config: dict) -> dict:
    """Restore weights and trainer state into `algorithm`'s agents; returns the checkpoint's state
    (`steps_done`, `loop`, `rng`); the caller restores the RNGs last, once everything is built."""
    path = Path(path)
    check_same_config(json.loads((path / "config.json").read_text()), config)
    try:  # weights_only: a shared checkpoint can hold tensors and plain values, never code to run
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path / 'state.pt'} holds more than tensors and plain values (refused, nothing was run): "
                         f"{str(error).splitlines()[0]}") from None
    for name, trainer, agent_state in zip(algorithm.names, algorithm.agents, state["agents"]):
        load_policy_weights(trainer.policy, path / name)
        trainer.load_state_dict(agent_state)
    return state
