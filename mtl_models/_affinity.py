"""Inter-task affinity by lookahead (TAG: Fifty, Amid, Zhao, Yu, Anil, Finn, "Efficiently
Identifying Task Groupings for Multi-Task Learning", NeurIPS 2021; reference code
google-research/google-research ``tag/``), measured per backbone stage, and the task
groupings and branch trees it implies.

Measurement. One network with every stage shared by all tasks (a hard split after the
last stage) trains for a short budget with the trial's optimiser and schedule. Every
``every`` steps (10, as the reference's Taskonomy code, ``batch_num % 10 == 0``), before
the real step, each task ``i``'s gradient alone is put through **the trial optimiser's
own update** -- its state (Adam's moments and step count, SGD's momentum buffer), its
weight decay (L2 for Adam and SGD, decoupled for AdamW) and the learning rate the
schedule gives this step -- without touching the optimiser's state, giving
``theta_{s|i}``; every task ``j``'s loss on the same batch is measured again and

    Z_{i->j} = (1 - L_j(theta_{s|i}) / L_j(theta)) / lr

(TAG's eq. 3; divided by the current learning rate as the reference does, so values
from steps at different rates are comparable; positive: task ``i``'s update helps task
``j``). It is measured for the whole shared trunk at once (``network``: the reference's
quantity, used by the network selection) and for each stage alone (stage ``s``'s
parameters moved, the others kept: which stages to share). The matrices are the mean
over the measured steps, each entry with its standard error over them (the steps as
samples; consecutive steps are correlated, so it is a lower bound on the noise).

The network selection and the branch trees built from these matrices are in
:mod:`mtl_models._task_groups`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from ._task_groups import propose_trees
from ._train import Trainer, resolve_device, seed_everything
from .data import MultiTaskData
from .families import BranchedModel, build_model


@dataclass
class AffinityResult:
    """Per stage the ``(T, T)`` affinity ``Z[i][j]`` (task ``i``'s update onto task ``j``) and
    its standard error over the measured steps, the same for the whole shared trunk
    (``network``), every step's matrices (``samples[step][stage][i][j]``,
    ``network_samples[step][i][j]``), the learning rate of each measured step, the
    optimiser, and the proposed trees."""

    tasks: list[str]
    stages: list[str]
    affinity: list[list[list[float]]]  # [stage][i][j], mean over the measured steps
    steps: int
    epochs: int
    stderr: list[list[list[float]]] = field(default_factory=list)  # [stage][i][j]
    network: list[list[float]] = field(default_factory=list)  # [i][j]: the whole trunk moved
    network_stderr: list[list[float]] = field(default_factory=list)
    samples: list[list[list[list[float]]]] = field(default_factory=list)  # [step][stage][i][j]
    network_samples: list[list[list[float]]] = field(default_factory=list)  # [step][i][j]
    lrs: list[float] = field(default_factory=list)
    optimizer: str = "adam"
    every: int = 10
    trees: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "stages": self.stages, "affinity": self.affinity, "stderr": self.stderr,
                "network": self.network, "network_stderr": self.network_stderr, "steps": self.steps,
                "epochs": self.epochs, "every": self.every, "optimizer": self.optimizer, "lrs": self.lrs,
                "samples": self.samples, "network_samples": self.network_samples, "trees": self.trees}


def measure_affinity(config: dict[str, Any], data: MultiTaskData, epochs: int = 2, every: int = 10,
                     max_groups: int | None = None) -> AffinityResult:
    """Train ``config``'s backbone with every stage shared for ``epochs`` and measure the
    lookahead affinity every ``every`` steps (see the module docstring).

    ``config`` is a trial config (tasks, backbone, input, optimiser and its schedule,
    batch size, seed); the family and tree are replaced by the fully shared network,
    which trains as a trial's first ``epochs`` epochs: the learning rate follows the
    trial's schedule over the trial's ``epochs`` (at least ``epochs``).
    """
    names = [t["name"] for t in config["tasks"]]
    # the first ``epochs`` epochs of a trial: its optimiser and its learning-rate schedule over its own length
    joint = {**config, "family": "hard_split", "tree": "single", "branches": None, "split_points": None,
             "task_groups": None, "loss_weighting": "static", "optimization": "joint",
             "epochs": max(int(config.get("epochs", epochs)), epochs)}
    joint["split_point"] = len(build_model({**joint, "split_point": 0}).blocks)  # every stage shared
    seed_everything(int(joint.get("seed", 0)))
    model = build_model(joint)
    assert isinstance(model, BranchedModel)
    trainer = Trainer(model, data, joint, device=resolve_device(joint.get("device")))
    stage_params = shared_stage_parameters(model)
    samples: list[Tensor] = []
    lrs: list[float] = []
    step = 0
    for _ in range(epochs):
        model.train()
        for x, targets in trainer.feeds["train"].batches(trainer.batch_size, shuffle=True, generator=trainer.generator,
                                                         augment=True):
            if x.shape[0] < 2:
                continue
            if step % every == 0:
                measured = lookahead_affinity(trainer, stage_params, x, targets)
                if measured is not None:  # a zero learning rate (warmup's start) moves nothing
                    samples.append(measured)
                    lrs.append(_current_lr(trainer.optimizer, stage_params))
            trainer.optimizer.zero_grad(set_to_none=True)
            losses = trainer.losses(trainer.forward(x), targets)
            trainer.weighting.combine(losses, model).backward()
            if trainer.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(trainer.grad_clip))
            trainer.optimizer.step()
            trainer.scheduler.step()
            step += 1
    n_stages, n = len(stage_params), len(names)
    stacked = torch.stack(samples) if samples else torch.zeros(0, n_stages + 1, n, n, dtype=torch.float64)
    mean, se = _mean_stderr(stacked)
    result = AffinityResult(
        tasks=names, stages=[f"stage{s}" for s in range(n_stages)], affinity=mean[:n_stages].tolist(),
        steps=len(samples), epochs=epochs, stderr=se[:n_stages].tolist(), network=mean[n_stages].tolist(),
        network_stderr=se[n_stages].tolist(), samples=stacked[:, :n_stages].tolist(),
        network_samples=stacked[:, n_stages].tolist(), lrs=lrs, optimizer=str(joint.get("optimizer", "adam")),
        every=every,
    )
    result.trees = propose_trees(result.samples, names, max_groups, result.network_samples)
    return result


def shared_stage_parameters(model: BranchedModel) -> list[dict[str, Tensor]]:
    """Per stage of a fully shared hard split, its parameters by ``functional_call`` name."""
    return [dict(model.blocks[s][0].named_parameters(prefix=f"blocks.{s}.0")) for s in range(len(model.blocks))]


def _mean_stderr(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over the first axis and its standard error (sample std / sqrt(n); 0 below two samples)."""
    n = samples.shape[0]
    if n == 0:
        return samples.sum(0), samples.sum(0)
    mean = samples.mean(0)
    se = samples.std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    return mean, se


