"""One short, human-readable line per model config (progress lines, reports, cards), the
same structure in words for a reader who does not know the short form, and the key that
says when two configs train the same model."""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Sequence

# Keys that do not change what is trained: the seed (a config is trained with several) and
# bookkeeping (a baseline's member index, a confirmation run's role).
_NOT_THE_MODEL = frozenset({"seed", "ensemble_member", "reference"})


# Keys that only say how a hard split's tree is written; a tree that shares nothing is one tree.
_TREE_KEYS = ("tree", "split_point", "split_points", "task_groups", "group_split_points", "branches",
              "affinity_tree", "max_groups")
# Optimisers whose update is invariant to a column's loss scale (see ``canonical_config``).
_SCALE_FREE = ("adam", "adamw")
# The smallest normalised static weight whose scale Adam is taken to ignore: a loss scaled
# by c acts as Adam's eps / c (1e-8 / 1e-3 = 1e-5, below these networks' gradient scale).
MIN_SCALE_FREE_WEIGHT = 1e-3


def shares_nothing(config: dict[str, Any]) -> bool:
    """Whether ``config`` is every task's own network side by side: the ``columns`` family, or
    a hard split whose tree has one copy per task at every stage (``split_point: 0``, every
    per-task split point 0, a trunk of 0 with every group leaving at 0, or explicit branches
    of single tasks)."""
    family = config.get("family")
    if family == "columns":
        return True
    if family != "hard_split":
        return False
    if config.get("branches") is not None:
        return all(len(group) == 1 for part in config["branches"] for group in part)
    if config.get("split_points"):
        return all(int(k) == 0 for k in config["split_points"].values())
    if int(config.get("split_point", 0) or 0) != 0:
        return False
    return not config.get("task_groups") or all(int(k) == 0 for k in (config.get("group_split_points") or {}).values())


