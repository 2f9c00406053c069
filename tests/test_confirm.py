"""Answers with their noise: repeated proposals get new seeds, the confirmation phase retrains
the shortlist with fresh seeds, and the report, select and export use its statistics.

One tiny run shared by the module: a space of three configs only (hard split at 0, 1 or
2, fixed learning rate and loss weights), so TPE must repeat proposals in six trials;
then the two best configs and the no-search default are confirmed with two fresh seeds.
"""
from __future__ import annotations

import json
import os
from html import escape as html_escape
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

import mtl_models as mm
import reports
import spaces
from search import confirm_configs, resume_experiment, run_experiment
from search.cli import main as cli

import chromium
from conftest import tiny_experiment

EXPERIMENT = tiny_experiment(**{
    "name": "confirm",
    "seed": 3,
    "data": {"source": "multimnist", "n_train": 192, "n_val": 96, "n_test": 64},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {"families": ["hard_split"], "loss_weights": {"left": 0.6, "right": 0.4}},
    "search": {"num_trials": 6, "max_concurrent": 1, "sampler": {"name": "tpe", "n_startup_trials": 2},
               "pruner": {"name": "nop"}},
    "baselines": {"ensemble": False},
    "confirm": {"top_k": 2, "seeds": 2},
})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_local) -> Path:
    root = tmp_path_factory.mktemp("confirm")
    path = root / "confirm.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    result = run_experiment(spaces.load_experiment(path), root / "run")
    reports.write_report(result.run_dir)
    return result.run_dir


@pytest.fixture(scope="module")
def results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results.parquet")


def test_a_repeated_proposal_is_trained_with_the_next_seed(run_dir: Path, results: pd.DataFrame) -> None:
    search = results[results["phase"] == "search"]
    assert len(search) == 6 and search["config_key"].nunique() < 6  # six trials, three configs: repeats
    # one config per split point (the seed is not part of the key), and some split point was proposed twice
    assert search.groupby("config_key")["split_point"].nunique().eq(1).all()
    assert search["config_key"].nunique() == search["split_point"].nunique()
    assert search.duplicated("config_key").any()
    assert not search.duplicated(["config_key", "seed"]).any()  # never the same (config, seed) twice
    for _, runs in search.groupby("config_key"):
        assert sorted(runs["seed"].astype(int)) == list(range(3, 3 + len(runs)))  # 3, 4, ... in order
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    told = sorted((t.user_attrs["config_key"], t.user_attrs["seed"], t.value) for t in study.trials)
    table = sorted(zip(search["config_key"], search["seed"].astype(int), search["delta_m"]))
    assert [(k, s) for k, s, _ in told] == [(k, s) for k, s, _ in table]
    assert [v for *_, v in told] == pytest.approx([v for *_, v in table])  # the study saw each seed's value


def test_confirmation_retrains_the_shortlist_and_the_default_with_fresh_seeds(results: pd.DataFrame) -> None:
    search = results[results["phase"] == "search"]
    confirm = results[results["phase"] == "confirm"]
    assert (confirm["status"] == "finished").all()
    score = search.groupby("config_key")["delta_m"].mean().sort_values(ascending=False)
    default = confirm[confirm["reference"] == "default"]
    assert len(default) == 2 and (default["split_point"] == 2).all()  # everything shared, equal weights
    assert json.loads(default["config"].iloc[0])["loss_weights"] == {"left": 0.5, "right": 0.5}
    shortlisted = confirm[confirm["reference"].isna()]
    assert set(shortlisted["config_key"]) == set(score.index[:2])
    for key, runs in shortlisted.groupby("config_key"):
        used = set(search.loc[search["config_key"] == key, "seed"].astype(int))
        assert len(runs) == 2 and not used & set(runs["seed"].astype(int))  # fresh seeds
    assert not confirm.duplicated(["config_key", "seed"]).any()
    assert (confirm["epochs_run"] == 2).all()  # never pruned


def test_confirm_configs_merge_a_default_that_was_shortlisted(run_dir: Path, results: pd.DataFrame) -> None:
    """When the shortlisted config is the default itself, its runs are the default's: one set of seeds."""
    exp = spaces.load_experiment(run_dir / "experiment.json")
    exp = exp.model_copy(update={"space": exp.space.model_copy(update={"loss_weights": "equal"})})
    fixed = spaces.fixed_config(exp, json.loads((run_dir / "fixed_config.json").read_text())["input"])
    default = {**fixed, "family": "hard_split", "tree": "single", "split_point": 2}
    table = results.copy()
    search = table["phase"] == "search"
    table.loc[search, "config_key"] = mm.config_key(default)  # every searched trial was the default
    table.loc[search, "config"] = json.dumps(default)
    table.loc[search, "seed"] = [4, 5, 6, 7, 8, 9]
    configs = confirm_configs(exp, fixed, table)
    assert [(c["reference"], c["seed"]) for c in configs] == [("default", 10), ("default", 11)]


