"""Data sources, samplers and pruners are declared once, the way plugins are: a loader's or
constructor's signature is the schema (defaults, types, bounds, checks), and the built-ins go
through the same path as a part registered here; runs saved before still load and build the
same samplers."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import optuna
import pytest

import spaces
from mtl_models.data import _source
from search.study._samplers import build_pruner, build_sampler

from conftest import tiny_experiment

GRID = '''
"""A data source declared as the built-ins are: options, bounds and checks in the loader's
signature, what is known before loading in its SourceFacts."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
from annotated_types import Ge, Gt

import mtl_models as mm


def _even(side: int) -> int:
    if side % 2:
        raise ValueError(f"grid sides must be even, got {side}")
    return side


def _a_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"labels file {str(path)!r} does not exist")
    return path


class GridFacts(mm.data.SourceFacts):
    def check(self) -> None:
        if self.n_val > self.n_train:
            raise ValueError(f"data.n_val: at most n_train ({self.n_train}), got {self.n_val}")

    def check_tasks(self, tasks):
        return [(i, f"grid has no task {t.name!r}; allowed: cells, ink") for i, t in enumerate(tasks) if t.name not in ("cells", "ink")]

    def channels_in(self) -> int:
        return 1

    def input_size(self):
        return self.side * self.zoom, self.side * self.zoom


@mm.register_source("grid", facts=GridFacts)
def grid(
    tasks,
    side: Annotated[int, Ge(2), mm.Check(_even)] = 4,
    zoom: int = 2,
    n_train: Annotated[int, Gt(0)] = 8,
    n_val: int = 4,
    labels: Annotated[Path, mm.Check(_a_file)] | None = None,
    seed: int = 0,
) -> mm.MultiTaskData:
    g = torch.Generator().manual_seed(seed)
    size = side * zoom
    splits = {}
    for name, n in (("train", n_train), ("val", n_val)):
        images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)
        splits[name] = mm.Split(images, {"cells": torch.arange(n) % 3, "ink": images.float().mean((1, 2, 3)) / 255})
    return mm.MultiTaskData(tasks, splits, description=f"grid seed {seed}")
