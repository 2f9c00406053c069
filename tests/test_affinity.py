"""Inter-task affinity by lookahead (TAG, Fifty et al. 2021) per stage, TAG's network
selection, and the branch trees it implies (a split only beyond noise).

The lookahead is checked against TAG's definition with the trial optimiser's update
written out here (Adam: m, v, bias correction, the scheduled rate, L2 weight decay;
AdamW: decoupled decay; SGD: momentum buffer), the selection against the reference
notebook's brute force (``tag/network_selection/TAG_network_selection.ipynb``) written
out here.
"""
from __future__ import annotations

import copy
import itertools
import math
import random

import pytest
import torch
from scipy.stats import t as student_t

import mtl_models as mm
from mtl_models._affinity import lookahead_affinity, measure_affinity, shared_stage_parameters
from mtl_models._task_groups import (
    SINGLETON, grouping_score, partitions, propose_trees, select_groups, shared_reason, split_test,
)

from conftest import make_config, make_tasks, random_data


@pytest.mark.parametrize("n, bell", [(1, 1), (2, 2), (3, 5), (4, 15), (5, 52)])
def test_every_partition_once(n: int, bell: int) -> None:
    items = [f"t{i}" for i in range(n)]
    found = [tuple(sorted(tuple(sorted(g)) for g in p)) for p in partitions(items)]
    assert len(found) == bell == len(set(found))
    assert all(sorted(t for g in p for t in g) == items for p in found)


# ---- the lookahead: the trial optimiser's own step, by hand ----------------------------------


def _joint(config: dict) -> dict:
    return {**config, "family": "hard_split", "split_point": 3, "loss_weighting": "static", "tree": "single",
            "branches": None, "split_points": None, "task_groups": None, "optimization": "joint"}


def _by_hand_step(optimizer: str, p: torch.Tensor, g: torch.Tensor, state: dict, lr: float, wd: float) -> torch.Tensor:
    """One step of the optimiser with gradient ``g`` from ``state``, written out."""
    if optimizer == "sgd":  # torch.optim.SGD, momentum 0.9, L2 decay
        d = g + wd * p
        buf = 0.9 * state["momentum_buffer"] + d
        return p - lr * buf
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    t = int(state["step"]) + 1
    d = g + wd * p if optimizer == "adam" else g  # Adam: L2 in the gradient
    m = beta1 * state["exp_avg"] + (1 - beta1) * d
    v = beta2 * state["exp_avg_sq"] + (1 - beta2) * d * d
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    start = p * (1 - lr * wd) if optimizer == "adamw" else p  # AdamW: decoupled decay
    return start - lr * m_hat / (v_hat.sqrt() + eps)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_lookahead_is_one_step_of_the_trial_optimizer_with_its_state_and_scheduled_rate(optimizer: str) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    data = random_data(tasks, n=96)
    config = _joint(make_config("hard_split", tasks, lr=0.1, batch_size=32, epochs=2, optimizer=optimizer,
                                weight_decay=0.05))
    mm.seed_everything(0)
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    model.train()
    batches = list(trainer.feeds["train"].batches(32, shuffle=True, generator=trainer.generator, augment=True))
    for x, targets in batches[:3]:  # three real steps: the optimiser has momentum state
        trainer.optimizer.zero_grad(set_to_none=True)
        sum(trainer.losses(trainer.forward(x), targets).values()).backward()
        trainer.optimizer.step()
        trainer.scheduler.step()
    x, targets = batches[0]
    lr = 0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 5))  # cosine over 2 epochs x 3 steps, at step 3
    wd = 0.05
    state_before = copy.deepcopy(trainer.optimizer.state_dict())
    params_before = copy.deepcopy(model.state_dict())

    measured = lookahead_affinity(trainer, shared_stage_parameters(model), x, targets)

    # by hand: copy the network, move its shared parameters by one optimiser step on one task's loss
    names = ["t0", "t1"]
    reference = copy.deepcopy(model)
    before = trainer.losses(reference.member_outputs(x), targets)
    stages = [list(reference.blocks[s][0].named_parameters(prefix=f"blocks.{s}.0")) for s in range(3)]
    every = [kp for stage in stages for kp in stage]
    for s, moved_stage in enumerate([*stages, every]):  # each stage alone, then the whole trunk (the reference's)
        for i, task in enumerate(names):
            grads = torch.autograd.grad(before[task], [p for _, p in moved_stage], retain_graph=True)
            net = copy.deepcopy(reference)
            with torch.no_grad():
                for (key, p), g in zip(moved_stage, grads):
                    state = trainer.optimizer.state[dict(model.named_parameters())[key]]
                    net.get_parameter(key).copy_(_by_hand_step(optimizer, p, g, state, lr, wd))
                after = trainer.losses(net.member_outputs(x), targets)
                sgd = copy.deepcopy(reference)  # what a raw SGD step at the base rate would give
                for (key, p), g in zip(moved_stage, grads):
                    sgd.get_parameter(key).copy_(p - 0.1 * g)
                after_sgd = trainer.losses(sgd.member_outputs(x), targets)
            for j, other in enumerate(names):
                expected = (1 - after[other].item() / before[other].item()) / lr
                assert measured[s, i, j].item() == pytest.approx(expected, abs=1e-5, rel=0)
                if optimizer != "sgd" and s == 3:  # the test tells Adam's step from a raw SGD step
                    raw = (1 - after_sgd[other].item() / before[other].item()) / 0.1
                    assert abs(raw - expected) > 1e-3
    # the optimiser and the network are as they were
    for k, v in trainer.optimizer.state_dict()["state"].items():
        for name, tensor in v.items():
            assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(state_before["state"][k][name]))
    for k, v in model.state_dict().items():
        assert torch.equal(v, params_before[k])


