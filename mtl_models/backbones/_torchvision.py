"""torchvision backbones cut into stages. Random init or a local weights file; no download."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from ._registry import Stage, load_local_weights, register_backbone


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs; weights averaged over RGB."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


@register_backbone("resnet18")
def resnet18(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """torchvision ResNet-18 as five stages: ``stem`` (conv1, bn, relu, maxpool), ``layer1``..``layer4``.

    ``weights`` is a local torchvision ``state_dict`` (e.g. ``resnet18-f37072fd.pth``
    copied by hand); the first conv is averaged over RGB when ``in_channels != 3``.
    """
    net = torchvision.models.resnet18(weights=None)
    if weights is not None:
        load_local_weights(net, weights)
    stem = nn.Sequential(_adapt_first_conv(net.conv1, in_channels), net.bn1, net.relu, net.maxpool)
    return [
        Stage("stem", stem, 64),
        Stage("layer1", net.layer1, 64),
        Stage("layer2", net.layer2, 128),
        Stage("layer3", net.layer3, 256),
        Stage("layer4", net.layer4, 512),
    ]
