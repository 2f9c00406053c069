"""The phases of a run as Ray Tune experiments: the baselines, the task-affinity stage, the
Optuna-guided search and the confirmation phase; each fitted, or restored and continued on
resume, and checked complete."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from mtl_models import MultiTaskData, config_key
from mtl_models import results_table as rt
from reports import RACE_FILE, single_task_baseline
from spaces import Experiment, affinity_points, define_space, optuna_point

from ._affinity import affinity_in_ray, format_affinity, load_affinity, save_affinity
from ._confirm import confirm_configs
from ..trial._baselines import (
    ENSEMBLE_DIR,
    ENSEMBLE_RESULT,
    baseline_columns,
    baseline_configs,
    compose_ensemble,
    ensemble_size,
)
from ..recovery._cache import baselines_key, restore_baselines, store_baselines
from ..trial._checkpoints import describe_damaged_checkpoints
from ..base._cluster import trial_resources
from ..study._fixed import FixedConfigs
from ..base._log import get_logger
from ..study._optuna import MTLOptunaSearch
from ..results._progress import ProgressPrinter
from ..study._racing import RacingConfigs, race_entries
from ..study._pruning import OptunaPrunerScheduler
from ..recovery._relocate import RelocatableSearchGenerator, clear_driver_staging, reattach
from ..study._samplers import build_pruner, build_sampler
from ..study._study import STUDY_FILE, STUDY_NAME
from ..results._table import (
    collect_results,
    drop_unreadable_errors,
    phase_path,
    storage_root,
    write_results,
)
from ..trial._trainable import OBJECTIVE, train_trial

log = get_logger("search")

# Trials run one after another in the same Ray actors: no new process per trial, which
# would import torch and build its optimiser (torch._dynamo) again, about 2 s of a CPU
# each; `python -m bench.trial_overhead` measures it (its "startup" figure). Every trial
# seeds, sizes its threads and builds its model itself, so none inherits another's state.
REUSE_ACTORS = True


def _run_config(name: str, run_dir: Path, callbacks: list, max_failures: int) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=storage_root(run_dir),
        verbose=0,
        callbacks=callbacks,
        # two per trial: a restarted trial whose newest checkpoint is damaged continues from the one before
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        # a trial whose worker or node dies restarts from its last (per-epoch) checkpoint
        failure_config=tune.FailureConfig(max_failures=max_failures),
    )


def _dirname(trial: Any) -> str:
    return f"{trial.config.get('family', 'trial')}_{trial.trial_id}"


class SearchInterrupted(RuntimeError):
    """A phase ended before its trials did (Ctrl-C); ``mtlsearch resume RUN`` continues it."""


@dataclass
class Baselines:
    """What the search needs of the baselines: ``B_t`` per task, the checkpoint of each
    task's first single-task network (to start cross-stitch columns from), and the runs
    that answer a searched or confirmation trial of the same config and seed without
    training it (:func:`answers_from`)."""

    metrics: dict[str, float]
    checkpoints: dict[str, str]
    answers: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)


_ANSWER_KEYS = (rt.EPOCH, *rt.COST_COLUMNS)


def answers_from(run_dir: Path, phase: str) -> dict[str, dict[int, dict[str, Any]]]:
    """The finished trials of ``phase`` as answers: ``{config_key: {seed: {"trial_id",
    "checkpoint", "epochs": [each epoch's val/loss metrics and cost]}}}``.

    A joint baseline's ``columns`` config has the key of every config that builds the same
    network and trains it the same way (``mtl_models.canonical_config``: a hard split that
    shares nothing, with any static loss weights under Adam/AdamW, at the baselines' lr,
    epochs, ...), so such a (config, seed) is answered from the baseline of that seed.
    """
    path = phase_path(run_dir, phase)
    if not tune.Tuner.can_restore(path):
        return {}
    analysis = ExperimentAnalysis(path)
    frames = analysis.trial_dataframes
    scheme = path.split("://", 1)[0] if "://" in path and not path.startswith("file://") else None
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for trial in analysis.trials:
        df = frames.get(trial.trial_id)
        config = trial.config
        if trial.status != "TERMINATED" or trial.checkpoint is None or df is None or df.empty or "epoch" not in df:
            continue
        df = df.drop_duplicates(subset="epoch", keep="last").sort_values("epoch")
        costs = [c for c in rt.COST_COLUMNS if c in df]
        df[costs] = df[costs].bfill()  # a joint baseline reports its cost with its last epoch: every epoch's
        if int(df["epoch"].iloc[-1]) < int(config["epochs"]):
            continue
        epochs = [
            {k: _plain(v) for k, v in record.items() if rt.is_reported(k) or k in _ANSWER_KEYS}
            for record in df.to_dict("records")
        ]
        checkpoint = trial.checkpoint.path if scheme is None else f"{scheme}://{trial.checkpoint.path}"
        out.setdefault(config_key(config), {})[int(config["seed"])] = {
            "trial_id": trial.trial_id, "checkpoint": checkpoint, "epochs": epochs,
        }
    return out


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fit(run_dir: Path, phase: str, expected: int, trainable: Any, make_tuner: Any, resume: bool) -> None:
    """Fit a phase's Tuner, unless it already ended all its trials. On resume (or with
    cached baselines) restore it: finished trials are kept, not rerun; unfinished ones
    continue from their last checkpoint; the searcher's state comes back."""
    path = phase_path(run_dir, phase)
    if not tune.Tuner.can_restore(path):
        make_tuner().fit()
    elif _ended(run_dir, phase) < expected:
        if not resume:
            raise FileExistsError(f"{path} already holds a {phase} experiment; resume the run instead.")
        for dropped in drop_unreadable_errors(path):
            log.info("Removed %s: cut off when the driver died (the trial's error.txt keeps its error).", dropped)
        for line in describe_damaged_checkpoints(path):
            log.info(line)
        clear_driver_staging(phase)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
        reattach(tuner, storage_root(run_dir), run_dir / STUDY_FILE)  # where the run directory is now
        tuner.fit()


def _ended(run_dir: Path, phase: str) -> int:
    results, _ = collect_results(run_dir)
    return len(rt.phase_rows(results, phase, rt.ENDED))


def _check_complete(run_dir: Path, phase: str, expected: int) -> pd.DataFrame:
    results, _ = collect_results(run_dir)
    rows = rt.phase_rows(results, phase)
    unfinished = len(rt.phase_rows(rows, phase, rt.ACTIVE))
    if unfinished or len(rows) < expected:
        write_results(run_dir)
        raise SearchInterrupted(
            f"The {phase} phase stopped with {len(rows) - unfinished} of {expected} trials ended. "
            f"Continue with: mtlsearch resume {run_dir}"
        )
    return results


def baselines_search_alg(configs: list[dict[str, Any]]) -> RelocatableSearchGenerator:
    """The baselines' configs for Tune, all of them queued at once.

    Every baseline is known up front and every one trains, so nothing is gained by holding
    any back. Without a ``ConcurrencyLimiter`` Tune queues one trial at a time for a searcher
    of its own (``TUNE_MAX_PENDING_TRIALS_PG`` "auto"): the second trial's actor would start
    only once the first one's had started (imported torch), and a cluster's autoscaler would
    see one request at a time. A limit of all the configs lets Tune queue them all.
    """
    return RelocatableSearchGenerator(ConcurrencyLimiter(FixedConfigs(configs), max_concurrent=max(len(configs), 1)))


def run_baselines(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    resume: bool = False,
    cache_dir: Path | None = None,
) -> Baselines:
    """Train the single-task baseline trials and compose the ensemble, or take them from
    ``cache_dir`` when a run with the same data, budget and seeds trained them before.

    Joint (``baselines.columns``) or separate as :func:`baseline_columns` decides, unless
    the run already holds baselines of the other kind (a run, or a cache entry, made
    before: separate single-task trials are the same networks, so they are used)."""
    columns, why = baseline_columns(exp, fixed)
    if why:
        log.info("Baselines: one trial per task and seed, since %s.", why)
    cached = (Path(phase_path(run_dir, "baselines")), run_dir / ENSEMBLE_DIR)
    existing = _existing_columns(run_dir)  # a run resumed keeps the kind it has
    use_cache = cache_dir is not None and "://" not in storage_root(run_dir)
    keys: dict[str, str] = {}
    if use_cache:
        # a cache entry of separate baselines (made before joint ones existed) answers a joint run too
        for kind in [existing] if existing else [columns] + (["separate"] if columns == "joint" else []):
            keys[kind] = baselines_key(baseline_configs(exp, fixed, kind), data)
            if restore_baselines(cache_dir, keys[kind], *cached):
                log.info("Baselines: reusing the ones cached in %s", cache_dir / "baselines" / keys[kind])
                existing = kind
                break
    columns = existing or columns
    configs = baseline_configs(exp, fixed, columns)
    key = (keys.get(columns) or baselines_key(configs, data)) if use_cache else None
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data, baseline=None, cpus=exp.search.resources.cpu), trial_resources(exp)
    )

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=baselines_search_alg(configs), num_samples=len(configs),
                trial_dirname_creator=_dirname,
                reuse_actors=REUSE_ACTORS,
            ),
            run_config=_run_config(
                "baselines", run_dir, [ProgressPrinter("baselines", len(configs), None)], exp.search.max_failures
            ),
        )

    rows = len(configs) * (len(exp.tasks) if columns == "joint" else 1)  # a joint trial: a row per task
    _fit(run_dir, "baselines", rows, trainable, make_tuner, resume or key is not None)
    results = _check_complete(run_dir, "baselines", rows)
    tasks = exp.task_specs()
    baseline = single_task_baseline(results, tasks)  # B_t: the mean over every finished seed
    missing = [t.name for t in tasks if t.name not in baseline]
    if missing:
        errors = results.loc[results[rt.STATUS] == rt.ERRORED, "error"].dropna().unique().tolist()
        raise RuntimeError(
            f"The single-task baseline failed for task(s) {missing}, so Delta_m cannot be computed. "
            f"Errors: {errors or 'none recorded'}; see {run_dir / 'baselines'}."
        )
    finished = rt.single_task_rows(results)  # in seed order
    members = {t.name: finished.loc[finished["task"] == t.name, "checkpoint"].tolist() for t in tasks}
    size = min([ensemble_size(exp), *map(len, members.values())])
    if size > 1 and not (run_dir / ENSEMBLE_DIR / ENSEMBLE_RESULT).is_file():
        compose_ensemble(fixed, members, data, run_dir, size, trial_resources(exp))
    if key is not None:
        store_baselines(cache_dir, key, *cached)
    answers = answers_from(run_dir, "baselines") if columns == "joint" else {}
    return Baselines(baseline, {task: paths[0] for task, paths in members.items()}, answers)