def test_measured_affinity_keeps_every_step_its_mean_and_standard_error() -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    data = random_data(tasks, n=64)
    config = make_config("hard_split", tasks, lr=0.01, batch_size=16, epochs=5)
    result = measure_affinity(config, data, epochs=2, every=3)
    assert result.steps == 3 and len(result.samples) == 3 and len(result.lrs) == 3  # steps 0, 3, 6 of 8
    # the trial's schedule: cosine over its 5 epochs x 4 steps, at steps 0, 3, 6
    assert result.lrs == pytest.approx([0.01 * 0.5 * (1 + math.cos(math.pi * k / 19)) for k in (0, 3, 6)])
    for s in range(3):
        for i in range(2):
            for j in range(2):
                values = [step[s][i][j] for step in result.samples]
                mean = sum(values) / 3
                se = math.sqrt(sum((v - mean) ** 2 for v in values) / 2) / math.sqrt(3)
                assert result.affinity[s][i][j] == pytest.approx(mean, abs=1e-12)
                assert result.stderr[s][i][j] == pytest.approx(se, abs=1e-12)
    assert len(result.network) == 2 and len(result.network_samples) == 3
    saved = result.to_dict()
    assert {"stderr", "samples", "network", "network_stderr", "lrs", "every", "optimizer"} <= set(saved)


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
    z = result.network
    assert z[0][1] > z[0][2] and z[1][0] > z[1][2]
    chosen = select_groups(z, result.tasks, 2)
    assert chosen["served"]["t0"] == chosen["served"]["t1"] == ["t0", "t1"]


# ---- TAG's network selection against the reference's brute force -----------------------------


def _reference_selection(z: list[list[float]], names: list[str], splits: int) -> tuple[float, list[tuple[str, ...]]]:
    """The reference notebook's algorithm, written out: every subset scored (the mean of
    z[other][task] over the other members; alone -1e6), then every set of at most
    ``splits`` distinct subsets that covers all tasks, scored by the mean over tasks of
    the task's best score; the first strictly best set wins."""
    index = {n: k for k, n in enumerate(names)}
    subsets = {}
    for size in range(1, len(names) + 1):
        for group in itertools.combinations(names, size):
            subsets[group] = {
                t: (sum(z[index[o]][index[t]] for o in group if o != t) / (size - 1)) if size > 1 else -1e6
                for t in group
            }
    best, best_sets = -math.inf, []
    for k in range(1, splits + 1):
        for chosen in itertools.combinations(subsets, k):
            if {t for g in chosen for t in g} != set(names):
                continue
            value = sum(max(subsets[g][t] for g in chosen if t in g) for t in names) / len(names)
            if value > best + 1e-12:
                best, best_sets = value, [chosen]
            elif abs(value - best) <= 1e-12:
                best_sets.append(chosen)
    return best, best_sets


