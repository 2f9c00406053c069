"""The experiment file's validation and the define-by-run search space."""
from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import torch
import yaml

import mtl_models as mm
import spaces

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "t",
    "data": {"source": "multimnist", "n_train": 64, "n_val": 32, "n_test": 0},
    "tasks": [
        {"name": "left", "kind": "classification", "classes": 10},
        {"name": "right", "kind": "classification", "classes": 10},
    ],
    "backbone": {"name": "small_cnn", "options": {"widths": [4, 8, 8]}},
    "train": {"epochs": 2, "device": "cpu"},
    "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
}


def write(tmp_path: Path, doc: dict | str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def with_change(path: str, value) -> dict:
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    key = int(last) if isinstance(node, list) else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return doc


_DELETE = object()


# every experiment file in examples/ (cluster.yaml is a Ray cluster-launcher config, see test_cluster_yaml.py)
@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "cluster.yaml"))
def test_examples_are_valid(path: Path) -> None:
    exp = spaces.load_experiment(path)
    assert len(exp.tasks) >= 2


def test_valid_experiment_loads(tmp_path: Path) -> None:
    exp = spaces.load_experiment(write(tmp_path, BASE))
    assert exp.num_stages() == 3
    assert exp.split_point_range() == (0, 3)
    assert exp.source_path == tmp_path / "exp.yaml"


