"""Defaults that grow with the question (spaces._defaults), the budget rule, `mtlsearch plan`
and the pick's tree diagram."""
from __future__ import annotations

import copy
import json
import re
import types
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

import mtl_models as mm
import spaces
from reports._sections._pick_tree import _run_tree, task_order, tree_svg
from search.cli import main
from spaces import budget, budget_warning, space_paths

ROOT = Path(__file__).resolve().parents[1]

TWO = {
    "name": "two",
    "data": {"source": "multimnist", "n_train": 64, "n_val": 32, "n_test": 0},
    "tasks": [{"name": "left", "kind": "classification", "classes": 10},
              {"name": "right", "kind": "classification", "classes": 10}],
    "backbone": {"name": "small_cnn", "options": {"widths": [4, 8, 8]}},  # 3 stages
    "train": {"epochs": 2, "batch_size": 32, "device": "cpu"},
}
FOUR = {
    **TWO,
    "name": "four",
    "data": {"source": "scenes", "n_train": 48, "n_val": 16, "n_test": 0, "image_size": 16},
    "tasks": [{"name": "colour", "kind": "classification", "classes": 6},
              {"name": "shape", "kind": "classification", "classes": 4},
              {"name": "size", "kind": "regression", "classes": 1},
              {"name": "count", "kind": "classification", "classes": 3}],
}


def load(tmp_path: Path, doc: dict, **sections) -> spaces.Experiment:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(doc), **sections}, sort_keys=False))
    return spaces.load_experiment(path)


def test_two_tasks_keep_the_space_they_had(tmp_path: Path) -> None:
    exp = load(tmp_path, TWO)
    assert exp.space.tree == "single" and exp.affinity.epochs == 0 and exp.space.families == ["hard_split", "cross_stitch"]
    # longest path, cross_stitch: family, alpha_same, lr_multiplier, one free loss weight = 4 -> 5 random
    # trials (also the floor), 10 cover the space; the default is never below the old 20
    assert (exp.search.num_trials, exp.search.sampler.n_startup_trials) == (20, 5)
    assert set(exp.defaults.filled) == {"search.num_trials", "search.sampler.n_startup_trials"}


def test_four_tasks_get_the_trees_and_the_affinity_stage(tmp_path: Path) -> None:
    exp = load(tmp_path, FOUR)
    assert exp.space.tree == ["single", "per_task", "grouped", "affinity"]
    # the learning rate too: train.lr 1e-3 (the default) / 4 to x 4, log-uniform
    assert exp.space.lr == spaces.FloatRange(low=0.00025, high=0.004, log=True)
    # grouped: family, tree, split_point, 4 task groups, 3 group split points (max_groups T - 1),
    # 3 free loss weights, lr = 14 dims -> 15 random trials, 30 in all
    assert (exp.search.num_trials, exp.search.sampler.n_startup_trials) == (30, 15)
    # how often it measures: 2 epochs of 48 rows in batches of 32 are 4 steps, so every step for
    # samples; the cheap share allows 0.1 x 30 trials x 2 epochs / 2 epochs - 1 = 2 network-epochs of
    # lookahead per epoch, T (S + 3) / (3 every) <= 2: every 4
    assert exp.affinity.every == 4 and exp.defaults.filled["affinity.every"] == 4
    assert exp.defaults.reasons["affinity.every"].startswith("4 steps (2 epochs of 48 rows): every 4 gives 1 measurements")
    # TAG's cost: 2 epochs x (1 + T (S + 3) / (3 every)) = 2 (1 + 4 * 6 / 12) = 6.0 network-epochs,
    # 10.0 % of 30 trials x 2 epochs: at most 10 %, so on
    assert exp.affinity.epochs == 2
    assert "6.0 network-epochs, 10.0% of the search's 60 trial-epochs (at most 10%)" in exp.defaults.reasons["affinity.epochs"]
    structures = [p.structure for p in space_paths(exp)]
    assert structures == ["hard_split single", "hard_split per_task", "hard_split grouped", "hard_split affinity", "cross_stitch"]
    per_task = space_paths(exp)[1].dims
    assert per_task == ("family", "tree", "split_point.colour", "split_point.shape", "split_point.size",
                        "split_point.count", "loss_weights[0]", "loss_weights[1]", "loss_weights[2]", "lr")


