"""MMoE (Ma et al., KDD 2018) against LibMTL's ``architecture/MMoE.py``, written out here in
plain torch (not imported), on the same tiny encoder (the 3-stage CNN, 4, 6, 8 channels;
8x8 RGB) with the weights copied from the model: outputs to 1e-6, parameters exactly.

LibMTL: ``experts_shared`` = ``num_experts`` encoders; per task ``gate_specific`` =
``Sequential(Linear(prod(img_size), num_experts), Softmax(-1))`` on ``flatten(inputs)``;
``gate_rep = einsum('ij..., ji -> j...', stack(experts(inputs)), selector)``; the task's
decoder on ``gate_rep``. ``get_share_params``: the experts.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mtl_models as mm

from conftest import make_config, make_tasks
from test_soft_sharing_reference import randomise

WIDTHS = [4, 6, 8]


def encoder_class() -> nn.Module:
    """LibMTL's ``encoder_class``: one whole tiny encoder."""
    return nn.Sequential(*(s.module for s in mm.build_backbone("small_cnn", 3, widths=WIDTHS)))


class LibMTLMMoE(nn.Module):
    """LibMTL ``MMoE`` (``AbsArchitecture`` reduced to what the forward pass uses; no ``rep_grad``).
    ``gate_input``: what the gate flattens (LibMTL: the input itself)."""

    def __init__(self, task_name, encoder_class, decoders, img_size, num_experts, gate_input=lambda x: x):
        super().__init__()
        self.task_name = task_name
        self.decoders = decoders
        self.gate_input = gate_input
        self.input_size = int(np.array(img_size, dtype=int).prod())
        self.num_experts = num_experts[0]
        self.experts_shared = nn.ModuleList([encoder_class() for _ in range(self.num_experts)])
        self.gate_specific = nn.ModuleDict({task: nn.Sequential(nn.Linear(self.input_size, self.num_experts),
                                                                nn.Softmax(dim=-1)) for task in self.task_name})

    def forward(self, inputs):
        experts_shared_rep = torch.stack([e(inputs) for e in self.experts_shared])
        out = {}
        for task in self.task_name:
            selector = self.gate_specific[task](torch.flatten(self.gate_input(inputs), start_dim=1))
            gate_rep = torch.einsum('ij..., ji -> j...', experts_shared_rep, selector)
            out[task] = self.decoders[task](gate_rep)
        return out

    def get_share_params(self):
        return self.experts_shared.parameters()


def normalised(model: mm.MultiTaskModel, x: torch.Tensor) -> torch.Tensor:
    """What the model's stages see (LibMTL takes normalised inputs from its data loader)."""
    return (x - model.input_mean) / model.input_std


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("experts", [1, 3])
@pytest.mark.parametrize("gate", ["flat", "pooled"])
def test_mmoe_is_libmtl_s_forward_and_parameter_count(num_tasks: int, experts: int, gate: str) -> None:
    torch.manual_seed(0)
    tasks = make_tasks(num_tasks, ("classification", "regression"))
    model = mm.build_model(make_config("mmoe", tasks, mmoe_experts=experts, mmoe_gate=gate)).eval()
    randomise(model, seed=1)
    pooled = gate == "pooled"
    ref = LibMTLMMoE(model.task_names, encoder_class, copy.deepcopy(model.heads), [3, 4, 4] if pooled else [3, 8, 8],
                     [experts], gate_input=(lambda x: F.avg_pool2d(x, 2)) if pooled else (lambda x: x)).eval()
    level = model.levels[0]
    for e in range(experts):
        ref.experts_shared[e].load_state_dict(level.shared[e].state_dict())
    for t in model.task_names:
        ref.gate_specific[t][0].load_state_dict(level.gates[t].linear.state_dict())
    x = torch.rand(5, 3, 8, 8)
    expected = ref(normalised(model, x))
    got = model(x)
    for t in model.task_names:
        torch.testing.assert_close(got[t], expected[t], rtol=0, atol=1e-6)
    assert mm.count_parameters(model) == sum(p.numel() for p in ref.parameters())
    encoder = sum(p.numel() for p in encoder_class().parameters())
    heads = sum(p.numel() for p in model.heads.parameters())
    features = 3 * 4 * 4 if pooled else 3 * 8 * 8
    assert mm.count_parameters(model) == experts * encoder + num_tasks * (features + 1) * experts + heads
    # GradNorm's W: the experts' last stage (LibMTL shares all of the experts); every task reaches it
    share = {id(p) for p in ref.get_share_params()}
    assert {id(p) for p in model.shared_parameters()} <= {id(p) for p in model.levels[0].shared.parameters()}
    assert len(share) == sum(1 for _ in model.levels[0].shared.parameters())


def test_each_task_s_gate_weights_the_experts_for_its_task_only() -> None:
    """A task's output moves with its own gate, not another task's; the experts move every task."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = mm.build_model(make_config("mmoe", tasks, mmoe_experts=2))
    x = torch.rand(6, 3, 8, 8)
    gate0 = list(model.levels[0].gates["t0"].parameters())
    grads = torch.autograd.grad(model(x)["t1"].pow(2).mean(), gate0 + model.shared_parameters(), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads[: len(gate0)])
    assert all(g is not None and g.abs().sum() > 0 for g in grads[len(gate0):])
    weights = model.levels[0].gates["t0"](normalised(model, x))
    torch.testing.assert_close(weights.sum(-1), torch.ones(6), rtol=0, atol=1e-6)  # a softmax over the experts


def test_mmoe_describes_itself_in_words() -> None:
    config = make_config("mmoe", make_tasks(2), mmoe_experts=3)
    assert mm.describe_config(config) == "mmoe 3 shared experts"
    assert mm.describe_config({**config, "mmoe_gate": "pooled"}) == "mmoe 3 shared experts pooled gates"
