"""Defaults that grow with the question, and a trial budget sized to the space.

What a user who writes only ``data``, ``tasks`` and ``backbone`` gets (anything the file
writes wins; :func:`resolve_defaults` fills in only what it leaves out, and records what
it filled in, so ``mtlsearch plan`` and the saved ``experiment.json`` show it):

- **Trees.** With three or more tasks the answer to "how should they share?" is usually a
  tree (some tasks share deeper than others), so ``space.tree`` becomes
  ``[single, per_task, grouped]`` (plus ``affinity`` when that stage runs). With two
  tasks it stays ``single``: a per-task split point is the only other tree there.
- **The learning rate** is searched with three or more tasks (when the file's space leaves
  ``lr`` out), log-uniform over :data:`LR_FACTOR` either side of ``train.lr``: which
  structure wins depends on the rate it is trained at (on the planted-group set of
  bench/defaults.py the planted tree lost to a barely-mixing cross-stitch network at the
  fixed rate and won with the rate searched), and the confirmation phase then trains the
  single-task networks at the pick's rate too (the like-for-like reference), so a gain
  that comes from the rate alone is not credited to sharing. Two tasks keep the fixed rate.
- **The task-affinity stage** (TAG, Fifty et al. 2021) runs by default with three or more
  tasks when it is cheap against the search: its cost, :data:`AFFINITY_EPOCHS` epochs of
  one fully shared network times its lookahead overhead (:func:`affinity_cost`), at most
  :data:`CHEAP_SHARE` of the search's trial-epochs (``num_trials x epochs``).
- **How often it measures** (``affinity.every``, when the file leaves it out): TAG's
  every 10 steps assumes thousands of steps; on a small training set 2 epochs hold a few
  dozen, and 10 would give ~5 measurements, too few for the noise gate's t interval to
  split anything. :func:`affinity_every` measures often enough for
  :data:`AFFINITY_SAMPLES` measurements, never more often than the cheap share allows,
  never less often than TAG's 10.
- **The budget** (:func:`budget`): TPE starts with ``max(d + 1, K)`` random trials, ``d``
  the searched dimensions of the longest conditional path through the space and ``K`` the
  structures it can build (BOHB, Falkner et al. 2018, fits its density model once it
  has ``d + 1`` observations; ``K``: each structure drawn once before the model takes
  over), then as many model-guided trials: ``2 max(d + 1, K)`` trials cover the space;
  the default ``num_trials`` is that, but never below :data:`MIN_TRIALS` (the old fixed
  default, so no file gets fewer trials than before). The quickstart's hand-sized 12 trials and 6 startup trials are
  exactly this rule on its space. A file that gives ``num_trials`` keeps it (and TPE still
  starts with the rule's random trials unless the file says otherwise);
  :func:`budget_warning` says when it is below the rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mtl_models import family_parameters, weighting_parameters

from ._common import FloatRange, IntRange, choices

if TYPE_CHECKING:
    from ._schema import Experiment

MANY_TASKS = 3  # from this many tasks on, the trees join the default space
DEFAULT_TREES = ["single", "per_task", "grouped"]
AFFINITY_EPOCHS = 2  # as `mtlsearch affinity` measures by default
AFFINITY_SAMPLES = 30  # measurements the affinity stage aims for (its noise gate: a t interval over them)
TAG_EVERY = 10  # TAG's reference code measures every 10th step
CHEAP_SHARE = 0.10  # the affinity stage runs by default when it costs at most this share of the search
MIN_TRIALS = 20  # the old fixed default: a sized budget is never smaller
MIN_STARTUP = 5  # Optuna's and the old default's floor of random trials
LR_FACTOR = 4.0  # the default learning-rate range with 3+ tasks: train.lr / 4 to train.lr x 4, log-uniform


@dataclass(frozen=True)
class SpacePath:
    """One conditional path through the space: a structure and the dimensions it samples."""

    structure: str
    dims: tuple[str, ...]


@dataclass(frozen=True)
class Budget:
    """The sized budget of a space: its paths, ``d``, ``K`` and the trials the rule gives."""

    paths: tuple[SpacePath, ...]
    startup: int
    trials: int

    @property
    def covering(self) -> int:
        """The trials that cover the space: the random ones, then as many guided."""
        return 2 * self.startup

    @property
    def dims(self) -> int:
        return max(len(p.dims) for p in self.paths)

    @property
    def structures(self) -> int:
        return len(self.paths)

    @property
    def longest(self) -> SpacePath:
        return max(self.paths, key=lambda p: len(p.dims))

    def rule(self) -> str:
        """The rule in words with this space's numbers."""
        return (
            f"{self.dims} searched dimensions on the longest path ({self.longest.structure}: "
            f"{', '.join(self.longest.dims)}) and {self.structures} structures: TPE starts with "
            f"max({self.dims} + 1, {self.structures}) = {self.startup} random trials, then as many guided: "
            f"{self.covering} trials" + (f"; the default is never below {MIN_TRIALS}" if self.covering < MIN_TRIALS else "")
        )


