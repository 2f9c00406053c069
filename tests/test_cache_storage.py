"""Baselines reused from the cache by a later run; Tune's trials kept in separate storage."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import mtl_models as mm
import spaces
from search import run_experiment
from search.recovery._cache import baselines_key
from search import baseline_configs
from spaces import fixed_config

from conftest import tiny_experiment


EXPERIMENT = tiny_experiment(**{
    "name": "cache",
    "seed": 3,
    "data": {"source": "multimnist", "n_train": 128, "n_val": 64, "n_test": 0},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {"families": ["hard_split"], "split_point": 1},
    "search": {"num_trials": 1, "max_concurrent": 1, "pruner": {"name": "nop"}},
    "baselines": {"ensemble": True, "ensemble_size": 2},
})


def _load(tmp_path: Path, **changes) -> spaces.Experiment:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, **changes}, sort_keys=False))
    return spaces.load_experiment(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("cache")
    cache = root / "cache"
    # separate single-task trials, as every run made before joint baselines cached them
    first = run_experiment(_load(root, baselines={**EXPERIMENT["baselines"], "columns": "separate"}),
                           root / "first", cache_dir=cache)
    # a refined search space, same data/budget/seeds: the baselines come from the cache
    # (a run that would train them jointly takes the separate ones: the same networks);
    # and Tune's trials go to a separate storage folder
    exp = _load(root, space={"families": ["hard_split"], "split_point": 0})
    second = run_experiment(exp, root / "second", cache_dir=cache, storage=str(root / "shared"))
    return root, first, second


def test_second_run_reuses_the_cached_baselines(runs, capsys) -> None:
    root, first, second = runs
    a, b = (pd.read_parquet(r.run_dir / "results.parquet") for r in (first, second))
    base_a = a[a["phase"] == "baselines"].sort_values("trial_id").reset_index(drop=True)
    base_b = b[b["phase"] == "baselines"].sort_values("trial_id").reset_index(drop=True)
    assert len(base_a) == 4 + 1  # two seeds per task, and the ensemble
    # the very same trials (ids and metrics), not retrained ones
    pd.testing.assert_series_equal(base_a["trial_id"], base_b["trial_id"])
    pd.testing.assert_series_equal(base_a["val/left/accuracy"], base_b["val/left/accuracy"])
    assert len(list((root / "cache" / "baselines").iterdir())) == 1
    # the search was not cached: a different split point ran
    assert b.loc[b["phase"] == "search", "split_point"].tolist() == [0]


def test_storage_holds_the_trials_and_the_run_directory_the_tables(runs, tmp_path: Path) -> None:
    root, _, second = runs
    run = json.loads((second.run_dir / "run.json").read_text())
    assert run["storage"] == str(root / "shared" / "second")
    assert not (second.run_dir / "search").exists()
    assert list((root / "shared" / "second" / "search").glob("*/checkpoint_*"))
    results = pd.read_parquet(second.run_dir / "results.parquet")
    checkpoint = results.loc[results["phase"] == "search", "checkpoint"].iloc[0]
    assert checkpoint.startswith(str(root / "shared" / "second"))
    from reports import export_trial

    bundle = export_trial(second.run_dir, tmp_path / "deploy", formats=(), evaluate=False)
    assert isinstance(mm.load(bundle), torch.nn.Module)


def test_the_key_changes_with_the_data_and_the_budget(tmp_path: Path) -> None:
    exp = _load(tmp_path)
    data = exp.load_data()
    configs = baseline_configs(exp, fixed_config(exp, data.input_spec()))
    key = baselines_key(configs, data)
    assert key == baselines_key(configs, exp.load_data())
    longer = [{**c, "epochs": 3} for c in configs]
    assert baselines_key(longer, data) != key
    data.splits["train"].images[0, 0, 0, 0] ^= 1
    assert baselines_key(configs, data) != key
