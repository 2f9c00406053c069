"""Multi-Task Attention Network, MTAN (Liu, Johns & Davison, CVPR 2019).

One backbone shared by every task; after each attended stage every task has its own
soft-attention module that selects, per channel and position, which of the shared
features it uses: ``h_t^s = a_t^s * F^s`` with the mask
``a_t^s = sigmoid(g_t^s([F^s ; p(h_t^{s'})]))`` (the paper's eq. 1-2), ``F^s`` the shared
features after stage ``s``, ``h_t^{s'}`` the task's attended features at the attended
stage before (carried to stage ``s``'s size by ``p``: pooling, then a 3x3 convolution,
batch norm and ReLU, the paper's ``f``), ``g`` two 1x1 convolutions with batch norm
(ReLU between, sigmoid at the end). Each task's head reads its attended features at the
last stage, which is always attended; which earlier stages are (``mtan_stages``) is
searched. On stages that output vectors (AlexNet's fc layers) the 1x1 convolutions are
linear layers.

Parameters: the backbone once, plus per task and attended stage ``s`` with ``C_s``
channels the mask (``(C_s [+ C_s]) C_s + C_s C_s`` weights, biases and batch norms) and
the carry from the previous attended stage.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


class Carry(nn.Module):
    """A task's attended features carried to the next attended stage's size: pooled to its
    resolution (global pooling to reach vectors), then a 3x3 convolution (a linear layer on
    vectors), batch norm and ReLU to its channels."""

    def __init__(self, inputs: int, outputs: int, in_spatial: bool, out_spatial: bool) -> None:
        super().__init__()
        if out_spatial and not in_spatial:
            raise ValueError("MTAN cannot carry vector features back to a spatial stage.")
        self.in_spatial, self.out_spatial = in_spatial, out_spatial
        self.block = nn.Sequential(
            _layer(out_spatial, inputs, outputs, 3 if out_spatial else 1), _norm(out_spatial, outputs), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        if self.out_spatial:
            if x.shape[-2:] != like.shape[-2:]:
                x = F.adaptive_avg_pool2d(x, like.shape[-2:])
        elif self.in_spatial:
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.block(x)


class MTANModel(MultiTaskModel):
    """A shared backbone with per-task attention after the stages in ``attended`` (the last included)."""

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
        self.carry = nn.ModuleDict()
        previous = None
        for s in self.attended:
            stage = stages[s]
            self.attention[str(s)] = nn.ModuleDict(
                {t.name: TaskAttention(stage.out_channels, stage.spatial, previous is not None) for t in tasks}
            )
            if previous is not None:
                before = stages[previous]
                self.carry[str(s)] = nn.ModuleDict(
                    {t.name: Carry(before.out_channels, stage.out_channels, before.spatial, stage.spatial) for t in tasks}
                )
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
                    previous = self.carry[key][t](previous, x)
                attended[t] = self.attention[key][t](x, previous)
        return {t: self.heads[t](attended[t]) for t in self.task_names}

    def shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's ``W``: the backbone's last stage, which every task's attention reads."""
        return list(self.backbone[-1].parameters())


@register_family("mtan")
def mtan(config: dict[str, Any]) -> MTANModel:
    tasks = tasks_from_config(config)
    stages = backbone_copies(config, 1)[0]
    attended = config.get("mtan_stages")
    if attended is None:
        attended = range(len(stages))
    heads = build_heads(config, tasks, stages[-1])
    return MTANModel(tasks, config["input"], stages, attended, heads)
