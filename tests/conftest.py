"""Shared fixtures: tiny task sets, configs and data, and one local Ray per session."""
from __future__ import annotations

import os
from typing import Any

import pytest
import torch

import mtl_models as mm
from search import log_to_stdout

log_to_stdout()  # tests read the run's lines from stdout, as a user of the CLI sees them

os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray workers inherit the environment: let them import trainables defined in test modules.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH")) if p
)
torch.set_num_threads(1)

CLASSIFICATION = {"name": "digit", "kind": "classification", "classes": 4}
REGRESSION = {"name": "size", "kind": "regression", "classes": 2}


def tiny_experiment(**sections: Any) -> dict[str, Any]:
    """A small experiment file's content: MultiMNIST's two digit tasks, a 2-stage CNN,
    3 epochs on CPU, two single-task seeds and no confirmation phase (tests of those set
    them); ``sections`` (``data``, ``space``, ``search``, ...) replace the base's, except
    that ``baselines`` and ``confirm`` are merged into these defaults."""
    base = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "multimnist", "n_train": 256, "n_val": 128, "n_test": 0},
        "tasks": [
            {"name": "left", "kind": "classification", "classes": 10},
            {"name": "right", "kind": "classification", "classes": 10},
        ],
        "backbone": {"name": "small_cnn", "options": {"widths": [8, 16]}},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    }
    merged = {**base, **sections}
    merged["baselines"] = {"seeds": 2, **sections.get("baselines", {})}
    merged["confirm"] = {"top_k": 0, **sections.get("confirm", {})}
    return merged


def bomb_png(path: "os.PathLike[str] | str", width: int = 30000, height: int = 30000) -> None:
    """A valid 1-bit grey PNG of ``width`` x ``height`` black pixels: ~110 kB on disk for
    30000 x 30000, 900 megapixels (about 2.5 GiB as RGB) once decoded. A decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the row's bits
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def make_tasks(n: int, kinds: tuple[str, ...] = ("classification",)) -> list[dict[str, Any]]:
    """``n`` task dicts cycling through ``kinds``."""
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        base = CLASSIFICATION if kind == "classification" else REGRESSION
        out.append({**base, "name": f"t{i}", "loss": None, "metric": None})
    return out


def make_config(family: str, tasks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A complete model config on the tiny 3-stage CNN (8x8 RGB inputs)."""
    config = {
        "family": family,
        "tasks": tasks,
        "backbone": {"name": "small_cnn", "weights": None, "options": {"widths": [4, 6, 8]}},
        "input": {"channels": 3, "height": 8, "width": 8, "mean": [0.5] * 3, "std": [0.25] * 3},
        "head": {"pool_size": 1, "hidden": 0},
        "optimizer": "adam",
        "lr": 0.01,
        "epochs": 2,
        "batch_size": 16,
        "seed": 0,
        "device": "cpu",
    }
    if family == "hard_split":
        config["split_point"] = 1
    if family == "cross_stitch":
        config.update(alpha_same=0.9, alpha_diff=0.1, lr_multiplier=100.0)
    if family == "single_task":
        config["task"] = tasks[0]["name"]
    config.update(extra)
    return config


def random_data(tasks: list[dict[str, Any]], n: int = 48, seed: int = 0) -> mm.MultiTaskData:
    """Random 8x8 RGB images with random labels for each task (train, val)."""
    g = torch.Generator().manual_seed(seed)
    specs = [mm.TaskSpec.from_dict(t) for t in tasks]
    splits = {}
    for name in ("train", "val"):
        images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        targets = {}
        for s in specs:
            if s.kind == "classification":
                targets[s.name] = torch.randint(0, s.classes, (n,), generator=g)
            else:
                targets[s.name] = torch.randn(n, s.classes, generator=g)
        splits[name] = mm.Split(images, targets)
    return mm.MultiTaskData(specs, splits, description="random")


@pytest.fixture(scope="module")
def ray_local(_ray_session):
    """A local Ray (2 CPUs), started once and shared; restarted if a test shut it down."""
    from search import init_ray

    init_ray(num_cpus=2)


@pytest.fixture(scope="session", autouse=True)
def _baseline_cache(tmp_path_factory):
    """Keep the CLI's baseline cache (and its subprocesses') out of the user's home."""
    os.environ["MTLSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def _ray_session():
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()
