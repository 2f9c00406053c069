"""Gradient aggregation (torchjd, Quinton & Rey 2024): instead of one weighted sum of the
losses, the tasks' gradients on the parameters they share are combined by a method that
resolves their conflicts, and the update follows that combination.

Per step, as torchjd's ``mtl_backward`` does: one Jacobian of all ``T`` task losses with
respect to **every parameter two or more task losses reach** (a row is zero where a task
does not reach a parameter) is reduced by the aggregator to one gradient, jointly over
all of them; every other parameter is reached by one task only and takes that task's
loss gradient (the plain sum). Which parameters two tasks reach is read from the model's
structure (``multi_task_parameters()``: a hard-split tree's stages shared by a group of
two or more, a cross-stitch network's columns up to its last unit and its units, MTAN's
backbone and shared blocks); a plugin family that does not declare it is read from the
autograd graph of the step's losses. A tensor counts as a whole: a cross-stitch unit's
``alpha``, which each task reaches in its own row, is aggregated. A model with nothing
shared falls back to the plain sum.

``aggregation_scope`` (every aggregator's parameter, one key for all of them):
``shared`` (default) aggregates as above; ``last_shared_stage`` only the parameters
GradNorm balances (``shared_parameters()``: a hard split's deepest stage all tasks share,
the stage before a cross-stitch network's last unit in every column, MTAN's last
backbone stage), the other parameters taking the plain sum: a cheaper step
(bench/aggregator_cost.py) that leaves earlier shared stages unaggregated.

The methods are data: :data:`METHODS` maps each name to its torchjd aggregator, its paper
and its parameters (type hints with bounds, defaults, the torchjd keyword each feeds); one
generic wrapper, :class:`TorchJDAggregation`, builds any of them, and each name is
registered as a subclass whose keyword-only constructor signature is generated from the
data, so its schema is read exactly as every other scheme's (``keyword_parameters``).

``weights()`` reports the weights the last step gave each task's gradient (normalised to
sum to 1; PCGrad's are not defined: equal).
"""
from __future__ import annotations

import inspect
import typing
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Sequence

import numpy as np
import torch
from annotated_types import Ge, Gt
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses


Scope = Literal["shared", "last_shared_stage"]


class GradientAggregation(LossWeighting):
    """The base of the aggregators: subclasses build the aggregator in ``make`` (torchjd's:
    :class:`TorchJDAggregation`; DB-MTL's own).

    ``scope`` (``aggregation_scope``): which parameters are aggregated (module docstring).
    A subclass with its own parameters takes ``scope`` too and passes it on.
    """

    config_keys: ClassVar[dict[str, str]] = {"scope": "aggregation_scope"}

    def __init__(self, tasks: Sequence[TaskSpec], *, scope: Scope = "shared") -> None:
        if scope not in ("shared", "last_shared_stage"):
            raise ValueError(f"aggregation_scope must be 'shared' or 'last_shared_stage', got {scope!r}.")
        self.scope = scope
        super().__init__(tasks)
        n = len(self.task_names)
        self.register_buffer("last", torch.full((n,), 1.0 / n))
        self.aggregator = self.make(n)

    def make(self, num_tasks: int) -> Any:
        raise NotImplementedError

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        """The plain sum (what is logged and what a model without shared layers trains on)."""
        return stack_losses(losses, self.task_names).sum()

    def aggregated_parameters(self, model: nn.Module, losses: Sequence[Tensor]) -> list[nn.Parameter]:
        """The parameters whose gradient the aggregator combines (per ``scope``), trainable ones only."""
        if self.scope == "last_shared_stage":
            shared = getattr(model, "shared_parameters", lambda: [])()
        else:
            declared = getattr(model, "multi_task_parameters", lambda: None)()
            shared = declared if declared is not None else reached_by_several(losses, model.parameters())
        return [p for p in shared if p.requires_grad]

    def backward(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        from torchjd.autojac import backward, jac_to_grad

        stacked = stack_losses(losses, self.task_names)
        if len(self.task_names) < 2 or not torch.is_grad_enabled():
            return super().backward(losses, model)
        shared = self.aggregated_parameters(model, [losses[t] for t in self.task_names])
        if not shared:
            return super().backward(losses, model)
        ids = {id(p) for p in shared}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        backward(list(stacked), inputs=shared, retain_graph=bool(others))
        with warnings.catch_warnings():  # Nash-MTL's cvxpy problem warns on every solve that it is not DPP
            warnings.simplefilter("ignore", UserWarning)
            weights = jac_to_grad(shared, self.aggregator)
        if others:
            torch.autograd.backward(stacked.sum(), inputs=others)
        if isinstance(weights, Tensor) and weights.numel() == len(self.task_names):
            total = weights.detach().abs().sum()
            self.last.copy_(weights.detach().to(self.last) / total if total > 0 else self.last)
        return stacked.detach().sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.last.tolist()))


@dataclass(frozen=True)
class Option:
    """A parameter of a torchjd aggregator: ``name`` (config key ``<scheme>_<name>``), its type
    hint with ``annotated_types`` bounds, its default and the torchjd keyword it feeds."""

    name: str
    hint: Any
    default: Any
    keyword: str

    def cast(self, value: Any) -> Any:
        """``value`` as the hint's base type (``float``, ``int``)."""
        base = typing.get_args(self.hint)[0] if typing.get_origin(self.hint) is Annotated else self.hint
        return base(value)


