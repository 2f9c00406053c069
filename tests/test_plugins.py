"""A user's own backbone, in a file next to the experiment: validated, searched in Ray
trials, exported into the bundle and loaded where the original file is gone."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import mtl_models as mm
import reports
import spaces
from search import run_experiment

from conftest import tiny_experiment

PLUGIN = '''
"""A two-stage CNN registered as backbone 'plugin_cnn'."""
from torch import nn

import mtl_models as mm


@mm.register_backbone("plugin_cnn")
def plugin_cnn(in_channels, weights=None, width=6):
    return [
        mm.Stage("first", nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)), width),
        mm.Stage("second", nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)), 2 * width),
    ]
'''


@pytest.fixture(autouse=True)
def _forget_the_plugin():
    """Leave the registry, modules and path as they were: other tests list the backbones."""
    from mtl_models.backbones import _registry

    path = list(sys.path)
    yield
    _registry._BACKBONES.pop("plugin_cnn", None)
    sys.modules.pop("my_backbones", None)
    sys.path[:] = path


def write_experiment(folder: Path, **changes) -> Path:
    (folder / "my_backbones.py").write_text(PLUGIN)
    content = tiny_experiment(
        plugins=["my_backbones.py"],
        backbone={"name": "plugin_cnn", "options": {"width": 4}},
        train={"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        space={"families": ["hard_split"], "split_point": {"low": 0, "high": 2}},
        search={"num_trials": 2, "max_concurrent": 2, "pruner": {"name": "nop"}},
        baselines={"ensemble": False},
        **changes,
    )
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def test_plugin_file_next_to_the_experiment_registers_its_backbone(tmp_path: Path) -> None:
    exp = spaces.load_experiment(write_experiment(tmp_path))
    assert exp.plugins == [str(tmp_path / "my_backbones.py")]  # absolute: a resumed run finds it
    assert exp.backbone.options == {"width": 4}


def test_a_plugin_imported_again_registers_again_and_another_module_cannot_take_its_name(tmp_path: Path) -> None:
    """Ray workers, a resumed run and ``importlib.reload`` import a plugin again: its
    decorators run on new function objects with the same module and name, which is the
    same definition (the newest replaces the old). Another module's function is not."""
    (tmp_path / "my_backbones.py").write_text(PLUGIN)
    first = mm.import_plugin(str(tmp_path / "my_backbones.py"))
    sys.modules.pop("my_backbones")
    second = mm.import_plugin(str(tmp_path / "my_backbones.py"))
    assert second is not first and second.plugin_cnn is not first.plugin_cnn
    reloaded = importlib.reload(second)
    assert mm.backbones._registry._BACKBONES.get("plugin_cnn") is reloaded.plugin_cnn
    assert mm.stage_names("plugin_cnn", 1) == ["first", "second"]
    (tmp_path / "their_backbones.py").write_text(PLUGIN)
    try:
        with pytest.raises(ValueError, match=r"Backbone 'plugin_cnn' is already registered \(by my_backbones\.plugin_cnn\)"):
            mm.import_plugin(str(tmp_path / "their_backbones.py"))
    finally:
        sys.modules.pop("their_backbones", None)


def test_missing_plugin_file_is_named(tmp_path: Path) -> None:
    path = write_experiment(tmp_path)
    (tmp_path / "my_backbones.py").unlink()
    with pytest.raises(spaces.ExperimentError, match=r"exp.yaml:\d+: plugins: plugin 'my_backbones.py': .*my_backbones.py' does not exist"):
        spaces.load_experiment(path)


def test_search_with_a_plugin_backbone_exports_a_self_contained_bundle(tmp_path: Path, ray_local) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    exp = spaces.load_experiment(write_experiment(folder))
    result = run_experiment(exp, tmp_path / "run")
    searched = result.results[result.results.phase == "search"]
    assert (searched.status == "finished").all(), searched[["status", "error"]]
    bundle = reports.export_trial(result.run_dir, tmp_path / "bundle", formats=())
    assert (bundle / "plugins" / "my_backbones.py").is_file()
    assert json.loads((bundle / "config.json").read_text())["plugins"] == ["plugins/my_backbones.py"]
    (folder / "my_backbones.py").unlink()  # the bundle must not need the original
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import torch, mtl_models; m = mtl_models.load(%r); "
        "out = m(torch.rand(2, 1, 36, 36)); print(sorted((k, tuple(v.shape)) for k, v in out.items()))" % str(bundle)
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[('left', (2, 10)), ('right', (2, 10))]" in done.stdout
    table = pd.read_parquet(result.run_dir / "results.parquet")
    assert set(table.loc[table.phase == "search", "split_point"]) <= {0, 1, 2}
