"""Where built offline assets live, and atomic file and directory writes."""
from __future__ import annotations

import errno
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable

from cory.errors import UsageError


def cache_dir() -> Path:
    """`$CORY_CACHE`, default `~/.cache/cory`."""
    path = Path(os.environ.get("CORY_CACHE", Path.home() / ".cache" / "cory")).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"CORY_CACHE {path} is a file, not a directory: point it at a directory (the built models go there)")
    return path


@contextmanager
def atomic_directory(target: Path):
    """Yield a temporary directory beside `target`; rename it to `target` only if the block succeeds.

    A reader therefore never sees a half-written directory, and a failure leaves no debris.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_TAG}", dir=target.parent))
    tmp.chmod(0o755)
    try:
        try:
            yield tmp
        except Exception as error:
            if not isinstance(error, OSError) and "No space left on device" in str(error):  # safetensors' Rust IO error
                raise OSError(errno.ENOSPC, "No space left on device", str(target)) from None
            raise
        if target.exists():  # move the old copy aside before the new one takes its name: never zero copies
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{OLD_TAG}", dir=target.parent))
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_once(target: Path, is_built: Callable[[], bool], build: Callable[[], None],
               log=partial(print, flush=True)) -> Path:
    """Run `build` unless `is_built()`, one process at a time: two studies started together (one per core) both
    found the classifier missing and trained it twice. A second process waits for the first (a kernel lock beside
    `target`, dropped when its holder exits or dies) and then finds it built."""
    target = Path(target)
    if is_built():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.build-lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{target.name}: another process is building it; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in target.parent.glob(f".{target.name}{TMP_TAG}*"):  # a killed build's half directory (ours only)
            shutil.rmtree(stale, ignore_errors=True)
            log(f"removed {stale}, left by a killed build")
        if not is_built():
            build()
    finally:
        os.close(fd)  # drops the lock
    return target


def save_model_directory(target: Path, model, tokenizer, files: dict[str, str] | None = None) -> None:
    """A model and its tokenizer (anything with `save_pretrained`) as one HF directory, all or nothing, with
    `files` (name -> text, e.g. how it was built) beside them and the manifest of every file's size and hash."""
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        write_manifest(tmp)


MANIFEST = "files.json"
"""a built directory's record of its files (size and sha256 of each), written when it is built"""


def write_manifest(directory: Path) -> None:
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files}
    atomic_file(directory / MANIFEST, json.dumps(manifest, indent=1))


def manifest_problems(directory: Path, hashes: bool) -> list[str] | None:
    """How `directory` differs from its manifest (missing, resized or, with `hashes`, changed files); None if it
    has no manifest (built before manifests existed, or not by us)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return [f"its manifest {MANIFEST} is unreadable"]
    problems = []
    for name, want in manifest.items():
        file = Path(directory) / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif file.stat().st_size != want["size"]:
            problems.append(f"{name} has {file.stat().st_size} of {want['size']} bytes")
        elif hashes and file_sha256(file) != want["sha256"]:
            problems.append(f"{name} differs from the build (sha256)")
    return problems


TMP_TAG, OLD_TAG = ".tmp-", ".old-"


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Clear what killed atomic writes left in `directory`; returns what was done, one line each.

    A half-built `.X.tmp-*` is deleted. A replaced `.X.old-*` is deleted if `X` exists; if `X` is missing, the
    write died between its two renames and `.X.old-*` is the last published copy: it becomes `X` again (never zero
    copies). Call it only while no other process writes there (the run directory's lock holder)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    done = []
    for old in sorted(p for p in directory.glob(".*") if OLD_TAG in p.name):
        target = directory / old.name[1 : old.name.index(OLD_TAG)]
        if not target.exists():
            os.replace(old, target)
            done.append(f"restored {target} from {old.name}, left by a write killed between its two renames")
    for path in sorted(p for p in directory.glob(".*") if TMP_TAG in p.name or OLD_TAG in p.name):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        done.append(f"removed {path}, left by an interrupted write")
    return done


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def atomic_file(target: Path, content: str | bytes) -> None:
    """Write `content` to a temporary file beside `target`, then rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TMP_TAG}", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a results or cache file is readable like any other
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(target: Path, value) -> None:
    """`value` as JSON, atomically; gzip-compressed when the name ends in .gz (compact and with no timestamp, so the
    same value gives the same committed bytes), indented otherwise."""
    if str(target).endswith(".gz"):
        atomic_file(target, gzip.compress(json.dumps(value, separators=(",", ":")).encode(), mtime=0))
    else:
        atomic_file(target, json.dumps(value, indent=2))


def read_json(path: Path):
    """What `write_json` wrote (plain or .gz)."""
    data = Path(path).read_bytes()
    return json.loads(gzip.decompress(data) if str(path).endswith(".gz") else data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: Path) -> str:
    """A file's sha256 (hex), read in 8 MB blocks: checkpoint manifests and the ledger's weight fingerprints."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()
