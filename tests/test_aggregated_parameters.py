"""The gradient aggregators combine the tasks' gradients on every parameter two or more task
losses reach, as torchjd's ``mtl_backward`` does, in every family.

The reference is written out here with plain ``torch.autograd``: each task's gradient of
every parameter (``None`` where its loss does not reach it), the Jacobian over the
parameters two or more tasks reach (zero rows where a task does not), the aggregation
applied to it, and the plain sum of the gradients on every other parameter. MGDA and
PCGrad (2 tasks) and IMTL-G are their closed forms, written from the papers; UPGrad, CAGrad,
Aligned-MTL and Nash-MTL have none, so their reference is torchjd's aggregator object (the
reference code) applied to the hand-built Jacobian. Every parameter's ``.grad`` after the
scheme's ``backward`` must match to 1e-5. Split points 2 and 3 share stages before the last
shared one; aggregating only GradNorm's last shared stage (the old behaviour) fails there.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mtl_models as mm
from mtl_models.weighting._aggregators import reached_by_several

from conftest import make_config, make_tasks

TWO = make_tasks(2)
THREE = make_tasks(3)

CASES: dict[str, tuple[list[dict], dict[str, Any]]] = {
    **{f"hard_split@{k}": (TWO, {"family": "hard_split", "split_point": k}) for k in range(4)},
    # t0, t1 share stages 0-1, t2 leaves after stage 0: stage 1's copy has a zero row for t2
    "grouped": (THREE, {"family": "hard_split", "split_point": 1, "task_groups": {"t0": "a", "t1": "a", "t2": "b"},
                        "group_split_points": {"a": 2, "b": 1}}),
    "per_task": (THREE, {"family": "hard_split", "split_points": {"t0": 3, "t1": 2, "t2": 1}}),
    "cross_stitch[channel]@0,1": (TWO, {"family": "cross_stitch", "cross_stitch_stages": [0, 1]}),
    "cross_stitch[scalar]": (TWO, {"family": "cross_stitch", "cross_stitch_unit": "scalar"}),
    "cross_stitch[nddr]@0,1": (THREE, {"family": "cross_stitch", "cross_stitch_unit": "nddr", "cross_stitch_stages": [0, 1],
                                      "alpha_same": 0.6, "alpha_diff": 0.2}),
    "mtan": (TWO, {"family": "mtan"}),
    "mmoe": (TWO, {"family": "mmoe", "mmoe_experts": 2}),
    # the paper's shared gate: every expert of level 0 reaches every task; t_k's level-1 expert only t_k
    "ple@2": (THREE, {"family": "ple", "ple_levels": 2}),
}


def mgda_two(J: Tensor) -> Tensor:
    """Sener & Koltun 2018, the 2-task min-norm point: gamma = (g2 - g1).g2 / |g1 - g2|^2 in [0, 1]."""
    g1, g2 = J
    gamma = ((g2 - g1) @ g2 / (g1 - g2).pow(2).sum()).clamp(0, 1)
    return gamma * g1 + (1 - gamma) * g2


def pcgrad_two(J: Tensor) -> Tensor:
    """Yu et al. 2020, Alg. 1 with 2 tasks: each gradient minus its conflicting projection onto the other, summed."""
    g1, g2 = J
    dot = torch.clamp(g1 @ g2, max=0.0)
    return (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1)


def imtlg(J: Tensor) -> Tensor:
    """Liu et al. 2021 (IMTL-G): alpha_{2:T} = g_1 U^T (D U^T)^-1 with D = g_1 - g_t, U = u_1 - u_t
    (u: unit gradients), alpha_1 = 1 - sum alpha_{2:T}; the update sum_t alpha_t g_t."""
    u = J / J.norm(dim=1, keepdim=True)
    D, U = J[0] - J[1:], u[0] - u[1:]
    rest = J[0] @ U.T @ torch.linalg.inv(D @ U.T)
    alpha = torch.cat([(1 - rest.sum()).view(1), rest])
    return alpha @ J


def torchjd_reference(name: str, num_tasks: int) -> Callable[[Tensor], Tensor]:
    """torchjd's own aggregator object (the reference code) on the hand-built Jacobian."""
    from torchjd import aggregation as A

    make = {"upgrad": A.UPGrad, "cagrad": lambda: A.CAGrad(c=0.5), "aligned_mtl": A.AlignedMTL,
            "nash_mtl": lambda: A.NashMTL(n_tasks=num_tasks)}[name]
    return make()


REFERENCES: dict[str, Callable[[int], Callable[[Tensor], Tensor] | None]] = {
    "mgda": lambda t: mgda_two if t == 2 else None,
    "pcgrad": lambda t: pcgrad_two if t == 2 else None,
    "imtlg": lambda t: imtlg,
    **{name: (lambda t, name=name: torchjd_reference(name, t)) for name in ("upgrad", "cagrad", "aligned_mtl", "nash_mtl")},
}