def loss_scale_free(config: dict[str, Any]) -> bool:
    """Whether a network that shares nothing learns the same whatever its static loss weights.

    Each column's gradient is its own task's loss gradient times that task's weight ``c``.
    Adam's step ``m / (sqrt(v) + eps)`` is then unchanged up to its ``eps`` (scaling the
    gradient by ``c`` acts as ``eps / c``) and rounding; so is AdamW's, whose weight decay is
    decoupled from the gradient. It does not hold (and this says False) under SGD (the
    step is proportional to ``c``), under Adam with ``weight_decay`` (L2 added to the
    gradient: ``c g + wd w`` is not a rescaling), with ``grad_clip`` (one global norm over
    all columns couples them), with a weighting scheme other than ``static`` (weights that
    move during training: Adam's moments mix scales), or when a normalised weight is below
    :data:`MIN_SCALE_FREE_WEIGHT` (eps / c no longer negligible; a weight 0 trains nothing).
    With ``optimization: alternating`` the static weights are not used at all.
    """
    if (config.get("loss_weighting") or "static") != "static":
        return False
    if config.get("optimization", "joint") == "alternating":
        return True
    optimizer = config.get("optimizer", "adam")
    if optimizer not in _SCALE_FREE or config.get("grad_clip"):
        return False
    if optimizer == "adam" and float(config.get("weight_decay", 0.0) or 0.0) != 0.0:
        return False
    names = [t["name"] for t in config.get("tasks") or []]
    weights = config.get("loss_weights") or {}
    raw = [float(weights.get(t, 1.0)) for t in names]
    total = sum(raw) if config.get("static_normalise") is not False else 1.0
    return bool(raw) and total > 0 and min(raw) / total >= MIN_SCALE_FREE_WEIGHT


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` written the one way every config that builds the same network and trains it
    the same way is written (what :func:`config_key` hashes).

    - A network that shares nothing (:func:`shares_nothing`) is the ``columns`` family (the
      single-task networks side by side, whichever way its tree was written); its static
      loss weights are dropped where they do not change what it learns
      (:func:`loss_scale_free`: Adam or AdamW, ...), so such a config at the single-task
      baselines' training settings is the baselines' own config;
    - with ``optimization: alternating`` the static loss weights are dropped (never used);
    - a ``ple`` of one level (CGC) has no shared gate to feed a next level, so
      ``ple_shared_gate`` is dropped; without task-specific experts it is MMoE with its
      shared experts (Tang et al. 2020, sec. 4.2; tests/test_ple.py: the same outputs for
      the same weights) and is written as ``mmoe``.

    Other configs are kept as written (static weights that differ only by a common factor
    train alike too, but the search draws them normalised, so their keys stay those of
    runs made before).

    The seed is kept; :func:`config_key` leaves it out. Columns-specific init (each column
    seeded as its single-task network) and a hard split's (columns built one after the
    other) give other networks for one seed, from the same distribution: one config.
    """
    out = dict(config)
    static = (out.get("loss_weighting") or "static") == "static"
    if shares_nothing(out):
        for key in _TREE_KEYS:
            out.pop(key, None)
        out["family"] = "columns"
        out["loss_weighting"] = out.get("loss_weighting") or "static"  # the defaults, written out
        out["optimization"] = out.get("optimization") or "joint"
    if out.get("family") == "ple" and int(out.get("ple_levels", 1)) == 1:
        out.pop("ple_shared_gate", None)
        if int(out.get("ple_specific", 1)) == 0:
            mmoe = {"mmoe_experts": out.get("ple_shared", 1), "mmoe_gate": out.get("ple_gate", "flat")}
            out = {**{k: v for k, v in out.items() if not k.startswith("ple_")}, "family": "mmoe", **mmoe}
    if static and (loss_scale_free(out) if out.get("family") == "columns" else out.get("optimization") == "alternating"):
        out.pop("loss_weights", None)
        out.pop("static_normalise", None)
    return out


def config_key(config: dict[str, Any]) -> str:
    """A short hash of everything in ``config`` that determines the trained model except the
    seed, written canonically (:func:`canonical_config`): two trials with the same key
    differ only in their seed (the same config, trained again), so their results are
    samples of one config's seed distribution."""
    kept = {k: v for k, v in canonical_config(config).items() if k not in _NOT_THE_MODEL and not k.startswith("_")}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def describe_config(config: dict[str, Any]) -> str:
    """``hard_split k=2``, ``hard_split per-task left:1 right:3``, ``cross_stitch a=(0.90, 0.10) lr x120``,
    ``mmoe 3 shared experts``, ``ple 2 levels 1 shared + 1 per-task experts`` (``cgc ...`` with one level), ...

    Loss weighting and optimisation are appended when they are not the defaults.
    """
    family = config.get("family")
    own = _family_words(family)[0]
    if own is not None:  # a family that puts itself in words (cross_stitch, mtan, mmoe, ple, a plugin's)
        text = own(config)
    elif family == "hard_split":
        if config.get("affinity_tree") is not None:
            text = f"hard_split affinity tree {config['affinity_tree']}"
        elif config.get("branches") is not None:
            text = "hard_split explicit tree"
        elif config.get("split_points"):
            text = "hard_split per-task " + " ".join(f"{t}:{k}" for t, k in config["split_points"].items())
        elif config.get("task_groups"):
            groups: dict[str, list[str]] = {}
            for task, group in config["task_groups"].items():
                groups.setdefault(str(group), []).append(task)
            branches = " ".join(
                "{" + ",".join(ts) + "}:" + str(config["group_split_points"][g]) for g, ts in groups.items()
            )
            text = f"hard_split trunk:{config.get('split_point')} {branches}"
        else:
            text = f"hard_split k={config.get('split_point')}"
    elif family == "columns":
        text = f"single-task columns x{len(config.get('tasks') or [])} (seed {config.get('seed')})"
    elif family == "single_task":
        text = f"single_task {config.get('task')} (seed {config.get('seed')})"
    elif family == "ensemble":
        text = f"ensemble of {config.get('ensemble_size')} per task"
    else:  # another family: its name and parameters
        text = " ".join([str(family), *(f"{name}={_short(v)}" for name, v in _settings(config))])
    extras = []
    weights = config.get("loss_weights") or {}
    if config.get("optimization") == "alternating":
        extras.append("alternating")
    elif config.get("loss_weighting") not in (None, "static"):
        scope = " last shared stage" if config.get("aggregation_scope") == "last_shared_stage" else ""
        extras.append(str(config["loss_weighting"]) + scope)
    elif weights and max(weights.values()) - min(weights.values()) > 1e-9:
        names = [t["name"] for t in config.get("tasks") or [] if t["name"] in weights] or list(weights)
        extras.append("w " + "/".join(f"{weights[t]:.2f}" for t in names))  # in the tasks' order
    if config.get("class_weighting") == "balanced":
        extras.append("balanced classes")
    return text + (f" [{', '.join(extras)}]" if extras else "")


def _family_words(family: Any) -> tuple[Any, Any]:
    from .families import family_words

    return family_words(family)


def _settings(config: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(argument, value)`` of the config's family's parameters, as its builder names them
    (a family not registered here: the keys that start with ``<family>_``)."""
    from .families import family_parameters, family_settings

    family = config.get("family")
    try:
        names = {key: p.name for key, p in family_parameters(family).items()}
    except (KeyError, ValueError):
        names = {}
    prefix = f"{family}_"
    return [(names.get(k, k[len(prefix):] if k.startswith(prefix) else k), v) for k, v in family_settings(config).items()]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def describe_structure(config: dict[str, Any]) -> str:
    """The sharing structure of ``config`` in words, for a reader who does not know the short form.

    ``shares nothing: one network per task`` (a hard split at 0, which *is* the
    single-task networks), ``shares conv1-conv2, then one branch per task``,
    ``shares every stage (conv1-conv4), one head per task``, ``shares conv1; {a,b}
    share conv2-conv3; then one branch per task`` (a tree),
    ``cross-stitch units mixing task columns after conv2, conv3`` (Misra et al. 2016),
    ``one shared network, per-task attention after conv1-conv4`` (MTAN, Liu et al. 2019).
    Stages are named by the backbone (split point ``k``: stages ``0..k-1`` shared);
    where the backbone cannot be built here, by index.
    """
    family = config.get("family")
    tasks = [t["name"] for t in config.get("tasks") or []]
    names = _stages(config)
    own = _family_words(family)[1]
    if own is not None:  # a family that puts its structure in words (cross_stitch, mtan, mmoe, ple, a plugin's)
        return own(config, names)
    if family == "hard_split" and tasks and names:
        from .families import partitions_from_config

        try:
            parts = partitions_from_config(config, tasks, len(names))
        except (ValueError, KeyError, TypeError):
            return ""
        return _tree_words(parts, names, tasks)
    if family == "single_task":
        return f"one network for {config.get('task')} alone"
    if family == "ensemble":
        return f"{config.get('ensemble_size')} single-task networks per task, their outputs averaged"
    return ""


def _tree_words(parts: Sequence[Sequence[Sequence[str]]], names: Sequence[str], tasks: Sequence[str]) -> str:
    """Words for a hard-sharing tree given as per-stage task groups."""
    everyone = [len(part) == 1 and len(part[0]) == len(tasks) for part in parts]
    alone = [all(len(g) == 1 for g in part) for part in parts]
    if len(tasks) > 1 and all(alone):
        return "shares nothing: one network per task"
    if all(everyone):
        return f"shares every stage ({_range(names, 0, len(names))}), then one head per task"
    trunk = next((s for s, e in enumerate(everyone) if not e), len(parts))
    if all(alone[trunk:]):
        return f"shares {_range(names, 0, trunk)}, then one branch per task"
    pieces = [f"shares {_range(names, 0, trunk)}"] if trunk else []
    s = trunk
    while s < len(parts):  # runs of stages with the same grouping
        end = s
        while end + 1 < len(parts) and sorted(parts[end + 1]) == sorted(parts[s]):
            end += 1
        groups = [g for g in parts[s] if len(g) > 1]
        if groups:
            pieces.append("; ".join("{" + ",".join(g) + "} share " + _range(names, s, end + 1) for g in groups))
        s = end + 1
    if all(alone[-1:]):
        pieces.append("then one branch per task")
    return "; ".join(pieces)


def _range(names: Sequence[str], start: int, stop: int) -> str:
    return names[start] if stop - start == 1 else f"{names[start]}-{names[stop - 1]}"


def stage_span(names: Sequence[str], stages: Any) -> str:
    """``conv2, conv3`` / ``conv1-conv4`` for stage indices (contiguous runs joined by a dash)."""
    chosen = sorted({int(s) for s in stages})
    if not chosen:
        return "no stage"
    label = (lambda i: names[i] if 0 <= i < len(names) else f"stage {i}") if names else (lambda i: f"stage {i}")
    runs: list[list[int]] = [[chosen[0]]]
    for i in chosen[1:]:
        (runs[-1].append(i) if i == runs[-1][-1] + 1 else runs.append([i]))
    return ", ".join(label(r[0]) if len(r) == 1 else f"{label(r[0])}-{label(r[-1])}" for r in runs)


def _stages(config: dict[str, Any]) -> list[str]:
    backbone = config.get("backbone") or {}
    if not isinstance(backbone, dict) or "name" not in backbone:
        return []
    options = json.dumps(backbone.get("options") or {}, sort_keys=True, default=str)
    channels = int((config.get("input") or {}).get("channels", 3))
    return list(_stage_names(backbone["name"], channels, options))


@functools.lru_cache(maxsize=64)
def _stage_names(name: str, channels: int, options: str) -> tuple[str, ...]:
    """The backbone's stage names (built once per backbone and options; no weights are loaded)."""
    from .backbones import stage_names

    try:
        return tuple(stage_names(name, channels, **json.loads(options)))
    except (LookupError, ValueError, TypeError, OSError):  # an unknown plugin backbone (its module not imported here): fall back to indices
        return ()