def test_summary_says_in_words_whether_the_pick_beats_single_task(run_dir: Path) -> None:
    run = reports.load_run(run_dir, evaluate=False)
    pick = run.pick
    assert pick.source == "confirm" and len(pick.table) == 3 and (pick.table["seeds"] == 2).all()
    words = " ".join(pick.sentences(reports.short_label))
    assert "confirmation phase" in words and "judged on the test split" in words and pick.split == "test"
    if pick.chosen is not None:
        judged = pick.judged()["delta_m"]
        # the test verdict is the mean of the pick's runs' test Delta_m, read from the table independently
        runs = run.results[run.results["trial_id"].isin(pick.chosen["trial_ids"])]
        assert judged.split == "test" and judged.mean == pytest.approx(runs["test_delta_m"].mean())
        assert judged.low < judged.mean < judged.high  # never zero-wide: seeds and the examples' noise floor
        phrases = {1: "beats single-task beyond the noise", 0: "is not distinguishable from single-task",
                   -1: "is worse than single-task beyond the noise"}
        expected = 1 if judged.low > 0 else (-1 if judged.high < 0 else 0)
        candidate = next(s for s in pick.sentences(reports.short_label) if s.startswith("Deploy candidate"))
        assert f"Delta_m on test {judged.text()}" in candidate and phrases[expected] in candidate
        assert not any(phrases[v] in candidate for v in phrases if v != expected)
    html = (run_dir / "report.html").read_text()
    assert "Confirmed configs (fresh seeds" in html and "no-search default" in html
    assert "contribution to &Delta;<sub>m</sub>" in html
    for sentence in pick.sentences(reports.worded_label):
        assert html_escape(sentence) in html


def test_select_and_export_use_the_confirmed_statistics(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert cli(["select", str(run_dir), "--json", "--max-task-drop", "none"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["configs"] == "confirmed over fresh seeds"
    assert listing["selection_split"] == "val" and listing["verdict_split"] == "test"
    assert all(r["delta_m"]["split"] == "val" and r["verdict_delta_m"]["split"] == "test" for r in listing["qualifying"])
    assert len(listing["qualifying"]) == 3 and all(r["seeds"] == 2 for r in listing["qualifying"])
    assert all(r["structure"].startswith(r["family"]) and "(" in r["structure"] for r in listing["qualifying"])  # with words
    means = [r["delta_m"]["mean"] for r in listing["qualifying"]]
    assert means == sorted(means, reverse=True)
    for record in listing["qualifying"]:
        d = record["delta_m"]
        assert d["low"] <= d["mean"] <= d["high"] and not d["approximate"]
    run = reports.load_run(run_dir, evaluate=False)
    assert run.pick.split == "test"  # the report cached every confirmation run's and baseline's test metrics
    if run.pick.chosen is None:
        pytest.skip("every confirmed config drops a task beyond its noise on this tiny run")
    bundle = reports.export_trial(run_dir, tmp_path / "best")
    card = json.loads((bundle / "card.json").read_text())
    stats = card["config"]
    assert stats["source"] == "confirm" and stats["deploy_candidate"]
    assert card["trial_id"] in stats["runs"] and len(stats["runs"]) == 2 and len(stats["seeds"]) == 2
    runs = run.results.set_index("trial_id").loc[stats["runs"]]
    nearest = (runs["delta_m"] - runs["delta_m"].mean()).abs().idxmin()
    assert card["trial_id"] == stats["exported_run"] == nearest  # the run nearest the mean, not the luckiest
    assert stats["verdict_split"] == "test" and stats["delta_m_vs_single_task"]["split"] == "test"
    assert stats["delta_m_vs_single_task"]["mean"] == pytest.approx(runs["test_delta_m"].mean())
    assert stats["selection"]["delta_m_vs_single_task"]["mean"] == pytest.approx(run.pick.chosen["delta_m"])
    own = runs.loc[nearest]
    assert card["delta_m"]["test"]["vs_single_task"] == pytest.approx(own["test_delta_m"])  # the run's own, beside
    assert stats["delta_m_vs_no_search_default"] is not None or run.pick.chosen["reference"] == "default"
    assert "This config over 2 run(s)" in (bundle / "README.md").read_text()


def test_resuming_an_ended_run_trains_nothing(run_dir: Path, results: pd.DataFrame) -> None:
    resumed = resume_experiment(run_dir)
    pd.testing.assert_frame_equal(
        resumed.results.sort_values("trial_id").reset_index(drop=True)[["trial_id", "phase", "delta_m"]],
        results.sort_values("trial_id").reset_index(drop=True)[["trial_id", "phase", "delta_m"]],
    )


def test_the_report_with_a_confirmation_phase_renders_in_chromium(run_dir: Path) -> None:
    if not chromium.available():
        if os.environ.get("CI"):
            pytest.fail(f"{chromium.CHROMIUM} is missing; .ci/run installs Debian's chromium.")
        pytest.skip(f"{chromium.CHROMIUM} is not installed (apt-get install chromium)")
    check = chromium.check_page(run_dir / "report.html")
    assert check.problems == []
    sections = {f["id"].split("-", 1)[1].rsplit("-", 1)[0] for f in check.figures}
    assert "summary" in sections and all(f["traces"] > 0 for f in check.figures)
