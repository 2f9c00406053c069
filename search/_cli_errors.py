"""What ``mtlsearch`` tells a user when a command fails for a reason of theirs (a bad file, a
locked or damaged run, a full disk): one line and an exit status, no traceback; anything
else is a bug and keeps its traceback."""
from __future__ import annotations

import argparse
import errno
import sys

from ._cli_runs import EXIT_INTERRUPTED, EXIT_USAGE


def user_error(exc: Exception, args: argparse.Namespace) -> int | None:
    """Print a user error's line and return its exit status; None for a bug (keep the traceback).
    The error classes are imported here, not before the command: ``run`` starts Ray first."""
    from mtl_models import CorruptCheckpointError, DataFileError
    from spaces import ExperimentError

    from .recovery._lock import RunLockedError
    from .run._phases import SearchInterrupted
    from .recovery._snapshots import SnapshotError
    from .study._study import StudyError

    if isinstance(exc, SearchInterrupted):
        print(f"mtlsearch: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, (RunLockedError, StudyError, SnapshotError, CorruptCheckpointError)):  # storage the run cannot use as it is
        print(f"mtlsearch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, KeyError):
        return None  # a bug, not a user error: keep the traceback
    if isinstance(exc, (ExperimentError, DataFileError, FileExistsError, FileNotFoundError, LookupError, ValueError)):
        print(f"mtlsearch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
        print(f"mtlsearch: error: {out_of_space(exc, args)}", file=sys.stderr)
        return EXIT_USAGE
    return None


OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # full disk, quota, file-size limit


def out_of_space(exc: OSError, args: argparse.Namespace) -> str:
    """What to tell a user whose command ran out of disk space, and what to do next."""
    where = f" ({exc.filename})" if exc.filename else ""  # atomic writes name their file
    run = getattr(args, "out", None) if args.command == "run" else getattr(args, "run", None)
    again = {
        "run": f"continue the run with: mtlsearch resume {run}",
        "resume": f"continue the run with: mtlsearch resume {run}",
        "report": f"write it again with: mtlsearch report {' '.join(map(str, run or []))}",
    }.get(args.command, "run the command again")
    return (
        f"out of disk space: {exc.strerror}{where} [{errno.errorcode.get(exc.errno, exc.errno)}]. The disk (or quota, "
        f"or file-size limit) ran out while writing. The run's tables, study, snapshots and report are replaced "
        f"whole, so each is its last complete version; trials that could not write a checkpoint are retried from "
        f"their last whole one. Free space, then {again}."
    )