def _existing_columns(run_dir: Path) -> str | None:
    """``joint`` or ``separate``: the kind of baseline trials the run holds already (None: none yet)."""
    path = phase_path(run_dir, "baselines")
    if not tune.Tuner.can_restore(path):
        return None
    families = {t.config.get("family") for t in ExperimentAnalysis(path).trials}
    return "joint" if "columns" in families else "separate" if "single_task" in families else None


def run_search(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    baselines: Baselines,
    resume: bool = False,
    affinity_trees: list[dict[str, Any]] | None = None,
) -> None:
    """The Optuna-sampled, Optuna-pruned search over the experiment's space; with
    ``affinity_trees`` (the affinity stage's proposals) those trees are tried first."""
    trainable = _trial_trainable(exp, data, baselines)
    points = [optuna_point(p, exp) for p in exp.search.points_to_evaluate]
    points += affinity_points(exp, len(affinity_trees or []))  # equal loss weights: each tree's fair first try

    def make_tuner() -> tune.Tuner:
        pruner = build_pruner(exp.search.pruner, exp.train.epochs)
        multi = exp.search.multi_objective  # Delta_m and costs: a Pareto front, no pruning
        searcher = MTLOptunaSearch(
            space=define_space(exp, fixed, affinity_trees),
            metric=list(exp.search.objectives) if multi else OBJECTIVE,
            mode=exp.search.directions if multi else "max",
            sampler=build_sampler(exp.search.sampler, exp.seed),
            seed=exp.search.sampler.resolved_seed(exp.seed),
            pruner=pruner,
            study_name=STUDY_NAME,
            storage=optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}"),
            points_to_evaluate=points or None,
        )
        scheduler = FIFOScheduler() if multi else OptunaPrunerScheduler(pruner, metric=OBJECTIVE, mode="max", searcher=searcher)
        limited = ConcurrencyLimiter(searcher, max_concurrent=exp.search.max_concurrent) if exp.search.max_concurrent else searcher
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=RelocatableSearchGenerator(limited),
                scheduler=scheduler,
                num_samples=exp.search.num_trials,
                trial_dirname_creator=_dirname,
                reuse_actors=REUSE_ACTORS,
            ),
            run_config=_run_config(
                "search", run_dir, [ProgressPrinter("search", exp.search.num_trials, OBJECTIVE)], exp.search.max_failures
            ),
        )

    _fit(run_dir, "search", exp.search.num_trials, trainable, make_tuner, resume)
    _check_complete(run_dir, "search", exp.search.num_trials)
    _fail_orphans(run_dir)


