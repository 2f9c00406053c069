"""torchvision backbones cut into stages. Random init or a local weights file; no download.

``weights`` is a torchvision ``state_dict`` for the whole network (e.g. the file
torchvision would download, copied by hand), loaded before the network is cut. When
``in_channels != 3`` the first convolution's weights are averaged over RGB.
"""
from __future__ import annotations

from pathlib import Path

import torch
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


def _network(name: str, weights: str | Path | None) -> nn.Module:
    """torchvision's network ``name``, random init or ``weights``. torchvision is imported
    here, not at module import: it costs a second and most runs never need it."""
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    if weights is not None:
        load_local_weights(net, weights)
    return net


def _resnet(name: str, in_channels: int, weights: str | Path | None) -> list[Stage]:
    net = _network(name, weights)
    stem = nn.Sequential(_adapt_first_conv(net.conv1, in_channels), net.bn1, net.relu, net.maxpool)
    widths = [net.layer1[-1].conv2.out_channels, net.layer2[-1].conv2.out_channels,
              net.layer3[-1].conv2.out_channels, net.layer4[-1].conv2.out_channels]
    return [
        Stage("stem", stem, 64),
        *(Stage(f"layer{i + 1}", getattr(net, f"layer{i + 1}"), w) for i, w in enumerate(widths)),
    ]


@register_backbone("resnet18")
def resnet18(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """ResNet-18: ``stem`` (conv1, bn, relu, maxpool), ``layer1``..``layer4`` (64..512 channels)."""
    return _resnet("resnet18", in_channels, weights)


@register_backbone("resnet34")
def resnet34(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """ResNet-34: ``stem``, ``layer1``..``layer4`` (64..512 channels)."""
    return _resnet("resnet34", in_channels, weights)


@register_backbone("squeezenet1_1")
def squeezenet1_1(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """SqueezeNet 1.1: ``conv1``, ``fire2``..``fire9`` (max-pools ride with fire3 and fire5).

    Seed 002's flower network shares the layers up to ``fire8`` and gives each task
    its own ``fire9`` and classifier: ``split_point: 8``.
    """
    f = _network("squeezenet1_1", weights).features
    conv1 = nn.Sequential(_adapt_first_conv(f[0], in_channels), f[1], f[2])
    return [
        Stage("conv1", conv1, 64),
        Stage("fire2", f[3], 128),
        Stage("fire3", nn.Sequential(f[4], f[5]), 128),
        Stage("fire4", f[6], 256),
        Stage("fire5", nn.Sequential(f[7], f[8]), 256),
        Stage("fire6", f[9], 384),
        Stage("fire7", f[10], 384),
        Stage("fire8", f[11], 512),
        Stage("fire9", f[12], 512),
    ]


@register_backbone("mobilenet_v3_small")
def mobilenet_v3_small(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """MobileNetV3-Small cut where the resolution halves: ``stem``, ``block1``..``block4``, ``head``."""
    f = _network("mobilenet_v3_small", weights).features
    stem = f[0]
    stem[0] = _adapt_first_conv(stem[0], in_channels)
    return [
        Stage("stem", stem, 16),
        Stage("block1", f[1], 16),
        Stage("block2", nn.Sequential(*f[2:4]), 24),
        Stage("block3", nn.Sequential(*f[4:9]), 48),
        Stage("block4", nn.Sequential(*f[9:12]), 96),
        Stage("head", f[12], 576),
    ]


@register_backbone("vgg11_bn")
def vgg11_bn(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """VGG-11 with batch norm, one stage per block ending in a max-pool: ``conv1``..``conv5``."""
    f = _network("vgg11_bn", weights).features
    first = nn.Sequential(_adapt_first_conv(f[0], in_channels), *f[1:4])
    return [
        Stage("conv1", first, 64),
        Stage("conv2", nn.Sequential(*f[4:8]), 128),
        Stage("conv3", nn.Sequential(*f[8:15]), 256),
        Stage("conv4", nn.Sequential(*f[15:22]), 512),
        Stage("conv5", nn.Sequential(*f[22:29]), 512),
    ]


@register_backbone("alexnet")
def alexnet(in_channels: int, weights: str | Path | None = None) -> list[Stage]:
    """AlexNet as in the cross-stitch paper: ``conv1``..``conv5`` then ``fc6``, ``fc7``.

    Misra et al. (2016) sweep the split from fc8 down to no sharing over exactly these
    layers. ``fc6``/``fc7`` output vectors; inputs must be at least 63x63 pixels.
    """
    net = _network("alexnet", weights)
    f, c = net.features, net.classifier
    return [
        Stage("conv1", nn.Sequential(_adapt_first_conv(f[0], in_channels), f[1], f[2]), 64),
        Stage("conv2", nn.Sequential(f[3], f[4], f[5]), 192),
        Stage("conv3", nn.Sequential(f[6], f[7]), 384),
        Stage("conv4", nn.Sequential(f[8], f[9]), 256),
        Stage("conv5", nn.Sequential(f[10], f[11], f[12]), 256),
        Stage("fc6", nn.Sequential(net.avgpool, nn.Flatten(), c[0], c[1], c[2]), 4096, spatial=False),
        Stage("fc7", nn.Sequential(c[3], c[4], c[5]), 4096, spatial=False),
    ]
