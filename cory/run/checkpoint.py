"""Checkpoints: everything a run needs to continue exactly, written atomically, the newest K kept.

Layout: `run_dir/checkpoints/step-0000012/` = one directory per agent (HF model or peft adapter, value head),
`state.pt` (optimizers, KL controllers, score statistics, trainer and loop RNGs, data position, step),
`config.json`, and the marker `COMPLETE`, written last, holding a manifest (size and sha256 of every file).
The directory is built under a temporary name and renamed, so a crash leaves either the whole checkpoint or
none; a directory without the marker is never loaded, and one whose files no longer match their manifest or
hold non-finite weights is skipped by `--resume_from auto` in favour of the newest one that verifies.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from cory.algorithms.agents import load_policy_weights, write_policy
from cory.errors import MissingInput, RunStopped, UsageError
from cory.platform.paths import atomic_directory, file_sha256

MARKER = "COMPLETE"
DISK_FULL_BELOW = 256 << 20  # bytes free after a failed write below which the disk, not the code, failed it
CORRUPT_SUFFIX = ".corrupt"
RESUME_MAY_CHANGE = {"steps", "resume_from", "save_every", "keep_checkpoints", "log_with", "log_samples_every", "eval_every",
                     "output_dir", "run_name", "overwrite"}  # where a run lives is not a setting: a moved run resumes


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if CORRUPT_SUFFIX not in p.name and (p / MARKER).exists())


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
    check_room(run_dir, steps_done)
    with atomic_directory(target) as tmp:
        for name, trainer in zip(algorithm.names, algorithm.agents):
            write_policy(trainer.policy, tokenizer, tmp / name)
        state = {"steps_done": steps_done, "agents": [t.state_dict() for t in algorithm.agents], "loop": loop_state, "rng": rngs}
        save_state(state, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        (tmp / MARKER).write_text(json.dumps({"steps_done": steps_done, "files": manifest(tmp)}, indent=1))
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return target


def check_room(run_dir: Path, steps_done: int) -> None:
    """Stop before writing a checkpoint the disk cannot hold: a run's checkpoints all have the size of its last one
    (the old ones are deleted only once the new one is whole)."""
    newest = complete_checkpoints(run_dir)[-1:]
    if not newest:
        return
    need = sum(p.stat().st_size for p in newest[0].rglob("*") if p.is_file())
    free = shutil.disk_usage(checkpoints_dir(run_dir)).free
    if free < need:
        raise RunStopped(f"checkpoint after step {steps_done} not written: {free >> 20} MB free on the disk of {run_dir}, "
                         f"a checkpoint of this run takes {need >> 20} MB; earlier checkpoints are whole (free space, then --resume_from auto)")


def save_state(state: dict, path: Path) -> None:
    """torch.save, with a full disk said as the OSError it is (its zip writer reports one as a RuntimeError)."""
    try:
        torch.save(state, path)
    except RuntimeError as error:
        if shutil.disk_usage(path.parent).free >= DISK_FULL_BELOW:
            raise
        raise OSError(errno.ENOSPC, "No space left on device", str(path)) from error


def manifest(directory: Path) -> dict[str, dict]:
    """Size and sha256 of every file under `directory` except the marker."""
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != MARKER)
    return {str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files}


def verify_checkpoint(path: Path) -> str | None:
    """Why the checkpoint at `path` must not be loaded, or None if it is sound: the marker, every file of its
    manifest (size, then hash), and every weight finite."""
    path = Path(path)
    if not (path / MARKER).exists():
        return f"no {MARKER} marker (cut off mid-write)"
    try:
        files = json.loads((path / MARKER).read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return f"its {MARKER} marker holds no manifest"
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["size"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['size']} (truncated?)"
        if file_sha256(file) != expected["sha256"]:
            return f"{name} does not match its sha256 in the manifest (corrupted)"
    for name in files:
        if name.endswith(".safetensors"):
            with safe_open(path / name, framework="pt") as f:
                bad = next((key for key in f.keys() if not torch.isfinite(f.get_tensor(key)).all()), None)
            if bad is not None:
                return f"{name} holds non-finite values in {bad}"
    return None


def quarantine(checkpoint: Path) -> Path:
    """Rename a checkpoint that does not verify to `<name>.corrupt` (`.corrupt-2`, ... if that step was quarantined
    before: a resumed run rewrites the step, which may fail again)."""
    n = 1
    while (kept := checkpoint.with_name(checkpoint.name + CORRUPT_SUFFIX + (f"-{n}" if n > 1 else ""))).exists():
        n += 1
    checkpoint.rename(kept)
    return kept


def find_checkpoint(resume_from: str, run_dir: Path, log=tqdm.write) -> Path | None:
    """`auto`: the newest checkpoint of this run that verifies (None if there is none); each newer one that
    does not is renamed `<name>.corrupt` (kept for inspection, out of retention's way), saying why. Else the
    given path, which must verify. Call it on the main process only: it may rename."""
    if not resume_from:
        return None
    if resume_from == "auto":
        for candidate in reversed(complete_checkpoints(run_dir)):
            problem = verify_checkpoint(candidate)
            if problem is None:
                return candidate
            kept = quarantine(candidate)
            log(f"skipping checkpoint {candidate}: {problem}; kept as {kept.name}")
        return None
    path = Path(resume_from).expanduser()
    if not path.is_dir():
        raise MissingInput(f"resume_from: checkpoint {path} does not exist")
    problem = verify_checkpoint(path)
    if problem is not None:
        raise UsageError(f"resume_from: checkpoint {path} cannot be loaded: {problem}; use another")
    return path


def library_defaults() -> dict:
    """Every run, PPO and CORY setting's default: what a checkpoint written before a setting existed ran with."""
    from cory.algorithms.cory import CORYConfig
    from cory.config import RunConfig
    from cory.ppo.config import PPOConfig

    return {f.name: f.default for cls in (RunConfig, PPOConfig, CORYConfig) for f in dataclasses.fields(cls)}


def check_same_config(saved: dict, current: dict) -> None:
    """Resuming with different settings would silently mix two experiments: refuse, naming the keys. A setting
    added since the checkpoint was written counts as unchanged while it keeps its default."""
    if saved.get("algorithm") != current.get("algorithm"):
        raise UsageError(f"cannot resume: the checkpoint was written by a {saved.get('algorithm')} run, this is a "
                         f"{current.get('algorithm')} run; resume it with the script that wrote it")
    saved = {**{k: v for k, v in library_defaults().items() if k in current}, **saved}
    keys = (set(saved) | set(current)) - RESUME_MAY_CHANGE
    changed = sorted(k for k in keys if saved.get(k) != current.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise UsageError(f"cannot resume: the config differs from the checkpoint's ({detail})")


def load_checkpoint(path: Path, algorithm, config: dict) -> dict:
    """Restore weights and trainer state into `algorithm`'s agents; returns the checkpoint's state
    (`steps_done`, `loop`, `rng`); the caller restores the RNGs last, once everything is built."""
    path = Path(path)
    check_same_config(json.loads((path / "config.json").read_text()), config)
    try:  # weights_only: a shared checkpoint can hold tensors and plain values, never code to run
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UsageError(f"{path / 'state.pt'} holds more than tensors and plain values (refused, nothing was run): "
                         f"{str(error).splitlines()[0]}") from None
    for name, trainer, agent_state in zip(algorithm.names, algorithm.agents, state["agents"]):
        load_policy_weights(trainer.policy, path / name)
        trainer.load_state_dict(agent_state)
    return state
