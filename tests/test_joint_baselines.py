"""Baselines as one model per seed, and configs that are one config.

The joint single-task baselines (family ``columns``: every task's network side by side,
losses summed at weight 1) are checked against single-task networks trained one by one
as a ``single_task`` trial trains them (seeded, then built, then trained by the same
Trainer): with deterministic algorithms on CPU every weight and every metric is equal,
bit for bit, with missing labels and class weights, under Adam and SGD. The reference is
the plain single-task training loop, not the columns code.

A hard split that shares nothing learns the same whatever its static loss weights under
Adam/AdamW (each column's update is invariant to its loss scale up to Adam's eps), not
under SGD or Adam with L2 weight decay: trained here and compared.
"""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import mtl_models as mm
from search.trial._baselines import column_config, joint_config

from conftest import make_config, make_tasks, random_data, tiny_experiment


@pytest.fixture()
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def _data_with_missing_labels(tasks: list[dict[str, Any]]) -> mm.MultiTaskData:
    """Random data; task 0 misses every third label, task 1 (regression) every fourth row."""
    data = random_data(tasks, n=40)
    for split in data.splits.values():
        split.targets["t0"][::3] = -1
        split.targets["t1"][1::4] = math.nan
    return data


def _train(config: dict[str, Any], data: mm.MultiTaskData) -> tuple[mm.MultiTaskModel, dict]:
    """What a trial does: seed, build, train every epoch, evaluate."""
    mm.seed_everything(int(config["seed"]))
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    for _ in range(int(config["epochs"])):
        trainer.train_epoch()
    return model, trainer.evaluate("val")


def _fixed(optimizer: str, **extra: Any) -> dict[str, Any]:
    tasks = make_tasks(3, ("classification", "regression"))
    config = make_config("hard_split", tasks, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                         class_weighting="balanced", loss_weighting="static",
                         loss_weights={t["name"]: 1 / 3 for t in tasks}, epochs=2, batch_size=8, **extra)
    for key in ("family", "split_point", "seed"):
        config.pop(key)
    return config


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_joint_columns_are_the_separately_trained_single_task_networks(optimizer: str, deterministic) -> None:
    fixed = _fixed(optimizer, weight_decay=1e-3)
    data = _data_with_missing_labels(fixed["tasks"])
    joint = joint_config(fixed, [t["name"] for t in fixed["tasks"]], member=1, seed=7)
    model, metrics = _train(joint, data)
    for spec in fixed["tasks"]:
        task = spec["name"]
        single_config = column_config(joint, task)
        # the config a separate baseline trial of this task and seed has: fixed's own keys
        assert single_config == {**fixed, "family": "single_task", "task": task, "ensemble_member": 1, "seed": 7}
        single, single_metrics = _train(single_config, data)
        expected, got = single.state_dict(), model.column(task).state_dict()
        assert list(got) == list(expected)
        assert all(torch.equal(got[k], expected[k]) for k in expected), task  # bit for bit
        assert metrics[task] == single_metrics[task]
        loaded = mm.build_model(single_config)
        loaded.load_state_dict(got)  # a column's checkpoint is a single-task network's


def test_joint_columns_differ_when_a_column_is_not_trained_at_single_task_scale(deterministic) -> None:
    """The equality above can fail: losses averaged (1/T each, static's default) under SGD
    train each column at a third of its single-task step."""
    fixed = _fixed("sgd")
    data = _data_with_missing_labels(fixed["tasks"])
    joint = {**joint_config(fixed, [t["name"] for t in fixed["tasks"]], member=0, seed=7), "static_normalise": True}
    model, _ = _train(joint, data)
    single, _ = _train(column_config(joint, "t0"), data)
    got, expected = model.column("t0").state_dict(), single.state_dict()
    assert max((got[k] - expected[k]).abs().max().item() for k in expected if expected[k].is_floating_point()) > 1e-3


def _k0_weights(optimizer: str, weights: dict[str, float], **extra: Any) -> dict[str, torch.Tensor]:
    tasks = make_tasks(2)
    config = make_config("hard_split", tasks, split_point=0, optimizer=optimizer, loss_weights=weights,
                         lr=0.05 if optimizer == "sgd" else 0.01, epochs=2, batch_size=8, **extra)
    model, _ = _train(config, random_data(tasks, n=40))
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