class _NashMTLState:
    """Checkpoints the bargaining state torchjd's Nash-MTL keeps outside tensors (its step
    counter, the previous weights that warm-start and, between updates, replace the solve,
    the Gram matrix's normalisation): part of ``state_dict``, so a resumed trial continues it."""

    aggregator: Any

    def _solver(self) -> Any:
        """torchjd's stateful Nash-MTL weighting inside the aggregator."""
        return next(m for m in self.aggregator.modules() if hasattr(m, "prvs_alpha"))

    def get_extra_state(self) -> dict[str, Any]:
        solver = self._solver()
        return {
            "step": float(solver.step),
            "prvs_alpha": torch.from_numpy(np.array(solver.prvs_alpha, copy=True)),
            "normalization_factor": torch.from_numpy(np.array(solver.normalization_factor, copy=True)),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        solver = self._solver()
        solver.step = float(state["step"])
        solver.prvs_alpha = state["prvs_alpha"].numpy().copy()
        solver.normalization_factor = state["normalization_factor"].numpy().copy()
        if solver.step > 0:  # torchjd builds its convex problem at step 0 only
            solver._init_optim_problem()


@dataclass(frozen=True)
class Method:
    """One torchjd aggregator: its class in ``torchjd.aggregation`` (also the wrapper's name),
    what it does (the paper), its parameters, the torchjd keyword that takes the number of
    tasks (if any) and a mixin that checkpoints state torchjd keeps outside tensors (if any)."""

    torchjd: str
    doc: str
    options: tuple[Option, ...] = ()
    task_count: str | None = None
    state: type | None = None


METHODS: dict[str, Method] = {
    "upgrad": Method("UPGrad", "UPGrad (Quinton & Rey 2024): each gradient projected onto the dual cone of all of "
                     "them, averaged: no task's loss increases to first order."),
    "pcgrad": Method("PCGrad", "PCGrad (Yu et al. 2020): a gradient's component conflicting with another's removed."),
    "cagrad": Method(
        "CAGrad",
        "CAGrad (Liu et al. 2021): the mean gradient corrected towards the worst-off task within a ball of "
        "radius ``c`` times its norm. ``c`` (``cagrad_c``): the paper's 0.4-0.5; 0 is the mean gradient.",
        (Option("c", Annotated[float, Ge(0)], 0.5, "c"),),
    ),
    "mgda": Method("MGDA", "MGDA (Sener & Koltun 2018): the min-norm convex combination."),
    "imtlg": Method("IMTLG", "IMTL-G (Liu et al. 2021): equal projections onto every task's unit gradient."),
    "aligned_mtl": Method("AlignedMTL", "Aligned-MTL (Senushkin et al. 2023): the gradients' principal components "
                          "aligned (condition number 1)."),
    "nash_mtl": Method(
        "NashMTL",
        "Nash-MTL (Navon et al. 2022): a Nash bargaining solution. ``update_every`` "
        "(``nash_mtl_update_every``): solve it every this many steps and keep the weights in between "
        "(the paper's speed-up; 1: every step).",
        (Option("update_every", Annotated[int, Gt(0)], 1, "update_weights_every"),),
        task_count="n_tasks",
        state=_NashMTLState,
    ),
}


class TorchJDAggregation(GradientAggregation):
    """Any of :data:`METHODS`: the registered subclass of each sets ``method`` and gives the
    constructor its keyword-only signature (``<options>, scope``)."""

    method: ClassVar[Method]

    def __init__(self, tasks: Sequence[TaskSpec], *, scope: Scope = "shared", **options: Any) -> None:
        known = {o.name: o for o in self.method.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unknown}; allowed: {[*known, 'scope']}.")
        for o in self.method.options:
            setattr(self, o.name, o.cast(options.get(o.name, o.default)))
        super().__init__(tasks, scope=scope)

    def make(self, num_tasks: int) -> Any:
        import torchjd.aggregation

        arguments = {o.keyword: getattr(self, o.name) for o in self.method.options}
        if self.method.task_count:
            arguments[self.method.task_count] = num_tasks
        return getattr(torchjd.aggregation, self.method.torchjd)(**arguments)


def _register(name: str, method: Method) -> type[TorchJDAggregation]:
    """Register ``name`` as a :class:`TorchJDAggregation` subclass whose ``__init__`` signature
    (and type hints) list ``method``'s options: the schema the registry reads."""
    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("tasks", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Sequence[TaskSpec]),
        *(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.hint)
          for o in method.options),
        inspect.Parameter("scope", inspect.Parameter.KEYWORD_ONLY, default="shared", annotation=Scope),
    ]

    def __init__(self: TorchJDAggregation, tasks: Sequence[TaskSpec], **options: Any) -> None:
        TorchJDAggregation.__init__(self, tasks, **options)

    __init__.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    __init__.__annotations__ = {p.name: p.annotation for p in parameters[1:]}
    bases = (method.state, TorchJDAggregation) if method.state else (TorchJDAggregation,)
    namespace = {"__init__": __init__, "method": method, "__doc__": method.doc, "__module__": __name__,
                 "__qualname__": method.torchjd}
    return register_weighting(name)(type(method.torchjd, bases, namespace))


WRAPPERS: dict[str, type[TorchJDAggregation]] = {name: _register(name, method) for name, method in METHODS.items()}


def reached_by_several(losses: Sequence[Tensor], parameters: Any) -> list[nn.Parameter]:
    """Of ``parameters``, those two or more of ``losses`` depend on, found by walking each
    loss's autograd graph to its leaves (for models that do not declare
    ``multi_task_parameters``)."""
    counts: dict[int, int] = {}
    for loss in losses:
        for key in _leaves(loss):
            counts[key] = counts.get(key, 0) + 1
    return [p for p in parameters if counts.get(id(p), 0) >= 2]


def _leaves(tensor: Tensor) -> set[int]:
    """``id``s of the leaf tensors ``tensor``'s autograd graph accumulates gradients into."""
    if tensor.grad_fn is None:
        return {id(tensor)} if tensor.requires_grad else set()
    found: set[int] = set()
    seen: set[Any] = set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found
