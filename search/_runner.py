"""Run an experiment: baselines, then the Optuna-guided search, as Ray Tune trials."""
from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from mtl_models import MultiTaskData, atomic_path, atomic_write_json, atomic_write_text, config_key, is_plugin_path
from mtl_models.data import format_data_report
from reports import confirm_shortlist, searched, single_task_baseline
from spaces import Experiment, define_space, fixed_config, load_experiment, optuna_point

from ._affinity import affinity_in_ray, format_affinity, load_affinity, save_affinity
from ._baselines import (
    ENSEMBLE_DIR,
    ENSEMBLE_RESULT,
    baseline_configs,
    compose_ensemble,
    ensemble_size,
)
from ._cache import baselines_key, restore_baselines, store_baselines
from ._fixed import FixedConfigs
from ._optuna import MTLOptunaSearch
from ._progress import ProgressPrinter
from ._pruning import OptunaPrunerScheduler
from ._checkpoints import describe_damaged_checkpoints
from ._lock import run_lock
from ._relocate import RelocatableSearchGenerator, clear_driver_staging, reattach
from ._snapshots import check_snapshots
from ._study import STUDY_FILE, STUDY_NAME, check_study
from ._study import rebuild_study as write_rebuilt_study
from ._table import collect_results, drop_unreadable_errors, phase_path, storage_root, write_results
from ._trainable import OBJECTIVE, train_trial

FIXED_CONFIG_FILE = "fixed_config.json"
# Trials run one after another in the same Ray actors: no new process per trial, which
# would import torch and build its optimiser (torch._dynamo) again, about 2 s of a CPU
# each; `python -m bench.trial_overhead` measures it (its "startup" figure). Every trial
# seeds, sizes its threads and builds its model itself, so none inherits another's state.
REUSE_ACTORS = True


