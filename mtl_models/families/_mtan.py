"""Multi-Task Attention Network, MTAN (Liu, Johns & Davison, CVPR 2019), in the layout of
the authors' code (lorenmt/mtan, ``model_segnet_mtan.py``) and LibMTL's ``MTAN``.

One backbone shared by every task. After each attended stage ``s`` every task ``t`` has
its own soft-attention module ``g_t^s`` (two 1x1 convolutions with batch norm, ReLU
between, sigmoid at the end: the reference's ``att_layer``) whose mask gates the stage's
features: ``h_t^s = g_t^s([F^s ; f^{s'}(h_t^{s'})]) * F^s`` (the paper's eq. 1-2; at
the first attended stage the mask reads ``F^s`` alone). ``f^{s'}`` is **one** block per
attended stage, shared by the tasks (the reference's ``encoder_block_att``: a 3x3
convolution, batch norm and ReLU from stage ``s'``'s channels to stage ``s``'s, then
max pooling to stage ``s``'s resolution: 2x2 where it halves, as the reference's
``max_pool2d``, adaptive otherwise); it carries each task's attended features at the
attended stage ``s'`` before to stage ``s``. Each task's head reads its attended
features at the last stage, which is always attended and, as in LibMTL's encoder, has
no block after it; which earlier stages are attended (``mtan_stages``) is searched. On
stages that output vectors (AlexNet's fc layers) the convolutions are linear layers.

Where the mask reads: in the reference a stage is two convolution blocks and the mask
reads the first one's output (the stage's *intermediate* features; LibMTL's ResNet:
all but the last residual block of a layer) and gates the second's. A stage here is one
module of the backbone's list with no named inside, so the mask reads and gates the
same features, the stage's output ``F^s``: splitting a stage would make the family
know each backbone's modules (house style: no backbone special-cased).

Parameters: the backbone once; per task and attended stage ``s`` with ``C_s`` channels
the mask's ``(C_s [+ C_s]) C_s + C_s C_s`` weights, biases and two batch norms; per
attended stage after the first one shared block ``9 C_{s'} C_s + C_s`` and its batch
norm. The mask's inner width is ``C_s`` (lorenmt's; LibMTL's ResNet-50 uses ``C_s / 4``).
"""
from __future__ import annotations

from typing import Annotated, Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._describe import stage_span
from .._markers import SpaceDefault, StageSubset
from ..tasks import TaskSpec
from ._base import MultiTaskModel, backbone_copies, build_heads, register_family, tasks_from_config


def _layer(spatial: bool, inputs: int, outputs: int, kernel: int = 1) -> nn.Module:
    if spatial:
        return nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2)
    return nn.Linear(inputs, outputs)


