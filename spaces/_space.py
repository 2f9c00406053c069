"""The search space as an Optuna define-by-run function, conditional on the family.

A trial's config is the experiment's fixed config plus what the trial samples, under
the same keys everywhere (``family``, ``split_point``, ``alpha_same``, ``alpha_diff``,
``lr_multiplier``, ``loss_weights``, ``lr``). Optuna parameters that are only a
means to a value (the raw draws behind the loss weights) start with ``_`` and are
not part of the config.
"""
from __future__ import annotations

import math
from typing import Any

import optuna

from ._schema import Experiment, FloatRange, IntRange

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
        "grad_clip": exp.train.grad_clip,
        "epochs": exp.train.epochs,
        "batch_size": exp.train.batch_size,
        "device": exp.train.device,
        "seed": exp.seed,
        "loss_weighting": "static",
        "loss_weights": loss_weights,
    }


def _float(trial: optuna.Trial, name: str, param: float | FloatRange) -> float:
    if isinstance(param, FloatRange):
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    return float(param)


def _int(trial: optuna.Trial, name: str, low: int, high: int) -> int:
    return low if low == high else trial.suggest_int(name, low, high)


def _categorical(trial: optuna.Trial, name: str, choices: list[Any]) -> Any:
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


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

    A class rather than a closure so that Ray Tune can pickle it with the searcher's
    state (resume needs it).
    """

    def __init__(self, exp: Experiment, fixed: dict[str, Any]) -> None:
        self.space = exp.space
        self.task_names = [t.name for t in exp.tasks]
        self.split_range = exp.split_point_range()
        self.fixed = dict(fixed)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        space = self.space
        config = dict(self.fixed)
        family = _categorical(trial, "family", list(space.families))
        config["family"] = family
        if family == "hard_split":
            config["split_point"] = _int(trial, "split_point", *self.split_range)
        elif family == "cross_stitch":
            config["alpha_same"] = _float(trial, "alpha_same", space.alpha_same)
            config["alpha_diff"] = _float(trial, "alpha_diff", space.alpha_diff)
            config["lr_multiplier"] = _float(trial, "lr_multiplier", space.lr_multiplier)
            config["cross_stitch_stages"] = space.cross_stitch_stages
        if space.loss_weights == "simplex":
            config["loss_weights"] = simplex_weights(trial, self.task_names)
        if space.lr is not None:
            config["lr"] = _float(trial, "lr", space.lr)
        return config


def define_space(exp: Experiment, fixed: dict[str, Any]) -> SpaceSampler:
    """The define-by-run function that samples one trial config of ``exp``'s space."""
    return SpaceSampler(exp, fixed)


def optuna_point(point: dict[str, Any]) -> dict[str, Any]:
    """A user's starting point (config keys) as Optuna parameters, for ``enqueue_trial``.

    ``loss_weights: {t: w}`` becomes the raw draws ``u_t = exp(-w_t)``, which
    :func:`simplex_weights` maps back to ``w`` exactly (after normalising).
    """
    out = {k: v for k, v in point.items() if k != "loss_weights"}
    weights = point.get("loss_weights") or {}
    total = sum(weights.values()) or 1.0
    for task, w in weights.items():
        out[f"{HIDDEN_PREFIX}loss_weight.{task}"] = math.exp(-w / total)
    return out
