"""Trial hooks: functions a plugin registers to run inside every trial (baselines, searched
and confirmation trials) at fixed points of its training loop::

    from search import register_trial_hook

    @register_trial_hook("epoch_timer")
    def epoch_timer(event: str, config: dict, **context) -> None:
        if event == "epoch_start":
            ...

Events: ``epoch_start`` (``trainer``: the :class:`mtl_models.Trainer`, before the epoch
trains) and ``checkpoint`` (``epoch``; ``directory``: the folder the epoch's checkpoint
is about to be written into). A searched trial's ``config["_optuna"]["number"]`` is its
Optuna trial number. A hook that raises fails the trial as any error in it would (Tune
restarts it up to ``search.max_failures`` times). The hooks run in the trial's process:
register them in a plugin (``plugins:`` in the experiment), which every trial imports.
The resilience tests inject their faults this way (``tests/fault_plugin.py``).
"""
from __future__ import annotations

from typing import Any, Callable

from mtl_models import Registry

TrialHook = Callable[..., None]
TRIAL_HOOKS: Registry[TrialHook] = Registry("trial hook")


def register_trial_hook(name: str, hook: TrialHook | None = None, *, replace: bool = False) -> Any:
    """Register ``hook(event, config, **context)`` under ``name`` (as a decorator without ``hook``)."""
    return TRIAL_HOOKS.register(name, hook, replace=replace)


def run_trial_hooks(event: str, config: dict[str, Any], **context: Any) -> None:
    """Call every registered hook with ``event``, the trial's ``config`` and ``context``."""
    for _, hook in TRIAL_HOOKS.items():
        hook(event, config, **context)
