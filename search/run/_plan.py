"""The plan of a run, before it runs: the resolved space, the trials per phase and the
expected wall time (``mtlsearch plan``; ``mtlsearch run`` prints it at its start).

The wall time comes from a short timing on this machine: a few training steps of the
largest network the space can build (the one with the most parameters among each
family's widest member: a hard split that shares nothing, a cross-stitch network with a
unit after every stage, ...) and of one single-task network, each with the threads a
trial gets (``search.resources.cpu``), scaled to an epoch (train steps, plus the
validation pass at two thirds of a step per double-size batch) and to each phase's
trainings, divided by the trials that run at once. Searched and confirmation trials
are costed between a single-task-sized network (everything shared) and the largest one,
every epoch (pruning only shortens them): a range for an idle machine; a machine shared
with other work is slower.
No Ray is started.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

import mtl_models as mm
from mtl_models import MultiTaskData
from spaces import Experiment, FloatRange, IntRange, affinity_cost, budget, budget_warning, fixed_config, searched_training

from ..trial._baselines import baseline_columns, baseline_seeds, ensemble_size
from ._fixed import trial_base_config

TIMED_STEPS = 5  # after one warm-up step; the median step is taken


@dataclass(frozen=True)
class Timing:
    """Seconds per training epoch of the largest network and of a single-task one."""

    largest: str
    largest_params: int
    largest_epoch_s: float
    single_epoch_s: float
    steps_per_epoch: int
    threads: int


@dataclass(frozen=True)
class Phase:
    name: str
    trainings: int
    epochs: float  # per training (network-epochs for the affinity stage)
    what: str
    per_epoch_s: tuple[float, float] | None = None  # seconds of one epoch of its networks: smallest, largest
    parallel: bool = True

    @property
    def network_epochs(self) -> float:
        return self.trainings * self.epochs


def _value(v: Any) -> str:
    if isinstance(v, FloatRange):
        return f"{v.low:g}..{v.high:g}" + (" log" if v.log else "")
    if isinstance(v, IntRange):
        return f"{v.low}..{v.high}"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {x:g}" for k, x in v.items()) + "}"
    return str(v)


def space_lines(exp: Experiment) -> list[str]:
    """The space with its defaults filled in; ``(default)`` marks what the file leaves out,
    ``(filled in: ...)`` what the defaults chose for this experiment."""
    space, written = exp.space, exp.space.model_fields_set
    filled = exp.defaults.filled
    families = space.families
    low, high = exp.split_point_range()
    keys: list[tuple[str, Any]] = [("families", families)]
    if "hard_split" in families:
        if space.branches is not None:
            keys.append(("branches", space.branches))
        else:
            keys += [("tree", space.tree), ("split_point", IntRange(low=low, high=high) if high > low else low)]
            if "grouped" in (space.tree if isinstance(space.tree, list) else [space.tree]):
                keys.append(("max_groups", space.max_groups or max(len(exp.tasks) - 1, 1)))
    words: dict[str, str] = {}  # key -> "auto for adam": a word the space gave for a range the config chooses
    for family in families:  # every family but hard_split is declared by its builder's arguments
        for key, p in mm.family_parameters(family).items():
            if p.searchable:
                keys.append((key, exp.space_param(key)))
                marker = p.words.get(space.part_param(key)) if isinstance(space.part_param(key), str) else None
                if isinstance(marker, mm.ByConfig):
                    words[key] = f"{marker.word} for {exp.trial_context()[marker.key]}"
    keys += [("loss_weighting", space.loss_weighting), ("loss_weights", space.loss_weights),
             ("optimization", space.optimization), ("class_weighting", space.class_weighting),
             ("lr", space.lr if space.lr is not None else f"{exp.train.lr:g} (train.lr)")]
    if space.grad_clip is not None:
        keys.append(("grad_clip", space.grad_clip))
    lines = []
    for key, value in keys:
        text = _value(value)
        if f"space.{key}" in filled:
            mark = f"  (filled in: {exp.defaults.reasons[f'space.{key}']})"
        elif key in words:
            mark = f"  ({words[key]})"
        elif key not in written:
            mark = "  (default)"
        else:
            mark = ""
        lines.append(f"  {key}: {text}{mark}")
    return lines


def phases(exp: Experiment, timing: Timing | None = None) -> list[Phase]:
    """The run's phases and their trainings (upper bounds where pruning or ties may cut them)."""
    epochs = exp.train.epochs
    T = len(exp.tasks)
    largest = (timing.single_epoch_s, timing.largest_epoch_s) if timing else None
    single = (timing.single_epoch_s, timing.single_epoch_s) if timing else None
    seeds = baseline_seeds(exp)
    ens = f"; the ensemble averages {ensemble_size(exp)} of them per task, no training" if exp.baselines.ensemble else ""
    if baseline_columns(exp, fixed_config(exp, {}))[0] == "joint":  # one trial per seed, T columns in it
        columns = (T * single[0], T * single[1]) if single else None
        out = [Phase("baselines", seeds, epochs, f"{seeds} seeds x one network of {T} single-task columns{ens}", columns)]
    else:
        out = [Phase("baselines", seeds * T, epochs, f"{seeds} seeds x {T} single-task networks{ens}", single)]
    if exp.affinity.enabled:
        cost = affinity_cost(exp.affinity, exp, exp.affinity.epochs)
        why = exp.defaults.reasons.get("affinity.epochs", "on: the file's affinity section")
        every = exp.defaults.reasons.get("affinity.every")
        out.append(Phase("affinity", 1, cost, f"{exp.affinity.epochs} epochs of one shared network, lookahead "
                         + ("every step" if exp.affinity.every == 1 else f"every {exp.affinity.every} steps") + (f" ({every})" if every else "") + f" = {cost:.1f} network-epochs ({why})",
                         single, parallel=False))
    else:
        why = exp.defaults.reasons.get("affinity.epochs", "off: affinity.epochs 0")
        out.append(Phase("affinity", 0, 0, why))
    pruner = exp.search.pruner.name
    sampler = (f"TPE, {exp.search.sampler.n_startup_trials} random first" if exp.search.sampler.name == "tpe"
               else f"the {exp.search.sampler.name} sampler")
    out.append(Phase("search", exp.search.num_trials, epochs,
                     sampler + ("" if pruner == "nop" else f"; the {pruner} pruner may stop some early"), largest))
    confirm = exp.confirm
    if confirm.enabled:
        tuned = searched_training(exp)
        configs = min(confirm.top_k, confirm.max_configs) + (1 if confirm.default else 0) + (1 if tuned else 0)
        parts = [f"the top {confirm.top_k}"] + [r for r, on in (
            ("the no-search default", confirm.default),
            (f"the single-task networks at the searched {', '.join(tuned)}", tuned)) if on]
        listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        out.append(Phase("confirm", configs * confirm.seeds, epochs,
                         f"up to {configs} configs ({listed}) x {confirm.seeds} fresh seeds"
                         + ("; raced: a config beyond the noise behind stops early" if confirm.seeds > 2
                            and confirm.race_alpha > 0 else ""), largest))
    else:
        out.append(Phase("confirm", 0, 0, "off (confirm.top_k or confirm.seeds is 0)"))
    return out


