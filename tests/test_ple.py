"""CGC and PLE (Tang et al., RecSys 2020) against LibMTL's ``architecture/CGC.py`` and
``PLE.py`` and against the paper's equations, each written out here in plain torch on the
same tiny encoder (the 3-stage CNN, 4, 6, 8 channels; 8x8 RGB) with the weights copied from
the model: outputs to 1e-6, parameters exactly.

LibMTL's CGC: ``num_experts = [shared, per task...]``; per task a gate
``Sequential(Linear(prod(img_size), shared + own), Softmax(-1))`` on ``flatten(inputs)``
mixing ``cat([shared experts, own experts])``. LibMTL's PLE cuts every expert encoder into
its stages (one level per ResNet stage; one per CNN stage here), and at each level every
task's gate reads the task's representation, mixing the shared experts *applied to that
representation* and its own: no shared gate. The paper (sec. 4.3, eq. 4-6; Fig. 5): the
shared experts read the shared module's gate output, a gate over all of the level's
experts, present at every level but the last.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import mtl_models as mm
import spaces

from conftest import make_config, make_tasks, tiny_experiment
from test_mmoe import WIDTHS, LibMTLMMoE, encoder_class, normalised
from test_soft_sharing_reference import randomise


class LibMTLCGC(LibMTLMMoE):
    """LibMTL ``CGC`` (a subclass of its ``MMoE``, as there)."""

    def __init__(self, task_name, encoder_class, decoders, img_size, num_experts):
        super().__init__(task_name, encoder_class, decoders, img_size, num_experts)
        self.num_experts = {task: num_experts[tn + 1] for tn, task in enumerate(self.task_name)}
        self.num_experts['share'] = num_experts[0]
        self.experts_specific = nn.ModuleDict({task: nn.ModuleList([encoder_class() for _ in range(self.num_experts[task])])
                                               for task in self.task_name})
        self.gate_specific = nn.ModuleDict({task: nn.Sequential(nn.Linear(self.input_size,
                                                                          self.num_experts['share'] + self.num_experts[task]),
                                                                nn.Softmax(dim=-1)) for task in self.task_name})

    def forward(self, inputs):
        experts_shared_rep = torch.stack([e(inputs) for e in self.experts_shared])
        out = {}
        for task in self.task_name:
            experts_specific_rep = torch.stack([e(inputs) for e in self.experts_specific[task]])
            selector = self.gate_specific[task](torch.flatten(inputs, start_dim=1))
            gate_rep = torch.einsum('ij..., ji -> j...', torch.cat([experts_shared_rep, experts_specific_rep], dim=0),
                                    selector)
            out[task] = self.decoders[task](gate_rep)
        return out


LEVELS = {3: [[0], [1], [2]], 2: [[0, 1], [2]]}  # the stages of each level (the earlier levels take the extra stage)


def _gate(features: int, experts: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, experts), nn.Softmax(dim=-1))


class PLEReference(nn.Module):
    """LibMTL's ``_transform_resnet_PLE`` + ``PLE`` with its ResNet stages replaced by the tiny
    CNN's level groups (``paper``: with the paper's shared gates, the shared experts reading them)."""

    def __init__(self, task_name, encoder_class, decoders, img_size, num_experts, levels, paper):
        super().__init__()
        self.task_name, self.decoders, self.levels, self.paper = task_name, decoders, levels, paper
        self.num_experts = {task: num_experts[tn + 1] for tn, task in enumerate(task_name)}
        self.num_experts['share'] = num_experts[0]
        encoder = {task: [encoder_class() for _ in range(self.num_experts[task])] for task in ['share'] + task_name}
        level = lambda enc, i: nn.Sequential(*(enc[s] for s in levels[i]))  # noqa: E731
        self.specific_layer, self.shared_layer = nn.ModuleDict({}), nn.ModuleDict({})
        for i in range(len(levels)):
            self.specific_layer[str(i)] = nn.ModuleDict(
                {task: nn.ModuleList([level(e, i) for e in encoder[task]]) for task in task_name})
            self.shared_layer[str(i)] = nn.ModuleList([level(e, i) for e in encoder['share']])
        input_size = []
        with torch.no_grad():  # LibMTL: one random image through the first shared expert (in eval mode here)
            x = torch.rand([int(s) for s in img_size]).unsqueeze(0)
            for i in range(len(levels)):
                input_size.append(x.size().numel())
                x = self.shared_layer[str(i)][0].eval()(x)
        self.gate_specific = nn.ModuleDict({task: nn.ModuleList([
            _gate(input_size[i], self.num_experts['share'] + self.num_experts[task]) for i in range(len(levels))])
            for task in task_name})
        everything = self.num_experts['share'] + sum(self.num_experts[t] for t in task_name)
        self.gate_shared = nn.ModuleList([_gate(input_size[i], everything) for i in range(len(levels) - 1)]) if paper else None

    def forward(self, inputs):
        gate_rep = {task: inputs for task in self.task_name}
        shared_rep = inputs
        for i in range(len(self.levels)):
            specific_reps = {task: [e(gate_rep[task]) for e in self.specific_layer[str(i)][task]] for task in self.task_name}
            shared_reps = [e(shared_rep) for e in self.shared_layer[str(i)]] if self.paper else None
            new = {}
            for task in self.task_name:
                experts_shared_rep = torch.stack(shared_reps if self.paper else [e(gate_rep[task]) for e in self.shared_layer[str(i)]])
                experts_specific_rep = torch.stack(specific_reps[task])
                selector = self.gate_specific[task][i](torch.flatten(gate_rep[task], start_dim=1))
                new[task] = torch.einsum('ij..., ji -> j...', torch.cat([experts_shared_rep, experts_specific_rep], dim=0),
                                         selector)
            if self.paper and i < len(self.levels) - 1:  # eq. 6's shared module: a gate over every expert of the level
                selector = self.gate_shared[i](torch.flatten(shared_rep, start_dim=1))
                stacked = torch.stack(shared_reps + [r for task in self.task_name for r in specific_reps[task]])
                shared_rep = torch.einsum('ij..., ji -> j...', stacked, selector)
            gate_rep = new
        return {task: self.decoders[task](gate_rep[task]) for task in self.task_name}


def _copy_experts(model: mm.MultiTaskModel, ref: nn.Module, levels: list[list[int]]) -> None:
    """The model's expert stages and gates into the reference (its level ``i``'s ``Sequential`` of stages)."""
    for i, stages in enumerate(levels):
        mine = model.levels[i]
        for k, expert in enumerate(ref.shared_layer[str(i)]):
            expert.load_state_dict(mine.shared[k].state_dict())
        for t in model.task_names:
            for k, expert in enumerate(ref.specific_layer[str(i)][t]):
                expert.load_state_dict(mine.specific[t][k].state_dict())
            ref.gate_specific[t][i][0].load_state_dict(mine.gates[t].linear.state_dict())
        if ref.gate_shared is not None and i < len(levels) - 1:
            ref.gate_shared[i][0].load_state_dict(mine.shared_gate.linear.state_dict())


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("shared, specific", [(1, 1), (2, 1), (1, 2)])
def test_cgc_is_libmtl_s_forward_and_parameter_count(num_tasks: int, shared: int, specific: int) -> None:
    torch.manual_seed(0)
    tasks = make_tasks(num_tasks, ("classification", "regression"))
    model = mm.build_model(make_config("ple", tasks, ple_shared=shared, ple_specific=specific, ple_levels=1)).eval()
    randomise(model, seed=2)
    ref = LibMTLCGC(model.task_names, encoder_class, copy.deepcopy(model.heads), [3, 8, 8],
                    [shared] + [specific] * num_tasks).eval()
    level = model.levels[0]
    for k in range(shared):
        ref.experts_shared[k].load_state_dict(level.shared[k].state_dict())
    for t in model.task_names:
        for k in range(specific):
            ref.experts_specific[t][k].load_state_dict(level.specific[t][k].state_dict())
        ref.gate_specific[t][0].load_state_dict(level.gates[t].linear.state_dict())
    x = torch.rand(5, 3, 8, 8)
    expected = ref(normalised(model, x))
    for t, value in model(x).items():
        torch.testing.assert_close(value, expected[t], rtol=0, atol=1e-6)
    assert mm.count_parameters(model) == sum(p.numel() for p in ref.parameters())
    assert level.shared_gate is None  # CGC: one level, the last, has no shared gate


@pytest.mark.parametrize("num_levels", [3, 2])
@pytest.mark.parametrize("paper", [False, True], ids=["libmtl", "paper"])
def test_ple_is_libmtl_s_and_the_paper_s_forward_and_parameter_count(num_levels: int, paper: bool) -> None:
    torch.manual_seed(0)
    tasks = make_tasks(3, ("classification", "regression"))
    config = make_config("ple", tasks, ple_shared=2, ple_specific=1, ple_levels=num_levels, ple_shared_gate=paper)
    model = mm.build_model(config).eval()
    randomise(model, seed=3)
    levels = LEVELS[num_levels]
    ref = PLEReference(model.task_names, encoder_class, copy.deepcopy(model.heads), [3, 8, 8], [2, 1, 1, 1],
                       levels, paper).eval()
    _copy_experts(model, ref, levels)
    x = torch.rand(5, 3, 8, 8)
    expected = ref(normalised(model, x))
    for t, value in model(x).items():
        torch.testing.assert_close(value, expected[t], rtol=0, atol=1e-6)
    assert mm.count_parameters(model) == sum(p.numel() for p in ref.parameters())
    # the paper's shared gates over all 2 + 3 experts, at every level but the last: what LibMTL's PLE lacks
    features = {3: [3 * 8 * 8, 4 * 4 * 4], 2: [3 * 8 * 8]}[num_levels]  # what each level's gate reads, per image
    libmtl = mm.count_parameters(mm.build_model({**config, "ple_shared_gate": False}))
    assert mm.count_parameters(model) - libmtl == (sum((f + 1) * 5 for f in features) if paper else 0)


def test_ple_without_task_experts_is_mmoe() -> None:
    """CGC with no task-specific experts is MMoE (Tang et al. sec. 4.2): same parameters, same outputs."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    mmoe = mm.build_model(make_config("mmoe", tasks, mmoe_experts=3)).eval()
    cgc = mm.build_model(make_config("ple", tasks, ple_shared=3, ple_specific=0)).eval()
    cgc.load_state_dict(mmoe.state_dict())
    x = torch.rand(4, 3, 8, 8)
    for t, value in mmoe(x).items():
        torch.testing.assert_close(cgc(x)[t], value, rtol=0, atol=0)