@pytest.mark.parametrize(
    "change,value,message",
    [
        ("train.optimizer", "adamm", "train.optimizer: Input should be 'adam', 'adamw' or 'sgd' (got 'adamm')"),
        ("train.epochs", 0, "train.epochs: Input should be greater than 0 (got 0)"),
        ("train.epoch", 3, "train.epoch: unknown field 'epoch'; allowed: epochs, batch_size"),
        ("tasks.1.kind", "segmentatio", "tasks[1].kind: unknown task kind 'segmentatio'; allowed: binary, classification, dense_regression, multilabel, regression, segmentation"),
        ("tasks.1.name", "left", "tasks: duplicate task name(s) ['left']"),
        ("tasks.0.classes", None, "Task 'left': kind 'classification' needs 'classes' >= 2"),
        ("tasks.0.metric", "mae", "metric 'mae' is not valid for kind 'classification'; allowed: accuracy"),
        ("backbone.name", "resnet99", "backbone.name: unknown backbone 'resnet99'; allowed: alexnet, mobilenet_v3_small, resnet18, resnet34, small_cnn, squeezenet1_1, vgg11_bn"),
        ("backbone.weights", "missing.pth", "backbone.weights: weights file"),
        ("data.source", "imagenet", "data.source: unknown or missing source 'imagenet'; allowed: 'multimnist', 'files'"),
        ("data.missing_rate", {"lft": 0.1}, "data.missing_rate: unknown task name(s) ['lft']; allowed: ['left', 'right']"),
        ("space.families", ["hard_split", "crossstitch"], "space.families: unknown model family 'crossstitch'; allowed: cross_stitch, hard_split, mmoe, mtan, ple"),
        ("space.families", [], "space.families: List should have at least 1 item"),
        ("space.split_point", {"low": 0, "high": 9}, "space.split_point: low=0 high=9 is outside 0..3 for backbone 'small_cnn' (stages: conv1, conv2, conv3)"),
        ("space.split_point", {"low": 3, "high": 1}, "space.split_point: low (3) must be <= high (1)"),
        ("space.alpha_same", {"low": 0.5, "high": 1.5}, "space.alpha_same: must be <= 1, got {'low': 0.5, 'high': 1.5, 'log': False}"),  # cross-stitch's Annotated[float, Ge(0), Le(1)]
        ("space.lr_multiplier", {"low": 0, "high": 10, "log": True}, "space.lr_multiplier: a log range needs low > 0"),
        ("space.loss_weights", {"left": 1.0}, "space.loss_weights: keys ['left'] must be exactly the tasks ['left', 'right']"),
        ("space.loss_weights", "dirichlet", "space.loss_weights: Input should be 'simplex' or 'equal'"),
        ("space.cross_stitch_stages", [0, 5], "space.cross_stitch_stages: [5] out of range; stages are 0..2"),
        ("search.pruner", {"name": "median", "n_warmup": 2}, "search.pruner: unknown argument(s) ['n_warmup'] for pruner 'median'; allowed: interval_steps"),
        ("search.pruner", {"name": "asha"}, "search.pruner.name: Input should be 'patient', 'median', 'percentile', 'successive_halving'"),
        ("search.sampler", {"name": "cmaes"}, "search.sampler.name: Input should be 'tpe', 'nsga2' or 'random' (got 'cmaes')"),
        ("search.objectives", ["params", "delta_m"], "search: objectives: the first must be delta_m and none repeated, got ['params', 'delta_m']; allowed after delta_m: params, flops, latency_ms_b1, latency_ms_bN"),
        ("search.objectives", ["delta_m", "size"], "search.objectives[1]: Input should be 'delta_m', 'params', 'flops', 'latency_ms_b1' or 'latency_ms_bN' (got 'size')"),
        ("train.precision", "fp16", "train.precision: Input should be 'auto', 'fp32' or 'bf16' (got 'fp16')"),
        ("search.resources", {"gpu": -1}, "search.resources.gpu: Input should be greater than or equal to 0"),
        ("search.points_to_evaluate", [{"family": "hard_split", "split_point": 7}], "search.points_to_evaluate[0]: split point 7 must be an integer in 0..3"),
        ("search.points_to_evaluate", [{"familly": "hard_split"}], "search.points_to_evaluate[0]: unknown key(s) ['familly']"),
        ("search.points_to_evaluate", [{"lr": 1.0}], "search.points_to_evaluate[0]: lr 1.0 is outside the space's [0.0001, 0.01]"),
        ("tasks", [{"name": "left", "kind": "classification", "classes": 10}], "tasks: multi-task search needs at least 2 tasks"),
        ("space.tree", ["single", "forest"], "space.tree[1]: Input should be 'single', 'per_task', 'grouped' or 'affinity'"),
        ("space.loss_weighting", "pc_grad", "space.loss_weighting: unknown loss weighting 'pc_grad'; allowed: aligned_mtl, cagrad, db_mtl, dwa, famo, gradnorm, imtlg, mgda, nash_mtl, pcgrad, static, uncertainty, upgrad"),
        ("space.dwa_temperature", -1, "space.dwa_temperature: must be > 0, got -1.0"),  # DWA's Annotated[float, Gt(0)]
        ("space.dwa_temperature", {"low": 0, "high": 2}, "space.dwa_temperature: must be > 0, got {'low': 0.0, 'high': 2.0, 'log': False}"),
        ("space.gradnorm_alpha", "strong", "space.gradnorm_alpha: Input should be a valid number"),
        ("space.famo_w_lr", 0, "space.famo_w_lr: must be > 0, got 0.0"),  # FAMO's Annotated[float, Gt(0)]
        ("space.db_mtl_beta", 1.0, "space.db_mtl_beta: must be < 1, got 1.0"),  # DB-MTL's Annotated[float, Ge(0), Lt(1)]
        ("space.gradnorm_alfa", 1.0, "space.gradnorm_alfa: unknown field 'gradnorm_alfa'; allowed: families, tree, "),
        ("search.points_to_evaluate", [{"gradnorm_alpha": 1.0}], "search.points_to_evaluate[0]: gradnorm_alpha is not searched (fixed to 1.5)"),
        ("space.optimization", [], "space.optimization: give one value or a non-empty list of values to search"),
        ("space.cross_stitch_stages", "some", "space.cross_stitch_stages: Input should be 'all' or 'search'"),
        ("space.branches", [[["left", "right"]], [["left"], ["right"]]], "space.branches: 2 stages given; the backbone has 3"),
        ("space.branches", [[["left"], ["right"]], [["left", "right"]], [["left"], ["right"]]], "space.branches[1]: group ['left', 'right'] merges branches of stage 0"),
        ("space.branches", [[["left"]], [["left"], ["right"]], [["left"], ["right"]]], "space.branches[0]: the groups must hold each task exactly once"),
        ("plugins", ["no_such_module_xyz"], "plugins: cannot import plugin module 'no_such_module_xyz'"),
        ("search.points_to_evaluate", [{"loss_weighting": "gradnorm"}], "search.points_to_evaluate[0]: loss_weighting 'gradnorm' is not among the space's ['static']"),
        ("backbone", {"name": "alexnet"}, "backbone: 'alexnet' cannot process 36x36 inputs (stage 'conv5' fails"),
        ("backbone", {"name": "resnet18", "options": {"widths": [4]}}, "backbone.options: 'resnet18' takes no option(s) ['widths']; allowed: none"),
        ("backbone", _DELETE, "backbone: Field required"),
    ],
)
def test_invalid_experiment_names_field_and_allowed_values(tmp_path: Path, change: str, value, message: str) -> None:
    path = write(tmp_path, with_change(change, value))
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.load_experiment(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_dense_tasks_need_a_backbone_ending_in_maps(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("path,label,mask\n")
    doc = copy.deepcopy(BASE)
    doc["data"] = {"source": "files", "train": "train.csv", "val": "train.csv", "image_size": [64, 64]}
    doc["tasks"] = [{"name": "label", "kind": "classification", "classes": 3}, {"name": "mask", "kind": "segmentation", "classes": 3}]
    doc["backbone"] = {"name": "alexnet"}
    with pytest.raises(spaces.ExperimentError, match=r"tasks: dense task\(s\) \['mask'\] need a backbone whose last stage outputs maps"):
        spaces.load_experiment(write(tmp_path, doc))


def test_errors_carry_the_yaml_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("epochs: 2", "epochs: -2\n  optimizer: rmsprop")
    path = write(tmp_path, text)
    lines = text.splitlines()
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.load_experiment(path)
    problems = info.value.problems
    assert len(problems) == 2
    epochs_line = next(i for i, line in enumerate(lines, 1) if "epochs: -2" in line)
    assert problems[0].startswith(f"{path}:{epochs_line}: train.epochs")
    assert problems[1].startswith(f"{path}:{epochs_line + 1}: train.optimizer")


@pytest.mark.parametrize("text,message", [("data: [1, 2", "not valid YAML"), ("- a\n- b\n", "must be a mapping")])
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(spaces.ExperimentError, match=message):
        spaces.load_experiment(write(tmp_path, text))
    with pytest.raises(spaces.ExperimentError, match="does not exist"):
        spaces.load_experiment(tmp_path / "nope.yaml")


INPUT = {"channels": 1, "height": 36, "width": 36, "mean": [0.1], "std": [0.3]}


def test_define_by_run_samples_only_valid_configs(tmp_path: Path) -> None:
    exp = spaces.load_experiment(write(tmp_path, BASE))
    fixed = spaces.fixed_config(exp, INPUT)
    sample = spaces.define_space(exp, fixed)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=10), direction="maximize")
    families = set()
    for _ in range(40):
        trial = study.ask()
        config = sample(trial)
        family = config["family"]
        families.add(family)
        searched = {k for k in trial.params if not k.startswith(spaces.HIDDEN_PREFIX)}
        if family == "hard_split":
            assert searched == {"family", "split_point", "lr"}
            assert config["tree"] == "single"
            assert 0 <= config["split_point"] <= 3
            assert "alpha_same" not in config
        else:
            assert searched == {"family", "alpha_same", "lr_multiplier", "lr"}  # alpha_diff: convex rows
            assert 0.5 <= config["alpha_same"] <= 1.0
            assert config["alpha_diff"] == pytest.approx(1.0 - config["alpha_same"])
            assert 0.1 <= config["lr_multiplier"] <= 10.0  # auto: Adam's range
            assert "split_point" not in config
        assert sum(config["loss_weights"].values()) == pytest.approx(1.0)
        assert min(config["loss_weights"].values()) > 0
        assert mm.build_model(config)(__import__("torch").rand(1, 1, 36, 36)).keys() == {"left", "right"}
        study.tell(trial, config.get("split_point", 1.5))
    assert families == {"hard_split", "cross_stitch"}


