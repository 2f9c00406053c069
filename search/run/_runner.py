"""Run an experiment: baselines, then the Optuna-guided search, as Ray Tune trials."""
from __future__ import annotations

import json
import platform
import shlex
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
import yaml

from mtl_models import MultiTaskData, atomic_path, atomic_write_json, atomic_write_text
from mtl_models import results_table as rt
from spaces import Experiment, load_experiment

from ..base._cluster import check_resources, init_ray
from ..recovery._lock import run_lock
from ..base._log import get_logger
from ._phases import _dirname  # noqa: F401  Tune's saved experiments name it here (runs and cached baselines from before the split)
from ._phases import run_affinity, run_baselines, run_confirm, run_search
from ._plan import timed_rest
from ..recovery._snapshots import check_snapshots
from ._fixed import trial_base_config
from ._start import load_run_data, load_while_ray_starts
from ..study._study import check_study
from ..study._study import rebuild_study as write_rebuilt_study
from ..results._table import write_results

log = get_logger("search")

FIXED_CONFIG_FILE = "fixed_config.json"


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame
    baseline: dict[str, float]


def _write_run_files(
    exp: Experiment, run_dir: Path, data: MultiTaskData, fixed: dict[str, Any], storage: str | None
) -> None:
    if exp.overrides and exp.document is not None:  # what ran: the file with its --set changes applied
        source = exp.source_path.resolve() if exp.source_path else None
        header = (f"# {source} with {' '.join('--set ' + shlex.quote(o) for o in exp.overrides)} applied;\n"
                  f"# relative paths in it are relative to {source.parent if source else '.'}\n")
        atomic_write_text(run_dir / "experiment.yaml", header + yaml.safe_dump(exp.document, sort_keys=False))
    elif exp.source_path is not None:
        with atomic_path(run_dir / "experiment.yaml") as tmp:
            shutil.copyfile(exp.source_path, tmp)
    atomic_write_text(run_dir / "experiment.json", exp.model_dump_json(indent=2))
    atomic_write_json(run_dir / FIXED_CONFIG_FILE, fixed)
    atomic_write_json(
        run_dir / "run.json",
        {
            "started": _now(),
            "command": sys.argv,
            "overrides": exp.overrides,  # --set KEY=VALUE, applied to the experiment file
            "host": platform.node(),
            "python": platform.python_version(),
            "versions": _versions(),
            "data": data.description,
            "labels": data.label_summary(),
            "data_warnings": data.warnings(),
            "storage": storage,
        },
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import plotly
    import torch

    return {"torch": torch.__version__, "ray": ray.__version__, "optuna": optuna.__version__, "plotly": plotly.__version__}


def _execute(
    exp: Experiment,
    run_dir: Path,
    data: MultiTaskData,
    fixed: dict[str, Any],
    address: str | None,
    num_cpus: int | None,
    resume: bool,
    cache_dir: Path | None,
    timing: bool = False,
) -> RunResult:
    """The phases; ``timing``: log the expected wall time of those after the baselines, timed
    once they are trained (search.run._plan.timed_rest)."""
    started = time.monotonic()
    init_ray(address, num_cpus, exp.plugins)
    log.info("Ray: %s; results in %s", ray.cluster_resources(), run_dir)
    baselines = run_baselines(exp, run_dir, data, fixed, resume, cache_dir)
    log.info("Single-task baseline (val): " + ", ".join(f"{t}={v:.4g}" for t, v in baselines.metrics.items()))
    if timing:
        log.info(timed_rest(exp, data, num_cpus))
    trees = run_affinity(exp, run_dir, data, fixed) if exp.affinity.enabled else None
    run_search(exp, run_dir, data, fixed, baselines, resume, trees)
    run_confirm(exp, run_dir, data, fixed, baselines, resume)
    results = write_results(run_dir)
    log.info("Search done in %.0fs: %s", time.monotonic() - started, _status_counts(results))
    return RunResult(run_dir, results, baselines.metrics)


def run_experiment(
    exp: Experiment,
    run_dir: str | Path,
    address: str | None = None,
    num_cpus: int | None = None,
    storage: str | None = None,
    cache_dir: Path | None = None,
    show_plan: bool = False,
    data: MultiTaskData | None = None,
    plan_text: str | None = None,
) -> RunResult:
    """Baselines, then the search; writes ``results.parquet``/``curves.parquet`` in ``run_dir``.

    ``storage``: where Ray Tune keeps the trials (results, checkpoints): by default the
    run directory; on a cluster a shared filesystem path or an object-store URI
    (``s3://bucket/prefix``), under which the run gets a folder named like ``run_dir``.
    ``cache_dir``: reuse and store trained baselines there (None: no cache).
    ``show_plan``: log the plan (``search.run._plan``: space, trials per phase) once the data
    is loaded, and its timed wall-time estimate once the baselines are trained (a timing
    before would delay the first trial by ~3 s of a CPU). The data is loaded and checked
    (every row: a bad dataset stops the run before its directory exists) while a local
    Ray starts (``search.run._start``); ``data`` and ``plan_text``: both done already
    (:func:`load_run_data`, as ``mtlsearch run`` does while Ray starts). Raises
    :class:`SearchInterrupted` when stopped early (Ctrl-C); the run directory then holds all that finished, and :func:`resume_experiment` continues it.
    """
    run_dir = Path(run_dir).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"{str(run_dir)!r} is not empty; choose a new --out directory, or continue that run with "
            f"`mtlsearch resume {run_dir}`."
        )
    if data is None:
        data, plan_text = load_while_ray_starts(lambda: load_run_data(exp, show_plan, num_cpus), address, num_cpus)
    init_ray(address, num_cpus, exp.plugins)
    check_resources(exp, address)  # before the run directory exists: nothing half-written
    if show_plan and plan_text is not None:
        log.info(plan_text)
    run_dir.mkdir(parents=True, exist_ok=True)
    fixed = trial_base_config(exp, data)
    if storage is not None:
        storage = f"{storage.rstrip('/')}/{run_dir.name}" if "://" in storage else str(Path(storage).resolve() / run_dir.name)
    with run_lock(run_dir):  # one driver per run directory (search.recovery._lock)
        _write_run_files(exp, run_dir, data, fixed, storage)
        return _execute(exp, run_dir, data, fixed, address, num_cpus, resume=False, cache_dir=cache_dir,
                        timing=show_plan)


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
    driver on another host, see ``search.recovery._lock``), checks Tune's snapshots
    (``search.recovery._snapshots``) and the study (``search.study._study``); ``rebuild_study``
    writes the study anew from the search's trials.
    """
    run_dir = Path(run_dir).resolve()
    for name in ("experiment.json", FIXED_CONFIG_FILE):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{str(run_dir / name)!r} is missing; is {str(run_dir)!r} an mtlsearch run?")
    with run_lock(run_dir, break_lock):
        check_snapshots(run_dir)  # Tune would start a phase over on a cut-off one
        for line in [write_rebuilt_study(run_dir)] if rebuild_study else check_study(run_dir):
            log.info(line)
        return _resume(run_dir, address, num_cpus, cache_dir)


def _resume(run_dir: Path, address: str | None, num_cpus: int | None, cache_dir: Path | None) -> RunResult:
    exp = load_experiment(run_dir / "experiment.json")
    fixed = json.loads((run_dir / FIXED_CONFIG_FILE).read_text())
    log.info("Resuming %s; loading data (%s) ...", run_dir, exp.data.source)
    data = load_while_ray_starts(exp.load_data, address, num_cpus)
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
    counts = rt.searched(results)[rt.STATUS].value_counts().to_dict()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trials"