def init_ray(address: str | None = None, num_cpus: int | None = None, plugins: Sequence[str] = ()) -> None:
    """Start a local Ray (default) or join the cluster at ``address`` (or ``RAY_ADDRESS``).

    Joining a cluster ships this package's code and the experiment's ``plugins`` (those
    not installed as packages) to it (``runtime_env.py_modules``); the cluster needs the
    dependencies installed. A local Ray's trials import plugin paths themselves. When
    Ray is already running, it is used as it is.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        import mtl_models
        import reports
        import search
        import spaces

        kwargs["runtime_env"] = {"py_modules": [mtl_models, spaces, search, reports, *_shipped_plugins(plugins)]}
        ray.init(address=address, **kwargs)
    else:  # "local": always a fresh local Ray, never a cluster someone `ray start`-ed on this machine
        ray.init(address="local", num_cpus=num_cpus, **kwargs)


def _shipped_plugins(plugins: Sequence[str]) -> list[Any]:
    """What of the plugins a cluster gets from the driver: plugin files and folders, and
    the top-level package of plugin modules that are not installed (site-packages)."""
    shipped: list[Any] = []
    for entry in plugins:
        if is_plugin_path(entry):
            shipped.append(entry)
            continue
        module = importlib.import_module(entry.split(".")[0])
        where = getattr(module, "__file__", None) or ""
        if "site-packages" not in where and "dist-packages" not in where:
            shipped.append(module)
    return shipped


def check_resources(exp: Experiment, address: str | None = None) -> None:
    """Refuse a trial size no node of the Ray cluster can hold: its trials would wait forever.

    On a local Ray that is an error (``ValueError``). On a cluster joined with
    ``address`` (or ``RAY_ADDRESS``) an autoscaler may still add such a node, so it
    is a warning.
    """
    need = {"CPU": exp.search.resources.cpu, "GPU": exp.search.resources.gpu}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v) for node in nodes):
        return
    have = "; ".join(f"cpu {n.get('CPU', 0):g}, gpu {n.get('GPU', 0):g}" for n in nodes) or "none"
    message = (
        f"search.resources: each trial asks for cpu {need['CPU']:g}, gpu {need['GPU']:g}, but no node of this "
        f"Ray cluster has that much (nodes: {have}); its trials would wait forever."
    )
    if address or os.environ.get("RAY_ADDRESS"):
        print(f"Warning: {message} Waiting for the autoscaler to add such a node.", flush=True)
        return
    raise ValueError(f"{message} Lower search.resources (or start Ray with more: --num-cpus).")


def trial_base_config(exp: Experiment, data: MultiTaskData) -> dict[str, Any]:
    """The config every trial and baseline shares: the space's fixed keys plus how data is fed.

    ``loader`` (mode, workers, memory budget, augmentations, the trial's GPU share)
    is read by the trainer's data feeds; it changes speed, not results, except for
    the augmentations, which the config records so a row can be rebuilt exactly.
    """
    loader = {**exp.data.loader_config(exp.search.resources.cpu), "gpu_share": exp.search.resources.gpu}
    return {**fixed_config(exp, data.input_spec()), "loader": loader}


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


def _resources(exp: Experiment) -> dict[str, float]:
    return {"cpu": exp.search.resources.cpu, "gpu": exp.search.resources.gpu}


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame
    baseline: dict[str, float]


class SearchInterrupted(RuntimeError):
    """A phase ended before its trials did (Ctrl-C); ``mtlsearch resume RUN`` continues it."""


@dataclass
class Baselines:
    """What the search needs of the baselines: ``B_t`` per task, and the checkpoint of
    each task's first single-task network (to start cross-stitch columns from)."""

    metrics: dict[str, float]
    checkpoints: dict[str, str]


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
            print(f"Removed {dropped}: cut off when the driver died (the trial's error.txt keeps its error).", flush=True)
        for line in describe_damaged_checkpoints(path):
            print(line, flush=True)
        clear_driver_staging(phase)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
        reattach(tuner, storage_root(run_dir), run_dir / STUDY_FILE)  # where the run directory is now
        tuner.fit()


def _ended(run_dir: Path, phase: str) -> int:
    results, _ = collect_results(run_dir)
    rows = results[results["phase"] == phase]
    return int((~rows["status"].isin(["running", "pending"])).sum())


def _check_complete(run_dir: Path, phase: str, expected: int) -> pd.DataFrame:
    results, _ = collect_results(run_dir)
    rows = results[results["phase"] == phase]
    unfinished = int(rows["status"].isin(["running", "pending"]).sum())
    if unfinished or len(rows) < expected:
        write_results(run_dir)
        raise SearchInterrupted(
            f"The {phase} phase stopped with {len(rows) - unfinished} of {expected} trials ended. "
            f"Continue with: mtlsearch resume {run_dir}"
        )
    return results


def _write_run_files(
    exp: Experiment, run_dir: Path, data: MultiTaskData, fixed: dict[str, Any], storage: str | None
) -> None:
    if exp.source_path is not None:
        with atomic_path(run_dir / "experiment.yaml") as tmp:
            shutil.copyfile(exp.source_path, tmp)
    atomic_write_text(run_dir / "experiment.json", exp.model_dump_json(indent=2))
    atomic_write_json(run_dir / FIXED_CONFIG_FILE, fixed)
    atomic_write_json(
        run_dir / "run.json",
        {
            "started": _now(),
            "command": sys.argv,
            "host": platform.node(),
            "python": platform.python_version(),
            "versions": _versions(),
            "data": data.description,
            "labels": data.label_summary(),
            "storage": storage,
        },
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import plotly
    import torch

    return {"torch": torch.__version__, "ray": ray.__version__, "optuna": optuna.__version__, "plotly": plotly.__version__}


def run_baselines(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    resume: bool = False,
    cache_dir: Path | None = None,
) -> Baselines:
    """Train the single-task baseline trials and compose the ensemble, or take them from
    ``cache_dir`` when a run with the same data, budget and seeds trained them before."""
    configs = baseline_configs(exp, fixed)
    key = baselines_key(configs, data) if cache_dir is not None and "://" not in storage_root(run_dir) else None
    cached = (Path(phase_path(run_dir, "baselines")), run_dir / ENSEMBLE_DIR)
    if key is not None and restore_baselines(cache_dir, key, *cached):
        print(f"Baselines: reusing the ones cached in {cache_dir / 'baselines' / key}", flush=True)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data, baseline=None, cpus=exp.search.resources.cpu), _resources(exp)
    )

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=RelocatableSearchGenerator(FixedConfigs(configs)), num_samples=len(configs),
                trial_dirname_creator=_dirname,
                reuse_actors=REUSE_ACTORS,
            ),
            run_config=_run_config(
                "baselines", run_dir, [ProgressPrinter("baselines", len(configs), None)], exp.search.max_failures
            ),
        )

    _fit(run_dir, "baselines", len(configs), trainable, make_tuner, resume or key is not None)
    results = _check_complete(run_dir, "baselines", len(configs))
    tasks = exp.task_specs()
    baseline = single_task_baseline(results, tasks)  # B_t: the mean over every finished seed
    missing = [t.name for t in tasks if t.name not in baseline]
    if missing:
        errors = results.loc[results["status"] == "errored", "error"].dropna().unique().tolist()
        raise RuntimeError(
            f"The single-task baseline failed for task(s) {missing}, so Delta_m cannot be computed. "
            f"Errors: {errors or 'none recorded'}; see {run_dir / 'baselines'}."
        )
    finished = results[(results["family"] == "single_task") & (results["status"] == "finished")]
    finished = finished.sort_values("ensemble_member")
    members = {t.name: finished.loc[finished["task"] == t.name, "checkpoint"].tolist() for t in tasks}
    size = min([ensemble_size(exp), *map(len, members.values())])
    if size > 1 and not (run_dir / ENSEMBLE_DIR / ENSEMBLE_RESULT).is_file():
        compose_ensemble(fixed, members, data, run_dir, size, _resources(exp))
    if key is not None:
        store_baselines(cache_dir, key, *cached)
    return Baselines(baseline, {task: paths[0] for task, paths in members.items()})


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
    points += [{"family": "hard_split", "tree": "affinity", "affinity_tree": i} for i in range(len(affinity_trees or []))]

    def make_tuner() -> tune.Tuner:
        pruner = exp.search.pruner.build(exp.train.epochs)
        multi = exp.search.multi_objective  # Delta_m and costs: a Pareto front, no pruning
        searcher = MTLOptunaSearch(
            space=define_space(exp, fixed, affinity_trees),
            metric=list(exp.search.objectives) if multi else OBJECTIVE,
            mode=exp.search.directions if multi else "max",
            sampler=exp.search.sampler.build(exp.seed),
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


def confirm_configs(exp: Experiment, fixed: dict[str, Any], results: pd.DataFrame) -> list[dict[str, Any]]:
    """The confirmation phase's trials: each shortlisted config (``confirm_shortlist``) and,
    with ``confirm.default``, the no-search default (everything shared: a hard split after
    the last stage, equal static loss weights, joint optimisation), each with
    ``confirm.seeds`` seeds that config was not trained with in the search (the first
    after the experiment's seed). A default identical to a shortlisted config is that
    config's runs, marked ``reference: default``: no (config, seed) is trained twice."""
    confirm = exp.confirm
    if not confirm.enabled:
        return []
    chosen = {
        row.name: json.loads(row["config"])
        for row in confirm_shortlist(results, list(exp.search.objectives), confirm.top_k, confirm.max_configs)
    }
    if confirm.default:
        names = [t.name for t in exp.tasks]
        default = {
            **fixed, "family": "hard_split", "tree": "single", "split_point": exp.num_stages(),
            "loss_weighting": "static", "loss_weights": {t: 1.0 / len(names) for t in names},
            "optimization": "joint", "class_weighting": "none",
        }
        key = config_key(default)
        chosen[key] = {**chosen.get(key, default), "reference": "default"}
    search = searched(results)
    configs = []
    for key, config in chosen.items():
        used = set(search.loc[search["config_key"] == key, "seed"].dropna().astype(int))
        configs += [{**config, "seed": seed} for seed in _fresh_seeds(exp.seed, confirm.seeds, used)]
    return configs


def _fresh_seeds(first: int, count: int, used: set[int]) -> list[int]:
    seeds, seed = [], first + 1
    while len(seeds) < count:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds


def run_confirm(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    baselines: Baselines,
    resume: bool = False,
) -> None:
    """Train the shortlist again with fresh seeds, as Ray Tune trials without pruning.

    The configs are derived from the finished search alone (:func:`confirm_configs`), so a
    resumed run asks for the same ones; finished confirmation trials are kept.
    """
    results, _ = collect_results(run_dir)
    configs = confirm_configs(exp, fixed, results)
    if not configs:
        return
    trainable = _trial_trainable(exp, data, baselines)

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=RelocatableSearchGenerator(FixedConfigs(configs)), num_samples=len(configs),
                trial_dirname_creator=_dirname, reuse_actors=REUSE_ACTORS,
            ),
            run_config=_run_config(
                "confirm", run_dir, [ProgressPrinter("confirm", len(configs), OBJECTIVE)], exp.search.max_failures
            ),
        )

    print(
        f"Confirming {len(configs) // exp.confirm.seeds} configs with {exp.confirm.seeds} fresh seeds each "
        f"({len(configs)} trials, no pruning)",
        flush=True,
    )
    _fit(run_dir, "confirm", len(configs), trainable, make_tuner, resume)
    _check_complete(run_dir, "confirm", len(configs))


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
        ),
        _resources(exp),
    )