def test_a_given_small_budget_keeps_the_affinity_stage_off_and_warns(tmp_path: Path) -> None:
    exp = load(tmp_path, FOUR, search={"num_trials": 10})
    # 4.67 network-epochs against 10 x 2 trial-epochs is 23 %: not cheap
    assert exp.affinity.epochs == 0 and exp.space.tree == ["single", "per_task", "grouped"]
    assert exp.defaults.reasons["affinity.epochs"].startswith("off: ")
    assert exp.search.num_trials == 10
    assert exp.search.sampler.n_startup_trials == 15  # the rule's: too few trials for a model, so all at random
    assert budget_warning(exp).startswith("search.num_trials 10 is below the 30 this space needs to be covered")


def test_what_the_file_writes_wins(tmp_path: Path) -> None:
    exp = load(tmp_path, FOUR, space={"tree": "single", "lr": 0.001}, affinity={"epochs": 0},
               search={"num_trials": 7, "sampler": {"name": "tpe", "n_startup_trials": 3}})
    assert (exp.space.tree, exp.affinity.epochs, exp.search.num_trials, exp.search.sampler.n_startup_trials) == ("single", 0, 7, 3)
    assert exp.defaults.filled == {}
    explicit_trees = load(tmp_path, FOUR, space={"tree": ["single", "per_task"]})
    assert explicit_trees.space.tree == ["single", "per_task"]  # the stage's trees still join when it runs (the sampler)
    no_hard_split = load(tmp_path, FOUR, space={"families": ["cross_stitch"]})
    assert no_hard_split.space.tree == "single" and no_hard_split.affinity.epochs == 0


def test_the_quickstart_is_exactly_the_rule() -> None:
    exp = spaces.load_experiment(ROOT / "examples" / "quickstart.yaml")
    sized = budget(exp)
    # cross_stitch: family, alpha_same, lr_multiplier, one free loss weight, lr = 5 -> 6 random, 12 in all
    assert (sized.dims, sized.structures, sized.startup, sized.covering) == (5, 2, 6, 12)
    assert (exp.search.num_trials, exp.search.sampler.n_startup_trials) == (12, 6)
    assert budget_warning(exp) is None and exp.defaults.filled == {}


def test_the_saved_experiment_keeps_the_resolved_defaults(tmp_path: Path) -> None:
    exp = load(tmp_path, FOUR)
    again = spaces.validate_experiment(json.loads(exp.model_dump_json()))  # what a resumed run reads back
    assert again.defaults.filled == {}  # nothing left to fill in
    assert (again.space.tree, again.search.num_trials, again.search.sampler.n_startup_trials, again.affinity.epochs) == (
        ["single", "per_task", "grouped", "affinity"], 30, 15, 2)


def test_the_default_space_samples_every_tree(tmp_path: Path) -> None:
    exp = load(tmp_path, FOUR)
    trees = [{"branches": [[["colour", "shape"], ["size", "count"]]] * 3}]
    sampler = spaces.define_space(exp, spaces.fixed_config(exp, {"channels": 3, "height": 16, "width": 16}), trees)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        config = sampler(study.ask())
        seen.add(config.get("tree", config["family"]))
    assert seen == {"single", "per_task", "grouped", "affinity", "cross_stitch"}


