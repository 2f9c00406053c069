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

Network selection (the reference's ``TAG_network_selection.ipynb``): every non-empty
group of tasks is a candidate; in a group a task scores the mean affinity onto it from
the other members (``Z_{i->j}`` over ``i`` in the group), a task alone scores
``SINGLETON`` (-1e6); at most ``budget`` groups are chosen, they may overlap, every
task must be in one, each task is served by its best chosen group, and the chosen set
maximises the mean over tasks of the served score.

Branch trees (this product: per stage, the groups of tasks that share a copy of it;
groups only split with depth). A split is made at a stage only where it is beyond the
noise: the split's change of the per-stage affinity score (summed over tasks, the mean
affinity onto a task from the tasks it still shares the stage with; 0 alone -- nobody
else's update reaches it) is computed at every measured step, and its mean must exceed
``t_{0.975, n-1}`` standard errors. Otherwise the tree shares that stage and records why
(the split, its change with a 95 % interval, and the cross affinities with theirs).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from ._train import Trainer, resolve_device, seed_everything
from .data import MultiTaskData
from .families import BranchedModel, build_model

SINGLETON = -1e6
"""A task alone in a group scores this in TAG's network selection (the reference's
``new_dict[cur_task] = -1e6``): a task is served alone only when nothing else covers it."""

CONFIDENCE = 0.95
"""Two-sided level of the interval a split must clear (its lower end above zero)."""


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


# ---- TAG's network selection -------------------------------------------------------------


def group_scores(affinity: Sequence[Sequence[float]], names: Sequence[str],
                 singleton: float = SINGLETON) -> dict[tuple[str, ...], dict[str, float]]:
    """Every non-empty group of tasks, each member's score in it: the mean affinity onto the
    member from the other members (``affinity[i][j]``: ``i`` onto ``j``); alone, ``singleton``."""
    index = {n: k for k, n in enumerate(names)}
    out: dict[tuple[str, ...], dict[str, float]] = {}
    for size in range(1, len(names) + 1):
        for group in itertools.combinations(names, size):
            out[group] = {
                j: (sum(affinity[index[i]][index[j]] for i in group if i != j) / (size - 1) if size > 1 else singleton)
                for j in group
            }
    return out


def select_groups(affinity: Sequence[Sequence[float]], names: Sequence[str], budget: int,
                  singleton: float = SINGLETON) -> dict[str, Any]:
    """TAG's network selection: at most ``budget`` groups (they may overlap) covering every
    task, maximising the mean over tasks of the task's score in its best chosen group.

    Exact, by dynamic programming over the tasks each chosen group serves (those blocks
    partition the tasks; a block's value is its best covering group's summed scores), so
    it returns the reference's brute-force optimum; ties go to fewer groups. Returns
    ``{"groups": [...], "served": {task: group}, "score": mean}``."""
    names = list(names)
    n = len(names)
    scores = group_scores(affinity, names, singleton)
    full = (1 << n) - 1
    members = {mask: tuple(names[k] for k in range(n) if mask >> k & 1) for mask in range(1, full + 1)}
    # best[block]: the best group containing the block, and the block's summed score in it
    best: dict[int, tuple[float, tuple[str, ...]]] = {}
    for block in range(1, full + 1):
        candidates = [g for g in range(1, full + 1) if g & block == block]
        value, group = max(((sum(scores[members[g]][t] for t in members[block]), members[g]) for g in candidates),
                           key=lambda vg: (vg[0], -len(vg[1])))
        best[block] = (value, group)
    # f[k][mask]: best summed score serving the tasks in mask with k blocks
    f: list[dict[int, tuple[float, list[int]]]] = [{0: (0.0, [])}]
    chosen = None
    for k in range(1, min(budget, n) + 1):
        layer: dict[int, tuple[float, list[int]]] = {}
        for mask, (value, blocks) in f[-1].items():
            rest = full & ~mask
            if not rest:
                continue
            low = rest & -rest  # the lowest unserved task starts the next block: each partition once
            sub = rest
            while sub:
                if sub & low:
                    total = value + best[sub][0]
                    key = mask | sub
                    if key not in layer or total > layer[key][0] + 1e-12:
                        layer[key] = (total, blocks + [sub])
                sub = (sub - 1) & rest
        f.append(layer)
        if full in layer and (chosen is None or layer[full][0] > chosen[0] + 1e-12):
            chosen = layer[full]
    assert chosen is not None
    served = {t: best[block][1] for block in chosen[1] for t in members[block]}
    groups = list(dict.fromkeys(best[block][1] for block in chosen[1]))
    return {"groups": [list(g) for g in groups], "served": {t: list(served[t]) for t in names},
            "score": chosen[0] / n}


# ---- branch trees, split only beyond noise -----------------------------------------------


def partitions(items: Sequence[str]) -> Iterator[list[tuple[str, ...]]]:
    """Every partition of ``items`` into non-empty groups (Bell(T) of them; T <= 8 here)."""
    items = list(items)
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in partitions(rest):
        for i in range(len(smaller)):
            yield smaller[:i] + [(first, *smaller[i])] + smaller[i + 1:]
        yield [(first,)] + smaller


def grouping_score(affinity: Sequence[Sequence[float]], names: Sequence[str], groups: Sequence[Sequence[str]]) -> float:
    """A stage's affinity score when its copies are shared by ``groups``: summed over tasks,
    the mean affinity onto a task from the others in its group (0 alone: no other task's
    update reaches it)."""
    index = {n: k for k, n in enumerate(names)}
    total = 0.0
    for group in groups:
        for j in group:
            others = [i for i in group if i != j]
            if others:
                total += sum(affinity[index[i]][index[j]] for i in others) / len(others)
    return total


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile for the mean of ``n`` samples (inf below two)."""
    if n < 2:
        return math.inf
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, n - 1))


def split_test(samples: Sequence[Sequence[Sequence[float]]], names: Sequence[str], group: Sequence[str],
               parts: Sequence[Sequence[str]], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Splitting ``group`` into ``parts`` at one stage, tested on the per-step matrices
    ``samples[step][i][j]``: the change of the stage's affinity score (split minus together)
    at every step, its mean, standard error and interval; ``split`` when the interval's
    lower end is above zero. Also the cross-part affinities with their standard errors."""
    deltas = [grouping_score(m, names, parts) - grouping_score(m, names, [tuple(group)]) for m in samples]
    n = len(deltas)
    mean = sum(deltas) / n if n else 0.0
    se = (math.sqrt(sum((d - mean) ** 2 for d in deltas) / (n - 1)) / math.sqrt(n)) if n > 1 else math.inf
    q = t_quantile(n, confidence)
    low, high = (mean - q * se, mean + q * se) if n > 1 else (-math.inf, math.inf)
    index = {t: k for k, t in enumerate(names)}
    part_of = {t: k for k, p in enumerate(parts) for t in p}
    cross = []
    for i in group:
        for j in group:
            if part_of[i] != part_of[j]:
                values = [m[index[i]][index[j]] for m in samples]
                zm = sum(values) / n if n else 0.0
                zse = math.sqrt(sum((v - zm) ** 2 for v in values) / (n - 1)) / math.sqrt(n) if n > 1 else math.inf
                cross.append({"from": i, "to": j, "z": zm, "se": zse, "low": zm - q * zse, "high": zm + q * zse})
    return {"group": list(group), "parts": [list(p) for p in parts], "delta": mean, "se": se, "low": low,
            "high": high, "steps": n, "confidence": confidence, "split": bool(n > 1 and low > 0.0), "cross": cross}


def _mean(samples: Sequence[Sequence[Sequence[float]]]) -> list[list[float]]:
    n = len(samples)
    size = len(samples[0]) if n else 0
    return [[sum(m[i][j] for m in samples) / n for j in range(size)] for i in range(size)]


def _stage(samples: Sequence[Sequence[Sequence[Sequence[float]]]], s: int) -> list[list[list[float]]]:
    return [[list(row) for row in step[s]] for step in samples]


def per_stage_tree(samples: Sequence[Sequence[Sequence[Sequence[float]]]], names: Sequence[str],
                   max_groups: int | None = None, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """From the input on, each stage keeps its parent's groups unless a refinement of one is
    beyond noise (:func:`split_test`); among those, the largest mean gain, at most
    ``max_groups`` groups a stage. Records every split considered and not made."""
    n_stages = len(samples[0]) if samples else 0
    parent: list[tuple[str, ...]] = [tuple(names)]
    branches, kept = [], []
    for s in range(n_stages):
        stage = _stage(samples, s)
        options: list[list[tuple[list[tuple[str, ...]], float, dict[str, Any] | None]]] = []
        for group in parent:
            choices: list[tuple[list[tuple[str, ...]], float, dict[str, Any] | None]] = [([group], 0.0, None)]
            best_kept = None
            for parts in partitions(group):
                if len(parts) < 2:
                    continue
                test = split_test(stage, names, group, parts, confidence)
                if test["split"]:
                    choices.append((list(parts), test["delta"], None))
                elif best_kept is None or test["delta"] > best_kept["delta"]:
                    best_kept = test
            if len(choices) == 1 and best_kept is not None:
                choices[0] = ([group], 0.0, best_kept)
            options.append(choices)
        best_choice, best_key = None, None
        for combo in itertools.product(*options):
            groups = [g for parts, _, _ in combo for g in parts]
            if max_groups is not None and len(groups) > max_groups:
                continue
            key = (round(sum(d for _, d, _ in combo), 12), -len(groups))
            if best_key is None or key > best_key:
                best_choice, best_key = combo, key
        assert best_choice is not None
        parent = [g for parts, _, _ in best_choice for g in parts]
        branches.append(parent)
        for parts, _, why in best_choice:
            if why is not None:
                kept.append({"stage": s, **why})
    return {"name": "per-stage", "branches": branches, "shared_within_noise": kept}


def propose_trees(samples: Sequence[Sequence[Sequence[Sequence[float]]]], names: Sequence[str],
                  max_groups: int | None = None,
                  network_samples: Sequence[Sequence[Sequence[float]]] | None = None,
                  confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Branch trees from the per-step, per-stage affinity (``samples[step][stage][i][j]``):

    - ``per-stage``: :func:`per_stage_tree`;
    - ``TAG, k groups`` for each budget ``k`` from 2 to ``max_groups`` (default: the number
      of tasks): :func:`select_groups` on the whole-trunk affinity (``network_samples``'
      mean; without it, the mean over stages), each task on the branch of the group that
      serves it; the tasks share every stage up to the first where that split is beyond
      noise (:func:`split_test` against keeping them together), and branch from there --
      or share every stage when it is beyond noise nowhere.

    Each: ``{"name", "branches", "score", "shared_within_noise"}`` (+ the selection for TAG
    trees), distinct trees only (one that several rules give is named ``"per-stage = TAG,
    2 groups"``), best score (summed over stages, the mean matrices) first."""
    names = list(names)
    if not samples:
        return [{"name": "per-stage", "branches": [], "score": 0.0, "shared_within_noise": []}]
    n_stages = len(samples[0])
    stage_means = [_mean(_stage(samples, s)) for s in range(n_stages)]
    if network_samples:
        whole = _mean(network_samples)
    else:
        whole = [[sum(m[i][j] for m in stage_means) / n_stages for j in range(len(names))] for i in range(len(names))]
    trees = [per_stage_tree(samples, names, max_groups, confidence)]
    top = len(names) if max_groups is None else min(max_groups, len(names))
    together = (tuple(names),)
    for k in range(2, top + 1):
        selection = select_groups(whole, names, k)
        blocks = list(dict.fromkeys(tuple(t for t in names if selection["served"][t] == selection["served"][u])
                                    for u in names))
        kept, start = [], n_stages
        if len(blocks) > 1:
            for s in range(n_stages):
                test = split_test(_stage(samples, s), names, names, blocks, confidence)
                if test["split"]:
                    start = s
                    break
                kept.append({"stage": s, **test})
        branches = [list(together)] * start + [blocks] * (n_stages - start)
        trees.append({"name": f"TAG, {k} groups", "branches": branches, "selection": selection,
                      "shared_within_noise": kept})
    out: list[dict[str, Any]] = []
    seen: dict[tuple, dict[str, Any]] = {}
    for t in trees:
        key = tuple(tuple(sorted(tuple(sorted(g)) for g in part)) for part in t["branches"])
        if key in seen:  # the same tree again: one entry, both names
            kept = seen[key]
            kept["name"] += f" = {t['name']}"
            if "selection" in t and "selection" not in kept:
                kept["selection"] = t["selection"]
            continue
        seen[key] = t
        t["score"] = sum(grouping_score(stage_means[s], names, part) for s, part in enumerate(t["branches"]))
        t["branches"] = [[list(g) for g in part] for part in t["branches"]]
        out.append(t)
    return sorted(out, key=lambda t: -t["score"])


def shared_reason(why: dict[str, Any], stages: Sequence[str]) -> str:
    """One sentence: why a stage stayed shared (the split's gain within its noise)."""
    parts = " ".join("{" + ",".join(p) + "}" for p in why["parts"])
    cross = "; ".join(f"{c['from']}->{c['to']} {c['z']:.3g} [{c['low']:.3g}, {c['high']:.3g}]" for c in why["cross"])
    level = int(round(100 * why.get("confidence", 0.95)))
    verdict = "not beyond noise" if why["delta"] > 0 else "sharing scores at least as high"
    return (f"{stages[why['stage']]}: {{{','.join(why['group'])}}} shared; the best split, {parts}, would change the "
            f"affinity score by {why['delta']:.3g} [{why['low']:.3g}, {why['high']:.3g}] ({level} % interval over "
            f"{why['steps']} steps): {verdict}; cross affinities {cross}")
