"""Ray Tune's snapshots of a run's phases, checked before a resume restores them.

Tune saves each phase's state (``experiment_state-<time>.json``: the trials;
``search_gen_state-<time>.json`` and ``searcher-state-<time>.pkl``: the search
algorithm) in the driver's local staging folder and copies it into the run's storage
now and then, overwriting the copy of that driver's session. A copy cut off (the disk
filled up, the driver died mid-copy) is rewritten whole by the next snapshot while the
driver lives; if it does not live, the run directory keeps a cut-off snapshot.

Restoring one, Tune does not stop: it logs the error and starts the phase over in the
same folder (Ray 2.60, ``TuneController.__init__``), so every trial would run again.
:func:`check_snapshots` therefore reads the newest snapshot of each phase before a
resume changes anything, and stops it with :class:`SnapshotError` naming the file.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from pyarrow import fs as pafs
from ray import cloudpickle, tune

from ..study._optuna import _DetachedStudyUnpickler
from ..results._table import PHASES, phase_path

SNAPSHOTS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


class SnapshotError(RuntimeError):
    """A Tune snapshot of the run cannot be read; the message says which and what to do."""


def _load(name: str, data: bytes) -> object:
    if name.startswith("experiment_state-"):
        return json.loads(data)
    if name.startswith("searcher-state-"):
        if data[:1] == b"{":  # the baselines' FixedConfigs and the confirmation's RacingConfigs state is JSON
            return json.loads(data)
        return _DetachedStudyUnpickler(io.BytesIO(data)).load()
    return cloudpickle.loads(data)


def _names_missing_code(exc: Exception) -> bool:
    """Whether unpickling failed on a module or class it names (``pickle``'s ``find_class``)."""
    return isinstance(exc, ImportError) or (isinstance(exc, AttributeError) and "Can't get attribute" in str(exc))


def check_snapshots(run_dir: Path) -> None:
    """Raise :class:`SnapshotError` when the newest snapshot file of a phase of ``run_dir``
    (each of :data:`SNAPSHOTS`) cannot be read; nothing is changed."""
    for phase in PHASES:
        path = phase_path(run_dir, phase)
        if not tune.Tuner.can_restore(path):
            continue
        filesystem, root = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
        names = [info.base_name for info in filesystem.get_file_info(pafs.FileSelector(root))]
        for pattern in SNAPSHOTS:
            prefix, suffix = pattern.split("*")
            matching = sorted(n for n in names if n.startswith(prefix) and n.endswith(suffix))
            if not matching:
                continue
            newest = matching[-1]  # named by the session's start time
            with filesystem.open_input_stream(f"{root}/{newest}") as f:
                data = f.readall()
            try:
                _load(newest, data)
            except Exception as exc:  # cut off or garbage, unless it names code this Python lacks
                if _names_missing_code(exc):
                    raise SnapshotError(
                        f"Ray Tune's snapshot {path}/{newest} names code this Python cannot import "
                        f"({type(exc).__name__}: {exc}): the run was made with a module that is missing or "
                        "different here (an experiment's plugin, or another version of mtlsearch or Ray). Install "
                        "it, or put it on PYTHONPATH, and resume again; nothing was changed."
                    ) from None
                session = newest[len(prefix) : -len(suffix)]
                earlier = "" if len(matching) < 2 else (
                    f" To resume from the snapshot before it ({matching[-2]}; trials begun after it run again), "
                    f"move the files of this one (*-{session}.*) out of {path}."
                )
                raise SnapshotError(
                    f"Ray Tune's snapshot {path}/{newest} cannot be read ({type(exc).__name__}: {exc}; "
                    f"{len(data)} bytes): it was cut off while it was copied into the run (a full disk, or the "
                    f"driver died). Restoring it, Tune would start the {phase} phase over, so nothing was "
                    f"changed.{earlier}"
                ) from None