def run_affinity(exp: Experiment, run_dir: Path, data: MultiTaskData, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """The task-affinity stage: measured once (``affinity.json``; a resumed run reads it back),
    its proposed trees returned for the search."""
    result = load_affinity(run_dir)
    if result is None:
        print(f"Task affinity: {exp.affinity.epochs} epochs of one fully shared network ...", flush=True)
        result = affinity_in_ray(fixed, data, exp.affinity.epochs, exp.affinity.every, _resources(exp),
                                 exp.stage_names(), exp.affinity.max_groups)
        save_affinity(run_dir, result)
        print(format_affinity(result), flush=True)
    return result["trees"]


def _fail_orphans(run_dir: Path) -> None:
    """When every search trial has ended, Optuna trials still RUNNING are orphans a killed
    driver asked for and the resumed search did not need: tell them FAIL."""
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{run_dir / STUDY_FILE}")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _execute(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    address: str | None,
    num_cpus: int | None,
    resume: bool,
    cache_dir: Path | None,
) -> RunResult:
    started = time.monotonic()
    init_ray(address, num_cpus, exp.plugins)
    print(f"Ray: {ray.cluster_resources()}; results in {run_dir}", flush=True)
    baselines = run_baselines(exp, run_dir, data, fixed, resume, cache_dir)
    print("Single-task baseline (val): " + ", ".join(f"{t}={v:.4g}" for t, v in baselines.metrics.items()), flush=True)
    trees = run_affinity(exp, run_dir, data, fixed) if exp.affinity.enabled else None
    run_search(exp, run_dir, data, fixed, baselines, resume, trees)
    run_confirm(exp, run_dir, data, fixed, baselines, resume)
    results = write_results(run_dir)
    print(f"Search done in {time.monotonic() - started:.0f}s: {_status_counts(results)}", flush=True)
    return RunResult(run_dir, results, baselines.metrics)


