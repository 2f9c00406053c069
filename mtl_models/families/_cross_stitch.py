"""Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016).

One column (a full backbone) per task. After each chosen stage a cross-stitch unit
replaces every column's activation by a learned per-channel linear combination of all
columns' activations: ``x~_i[c] = sum_j alpha[i, j, c] * x_j[c]`` (the paper's eq. 1,
for any number of tasks). ``alpha`` starts at ``alpha_same`` on the diagonal and
``alpha_diff`` elsewhere. The paper's 2-task pairs, (0.9, 0.1) and (0.5, 0.5), are
convex rows; for ``T`` tasks the search keeps rows convex with
``alpha_diff = (1 - alpha_same) / (T - 1)`` (``alpha_diff: convex``), so a unit neither amplifies nor
shrinks its input at the start. The units train at ``lr x lr_multiplier``: the paper's
10^2-10^3 is for SGD, whose step scales with the tiny gradient on ``alpha``; under
Adam-type optimisers the step is about the learning rate itself, so the search's
default range depends on the optimizer (``lr_multiplier: auto``, :data:`LR_MULTIPLIER_RANGES`).

``cross_stitch_unit`` sets the units' granularity: ``channel`` (the paper's, one alpha per
task pair and channel), ``scalar`` (one per task pair, as LibMTL implements it) or
``nddr`` (NDDR-CNN's 1x1-convolution fusion of the concatenated columns).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Sequence

import torch
from annotated_types import Ge, Gt, Le
from torch import Tensor, nn

from .._describe import stage_span
from .._markers import ByConfig, Derived, SpaceDefault, StageSubset
from ..tasks import TaskSpec
from ._base import MultiTaskModel, backbone_copies, build_heads, register_family, tasks_from_config


def _channels_last(xs: list[Tensor]) -> bool:
    """Whether the columns' activations are in the channels-last layout (``channels_last``)."""
    x = xs[0]
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _mix_in_layout(alpha: Tensor, xs: list[Tensor]) -> list[Tensor]:
    """``x~_i = sum_j alpha[i, j] * x_j`` (per channel for a ``(T, T, C)`` ``alpha``, else one
    scalar per pair) by elementwise products, which keep the activations' layout: the einsum
    of the default path goes through a stacked tensor in the default layout, so on
    channels-last activations every unit would copy them out of it and the next
    convolution back in (on a CPU slower than the units themselves)."""
    out = []
    for i in range(len(xs)):
        total = None
        for j, x in enumerate(xs):
            weight = alpha[i, j].view(1, -1, 1, 1) if alpha.dim() == 3 else alpha[i, j]
            total = weight * x if total is None else total + weight * x
        out.append(total)
    return out


class CrossStitchUnit(nn.Module):
    """Mixes ``T`` same-shaped activations ``(B, C, ...)`` per channel with ``alpha`` of shape ``(T, T, C)``."""

    def __init__(self, num_tasks: int, channels: int, alpha_same: float, alpha_diff: float, spatial: bool = True) -> None:
        super().__init__()
        alpha = torch.full((num_tasks, num_tasks, channels), float(alpha_diff))
        alpha[torch.arange(num_tasks), torch.arange(num_tasks)] = float(alpha_same)
        self.alpha = nn.Parameter(alpha)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        if _channels_last(xs):
            return _mix_in_layout(self.alpha.to(xs[0].dtype), xs)
        mixed = torch.einsum("ijc,jbc...->ibc...", self.alpha.to(xs[0].dtype), torch.stack(xs))
        return list(mixed.unbind(0))

    def alphas(self) -> Tensor:
        """``(T, T, C)``: how much of column ``j``'s channel ``c`` goes into column ``i``."""
        return self.alpha.detach().cpu()

    def parameters_to(self, task: int, last: bool) -> list[nn.Parameter]:
        """The unit's parameters column ``task``'s output depends on (``last``: no later unit
        mixes the columns again): ``alpha``, whose row ``task`` it reads."""
        return [self.alpha]


