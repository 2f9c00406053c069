"""MTAN and NDDR units against their reference code, written out here with ``torch.nn.functional``
on the model's own weights.

MTAN (lorenmt/mtan ``model_segnet_mtan.py``, LibMTL ``architecture/MTAN.py``): per task and
stage ``att = sigmoid(BN(conv1x1(relu(BN(conv1x1(in))))))``, ``in`` the shared features
(the first attended stage) or their concatenation with the task's carried features;
``h = att * F``; carried to the next stage by the stage's ONE shared ``encoder_block_att``
(3x3 conv, BN, ReLU) and 2x2 max pooling. NDDR (MTL-NAS ``common_layers.NDDR``): per task
a bias-free 1x1 conv of the concatenated columns, BatchNorm2d(eps=1e-3, momentum=0.05),
ReLU, the conv initialised to ``alpha_same`` on its own column's diagonal and ``alpha_diff``
on the others'.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mtl_models as mm

from conftest import make_config, make_tasks


def randomise(model: nn.Module, seed: int) -> None:
    """Random weights and batch-norm statistics, so no layer is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def bn_eval(x: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    shape = (1, -1, 1, 1)
    return (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def conv(x: Tensor, layer: nn.Conv2d) -> Tensor:
    return F.conv2d(x, layer.weight, layer.bias, padding=layer.weight.shape[-1] // 2)


def att_layer(x: Tensor, mask: nn.Sequential) -> Tensor:
    """lorenmt's ``att_layer``: conv1x1, BN, ReLU, conv1x1, BN, sigmoid."""
    conv1, bn1, _, conv2, bn2, _ = mask
    return torch.sigmoid(bn_eval(conv(torch.relu(bn_eval(conv(x, conv1), bn1)), conv2), bn2))


def encoder_block_att(x: Tensor, block: nn.Sequential, size: tuple[int, int]) -> Tensor:
    """lorenmt's shared ``conv_layer`` (3x3 conv, BN, ReLU), then ``F.max_pool2d(2, 2)`` where the next stage halves."""
    conv3, bn, _ = block
    y = torch.relu(bn_eval(conv(x, conv3), bn))
    return F.max_pool2d(y, kernel_size=2, stride=2) if tuple(y.shape[-2:]) != size else y


def test_mtan_forward_is_the_references_on_its_own_weights() -> None:
    tasks = make_tasks(2)
    model = mm.build_model(make_config("mtan", tasks)).eval()  # stages 4x4x4, 6x2x2, 8x2x2: one pooled carry, one not
    randomise(model, 0)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    features, h = (x - model.input_mean) / model.input_std, {}
    for s, stage in enumerate(model.backbone):  # the shared network
        features = stage(features)
        for t in model.task_names:
            mask = model.attention[str(s)][t].mask
            if s == 0:
                att = att_layer(features, mask)
            else:
                carried = encoder_block_att(h[t], model.carry[str(s)].block, tuple(features.shape[-2:]))
                att = att_layer(torch.cat([features, carried], dim=1), mask)
            h[t] = att * features
    out = model(x)
    for t in model.task_names:
        torch.testing.assert_close(out[t], model.heads[t](h[t]), rtol=0, atol=1e-6)
    # one block per stage for both tasks: the only per-task modules are the masks and heads
    assert sorted(model.carry) == ["1", "2"] and all(isinstance(b.block, nn.Sequential) for b in model.carry.values())


def test_mtan_on_the_quickstart_network_counts_exactly() -> None:
    """small_cnn 16-32-64-64 on 36x36 digits, 2 tasks, all stages attended (the issue's 244,740 with a block per task)."""
    tasks = [{**t, "classes": 10} for t in make_tasks(2)]
    config = make_config("mtan", tasks, backbone={"name": "small_cnn", "weights": None, "options": {"widths": [16, 32, 64, 64]}},
                         input={"channels": 1, "height": 36, "width": 36}, head={"pool_size": 2, "hidden": 0})
    separate = mm.build_model({**config, "family": "hard_split", "split_point": 0})
    heads = mm.count_parameters(separate.heads)
    column = (mm.count_parameters(separate) - heads) // 2  # one backbone
    masks = sum((c if s == 0 else 2 * c) * c + c + 2 * c + c * c + c + 2 * c for s, c in enumerate([16, 32, 64, 64]))
    blocks = sum(9 * a * b + b + 2 * b for a, b in [(16, 32), (32, 64), (64, 64)])  # once, not per task
    model = mm.build_model(config)
    assert mm.count_parameters(model) == column + heads + 2 * masks + blocks == 184_356  # 244,740 with a block per task

def test_nddr_batch_norm_and_forward_are_mtl_nas() -> None:
    tasks = make_tasks(3)
    model = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_unit="nddr", alpha_same=0.6, alpha_diff=0.2))
    unit = model.units["1"]  # 6 channels
    C, T = 6, 3
    for bn in unit.norm:
        assert (bn.eps, bn.momentum) == (1e-3, 0.05)  # MTL-NAS get_nddr_bn; PyTorch's momentum convention
    for i, layer in enumerate(unit.fuse):  # identity-like: alpha_same on its own column's diagonal, alpha_diff on the others'
        expected = torch.zeros(C, T * C)
        for c in range(C):
            for j in range(T):
                expected[c, j * C + c] = 0.6 if j == i else 0.2
        torch.testing.assert_close(layer.weight.view(C, T * C), expected, rtol=0, atol=0)
        assert layer.bias is None
    randomise(unit, 2)
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(4, C, 3, 3, generator=g) for _ in range(T)]
    stats = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in unit.norm]
    out = unit.train()(xs)
    x = torch.cat(xs, dim=1)
    for i in range(T):
        z = torch.einsum("ok,bkhw->bohw", unit.fuse[i].weight.view(C, T * C), x)  # 1x1 conv, no bias
        mean, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
        bn = unit.norm[i]
        y = (z - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-3) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(out[i], torch.relu(y), rtol=0, atol=1e-6)
        n = z.numel() // C  # the running statistics move 5% towards the batch's (unbiased variance)
        torch.testing.assert_close(bn.running_mean, 0.95 * stats[i][0] + 0.05 * mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(bn.running_var, 0.95 * stats[i][1] + 0.05 * var * n / (n - 1), rtol=0, atol=1e-6)
