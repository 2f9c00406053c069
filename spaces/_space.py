"""The search space as an Optuna define-by-run function, conditional on the family.

A trial's config is the experiment's fixed config plus what the trial samples, under
the same keys everywhere (``family``, ``split_point``, ``alpha_same``, ``alpha_diff``,
``lr_multiplier``, ``loss_weights``, ``lr``). Optuna parameters that are only a
means to a value (the raw draws behind the loss weights) start with ``_`` and are
not part of the config.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import optuna

from mtl_models import SchemeParameter, family_parameters, weighting_parameters

from ._common import FloatRange, IntRange, choices
from ._parts import derived, part_keys, resolve

if TYPE_CHECKING:  # the schema imports this module (fixed_config)
    from ._schema import Experiment

HIDDEN_PREFIX = "_"


def fixed_config(exp: Experiment, input_spec: dict[str, Any]) -> dict[str, Any]:
    """The config keys every trial and baseline of ``exp`` shares (no family yet)."""
    names = [t.name for t in exp.tasks]
    weights = exp.space.loss_weights
    if isinstance(weights, dict):
        total = sum(weights.values())
        loss_weights = {t: weights[t] / total for t in names}
    else:
        loss_weights = {t: 1.0 / len(names) for t in names}
    return {
        "tasks": [t.spec().to_dict() for t in exp.tasks],
        "backbone": {
            "name": exp.backbone.name,
            "weights": str(exp.backbone.weights) if exp.backbone.weights else None,
            "options": dict(exp.backbone.options),
        },
        "input": dict(input_spec),
        "head": exp.head.model_dump(),
        "optimizer": exp.train.optimizer,
        "lr": exp.train.lr,
        "weight_decay": exp.train.weight_decay,
        "momentum": exp.train.momentum,
        "lr_schedule": exp.train.lr_schedule,
        "warmup_epochs": exp.train.warmup_epochs,
        "lr_milestones": list(exp.train.lr_milestones),
        "lr_gamma": exp.train.lr_gamma,
        "grad_clip": exp.train.grad_clip,
        "epochs": exp.train.epochs,
        "batch_size": exp.train.batch_size,
        "device": exp.train.device,
        "precision": exp.train.precision,
        "channels_last": exp.train.channels_last,
        "compile": exp.train.compile,
        "seed": exp.seed,
        "loss_weighting": "static",
        "loss_weights": loss_weights,
        "optimization": "joint",
        "class_weighting": "none",
        "plugins": list(exp.plugins),
    }


def _float(trial: optuna.Trial, name: str, param: float | FloatRange) -> float:
    if isinstance(param, FloatRange):
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    return float(param)


def _int(trial: optuna.Trial, name: str, low: int, high: int) -> int:
    return low if low == high else trial.suggest_int(name, low, high)


def _categorical(trial: optuna.Trial, name: str, choices: list[Any]) -> Any:
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def _value(trial: optuna.Trial, name: str, param: Any) -> Any:
    """A space entry of any kind: a float or int range, a list of choices, or a fixed value."""
    if isinstance(param, FloatRange):
        return _float(trial, name, param)
    if isinstance(param, IntRange):
        return _int(trial, name, param.low, param.high)
    if isinstance(param, list):
        return _categorical(trial, name, param)
    return param


def simplex_weights(trial: optuna.Trial, task_names: list[str]) -> dict[str, float]:
    """Loss weights uniform on the simplex: ``w_t = e_t / sum(e)``, ``e_t = -log(u_t)``, ``u_t ~ U(0, 1)``.

    Normalised exponential draws are Dirichlet(1, ..., 1), i.e. uniform on the
    simplex (the construction Optuna's FAQ recommends for simplex parameters).
    """
    draws = [-math.log(trial.suggest_float(f"{HIDDEN_PREFIX}loss_weight.{t}", 1e-6, 1.0)) for t in task_names]
    total = sum(draws)
    return {t: d / total for t, d in zip(task_names, draws)}


class SpaceSampler:
    """The define-by-run function of an experiment: ``sampler(trial) -> config``.

    Only valid combinations are sampled: each parameter is asked for only when the
    choices before it make it matter (a split point only for hard splits, the alphas
    only for cross-stitch, GradNorm's alpha only with GradNorm, ...). A class rather
    than a closure so that Ray Tune can pickle it with the searcher's state.
    """

    def __init__(self, exp: Experiment, fixed: dict[str, Any], affinity_trees: list[dict[str, Any]] | None = None) -> None:
        self.space = exp.space
        self.affinity_trees = [t["branches"] for t in affinity_trees or []]
        self.task_names = [t.name for t in exp.tasks]
        self.split_range = exp.split_point_range()
        self.num_stages = exp.num_stages()
        self.fixed = dict(fixed)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        space = self.space
        config = dict(self.fixed)
        family = _categorical(trial, "family", list(space.families))
        config["family"] = family
        if family == "hard_split":  # the tree: structure the space builds
            config.update(self._tree(trial))
        else:  # every other family: its builder's parameters (cross_stitch, mtan, mmoe, ple, a plugin's)
            config.update(self._part_parameters(trial, family_parameters(family), config))
        config["optimization"] = _categorical(trial, "optimization", choices(space.optimization))
        if config["optimization"] == "joint":
            config.update(self._weighting(trial))
        config["class_weighting"] = _categorical(trial, "class_weighting", choices(space.class_weighting))
        if space.grad_clip is not None:
            config["grad_clip"] = _float(trial, "grad_clip", space.grad_clip)
        if space.lr is not None:
            config["lr"] = _float(trial, "lr", space.lr)
        return config

    def _tree(self, trial: optuna.Trial) -> dict[str, Any]:
        if self.space.branches is not None:
            return {"tree": "branches", "branches": self.space.branches}
        low, high = self.split_range
        trees = [t for t in choices(self.space.tree) if t != "affinity"] + (["affinity"] if self.affinity_trees else [])
        tree = _categorical(trial, "tree", trees)
        out: dict[str, Any] = {"tree": tree}
        if tree == "affinity":  # a tree the task-affinity stage proposed
            index = _categorical(trial, "affinity_tree", list(range(len(self.affinity_trees))))
            out.update(affinity_tree=index, branches=self.affinity_trees[index])
        elif tree == "single":
            out["split_point"] = _int(trial, "split_point", low, high)
        elif tree == "per_task":
            out["split_points"] = {t: _int(trial, f"split_point.{t}", low, high) for t in self.task_names}
        else:  # grouped: a trunk, then groups of tasks, then one branch each
            out["split_point"] = _int(trial, "split_point", low, high)
            groups = list(range(self.space.max_groups or max(len(self.task_names) - 1, 1)))
            out["task_groups"] = {t: _categorical(trial, f"task_group.{t}", groups) for t in self.task_names}
            used = sorted(set(out["task_groups"].values()))
            out["group_split_points"] = {str(g): _int(trial, f"group_split_point.{g}", low, high) for g in used}
            out["task_groups"] = {t: str(g) for t, g in out["task_groups"].items()}
        return out

    def _weighting(self, trial: optuna.Trial) -> dict[str, Any]:
        """The scheme, then its own parameters under their keys (``gradnorm_alpha``, ...)."""
        space = self.space
        scheme = _categorical(trial, "loss_weighting", choices(space.loss_weighting))
        out: dict[str, Any] = {"loss_weighting": scheme}
        if scheme == "static" and space.loss_weights == "simplex":
            out["loss_weights"] = simplex_weights(trial, self.task_names)
        out.update(self._part_parameters(trial, weighting_parameters(scheme), self.fixed))
        return out

    def _part_parameters(self, trial: optuna.Trial, params: dict[str, SchemeParameter], config: dict[str, Any]) -> dict[str, Any]:
        """A scheme's or family's searchable parameters under their keys, in its signature's
        order, as the space gives them: a stage subset (``<prefix>.<s>`` booleans), a value
        derived from ``config`` and the parameters before it, a range a word stands for in
        ``config``, or a value, range or choices."""
        out: dict[str, Any] = {}
        for key, param in params.items():
            if not param.searchable:
                continue
            value = self.space.part_param(key)
            if param.subset is not None:
                out[key] = param.subset.choose(
                    self.num_stages, value, lambda name: trial.suggest_categorical(name, [True, False]))
                continue
            rule = derived(key, value)
            if rule is not None:  # rows sum to 1 (alpha_diff: convex), ...
                out[key] = rule.rule({**config, **out})
                continue
            value = _value(trial, key, resolve(key, value, config))
            out[key] = float(value) if param.base is float else value
        return out


def define_space(exp: Experiment, fixed: dict[str, Any], affinity_trees: list[dict[str, Any]] | None = None) -> SpaceSampler:
    """The define-by-run function that samples one trial config of ``exp``'s space; with
    ``affinity_trees`` (the affinity stage's proposals) hard splits may take one of them."""
    return SpaceSampler(exp, fixed, affinity_trees)


def optuna_point(point: dict[str, Any], exp: Experiment | None = None) -> dict[str, Any]:
    """A user's starting point (config keys) as Optuna parameters, for ``enqueue_trial``.

    ``split_points: {t: k}`` becomes the per-task parameters ``split_point.<t>``.
    ``loss_weights: {t: w}`` becomes the raw draws ``u_t = exp(-w_t)``, which
    :func:`simplex_weights` maps back to ``w`` exactly (after normalising). A value the
    space derives rather than samples (``alpha_diff`` of convex rows) is dropped.
    """
    dropped = {k for k in point if exp is not None and k in part_keys() and derived(k, exp.space.part_param(k))}
    out = {k: v for k, v in point.items() if k not in ("loss_weights", "split_points", *dropped)}
    for task, k in (point.get("split_points") or {}).items():
        out[f"split_point.{task}"] = k
    weights = point.get("loss_weights") or {}
    total = sum(weights.values()) or 1.0
    for task, w in weights.items():
        out[f"{HIDDEN_PREFIX}loss_weight.{task}"] = math.exp(-w / total)
    return out
