"""The narrow base of loss-weighting schemes, their registry, and their parameters.

A scheme is one class in its own module, registered with ``@register_weighting(name)``.
Its constructor takes the tasks and, keyword-only, its parameters with defaults and type
hints, and nothing else needs to know them: as with Optuna's pruners, the signature is
the schema. Parameter ``p`` of scheme ``s`` has the key ``s_p`` (GradNorm's ``alpha`` is
``gradnorm_alpha``, DWA's ``temperature`` is ``dwa_temperature``) in the trial config,
in the experiment's ``space`` (a value, a range or a list of choices), in the Optuna
study and in the results table. A parameter hinted ``float``, ``int``, ``bool`` or a
``Literal`` can be searched; ``Annotated[float, annotated_types.Gt(0)]`` (and ``Ge``,
``Lt``, ``Le``) bounds what the experiment file may give.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from .._registry import Registry, SchemeParameter, keyword_parameters
from ..tasks import TaskSpec


class LossWeighting(nn.Module):
    """Turns the per-task losses of a step into the total loss ``sum_t w_t L_t``.

    ``__init__(tasks, *, <parameters>)``: the tasks the model has (a single-task
    baseline has one) and the scheme's parameters (see the module docstring). A scheme
    may hold learnable parameters (returned by ``param_groups``), react to the end of an
    optimiser step (``after_step``) or of an epoch (``end_epoch``), or need the model
    (``combine`` gets it). State that must survive a resumed trial lives in the module's
    ``state_dict`` (buffers, parameters, ``get_extra_state``): the trainer checkpoints it.
    """

    # parameter -> config key, where it is not ``<scheme>_<parameter>`` (static's weights)
    config_keys: ClassVar[dict[str, str]] = {}

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        raise NotImplementedError

    def backward(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        """Set the gradients of one step from the per-task losses; return the total (detached,
        for the logs). Default: the backward pass of :meth:`combine`. Schemes that do not
        combine losses but the tasks' gradients (the aggregators) replace this."""
        total = self.combine(losses, model)
        total.backward()
        return total.detach()

    def weights(self) -> dict[str, float]:
        """The current weight of each task (for the results table and the report)."""
        raise NotImplementedError

    def after_step(self, losses_after: Callable[[], dict[str, Tensor]]) -> None:
        """Called after every optimiser step; ``losses_after()`` computes the step's batch's
        per-task losses under the updated parameters (an extra forward pass, without gradient:
        call it only if the scheme needs them, as FAMO does)."""

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        """Called with each task's mean training loss after every epoch."""

    def param_groups(self) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr_scale": 1.0, "weight_decay": 0.0}] if params else []


WeightingFactory = type[LossWeighting]

_SCHEMES: Registry[WeightingFactory] = Registry("loss weighting")


def register_weighting(name: str, *, replace: bool = False) -> Callable[[type[LossWeighting]], type[LossWeighting]]:
    """Register a :class:`LossWeighting` subclass as ``loss_weighting: <name>`` (a taken name is
    refused unless ``replace``). Its keyword-only constructor arguments are its parameters."""
    return _SCHEMES.register(name, replace=replace)


def available_weightings() -> list[str]:
    return _SCHEMES.names()


def weighting_parameters(name: str) -> dict[str, SchemeParameter]:
    """Scheme ``name``'s parameters by key (``{"gradnorm_alpha": ...}``)."""
    cls = _SCHEMES.get(name)
    return keyword_parameters(name, cls, cls.config_keys)


def searchable_weighting_parameters() -> dict[str, SchemeParameter]:
    """Every registered scheme's searchable parameters by key: what ``space`` may name."""
    return {key: p for name in available_weightings() for key, p in weighting_parameters(name).items() if p.searchable}


def weighting_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's values of its scheme's parameters, by key (what the results table records)."""
    name = config.get("loss_weighting") or "static"
    if name not in _SCHEMES:  # a plugin's scheme, its plugin not imported here: its keys by the naming rule
        return {k: v for k, v in config.items() if k.startswith(f"{name}_")}
    return {key: config[key] for key in weighting_parameters(name) if key in config}


def build_weighting(tasks: Sequence[TaskSpec | str], config: dict[str, Any]) -> LossWeighting:
    """Build the scheme ``config['loss_weighting']`` (default ``static``) for these tasks, with
    the parameters the config gives (the constructor's defaults for the others).

    ``tasks``: specs, or names looked up in ``config['tasks']``; a name without a spec
    there counts as a classification task.
    """
    name = config.get("loss_weighting") or "static"
    cls = _SCHEMES.get(name)
    specs = {t["name"]: TaskSpec.from_dict(t) for t in config.get("tasks") or ()}
    resolved = [t if isinstance(t, TaskSpec) else specs.get(t, TaskSpec(t, "classification")) for t in tasks]
    options = {p.name: config[key] for key, p in weighting_parameters(name).items() if config.get(key) is not None}
    return cls(resolved, **options)


def stack_losses(losses: dict[str, Tensor], task_names: list[str]) -> Tensor:
    return torch.stack([losses[t] for t in task_names])
