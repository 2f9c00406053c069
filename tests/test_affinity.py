"""Inter-task affinity by lookahead (TAG) per stage, and the groupings and trees it implies."""
from __future__ import annotations

import copy

import pytest
import torch

import mtl_models as mm
from mtl_models._affinity import best_refinement, grouping_score, measure_affinity, partitions, propose_trees

from conftest import make_config, make_tasks, random_data


@pytest.mark.parametrize("n, bell", [(1, 1), (2, 2), (3, 5), (4, 15), (5, 52)])
def test_every_partition_once(n: int, bell: int) -> None:
    items = [f"t{i}" for i in range(n)]
    found = [tuple(sorted(tuple(sorted(g)) for g in p)) for p in partitions(items)]
    assert len(found) == bell == len(set(found))
    assert all(sorted(t for g in p for t in g) == items for p in found)


def test_tasks_that_help_each_other_are_grouped_and_a_harmful_one_is_not() -> None:
    names = ["a", "b", "c"]
    z = [[0.0, 0.5, -0.4], [0.4, 0.0, -0.3], [-0.2, -0.1, 0.0]]  # z[i][j]: i's update onto j
    assert grouping_score(z, names, [("a", "b"), ("c",)]) == pytest.approx(0.5 + 0.4)
    assert grouping_score(z, names, [("a", "b", "c")]) == pytest.approx((0.4 - 0.2) / 2 + (0.5 - 0.1) / 2 + (-0.4 - 0.3) / 2)
    assert best_refinement(z, names, [("a", "b", "c")]) == [("a", "b"), ("c",)]
    assert best_refinement(z, names, [("a", "b", "c")], max_groups=1) == [("a", "b", "c")]


def test_trees_branch_where_the_affinity_turns_negative() -> None:
    names = ["a", "b", "c"]
    friendly = [[0.0, 0.3, 0.2], [0.3, 0.0, 0.2], [0.2, 0.2, 0.0]]
    split = [[0.0, 0.3, -0.5], [0.3, 0.0, -0.5], [-0.5, -0.5, 0.0]]
    trees = propose_trees([friendly, friendly, split], names)
    per_stage = next(t for t in trees if t["name"] == "per-stage")
    assert per_stage["branches"] == [[["a", "b", "c"]], [["a", "b", "c"]], [["a", "b"], ["c"]]]
    for tree in trees:  # every proposal is a valid hard-split tree: groups only split
        model = mm.build_model(make_config("hard_split", make_tasks(3), branches=[[[n.replace("a", "t0").replace("b", "t1").replace("c", "t2") for n in g] for g in part] for part in tree["branches"]]))
        assert len(model.blocks) == 3
    assert len({str(t["branches"]) for t in trees}) == len(trees)


def test_lookahead_affinity_is_the_loss_change_of_one_step_on_one_task() -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    data = random_data(tasks, n=32)
    config = make_config("hard_split", tasks, lr=0.05, batch_size=32, epochs=1)
    result = measure_affinity(config, data, epochs=1, every=1)
    assert result.steps == 1 and len(result.affinity) == 3 and result.tasks == ["t0", "t1"]
    # by hand, on the same first batch: a copy of the joint network before any step
    mm.seed_everything(0)
    joint = {**config, "family": "hard_split", "split_point": 3, "epochs": 1, "loss_weighting": "static", "tree": "single",
             "branches": None, "split_points": None, "task_groups": None, "optimization": "joint"}
    model = mm.build_model(joint)
    trainer = mm.Trainer(model, data, joint)
    x, targets = next(iter(trainer.feeds["train"].batches(32, shuffle=True, generator=trainer.generator, augment=True)))
    model.train()
    state = copy.deepcopy(model.state_dict())
    before = trainer.losses(trainer.forward(x), targets)
    stage = 1
    params = list(model.blocks[stage][0].parameters())
    grads = torch.autograd.grad(before["t1"], params, retain_graph=True)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= 0.05 * g
        model.load_state_dict({k: v for k, v in state.items() if "running" in k or "num_batches" in k}, strict=False)
        after = trainer.losses(trainer.forward(x), targets)
    expected = 1 - after["t0"].item() / before["t0"].item()
    assert result.affinity[stage][1][0] == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_identical_tasks_have_more_affinity_than_unrelated_ones() -> None:
    tasks = make_tasks(3)
    data = random_data(tasks, n=128, seed=1)
    for split in data.splits.values():
        brightness = split.images.float().mean(dim=(1, 2, 3))
        label = torch.bucketize(brightness, brightness.quantile(torch.tensor([0.25, 0.5, 0.75])))
        split.targets["t0"].copy_(label)  # learnable from the image
        split.targets["t1"].copy_(label)  # the same task again
        # t2 keeps its random labels: nothing to learn, unrelated to the others
    config = make_config("hard_split", tasks, lr=0.05, batch_size=32, epochs=3)
    result = measure_affinity(config, data, epochs=3, every=1)
    mean = [[sum(stage[i][j] for stage in result.affinity) / 3 for j in range(3)] for i in range(3)]
    assert mean[0][1] > mean[0][2] and mean[1][0] > mean[1][2]
    best = result.trees[0]["branches"][-1]
    assert ["t0", "t1"] in best or ["t0", "t1", "t2"] in best
