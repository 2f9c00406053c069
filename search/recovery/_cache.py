"""A cache of trained baselines, so later runs on the same data and budget reuse them.

The single-task (and ensemble) baselines depend only on the data, the tasks, the
backbone, the training budget and the seeds, not on the search space; a user who
refines a search reruns them for nothing. After a baselines phase completes, its Tune
experiment directory is stored under ``<cache>/baselines/<key>``; a later run with the
same key copies it into its run directory instead of training.

The key hashes the baselines' configs (everything but the searched keys and the
loader's speed settings), the data's bytes (every split's images and labels), the
torch version and a format number, raised whenever what a baseline's metrics mean changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from mtl_models import MultiTaskData, atomic_directory

ENV_VAR = "MTLSEARCH_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$MTLSEARCH_CACHE_DIR``, else ``~/.cache/mtlsearch``."""
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "mtlsearch")


def data_fingerprint(data: MultiTaskData) -> str:
    """SHA-256 of every split's images and targets (name, shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(data.splits):
        split = data.splits[name]
        tensors = [("images", split.images)] + sorted(split.targets.items())
        for key, tensor in tensors:
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}/{key}/{tuple(t.shape)}/{t.dtype}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.uint8 else t.numpy().tobytes())
    return digest.hexdigest()


def baselines_key(configs: list[dict[str, Any]], data: MultiTaskData) -> str:
    # how data is fed changes speed, not results; the augmentations do change results
    configs = [{**c, "loader": {"augment": c["loader"].get("augment")}} if "loader" in c else c for c in configs]
    material = {
        "configs": configs,
        "data": data_fingerprint(data),
        "torch": torch.__version__,
        # 2: metrics from torchmetrics; macro-F1 and mAP changed definition, so a baseline
        # cached before must not be compared with trials scored after
        "format": 2,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:20]


def restore_baselines(cache_dir: Path, key: str, baselines: Path, ensemble: Path) -> bool:
    """Copy cached baselines into a run: the Tune experiment to ``baselines``, the composed
    ensemble (if any) to ``ensemble``. False when nothing is cached under ``key`` or the
    run already has baselines."""
    source = cache_dir / "baselines" / key
    if not (source / "baselines").is_dir() or baselines.exists():
        return False
    for name, target in (("baselines", baselines), ("ensemble", ensemble)):
        if (source / name).is_dir():
            with atomic_directory(target) as tmp:
                shutil.copytree(source / name, tmp, dirs_exist_ok=True)
    return True


def store_baselines(cache_dir: Path, key: str, baselines: Path, ensemble: Path) -> None:
    """Store a run's completed baselines (and ensemble) under ``key``; kept if already there."""
    target = cache_dir / "baselines" / key
    if target.exists():
        return
    with atomic_directory(target) as tmp:
        shutil.copytree(baselines, tmp / "baselines")
        if ensemble.is_dir():
            shutil.copytree(ensemble, tmp / "ensemble")
