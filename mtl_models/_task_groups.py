"""Task groupings and branch trees from the inter-task affinity that
:mod:`mtl_models._affinity` measures (TAG: Fifty et al., NeurIPS 2021).

Network selection (the reference's ``TAG_network_selection.ipynb``): every non-empty
group of tasks is a candidate; in a group a task scores the mean affinity onto it from
the other members (``Z_{i->j}`` over ``i`` in the group), a task alone scores
``SINGLETON`` (-1e6); at most ``budget`` groups are chosen, they may overlap, every
task must be in one, each task is served by its best chosen group, and the chosen set
maximises the mean over tasks of the served score.

Branch trees (this product: per stage, the groups of tasks that share a copy of it;
groups only split with depth). A split is made at a stage only where it is beyond the
noise: the split's change of the per-stage affinity score (summed over tasks, the mean
affinity onto a task from the tasks it still shares the stage with; 0 alone -- nobody
else's update reaches it) is computed at every measured step, and its mean must exceed
``t_{0.975, n-1}`` standard errors. Otherwise the tree shares that stage and records why
(the split, its change with a 95 % interval, and the cross affinities with theirs).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Sequence

SINGLETON = -1e6
"""A task alone in a group scores this in TAG's network selection (the reference's
``new_dict[cur_task] = -1e6``): a task is served alone only when nothing else covers it."""

CONFIDENCE = 0.95
"""Two-sided level of the interval a split must clear (its lower end above zero)."""


def group_scores(affinity: Sequence[Sequence[float]], names: Sequence[str],
                 singleton: float = SINGLETON) -> dict[tuple[str, ...], dict[str, float]]:
    """Every non-empty group of tasks, each member's score in it: the mean affinity onto the
    member from the other members (``affinity[i][j]``: ``i`` onto ``j``); alone, ``singleton``."""
    index = {n: k for k, n in enumerate(names)}
    out: dict[tuple[str, ...], dict[str, float]] = {}
    for size in range(1, len(names) + 1):
        for group in itertools.combinations(names, size):
            out[group] = {
                j: (sum(affinity[index[i]][index[j]] for i in group if i != j) / (size - 1) if size > 1 else singleton)
                for j in group
            }
    return out


def select_groups(affinity: Sequence[Sequence[float]], names: Sequence[str], budget: int,
                  singleton: float = SINGLETON) -> dict[str, Any]:
    """TAG's network selection: at most ``budget`` groups (they may overlap) covering every
    task, maximising the mean over tasks of the task's score in its best chosen group.

    Exact, by dynamic programming over the tasks each chosen group serves (those blocks
    partition the tasks; a block's value is its best covering group's summed scores), so
    it returns the reference's brute-force optimum; ties go to fewer groups. Returns
    ``{"groups": [...], "served": {task: group}, "score": mean}``."""
    names = list(names)
    n = len(names)
    scores = group_scores(affinity, names, singleton)
    full = (1 << n) - 1
    members = {mask: tuple(names[k] for k in range(n) if mask >> k & 1) for mask in range(1, full + 1)}
    # best[block]: the best group containing the block, and the block's summed score in it
    best: dict[int, tuple[float, tuple[str, ...]]] = {}
    for block in range(1, full + 1):
        candidates = [g for g in range(1, full + 1) if g & block == block]
        value, group = max(((sum(scores[members[g]][t] for t in members[block]), members[g]) for g in candidates),
                           key=lambda vg: (vg[0], -len(vg[1])))
        best[block] = (value, group)
    # f[k][mask]: best summed score serving the tasks in mask with k blocks
    f: list[dict[int, tuple[float, list[int]]]] = [{0: (0.0, [])}]
    chosen = None
    for k in range(1, min(budget, n) + 1):
        layer: dict[int, tuple[float, list[int]]] = {}
        for mask, (value, blocks) in f[-1].items():
            rest = full & ~mask
            if not rest:
                continue
            low = rest & -rest  # the lowest unserved task starts the next block: each partition once
            sub = rest
            while sub:
                if sub & low:
                    total = value + best[sub][0]
                    key = mask | sub
                    if key not in layer or total > layer[key][0] + 1e-12:
                        layer[key] = (total, blocks + [sub])
                sub = (sub - 1) & rest
        f.append(layer)
        if full in layer and (chosen is None or layer[full][0] > chosen[0] + 1e-12):
            chosen = layer[full]
    assert chosen is not None
    served = {t: best[block][1] for block in chosen[1] for t in members[block]}
    groups = list(dict.fromkeys(best[block][1] for block in chosen[1]))
    return {"groups": [list(g) for g in groups], "served": {t: list(served[t]) for t in names},
            "score": chosen[0] / n}


# ---- branch trees, split only beyond noise -----------------------------------------------


def partitions(items: Sequence[str]) -> Iterator[list[tuple[str, ...]]]:
    """Every partition of ``items`` into non-empty groups (Bell(T) of them; T <= 8 here)."""
    items = list(items)
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in partitions(rest):
        for i in range(len(smaller)):
            yield smaller[:i] + [(first, *smaller[i])] + smaller[i + 1:]
        yield [(first,)] + smaller


def grouping_score(affinity: Sequence[Sequence[float]], names: Sequence[str], groups: Sequence[Sequence[str]]) -> float:
    """A stage's affinity score when its copies are shared by ``groups``: summed over tasks,
    the mean affinity onto a task from the others in its group (0 alone: no other task's
    update reaches it)."""
    index = {n: k for k, n in enumerate(names)}
    total = 0.0
    for group in groups:
        for j in group:
            others = [i for i in group if i != j]
            if others:
                total += sum(affinity[index[i]][index[j]] for i in others) / len(others)
    return total


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile for the mean of ``n`` samples (inf below two)."""
    if n < 2:
        return math.inf
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, n - 1))


