"""Run an experiment: baselines, then the Optuna-guided search, as Ray Tune trials."""
from __future__ import annotations

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
from typing import Any

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from mtl_models import MultiTaskData, atomic_write_json, atomic_write_text
from mtl_models.data import format_data_report
from spaces import HIDDEN_PREFIX, Experiment, define_space, fixed_config, optuna_point

from ._fixed import FixedConfigs
from ._baselines import baseline_configs, compose_ensemble, ensemble_size, single_task_baseline
from ._progress import ProgressPrinter
from ._pruning import OptunaPrunerScheduler
from ._table import collect_results, write_results
from ._trainable import OBJECTIVE, train_trial

log = logging.getLogger("mtlsearch")

STUDY_FILE = "optuna.db"
STUDY_NAME = "search"


class _OptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` returning only config keys: Optuna parameters that are a
    means to a value (``_``-prefixed raw draws) stay in the study, out of the config."""

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if not k.startswith(HIDDEN_PREFIX)}
        return config


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame
    baseline: dict[str, float]


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (default) or join the cluster at ``address`` (or ``RAY_ADDRESS``).

    Joining a cluster ships this package's code to it (``runtime_env.py_modules``);
    the cluster needs the dependencies installed.
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

        kwargs["runtime_env"] = {"py_modules": [mtl_models, spaces, search, reports]}
        ray.init(address=address, **kwargs)
    else:  # "local": always a fresh local Ray, never a cluster someone `ray start`-ed on this machine
        ray.init(address="local", num_cpus=num_cpus, **kwargs)


def trial_base_config(exp: Experiment, data: MultiTaskData) -> dict[str, Any]:
    """The config every trial and baseline shares: the space's fixed keys plus how data is fed.

    ``loader`` (mode, workers, memory budget, augmentations, the trial's GPU share)
    is read by the trainer's data feeds; it changes speed, not results, except for
    the augmentations, which the config records so a row can be rebuilt exactly.
    """
    loader = {**exp.data.loader_config(exp.search.resources.cpu), "gpu_share": exp.search.resources.gpu}
    return {**fixed_config(exp, data.input_spec()), "loader": loader}


def _run_config(name: str, storage: Path, callbacks: list) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(storage),
        verbose=0,
        callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )


def _dirname(trial: Any) -> str:
    return f"{trial.config.get('family', 'trial')}_{trial.trial_id}"


def _resources(exp: Experiment) -> dict[str, float]:
    return {"cpu": exp.search.resources.cpu, "gpu": exp.search.resources.gpu}


def _write_run_files(exp: Experiment, run_dir: Path, data: MultiTaskData) -> None:
    if exp.source_path is not None:
        shutil.copyfile(exp.source_path, run_dir / "experiment.yaml")
    atomic_write_text(run_dir / "experiment.json", exp.model_dump_json(indent=2))
    atomic_write_json(
        run_dir / "run.json",
        {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv,
            "host": platform.node(),
            "python": platform.python_version(),
            "versions": _versions(),
            "data": data.description,
            "labels": data.label_summary(),
        },
    )


def _versions() -> dict[str, str]:
    import plotly
    import torch

    return {"torch": torch.__version__, "ray": ray.__version__, "optuna": optuna.__version__, "plotly": plotly.__version__}


def run_baselines(exp: Experiment, run_dir: Path, data: MultiTaskData, fixed: dict[str, Any]) -> dict[str, float]:
    """Train the single-task baseline trials, compose the ensemble; return ``B_t`` per task."""
    configs = baseline_configs(exp, fixed)
    trainable = tune.with_parameters(train_trial, data=data, baseline=None, cpus=exp.search.resources.cpu)
    tuner = tune.Tuner(
        tune.with_resources(trainable, _resources(exp)),
        tune_config=tune.TuneConfig(
            search_alg=FixedConfigs(configs),
            num_samples=len(configs),
            trial_dirname_creator=_dirname,
        ),
        run_config=_run_config("baselines", run_dir, [ProgressPrinter("baselines", len(configs), None)]),
    )
    tuner.fit()
    results, _ = collect_results(run_dir)
    tasks = exp.task_specs()
    baseline = single_task_baseline(results, tasks)
    missing = [t.name for t in tasks if t.name not in baseline]
    if missing:
        errors = results.loc[results["status"] == "errored", "error"].dropna().unique().tolist()
        raise RuntimeError(
            f"The single-task baseline failed for task(s) {missing}, so Delta_m cannot be computed. "
            f"Errors: {errors or 'none recorded'}; see {run_dir / 'baselines'}."
        )
    if ensemble_size(exp) > 1:
        finished = results[(results["family"] == "single_task") & (results["status"] == "finished")]
        members = {t.name: finished.loc[finished["task"] == t.name, "checkpoint"].tolist() for t in tasks}
        compose_ensemble(fixed, members, data, run_dir)
    return baseline


def run_search(
    exp: Experiment, run_dir: Path, data: MultiTaskData, fixed: dict[str, Any], baseline: dict[str, float]
) -> None:
    """The Optuna-sampled, Optuna-pruned search over the experiment's space."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / STUDY_FILE}")
    searcher: Any = _OptunaSearch(
        space=define_space(exp, fixed),
        metric=OBJECTIVE,
        mode="max",
        sampler=exp.search.sampler.build(exp.seed),
        study_name=STUDY_NAME,
        storage=storage,
        points_to_evaluate=[optuna_point(p) for p in exp.search.points_to_evaluate] or None,
    )
    if exp.search.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=exp.search.max_concurrent)
    scheduler = OptunaPrunerScheduler(exp.search.pruner.build(exp.train.epochs), metric=OBJECTIVE, mode="max")
    trainable = tune.with_parameters(train_trial, data=data, baseline=baseline, cpus=exp.search.resources.cpu)
    tuner = tune.Tuner(
        tune.with_resources(trainable, _resources(exp)),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=exp.search.num_trials,
            trial_dirname_creator=_dirname,
        ),
        run_config=_run_config("search", run_dir, [ProgressPrinter("search", exp.search.num_trials, OBJECTIVE)]),
    )
    tuner.fit()


def run_experiment(
    exp: Experiment, run_dir: str | Path, address: str | None = None, num_cpus: int | None = None
) -> RunResult:
    """Baselines, then the search; writes ``results.parquet``/``curves.parquet`` in ``run_dir``."""
    run_dir = Path(run_dir).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{str(run_dir)!r} is not empty; choose a new --out directory.")
    started = time.monotonic()
    print(f"Loading and checking data ({exp.data.source}) ...", flush=True)
    data = exp.load_data()  # every row checked here: a bad dataset stops the run before Ray starts
    print(format_data_report(data), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_run_files(exp, run_dir, data)
    fixed = trial_base_config(exp, data)
    init_ray(address, num_cpus)
    print(f"Ray: {ray.cluster_resources()}; results in {run_dir}", flush=True)
    baseline = run_baselines(exp, run_dir, data, fixed)
    print("Single-task baseline (val): " + ", ".join(f"{t}={v:.4g}" for t, v in baseline.items()), flush=True)
    run_search(exp, run_dir, data, fixed, baseline)
    results = write_results(run_dir)
    print(f"Search done in {time.monotonic() - started:.0f}s: {_status_counts(results)}", flush=True)
    return RunResult(run_dir, results, baseline)


def _status_counts(results: pd.DataFrame) -> str:
    searched = results[results["phase"] == "search"]
    counts = searched["status"].value_counts().to_dict()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trials"
