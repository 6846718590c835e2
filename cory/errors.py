"""Two kinds of failure a user should read as one line, not as a traceback.

`UsageError`: a bad setting, path, checkpoint or data row, found before any expensive work (exit 2, like
argparse). `RunStopped`: a guard stopped a running job on purpose (diverged, reward keeps failing, directory
in use; exit 1). Anything else is a bug and keeps its traceback; `--debug` shows the traceback for all.
"""
from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path


class UsageError(ValueError):
    """A bad setting or input, named in the message."""


class MissingInput(UsageError, FileNotFoundError):
    """A model, data set or checkpoint that is not where the settings say."""


class WrongType(UsageError, TypeError):
    """A config value of the wrong type."""


class RunStopped(RuntimeError):
    """A guard stopped the run; the last good checkpoint is kept."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a plain `kill`), taken like Ctrl-C: the job stops, its checkpoints whole, and stops the runs it started."""


INTERRUPTED = "interrupted; checkpoints already written are whole (continue with --resume_from auto)"


def _terminate(signum, frame) -> None:
    raise Terminated


def run_script(main, argv: list[str] | None = None, interrupted: str = INTERRUPTED) -> None:
    """Call `main(argv)`; print `script: error: message` and exit 2 (UsageError), 1 (RunStopped, disk full),
    130 (Ctrl-C) or 143 (`kill`), these two with the line `interrupted`.

    Ctrl-C is restored and `kill` joins it because a job started in the background (`nohup … &`) inherits SIGINT
    ignored, and SIGTERM's default would end it at once and leave the runs it started training as orphans."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    handlers = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, _terminate)
    try:
        main(argv)
    except (UsageError, RunStopped) as error:
        if debug:
            raise
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, UsageError) else 1)
    except KeyboardInterrupt as stop:
        if debug:
            raise
        print(f"{Path(sys.argv[0]).name}: {interrupted}", file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
    except OSError as error:
        if debug or error.errno != errno.ENOSPC:
            raise
        print(f"{Path(sys.argv[0]).name}: error: no space left on the device writing {error.filename or 'a file'}; "
              "earlier checkpoints are whole (free space, then --resume_from auto)", file=sys.stderr)
        sys.exit(1)
    finally:
        for number, handler in zip((signal.SIGINT, signal.SIGTERM), handlers):
            if handler is not None:  # None: set outside Python, nothing to restore
                signal.signal(number, handler)