def test_the_affinity_trees_come_first_with_equal_loss_weights(tmp_path: Path) -> None:
    exp = load(tmp_path, FOUR)
    trees = [{"branches": [[["colour", "shape", "size", "count"]], [["colour", "shape"], ["size", "count"]], [["colour", "shape"], ["size", "count"]]]},
             {"branches": [[["colour", "shape", "size", "count"]]] * 3}]
    points = spaces.affinity_points(exp, len(trees))
    assert [p["affinity_tree"] for p in points] == [0, 1]
    sampler = spaces.define_space(exp, spaces.fixed_config(exp, {"channels": 3, "height": 16, "width": 16}), trees)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for point in points:
        study.enqueue_trial(point)
    for i, tree in enumerate(trees):
        config = sampler(study.ask())
        assert (config["family"], config["tree"], config["affinity_tree"]) == ("hard_split", "affinity", i)
        assert config["branches"] == tree["branches"]
        assert config["loss_weights"] == pytest.approx({"colour": 0.25, "shape": 0.25, "size": 0.25, "count": 0.25}, rel=1e-12)
        assert config["lr"] == 0.001  # the file's train.lr (the default), inside the searched range
    fixed_weights = load(tmp_path, FOUR, space={"loss_weights": "equal", "lr": 0.002})
    assert spaces.affinity_points(fixed_weights, 1) == [{"family": "hard_split", "tree": "affinity", "affinity_tree": 0}]