@pytest.mark.parametrize("num_stages, levels, expected", [
    (3, 1, [[0, 1, 2]]), (3, 2, [[0, 1], [2]]), (3, 3, [[0], [1], [2]]), (4, 3, [[0, 1], [2], [3]]),
    (5, 2, [[0, 1, 2], [3, 4]]),
])
def test_levels_cut_the_stages_in_order_the_earlier_ones_longer(num_stages: int, levels: int, expected) -> None:
    assert mm.families.level_stages(num_stages, levels) == expected
    assert [list(g) for g in np.array_split(np.arange(num_stages), levels)] == expected  # numpy's rule


def test_more_levels_than_stages_is_refused_where_the_file_is_read(tmp_path: Path) -> None:
    doc = tiny_experiment(space={"families": ["ple"], "ple_levels": {"low": 1, "high": 3}})  # a 2-stage CNN
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(spaces.ExperimentError, match=r"space.ple_levels: \{'low': 1, 'high': 3\} exceeds the 2 stages "
                                                     r"of backbone 'small_cnn'; at most 2"):
        spaces.load_experiment(tmp_path / "exp.yaml")
    with pytest.raises(ValueError, match=r"levels 4: must be 1..3"):
        mm.build_model(make_config("ple", make_tasks(2), ple_levels=4))


