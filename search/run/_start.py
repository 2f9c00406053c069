"""The start of a run, overlapped: the slow steps before the first trial that do not need
Ray (importing torch, reading and checking the experiment and its data, formatting the plan)
run in a thread while a local Ray starts in the calling one, which then imports what the
run needs next (Tune, Optuna, pandas) while that thread is still busy
(``bench/time_to_first.py`` measures it).

Ray is started in the calling thread, not in the helper thread: its processes are
spawned with a parent-death signal, which Linux sends when the *thread* that spawned
them ends, so a Ray started in a thread that then finishes loses its GCS. A thread that
reads files and builds tensors has no such tie.

This module imports no more than Ray itself (``search.base._cluster``): what the thread
needs (the experiment's schema, torch, the data sources) it imports there, and nothing
here waits for Tune, Optuna or pandas.
"""
from __future__ import annotations

import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ..base._cluster import init_ray
from ..base._log import get_logger

if TYPE_CHECKING:
    from mtl_models import MultiTaskData
    from spaces import Experiment

T = TypeVar("T")
log = get_logger("search")


def load_while_ray_starts(
    load: Callable[[], T], address: str | None = None, num_cpus: int | None = None,
    then: Callable[[], Any] | None = None,
) -> T:
    """``load()``, run in a thread while a local Ray starts here; its value, or its error.

    ``then``: run here once Ray is up, while ``load`` may still run (``mtlsearch run``
    imports the libraries of its phases with it); an error of ``load`` is raised before
    its own. Joining a cluster (``address`` or ``RAY_ADDRESS``) ships the experiment's
    plugins, which ``load`` has yet to read: then ``load()`` runs first, ``then()`` after
    it, and the caller joins afterwards (``init_ray`` with the plugins). An error of
    ``load`` (a bad experiment or data file) is raised after Ray is up; the run directory
    does not exist yet either way.
    """
    if address or os.environ.get("RAY_ADDRESS"):
        value = load()
        if then is not None:
            then()
        return value
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtlsearch-load") as pool:
        loading = pool.submit(load)
        try:
            init_ray(None, num_cpus)
            if then is not None:
                then()
        finally:
            value = loading.result()  # its error first: a bad file says more than a Ray that did not start
    return value


# What the phases import that the loading thread does not (Tune, Optuna's storage, pandas):
# none of them imports torch, which that thread is importing. SciPy is not among them: the
# statistics import it when they first run, after the first trial has started.
PHASE_LIBRARIES = ("optuna", "pandas", "ray.tune")


def import_phase_libraries() -> None:
    """Import :data:`PHASE_LIBRARIES` (``mtlsearch run`` does it once Ray is up, while the data
    loads in a thread; about 2 s of a CPU that the phases would otherwise spend after it).
    Only third-party libraries that do not import torch or this project: two threads that
    import the same modules in different orders could each wait for a module the other holds."""
    for name in PHASE_LIBRARIES:
        importlib.import_module(name)


def load_run_data(
    exp: "Experiment", show_plan: bool = False, num_cpus: int | None = None
) -> tuple["MultiTaskData", str | None]:
    """Load and check the experiment's data (its report logged) and, with ``show_plan``, format
    the plan, untimed: ``mtlsearch run`` times it once its baselines are trained
    (:func:`search.run._plan.timed_rest`); no Ray needed."""
    from mtl_models.data import format_data_report

    log.info("Loading and checking data (%s) ...", exp.data.source)
    data = exp.load_data()  # every row checked here
    log.info(format_data_report(data))
    if not show_plan:
        return data, None
    from ..run._plan import DEFERRED_TIMING, plan

    return data, plan(exp, data, timed=False, num_cpus=num_cpus) + "\n" + DEFERRED_TIMING