@pytest.mark.parametrize(
    ("optimizer", "extra", "invariant"),
    [
        ("adam", {}, True),
        ("adamw", {"weight_decay": 0.1}, True),  # decoupled decay: not part of the gradient
        ("adam", {"weight_decay": 0.1}, False),  # L2 in the gradient: c g + wd w is no rescaling
        ("sgd", {}, False),  # the step is proportional to the loss scale
        ("adam", {"grad_clip": 0.01}, False),  # one global norm over both columns
    ],
)
def test_static_weights_change_a_network_that_shares_nothing_only_where_the_key_says(
    optimizer: str, extra: dict[str, Any], invariant: bool, deterministic
) -> None:
    a = _k0_weights(optimizer, {"t0": 0.8, "t1": 0.2}, **extra)
    b = _k0_weights(optimizer, {"t0": 0.3, "t1": 0.7}, **extra)
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    # Invariant up to Adam's eps (a loss scaled by c acts as eps / c) and rounding: parameters
    # with near-zero gradients (a conv before batch norm) move by a little, 1.3e-4 here,
    # against 0.01 per Adam step (lr) and 4e-2 to 8e-2 apart under SGD
    assert (gap < 1e-3) if invariant else (gap > 1e-2), gap
    keys = [mm.config_key(make_config("hard_split", make_tasks(2), split_point=0, optimizer=optimizer,
                                      loss_weights=w, **extra)) for w in ({"t0": 0.8, "t1": 0.2}, {"t0": 0.3, "t1": 0.7})]
    assert (keys[0] == keys[1]) == invariant


def _k0(**extra: Any) -> dict[str, Any]:
    return make_config("hard_split", make_tasks(3), **{"split_point": 0, "loss_weights": {"t0": 0.5, "t1": 0.3, "t2": 0.2},
                                                        **extra})


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # one tree, written three ways: nothing shared
        (_k0(), _k0(split_point=None, tree="per_task", split_points={"t0": 0, "t1": 0, "t2": 0}), True),
        (_k0(), _k0(task_groups={"t0": 0, "t1": 0, "t2": 1}, group_split_points={"0": 0, "1": 0}), True),
        (_k0(), _k0(split_point=1), False),
        (_k0(task_groups={"t0": 0, "t1": 0, "t2": 1}, group_split_points={"0": 2, "1": 0}), _k0(), False),
        (_k0(), _k0(loss_weights={"t0": 0.1, "t1": 0.1, "t2": 0.8}), True),
        (_k0(), _k0(loss_weights={"t0": 0.0005, "t1": 0.4995, "t2": 0.5}), False),  # eps / c no longer negligible
        (_k0(), _k0(loss_weighting="uncertainty"), False),
        (_k0(split_point=2), _k0(split_point=2, loss_weights={"t0": 0.1, "t1": 0.1, "t2": 0.8}), False),
        # alternating optimisation never uses the static weights, whatever is shared
        (_k0(split_point=2, optimization="alternating"),
         _k0(split_point=2, optimization="alternating", loss_weights={"t0": 0.1, "t1": 0.1, "t2": 0.8}), True),
        (_k0(), _k0(lr=0.02), False),
        (_k0(), _k0(seed=5), True),  # the seed is not the config
    ],
)
def test_config_key_is_one_key_per_network_and_training(a: dict, b: dict, same: bool) -> None:
    assert (mm.config_key(a) == mm.config_key(b)) == same


@pytest.mark.parametrize(("optimizer", "same"), [("adam", True), ("adamw", True), ("sgd", False)])
def test_a_k0_config_at_the_baselines_settings_is_the_joint_baselines_config(optimizer: str, same: bool) -> None:
    fixed = {k: v for k, v in _k0(optimizer=optimizer).items() if k not in ("family", "split_point", "seed")}
    baseline = joint_config(fixed, ["t0", "t1", "t2"], member=2, seed=2)
    searched = {**fixed, "family": "hard_split", "tree": "single", "split_point": 0,
                "loss_weights": {"t0": 0.2, "t1": 0.2, "t2": 0.6}, "seed": 2}
    assert (mm.config_key(searched) == mm.config_key(baseline)) == same
    assert mm.config_key({**searched, "lr": 0.5}) != mm.config_key(baseline)  # other training settings


# --- a run: joint baselines, and k=0 proposals answered from them -------------------------------

RUN = tiny_experiment(
    name="joint",
    data={"source": "multimnist", "n_train": 128, "n_val": 64, "n_test": 0},
    train={"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    # every proposal a hard split that shares nothing at the baselines' settings; only the weights differ
    space={"families": ["hard_split"], "split_point": 0, "loss_weights": "simplex"},
    search={"num_trials": 3, "max_concurrent": 1, "pruner": {"name": "nop"}},
    baselines={"seeds": 2, "ensemble": True},
    confirm={"top_k": 0},
)


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory, ray_local):
    import yaml

    import spaces
    from search import run_experiment

    root = tmp_path_factory.mktemp("joint")
    path = root / "joint.yaml"
    path.write_text(yaml.safe_dump(RUN, sort_keys=False))
    result = run_experiment(spaces.load_experiment(path), root / "run", cache_dir=None)
    return result.run_dir, result.results


