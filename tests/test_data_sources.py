"""A data source registered by a plugin, named in the experiment file like a built-in one:
options checked against the loader's signature, loaded by ``load_data`` and ``check-data``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

import spaces
from mtl_models.data import _tensors
from search.cli import main as cli

from conftest import tiny_experiment

PLUGIN = '''
"""A data source registered as 'random_pairs': random images, a class and a value per image."""
from __future__ import annotations

from pathlib import Path

import torch

import mtl_models as mm


@mm.register_source("random_pairs")
def random_pairs(
    tasks: list[mm.TaskSpec],
    scale: float,
    n_train: int = 24,
    n_val: int = 8,
    image_size: int = 16,
    channels: int = 1,
    seed: int = 0,
    notes: Path | None = None,
) -> mm.MultiTaskData:
    """``n_*`` images of ``image_size`` pixels a side; task ``kind``: 3 classes, ``size``: a value x ``scale``."""
    generator = torch.Generator().manual_seed(seed)
    splits = {}
    for name, n in (("train", n_train), ("val", n_val)):
        images = torch.randint(0, 256, (n, channels, image_size, image_size), dtype=torch.uint8, generator=generator)
        kind = torch.randint(0, 3, (n,), generator=generator)
        kind[0] = -1  # one missing label per split
        size = torch.rand(n, generator=generator) * scale
        splits[name] = mm.Split(images, {"kind": kind, "size": size})
    return mm.MultiTaskData(tasks, splits, description=f"random pairs, seed {seed}", extra={"seed": seed, "notes": str(notes)})


@mm.register_source("sized_by_the_data")
def sized_by_the_data(tasks: list[mm.TaskSpec], seed: int = 0) -> mm.MultiTaskData:
    """Takes no image_size: the images' size is known once they are read."""
    return random_pairs(tasks, scale=1.0, image_size=12, seed=seed)
'''

TASKS = [{"name": "kind", "kind": "classification", "classes": 3}, {"name": "size", "kind": "regression"}]


@pytest.fixture(autouse=True)
def _forget_the_plugin():
    """Leave the source registry, modules and path as they were."""
    path = list(sys.path)
    yield
    _tensors._SOURCES.pop("random_pairs")
    _tensors._SOURCES.pop("sized_by_the_data")
    sys.modules.pop("my_sources", None)
    sys.path[:] = path


def write_experiment(folder: Path, data: dict) -> Path:
    (folder / "my_sources.py").write_text(PLUGIN)
    content = tiny_experiment(plugins=["my_sources.py"], data=data, tasks=TASKS, seed=7)
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def test_a_plugin_source_is_named_in_yaml_validated_and_loaded(tmp_path: Path) -> None:
    exp = spaces.load_experiment(write_experiment(tmp_path, {"source": "random_pairs", "scale": 2.0, "n_train": 10, "notes": "notes.txt"}))
    assert exp.data.source == "random_pairs"
    # given options only (the loader fills its defaults), the path made absolute, the seed left to the experiment
    assert exp.data.source_options() == {"scale": 2.0, "n_train": 10, "notes": str(tmp_path / "notes.txt"), "seed": None}
    assert exp.input_size() == (16, 16) and exp.in_channels() == 1  # the loader's defaults, before any data is read
    data = exp.load_data()
    assert tuple(data.splits["train"].images.shape) == (10, 1, 16, 16) and len(data.splits["val"]) == 8
    assert data.extra == {"seed": 7, "notes": str(tmp_path / "notes.txt")}  # the experiment's seed
    assert data.splits["train"].targets["kind"][0].item() == -1
    assert float(data.splits["train"].targets["size"].max()) <= 2.0


@pytest.mark.parametrize(
    "data,line_key,message",
    [
        (  # listed as a built-in source's are (one model for both): the shared fields, source, the loader's options
            {"source": "random_pairs", "scale": 1.0, "n_trian": 10},
            "n_trian",
            "data.n_trian: unknown field 'n_trian'; allowed: loader, num_workers, memory_budget_mb, augment, source, "
            "scale, n_train, n_val, image_size, channels, seed, notes",
        ),
        (
            {"source": "random_pairs", "scale": 1.0, "image_size": "big"},
            "image_size",
            "data.image_size: Input should be a valid integer, unable to parse string as an integer (got 'big')",
        ),
        ({"source": "random_pairs"}, "source", "data.scale: Field required"),
        (  # a built-in source lists its own fields (it used to list the first source's, multimnist's)
            {"source": "scenes", "canvas": 30},
            "canvas",
            "data.canvas: unknown field 'canvas'; allowed: loader, num_workers, memory_budget_mb, augment, source, "
            "n_train, n_val, n_test, image_size, max_objects, noise, seed, missing_rate",
        ),
        (
            {"source": "random_pairz"},
            "source",
            "data.source: unknown or missing source 'random_pairz'; "
            "allowed: 'multimnist', 'files', 'scenes', 'celeba', 'random_pairs', 'sized_by_the_data'",
        ),
    ],
)
def test_a_plugin_source_s_options_are_checked_against_its_signature(tmp_path: Path, data: dict, line_key: str, message: str) -> None:
    path = write_experiment(tmp_path, data)
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.load_experiment(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(f"{line_key}:"))
    assert info.value.problems == [f"{path}:{line}: {message}"]


def test_check_data_reads_a_plugin_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_experiment(tmp_path, {"source": "random_pairs", "scale": 1.0})
    assert cli(["check-data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "random pairs, seed 7" in out
    assert "OK: 32 rows checked, no problems." in out


def test_a_source_without_image_size_is_checked_once_its_data_is_read(tmp_path: Path) -> None:
    """No ``image_size`` option: the backbone is not tried on a zero image at validation."""
    exp = spaces.load_experiment(write_experiment(tmp_path, {"source": "sized_by_the_data"}))
    assert exp.input_size() is None and exp.num_stages() == 2
    assert exp.data.source_options() == {"seed": None}
    assert tuple(exp.load_data().splits["train"].images.shape) == (24, 1, 12, 12)