def _norm(spatial: bool, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if spatial else nn.BatchNorm1d(channels)


class TaskAttention(nn.Module):
    """One task's attention at one stage: ``mask([F ; previous]) * F`` (``previous`` optional)."""

    def __init__(self, channels: int, spatial: bool, with_previous: bool) -> None:
        super().__init__()
        inputs = 2 * channels if with_previous else channels
        self.mask = nn.Sequential(
            _layer(spatial, inputs, channels), _norm(spatial, channels), nn.ReLU(inplace=True),
            _layer(spatial, channels, channels), _norm(spatial, channels), nn.Sigmoid(),
        )

    def forward(self, features: Tensor, previous: Tensor | None = None) -> Tensor:
        x = features if previous is None else torch.cat([features, previous], dim=1)
        return self.mask(x) * features


class SharedBlock(nn.Module):
    """The block that carries a task's attended features to the next attended stage, one
    per stage for all tasks (the reference's ``encoder_block_att``): a 3x3 convolution (a
    linear layer on vectors), batch norm and ReLU to the next stage's channels, then max
    pooling to its resolution (global, to reach vectors)."""

    def __init__(self, inputs: int, outputs: int, in_spatial: bool, out_spatial: bool) -> None:
        super().__init__()
        if out_spatial and not in_spatial:
            raise ValueError("MTAN cannot carry vector features back to a spatial stage.")
        self.in_spatial, self.out_spatial = in_spatial, out_spatial
        self.block = nn.Sequential(
            _layer(in_spatial, inputs, outputs, 3 if in_spatial else 1), _norm(in_spatial, outputs), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        x = self.block(x)
        if not self.in_spatial:
            return x
        if not self.out_spatial:
            return torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
        size, target = tuple(x.shape[-2:]), tuple(like.shape[-2:])
        if size == target:
            return x
        if target == (size[0] // 2, size[1] // 2):
            return F.max_pool2d(x, kernel_size=2, stride=2)
        return F.adaptive_max_pool2d(x, target)


class MTANModel(MultiTaskModel):
    """A shared backbone with per-task attention after the stages in ``attended`` (the last
    included) and one shared block between consecutive attended stages."""

    def __init__(
        self,
        tasks: list[TaskSpec],
        input_spec: dict[str, Any],
        stages: list,  # the backbone's Stage objects, built once
        attended: Sequence[int],
        heads: nn.ModuleDict,
    ) -> None:
        super().__init__(tasks, input_spec)
        n = len(stages)
        bad = [s for s in attended if not 0 <= s < n]
        if bad:
            raise ValueError(f"mtan_stages {bad} out of range; stages are 0..{n - 1}.")
        self.backbone = nn.ModuleList(stage.module for stage in stages)
        self.attended = sorted(set(int(s) for s in attended) | {n - 1})
        self.attention = nn.ModuleDict()
        self.carry = nn.ModuleDict()  # stage -> the shared block from the attended stage before
        previous = None
        for s in self.attended:
            stage = stages[s]
            self.attention[str(s)] = nn.ModuleDict(
                {t.name: TaskAttention(stage.out_channels, stage.spatial, previous is not None) for t in tasks}
            )
            if previous is not None:
                before = stages[previous]
                self.carry[str(s)] = SharedBlock(before.out_channels, stage.out_channels, before.spatial, stage.spatial)
            previous = s
        self.heads = heads

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        attended: dict[str, Tensor | None] = {t: None for t in self.task_names}
        for s, stage in enumerate(self.backbone):
            x = stage(x)
            key = str(s)
            if key not in self.attention:
                continue
            for t in self.task_names:
                previous = attended[t]
                if previous is not None:
                    previous = self.carry[key](previous, x)
                attended[t] = self.attention[key][t](x, previous)
        return {t: self.heads[t](attended[t]) for t in self.task_names}

    def shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's ``W``: the backbone's last stage, which every task's attention reads."""
        return list(self.backbone[-1].parameters())

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Every task reaches the whole backbone and the shared blocks that carry attended
        features between stages; its own attention modules and head are its alone."""
        shared = [*self.backbone.parameters(), *self.carry.parameters()]
        return {
            t: shared + [p for stage in self.attention.values() for p in stage[t].parameters()] + list(self.heads[t].parameters())
            for t in self.task_names
        }


def _describe(config: dict[str, Any]) -> str:
    stages = config.get("mtan_stages")
    return "mtan attend " + ("all" if stages is None else ",".join(str(s) for s in stages))


def _structure(config: dict[str, Any], names: list[str]) -> str:
    stages = config.get("mtan_stages")
    where = stage_span(names, range(len(names)) if stages is None else stages)
    return f"one shared network; each task attends to its features after {where}"


@register_family("mtan", describe=_describe, structure=_structure)
def mtan(
    config: dict[str, Any],
    *,
    stages: Annotated[Optional[list[int]], StageSubset("attend", last=True), SpaceDefault("search")] = None,
) -> MTANModel:
    """One shared backbone, each task's attention after ``stages`` (None: every stage; the
    last always). The space searches which earlier stages are attended by default."""
    tasks = tasks_from_config(config)
    backbone = backbone_copies(config, 1)[0]
    heads = build_heads(config, tasks, backbone[-1])
    return MTANModel(tasks, config["input"], backbone, range(len(backbone)) if stages is None else stages, heads)