def test_baselines_are_one_trial_per_seed_listed_as_single_task_rows(joint_run) -> None:
    import json

    from ray.tune import ExperimentAnalysis

    run_dir, results = joint_run
    trials = ExperimentAnalysis(str(run_dir / "baselines")).trials
    assert sorted(t.config["family"] for t in trials) == ["columns", "columns"]  # 2 seeds, not 2 x 2 tasks
    single = results[(results["phase"] == "baselines") & (results["family"] == "single_task")]
    assert sorted(zip(single["task"], single["seed"].astype(int))) == [("left", 0), ("left", 1), ("right", 0), ("right", 1)]
    assert (single["status"] == "finished").all() and single["params"].nunique() == 1
    assert results.loc[results["family"] == "ensemble", "status"].tolist() == ["finished"]  # composed from columns
    # a column's checkpoint is a single-task network that scores what the row says
    data = mm.load_data("multimnist", [mm.TaskSpec.from_dict(t) for t in RUN["tasks"]], **{
        k: v for k, v in RUN["data"].items() if k != "source"})
    row = single.iloc[0]
    config = json.loads(row["config"])
    model = mm.build_model(config)
    model.load_state_dict(mm.load_checkpoint_state(row["checkpoint"])["model"])
    metrics = mm.evaluate_model(model, data, config, "val")
    assert metrics[row["task"]]["accuracy"] == pytest.approx(row[f"val/{row['task']}/accuracy"], abs=0)


def test_k0_proposals_at_the_baselines_settings_are_answered_without_training(joint_run) -> None:
    import optuna

    run_dir, results = joint_run
    search = results[results["phase"] == "search"].sort_values("seed")
    assert search["seed"].astype(int).tolist() == [0, 1, 2]  # one config: each proposal the next seed
    assert search["config_key"].nunique() == 1
    answered = search[search["answered_from"].notna()]
    assert answered["seed"].astype(int).tolist() == [0, 1]  # the baselines' seeds; seed 2 is trained
    base = results[(results["phase"] == "baselines") & (results["family"] == "single_task")]
    for _, row in answered.iterrows():
        for task in ("left", "right"):
            column = base[(base["task"] == task) & (base["seed"] == row["seed"])].iloc[0]
            assert row[f"val/{task}/accuracy"] == column[f"val/{task}/accuracy"]
            assert column["trial_id"].startswith(row["answered_from"])
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    told = sorted((t.user_attrs["seed"], t.value) for t in study.trials)
    assert told == sorted(zip(search["seed"].astype(int), search["delta_m"]))  # the study has every value
    import reports

    page = reports.write_report(run_dir).read_text()
    assert "answering 2 without training" in page  # the progress section; the leaderboard names the run
    assert f"answered without training, from run {answered['answered_from'].iloc[0]}" in page


def test_a_joint_baseline_measures_its_cost_with_its_last_epoch_and_its_answers_carry_it_every_epoch(joint_run) -> None:
    """Its first epoch is the run's first result: no cost measured before it. A proposal it
    answers reports that cost with every epoch, as a trained trial does."""
    from ray.tune import ExperimentAnalysis

    run_dir, results = joint_run
    for df in ExperimentAnalysis(str(run_dir / "baselines")).trial_dataframes.values():
        df = df.sort_values("epoch")
        assert df["flops"].isna().tolist() == [True, False]
        assert df["latency_ms_b1"].iloc[-1] > 0 and df["columns/left/flops"].iloc[-1] > 0
    frames = ExperimentAnalysis(str(run_dir / "search")).trial_dataframes.values()
    answered = [df for df in frames if "answered_from" in df and df["answered_from"].notna().all()]
    trained = [df for df in frames if "answered_from" not in df or df["answered_from"].isna().all()]
    assert len(answered) == 2 and len(trained) == 1
    for df in answered:
        assert len(df) == 2 and (df["flops"] > 0).all() and (df["latency_ms_b1"] > 0).all()
        assert df["cost_device"].notna().all()
    assert (answered[0]["flops"] == trained[0]["flops"].iloc[0]).all()  # the same network
    base = results[(results["phase"] == "baselines") & (results["family"] == "single_task")]
    assert (base["flops"] > 0).all() and (base["latency_ms_b1"] > 0).all()


def test_every_baseline_is_queued_with_tune_at_once() -> None:
    """Tune queues as many trials as a ``ConcurrencyLimiter`` in the search algorithm allows,
    and one at a time without one (Ray 2.58-2.60, ``TUNE_MAX_PENDING_TRIALS_PG`` "auto"): the
    baselines' second trial would then start its process only once the first one's had started."""
    from ray.tune.execution.tune_controller import _get_max_pending_trials

    from search.run._phases import baselines_search_alg

    configs = [joint_config({"lr": 0.01}, ["left", "right"], 0, seed) for seed in range(3)]
    alg = baselines_search_alg(configs)
    assert _get_max_pending_trials(alg) == 3
    assert [alg.searcher.suggest(str(i)) for i in range(4)] == [*configs, None]  # ConcurrencyLimiter: 3 live at most
    for i in range(3):
        alg.searcher.on_trial_complete(str(i), {})
    assert alg.searcher.suggest("4") == "FINISHED"