@dataclass
class Resolved:
    """What :func:`resolve_defaults` filled in (``key: value`` lines) and why."""

    filled: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def _searched(param: Any) -> bool:
    if isinstance(param, (FloatRange, IntRange)):
        return param.low < param.high
    return isinstance(param, list) and len(param) > 1


def space_paths(exp: "Experiment") -> list[SpacePath]:
    """Every structure the space can build, with the dimensions a trial samples on its way
    there (as :class:`spaces.SpaceSampler` asks them; an affinity tree counts as one
    structure whatever the stage proposes, its index one dimension)."""
    space, names = exp.space, [t.name for t in exp.tasks]
    T, S = len(names), exp.num_stages()
    low, high = exp.split_point_range()
    split = ["split_point"] if high > low else []
    family = ["family"] if len(space.families) > 1 else []
    common = _common_dims(exp, T)
    paths: list[SpacePath] = []
    for fam in space.families:
        if fam == "hard_split":
            if space.branches is not None:
                paths.append(SpacePath("hard_split branches", tuple(family + common)))
                continue
            trees = choices(space.tree)
            if exp.affinity.enabled and "affinity" not in trees:
                trees = [*trees, "affinity"]
            tree = ["tree"] if len(trees) > 1 else []
            groups = space.max_groups or max(T - 1, 1)
            for kind in trees:
                extra = {
                    "single": split,
                    "per_task": [f"split_point.{t}" for t in names] if split else [],
                    "grouped": split + [f"task_group.{t}" for t in names] + (
                        [f"group_split_point.{g}" for g in range(min(groups, T))] if split else []
                    ),
                    "affinity": ["affinity_tree"],
                }[kind]
                paths.append(SpacePath(f"hard_split {kind}", tuple(family + tree + extra + common)))
        else:  # a family declared by its builder's arguments (cross_stitch, mtan, mmoe, ple, a plugin's)
            paths.append(SpacePath(fam, tuple(family + family_dims(exp, fam, S) + common)))
    return paths


def family_dims(exp: "Experiment", family: str, num_stages: int) -> list[str]:
    """The dimensions family ``family``'s own parameters add, as the sampler asks them: a
    searched stage subset's booleans, a searched range or choice; a derived value none."""
    dims: list[str] = []
    for key, p in family_parameters(family).items():
        if not p.searchable:
            continue
        value = exp.space_param(key)  # a range a word stands for, resolved (lr_multiplier: auto)
        if p.subset is not None:
            dims += p.subset.searched_names(num_stages) if value == "search" else []
        elif isinstance(value, str) and value in p.words:  # derived (alpha_diff: convex)
            continue
        elif _searched(value if p.base in (float, int) else choices(value)):
            dims.append(key)
    return dims


def _common_dims(exp: "Experiment", T: int) -> list[str]:
    """The loss and optimiser dimensions every structure samples (the widest scheme's)."""
    space = exp.space
    dims = ["optimization"] if _searched(choices(space.optimization)) else []
    schemes = choices(space.loss_weighting)
    dims += ["loss_weighting"] if len(schemes) > 1 else []
    widest: list[str] = []
    for scheme in schemes:
        own = [k for k, p in weighting_parameters(scheme).items() if p.searchable and _searched(space.part_param(k))]
        if scheme == "static" and space.loss_weights == "simplex":  # T draws, normalised: T - 1 free
            own = [f"loss_weights[{i}]" for i in range(T - 1)]
        widest = max(widest, own, key=len)
    dims += widest
    return dims + searched_training(exp)


def searched_training(exp: "Experiment") -> list[str]:
    """The training settings a single-task network also has that the space searches
    (``lr``, ``grad_clip``, ``class_weighting``): what the tuned single-task reference
    of the confirmation phase is trained with (reports.TUNED_TRAINING_KEYS)."""
    space = exp.space
    keys = ["class_weighting"] if _searched(choices(space.class_weighting)) else []
    return keys + [k for k in ("grad_clip", "lr") if getattr(space, k) is not None and _searched(getattr(space, k))]


