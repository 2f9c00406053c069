"""A built-in-style model family is one file: its builder's keyword-only arguments (with the
markers of ``mtl_models._markers`` where a type cannot say how they are searched) make it
searchable from the experiment file, sampled, recorded in the results table, described and
planned, with no other module naming it. ``EXAMPLE`` below is that file, written out in
full; the tests load it as a module, as ``mtl_models/families/`` would.

Also: cross-stitch's and MTAN's parameters, now declared the same way, keep their Optuna
parameter names (old studies resume) and a space pickled before (runs, cached baselines)
still reads its values."""
from __future__ import annotations

import base64
import pickle
import sys
import types
from pathlib import Path

import optuna
import pytest
import yaml

import mtl_models as mm
import reports
import spaces
from mtl_models.families._base import _FAMILIES
from search.run._plan import space_lines

from conftest import tiny_experiment

EXAMPLE = '''
"""Gains: one shared backbone run once per task, each task scaling the features after the
chosen stages by its own learned gain (an example family, not a paper's)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import torch
from annotated_types import Ge, Gt, Le
from torch import nn

from mtl_models import ByConfig, Derived, SpaceDefault, StageSubset
from mtl_models.families._base import MultiTaskModel, backbone_copies, build_heads, register_family, tasks_from_config


class GainModel(MultiTaskModel):
    def __init__(self, tasks, input_spec, stages, tapped, init, heads) -> None:
        super().__init__(tasks, input_spec)
        self.stages, self.tapped, self.heads = nn.ModuleList(s.module for s in stages), list(tapped), heads
        self.gains = nn.ParameterDict({t.name: nn.Parameter(torch.full((len(self.tapped),), float(init))) for t in tasks})

    def predict(self, x):
        out = {}
        for task in self.task_names:
            h = x
            for s, stage in enumerate(self.stages):
                h = stage(h)
                if s in self.tapped:
                    h = h * self.gains[task][self.tapped.index(s)]
            out[task] = self.heads[task](h)
        return out


def _describe(config: dict[str, Any]) -> str:
    return f"gain x{config.get('gain_init', 1.0):.2f} after {StageSubset.text(config.get('gain_stages'))}"


def _structure(config: dict[str, Any], names: list[str]) -> str:
    return "one shared network; each task scales its features by its own gains"


@register_family("gain", describe=_describe, structure=_structure)
def gain(config: dict[str, Any], *,
         init: Annotated[float, Gt(0.0), SpaceDefault({"low": 0.5, "high": 2.0})] = 1.0,
         floor: Annotated[float, Ge(0.0), Le(1.0), Derived("half", lambda c: c["gain_init"] / 2, ("gain_init",),
                                                           "half the initial gain")] = 0.0,
         lr_scale: Annotated[float, Gt(0.0), ByConfig("auto", "optimizer", {"sgd": {"low": 1.0, "high": 10.0},
                                                                            "adam": {"low": 0.1, "high": 1.0}})] = 1.0,
         stages: Annotated[Optional[list[int]], StageSubset("gain")] = None,
         mode: Literal["scale", "gate"] = "scale") -> GainModel:
    tasks = tasks_from_config(config)
    stages_ = backbone_copies(config, 1)[0]
    tapped = range(len(stages_)) if stages is None else stages
    return GainModel(tasks, config["input"], stages_, tapped, init, build_heads(config, tasks, stages_[-1]))
'''


@pytest.fixture
def example(tmp_path: Path):
    """The example family's file, imported as a module; unregistered after the test."""
    module = types.ModuleType("gain_family")
    exec(compile(EXAMPLE, "gain_family.py", "exec"), module.__dict__)
    sys.modules["gain_family"] = module
    yield module
    _FAMILIES.pop("gain", None)
    sys.modules.pop("gain_family", None)


def load(tmp_path: Path, **space) -> spaces.Experiment:
    doc = tiny_experiment(space={"families": ["gain"], "loss_weights": "equal", **space}, train={"epochs": 1, "batch_size": 64, "lr": 0.01,
                                                                         "device": "cpu", "optimizer": "sgd"})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return spaces.load_experiment(path)