def test_plan_prints_the_resolved_space_and_the_phases(tmp_path: Path, capsys) -> None:
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump(FOUR, sort_keys=False))
    assert main(["plan", str(path), "--no-timing", "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "  tree: [single, per_task, grouped, affinity]  (filled in: 4 tasks: the trees join the space)" in out
    assert "  families: [hard_split, cross_stitch]  (default)" in out
    assert "Budget: 30 trials (sized to the space), TPE's random start 15." in out
    phases = re.findall(r"^  (baselines|affinity|search|confirm) +(.*?)[:,]", out, flags=re.M)
    # baselines: 4 seeds (the ensemble's default size, T = 4, exceeds seeds: 3), each one network of 4 columns;
    # confirm: the top 3 and the no-search default x 3 seeds, and the single-task networks at the pick's
    # searched rate (one trial per seed: the like-for-like reference)
    assert phases == [("baselines", "4 trainings x 2 epochs"), ("affinity", "6.0 network-epochs"),
                      ("search", "30 trainings x 2 epochs"), ("confirm", "15 trainings x 2 epochs")]
    assert "Expected wall time" not in out  # --no-timing


def test_plan_times_an_epoch_and_warns_of_a_small_budget(tmp_path: Path, capsys) -> None:
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump({**FOUR, "search": {"num_trials": 4}}, sort_keys=False))
    assert main(["plan", str(path), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: search.num_trials 4 is below the 30 this space needs to be covered" in out
    assert "  affinity   off: 4 tasks, and 2 epochs of one shared network with TAG's lookahead cost 3.6" in out
    timing = re.search(r"an epoch \((\d+) steps and validation\) of the largest network \(one network \(column\) per "
                       r"task; cross-stitch units mixing the task columns after conv1-conv3, ([\d,]+) parameters\) "
                       r"([\d.]+) s, of a single-task network ([\d.]+) s", out)  # the family's widest, in its words
    assert timing and timing.group(1) == "2"  # 48 train rows / batch 32, the last batch partial
    exp = spaces.load_experiment(path)
    data = exp.load_data()
    config = {**spaces.fixed_config(exp, data.input_spec()), "family": "cross_stitch", "alpha_same": 0.9,
              "alpha_diff": 0.1 / 3, "lr_multiplier": 1.0, "cross_stitch_stages": None}
    assert int(timing.group(2).replace(",", "")) == sum(p.numel() for p in mm.build_model(config).parameters())
    assert float(timing.group(3)) > 0 and float(timing.group(4)) > 0
    assert re.search(r"Expected wall time: ~[\d.]+ (s|min)( to [\d.]+ (s|min))? of training", out)


# --- the pick's tree ------------------------------------------------------------------------

STAGES = ["conv1", "conv2", "conv3", "conv4"]
TASKS = ["a", "b", "c", "d"]


def copies(svg: str) -> list[tuple[str, str]]:
    return re.findall(r"<rect class='copy' data-stage='([^']+)' data-tasks='([^']+)'", svg)


def test_tree_diagram_draws_each_copy_of_each_stage() -> None:
    # a trunk of one stage, then {a, c} and {b, d} (a pair each) for two stages, then one copy per task
    config = {"family": "hard_split", "tree": "grouped", "split_point": 1, "task_groups": {"a": "0", "b": "1", "c": "0", "d": "1"},
              "group_split_points": {"0": 3, "1": 3}}
    parts = mm.families.partitions_from_config(config, TASKS, 4)
    assert task_order(parts, TASKS) == ["a", "c", "b", "d"]  # each group's tasks adjacent
    svg = tree_svg(parts, STAGES, TASKS)
    assert copies(svg) == [("conv1", "a,b,c,d"), ("conv2", "a,c"), ("conv2", "b,d"), ("conv3", "a,c"), ("conv3", "b,d"),
                           ("conv4", "a"), ("conv4", "b"), ("conv4", "c"), ("conv4", "d")]
    assert svg.count("shared by 2") == 4 and svg.count("shared by 4") == 1 and svg.count(">own<") == 4
    assert re.findall(r"<rect class='head' data-tasks='(\w)'", svg) == ["a", "c", "b", "d"]
    rows = {t: int(y) for t, y in re.findall(r"data-stage='conv4' data-tasks='(\w)' x='\d+' y='(\d+)'", svg)}
    assert rows == {"a": 26, "c": 52, "b": 78, "d": 104}  # HEAD_H + row * ROW_H + 2


def test_the_section_draws_the_pick() -> None:
    specs = [mm.TaskSpec(name=t, kind="classification", classes=2) for t in TASKS]
    chosen = pd.Series({"config": json.dumps({"family": "hard_split", "tree": "per_task",
                                              "split_points": {"a": 0, "b": 2, "c": 2, "d": 4}}), "params": 1234})
    run = types.SimpleNamespace(pick=types.SimpleNamespace(chosen=chosen), tasks=specs, stage_names=STAGES)
    head, svg, text = _run_tree(run)
    assert "1,234 parameters" in head or "1.23k parameters" in head or "1234" in head
    assert copies(svg) == [("conv1", "b,c,d"), ("conv1", "a"), ("conv2", "b,c,d"), ("conv2", "a"), ("conv3", "d"),
                           ("conv3", "a"), ("conv3", "b"), ("conv3", "c"), ("conv4", "d"), ("conv4", "a"),
                           ("conv4", "b"), ("conv4", "c")]
    assert "conv1-conv2: {b,c,d} {a} | conv3-conv4: {d} {a} {b} {c}" in text
    stitched = json.dumps({"family": "cross_stitch", "cross_stitch_stages": [0, 2]})
    run.pick.chosen = pd.Series({"config": stitched, "params": 10})
    _, svg, _ = _run_tree(run)
    assert re.findall(r"<line class='link' data-after='(\w+)'", svg) == ["conv1", "conv3"]
    assert len(copies(svg)) == 16 and "shared by" not in svg


def test_train_rows_are_counted_without_loading(tmp_path: Path) -> None:
    FilesData = spaces.data_model("files")  # the files source's model, built from its loader

    (tmp_path / "train.csv").write_text("path,a\n" + "".join(f"x{i}.png,{i % 2}\n" for i in range(70)))
    (tmp_path / "val.csv").write_text("path,a\nv.png,1\n")
    two = FilesData(source="files", train=tmp_path / "train.csv", val=tmp_path / "val.csv")
    assert two.train_rows() == 70
    one = FilesData(source="files", file=tmp_path / "train.csv", split={"train": 0.6, "val": 0.4})
    assert one.train_rows() == 42
    assert spaces.validate_experiment(TWO).data.train_rows() == 64  # a generator's n_train
