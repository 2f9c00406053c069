"""The racing confirmation: the stopping rule on numbers (a paired t interval written out
here from its textbook formula, Bonferroni over looks and rivals), the searcher's rounds,
failures and resume without Ray, and one tiny run where a planted loser stops
after two seeds and trains fewer trials than a full confirmation would."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ray.tune.search import Searcher
from scipy import stats

import reports
import spaces
from search import RacingConfigs, race_stops, run_experiment
from search.study._racing import race_entries, race_level

from conftest import tiny_experiment


def paired_upper(differences: list[float], one_sided: float) -> tuple[float, float, float]:
    """The textbook paired t interval: mean +- t_{n-1} s / sqrt(n), its upper bound one-sided at ``one_sided``."""
    n = len(differences)
    mean = sum(differences) / n
    s = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = stats.t.ppf(one_sided, n - 1) * s / math.sqrt(n)
    return mean, mean - half, mean + half


@pytest.mark.parametrize(
    ("configs", "looks", "alpha", "expected"),
    [
        (3, 1, 0.05, 1 - 2 * 0.05 / 2),  # 3 configs, seeds 3: one look, two rivals
        (4, 3, 0.05, 1 - 2 * 0.05 / 9),  # 4 configs, seeds 5: looks after seeds 2, 3, 4
        (5, 0, 0.05, 1.0),  # two seeds: no look saves a training, so none is made
        (3, 2, 0.0, 1.0),  # race_alpha 0: no config stops
    ],
)
def test_each_interval_is_one_sided_at_alpha_over_looks_times_rivals(configs, looks, alpha, expected) -> None:
    assert race_level(configs, looks, alpha) == pytest.approx(expected, rel=0, abs=1e-15)


def test_a_clearly_worse_config_stops_after_two_seeds_and_a_close_one_does_not() -> None:
    level = race_level(3, 1, 0.05)  # seeds 3: the bound is one-sided at 1 - 0.05 / 2
    values = {
        "lead": {1: 5.0, 2: 6.0},
        "worse": {1: -20.0, 2: -19.2},  # 25 points below, seed for seed: differences -25.0, -25.2
        "close": {1: 4.0, 2: 7.5},  # differences -1.0, +1.5
    }
    stops = race_stops(values, level)
    assert set(stops) == {"worse"}
    mean, low, high = paired_upper([-25.0, -25.2], 1 - 0.05 / 2)  # t_{0.975, 1} = 12.706: half width 1.27
    assert stops["worse"]["against"] == "lead" and stops["worse"]["seeds"] == 2
    assert (stops["worse"]["mean"], stops["worse"]["low"], stops["worse"]["high"]) == pytest.approx((mean, low, high), rel=1e-12)
    assert high == pytest.approx(-25.1 + 12.7062 * 0.1, abs=1e-3) and high < 0
    _, _, close_high = paired_upper([-1.0, 1.5], 1 - 0.05 / 2)
    assert close_high > 0  # the reference says so too: the close one keeps racing


def test_a_worse_config_with_inconsistent_seeds_keeps_racing() -> None:
    """Worse by 10 on average, but by 2 on one seed and 18 on the other: after two seeds (t with one
    degree of freedom) that is not beyond the noise."""
    assert race_stops({"lead": {1: 0.0, 2: 0.0}, "b": {1: -2.0, 2: -18.0}}, race_level(2, 1, 0.05)) == {}
    # the same mean with consistent seeds stops
    assert set(race_stops({"lead": {1: 0.0, 2: 0.0}, "b": {1: -9.9, 2: -10.1}}, race_level(2, 1, 0.05))) == {"b"}


def test_references_errors_and_single_seeds_never_stop() -> None:
    level = race_level(4, 1, 0.05)
    values = {
        "lead": {1: 5.0, 2: 6.0, 3: 5.5},
        "default": {1: -30.0, 2: -30.1, 3: -29.9},  # clearly worse, but a reference the verdict needs
        "errored": {1: -30.0, 2: None, 3: None},  # one finished seed: nothing to pair
        "partly": {1: -30.0, 2: None, 3: -29.6},  # paired on seeds 1 and 3
    }
    stops = race_stops(values, level, protected={"default"})
    assert set(stops) == {"partly"} and stops["partly"]["seeds"] == 2
    mean, low, high = paired_upper([-35.0, -35.1], 1 - 0.05 / 3)
    assert stops["partly"]["high"] == pytest.approx(high, rel=1e-12)
    assert race_stops(values, race_level(4, 1, 0.0)) == {}  # alpha 0


def test_a_config_stops_against_the_rival_that_shows_it_worse_most_clearly() -> None:
    values = {"a": {1: 1.0, 2: 2.5}, "b": {1: 3.0, 2: 3.1}, "c": {1: -9.0, 2: -8.95}}
    stops = race_stops(values, race_level(3, 1, 0.05))
    # c is beyond the noise below both; b (the leader) bounds it lowest. a vs b: -2.0, -0.6, within the noise
    assert set(stops) == {"c"} and stops["c"]["against"] == "b"
    assert stops["c"]["high"] == pytest.approx(paired_upper([-12.0, -12.05], 1 - 0.05 / 2)[2], rel=1e-12)


def test_a_leader_that_lost_a_seed_does_not_shield_a_clearly_worse_config() -> None:
    """The leader's second seed errored: the config is paired with the runner-up instead."""
    values = {"lead": {1: 9.0, 2: None}, "second": {1: 5.0, 2: 6.0}, "worse": {1: -20.0, 2: -19.2}}
    stops = race_stops(values, race_level(3, 1, 0.05))
    assert set(stops) == {"worse"} and stops["worse"]["against"] == "second"


