"""A run directory belongs to one run: a fresh run never mixes with an earlier one, and two live runs never share one.

Without this, a second run with the same name erased the first one's logs while retention kept the first
one's newest checkpoints, and a later `--resume_from auto` resumed the wrong weights.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from cory.errors import UsageError

LOCK = ".lock"
RUN_OUTPUTS = ("metrics.jsonl", "eval.jsonl", "samples.jsonl", "config.json", "curves.png", "checkpoints", "final")


class RunDirLock:
    """Holds `run_dir/.lock` (owner PID and host) from `acquire` until `release`; a lock whose owner is gone is
    taken over with a message."""

    def __init__(self, run_dir: Path, log=print):
        self.path, self.log, self.held = Path(run_dir) / LOCK, log, False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # atomic: one winner
            except FileExistsError:
                owner = self._owner()
                if owner and _alive(owner) and owner != me:
                    raise UsageError(f"run directory {self.path.parent} is in use by process {owner['pid']} on {owner['host']}; "
                                       "wait for it, or choose another --run_name") from None
                self.log(f"taking over the lock of {self.path.parent} from process {owner and owner.get('pid')}, which is gone")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None


def _alive(owner: dict) -> bool:
    """Is the lock's owner still running? (A lock from another host is assumed alive: its PID means nothing here.)"""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def earlier_outputs(run_dir: Path) -> list[str]:
    return [name for name in RUN_OUTPUTS if (Path(run_dir) / name).exists()]


def claim_fresh(run_dir: Path, overwrite: bool, log=print) -> None:
    """A fresh run (nothing to resume) may start only in an empty run directory, or with `overwrite`, which
    deletes the earlier run's outputs first."""
    found = earlier_outputs(run_dir)
    if not found:
        return
    if not overwrite:
        raise UsageError(f"run directory {run_dir} already holds a run ({', '.join(found)}): continue it with "
                              "--resume_from auto, or start afresh with --overwrite true or another --run_name")
    log(f"--overwrite: deleting the earlier run in {run_dir} ({', '.join(found)})")
    for name in found:
        path = Path(run_dir) / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
