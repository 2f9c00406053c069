"""The start of a run, overlapped: the slow steps before the first trial that do not need
Ray (importing torch, Tune, Optuna and the report's libraries, reading and checking the
experiment and its data, timing the plan) run in a thread while a local Ray starts in the
calling one (``bench/time_to_first.py`` measures it).

Ray is started in the calling thread, not in the helper thread: its processes are
spawned with a parent-death signal, which Linux sends when the *thread* that spawned
them ends, so a Ray started in a thread that then finishes loses its GCS. A thread that
reads files and builds tensors has no such tie.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from ._cluster import init_ray

T = TypeVar("T")


def load_while_ray_starts(load: Callable[[], T], address: str | None = None, num_cpus: int | None = None) -> T:
    """``load()``, run in a thread while a local Ray starts here; its value, or its error.

    Joining a cluster (``address`` or ``RAY_ADDRESS``) ships the experiment's plugins, which
    ``load`` has yet to read: then ``load()`` runs first and the caller joins afterwards
    (``init_ray`` with the plugins). An error of ``load`` (a bad experiment or data file)
    is raised after Ray is up; the run directory does not exist yet either way.
    """
    if address or os.environ.get("RAY_ADDRESS"):
        return load()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtlsearch-load") as pool:
        loading = pool.submit(load)
        try:
            init_ray(None, num_cpus)
        finally:
            value = loading.result()  # its error first: a bad file says more than a Ray that did not start
    return value