def test_bonferroni_keeps_the_chance_of_stopping_the_best_under_alpha() -> None:
    """Simulated races (normal noise, paired by a shared seed effect): five configs tied for
    best (each of them a true best) and one 8 points worse (8 times one run's noise), six
    seeds. A tied config is stopped at some look in at most alpha of the races (with no
    correction it is in 32 %, corrected over rivals but not looks in 11 %); the worse one
    is stopped in most."""
    import numpy as np

    rng = np.random.default_rng(0)
    configs, seeds, alpha, races = 6, 6, 0.05, 150
    level = race_level(configs, seeds - 2, alpha)
    best_stopped = worse_stopped = 0
    for _ in range(races):
        shared = rng.normal(0, 1.0, seeds)  # the seed's effect on every config (what pairing removes)
        runs = {f"c{i}": shared + rng.normal(0, 1.0, seeds) for i in range(configs - 1)}
        runs["bad"] = shared + rng.normal(0, 1.0, seeds) - 8.0
        alive = dict(runs)
        for done in range(2, seeds):
            for key in race_stops({k: dict(enumerate(v[:done].tolist())) for k, v in alive.items()}, level):
                alive.pop(key)
        best_stopped += "c0" not in alive
        worse_stopped += "bad" not in alive
    assert best_stopped / races <= alpha
    assert worse_stopped / races > 0.5


def entries(n: int = 3, seeds: tuple[int, ...] = (4, 5, 6)) -> list[dict]:
    configs = [{"family": "hard_split", "split_point": k, "epochs": 2, "seed": s} for k in range(n - 1) for s in seeds]
    configs += [{"family": "hard_split", "split_point": 9, "epochs": 2, "reference": "default", "seed": s} for s in seeds]
    return race_entries(configs)


def result(value: float | None, epoch: int = 2) -> dict:
    return {"delta_m": value, "epoch": epoch, "epochs": 2}