def run_confirm(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    baselines: Baselines,
    resume: bool = False,
) -> None:
    """Train the shortlist again with fresh seeds, as Ray Tune trials without pruning, raced:
    seed by seed, a config worse than the leader beyond the noise stops (``search.study._racing``).

    The configs are derived from the finished search alone (:func:`confirm_configs`), so a
    resumed run asks for the same ones; finished confirmation trials are kept, and the
    race's state (values seen, stops) comes back with Tune's snapshot of its searcher.
    """
    results, _ = collect_results(run_dir)
    configs = confirm_configs(exp, fixed, results)
    if not configs:
        return
    trainable = _trial_trainable(exp, data, baselines)
    entries = race_entries(configs)
    race_file = str(run_dir / RACE_FILE)

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=RelocatableSearchGenerator(RacingConfigs(entries, exp.confirm.race_alpha, race_file)),
                num_samples=len(configs), trial_dirname_creator=_dirname, reuse_actors=REUSE_ACTORS,
            ),
            run_config=_run_config(
                "confirm", run_dir, [ProgressPrinter("confirm", len(configs), OBJECTIVE)], exp.search.max_failures
            ),
        )

    log.info("Confirming %d configs with up to %d fresh seeds each (at most %d trials, no pruning; raced seed by seed)",
             len(entries), exp.confirm.seeds, len(configs))
    _fit(run_dir, "confirm", _race_trials(run_dir, len(configs)), trainable, make_tuner, resume)
    _check_complete(run_dir, "confirm", _race_trials(run_dir, len(configs)))