def split_test(samples: Sequence[Sequence[Sequence[float]]], names: Sequence[str], group: Sequence[str],
               parts: Sequence[Sequence[str]], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Splitting ``group`` into ``parts`` at one stage, tested on the per-step matrices
    ``samples[step][i][j]``: the change of the stage's affinity score (split minus together)
    at every step, its mean, standard error and interval; ``split`` when the interval's
    lower end is above zero. Also the cross-part affinities with their standard errors."""
    deltas = [grouping_score(m, names, parts) - grouping_score(m, names, [tuple(group)]) for m in samples]
    n = len(deltas)
    mean = sum(deltas) / n if n else 0.0
    se = (math.sqrt(sum((d - mean) ** 2 for d in deltas) / (n - 1)) / math.sqrt(n)) if n > 1 else math.inf
    q = t_quantile(n, confidence)
    low, high = (mean - q * se, mean + q * se) if n > 1 else (-math.inf, math.inf)
    index = {t: k for k, t in enumerate(names)}
    part_of = {t: k for k, p in enumerate(parts) for t in p}
    cross = []
    for i in group:
        for j in group:
            if part_of[i] != part_of[j]:
                values = [m[index[i]][index[j]] for m in samples]
                zm = sum(values) / n if n else 0.0
                zse = math.sqrt(sum((v - zm) ** 2 for v in values) / (n - 1)) / math.sqrt(n) if n > 1 else math.inf
                cross.append({"from": i, "to": j, "z": zm, "se": zse, "low": zm - q * zse, "high": zm + q * zse})
    return {"group": list(group), "parts": [list(p) for p in parts], "delta": mean, "se": se, "low": low,
            "high": high, "steps": n, "confidence": confidence, "split": bool(n > 1 and low > 0.0), "cross": cross}


def _mean(samples: Sequence[Sequence[Sequence[float]]]) -> list[list[float]]:
    n = len(samples)
    size = len(samples[0]) if n else 0
    return [[sum(m[i][j] for m in samples) / n for j in range(size)] for i in range(size)]


def _stage(samples: Sequence[Sequence[Sequence[Sequence[float]]]], s: int) -> list[list[list[float]]]:
    return [[list(row) for row in step[s]] for step in samples]


def per_stage_tree(samples: Sequence[Sequence[Sequence[Sequence[float]]]], names: Sequence[str],
                   max_groups: int | None = None, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """From the input on, each stage keeps its parent's groups unless a refinement of one is
    beyond noise (:func:`split_test`); among those, the largest mean gain, at most
    ``max_groups`` groups a stage. Records every split considered and not made."""
    n_stages = len(samples[0]) if samples else 0
    parent: list[tuple[str, ...]] = [tuple(names)]
    branches, kept = [], []
    for s in range(n_stages):
        stage = _stage(samples, s)
        options: list[list[tuple[list[tuple[str, ...]], float, dict[str, Any] | None]]] = []
        for group in parent:
            choices: list[tuple[list[tuple[str, ...]], float, dict[str, Any] | None]] = [([group], 0.0, None)]
            best_kept = None
            for parts in partitions(group):
                if len(parts) < 2:
                    continue
                test = split_test(stage, names, group, parts, confidence)
                if test["split"]:
                    choices.append((list(parts), test["delta"], None))
                elif best_kept is None or test["delta"] > best_kept["delta"]:
                    best_kept = test
            if len(choices) == 1 and best_kept is not None:
                choices[0] = ([group], 0.0, best_kept)
            options.append(choices)
        best_choice, best_key = None, None
        for combo in itertools.product(*options):
            groups = [g for parts, _, _ in combo for g in parts]
            if max_groups is not None and len(groups) > max_groups:
                continue
            key = (round(sum(d for _, d, _ in combo), 12), -len(groups))
            if best_key is None or key > best_key:
                best_choice, best_key = combo, key
        assert best_choice is not None
        parent = [g for parts, _, _ in best_choice for g in parts]
        branches.append(parent)
        for parts, _, why in best_choice:
            if why is not None:
                kept.append({"stage": s, **why})
    return {"name": "per-stage", "branches": branches, "shared_within_noise": kept}


def propose_trees(samples: Sequence[Sequence[Sequence[Sequence[float]]]], names: Sequence[str],
                  max_groups: int | None = None,
                  network_samples: Sequence[Sequence[Sequence[float]]] | None = None,
                  confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Branch trees from the per-step, per-stage affinity (``samples[step][stage][i][j]``):

    - ``per-stage``: :func:`per_stage_tree`;
    - ``TAG, k groups`` for each budget ``k`` from 2 to ``max_groups`` (default: the number
      of tasks): :func:`select_groups` on the whole-trunk affinity (``network_samples``'
      mean; without it, the mean over stages), each task on the branch of the group that
      serves it; the tasks share every stage up to the first where that split is beyond
      noise (:func:`split_test` against keeping them together), and branch from there --
      or share every stage when it is beyond noise nowhere.

    Each: ``{"name", "branches", "score", "shared_within_noise"}`` (+ the selection for TAG
    trees), distinct trees only (one that several rules give is named ``"per-stage = TAG,
    2 groups"``), best score (summed over stages, the mean matrices) first."""
    names = list(names)
    if not samples:
        return [{"name": "per-stage", "branches": [], "score": 0.0, "shared_within_noise": []}]
    n_stages = len(samples[0])
    stage_means = [_mean(_stage(samples, s)) for s in range(n_stages)]
    if network_samples:
        whole = _mean(network_samples)
    else:
        whole = [[sum(m[i][j] for m in stage_means) / n_stages for j in range(len(names))] for i in range(len(names))]
    trees = [per_stage_tree(samples, names, max_groups, confidence)]
    top = len(names) if max_groups is None else min(max_groups, len(names))
    together = (tuple(names),)
    for k in range(2, top + 1):
        selection = select_groups(whole, names, k)
        blocks = list(dict.fromkeys(tuple(t for t in names if selection["served"][t] == selection["served"][u])
                                    for u in names))
        kept, start = [], n_stages
        if len(blocks) > 1:
            for s in range(n_stages):
                test = split_test(_stage(samples, s), names, names, blocks, confidence)
                if test["split"]:
                    start = s
                    break
                kept.append({"stage": s, **test})
        branches = [list(together)] * start + [blocks] * (n_stages - start)
        trees.append({"name": f"TAG, {k} groups", "branches": branches, "selection": selection,
                      "shared_within_noise": kept})
    out: list[dict[str, Any]] = []
    seen: dict[tuple, dict[str, Any]] = {}
    for t in trees:
        key = tuple(tuple(sorted(tuple(sorted(g)) for g in part)) for part in t["branches"])
        if key in seen:  # the same tree again: one entry, both names
            kept = seen[key]
            kept["name"] += f" = {t['name']}"
            if "selection" in t and "selection" not in kept:
                kept["selection"] = t["selection"]
            continue
        seen[key] = t
        t["score"] = sum(grouping_score(stage_means[s], names, part) for s, part in enumerate(t["branches"]))
        t["branches"] = [[list(g) for g in part] for part in t["branches"]]
        out.append(t)
    return sorted(out, key=lambda t: -t["score"])


def shared_reason(why: dict[str, Any], stages: Sequence[str]) -> str:
    """One sentence: why a stage stayed shared (the split's gain within its noise)."""
    parts = " ".join("{" + ",".join(p) + "}" for p in why["parts"])
    cross = "; ".join(f"{c['from']}->{c['to']} {c['z']:.3g} [{c['low']:.3g}, {c['high']:.3g}]" for c in why["cross"])
    level = int(round(100 * why.get("confidence", 0.95)))
    verdict = "not beyond noise" if why["delta"] > 0 else "sharing scores at least as high"
    return (f"{stages[why['stage']]}: {{{','.join(why['group'])}}} shared; the best split, {parts}, would change the "
            f"affinity score by {why['delta']:.3g} [{why['low']:.3g}, {why['high']:.3g}] ({level} % interval over "
            f"{why['steps']} steps): {verdict}; cross affinities {cross}")