class ScalarCrossStitchUnit(nn.Module):
    """One ``alpha`` per pair of tasks, shared by all channels, ``(T, T)`` (LibMTL's cross-stitch)."""

    def __init__(self, num_tasks: int, channels: int, alpha_same: float, alpha_diff: float, spatial: bool = True) -> None:
        super().__init__()
        alpha = torch.full((num_tasks, num_tasks), float(alpha_diff))
        alpha.fill_diagonal_(float(alpha_same))
        self.alpha = nn.Parameter(alpha)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        if _channels_last(xs):
            return _mix_in_layout(self.alpha.to(xs[0].dtype), xs)
        mixed = torch.einsum("ij,jb...->ib...", self.alpha.to(xs[0].dtype), torch.stack(xs))
        return list(mixed.unbind(0))

    def alphas(self) -> Tensor:
        return self.alpha.detach().cpu().unsqueeze(-1)

    def parameters_to(self, task: int, last: bool) -> list[nn.Parameter]:
        """``alpha``, whose row ``task`` column ``task``'s output reads."""
        return [self.alpha]


# MTL-NAS's NDDR batch norm (``get_nddr_bn``: eps 1e-3, ``cfg.MODEL.BATCH_NORM_MOMENTUM`` 0.05
# in the default config), in PyTorch's momentum convention, which MTL-NAS passes straight
# to ``nn.BatchNorm2d``: running = 0.95 running + 0.05 batch.
NDDR_BN_EPS = 1e-3
NDDR_BN_MOMENTUM = 0.05


class NDDRUnit(nn.Module):
    """NDDR fusion (Gao, Ma, Zhao, Liu, Yuille, CVPR 2019): for each task, a 1x1 convolution
    of all ``T`` columns' concatenated features ``(B, T C, ...) -> (B, C, ...)`` without bias,
    then batch norm (MTL-NAS's: eps 1e-3, momentum 0.05) and ReLU, in MTL-NAS's order
    (``common_layers.NDDR``; NDDR-CNN-PyTorch's default puts the ReLU before the batch norm). A cross-stitch unit is the special case whose convolution only mixes a
    channel with the same channel of the other columns; NDDR learns any mix.

    Initialised "identity-like", as NDDR-CNN and MTL-NAS do: channel ``c`` of task ``i``'s
    output starts as ``alpha_same`` times its own column's channel ``c`` plus
    ``alpha_diff`` times every other column's channel ``c``, all other weights zero. On
    vectors (``spatial`` False) the convolution is a linear layer.
    """

    def __init__(self, num_tasks: int, channels: int, alpha_same: float, alpha_diff: float, spatial: bool = True) -> None:
        super().__init__()
        self.num_tasks, self.channels = num_tasks, channels
        self.fuse = nn.ModuleList(
            nn.Conv2d(num_tasks * channels, channels, 1, bias=False) if spatial
            else nn.Linear(num_tasks * channels, channels, bias=False)
            for _ in range(num_tasks)
        )
        norm = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        self.norm = nn.ModuleList(
            norm(channels, eps=NDDR_BN_EPS, momentum=NDDR_BN_MOMENTUM) for _ in range(num_tasks)
        )
        with torch.no_grad():
            eye = torch.eye(channels)
            for i, layer in enumerate(self.fuse):
                blocks = [eye * (alpha_same if j == i else alpha_diff) for j in range(num_tasks)]
                layer.weight.copy_(torch.cat(blocks, dim=1).view_as(layer.weight))

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        stacked = torch.cat(xs, dim=1)
        return [torch.relu(norm(fuse(stacked))) for fuse, norm in zip(self.fuse, self.norm)]

    def parameters_to(self, task: int, last: bool) -> list[nn.Parameter]:
        """Task ``task``'s own convolution and batch norm; before the last unit, every task's
        (a later unit mixes the other columns back in)."""
        if last:
            return [*self.fuse[task].parameters(), *self.norm[task].parameters()]
        return list(self.parameters())

    def alphas(self) -> Tensor:
        """``(T, T, C)``: the channel-diagonal of each column's block of each task's convolution
        (what a cross-stitch unit would have; the rest of the learned mix is off it)."""
        out = torch.empty(self.num_tasks, self.num_tasks, self.channels)
        index = torch.arange(self.channels)
        for i, layer in enumerate(self.fuse):
            weight = layer.weight.detach().cpu().view(self.channels, self.num_tasks, self.channels)
            out[i] = weight[index, :, index].T
        return out


UNITS: dict[str, type[nn.Module]] = {"channel": CrossStitchUnit, "scalar": ScalarCrossStitchUnit, "nddr": NDDRUnit}