def test_ple_describes_itself_in_words() -> None:
    config = make_config("ple", make_tasks(2), ple_shared=2, ple_specific=1)
    assert mm.describe_config(config) == "cgc 2 shared + 1 per-task experts"
    assert mm.describe_config({**config, "ple_levels": 3, "ple_shared_gate": False, "ple_gate": "pooled"}) == (
        "ple 3 levels 2 shared + 1 per-task experts pooled gates, no shared gate")


def test_the_pick_s_note_says_the_levels_in_stage_names() -> None:
    from reports._sections._pick_tree import experts_words

    config = make_config("ple", make_tasks(2), ple_levels=2, ple_shared=2)
    assert experts_words(config, ["conv1", "conv2", "conv3"]) == (
        "2 extraction levels (conv1-conv2 | conv3); at each, 2 shared and 1 per-task experts, copies of the level's "
        "stages; each task's gate mixes its own and the shared experts, reading every value of the task's features "
        "from the level before (the input at the first); a shared gate mixes all of a level's experts for the next "
        "level's shared experts (PLE, Tang et al. 2020).")


def test_the_structure_in_words() -> None:
    from mtl_models import describe_structure

    assert describe_structure({"family": "mmoe", "mmoe_experts": 3}) == (
        "3 whole networks (experts) shared by all tasks; each task's gate mixes their outputs")
    assert describe_structure({"family": "ple", "ple_levels": 1, "ple_shared": 2, "ple_specific": 0}) == (
        "2 shared and 0 per-task experts at one level; each task's gate mixes its own and the shared experts")


def test_configs_that_build_the_same_network_are_one_config() -> None:
    """Work bought twice buys nothing: a one-level PLE's shared-gate switch changes nothing, and
    CGC without task experts is MMoE (the test above), so their config keys are one."""
    base = {"family": "ple", "ple_levels": 1, "ple_shared": 2, "ple_specific": 1, "ple_gate": "flat", "lr": 0.01}
    assert mm.config_key({**base, "ple_shared_gate": True}) == mm.config_key({**base, "ple_shared_gate": False})
    assert mm.config_key({**base, "ple_levels": 2, "ple_shared_gate": True}) != mm.config_key(
        {**base, "ple_levels": 2, "ple_shared_gate": False})  # two levels: the paper's shared gate is a real difference
    cgc = {**base, "ple_specific": 0, "ple_shared": 3}
    assert mm.config_key(cgc) == mm.config_key({"family": "mmoe", "mmoe_experts": 3, "mmoe_gate": "flat", "lr": 0.01})
    assert mm.config_key(cgc) != mm.config_key({"family": "mmoe", "mmoe_experts": 2, "mmoe_gate": "flat", "lr": 0.01})