def budget(exp: "Experiment") -> Budget:
    """The trials the rule gives ``exp``'s space (module docstring)."""
    paths = tuple(space_paths(exp))
    d = max(len(p.dims) for p in paths)
    startup = max(d + 1, len(paths), MIN_STARTUP)
    return Budget(paths, startup, max(2 * startup, MIN_TRIALS))


def budget_warning(exp: "Experiment") -> str | None:
    """A sentence when the file's ``num_trials`` is below what the rule gives, else None."""
    sized = budget(exp)
    if exp.search.num_trials >= sized.covering:
        return None
    return (
        f"search.num_trials {exp.search.num_trials} is below the {sized.covering} this space needs to be covered "
        f"({sized.rule()}); raise it to {sized.covering}, or narrow the space"
    )


def affinity_cost(affinity: Any, exp: "Experiment", epochs: int) -> float:
    """The affinity stage's cost in network-epochs of one fully shared network: a training
    step is about 3 forward passes (forward and backward), and every ``every`` steps each of
    the T tasks takes a lookahead step at each of the S stages and on the whole trunk, each
    measured with one forward ((S + 1) T forwards) after T backward passes (2 T):
    ``epochs (1 + T (S + 3) / (3 every))``."""
    T, S = len(exp.tasks), exp.num_stages()
    return epochs * (1.0 + T * (S + 3) / (3.0 * affinity.every))