def _param_groups(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def _current_lr(optimizer: torch.optim.Optimizer, stage_params: list[dict[str, Tensor]]) -> float:
    """The learning rate the optimiser will use for the shared trunk this step (the schedule
    has already set it; the first shared parameter's group)."""
    groups = _param_groups(optimizer)
    first = next(p for params in stage_params for p in params.values())
    return float(groups[id(first)]["lr"])


def optimizer_lookahead(optimizer: torch.optim.Optimizer, param: Tensor, grad: Tensor,
                        group: dict[str, Any] | None = None) -> Tensor:
    """``param`` after the step ``optimizer`` would take with gradient ``grad`` alone, from its
    current state (moments, step count, momentum buffer), weight decay and learning rate;
    the optimiser and ``param`` are left as they were. Follows ``torch.optim.Adam``
    (``decoupled_weight_decay``: AdamW; ``amsgrad``) and ``torch.optim.SGD`` (momentum,
    dampening, Nesterov), the optimisers a trial can use."""
    group = group if group is not None else _param_groups(optimizer)[id(param)]
    state = optimizer.state.get(param, {})
    lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
    if group.get("maximize", False):
        grad = -grad
    if isinstance(optimizer, torch.optim.Adam):  # AdamW is Adam with decoupled weight decay
        beta1, beta2 = group["betas"]
        decoupled = bool(group.get("decoupled_weight_decay", False)) or isinstance(optimizer, torch.optim.AdamW)
        base = param * (1.0 - lr * wd) if decoupled and wd else param
        if wd and not decoupled:
            grad = grad + wd * param
        step = float(state["step"]) + 1.0 if "step" in state else 1.0
        exp_avg = state["exp_avg"] * beta1 + (1.0 - beta1) * grad if "exp_avg" in state else (1.0 - beta1) * grad
        exp_avg_sq = (state["exp_avg_sq"] * beta2 + (1.0 - beta2) * grad * grad if "exp_avg_sq" in state
                      else (1.0 - beta2) * grad * grad)
        if group.get("amsgrad", False) and "max_exp_avg_sq" in state:
            exp_avg_sq = torch.maximum(state["max_exp_avg_sq"], exp_avg_sq)
        bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
        denom = exp_avg_sq.sqrt() / math.sqrt(bias2) + float(group["eps"])
        return base - (lr / bias1) * exp_avg / denom
    if isinstance(optimizer, torch.optim.SGD):
        if wd:
            grad = grad + wd * param
        momentum = float(group.get("momentum", 0.0))
        if momentum:
            buf = state.get("momentum_buffer")
            buf = grad.clone() if buf is None else buf * momentum + (1.0 - float(group.get("dampening", 0.0))) * grad
            grad = grad + momentum * buf if group.get("nesterov", False) else buf
        return param - lr * grad
    raise NotImplementedError(f"TAG lookahead: no update rule for {type(optimizer).__name__}; add it to "
                              "mtl_models/_affinity.py:optimizer_lookahead.")


def lookahead_affinity(trainer: Trainer, stage_params: list[dict[str, Tensor]], x: Tensor,
                       targets: dict[str, Tensor]) -> Tensor | None:
    """``Z[s, i, j]`` on one batch: for ``s`` < the number of stages, only stage ``s`` moved by
    task ``i``'s optimiser update; the last ``s``: every shared stage moved (the reference's
    lookahead). In training mode (batch norm on the batch's statistics), its running
    statistics left as they were. None when the learning rate is 0 (nothing moves)."""
    model = trainer.model
    optimizer = trainer.optimizer
    groups = _param_groups(optimizer)
    lr = _current_lr(optimizer, stage_params)
    if lr <= 0.0:
        return None
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    names = [t.name for t in trainer.tasks]
    base = trainer.losses(trainer.forward(x), targets)
    flat = [(k, p) for params in stage_params for k, p in params.items()]
    before = torch.tensor([base[n].item() for n in names], dtype=torch.float64)
    moved: dict[str, list[Tensor]] = {}
    for name in names:
        g = torch.autograd.grad(base[name], [p for _, p in flat], retain_graph=True, allow_unused=True)
        with torch.no_grad():
            moved[name] = [optimizer_lookahead(optimizer, p, torch.zeros_like(p) if gi is None else gi, groups[id(p)])
                           for (_, p), gi in zip(flat, g)]
    spans, offset = [], 0
    for params in stage_params:
        spans.append(range(offset, offset + len(params)))
        offset += len(params)
    spans.append(range(0, offset))  # the whole shared trunk
    out = torch.zeros(len(spans), len(names), len(names), dtype=torch.float64)
    with torch.no_grad():
        for s, span in enumerate(spans):
            for i, name in enumerate(names):
                params = {flat[k][0]: moved[name][k] for k in span}
                with trainer._autocast():
                    outputs = functional_call(model, params, (trainer._input(x),), strict=False)
                after = trainer.losses({t: [outputs[t]] for t in names}, targets)
                out[s, i] = torch.tensor([(1.0 - after[n].item() / max(before[j].item(), 1e-12)) / lr
                                          for j, n in enumerate(names)], dtype=torch.float64)
        for k, v in model.named_buffers():  # batch norm's running statistics: as before the lookahead
            v.copy_(buffers[k])
    return out