def build(tasks: list[dict], extra: dict[str, Any]) -> tuple[nn.Module, Tensor, dict[str, Tensor]]:
    torch.manual_seed(0)
    config = make_config(extra["family"], tasks, **{k: v for k, v in extra.items() if k != "family"})
    model = mm.build_model(config).train()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 8, 8, generator=g)
    labels = {t["name"]: torch.randint(0, t["classes"], (6,), generator=g) for t in tasks}
    return model, x, labels


def task_losses(model: nn.Module, x: Tensor, labels: dict[str, Tensor]) -> dict[str, Tensor]:
    out = model(x)
    return {t: F.cross_entropy(out[t], y) for t, y in labels.items()}


def reference_gradients(model: nn.Module, x: Tensor, labels: dict[str, Tensor], aggregate: Callable[[Tensor], Tensor]
                        ) -> tuple[list[nn.Parameter], list[Tensor]]:
    """The parameters two or more tasks reach, and every parameter's expected gradient."""
    params = list(model.parameters())
    losses = task_losses(model, x, labels)
    per_task = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses.values()]
    reached = [sum(g[i] is not None for g in per_task) for i in range(len(params))]
    shared = [i for i, n in enumerate(reached) if n >= 2]
    if not shared:  # a hard split at 0 shares nothing: every parameter takes its task's gradient
        return [], [sum(g[i] for g in per_task if g[i] is not None) for i in range(len(params))]
    J = torch.stack([
        torch.cat([(g[i] if g[i] is not None else torch.zeros_like(params[i])).flatten() for i in shared])
        for g in per_task
    ])
    d = aggregate(J)
    expected: list[Tensor] = []
    offset = 0
    pieces = {}
    for i in shared:
        pieces[i] = d[offset:offset + params[i].numel()].view_as(params[i])
        offset += params[i].numel()
    for i, p in enumerate(params):
        expected.append(pieces[i] if i in pieces else sum(g[i] for g in per_task if g[i] is not None))
    return [params[i] for i in shared], expected


PAIRS = [(case, scheme) for case in CASES for scheme in REFERENCES if REFERENCES[scheme](len(CASES[case][0])) is not None]


@pytest.mark.parametrize("case, scheme", PAIRS)
def test_every_parameter_two_tasks_reach_is_aggregated_as_the_reference(case: str, scheme: str) -> None:
    tasks, extra = CASES[case]
    aggregate = REFERENCES[scheme](len(tasks))
    model, x, labels = build(tasks, extra)
    shared, expected = reference_gradients(model, x, labels, aggregate)
    weighting = mm.build_weighting([t["name"] for t in tasks], {"loss_weighting": scheme})
    model.zero_grad(set_to_none=True)
    weighting.backward(task_losses(model, x, labels), model)
    for (name, p), want in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{case} {scheme} {name}: {m}")


@pytest.mark.parametrize("case", list(CASES))
def test_the_structure_declares_what_autograd_reaches(case: str) -> None:
    """``multi_task_parameters()`` (read from the structure) is the set autograd finds, and so is
    the graph walk used for families that do not declare it."""
    tasks, extra = CASES[case]
    model, x, labels = build(tasks, extra)
    shared, _ = reference_gradients(model, x, labels, lambda J: J.sum(0))
    names = {id(p): n for n, p in model.named_parameters()}
    declared = [names[id(p)] for p in model.multi_task_parameters()]
    assert declared == [names[id(p)] for p in shared]
    walked = reached_by_several(list(task_losses(model, x, labels).values()), model.parameters())
    assert [names[id(p)] for p in walked] == declared
    if case in ("hard_split@2", "hard_split@3", "grouped", "per_task", "mtan"):
        assert len(declared) > len(model.shared_parameters())  # more than GradNorm's last shared stage


@pytest.mark.parametrize("case", ["hard_split@3", "cross_stitch[channel]@0,1", "mtan"])
def test_last_shared_stage_scope_aggregates_only_gradnorms_layer(case: str) -> None:
    """``aggregation_scope: last_shared_stage``: the aggregate on ``shared_parameters()`` only (MGDA's
    closed form on that Jacobian), the plain sum everywhere else."""
    tasks, extra = CASES[case]
    model, x, labels = build(tasks, extra)
    last = {id(p) for p in model.shared_parameters()}
    params = list(model.parameters())
    losses = task_losses(model, x, labels)
    per_task = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses.values()]
    J = torch.stack([torch.cat([g[i].flatten() for i, p in enumerate(params) if id(p) in last]) for g in per_task])
    d, offset, expected = mgda_two(J), 0, []
    for i, p in enumerate(params):
        if id(p) in last:
            expected.append(d[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        else:
            expected.append(sum(g[i] for g in per_task if g[i] is not None))
    weighting = mm.build_weighting(["t0", "t1"], {"loss_weighting": "mgda", "aggregation_scope": "last_shared_stage"})
    model.zero_grad(set_to_none=True)
    weighting.backward(task_losses(model, x, labels), model)
    for (name, p), want in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{case} {name}: {m}")