def test_selection_picks_overlapping_groups_under_the_budget() -> None:
    names = ["a", "b", "c"]
    z = [[0.0, 1.0, 1.0],   # a onto b, c: helps both
         [1.0, 0.0, -1.0],  # b helps a, hurts c
         [0.2, -1.0, 0.0]]  # c helps a a little, hurts b
    two = select_groups(z, names, 2)
    assert sorted(map(tuple, two["groups"])) == [("a", "b"), ("a", "c")]  # a in both
    assert two["served"] == {"a": ["a", "b"], "b": ["a", "b"], "c": ["a", "c"]}
    assert two["score"] == pytest.approx((1.0 + 1.0 + 1.0) / 3)
    one = select_groups(z, names, 1)  # a budget of one group: everything together
    assert one["groups"] == [["a", "b", "c"]] and one["score"] == pytest.approx(((1 + 0.2) / 2 + 0 + 0) / 3)


def test_a_task_alone_is_penalised_as_the_reference_does() -> None:
    names = ["a", "b", "c"]
    z = [[0.0, 0.5, -0.9], [0.5, 0.0, -0.8], [-0.7, -0.6, 0.0]]  # c hurts and is hurt by everyone
    chosen = select_groups(z, names, 3)
    assert len(chosen["served"]["c"]) == 2  # never alone: -1e6 would sink the mean
    assert chosen["served"]["c"] == ["b", "c"] and chosen["score"] == pytest.approx((0.5 + 0.5 - 0.8) / 3)
    assert select_groups(z, names, 3, singleton=0.0)["served"]["c"] == ["c"]  # without the penalty it would be
    assert SINGLETON == -1e6


@pytest.mark.parametrize("seed, n, budget", [(0, 4, 2), (1, 4, 3), (2, 4, 4), (3, 5, 2), (4, 3, 2)])
def test_selection_equals_the_reference_brute_force(seed: int, n: int, budget: int) -> None:
    rng = random.Random(seed)
    names = [f"t{i}" for i in range(n)]
    z = [[0.0 if i == j else round(rng.uniform(-1, 1), 3) for j in range(n)] for i in range(n)]
    score, best_sets = _reference_selection(z, names, budget)
    chosen = select_groups(z, names, budget)
    assert chosen["score"] == pytest.approx(score, abs=1e-12)
    assert sorted(map(tuple, chosen["groups"])) in [sorted(s) for s in best_sets]  # one of the reference's optima
    assert len(chosen["groups"]) == min(map(len, best_sets))  # ties: the fewest groups


# ---- trees: a split only beyond noise ------------------------------------------------------


def _samples(stages: list[list[list[list[float]]]]) -> list:
    """``stages[s][step]`` matrices -> ``samples[step][s]``."""
    return [[stages[s][k] for s in range(len(stages))] for k in range(len(stages[0]))]


def _two(cross: list[float]) -> list[list[list[float]]]:
    return [[[1.0, c], [c, 1.0]] for c in cross]