def test_the_searcher_races_round_by_round_and_survives_a_failing_trial(tmp_path: Path) -> None:
    race_file = tmp_path / "confirm_race.json"
    searcher = RacingConfigs(entries(), alpha=0.05, race_file=str(race_file))
    assert searcher.max_trials == 9

    def asked(*trials: str) -> list[tuple[int, int] | None]:
        return [None if (c := searcher.suggest(t)) is None else (c["split_point"], c["seed"]) for t in trials]

    assert asked("t0", "t1", "t2") == [(0, 4), (1, 4), (9, 4)]  # seed 4 of every config
    # nothing more of round 1: the default (a reference, never stopped) runs ahead; the others wait
    assert asked("t3", "t4", "t5") == [(9, 5), (9, 6), None]
    for trial, value in {"t0": 5.0, "t1": -20.0, "t2": 1.0}.items():
        searcher.on_trial_complete(trial, result(value))
    assert asked("u0", "u1", "u2") == [(0, 5), (1, 5), None]
    searcher.on_trial_complete("u0", result(6.0))
    searcher.on_trial_complete("u1", result(-19.2))
    assert asked("u3") == [None]  # round 2 waits for the default's seed 5
    searcher.on_trial_complete("t3", None, error=True)  # which fails: the race goes on
    # split point 1 stopped after 2 seeds (-25.0, -25.2 against split point 0); round 3 needs split point 0 only
    assert asked("v0", "v1") == [(0, 6), None]
    race = json.loads(race_file.read_text())
    stopped = {c["config_key"]: c["stopped"] for c in race["configs"]}
    key_1 = entries()[1]["key"]
    assert stopped[key_1]["after"] == 2 and stopped[key_1]["against"] == entries()[0]["key"]
    assert [k for k, s in stopped.items() if s] == [key_1] and not race["finished"]
    searcher.on_trial_complete("v0", result(5.5))
    assert not json.loads(race_file.read_text())["finished"]  # the default's seed 6 is still out
    searcher.on_trial_complete("t4", result(0.5))
    race = json.loads(race_file.read_text())
    assert race["finished"] and race["trials"] == 8  # 9 - 1: one training saved
    assert searcher.suggest("w0") == Searcher.FINISHED


def test_a_resumed_race_keeps_its_finished_seeds_and_decides_the_same(tmp_path: Path) -> None:
    """Snapshot mid-round (two trials out), restore into a fresh searcher: the trials out are
    the ones Tune resumes, finished seeds are not asked for again, the stop is the same."""
    def drive(searcher: RacingConfigs, trial: str) -> None:
        values = {"a": {"0": 5.0, "1": -20.0, "9": 1.0}, "b": {"0": 6.0, "1": -19.2, "9": 1.5}}
        config, seed = trial.split("-")
        searcher.on_trial_complete(trial, result(values[seed][config]))

    clean = RacingConfigs(entries())
    killed = RacingConfigs(entries())
    for searcher in (clean, killed):
        for name in ("0-a", "1-a", "9-a"):
            searcher.suggest(name)
        for name in ("0-a", "1-a", "9-a"):
            drive(searcher, name)
        for name in ("0-b", "1-b", "9-b"):
            searcher.suggest(name)
        drive(searcher, "0-b")
    killed.save(str(tmp_path / "searcher-state.json"))
    resumed = RacingConfigs([])
    resumed.restore(str(tmp_path / "searcher-state.json"))
    ahead = [searcher.suggest("new") for searcher in (clean, resumed)]
    assert ahead[0] == ahead[1] and (ahead[0]["split_point"], ahead[0]["seed"]) == (9, 6)  # not seed 5: it is out
    for searcher in (clean, resumed):
        drive(searcher, "1-b")
        drive(searcher, "9-b")
    suggestions = [[searcher.suggest(f"x{i}") for i in range(2)] for searcher in (clean, resumed)]
    assert suggestions[0] == suggestions[1] and suggestions[0][0]["seed"] == 6 and suggestions[0][1] is None
    assert resumed.race()["configs"] == clean.race()["configs"]
    assert [c["stopped"] is not None for c in resumed.race()["configs"]] == [False, True, False]


# --- one tiny run ---------------------------------------------------------------------------

