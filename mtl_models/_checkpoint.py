"""Training checkpoints that prove they are whole: the state and a manifest of its bytes.

A checkpoint directory holds ``state.pt`` (``Trainer.state_dict()``, ``torch.save``)
and, written after it, ``state.json``: the state file's size and SHA-256. Both are
flushed to the disk (``fsync``) before the writer returns, so a trial hands Ray Tune a
checkpoint only once it is complete, and a write that fails (a full disk, a quota)
raises ``OSError`` in the trial instead of leaving a short file behind.

A reader checks the manifest before unpickling: a checkpoint cut off or damaged after
it was written (a crash before the storage flushed it, a truncated copy, garbage) is
reported as :class:`CorruptCheckpointError`, naming the file and what is wrong, never
loaded. Checkpoints written before the manifest existed are read as before, with
torch's own checks. Nothing read executes code: the state is loaded with
``torch.load(weights_only=True)`` (tensors, numbers, strings and containers only; the
trainer's optimiser, schedule, weighting and RNG states are all of those), so a file
carrying any other pickled object (which could run code when unpickled: anyone who can
write a run directory could otherwise run code on every machine that resumes or
reports it; the manifest, written beside the file, proves completeness, not origin)
is refused as :class:`UnsafeCheckpointError` without being executed. Paths are local or URIs that pyarrow understands (``s3://...``),
where Ray Tune keeps checkpoints when its storage is an object store.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from pyarrow import fs as pafs

CHECKPOINT_STATE_FILE = "state.pt"
CHECKPOINT_MANIFEST_FILE = "state.json"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be trusted: truncated, garbage, or not matching its manifest."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path!r} is corrupt: {problem}.")
        self.path = path
        self.problem = problem


class UnsafeCheckpointError(CorruptCheckpointError):
    """A checkpoint whose pickle holds more than tensors and plain data: refused, never executed."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.args = (f"{path!r} is refused: {problem}.",)


def save_checkpoint_state(state: dict[str, Any], directory: str | Path) -> None:
    """Write a training state (``Trainer.state_dict()``) and its manifest into a local checkpoint directory.

    Raises ``OSError`` (``ENOSPC``, ``EDQUOT``, ``EFBIG``) when the disk cannot take it;
    the directory is then incomplete and must not be handed to Ray Tune.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    directory = Path(directory)
    _write_synced(directory / CHECKPOINT_STATE_FILE, data)
    manifest = {"file": CHECKPOINT_STATE_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "epoch": state.get("epoch")}
    _write_synced(directory / CHECKPOINT_MANIFEST_FILE, (json.dumps(manifest, sort_keys=True) + "\n").encode())


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def load_checkpoint_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The training state in a checkpoint directory (``model`` holds the weights).

    Raises ``FileNotFoundError`` when ``directory`` holds no ``state.pt`` and
    :class:`CorruptCheckpointError` when it does not match its manifest or cannot be read.
    """
    path = _join(directory, CHECKPOINT_STATE_FILE)
    data, manifest = _read_checkpoint(directory)
    if data is None:
        raise FileNotFoundError(f"{path!r} is missing; is {str(directory)!r} a trial checkpoint?")
    problem = _manifest_problem(manifest, data) if manifest is not None else None
    if problem is not None:
        raise CorruptCheckpointError(path, problem)
    return _unpickle(path, data, map_location)


def checkpoint_problem(directory: str | Path, filesystem: pafs.FileSystem | None = None) -> str | None:
    """What is wrong with a checkpoint directory (``None``: it is whole and readable).

    With a manifest, a matching size and SHA-256 are proof enough (nothing is unpickled).
    ``filesystem``: the pyarrow filesystem ``directory`` is on (default: from its URI, else local).
    """
    data, manifest = _read_checkpoint(directory, filesystem)
    if data is None:
        return f"{CHECKPOINT_STATE_FILE} is missing"
    if manifest is not None:
        return _manifest_problem(manifest, data)
    try:  # written before manifests: torch's own checks
        _unpickle(_join(directory, CHECKPOINT_STATE_FILE), data, "cpu")
    except CorruptCheckpointError as exc:
        return exc.problem
    return None


def _read_checkpoint(
    directory: str | Path, filesystem: pafs.FileSystem | None = None
) -> tuple[bytes | None, bytes | None]:
    """The state file's and the manifest's bytes (``None`` for a missing file)."""
    if filesystem is not None:
        root = str(directory)
    elif "://" in str(directory):
        filesystem, root = pafs.FileSystem.from_uri(str(directory))
    else:
        filesystem, root = pafs.LocalFileSystem(), str(Path(directory).resolve())
    root = root.rstrip("/")
    return _read(filesystem, f"{root}/{CHECKPOINT_STATE_FILE}"), _read(filesystem, f"{root}/{CHECKPOINT_MANIFEST_FILE}")


def _unpickle(path: str, data: bytes, map_location: str | torch.device) -> dict[str, Any]:
    # weights_only: torch's restricted unpickler; the trainer state needs nothing beyond it
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            raise UnsafeCheckpointError(
                path,
                "it holds pickled objects other than tensors and plain data"
                + (f" (it names {found.group(1).rstrip('.')})" if found else "")
                + "; refused without loading them, since unpickling them could run code. "
                "Only load checkpoints written by mtlsearch from storage you trust",
            ) from None
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise CorruptCheckpointError(path, f"it cannot be read ({first})") from exc
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]  # torch's first sentence
        raise CorruptCheckpointError(path, f"it cannot be read ({first})") from exc


def _manifest_problem(manifest: bytes, data: bytes) -> str | None:
    try:
        entry = json.loads(manifest)
        size, digest = int(entry["bytes"]), str(entry["sha256"])
    except (ValueError, KeyError, TypeError):
        return f"its manifest {CHECKPOINT_MANIFEST_FILE} is unreadable"
    if len(data) != size:
        return f"{len(data)} bytes where its manifest says {size} (truncated or overwritten)"
    if hashlib.sha256(data).hexdigest() != digest:
        return "its SHA-256 differs from its manifest's (damaged)"
    return None


def _read(filesystem: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with filesystem.open_input_stream(path) as f:
            return f.readall()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _join(directory: str | Path, name: str) -> str:
    return f"{str(directory).rstrip('/')}/{name}"
