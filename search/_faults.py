"""Storage faults a test or benchmark injects into trials (``search.inject_faults``).

The trial-level faults that need no model code live here: ``disk_full`` makes the
checkpoint write of an epoch fail with a real ``ENOSPC`` from the kernel, ``hang``
stops a trial's progress (a stuck filesystem) so that a test can kill the driver at a
known point, and ``times`` limits a fault to a trial's first attempts, so that a retry
or a resume gets past it.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

from mtl_models import CHECKPOINT_STATE_FILE

FAULT_COUNTS_DIR = "mtlsearch-faults"


def inject_disk_full(fault: dict[str, Any] | None, epoch: int, directory: str) -> None:
    """Make the checkpoint write of ``epoch`` fail as on a full disk (a ``disk_full`` fault).

    The state file in the checkpoint ``directory`` becomes a link to ``/dev/full``
    (Linux's always-full device, ``man 4 full``), so writing it raises
    ``OSError(ENOSPC, "No space left on device")`` where the trial writes its checkpoint.
    """
    if fault and fault["kind"] == "disk_full" and int(fault["epoch"]) == epoch and fault_fires(fault):
        os.symlink("/dev/full", os.path.join(directory, CHECKPOINT_STATE_FILE))


def fault_fires(fault: dict[str, Any]) -> bool:
    """Whether ``fault`` fires on this attempt of the trial: on every one, or on its first
    ``times`` (the attempts that reach it are counted in the node's temp directory)."""
    if fault.get("times") is None:
        return True
    folder = Path(tempfile.gettempdir()) / FAULT_COUNTS_DIR / tune.get_context().get_trial_id()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{fault['kind']}-{fault['epoch']}"
    attempt = len(list(folder.glob(f"{name}-*")))
    (folder / f"{name}-{attempt}").touch()
    return attempt < int(fault["times"])


def hang() -> None:
    """Make no progress until the trial is stopped (its actor killed, or the driver with it)."""
    while True:
        time.sleep(1.0)
