"""Where built offline assets live, and atomic directory writes."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """`$CORY_CACHE`, default `~/.cache/cory`."""
    return Path(os.environ.get("CORY_CACHE", Path.home() / ".cache" / "cory")).expanduser()


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
        yield tmp
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


TMP_TAG, OLD_TAG = ".tmp-", ".old-"


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete what killed atomic writes left in `directory` (half-built `.X.tmp-*`, replaced `.X.old-*`);
    call it only while no other process writes there (the run directory's lock holder)."""
    directory = Path(directory)
    stale = [p for p in directory.glob(".*") if TMP_TAG in p.name or OLD_TAG in p.name] if directory.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return stale


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def atomic_file(target: Path, text: str) -> None:
    """Write `text` to a temporary file beside `target`, then rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TMP_TAG}", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a results or cache file is readable like any other
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