def _race_trials(run_dir: Path, most: int) -> int:
    """The confirmation trials the race asked for: all it did once it has ended (``RACE_FILE``),
    else ``most`` (every config, every seed: a race not ended is restored and continued)."""
    path = run_dir / RACE_FILE
    race = json.loads(path.read_text()) if path.is_file() else {}
    return int(race["trials"]) if race.get("finished") else most


def _trial_trainable(exp: Experiment, data: MultiTaskData, baselines: Baselines) -> Any:
    """The trainable of searched and confirmation trials: Delta_m against the baseline, and
    cross-stitch columns from the single-task checkpoints where asked."""
    return tune.with_resources(
        tune.with_parameters(
            train_trial,
            data=data,
            baseline=baselines.metrics,
            cpus=exp.search.resources.cpu,
            single_task_checkpoints=baselines.checkpoints,
            answers=baselines.answers,
        ),
        trial_resources(exp),
    )


def run_affinity(exp: Experiment, run_dir: Path, data: MultiTaskData, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """The task-affinity stage: measured once (``affinity.json``; a resumed run reads it back),
    its proposed trees returned for the search."""
    result = load_affinity(run_dir)
    if result is None:
        log.info("Task affinity: %d epochs of one fully shared network ...", exp.affinity.epochs)
        result = affinity_in_ray(fixed, data, exp.affinity.epochs, exp.affinity.every, trial_resources(exp),
                                 exp.stage_names(), exp.affinity.max_groups)
        save_affinity(run_dir, result)
        log.info(format_affinity(result))
    return result["trees"]


def _fail_orphans(run_dir: Path) -> None:
    """When every search trial has ended, Optuna trials still RUNNING are orphans a killed
    driver asked for and the resumed search did not need: tell them FAIL."""
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{run_dir / STUDY_FILE}")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