def sample(exp: spaces.Experiment, n: int) -> list[tuple[dict, dict]]:
    """``n`` trials of ``exp``'s space under Optuna's random sampler: (config, Optuna params)."""
    sampler = spaces.define_space(exp, spaces.fixed_config(exp, {"channels": 1, "height": 36, "width": 36}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((sampler(trial), dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def test_the_example_family_is_declared_by_its_builder_alone(tmp_path: Path, example) -> None:
    params = mm.family_parameters("gain")
    # keys <family>_<argument>; the space's defaults: a range, "all" stages, the builder's value
    assert list(params) == ["gain_init", "gain_floor", "gain_lr_scale", "gain_stages", "gain_mode"]
    exp = load(tmp_path, gain_floor="half", gain_lr_scale="auto", gain_stages="search", gain_mode=["scale", "gate"])
    assert exp.space.part_param("gain_init") == spaces.FloatRange(low=0.5, high=2.0)  # its SpaceDefault
    assert exp.space_param("gain_lr_scale") == spaces.FloatRange(low=1.0, high=10.0)  # auto for sgd
    assert load(tmp_path).space.part_param("gain_stages") == "all"
    # every trial samples exactly the declared parameters; floor is derived, the subset is 3 booleans (small_cnn: 2 stages)
    for config, optuna_params in sample(exp, 6):
        assert set(optuna_params) == {"gain_init", "gain_lr_scale", "gain.0", "gain.1", "gain_mode"}
        assert config["gain_floor"] == config["gain_init"] / 2
        assert 0.5 <= config["gain_init"] <= 2.0 and 1.0 <= config["gain_lr_scale"] <= 10.0
        assert config["gain_stages"] == [s for s in (0, 1) if optuna_params[f"gain.{s}"]]
        model = mm.build_model(config)  # the builder gets its arguments from the config's keys
        assert model.tapped == config["gain_stages"]
        assert model.gains["left"].tolist() == [pytest.approx(config["gain_init"])] * len(config["gain_stages"])
    # the plan's dimensions and lines, from the declaration
    (path,) = spaces.space_paths(exp)
    assert path.dims == ("gain_init", "gain_lr_scale", "gain.0", "gain.1", "gain_mode")
    lines = "\n".join(space_lines(exp))
    assert "  gain_lr_scale: 1..10  (auto for sgd)" in lines and "  gain_floor: half" in lines
    assert "  gain_stages: search" in lines and "  gain_init: 0.5..2  (default)" in lines


def test_the_example_family_is_in_the_table_and_described(example) -> None:
    config = {"family": "gain", "gain_init": 1.5, "gain_floor": 0.75, "gain_lr_scale": 2.0, "gain_stages": [0],
              "gain_mode": "gate", "tasks": [], "epochs": 1, "seed": 0}
    row = reports.result_row("t0", "search", config, {}, epochs_run=1, status="finished", checkpoint=None)
    assert {k: row[k] for k in ("gain_init", "gain_floor", "gain_lr_scale", "gain_stages", "gain_mode")} == {
        "gain_init": 1.5, "gain_floor": 0.75, "gain_lr_scale": 2.0, "gain_stages": "0", "gain_mode": "gate"}
    assert reports.result_row("t1", "search", {**config, "gain_stages": None}, {}, epochs_run=1, status="finished",
                              checkpoint=None)["gain_stages"] == "all"
    assert mm.describe_config(config) == "gain x1.50 after 0"
    assert mm.describe_structure(config) == "one shared network; each task scales its features by its own gains"


@pytest.mark.parametrize(
    "space,message",
    [
        ({"gain_init": {"low": 0.0, "high": 1.0}}, "space.gain_init: must be > 0, got {'low': 0.0, 'high': 1.0, 'log': False}"),
        ({"gain_floor": "third"}, "space.gain_floor: Input should be 'half'"),
        ({"gain_stages": [0, 4]}, "space.gain_stages: [4] out of range; stages are 0..1"),
        ({"gain_stages": "some"}, "space.gain_stages: Input should be 'all' or 'search'"),
        ({"gain_mode": []}, "space.gain_mode: give one value or a non-empty list of values to search"),
    ],
)
def test_the_example_family_s_space_is_validated(tmp_path: Path, example, space: dict, message: str) -> None:
    with pytest.raises(spaces.ExperimentError) as info:
        load(tmp_path, **space)
    assert message in str(info.value)


def test_cross_stitch_and_mtan_keep_their_optuna_parameter_names(tmp_path: Path) -> None:
    """Studies recorded before the families were declared by their builders resume: the same names."""
    doc = tiny_experiment(space={"families": ["cross_stitch", "mtan"], "alpha_diff": {"low": 0.0, "high": 0.3},
                                 "cross_stitch_stages": "search", "cross_stitch_unit": ["channel", "nddr"],
                                 "column_init": ["backbone", "single_task"], "mtan_stages": "search"})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    exp = spaces.load_experiment(path)
    names = {"cross_stitch": set(), "mtan": set()}
    for config, params in sample(exp, 12):
        names[config["family"]] |= set(params) - {"family", "_loss_weight.left", "_loss_weight.right"}
        if config["family"] == "mtan":
            assert config["mtan_stages"] == [s for s in (0,) if params["attend.0"]] + [1]  # the last always
        else:
            assert config["cross_stitch_stages"] == [s for s in (0, 1) if params[f"stitch.{s}"]]
            assert 0.1 <= config["lr_multiplier"] <= 10.0  # auto, for adam (the default optimizer)
    assert names == {"cross_stitch": {"alpha_same", "alpha_diff", "lr_multiplier", "stitch.0", "stitch.1",
                                      "cross_stitch_unit", "column_init"}, "mtan": {"attend.0"}}


# A SpaceConfig pickled by the code before this change (cross-stitch's and MTAN's parameters were
# its fields): families [cross_stitch, mtan], alpha_same 0.6..0.8, alpha_diff 0..0.2, lr_multiplier 3,
# cross_stitch_stages [0, 2], mtan_stages all, cross_stitch_unit [channel, nddr], column_init
# [backbone, single_task], dwa_temperature 2.
OLD_SPACE = (
    "gASV5AIAAAAAAACMFHNwYWNlcy5fc3BhY2VfY29uZmlnlIwLU3BhY2VDb25maWeUk5QpgZR9lCiMCF9fZGljdF9flH2UKIwIZmFt"
    "aWxpZXOUXZQojAxjcm9zc19zdGl0Y2iUjARtdGFulGWMBHRyZWWUjAZzaW5nbGWUjAtzcGxpdF9wb2ludJROjAptYXhfZ3JvdXBz"
    "lE6MCGJyYW5jaGVzlE6MCmFscGhhX3NhbWWUjA5zcGFjZXMuX2NvbW1vbpSMCkZsb2F0UmFuZ2WUk5QpgZR9lChoBX2UKIwDbG93"
    "lEc/4zMzMzMzM4wEaGlnaJRHP+mZmZmZmZqMA2xvZ5SJdYwSX19weWRhbnRpY19leHRyYV9flE6MF19fcHlkYW50aWNfZmllbGRz"
    "X3NldF9flI+UKGgYaBeQjBRfX3B5ZGFudGljX3ByaXZhdGVfX5ROdWKMCmFscGhhX2RpZmaUaBMpgZR9lChoBX2UKGgXRwAAAAAA"
    "AAAAaBhHP8mZmZmZmZpoGYl1aBpOaBuPlChoGGgXkGgdTnVijA1scl9tdWx0aXBsaWVylEdACAAAAAAAAIwTY3Jvc3Nfc3RpdGNo"
    "X3N0YWdlc5RdlChLAEsCZYwRY3Jvc3Nfc3RpdGNoX3VuaXSUXZQojAdjaGFubmVslIwEbmRkcpRljAttdGFuX3N0YWdlc5SMA2Fs"
    "bJSMC2NvbHVtbl9pbml0lF2UKIwIYmFja2JvbmWUjAtzaW5nbGVfdGFza5RljA5sb3NzX3dlaWdodGluZ5SMBnN0YXRpY5SMDGxv"
    "c3Nfd2VpZ2h0c5SMB3NpbXBsZXiUjAxvcHRpbWl6YXRpb26UjAVqb2ludJSMD2NsYXNzX3dlaWdodGluZ5SMBG5vbmWUjAlncmFk"
    "X2NsaXCUTowCbHKUTnVoGn2UjA9kd2FfdGVtcGVyYXR1cmWUR0AAAAAAAAAAc2gbj5QoaCpoI2gmaDtoHmgQaAdoJGgskGgdTnVi"
    "Lg=="
)


def test_a_space_pickled_before_keeps_its_family_values() -> None:
    space = pickle.loads(base64.b64decode(OLD_SPACE))
    assert space.part_param("alpha_same") == spaces.FloatRange(low=0.6, high=0.8)
    assert space.part_param("alpha_diff") == spaces.FloatRange(low=0.0, high=0.2)
    assert space.part_param("lr_multiplier") == 3.0
    assert space.part_param("cross_stitch_stages") == [0, 2]
    assert space.part_param("mtan_stages") == "all"
    assert space.part_param("cross_stitch_unit") == ["channel", "nddr"]
    assert space.part_param("column_init") == ["backbone", "single_task"]
    assert space.part_param("dwa_temperature") == 2.0
