"""A run's Optuna study (``RUN/optuna.db``): checked before a resume, rebuilt from the trials on request.

The study is the sampler's memory: TPE proposes from it, the pruner judges by it, and
``mtlsearch resume`` continues it. A resume therefore first makes sure it can be used
(:func:`check_study`), before anything in the run directory changes:

- SQLite left mid-transaction (a hot ``optuna.db-journal`` after a crash) is fine:
  SQLite rolls the unfinished transaction back when the file is next opened, so the
  study holds what was committed; the check does that (first on a scratch copy, so a
  file the rollback cannot save is refused untouched) and says so;
- a study that is locked by another process, unreadable (not a database, truncated,
  malformed), missing, or that knows fewer trials than the search has run stops the
  resume with :class:`StudyError`, which says what happened and offers
  ``mtlsearch resume RUN --rebuild-study``.

:func:`rebuild_study` writes a new study from the search's Tune trials alone (the same
trials the results table is built from). Each trial's config carries its Optuna trial
(``_optuna``: number, parameters including the raw draws, user and system attributes;
see ``search.study._optuna``); the distributions come from replaying the experiment's space
(:func:`spaces.define_space`) on those parameters; each trial's state and value come
from its last result through :func:`search.trial_outcome`, the same function that told
the original study, and its intermediate values from its per-epoch results. Trials
keep their numbers (a number no trial holds becomes a FAIL placeholder), so the
sampler, seeded per trial number, continues with the same history. The damaged file
is kept beside it as ``optuna.db.damaged-<time>``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray import tune
from ray.tune import ExperimentAnalysis

import mtl_models as mm
from spaces import define_space, load_experiment, optuna_point

from ._optuna import OPTUNA_KEY, TUNE_TRIAL_ATTR, set_metric_names, table_attrs, trial_outcome
from ..results._table import phase_path
from ..trial._trainable import OBJECTIVE

STUDY_FILE = "optuna.db"
STUDY_NAME = "search"
LOCK_WAIT_S = 2.0
_JOURNALS = ("-journal", "-wal", "-shm")


class StudyError(RuntimeError):
    """The run's Optuna study cannot be used as it is; the message says why and what to do."""


def _rebuild_hint(run_dir: Path) -> str:
    return (f"Nothing was changed. The study can be rebuilt from the search's trials (their parameters, "
            f"results and how each ended): mtlsearch resume {run_dir} --rebuild-study "
            f"(the present {STUDY_FILE} is kept beside it as {STUDY_FILE}.damaged-<time>).")


def _searched_trials(run_dir: Path) -> ExperimentAnalysis | None:
    path = phase_path(run_dir, "search")
    return ExperimentAnalysis(path) if tune.Tuner.can_restore(path) else None


def check_study(run_dir: Path) -> list[str]:
    """Make sure a resume can continue ``run_dir``'s study; returns notes to print.

    Raises :class:`StudyError` (nothing changed) when the study is locked by another
    process, unreadable, missing, or knows fewer trials than the search has run. A hot
    journal is rolled back in a scratch copy first, so a study that is damaged beyond
    it is refused untouched; only a study it restores is rolled back in place.
    """
    path = run_dir / STUDY_FILE
    analysis = _searched_trials(run_dir)
    ran = len(analysis.trials) if analysis is not None else 0
    if not path.is_file():
        if ran:
            raise StudyError(f"{path} is missing, but the search has run {ran} trial(s). " + _rebuild_hint(run_dir))
        return []
    journal = path.with_name(path.name + "-journal")
    if not (journal.is_file() and journal.stat().st_size > 0):
        _inspect(run_dir, path, ran)
        return []
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copy2(path, Path(scratch) / path.name)
        shutil.copy2(journal, Path(scratch) / journal.name)
        _inspect(run_dir, Path(scratch) / path.name, ran)  # what the rollback would leave
    _inspect(run_dir, path, ran)
    return [f"{path} was left in the middle of a transaction ({journal.name}); SQLite rolled it back, "
            f"so the study holds what was committed."]