class CrossStitchModel(MultiTaskModel):
    """``T`` task columns with cross-stitch units after the stages in ``stitch_after``."""

    def __init__(
        self,
        tasks: list[TaskSpec],
        input_spec: dict[str, Any],
        columns: list[list],  # columns[t][s]: Stage s of task t's column
        stitch_after: Sequence[int],
        alpha_same: float,
        alpha_diff: float,
        lr_multiplier: float,
        heads: nn.ModuleDict,
        unit: str = "channel",
    ) -> None:
        super().__init__(tasks, input_spec)
        if unit not in UNITS:
            raise ValueError(f"cross_stitch_unit {unit!r} is not known; allowed: {', '.join(UNITS)}.")
        num_stages = len(columns[0])
        bad = [s for s in stitch_after if not 0 <= s < num_stages]
        if bad:
            raise ValueError(f"cross_stitch_stages {bad} out of range; stages are 0..{num_stages - 1}.")
        self.columns = nn.ModuleList(nn.ModuleList(stage.module for stage in column) for column in columns)
        self.stitch_after = sorted(set(int(s) for s in stitch_after))
        self.units = nn.ModuleDict(
            {
                str(s): UNITS[unit](len(tasks), columns[0][s].out_channels, alpha_same, alpha_diff, columns[0][s].spatial)
                for s in self.stitch_after
            }
        )
        self.lr_multiplier = float(lr_multiplier)
        self.heads = heads

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        xs = [x for _ in self.columns]
        for s in range(len(self.columns[0])):
            xs = [column[s](xi) for column, xi in zip(self.columns, xs)]
            key = str(s)
            if key in self.units:
                xs = self.units[key](xs)
        return {t: self.heads[t](xi) for t, xi in zip(self.task_names, xs)}

    def param_groups(self) -> list[dict[str, Any]]:
        units = set(id(p) for p in self.units.parameters())
        return [
            {"params": [p for p in self.parameters() if id(p) not in units], "lr_scale": 1.0},
            {"params": list(self.units.parameters()), "lr_scale": self.lr_multiplier, "weight_decay": 0.0},
        ]

    def shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's ``W``: the deepest parameters every task's loss reaches, the stage that
        feeds the last cross-stitch unit, in every column. Task ``i``'s output depends on
        column ``j``'s stage through ``alpha[i, j]``, so each task's gradient reaches all of
        them (the last unit's own ``alpha`` would not do: task ``i``'s loss reaches only its
        row ``i``). Empty without units (nothing is shared)."""
        if not self.stitch_after:
            return []
        stage = self.stitch_after[-1]
        return [p for column in self.columns for p in column[stage].parameters()]

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Task ``i`` reaches its own column and head, every column's stages up to the last
        unit (which mixes them into column ``i``), and the units' parameters that column
        ``i`` reads (:meth:`CrossStitchUnit.parameters_to`)."""
        last = self.stitch_after[-1] if self.stitch_after else -1
        out = {}
        for i, t in enumerate(self.task_names):
            params = [
                p
                for j, column in enumerate(self.columns)
                for s, stage in enumerate(column)
                if j == i or s <= last
                for p in stage.parameters()
            ]
            params += [p for s, unit in self.units.items() for p in unit.parameters_to(i, int(s) == last)]
            out[t] = params + list(self.heads[t].parameters())
        return out

    def init_columns_from(self, singles: dict[str, MultiTaskModel]) -> None:
        """Start each task's column and head from that task's single-task network
        (Misra et al.'s second recipe: columns from single-task fine-tuned networks).

        ``singles[task]`` is a single-task ``hard_split``/``single_task`` model with the
        same backbone (one copy of every stage).
        """
        for i, task in enumerate(self.task_names):
            single = singles[task]
            for s, column_stage in enumerate(self.columns[i]):
                column_stage.load_state_dict(single.blocks[s][0].state_dict())
            self.heads[task].load_state_dict(single.heads[task].state_dict())

    def alphas(self) -> dict[str, Tensor]:
        """The learned ``alpha`` of each unit, keyed by the stage it follows, ``(T, T, C)``
        (``C`` = 1 for scalar units; the channel-diagonal for NDDR units)."""
        return {s: unit.alphas() for s, unit in self.units.items()}