def run_experiment(
    exp: Experiment,
    run_dir: str | Path,
    address: str | None = None,
    num_cpus: int | None = None,
    storage: str | None = None,
    cache_dir: Path | None = None,
) -> RunResult:
    """Baselines, then the search; writes ``results.parquet``/``curves.parquet`` in ``run_dir``.

    ``storage``: where Ray Tune keeps the trials (results, checkpoints): by default the
    run directory; on a cluster a shared filesystem path or an object-store URI
    (``s3://bucket/prefix``), under which the run gets a folder named like ``run_dir``.
    ``cache_dir``: reuse and store trained baselines there (None: no cache).
    Raises :class:`SearchInterrupted` when stopped early (Ctrl-C); the run directory
    then holds all that finished, and :func:`resume_experiment` continues it.
    """
    run_dir = Path(run_dir).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"{str(run_dir)!r} is not empty; choose a new --out directory, or continue that run with "
            f"`mtlsearch resume {run_dir}`."
        )
    print(f"Loading and checking data ({exp.data.source}) ...", flush=True)
    data = exp.load_data()  # every row checked here: a bad dataset stops the run before Ray starts
    print(format_data_report(data), flush=True)
    init_ray(address, num_cpus, exp.plugins)
    check_resources(exp, address)  # before the run directory exists: nothing half-written
    run_dir.mkdir(parents=True, exist_ok=True)
    fixed = trial_base_config(exp, data)
    if storage is not None:
        storage = f"{storage.rstrip('/')}/{run_dir.name}" if "://" in storage else str(Path(storage).resolve() / run_dir.name)
    with run_lock(run_dir):  # one driver per run directory (search._lock)
        _write_run_files(exp, run_dir, data, fixed, storage)
        return _execute(exp, run_dir, data, fixed, address, num_cpus, resume=False, cache_dir=cache_dir)


