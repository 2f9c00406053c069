"""Which checkpoint a restarted trial continues from: the newest whole one, never a damaged one.

Ray Tune restarts a trial (a retry after a failure, or ``mtlsearch resume``) from the
last checkpoint it registered, and registers one only after the trial has written it
completely (``mtl_models.save_checkpoint_state``) and Ray has copied it to storage. A
write that fails midway (a full disk) therefore never becomes the latest. What can
still happen is damage afterwards: a crash before the storage flushed the file, a
truncated copy of the run directory. So a restarted trial checks the checkpoint it is
given against its manifest and, when it is damaged, takes the newest older one that
is whole (the search keeps two per trial); with none left it starts afresh. The driver
runs the same check before it resumes a phase and says what each such trial will do.
"""
from __future__ import annotations

import re

from pyarrow import fs as pafs
from ray import tune
from ray.tune import ExperimentAnalysis

from mtl_models import checkpoint_problem

from ..base._log import get_logger

log = get_logger("search")

_INDEX = re.compile(r"^checkpoint_(\d+)$")


def checkpoint_candidates(checkpoint: tune.Checkpoint) -> list[str]:
    """``checkpoint``'s path and those of its trial's older checkpoints, newest first."""
    parent, _, name = checkpoint.path.rstrip("/").rpartition("/")
    match = _INDEX.match(name)
    if match is None:
        return [checkpoint.path]
    newest = int(match.group(1))
    found = []
    for info in checkpoint.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True)):
        other = _INDEX.match(info.base_name)
        if info.type == pafs.FileType.Directory and other and int(other.group(1)) <= newest:
            found.append((int(other.group(1)), info.path))
    return [path for _, path in sorted(found, reverse=True)]


def choose_checkpoint(checkpoint: tune.Checkpoint) -> tuple[tune.Checkpoint | None, list[tuple[str, str]]]:
    """The newest whole checkpoint at or before ``checkpoint``, and those skipped with why."""
    skipped = []
    for path in checkpoint_candidates(checkpoint):
        problem = checkpoint_problem(path, checkpoint.filesystem)
        if problem is None:
            return tune.Checkpoint(path, filesystem=checkpoint.filesystem), skipped
        skipped.append((path, problem))
    return None, skipped


def newest_good_checkpoint(checkpoint: tune.Checkpoint | None) -> tune.Checkpoint | None:
    """What a (re)started trial restores: ``checkpoint`` when it is whole, else the newest
    whole one before it, else ``None`` (start afresh). Skips are printed to the trial's log."""
    if checkpoint is None:
        return None
    chosen, skipped = choose_checkpoint(checkpoint)
    for path, problem in skipped:
        log.warning("Skipped checkpoint %s: %s.", path, problem)
    return chosen


def describe_damaged_checkpoints(path: str) -> list[str]:
    """One line for each unfinished trial of the Tune experiment at ``path`` whose latest
    checkpoint is damaged: which checkpoint it continues from instead, or that it restarts."""
    lines = []
    for trial in ExperimentAnalysis(path).trials:
        if trial.status in ("TERMINATED", "ERROR") or trial.checkpoint is None:
            continue
        chosen, skipped = choose_checkpoint(trial.checkpoint)
        if not skipped:
            continue
        bad = "; ".join(f"{p.rsplit('/', 1)[-1]} is corrupt ({problem})" for p, problem in skipped)
        then = (f"it continues from {chosen.path.rsplit('/', 1)[-1]}" if chosen is not None
                else "no whole checkpoint is left, so it restarts from its first epoch")
        lines.append(f"Trial {trial.trial_id}: {bad}; {then}.")
    return lines