def test_a_split_within_noise_is_not_made_and_the_tree_says_why() -> None:
    noisy = [-1.0, 0.8, -1.2, 0.9, -0.6]  # mean -0.22, spread far larger
    steady = [-0.20, -0.22, -0.18, -0.21, -0.19]  # mean -0.20, tight
    trees = propose_trees(_samples([_two(noisy), _two(steady)]), ["a", "b"])
    per_stage = next(t for t in trees if t["name"] == "per-stage")
    assert per_stage["branches"] == [[["a", "b"]], [["a"], ["b"]]]  # shared where within noise, split where beyond
    (why,) = per_stage["shared_within_noise"]
    deltas = [-2 * c for c in noisy]  # apart: 0; together: z_ab + z_ba
    mean = sum(deltas) / 5
    se = math.sqrt(sum((d - mean) ** 2 for d in deltas) / 4) / math.sqrt(5)
    q = student_t.ppf(0.975, 4)
    assert why["stage"] == 0 and why["parts"] == [["a"], ["b"]] and not why["split"]
    assert why["delta"] == pytest.approx(mean) and why["low"] == pytest.approx(mean - q * se)
    assert why["high"] == pytest.approx(mean + q * se) and why["low"] < 0 < why["high"]
    assert {(c["from"], c["to"]) for c in why["cross"]} == {("a", "b"), ("b", "a")}
    assert split_test(_two(steady), ["a", "b"], ["a", "b"], [["a"], ["b"]])["split"]
    sentence = shared_reason(why, ["conv1", "conv2"])
    assert sentence.startswith("conv1: {a,b} shared; the best split, {a} {b}, would change the affinity score by 0.44 [")
    assert "(95 % interval over 5 steps): not beyond noise; cross affinities a->b -0.22 [" in sentence


def test_trees_branch_only_where_the_affinity_difference_is_beyond_noise() -> None:
    names = ["a", "b", "c", "d"]

    def matrix(pair: float, cross: float) -> list[list[float]]:
        return [[0.0 if i == j else (pair if (i < 2) == (j < 2) else cross) for j in range(4)] for i in range(4)]

    friendly = [matrix(0.3 + e, 0.3 + e) for e in (0.01, -0.01, 0.02, -0.02, 0.0)]  # no split gains anything
    # the pairs' edge over the cross affinities: +0.01 on average, spread far larger
    within = [matrix(0.1 + d / 2, 0.1 - d / 2) for d in (0.3, -0.25, 0.2, -0.3, 0.1)]
    beyond = [matrix(0.3 + e, -0.5 + e) for e in (0.01, -0.01, 0.02, -0.02, 0.0)]
    trees = propose_trees(_samples([friendly, within, beyond]), names)
    pairs = [["a", "b"], ["c", "d"]]
    for tree in trees:
        if "TAG, 2 groups" in tree["name"]:
            assert tree["name"] == "per-stage = TAG, 2 groups = TAG, 3 groups = TAG, 4 groups"  # all give this tree
            assert tree["branches"] == [[names], [names], pairs]
            stage0, stage1 = tree["shared_within_noise"]  # why stages 0 and 1 stayed shared
            assert stage0["stage"] == 0 and stage0["delta"] == pytest.approx(0.0, abs=1e-12)  # nothing to gain
            assert stage1["stage"] == 1 and stage1["parts"] == pairs and stage1["low"] < 0 < stage1["delta"]
        model = mm.build_model(make_config("hard_split", make_tasks(4), branches=[
            [[f"t{names.index(n)}" for n in g] for g in part] for part in tree["branches"]]))
        assert len(model.blocks) == 3  # every proposal is a valid hard-split tree: groups only split
    tag = next(t for t in trees if "TAG, 2 groups" in t["name"])
    assert sorted(map(tuple, tag["selection"]["groups"])) == [("a", "b"), ("c", "d")]
    assert len({str(t["branches"]) for t in trees}) == len(trees)


def test_grouping_score_is_the_mean_affinity_onto_each_task_from_its_group() -> None:
    names = ["a", "b", "c"]
    z = [[0.0, 0.5, -0.4], [0.4, 0.0, -0.3], [-0.2, -0.1, 0.0]]  # z[i][j]: i's update onto j
    assert grouping_score(z, names, [("a", "b"), ("c",)]) == pytest.approx(0.5 + 0.4)
    together = (0.4 - 0.2) / 2 + (0.5 - 0.1) / 2 + (-0.4 - 0.3) / 2
    assert grouping_score(z, names, [("a", "b", "c")]) == pytest.approx(together)
