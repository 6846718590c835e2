"""A run directory belongs to one run: a fresh run never mixes with an earlier one, and two live runs never share one.

Without this, a second run with the same name erased the first one's logs while retention kept the first
one's newest checkpoints, and a later `--resume_from auto` resumed the wrong weights.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from pathlib import Path

from cory.errors import UsageError

LOCK = ".lock"
LOADED_MODELS = "loaded_models.json"
"""the fingerprints of the weights each (re)start of a run loaded, so its ledger entry names them"""
RUN_OUTPUTS = ("metrics.jsonl", "eval.jsonl", "samples.jsonl", "config.json", "curves.png", "checkpoints", "final", LOADED_MODELS)


class RunDirLock:
    """Holds an exclusive kernel lock (`flock`) on `run_dir/.lock` from `acquire` until `release`.

    The kernel grants the lock to one process only, even when several start at the same instant, and drops it
    when its holder dies, so there is no stale lock to take over: a `.lock` file left by a killed run or copied
    from another machine holds no lock and is simply reused. The file names the holder (PID, host) for the
    message a second run gets; it is never deleted (deleting a lock file others may have open lets two own it).
    """

    def __init__(self, run_dir: Path, log=print, what: str = "run directory", advice: str = "wait for it, or choose another --run_name"):
        self.path, self.log, self.fd = Path(run_dir) / LOCK, log, None
        self.what, self.advice = what, advice

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as error:
            raise UsageError(f"cannot lock run directory {self.path.parent}: {error.strerror or error} (a writable "
                             "--output_dir is needed)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self._owner() or {}
            raise UsageError(f"{self.what} {self.path.parent} is in use by process {owner.get('pid', '(starting)')} on "
                             f"{owner.get('host', 'this host')}; {self.advice}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # no owner named while nobody holds it
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None


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
