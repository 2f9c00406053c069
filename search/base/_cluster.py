"""Ray: start a local one or join a cluster (shipping this code and the plugins), and check
that a trial's resources fit some node."""
from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING, Any, Sequence

import ray

from ._log import get_logger

if TYPE_CHECKING:
    from spaces import Experiment

log = get_logger("search")


def init_ray(address: str | None = None, num_cpus: int | None = None, plugins: Sequence[str] = ()) -> None:
    """Start a local Ray (default) or join the cluster at ``address`` (or ``RAY_ADDRESS``).

    Joining a cluster ships this package's code and the experiment's ``plugins`` (those
    not installed as packages) to it (``runtime_env.py_modules``); the cluster needs the
    dependencies installed. A local Ray's trials import plugin paths themselves. When
    Ray is already running, it is used as it is.
    """
    if not ray.is_initialized():
        _start_ray(address, num_cpus, plugins)
    import optuna  # after Ray's start: `mtlsearch run` imports it while Ray starts (search.run._start)

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _start_ray(address: str | None, num_cpus: int | None, plugins: Sequence[str]) -> None:
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
        ray.init(address="local", num_cpus=num_cpus, _system_config=LOCAL_RAY_CONFIG, **kwargs)


# A local Ray starts no idle workers for the driver: Ray gives such a worker only to tasks and
# actors without a runtime env, and every Tune trial's actor has one (Tune sets its env vars),
# so they would only take the CPU the driver and Ray's own processes start with (0.6 s of the
# first result on 2 cores: bench/time_to_first.py).
LOCAL_RAY_CONFIG = {"prestart_worker_first_driver": False}


def _shipped_plugins(plugins: Sequence[str]) -> list[Any]:
    """What of the plugins a cluster gets from the driver: plugin files and folders, and
    the top-level package of plugin modules that are not installed (site-packages)."""
    from mtl_models import is_plugin_path

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


def check_resources(exp: "Experiment", address: str | None = None) -> None:
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
        log.warning("%s Waiting for the autoscaler to add such a node.", message)
        return
    raise ValueError(f"{message} Lower search.resources (or start Ray with more: --num-cpus).")


def trial_resources(exp: "Experiment") -> dict[str, float]:
    return {"cpu": exp.search.resources.cpu, "gpu": exp.search.resources.gpu}