def _inspect(run_dir: Path, db: Path, ran: int) -> None:
    """Open ``db`` as a resume will (a hot journal is rolled back) and check it; a
    :class:`StudyError` names the run's ``optuna.db``."""
    path = run_dir / STUDY_FILE
    try:
        con = sqlite3.connect(db, timeout=LOCK_WAIT_S, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")  # the write lock a resume needs
            con.execute("ROLLBACK")
            problems = [row[0] for row in con.execute("PRAGMA quick_check")]
            study = con.execute("SELECT study_id FROM studies WHERE study_name = ?", (STUDY_NAME,)).fetchone()
            known = con.execute("SELECT COUNT(*) FROM trials WHERE study_id = ?", study).fetchone()[0] if study else 0
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StudyError(
                f"{path} is locked by another process (SQLite: {exc}, after waiting {LOCK_WAIT_S:g} s). Another "
                f"driver may still be running on this run, here or on another node (on this host "
                f"`fuser -v {path}` lists the processes that have it open). Nothing was changed. Stop that process "
                f"and resume again; if none is left (a lock a dead node left on a network filesystem), "
                f"mtlsearch resume {run_dir} --rebuild-study writes a new {STUDY_FILE} from the search's trials."
            ) from None
        raise StudyError(f"{path} is not an Optuna study ({exc}). " + _rebuild_hint(run_dir)) from None
    except sqlite3.DatabaseError as exc:
        raise StudyError(f"{path} is damaged (SQLite: {exc}). " + _rebuild_hint(run_dir)) from None
    if problems != ["ok"]:
        raise StudyError(f"{path} is damaged (SQLite's quick_check: {'; '.join(problems[:3])}). "
                         + _rebuild_hint(run_dir))
    if ran and (study is None or known < ran):
        what = f"holds no study {STUDY_NAME!r}" if study is None else f"holds {known} trial(s)"
        raise StudyError(f"{path} {what}, but the search has run {ran}: it is not this run's study as it "
                         f"was (emptied, or an older copy). " + _rebuild_hint(run_dir))


def rebuild_study(run_dir: Path) -> str:
    """Write a new ``optuna.db`` for ``run_dir`` from its search trials (see module doc);
    the present file, if any, is moved aside. Returns a line saying what was done."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exp = load_experiment(run_dir / "experiment.json")
    fixed = json.loads((run_dir / "fixed_config.json").read_text())
    space = define_space(exp, fixed)
    multi = exp.search.multi_objective
    metric: str | list[str] = list(exp.search.objectives) if multi else OBJECTIVE
    directions = ["maximize" if d == "max" else "minimize" for d in (exp.search.directions if multi else ["max"])]
    analysis = _searched_trials(run_dir)
    trials = _frozen_trials(analysis, space, metric) if analysis is not None else []
    path = run_dir / STUDY_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{STUDY_FILE}.", suffix=".rebuild", dir=run_dir)
    os.close(fd)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, directions=directions)
        set_metric_names(study, metric if isinstance(metric, list) else [metric])
        study.add_trials(trials)
        storage.engine.dispose()
        aside = None
        if path.exists():
            aside = path.with_name(f"{STUDY_FILE}.damaged-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
            for suffix in ("", *_JOURNALS):  # a stale journal would be replayed into the new file
                if path.with_name(path.name + suffix).exists():
                    os.replace(path.with_name(path.name + suffix), aside.with_name(aside.name + suffix))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    states = pd.Series([t.state.name for t in trials if TUNE_TRIAL_ATTR in t.user_attrs]).value_counts().to_dict()
    kept = f"; the old file is {aside}" if aside else ""
    return (f"Rebuilt {path} from {sum(states.values())} search trial(s) "
            f"({', '.join(f'{n} {s}' for s, n in sorted(states.items())) or 'none yet'}){kept}.")


def _frozen_trials(analysis: ExperimentAnalysis, space: Any, metric: str | list[str]) -> list[optuna.trial.FrozenTrial]:
    frames = analysis.trial_dataframes
    records = []
    for position, trial in enumerate(sorted(analysis.trials, key=_tune_order)):
        record = trial.config.get(OPTUNA_KEY) or {}
        number = int(record.get("number", position))
        params = record.get("params") or _params_from_config(trial.config, space.num_stages)
        replay = _Replay(trial.trial_id, number, params, trial.config)
        space(replay)
        rows = frames.get(trial.trial_id)
        rows = pd.DataFrame() if rows is None else rows
        state, value = _state(trial.status, rows, metric)
        values = None if value is None else (value if isinstance(value, list) else [value])
        frozen = optuna.trial.create_trial(
            state=state,
            values=values,
            params={name: params[name] for name in replay.distributions},
            distributions=replay.distributions,
            user_attrs={**table_attrs(trial.trial_id, {k: v for k, v in trial.config.items() if not k.startswith("_")}),
                        **(record.get("user_attrs") or {}), TUNE_TRIAL_ATTR: trial.trial_id},
            system_attrs=record.get("system_attrs") or {},
            intermediate_values=_intermediate(rows, metric),
        )
        records.append((number, frozen))
    out, numbers = [], dict(records)
    if len(numbers) != len(records):
        raise StudyError("Two search trials record the same Optuna trial number; the study cannot be rebuilt "
                         "with its numbers.")
    for number in range(max(numbers, default=-1) + 1):
        out.append(numbers.get(number) or optuna.trial.create_trial(state=TrialState.FAIL,
                                                                     user_attrs={"rebuilt_placeholder": True}))
    return out


def _tune_order(trial: Any) -> tuple[int, str]:
    """The order Tune created its trials in (its experiment tags start with a counter)."""
    head = str(trial.experiment_tag).split("_", 1)[0]
    return (int(head) if head.isdigit() else 0, trial.trial_id)


def _state(status: str, rows: pd.DataFrame, metric: str | list[str]) -> tuple[TrialState, Any]:
    """How the original searcher told the study this trial ended (RUNNING while it has not)."""
    if status == "ERROR":
        return TrialState.FAIL, None
    if status != "TERMINATED":
        return TrialState.RUNNING, None
    last = {k: (None if _missing(v) else v) for k, v in rows.iloc[-1].items()} if len(rows) else {}
    return trial_outcome(last, False, metric)


def _intermediate(rows: pd.DataFrame, metric: str | list[str]) -> dict[int, float]:
    """Per-epoch values as the searcher reported them: step = epoch - 1, the first report of
    a step (a restarted trial repeats epochs), finite values only, none with several objectives."""
    if isinstance(metric, list) or metric not in rows or "epoch" not in rows:
        return {}
    out: dict[int, float] = {}
    for epoch, value in zip(rows["epoch"], rows[metric]):
        if not _missing(value) and math.isfinite(float(value)):
            out.setdefault(int(epoch) - 1, float(value))
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _params_from_config(config: dict[str, Any], num_stages: int) -> dict[str, Any]:
    """A trial's Optuna parameters from its config, for trials recorded without ``_optuna``
    (runs made before it): the loss weights' raw draws become ``exp(-w)``, one of the draws
    that give the same weights (``spaces.optuna_point``)."""
    params = optuna_point({k: v for k, v in config.items() if not k.startswith("_")})
    for task, group in (config.get("task_groups") or {}).items():
        params[f"task_group.{task}"] = int(group)
    for group, split in (config.get("group_split_points") or {}).items():
        params[f"group_split_point.{group}"] = split
    family = config.get("family")
    for key, p in (mm.family_parameters(family).items() if family in mm.available_families() else ()):
        if p.subset is not None:  # stitch.<s>, attend.<s>: the booleans that chose the subset
            params.update(p.subset.optuna_params(config.get(key), num_stages))
    return params


class _Replay:
    """Stands in for an ``optuna.Trial`` while the space's define-by-run function runs:
    answers each question from a trial's recorded parameters, noting the distribution asked."""

    def __init__(self, trial_id: str, number: int, params: dict[str, Any], config: dict[str, Any]) -> None:
        self.trial_id, self.number, self.params, self.config = trial_id, number, params, config
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float:
        return self._answer(name, FloatDistribution(low, high, step=step, log=log))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._answer(name, IntDistribution(low, high, step=step, log=log))

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._answer(name, CategoricalDistribution(choices))

    def _answer(self, name: str, distribution: BaseDistribution) -> Any:
        if name not in self.params:
            raise StudyError(f"Search trial {self.trial_id} records no value for {name!r}, which the experiment's "
                             f"space asks for (is experiment.json the run's own?); the study cannot be rebuilt.")
        value = self.params[name]
        if not distribution._contains(distribution.to_internal_repr(value)):
            raise StudyError(f"Search trial {self.trial_id}: {name}={value!r} is outside the space's {distribution}; "
                             f"the study cannot be rebuilt.")
        self.distributions[name] = distribution
        return value


DEPLOY_PICK_ATTR = "deploy_pick"


def record_deploy_pick(run_dir: Path, pick: dict[str, Any]) -> dict[str, Any] | None:
    """Record the run's deploy pick on its study, as the study user attribute ``deploy_pick``.

    The study's ``best_trial`` is the searched run with the best single value; the pick is the
    config judged best over its seeds with its noise (``reports.deploy_pick``), often a
    confirmation run the study never saw. ``pick`` (JSON-able): its ``trial_id``,
    ``config_key``, the split and figures of the verdict, ``study_trials`` (the numbers of
    the study's trials of that config, added here) and the verdict in words. Returns what was
    recorded, or None when the run has no study (no search phase yet) and nothing was written.
    """
    path = run_dir / STUDY_FILE
    if not path.is_file():
        return None
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:  # the file holds no study "search"
        storage.engine.dispose()
        return None
    key = pick.get("config_key")
    numbers = [t.number for t in study.get_trials(deepcopy=False) if key is not None and t.user_attrs.get("config_key") == key]
    record = {**pick, "study_trials": numbers}
    study.set_user_attr(DEPLOY_PICK_ATTR, record)
    storage.engine.dispose()
    return record