def test_fixed_values_are_not_searched(tmp_path: Path) -> None:
    doc = with_change("space", {"families": ["cross_stitch"], "alpha_same": 0.9, "alpha_diff": 0.1,
                                "lr_multiplier": 100.0, "loss_weights": {"left": 3, "right": 1}})
    exp = spaces.load_experiment(write(tmp_path, doc))
    trial = optuna.create_study().ask()
    config = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))(trial)
    assert trial.params == {}
    assert (config["family"], config["alpha_same"], config["alpha_diff"], config["lr_multiplier"]) == (
        "cross_stitch", 0.9, 0.1, 100.0)
    assert config["loss_weights"] == {"left": 0.75, "right": 0.25}


def test_points_to_evaluate_round_trip_through_optuna(tmp_path: Path) -> None:
    exp = spaces.load_experiment(write(tmp_path, BASE))
    point = {"family": "hard_split", "split_point": 2, "lr": 0.003, "loss_weights": {"left": 0.7, "right": 0.3}}
    study = optuna.create_study()
    study.enqueue_trial(spaces.optuna_point(point))
    config = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))(study.ask())
    assert {k: config[k] for k in ("family", "split_point", "lr")} == {"family": "hard_split", "split_point": 2, "lr": 0.003}
    assert config["loss_weights"] == pytest.approx({"left": 0.7, "right": 0.3})


