"""A model family from a plugin file: one function whose keyword-only arguments are its
searchable parameters, validated from YAML, searched in Ray trials, recorded in the
results table and the report, exported and loaded with its plugin."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

import mtl_models as mm
from mtl_models.families._base import _FAMILIES
import reports
import spaces
from search import run_experiment

from conftest import tiny_experiment

PLUGIN = '''
"""A family 'trunk': the first `depth` stages shared, the rest one copy per task."""
from typing import Annotated

from annotated_types import Ge

import mtl_models as mm


@mm.register_family("trunk")
def build_trunk(config, *, depth: Annotated[int, Ge(0)] = 1):
    return mm.build_model({**config, "family": "hard_split", "tree": "single", "split_point": depth})
'''


@pytest.fixture(autouse=True)
def _unregister():
    """The family lives as long as its test: other tests list the registered families."""
    path = list(sys.path)
    yield
    _FAMILIES.pop("trunk", None)
    sys.modules.pop("trunk_family", None)
    sys.path[:] = path


def write_experiment(folder: Path, **space) -> Path:
    (folder / "trunk_family.py").write_text(PLUGIN)
    doc = tiny_experiment(
        plugins=["trunk_family.py"],
        data={"source": "multimnist", "n_train": 128, "n_val": 64, "n_test": 0},
        train={"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        space={"families": ["trunk"], "trunk_depth": {"low": 0, "high": 2}, **space},
        search={"num_trials": 3, "max_concurrent": 2, "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "nop"}},
        baselines={"ensemble": False},
    )
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_plugin_family_s_parameters_are_validated_from_yaml(tmp_path: Path) -> None:
    exp = spaces.load_experiment(write_experiment(tmp_path))
    assert exp.space.part_param("trunk_depth") == spaces.IntRange(low=0, high=2)
    with pytest.raises(spaces.ExperimentError, match=r"space.trunk_depth: must be >= 0, got \{'low': -1, 'high': 2\}"):
        spaces.load_experiment(write_experiment(tmp_path, trunk_depth={"low": -1, "high": 2}))
    with pytest.raises(spaces.ExperimentError, match=r"exp.yaml:\d+: space.families: unknown model family 'trunks'; allowed: cross_stitch, hard_split, mmoe, mtan, ple, trunk"):
        spaces.load_experiment(write_experiment(tmp_path, families=["trunks"]))


def test_a_plugin_family_is_searched_recorded_reported_and_exported(tmp_path: Path, ray_local) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    result = run_experiment(spaces.load_experiment(write_experiment(folder)), tmp_path / "run")
    searched = result.results[result.results.phase == "search"]
    assert (searched.status == "finished").all(), searched[["status", "error"]]
    assert set(searched["family"]) == {"trunk"} and set(searched["trunk_depth"]) <= {0, 1, 2}
    for _, row in searched.iterrows():  # the builder got the sampled depth: a hard split's parameters
        config = json.loads(row["config"])
        split = mm.build_model({**config, "family": "hard_split", "tree": "single", "split_point": config["trunk_depth"]})
        assert row["params"] == mm.count_parameters(split)
        assert reports.short_label(row).startswith(f"trunk depth={config['trunk_depth']} [w ")
    html = reports.write_report(result.run_dir).read_text()
    assert "trunk depth=" in html
    chosen = searched.sort_values("delta_m").iloc[-1]  # at 2 epochs none passes the deploy guardrail: by id
    bundle = reports.export_trial(result.run_dir, tmp_path / "bundle", trial_id=chosen["trial_id"], formats=())
    (folder / "trunk_family.py").unlink()  # the bundle carries the plugin
    model = mm.load(bundle)
    assert mm.count_parameters(model) == int(chosen["params"])


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (  # <family>_<argument> is a field of the space's own
            'import mtl_models as mm\n\n@mm.register_family("loss")\ndef build(config, *, weighting: float = 1.0):\n'
            '    return mm.build_model({**config, "family": "hard_split"})\n',
            r"parameter key 'loss_weighting' of model family 'loss''s argument 'weighting' is already a field of the space itself",
        ),
        (  # two parts' keys meet: dwa's temperature and family 'dwa''s
            'import mtl_models as mm\n\n@mm.register_family("dwa")\ndef build(config, *, temperature: float = 1.0):\n'
            '    return mm.build_model({**config, "family": "hard_split"})\n',
            r"parameter key 'dwa_temperature' of model family 'dwa''s argument 'temperature' is already loss weighting 'dwa''s argument 'temperature'",
        ),
    ],
    ids=["space-field", "scheme"],
)
def test_a_plugin_parameter_key_that_collides_is_refused_naming_both(tmp_path: Path, plugin: str, message: str) -> None:
    (tmp_path / "clash.py").write_text(plugin)
    doc = tiny_experiment(plugins=["clash.py"])
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        with pytest.raises(spaces.ExperimentError, match=rf"exp.yaml.*{message}; rename the argument or the model family"):
            spaces.load_experiment(tmp_path / "exp.yaml")
    finally:
        for name in ("loss", "dwa"):
            _FAMILIES.pop(name, None)
        sys.modules.pop("clash", None)
