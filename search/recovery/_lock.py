"""One driver per run directory: the run lock (``RUN/driver.lock``).

A driver (``mtlsearch run`` or ``resume``) takes the lock before it writes anything
and removes it when it ends, also on Ctrl-C or an error. The lock file is JSON:
``host``, ``pid``, ``started`` (UTC), the ``command``, and what tells a live process
from a dead one on that host (``boot_id``, the kernel's id of the current boot, and
``pid_start``, the process's start time in clock ticks, so a reused pid is not taken
for the driver). It is created whole and atomically (a complete temporary file hard-
linked to the lock's name, which fails if the name exists, as ``O_CREAT|O_EXCL``
does; that also holds on NFS), so no reader ever sees half of one.

A second driver refuses to start and names the holder. A lock left by a driver that
died on this host (its pid is gone, is another process now, or the host rebooted) is
stale: the next driver takes it over and says so. A lock from another host cannot be
checked from here, so it is refused unless the user says that host's driver is gone
(``mtlsearch resume RUN --break-lock``, after a lost head node).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("mtlsearch.search")  # no package imports: tests load this file alone

LOCK_FILE = "driver.lock"
_TAKEOVER_TIMEOUT_S = 30.0  # a takeover marker older than this was left by a driver that died taking over


class RunLockedError(RuntimeError):
    """The run directory is held by another driver."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process(pid: int) -> tuple[str, int] | None:
    """A process's state letter and start time (clock ticks since boot), from ``/proc/PID/stat``;
    None where there is no such entry (no process, or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return fields[0], int(fields[19])


def this_driver() -> dict[str, Any]:
    """The lock record of this process."""
    return {
        "host": platform.node(),
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "boot_id": _boot_id(),
        "pid_start": (_process(os.getpid()) or ("", None))[1],
    }


def driver_alive(record: dict[str, Any]) -> bool | None:
    """Whether the driver of a lock record still runs: None when it is on another host."""
    if record.get("host") != platform.node():
        return None
    if record.get("boot_id") and _boot_id() and record["boot_id"] != _boot_id():
        return False  # this host rebooted since
    pid = int(record["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    process = _process(pid)
    if process is None:
        return True  # no /proc to tell more
    state, start = process
    if state in ("Z", "X"):
        return False  # it has ended; its parent has not reaped it yet
    return record.get("pid_start") in (None, start)  # else the pid is another process's now


def describe(record: dict[str, Any]) -> str:
    command = " ".join(str(a) for a in record.get("command") or [])
    return (f"pid {record.get('pid')} on host {record.get('host')!r}, started {record.get('started')}"
            + (f" ({command})" if command else ""))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"unreadable": True}


def _create(path: Path, record: dict[str, Any]) -> bool:
    """Create the lock whole, atomically; False when it exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: exclusive create
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(tmp.read_text())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _take_over(path: Path, stale: dict[str, Any], record: dict[str, Any]) -> bool:
    """Replace the lock ``stale`` with ``record``; False when another driver got there first.

    Two drivers may find the same stale lock: a takeover marker (created exclusively)
    lets one replace it; the other then finds the new holder's lock.
    """
    marker = path.with_name(f"{path.name}.takeover")
    if not _create(marker, record):
        try:
            if time.time() - marker.stat().st_mtime > _TAKEOVER_TIMEOUT_S:
                marker.unlink(missing_ok=True)  # its driver died taking over
        except FileNotFoundError:
            pass
        return False
    try:
        if _read(path) != stale:
            return False
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
        return True
    finally:
        marker.unlink(missing_ok=True)


def acquire(run_dir: Path, break_lock: bool = False) -> dict[str, Any]:
    """Take the run lock of ``run_dir`` for this process; returns the lock record.

    Raises :class:`RunLockedError` when a live driver on this host holds it, or a
    driver on another host does and ``break_lock`` is False.
    """
    path = Path(run_dir) / LOCK_FILE
    record = this_driver()
    for _ in range(50):
        if _create(path, record):
            return record
        held = _read(path)
        if held is None:
            continue  # released meanwhile
        if held.get("unreadable"):
            if time.time() - path.stat().st_mtime < 5:
                time.sleep(0.1)  # being written (a filesystem without hard links)
                continue
            alive, holder = False, f"an unreadable lock ({path})"
        else:
            alive, holder = driver_alive(held), f"the driver {describe(held)}"
        if alive:
            raise RunLockedError(
                f"{run_dir} is in use by {holder}, which is still running. A run directory takes one driver "
                f"at a time: wait for that one to end, or stop it (kill {held['pid']}), then try again."
            )
        if alive is None and not break_lock:
            raise RunLockedError(
                f"{run_dir} is locked by {holder} ({path}). This host cannot tell whether that driver still "
                f"runs. If it does, stop it first; if that host is gone (a lost head node), continue the run "
                f"with: mtlsearch resume {run_dir} --break-lock"
            )
        if _take_over(path, held, record):
            why = "--break-lock" if alive is None else "it is no longer running"
            log.info("Run lock: took over the lock of %s (%s).", holder, why)
            return record
        time.sleep(0.1)
    raise RunLockedError(f"Could not take the run lock {path}: other drivers keep taking it; try again.")


def release(run_dir: Path, record: dict[str, Any]) -> None:
    """Remove the run lock if this process still holds it."""
    path = Path(run_dir) / LOCK_FILE
    if _read(path) == record:
        path.unlink(missing_ok=True)


@contextmanager
def run_lock(run_dir: Path, break_lock: bool = False) -> Iterator[dict[str, Any]]:
    """Hold the run lock of ``run_dir`` for the ``with`` block (see module doc)."""
    record = acquire(run_dir, break_lock)
    try:
        yield record
    finally:
        release(run_dir, record)
