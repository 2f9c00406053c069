"""The command line's conventions without a search run: ``--version``, shell completion, ``-v``/``-q``
and which stream each line goes to, progress bars and lines, ``--set``, ``--json`` and exit
codes of check-data, export's refusals, and what the Optuna study records.

The conventions that need a finished run (export naming its trial, ``report --json``, the
deploy pick on the study, ``select --json`` with nothing qualifying) are tested on the tiny
run of ``tests/test_reports.py``.
"""
from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

import search.base._log as console
import search._cli_runs
import search.cli
import spaces
from mtl_models import config_key, report_progress
from search import DEPLOY_PICK_ATTR, MTLOptunaSearch, record_deploy_pick
from search.run._fixed import trial_base_config
from search.run._runner import _write_run_files
from search.cli import main as cli

from conftest import tiny_experiment
from test_check_data import BASE, write_dataset

# ---------------------------------------------------------------- --version, completion, -v/-q


def test_version_is_the_installed_distributions(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        cli(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"mtlsearch {version('mtlsearch')}\n"


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o bashdefault -F _shtab_mtlsearch mtlsearch"), ("zsh", "#compdef mtlsearch")])
def test_print_completion_completes_every_command(shell: str, marker: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(["--print-completion", shell])
    assert exit_.value.code == 0
    script = capsys.readouterr().out
    assert marker in script
    for command in ("check-data", "run", "plan", "affinity", "resume", "report", "select", "export"):
        assert command in script, command
    assert "--no-format" in script and "--set" in script


@pytest.mark.parametrize(
    "verbose, quiet, level",
    [(0, 0, logging.INFO), (1, 0, logging.DEBUG), (2, 0, logging.DEBUG), (0, 1, logging.WARNING), (0, 2, logging.ERROR),
     (0, 3, logging.ERROR)],
)
def test_verbosity_levels(verbose: int, quiet: int, level: int) -> None:
    assert console.verbosity_level(verbose, quiet) == level


@pytest.mark.parametrize(
    "argv, shown",
    [
        (["check-data", "x.yaml"], ["info", "warning"]),  # default: INFO
        (["-q", "check-data", "x.yaml"], ["warning"]),
        (["-qq", "check-data", "x.yaml"], []),
        (["-v", "check-data", "x.yaml"], ["debug", "info", "warning"]),
        (["check-data", "x.yaml", "-q"], ["warning"]),  # after the command too
    ],
)
def test_quiet_and_verbose_set_the_level_and_warnings_go_to_stderr(argv, shown, monkeypatch, capsys) -> None:
    def command(args) -> int:
        log = logging.getLogger("mtlsearch.search")
        log.debug("debug line")
        log.info("info line")
        log.warning("warning line")
        print("the result")  # results are printed whatever the level
        return 0

    monkeypatch.setattr(search.cli, "_check_data", command)
    before = logging.getLogger("mtlsearch").level
    assert cli(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{k} line" for k in ("debug", "info") if k in shown] + ["the result"]
    assert captured.err.splitlines() == (["Warning: warning line"] if "warning" in shown else [])
    assert logging.getLogger("mtlsearch").level == before  # an in-process call leaves the level as it was


def test_json_mode_keeps_stdout_for_the_document(monkeypatch, capsys) -> None:
    def command(args) -> int:
        logging.getLogger("mtlsearch.search").info("a run line")
        print(json.dumps({"ok": True}))
        return 0

    monkeypatch.setattr(search.cli, "_check_data", command)
    assert cli(["check-data", "x.yaml", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": True}
    assert captured.err == "a run line\n"


# ---------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress_run(monkeypatch, stderr: io.StringIO, clock: list[float], steps: int) -> None:
    monkeypatch.setattr(console.sys, "stderr", stderr)
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    log = logging.getLogger("mtlsearch.reports")
    for done in range(1, steps + 1):
        report_progress(log, "evaluating", done, steps, f"evaluated {done}/{steps}")
        clock[0] += 4.0  # seconds per step


def test_progress_without_a_terminal_is_a_line_at_the_first_last_and_every_ten_seconds(monkeypatch, capsys) -> None:
    stderr = io.StringIO()
    _progress_run(monkeypatch, stderr, [100.0], steps=8)
    # steps at t = 100, 104, ..., 128: lines at the first (100), then once 10 s passed (112, 124), and the last (128)
    assert stderr.getvalue().splitlines() == ["evaluated 1/8", "evaluated 4/8", "evaluated 7/8", "evaluated 8/8"]
    assert capsys.readouterr().out == ""  # progress never goes to stdout


def test_progress_on_a_terminal_is_a_tqdm_bar(monkeypatch) -> None:
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    _progress_run(monkeypatch, terminal, [100.0], steps=3)
    drawn = terminal.getvalue()
    assert "evaluating" in drawn and "3/3" in drawn and "100%" in drawn and "\r" in drawn
    assert "evaluated 1/3\n" not in drawn  # a bar, not lines


def test_a_line_logged_while_a_bar_is_drawn_is_written_above_it(monkeypatch, capsys) -> None:
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(console.sys, "stderr", terminal)
    log = logging.getLogger("mtlsearch.reports")
    report_progress(log, "retraining", 1, 2)
    log.warning("careful")
    report_progress(log, "retraining", 2, 2)
    assert "Warning: careful\n" in terminal.getvalue()


# ---------------------------------------------------------------- --set


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(), sort_keys=False))
    return path


def test_set_changes_settings_before_validation(experiment: Path) -> None:
    exp = spaces.load_experiment(experiment, [
        "train.epochs=5", "space.families=[hard_split]", "search.sampler.seed=7", "space.lr={low: 1e-4, high: 0.1}",
        "train.epochs=6",  # the last one wins
    ])
    assert exp.train.epochs == 6 and exp.space.families == ["hard_split"] and exp.search.sampler.seed == 7
    assert (exp.space.lr.low, exp.space.lr.high) == (1e-4, 0.1)
    assert exp.train.lr == 0.01  # what was not set stays as in the file
    assert exp.overrides == ["train.epochs=5", "space.families=[hard_split]", "search.sampler.seed=7",
                             "space.lr={low: 1e-4, high: 0.1}", "train.epochs=6"]
    assert exp.document["train"] == {"epochs": 6, "batch_size": 64, "lr": 0.01, "device": "cpu"}
    assert spaces.load_experiment(experiment).overrides == [] and spaces.load_experiment(experiment).document is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=0", "--set train.epochs=0: train.epochs: Input should be greater than 0 (got 0)"),
        ("train.epoch=3", "--set train.epoch=3: train.epoch: unknown field 'epoch'; allowed: epochs, batch_size"),
        ("space.families=[nope]", "--set space.families=[nope]: space.families: unknown model family 'nope'; allowed:"),
        ("search.sampler={seed: x}", "--set search.sampler={seed: x}: search.sampler.seed: Input should be a valid integer"),
        ("train.epochs.x=1", "--set train.epochs.x=1: train.epochs is 3 in the experiment, not a section with fields"),
        ("train.epochs", "--set 'train.epochs': expected KEY=VALUE with a dotted KEY"),
        ("train..epochs=1", "--set 'train..epochs=1': expected KEY=VALUE with a dotted KEY"),
        ("train.lr=[1, 2", "--set train.lr=[1, 2: the value is not valid YAML"),
    ],
)
def test_a_bad_set_is_refused_naming_it(experiment: Path, override: str, message: str, capsys) -> None:
    with pytest.raises(spaces.ExperimentError) as error:
        spaces.load_experiment(experiment, [override])
    assert error.value.problems[0].startswith(message), error.value.problems
    assert len(error.value.problems) == 1
    assert cli(["plan", str(experiment), "--no-timing", "--set", override]) == 2  # a usage error
    assert message in capsys.readouterr().err


def test_a_problem_in_the_file_keeps_its_line_beside_a_set(experiment: Path) -> None:
    text = experiment.read_text().replace("lr: 0.01", "lr: -1")
    experiment.write_text(text)
    line = text.splitlines().index("  lr: -1") + 1
    with pytest.raises(spaces.ExperimentError) as error:
        spaces.load_experiment(experiment, ["train.epochs=0"])
    assert sorted(error.value.problems) == sorted([
        "--set train.epochs=0: train.epochs: Input should be greater than 0 (got 0)",
        f"{experiment}:{line}: train.lr: Input should be greater than 0 (got -1)",
    ])


def test_plan_shows_a_set_and_run_num_trials_is_a_set(experiment: Path, capsys) -> None:
    assert cli(["plan", str(experiment), "--no-timing", "--set", "search.num_trials=4", "--set", "train.epochs=2"]) == 0
    assert "search     4 trainings x 2 epochs" in capsys.readouterr().out
    assert cli(["plan", str(experiment), "--no-timing", "--num-trials", "0"]) == 2
    assert "--set search.num_trials=0: search.num_trials: Input should be greater than 0" in capsys.readouterr().err


def test_a_run_records_its_sets(experiment: Path, tmp_path: Path) -> None:
    exp = spaces.load_experiment(experiment, ["train.epochs=2", "space.families=[hard_split]"])
    data = exp.load_data()
    run = tmp_path / "run"
    run.mkdir()
    _write_run_files(exp, run, data, trial_base_config(exp, data), None)
    saved = (run / "experiment.yaml").read_text()
    assert saved.startswith(f"# {experiment.resolve()} with --set train.epochs=2 --set 'space.families=[hard_split]' applied;")
    again = spaces.load_experiment(run / "experiment.yaml")  # what ran, loadable as it is
    assert again.train.epochs == 2 and again.space.families == ["hard_split"] and again.name == exp.name
    assert spaces.load_experiment(run / "experiment.json").train.epochs == 2
    assert json.loads((run / "run.json").read_text())["overrides"] == ["train.epochs=2", "space.families=[hard_split]"]


# ---------------------------------------------------------------- check-data --json and its exit codes


def _files_experiment(root: Path) -> Path:
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    return path


def test_check_data_json_on_good_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MTLSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    write_dataset(tmp_path)
    assert cli(["check-data", str(_files_experiment(tmp_path)), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and report["total_problems"] == 0
    assert report["rows"] == {"train": 4, "val": 2}
    assert report["tasks"] == [{"name": "kind", "kind": "classification", "classes": 3},
                               {"name": "size", "kind": "regression", "classes": None}]
    assert report["labels"]["train/kind"]["labelled"] == 3 and report["labels"]["train/kind"]["counts"] == [2, 1, 0]
    assert report["warnings"] == [
        f"2 image(s) are in both train and val (e.g. '{tmp_path / 'img0.png'}'): a leak between splits?",
        "train/kind: class(es) [2] have no labelled train rows.",
    ]
    assert report["loader"] == {"mode": "auto", "resolved": "tensors", "augment": []}


def test_check_data_that_finds_problems_exits_1_with_them_as_json(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MTLSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    write_dataset(tmp_path, "path,kind,size\nimg0.png,5,1.0\nimg1.png,1,abc\n")
    assert cli(["check-data", str(_files_experiment(tmp_path)), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    train = str(tmp_path / "train.csv")
    assert report == {
        "experiment": str(tmp_path / "exp.yaml"), "ok": False, "total_problems": 2,
        "problems": [
            {"path": train, "line": 2, "column": 2, "name": "kind",
             "message": "label 5 is out of range; allowed: 0..2, or -1 or empty for missing."},
            {"path": train, "line": 3, "column": 3, "name": "size",
             "message": "value 'abc' is not a number; allowed: a finite number, or empty or nan for missing."},
        ],
    }
    assert "mtlsearch: error: 2 problems in the data" in captured.err
    # a usage error is 2, a failed check 1
    assert cli(["check-data", str(tmp_path / "missing.yaml")]) == 2


# ---------------------------------------------------------------- export refuses before any work


@pytest.mark.parametrize(
    "make, force, message",
    [
        (lambda p: (p / "bundle").mkdir() or (p / "bundle" / "notes.txt").write_text("mine"), False,
         "exists and is not empty; give --force to replace it, or another --out"),
        (lambda p: (p / "bundle").mkdir() or (p / "bundle" / "notes.txt").write_text("mine"), True,
         "exists and is not a bundle (no card.json); --force replaces only an earlier export"),
        (lambda p: (p / "bundle").write_text("a file"), True, "a file of that name exists"),
        (lambda p: (p / "bundle").mkdir() or (p / "bundle" / "card.json").write_text("{}"), False,
         "exists and is not empty; give --force"),
    ],
)
def test_export_never_overwrites_without_force(tmp_path: Path, make, force: bool, message: str, capsys) -> None:
    make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = ["export", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "bundle"), *(["--force"] if force else [])]
    assert cli(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing touched


def test_export_refuses_an_unknown_format_listing_the_known_ones(tmp_path: Path, capsys) -> None:
    from mtl_models import BUNDLE_EXPORTS

    assert cli(["export", str(tmp_path), "--out", str(tmp_path / "b"), "--no-format", "tflite"]) == 2
    assert f"--no-format tflite: not a serving format; known: {', '.join(BUNDLE_EXPORTS)}." in capsys.readouterr().err


@pytest.mark.parametrize(
    "status, epochs_run, error, retrained, expected",
    [
        ("finished", 3, None, False, []),
        ("pruned", 1, None, False, ["trial t1 was pruned at epoch 1 of 3: the bundle holds a network trained for 1 "
                                    "epoch(s), stopped because it looked worse than the others; its metrics are those "
                                    "of that epoch."]),
        ("errored", 2, "NonFiniteLossError: loss is nan", False,
         ["trial t1 is errored (after 2 of 3 epochs; NonFiniteLossError: loss is nan): the bundle holds its last "
          "checkpoint, not a trained result."]),
        ("pruned", 1, None, True, []),  # retrained for its whole budget: nothing to warn about
    ],
)
def test_export_warns_on_a_trial_that_did_not_finish(status, epochs_run, error, retrained, expected) -> None:
    row = pd.Series({"trial_id": "t1", "status": status, "epochs_run": epochs_run, "epochs": 3, "error": error})
    assert search._cli_runs._export_warnings(row, retrained) == expected


# ---------------------------------------------------------------- Optuna: what the study records


def _searcher(tmp_path: Path, **space) -> tuple[MTLOptunaSearch, spaces.Experiment]:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(space=space), sort_keys=False))
    exp = spaces.load_experiment(path)
    fixed = spaces.fixed_config(exp, {"channels": 1, "height": 36, "width": 36, "mean": [0.5], "std": [0.25]})
    searcher = MTLOptunaSearch(
        space=spaces.define_space(exp, fixed), metric="delta_m", mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0), seed=0, study_name="search",
        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"),
    )
    return searcher, exp


def test_study_trials_carry_trial_id_phase_config_key_and_normalised_weights(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher, _ = _searcher(tmp_path, families=["hard_split"], loss_weights="simplex")
    configs = {tid: searcher.suggest(tid) for tid in ("tune_a", "tune_b", "tune_c")}
    study = searcher.study
    assert study.metric_names == ["delta_m"]
    trials = study.get_trials(deepcopy=False)
    assert [t.user_attrs["trial_id"] for t in trials] == ["tune_a", "tune_b", "tune_c"]
    for trial in trials:
        config = configs[trial.user_attrs["trial_id"]]
        assert trial.user_attrs["phase"] == "search"
        assert trial.user_attrs["config_key"] == config_key(config)
        # the reference: the raw draws u_t are Optuna's parameters; w_t = -log u_t / sum_s -log u_s
        raw = {t: -math.log(trial.params[f"_loss_weight.{t}"]) for t in ("left", "right")}
        for task in ("left", "right"):
            weight = trial.user_attrs[f"loss_weights/{task}"]
            assert weight == pytest.approx(raw[task] / sum(raw.values()), rel=1e-12)
            assert weight == pytest.approx(config["loss_weights"][task], rel=1e-12)  # as the table's column has it
        assert sum(trial.user_attrs[f"loss_weights/{t}"] for t in ("left", "right")) == pytest.approx(1.0, abs=1e-12)
    # the attributes ride along in the Tune config (the study can be rebuilt from the trials with them)
    assert configs["tune_b"]["_optuna"]["user_attrs"]["trial_id"] == "tune_b"
    assert configs["tune_b"]["_optuna"]["user_attrs"]["phase"] == "search"


def test_fixed_weights_are_recorded_too_and_unnormalised_ones_normalised() -> None:
    from search import table_attrs

    attrs = table_attrs("t9", {"family": "hard_split", "loss_weights": {"a": 3.0, "b": 1.0}})
    assert {k: v for k, v in attrs.items() if k.startswith("loss_weights/")} == {"loss_weights/a": 0.75, "loss_weights/b": 0.25}
    assert attrs["trial_id"] == "t9" and attrs["phase"] == "search"
    assert not any(k.startswith("loss_weights/") for k in table_attrs("t9", {"family": "hard_split", "loss_weighting": "dwa"}))


def test_the_deploy_pick_is_recorded_on_the_study(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert record_deploy_pick(tmp_path, {"trial_id": "x"}) is None  # no study yet: nothing written
    assert not (tmp_path / "optuna.db").exists()
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize")
    for number, key in enumerate(["k1", "k2", "k1", "k3"]):
        study.add_trial(optuna.trial.create_trial(value=float(number), user_attrs={"config_key": key}))
    pick = {"trial_id": "confirm_7", "config_key": "k1", "verdict": ["Deploy it."]}
    recorded = record_deploy_pick(tmp_path, pick)
    stored = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'optuna.db'}").user_attrs[DEPLOY_PICK_ATTR]
    assert stored == recorded == {**pick, "study_trials": [0, 2]}  # the study's own trials of the picked config
    assert study.best_trial.number == 3  # which is not the study's best trial: why the pick is recorded


def test_the_search_and_cli_packages_import_lazily() -> None:
    """``mtlsearch --version`` and completion answer without torch: the parser needs neither."""
    import subprocess
    import sys

    code = "import sys, search.cli; search.cli.build_parser(); print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["False", "False"]