def resume_experiment(
    run_dir: str | Path,
    address: str | None = None,
    num_cpus: int | None = None,
    cache_dir: Path | None = None,
    break_lock: bool = False,
    rebuild_study: bool = False,
) -> RunResult:
    """Continue a run after Ctrl-C, a killed driver or a lost head node.

    Finished trials are kept exactly once; unfinished ones continue from their last
    whole checkpoint; the Optuna study (sampler history and pruner state, ``optuna.db``)
    and the searcher's state are restored, so finished configs are not proposed again.
    The run directory may have moved (another path, host or Ray cluster).
    Before anything changes it takes the run lock (``break_lock``: also one held by a
    driver on another host, see ``search._lock``), checks Tune's snapshots
    (``search._snapshots``) and the study (``search._study``); ``rebuild_study``
    writes the study anew from the search's trials.
    """
    run_dir = Path(run_dir).resolve()
    for name in ("experiment.json", FIXED_CONFIG_FILE):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{str(run_dir / name)!r} is missing; is {str(run_dir)!r} an mtlsearch run?")
    with run_lock(run_dir, break_lock):
        check_snapshots(run_dir)  # Tune would start a phase over on a cut-off one
        for line in [write_rebuilt_study(run_dir)] if rebuild_study else check_study(run_dir):
            print(line, flush=True)
        return _resume(run_dir, address, num_cpus, cache_dir)


def _resume(run_dir: Path, address: str | None, num_cpus: int | None, cache_dir: Path | None) -> RunResult:
    exp = load_experiment(run_dir / "experiment.json")
    fixed = json.loads((run_dir / FIXED_CONFIG_FILE).read_text())
    print(f"Resuming {run_dir}; loading data ({exp.data.source}) ...", flush=True)
    data = exp.load_data()
    if data.input_spec() != fixed["input"]:
        raise RuntimeError(
            f"The data of {run_dir} changed since the run started (input statistics differ: "
            f"{data.input_spec()} vs {fixed['input']}); resuming would mix two datasets."
        )
    init_ray(address, num_cpus, exp.plugins)
    check_resources(exp, address)
    run = json.loads((run_dir / "run.json").read_text())
    run.setdefault("resumed", []).append({"at": _now(), "command": sys.argv})
    atomic_write_json(run_dir / "run.json", run)
    return _execute(exp, run_dir, data, fixed, address, num_cpus, resume=True, cache_dir=cache_dir)


def _status_counts(results: pd.DataFrame) -> str:
    searched = results[results["phase"] == "search"]
    counts = searched["status"].value_counts().to_dict()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trials"