# The units' learning-rate multiplier searched by default (``lr_multiplier: auto``), by
# optimizer, from bench/cross_stitch_lr.py (4 tasks, convex init 0.7/0.1, 8 epochs, 2 seeds;
# bench/results/cross_stitch_lr.json). SGD (momentum 0.9): a step on alpha scales with its
# tiny gradient, so the units need a large multiplier, as in the paper; 10-100 gave the
# best Delta_m (-8.4 and -8.2) and 1000, the paper's upper end, diverged at lr 0.03.
# Adam/AdamW: a step on alpha is about lr x multiplier whatever the gradient; 0.1-10 kept
# |alpha| under 2.1 (Delta_m -2.3 to -1.3), 100 grew it to 7.8 (-5.2) and 1000 to 47 with
# rows of negative sum (-36): the paper's range, taken over to Adam, breaks the units.
LR_MULTIPLIER_RANGES: dict[str, dict[str, Any]] = {
    "sgd": {"low": 10.0, "high": 100.0, "log": True},
    "adam": {"low": 0.1, "high": 10.0, "log": True},
    "adamw": {"low": 0.1, "high": 10.0, "log": True},
}


def convex_alpha_diff(config: dict[str, Any]) -> float:
    """``(1 - alpha_same) / (T - 1)``: every unit row sums to 1, the rest shared evenly among
    the other tasks (the paper's 2-task pairs (0.9, 0.1), (0.5, 0.5) are convex)."""
    return (1.0 - float(config["alpha_same"])) / (len(config["tasks"]) - 1)


Alpha = Annotated[float, Ge(0.0), Le(1.0)]  # Misra et al. initialise in [0, 1]


def _describe(config: dict[str, Any]) -> str:
    stages = config.get("cross_stitch_stages")
    where = "" if stages is None else " at " + ",".join(str(s) for s in stages)
    init = " from single-task" if config.get("column_init") == "single_task" else ""
    unit = config.get("cross_stitch_unit") or "channel"
    kind = "cross_stitch" if unit == "channel" else f"cross_stitch[{unit}]"
    return (f"{kind} a=({config.get('alpha_same', 0):.2f}, {config.get('alpha_diff', 0):.2f})"
            f" lr x{config.get('lr_multiplier', 1):.3g}{where}{init}")


def _structure(config: dict[str, Any], names: list[str]) -> str:
    stages = config.get("cross_stitch_stages")
    where = stage_span(names, range(len(names)) if stages is None else stages)
    unit = config.get("cross_stitch_unit") or "channel"
    kind = {"channel": "cross-stitch units", "scalar": "scalar cross-stitch units",
            "nddr": "NDDR units"}.get(unit, f"{unit} units")
    return f"one network (column) per task; {kind} mixing the task columns after {where}"


@register_family(
    "cross_stitch",
    config_keys={"alpha_same": "alpha_same", "alpha_diff": "alpha_diff", "lr_multiplier": "lr_multiplier",
                 "column_init": "column_init"},
    describe=_describe,
    structure=_structure,
)
def cross_stitch(
    config: dict[str, Any],
    *,
    alpha_same: Annotated[Alpha, SpaceDefault({"low": 0.5, "high": 1.0})] = 0.9,
    alpha_diff: Annotated[Alpha, Derived("convex", convex_alpha_diff, ("alpha_same",), "each unit row sums to 1"),
                          SpaceDefault("convex")] = 0.1,
    lr_multiplier: Annotated[float, Gt(0.0), ByConfig("auto", "optimizer", LR_MULTIPLIER_RANGES,
                                                       "bench/cross_stitch_lr.py"), SpaceDefault("auto")] = 1.0,
    stages: Annotated[Optional[list[int]], StageSubset("stitch")] = None,
    unit: Literal["channel", "scalar", "nddr"] = "channel",
    column_init: Literal["backbone", "single_task"] = "backbone",
) -> CrossStitchModel:
    """One column per task, a ``unit`` (``channel``, ``scalar``, ``nddr``) after each of
    ``stages`` (None: every stage) starting at ``alpha_same``/``alpha_diff`` and training at
    ``lr x lr_multiplier``. ``alpha_diff: convex`` in the space keeps the rows convex
    (:func:`convex_alpha_diff`); ``lr_multiplier: auto`` searches the optimizer's range
    (:data:`LR_MULTIPLIER_RANGES`). ``column_init``: ``backbone`` (as the backbone section
    builds it) or ``single_task`` (the trainable then loads this run's single-task networks
    into the columns, Misra et al.'s second recipe; the builder builds the same network)."""
    tasks = tasks_from_config(config)
    columns = backbone_copies(config, len(tasks))
    heads = build_heads(config, tasks, columns[0][-1])
    return CrossStitchModel(
        tasks,
        config["input"],
        columns,
        range(len(columns[0])) if stages is None else stages,
        alpha_same=float(alpha_same),
        alpha_diff=float(alpha_diff),
        lr_multiplier=float(lr_multiplier),
        heads=heads,
        unit=unit or "channel",
    )