'''

TASKS = [{"name": "cells", "kind": "classification", "classes": 3}, {"name": "ink", "kind": "regression"}]


@pytest.fixture()
def grid_plugin(tmp_path: Path):
    (tmp_path / "grid_source.py").write_text(GRID)
    path = list(sys.path)
    yield tmp_path
    _source._SOURCES.pop("grid")
    sys.modules.pop("grid_source", None)
    sys.path[:] = path


def _grid(folder: Path, data: dict, tasks: list[dict] = TASKS) -> dict:
    return tiny_experiment(plugins=[str(folder / "grid_source.py")], data={"source": "grid", **data}, tasks=tasks, seed=5)


def test_a_source_s_facts_and_signature_answer_before_any_data_is_read(grid_plugin: Path) -> None:
    (grid_plugin / "labels.txt").write_text("x")
    exp = spaces.validate_experiment(_grid(grid_plugin, {"side": 6, "labels": "labels.txt"}), base_dir=grid_plugin)
    assert exp.input_size() == (12, 12) and exp.in_channels() == 1  # GridFacts: side x zoom (the default 2), grey
    assert exp.data.train_rows() == 8  # the loader's default n_train, read by SourceFacts' default answer
    # the options given (the path relative to the experiment file), the seed left to the experiment
    assert exp.data.source_options() == {"side": 6, "labels": str(grid_plugin / "labels.txt"), "seed": None}
    data = exp.load_data()
    assert data.description == "grid seed 5" and tuple(data.splits["train"].images.shape) == (8, 1, 12, 12)


@pytest.mark.parametrize(
    "data,tasks,message",
    [
        ({"side": 3}, TASKS, "data.side: grid sides must be even, got 3"),  # a Check in the hint
        ({"side": 0}, TASKS, "data.side: Input should be greater than or equal to 2 (got 0)"),  # a bound, before the Check
        ({"n_train": 0}, TASKS, "data.n_train: Input should be greater than 0 (got 0)"),
        ({"labels": "nope.txt"}, TASKS, "data.labels: labels file '{folder}/nope.txt' does not exist"),  # resolved first
        ({"n_train": 2}, TASKS, "data: data.n_val: at most n_train (2), got 4"),  # SourceFacts.check, the defaults filled
        ({"sied": 4}, TASKS, "data.sied: unknown field 'sied'; allowed: loader, num_workers, memory_budget_mb, augment, "
                             "source, side, zoom, n_train, n_val, labels, seed"),
        ({}, [TASKS[0], {"name": "edges", "kind": "regression"}], "tasks[1]: grid has no task 'edges'; allowed: cells, ink"),
        ({"augment": [{"name": "hflip"}]}, TASKS, "data.augment[0]: hflip would change the labels of task 'ink'"),  # no task_effects: the generic rule
    ],
)
def test_a_source_s_errors_name_the_field(grid_plugin: Path, data: dict, tasks: list[dict], message: str) -> None:
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.validate_experiment(_grid(grid_plugin, data, tasks), base_dir=grid_plugin)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(message.format(folder=grid_plugin))


def test_sources_are_listed_in_registration_order(grid_plugin: Path) -> None:
    spaces.validate_experiment(_grid(grid_plugin, {}), base_dir=grid_plugin)  # imports the plugin
    assert spaces.known_sources() == ["multimnist", "files", "scenes", "celeba", "grid"]


# What a run saved before sources, samplers and pruners were declared by their signatures
# recorded in experiment.json: every option with its default, and both sampler fields.
SAVED_DATA = {
    "loader": "auto", "num_workers": None, "memory_budget_mb": None, "augment": [], "source": "multimnist",
    "n_train": 256, "n_val": 128, "n_test": 0, "canvas": 36, "seed": None, "missing_rate": {},
}


@pytest.mark.parametrize(
    "sampler,expected",
    [
        ({"name": "tpe", "n_startup_trials": 5, "population_size": 10, "seed": None}, {"name": "tpe", "seed": None, "n_startup_trials": 5, "multivariate": True}),
        ({"name": "random", "n_startup_trials": 3, "population_size": 10, "seed": 4}, {"name": "random", "seed": 4}),
        ({"name": "nsga2", "n_startup_trials": 5, "population_size": 12, "seed": None}, {"name": "nsga2", "seed": None, "population_size": 12}),
    ],
)
def test_a_run_saved_before_still_loads(sampler: dict, expected: dict) -> None:
    search = {"sampler": sampler, "pruner": {"name": "patient", "warmup_fraction": None}}
    if sampler["name"] == "nsga2":
        search["objectives"] = ["delta_m", "params"]
        search["pruner"] = {"name": "nop", "warmup_fraction": None}
    exp = spaces.validate_experiment(tiny_experiment(data=copy.deepcopy(SAVED_DATA), search=search))
    assert exp.search.sampler.model_dump() == expected  # the fields a sampler does not take are dropped
    assert exp.data.source_options() == {k: SAVED_DATA[k] for k in ("n_train", "n_val", "n_test", "canvas", "seed", "missing_rate")}


def _asks(sampler: optuna.samplers.BaseSampler, objectives: int = 1) -> list[tuple[float, int, str]]:
    """Ten trials of a small conditional space, each told a value."""
    study = optuna.create_study(sampler=sampler, directions=["maximize"] * objectives)
    out = []
    for _ in range(10):
        trial = study.ask()
        x, n, c = trial.suggest_float("x", 1e-4, 1.0, log=True), trial.suggest_int("n", 0, 4), trial.suggest_categorical("c", ["a", "b"])
        out.append((x, n, c))
        study.tell(trial, [x * (n + 1) + (c == "a")] * objectives)
    return out


@pytest.mark.parametrize(
    "config,objectives,before",
    [
        # the samplers as search/study/_samplers.py built them by its if-chain before the registry
        ({}, 1, lambda seed: optuna.samplers.TPESampler(n_startup_trials=5, seed=seed, multivariate=True)),
        ({"name": "tpe", "n_startup_trials": 3}, 1, lambda seed: optuna.samplers.TPESampler(n_startup_trials=3, seed=seed, multivariate=True)),
        ({"name": "random", "seed": 11}, 1, lambda seed: optuna.samplers.RandomSampler(seed=11)),
        ({"name": "nsga2", "population_size": 4}, 2, lambda seed: optuna.samplers.NSGAIISampler(population_size=4, seed=seed)),
    ],
)
def test_samplers_propose_the_same_trials_as_before(config: dict, objectives: int, before) -> None:
    sampler = build_sampler(spaces.SamplerConfig(**config), default_seed=7)
    assert _asks(sampler, objectives) == _asks(before(7), objectives)


@pytest.fixture()
def qmc():
    spaces.register_sampler("qmc", spaces.OptunaPart(optuna.samplers.QMCSampler, {"scramble": True}))
    yield
    spaces.SAMPLERS.pop("qmc")


def test_a_new_sampler_is_one_registration(qmc) -> None:
    exp = spaces.validate_experiment(tiny_experiment(search={"sampler": {"name": "qmc", "qmc_type": "halton"}}))
    sampler = build_sampler(exp.search.sampler, exp.seed)
    assert isinstance(sampler, optuna.samplers.QMCSampler)
    assert (sampler._qmc_type, sampler._scramble, sampler._seed) == ("halton", True, 0)  # given, our default, the experiment's seed
    assert _asks(sampler) == _asks(optuna.samplers.QMCSampler(qmc_type="halton", scramble=True, seed=0))


@pytest.mark.parametrize(
    "sampler,message",
    [
        ({"name": "cmaes"}, "search.sampler.name: Input should be 'tpe', 'nsga2', 'random' or 'qmc' (got 'cmaes')"),
        ({"name": "qmc", "qmc_typ": "sobol"}, "search.sampler: unknown argument(s) ['qmc_typ'] for sampler 'qmc'; allowed: "
                                              "independent_sampler, qmc_type, scramble, warn_asynchronous_seeding, warn_independent_sampling"),
        ({"name": "qmc", "scramble": "often"}, "search.sampler.scramble: Input should be a valid boolean, "
                                               "unable to interpret input (got 'often')"),  # the constructor's hint
        ({"name": "tpe", "n_startup_trials": -1}, "search.sampler.n_startup_trials: Input should be greater than or equal to 0 (got -1)"),  # our bound
        ({"name": "tpe", "population_size": 10}, None),  # a field runs saved before recorded for every sampler: dropped
    ],
)
def test_a_sampler_s_options_are_its_constructor_s(qmc, sampler: dict, message: str | None) -> None:
    doc = tiny_experiment(search={"sampler": sampler})
    if message is None:
        assert "population_size" not in spaces.validate_experiment(doc).search.sampler.options()
        return
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.validate_experiment(doc)
    assert info.value.problems == [message]


@pytest.fixture()
def wilcoxon():
    spaces.register_pruner("wilcoxon", spaces.OptunaPart(optuna.pruners.WilcoxonPruner))
    yield
    spaces.PRUNERS.pop("wilcoxon")


@pytest.mark.parametrize(
    "pruner,message",
    [
        ({"name": "asha"}, "search.pruner.name: Input should be 'patient', 'median', 'percentile', 'successive_halving', "
                           "'hyperband', 'threshold', 'nop' or 'wilcoxon' (got 'asha')"),
        ({"name": "percentile"}, "search.pruner.percentile: Field required"),  # no default in PercentilePruner's signature
        ({"name": "median", "n_startup_trials": "some"}, "search.pruner.n_startup_trials: Input should be a valid integer, "
                                                         "unable to parse string as an integer (got 'some')"),
        ({"name": "wilcoxon", "warmup_fraction": 0.2}, "search.pruner: warmup_fraction: pruner 'wilcoxon' has no warm-up (n_warmup_steps); drop it"),
    ],
)
def test_pruner_names_come_from_the_registry(wilcoxon, pruner: dict, message: str) -> None:
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.validate_experiment(tiny_experiment(search={"pruner": pruner}))
    assert info.value.problems == [message]


def test_a_new_pruner_is_one_registration(wilcoxon) -> None:
    exp = spaces.validate_experiment(tiny_experiment(search={"pruner": {"name": "wilcoxon", "p_threshold": 0.05}}))
    pruner = build_pruner(exp.search.pruner, exp.train.epochs)
    assert isinstance(pruner, optuna.pruners.WilcoxonPruner) and pruner._p_threshold == 0.05