PLANT_PLUGIN = '''
from search import register_trial_hook


@register_trial_hook("test_racing_plant")
def plant(event, config, **context):
    """A planted loser and a fault: the config with lr 1e-5 is scored as a model that is always
    wrong (every validation metric 0, so Delta_m -100 on every seed: on this tiny data the
    single-task baseline itself is not far above chance, so a real loser would hide in the
    noise); the no-search default's first confirmation seed fails (max_failures 0: it errors)."""
    if event != "epoch_start":
        return
    if config.get("reference") == "default" and config["seed"] == {seed}:
        raise RuntimeError("injected confirmation fault")
    trainer = context["trainer"]
    if config["lr"] < 1e-4 and "evaluate" not in vars(trainer):
        evaluate = trainer.evaluate

        def always_wrong(split, *args, **kwargs):
            return {{t: {{m: 0.0 for m in ms}} for t, ms in evaluate(split, *args, **kwargs).items()}}

        trainer.evaluate = always_wrong
'''

EXPERIMENT = tiny_experiment(**{
    "name": "racing",
    "seed": 3,
    "data": {"source": "multimnist", "n_train": 128, "n_val": 96, "n_test": 0},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {"families": ["hard_split"], "loss_weights": {"left": 0.5, "right": 0.5},
              "lr": {"low": 1e-5, "high": 0.01, "log": True}},
    "search": {"num_trials": 2, "max_concurrent": 1, "pruner": {"name": "nop"}, "max_failures": 0,
               "points_to_evaluate": [
                   {"family": "hard_split", "tree": "single", "split_point": 1, "lr": 0.01},
                   {"family": "hard_split", "tree": "single", "split_point": 1, "lr": 0.00001},  # the planted loser
               ]},
    "baselines": {"ensemble": False},
    "confirm": {"top_k": 2, "seeds": 3, "race_alpha": 0.2},
})


@pytest.fixture(scope="module")
def raced(tmp_path_factory, ray_local) -> Path:
    root = tmp_path_factory.mktemp("racing")
    plugin = root / "racing_plant.py"
    plugin.write_text(PLANT_PLUGIN.replace("{seed}", "4").replace("{{", "{").replace("}}", "}"))  # the first fresh seed after the experiment's 3
    path = root / "racing.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, "plugins": [str(plugin)]}, sort_keys=False))
    result = run_experiment(spaces.load_experiment(path), root / "run")
    return result.run_dir


def test_a_planted_loser_stops_after_two_seeds_and_fewer_trials_train(raced: Path) -> None:
    """race_alpha 0.2 (three configs, one look: each upper bound one-sided at 90 %): the planted
    loser is over 100 points below the leader, whose own seeds differ by about 10 here."""
    results = pd.read_parquet(raced / "results.parquet")
    confirm = results[results["phase"] == "confirm"]
    per_config = confirm.groupby("config_key")["seed"].apply(lambda s: sorted(s.astype(int)))
    assert len(per_config) == 3 and len(confirm) == 8  # 3 configs x 3 seeds, less the one the race saved
    slow = confirm[confirm["lr"] < 1e-4]
    assert sorted(slow["seed"].astype(int)) == [4, 5] and (slow[reports.STOPPED_AFTER] == 2).all()
    others = confirm[confirm["lr"] >= 1e-4]
    assert others[reports.STOPPED_AFTER].isna().all()
    assert sorted(others.groupby("config_key").size()) == [3, 3]  # the leader and the default: every seed
    default = confirm[confirm["reference"] == "default"]
    assert sorted(default["status"]) == ["errored", "finished", "finished"]  # its failing seed did not stop the race
    assert "injected confirmation fault" in default.loc[default["status"] == "errored", "error"].iloc[0]
    race = json.loads((raced / reports.RACE_FILE).read_text())
    assert race["finished"] and race["trials"] == 8


def test_the_pick_ranks_only_full_seed_configs_and_says_where_the_race_stopped(raced: Path) -> None:
    run = reports.load_run(raced, evaluate=False)
    pick = run.pick
    assert pick.k == 3  # the best of every config that entered the race
    assert len(pick.table) == 2 and all(row["lr"] >= 1e-4 for row in map(json.loads, pick.table["config"]))
    assert pick.stopped is not None and len(pick.stopped) == 1
    words = " ".join(pick.sentences(reports.short_label))
    assert "stopped 1 as worse than the leader beyond the noise" in words and "after 2 seeds" in words
    html = reports.write_report(raced).read_text()
    assert "after 2 seeds" in html