FULL_SPACE = {
    "families": ["hard_split", "cross_stitch"],
    "tree": ["single", "per_task", "grouped"],
    "cross_stitch_stages": "search",
    "column_init": ["backbone", "single_task"],
    "loss_weighting": ["static", "uncertainty", "dwa", "gradnorm"],
    "gradnorm_alpha": {"low": 0.5, "high": 2.0},
    "dwa_temperature": {"low": 1.0, "high": 4.0},
    "optimization": ["joint", "alternating"],
    "class_weighting": ["none", "balanced"],
    "grad_clip": {"low": 0.5, "high": 10.0, "log": True},
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
}


def test_the_full_space_samples_every_option_and_only_valid_combinations(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["space"] = FULL_SPACE
    exp = spaces.load_experiment(write(tmp_path, doc))
    sample = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {k: set() for k in ("tree", "loss_weighting", "optimization", "class_weighting", "column_init")}
    for _ in range(80):
        trial = study.ask()
        config = sample(trial)
        params = set(trial.params)
        for key in seen:
            if key in config:
                seen[key].add(config[key])
        if config["family"] == "hard_split":
            assert not params & {"alpha_same", "column_init"} and not any(p.startswith("stitch.") for p in params)
            tree = config["tree"]
            assert ("split_points" in config) == (tree == "per_task")
            assert ("task_groups" in config) == (tree == "grouped")
        else:
            assert "tree" not in config and not any(p.startswith("split_point") for p in params)
            assert all(0 <= s < 3 for s in config["cross_stitch_stages"])
        if config["optimization"] == "alternating":
            assert "loss_weighting" not in params
        assert ("gradnorm_alpha" in params) == (config.get("loss_weighting") == "gradnorm" and config["optimization"] == "joint")
        assert ("dwa_temperature" in params) == (config.get("loss_weighting") == "dwa" and config["optimization"] == "joint")
        model = mm.build_model(config)
        assert set(model(__import__("torch").rand(1, 1, 36, 36))) == {"left", "right"}
        study.tell(trial, 0.0)
    assert seen["tree"] == {"single", "per_task", "grouped"}
    assert seen["loss_weighting"] == {"static", "uncertainty", "dwa", "gradnorm"}
    assert seen["optimization"] == {"joint", "alternating"}
    assert seen["class_weighting"] == {"none", "balanced"}
    assert seen["column_init"] == {"backbone", "single_task"}


@pytest.mark.parametrize("scheme,key,value", [("gradnorm", "gradnorm_alpha", 0.7), ("dwa", "dwa_temperature", 3.5),
                                              ("famo", "famo_w_lr", 0.05), ("db_mtl", "db_mtl_beta_sigma", 0.5)])
def test_scheme_parameters_keep_their_keys_in_points_trials_configs_and_columns(tmp_path: Path, scheme: str, key: str, value: float) -> None:
    """GradNorm's ``alpha`` and DWA's ``temperature`` are named as before the schemes declared them;
    FAMO's and DB-MTL's parameters by the same rule."""
    from reports._results import config_row

    doc = copy.deepcopy(BASE)
    doc["space"] = {**FULL_SPACE, "loss_weighting": [*FULL_SPACE["loss_weighting"], "famo", "db_mtl"],
                    "famo_w_lr": {"low": 0.01, "high": 0.1, "log": True}, "db_mtl_beta_sigma": {"low": 0.0, "high": 1.0}}
    doc["search"] = {"points_to_evaluate": [{"family": "hard_split", "optimization": "joint", "loss_weighting": scheme, key: value}]}
    exp = spaces.load_experiment(write(tmp_path, doc))
    study = optuna.create_study()
    study.enqueue_trial(spaces.optuna_point(exp.search.points_to_evaluate[0], exp))
    trial = study.ask()
    config = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))(trial)
    assert trial.params[key] == config[key] == config_row(config)[key] == value
    weighting = mm.build_weighting(["left", "right"], config)
    assert getattr(weighting, key.removeprefix(f"{scheme}_")) == value