def affinity_every(exp: "Experiment", epochs: int, wrote_every: bool) -> tuple[int, str]:
    """How often the affinity stage measures, and why (module docstring): the file's
    ``every`` when it gives one; else often enough for :data:`AFFINITY_SAMPLES`
    measurements over ``epochs`` (from the training rows, where the source says how many),
    but no more often than keeps the stage within :data:`CHEAP_SHARE` of the search, and at
    least every :data:`TAG_EVERY` steps."""
    if wrote_every:
        return exp.affinity.every, "the file's"
    rows = exp.data.train_rows()
    if rows is None:
        return TAG_EVERY, f"TAG's (the training rows are not known before loading: {TAG_EVERY})"
    steps = epochs * max(1, math.ceil(rows / exp.train.batch_size))
    for_samples = max(1, steps // AFFINITY_SAMPLES)
    T, S = len(exp.tasks), exp.num_stages()
    overhead = CHEAP_SHARE * search_trial_epochs(exp) / max(epochs, 1) - 1.0  # allowed lookahead cost per epoch
    for_cost = math.ceil(T * (S + 3) / (3.0 * overhead)) if overhead > 0 else TAG_EVERY
    every = min(max(for_samples, for_cost), TAG_EVERY)
    return every, (f"{steps} steps ({epochs} epochs of {rows} rows): every {every} gives {steps // every} "
                   f"measurements (aim {AFFINITY_SAMPLES}; at least every {for_cost} to stay cheap, at most {TAG_EVERY}, TAG's)")


def search_trial_epochs(exp: "Experiment") -> int:
    return exp.search.num_trials * exp.train.epochs


def resolve_defaults(exp: "Experiment") -> Resolved:
    """Fill in what ``exp``'s file left out (module docstring), in place on the frozen
    sections (each replaced by a copy); returns what was filled in and why."""
    out = Resolved()
    T = len(exp.tasks)
    space, search = exp.space, exp.search
    wrote_tree = "tree" in space.model_fields_set or space.branches is not None
    wrote_affinity = "affinity" in exp.model_fields_set
    wrote_trials = "num_trials" in search.model_fields_set
    many = T >= MANY_TASKS and "hard_split" in space.families
    if many and not wrote_tree:
        _replace(exp, "space", space.model_copy(update={"tree": list(DEFAULT_TREES)}))
        out.reasons["space.tree"] = f"{T} tasks: the trees join the space"
    if T >= MANY_TASKS and "lr" not in space.model_fields_set:
        lr = exp.train.lr
        searched = FloatRange(low=lr / LR_FACTOR, high=lr * LR_FACTOR, log=True)
        _replace(exp, "space", exp.space.model_copy(update={"lr": searched}))
        out.filled["space.lr"] = f"{searched.low:.3g}-{searched.high:.3g} (log)"
        out.reasons["space.lr"] = (
            f"{T} tasks: the rate decides which structure wins; train.lr {lr:g} / {LR_FACTOR:g} to x {LR_FACTOR:g}, "
            "and the single-task networks are trained at the pick's rate too (like for like)")
    if not wrote_trials:
        _size(exp, out)
    if many and not wrote_affinity and space.branches is None:
        epochs = min(AFFINITY_EPOCHS, exp.train.epochs)
        wrote_every = "every" in exp.affinity.model_fields_set
        every, every_why = affinity_every(exp, epochs, wrote_every)
        on = exp.affinity.model_copy(update={"epochs": epochs, "every": every})
        cost = affinity_cost(on, exp, epochs)
        share = cost / max(search_trial_epochs(exp), 1)
        cheap = share <= CHEAP_SHARE
        why = (f"{T} tasks, and {epochs} epochs of one shared network with TAG's lookahead cost {cost:.1f} "
               f"network-epochs, {share:.1%} of the search's {search_trial_epochs(exp)} trial-epochs "
               f"({'at most' if cheap else 'more than'} {CHEAP_SHARE:.0%})")
        if cheap:
            _replace(exp, "affinity", on)
            out.filled["affinity.epochs"] = epochs
            out.reasons["affinity.epochs"] = "on: " + why
            if not wrote_every:
                out.filled["affinity.every"] = every
                out.reasons["affinity.every"] = every_why
            if not wrote_tree:
                _replace(exp, "space", exp.space.model_copy(update={"tree": [*DEFAULT_TREES, "affinity"]}))
        else:
            out.reasons["affinity.epochs"] = "off: " + why
    if "space.tree" in out.reasons:
        out.filled["space.tree"] = exp.space.tree
    sampler = exp.search.sampler
    if not wrote_trials:
        _size(exp, out)  # again: the affinity trees are one more structure
    elif sampler.name == "tpe" and "n_startup_trials" not in sampler.model_fields_set:
        startup = startup_for(exp)
        _replace(exp, "search", exp.search.model_copy(update={"sampler": sampler.model_copy(update={"n_startup_trials": startup})}))
        out.filled["search.sampler.n_startup_trials"] = startup
        out.reasons["search.sampler.n_startup_trials"] = "the budget rule's random trials, max(d + 1, K)"
    return out


def _size(exp: "Experiment", out: Resolved) -> None:
    sized = budget(exp)
    sampler = exp.search.sampler
    update: dict[str, Any] = {"num_trials": sized.trials}
    out.filled["search.num_trials"] = sized.trials
    out.reasons["search.num_trials"] = sized.rule()
    if sampler.name == "tpe" and ("n_startup_trials" not in sampler.model_fields_set
                                  or "search.sampler.n_startup_trials" in out.filled):
        update["sampler"] = sampler.model_copy(update={"n_startup_trials": sized.startup})
        out.filled["search.sampler.n_startup_trials"] = sized.startup
        out.reasons["search.sampler.n_startup_trials"] = "random trials before TPE's model (the budget rule)"
    _replace(exp, "search", exp.search.model_copy(update=update))


def startup_for(exp: "Experiment") -> int:
    """TPE's random trials when the file gives ``num_trials`` but not ``n_startup_trials``:
    the rule's ``max(d + 1, K)`` whatever the budget. Below ``d + 1`` observations the model
    has too little to go on (BOHB's reasoning), so a budget that small is best spent at
    random, and :func:`budget_warning` says it is too small."""
    return budget(exp).startup


def affinity_points(exp: "Experiment", count: int) -> list[dict[str, Any]]:
    """The search's first trials: each of the ``count`` trees the affinity stage proposed, as
    Optuna parameters (``spaces.optuna_point``), with equal static loss weights where the
    space searches them on the simplex, as the no-search default has them. Drawn at random
    instead, a weight near 0 leaves its task untrained and the tree is judged on that
    (on 4 tasks a uniform simplex draw gives some task less than 0.05 with probability
    1 - (1 - 4 x 0.05)^3 = 49 %). Where the space searches the learning rate, at the file's
    ``train.lr`` (the rate the user chose; a random draw could judge a tree by a bad rate)."""
    from ._space import optuna_point

    point: dict[str, Any] = {"family": "hard_split", "tree": "affinity"}
    if exp.space.loss_weights == "simplex" and "static" in choices(exp.space.loss_weighting):
        point["loss_weights"] = {t.name: 1.0 / len(exp.tasks) for t in exp.tasks}
        if isinstance(exp.space.loss_weighting, list):
            point["loss_weighting"] = "static"
        if isinstance(exp.space.optimization, list):
            point["optimization"] = "joint"
    if _searched(exp.space.lr) and exp.space.lr.low <= exp.train.lr <= exp.space.lr.high:
        point["lr"] = exp.train.lr
    return [{**optuna_point(point, exp), "affinity_tree": i} for i in range(count)]


def _replace(exp: "Experiment", key: str, value: Any) -> None:
    object.__setattr__(exp, key, value)  # the sections are frozen; this is validation, before anyone reads them