def concurrency(exp: Experiment, num_cpus: int | None = None) -> int:
    """Trials at a time on this machine: its CPUs over a trial's, at most ``max_concurrent``."""
    cpus = num_cpus or os.cpu_count() or 1
    at_once = max(1, int(cpus // max(exp.search.resources.cpu, 1e-9)))
    if exp.search.resources.gpu > 0 and torch.cuda.is_available():
        at_once = min(at_once, int(torch.cuda.device_count() // exp.search.resources.gpu) or 1)
    return min(at_once, exp.search.max_concurrent or at_once)


def _candidates(exp: Experiment, fixed: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each family's widest member (the most parameters it can have)."""
    out = []
    for family in exp.space.families:
        config = {**fixed, "family": family}
        if family == "hard_split":
            config.update(tree="single", split_point=0)
            out.append(("hard split sharing nothing", config))
        else:  # a family declared by its builder's arguments: every stage of a subset, the high
            for key, p in mm.family_parameters(family).items():  # end of a range, the first choice
                value = exp.space_param(key) if p.searchable else None
                if p.subset is not None or (isinstance(value, str) and value in p.words):
                    continue  # the builder's default: every stage; a derived value: the builder's default
                if isinstance(value, (IntRange, FloatRange)):
                    config[key] = value.high
                elif value is not None:
                    config[key] = value[0] if isinstance(value, list) else value
            out.append((mm.describe_structure(config) or family, config))
    return out


def _step_seconds(config: dict[str, Any], data: MultiTaskData, steps: int = TIMED_STEPS) -> tuple[float, int]:
    """Seconds per training step of ``config`` (the median of ``steps`` after one warm-up
    step: a step that another process delayed does not count), and its parameters."""
    mm.seed_everything(0)
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    batches = trainer.feeds["train"].batches(trainer.batch_size, shuffle=True, generator=trainer.generator, augment=True)
    times = []
    for i, (x, targets) in enumerate(batches):
        if i > steps:
            break
        started = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.weighting.backward(trainer.losses(trainer.forward(x), targets), model)
        trainer.optimizer.step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - started)
    return statistics.median(times) if times else 0.0, sum(p.numel() for p in model.parameters())


def time_epochs(exp: Experiment, data: MultiTaskData, fixed: dict[str, Any]) -> Timing:
    """Time :data:`TIMED_STEPS` steps of the largest network and of a single-task one (module
    docstring), with a trial's threads, and scale them to an epoch."""
    threads = max(1, min(int(exp.search.resources.cpu), os.cpu_count() or 1))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sized = []
        for label, config in _candidates(exp, fixed):
            try:
                params = sum(p.numel() for p in mm.build_model(config).parameters())
            except (TypeError, ValueError, KeyError):  # a plugin family that needs its searched arguments
                continue
            sized.append((params, label, config))
        params, label, config = max(sized, key=lambda s: s[0])
        largest, params = _step_seconds(config, data)
        single, _ = _step_seconds({**fixed, "family": "single_task", "task": exp.tasks[0].name}, data)
    finally:
        torch.set_num_threads(before)
    batch = exp.train.batch_size
    n_train = len(data.splits["train"])
    n_val = len(data.splits["val"]) if "val" in data.splits else 0
    steps = math.ceil(n_train / batch)
    scale = steps + (2 / 3) * math.ceil(n_val / (2 * batch))
    return Timing(label, params, largest * scale, single * scale, steps, threads)


def format_plan(exp: Experiment, timing: Timing | None = None, num_cpus: int | None = None) -> str:
    """The plan as ``mtlsearch plan`` prints it."""
    names = [t.name for t in exp.tasks]
    stages = exp.stage_names()
    lines = [
        f"Plan of {exp.name!r}: {len(names)} tasks ({', '.join(names)}), backbone {exp.backbone.name} "
        f"({len(stages)} stages: {', '.join(stages)}), {exp.train.epochs} epochs per training",
        "Space (defaults filled in):",
        *space_lines(exp),
    ]
    sized = budget(exp)
    trials = exp.search.num_trials
    given = "search.num_trials" not in exp.defaults.filled
    set_here = any(o.split("=", 1)[0].strip() in ("search.num_trials", "search") for o in exp.overrides)
    origin = " (--set)" if set_here else (" (the file)" if given else " (sized to the space)")
    startup = (f"TPE's random start {exp.search.sampler.n_startup_trials}" if exp.search.sampler.name == "tpe"
               else f"the {exp.search.sampler.name} sampler")
    lines.append(f"Budget: {trials} trials{origin}, {startup}. Rule: {sized.rule()}.")
    warning = budget_warning(exp)
    if warning:
        lines.append(f"WARNING: {warning}.")
    at_once = concurrency(exp, num_cpus)
    lines.append(f"Phases ({at_once} trial{'s' if at_once > 1 else ''} at a time):")
    estimates = phase_seconds(exp, timing, num_cpus)
    for phase in phases(exp, timing):
        if phase.trainings == 0:
            lines.append(f"  {phase.name:<10} off: {phase.what.removeprefix('off: ')}")
            continue
        count = f"{phase.network_epochs:.1f} network-epochs" if phase.name == "affinity" else (
            f"{phase.trainings} trainings x {phase.epochs:g} epochs")
        estimate = f", ~{_span(*estimates[phase.name])}" if phase.name in estimates else ""
        lines.append(f"  {phase.name:<10} {count}{estimate}: {phase.what}")
    if timing is not None:
        lines += timing_lines(exp, timing, num_cpus)
    return "\n".join(lines)


def phase_seconds(exp: Experiment, timing: Timing | None, num_cpus: int | None = None) -> dict[str, tuple[float, float]]:
    """Each phase's expected seconds, smallest to largest networks (none without a timing)."""
    at_once = concurrency(exp, num_cpus)
    out = {}
    for phase in phases(exp, timing):
        if phase.trainings == 0 or phase.per_epoch_s is None:
            continue
        bounds = []
        for per_epoch in phase.per_epoch_s:
            seconds = phase.network_epochs * per_epoch / (at_once if phase.parallel else 1)
            bounds.append(max(seconds, phase.epochs * per_epoch))  # one training's own length at least
        out[phase.name] = (bounds[0], bounds[1])
    return out


def timing_lines(
    exp: Experiment, timing: Timing, num_cpus: int | None = None, after: str | None = None
) -> list[str]:
    """The timing and the expected wall time of the phases (``after``: of those after that one)."""
    estimates = phase_seconds(exp, timing, num_cpus)
    names = list(estimates)
    if after is not None:
        order = [phase.name for phase in phases(exp)]
        names = [n for n in names if order.index(n) > order.index(after)]
    total = [sum(estimates[n][i] for n in names) for i in (0, 1)]
    when, per_phase = "", ""
    if after is not None:
        when = f" after the {after}"
        per_phase = ", ".join(f"{n} ~{_span(*estimates[n])}" for n in names) + "; "
    return [
        f"Timing on this machine ({timing.threads} thread{'s' if timing.threads > 1 else ''} per trial, "
        f"the median of {TIMED_STEPS} steps each): an epoch ({timing.steps_per_epoch} steps and validation) of the largest "
        f"network ({timing.largest}, {timing.largest_params:,} parameters) {timing.largest_epoch_s:.2f} s, of a "
        f"single-task network {timing.single_epoch_s:.2f} s.",
        f"Expected wall time{when}: ~{_span(*total)} of training ({per_phase}every searched and confirmation trial "
        "costed from a fully shared to the largest network, all epochs: pruning shortens the search; "
        "other work on this machine lengthens it).",
    ]


def _span(low: float, high: float) -> str:
    a, b = _duration(low), _duration(high)
    return a if a == b else f"{a} to {b}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan(exp: Experiment, data: MultiTaskData | None = None, timed: bool = True, num_cpus: int | None = None) -> str:
    """Load the data (unless given), time an epoch (with ``timed``) and format the plan."""
    if not timed:
        return format_plan(exp, None, num_cpus)
    timing = _timing(exp, data if data is not None else exp.load_data())
    if isinstance(timing, str):
        return format_plan(exp, None, num_cpus) + "\n" + timing
    return format_plan(exp, timing, num_cpus)


# What ``mtlsearch run`` says at its start instead of timing, and after its baselines.
DEFERRED_TIMING = ("Timing: once the baselines are trained, on the cores they free (`mtlsearch plan` times it "
                   "before a run).")


def timed_rest(exp: Experiment, data: MultiTaskData, num_cpus: int | None = None) -> str:
    """Time an epoch now and format the expected wall time of the phases after the baselines:
    ``mtlsearch run`` does it once its baselines are trained, so that its first trial does
    not wait for a timing (~3 s of a CPU: the steps and the optimiser's first import of
    torch's compiler stack) and the timing does not share the cores with trials."""
    timing = _timing(exp, data)
    return timing if isinstance(timing, str) else "\n".join(timing_lines(exp, timing, num_cpus, after="baselines"))


def _timing(exp: Experiment, data: MultiTaskData) -> Timing | str:
    """The timing, or why there is none: the plan informs, it never stops a run."""
    try:
        return time_epochs(exp, data, trial_base_config(exp, data))
    except (RuntimeError, ValueError, TypeError) as exc:
        return f"No timing: {type(exc).__name__}: {exc}"