def test_points_with_per_task_split_points(tmp_path: Path) -> None:
    doc = with_change("space", {"tree": ["single", "per_task"]})
    exp = spaces.load_experiment(write(tmp_path, doc))
    point = {"family": "hard_split", "tree": "per_task", "split_points": {"left": 1, "right": 3}}
    study = optuna.create_study()
    study.enqueue_trial(spaces.optuna_point(point))
    config = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))(study.ask())
    assert config["split_points"] == {"left": 1, "right": 3}


def _four_tasks(**space) -> dict:
    doc = copy.deepcopy(BASE)
    doc["data"] = {"source": "scenes", "n_train": 32, "n_val": 16, "n_test": 0, "image_size": 16}
    doc["tasks"] = [{"name": "colour", "kind": "classification", "classes": 6},
                    {"name": "shape", "kind": "classification", "classes": 4},
                    {"name": "size", "kind": "regression", "classes": 1},
                    {"name": "count", "kind": "classification", "classes": 3}]
    doc["space"] = {"families": ["cross_stitch"], **space}
    return doc


@pytest.mark.parametrize("optimizer, low, high", [("adam", 0.1, 10.0), ("adamw", 0.1, 10.0), ("sgd", 10.0, 100.0)])
def test_cross_stitch_rows_are_convex_for_any_number_of_tasks(tmp_path: Path, optimizer: str, low: float, high: float) -> None:
    doc = _four_tasks()
    doc["train"] = {**doc["train"], "optimizer": optimizer}
    exp = spaces.load_experiment(write(tmp_path, doc))
    sampler = spaces.define_space(exp, spaces.fixed_config(exp, {"channels": 3, "height": 16, "width": 16}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config = sampler(trial)
        assert config["alpha_same"] + 3 * config["alpha_diff"] == pytest.approx(1.0)  # a unit neither amplifies nor shrinks
        assert "alpha_diff" not in trial.params  # derived, not sampled
        assert low <= config["lr_multiplier"] <= high  # lr_multiplier: auto, by optimizer
        study.tell(trial, 0.0)
    model = mm.build_model({**config, "family": "cross_stitch"})
    for unit in model.units.values():
        torch.testing.assert_close(unit.alpha.sum(dim=1), torch.ones_like(unit.alpha.sum(dim=1)))


def test_a_starting_point_with_a_non_convex_alpha_diff_is_refused(tmp_path: Path) -> None:
    doc = _four_tasks()
    doc["search"] = {"points_to_evaluate": [{"family": "cross_stitch", "alpha_same": 0.7, "alpha_diff": 0.3}]}
    with pytest.raises(spaces.ExperimentError, match="alpha_diff is derived from alpha_same"):
        spaces.load_experiment(write(tmp_path, doc))
    doc["search"]["points_to_evaluate"][0]["alpha_diff"] = 0.1  # (1 - 0.7) / 3: consistent, accepted
    spaces.load_experiment(write(tmp_path, doc))


def test_mtan_units_and_affinity_trees_are_sampled(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["space"] = {"families": ["hard_split", "cross_stitch", "mtan"], "cross_stitch_unit": ["scalar", "nddr"]}
    doc["affinity"] = {"epochs": 1}
    exp = spaces.load_experiment(write(tmp_path, doc))
    trees = [{"name": "t", "branches": [[["left", "right"]], [["left"], ["right"]], [["left"], ["right"]]], "score": 0.1}]
    sample = spaces.define_space(exp, spaces.fixed_config(exp, {"channels": 1, "height": 36, "width": 36}), trees)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        config = sample(trial)
        if config["family"] == "mtan":
            assert config["mtan_stages"][-1] == 2 and set(config["mtan_stages"]) <= {0, 1, 2}
            seen.add("mtan")
        elif config["family"] == "cross_stitch":
            seen.add(config["cross_stitch_unit"])
        elif config["tree"] == "affinity":
            assert config["branches"] == trees[0]["branches"] and config["affinity_tree"] == 0
            seen.add("affinity")
        study.tell(trial, 0.0)
    assert seen == {"mtan", "scalar", "nddr", "affinity"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"space": {"tree": ["single", "affinity"]}}, "space.tree: affinity trees come from the affinity stage"),
        ({"affinity": {"epochs": 1}, "space": {"families": ["cross_stitch"]}}, "add hard_split to space.families"),
        ({"space": {"mtan_stages": [7]}}, r"space.mtan_stages: \[7\] out of range"),
        ({"space": {"cross_stitch_unit": "pixel"}}, "cross_stitch_unit"),
    ],
)
def test_new_space_keys_are_validated(tmp_path: Path, change: dict, message: str) -> None:
    doc = {**copy.deepcopy(BASE), **change}
    with pytest.raises(spaces.ExperimentError, match=message):
        spaces.load_experiment(write(tmp_path, doc))


def test_runs_saved_by_the_previous_layout_still_load() -> None:
    """Ray Tune's saved experiments pickle classes and functions by module path, and a saved
    run's experiment.json records every field: a run (or cached baselines) made before the
    schema and runner were split, and before fault injection left the product, resumes."""
    import search._runner  # regroup: keep (the path Tune's saved experiments name)
    import spaces._schema

    doc = copy.deepcopy(BASE)
    doc["search"] = {**doc.get("search", {}), "inject_faults": {}}
    assert "inject_faults" not in spaces.validate_experiment(doc).search.model_dump()
    for name in ("SpaceConfig", "SearchConfig", "SamplerConfig", "PrunerConfig", "ResourcesConfig", "TrainConfig",
                 "TaskConfig", "BackboneConfig", "HeadConfig", "BaselinesConfig", "ConfirmConfig", "SelectConfig",
                 "AffinityConfig"):
        assert getattr(spaces._schema, name) is getattr(spaces, name, getattr(spaces._schema, name))
    assert callable(search._runner._dirname)  # regroup: keep
