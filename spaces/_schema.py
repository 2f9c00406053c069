"""The experiment file: a validated, declarative description of data, tasks, backbone,
training, the search space, the search and the baselines.

Validation happens here, at the boundary: every error names the file, line and
field, what was given and what is allowed. Code after this trusts the values. The
sections live by job (``_training``: what is trained; ``_space_config``: what the
search varies; ``_search_config``: how it runs; ``_errors``: pydantic errors as
``file:line: field`` lines); this module is the whole file, its cross-field checks and
``load_experiment``.
"""
from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mtl_models import (
    AtMostStages,
    family_parameters,
    MultiTaskData,
    TaskSpec,
    build_backbone,
    import_plugin,
    is_plugin_path,
    load_data,
)
from mtl_models.data import prepare_for_trials

from ._common import (
    FloatRange,
    IntRange,
    _resolve,
    _Strict,
    choices,
)
from ._data import augment_problems
from ._defaults import Resolved, resolve_defaults
from ._errors import problems
from ._overrides import apply_overrides
from ._search_config import (
    AffinityConfig,
    BaselinesConfig,
    ConfirmConfig,
    SearchConfig,
    SelectConfig,
)
from ._sources import DataConfig
from ._space import fixed_config
from ._space_config import SpaceConfig
from ._training import BackboneConfig, HeadConfig, TaskConfig, TrainConfig
from ._parts import derived, is_subset, numeric, part_keys, part_parameters, resolve
from ._yaml import ExperimentError, load_yaml


# Ray Tune's saved experiments (runs, cached baselines) pickled the section classes under
# this module's name before the schema was split by job: these names keep them loadable.
from ._search_config import PrunerConfig, ResourcesConfig, SamplerConfig  # noqa: E402, F401


class Experiment(_Strict):
    """A whole experiment file. Load one with :func:`load_experiment`."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    # The licence the exported model's card states (an SPDX identifier such as Apache-2.0, or
    # the data's terms); ``licence`` is accepted as the British spelling.
    license: str = Field("unspecified", min_length=1, validation_alias=AliasChoices("license", "licence"))
    seed: int = 0
    plugins: list[str] = Field(default_factory=list)
    data: DataConfig
    tasks: list[TaskConfig] = Field(min_length=1)
    backbone: BackboneConfig
    head: HeadConfig = HeadConfig()
    train: TrainConfig = TrainConfig()
    space: SpaceConfig = SpaceConfig()
    search: SearchConfig = SearchConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    select: SelectConfig = SelectConfig()
    affinity: AffinityConfig = AffinityConfig()
    source_path: Path | None = Field(None, exclude=True)
    _defaults: Resolved = PrivateAttr(default_factory=Resolved)
    _overrides: list[str] = PrivateAttr(default_factory=list)
    _document: Any = PrivateAttr(default=None)

    @property
    def overrides(self) -> list[str]:
        """The ``--set KEY=VALUE`` changes applied to the file before validation, in order."""
        return list(self._overrides)

    @property
    def document(self) -> dict[str, Any] | None:
        """The file's mapping with :attr:`overrides` applied (what was validated); None without overrides."""
        return self._document

    @field_validator("plugins")
    @classmethod
    def _importable(cls, v: list[str], info: ValidationInfo) -> list[str]:
        """Import each plugin now (it registers what the rest of the file names); a path is
        taken relative to the experiment file and kept absolute."""
        resolved = []
        for entry in v:
            if is_plugin_path(entry):
                path = _resolve(Path(entry), info)
                if not path.exists():
                    raise ValueError(f"plugin {entry!r}: {str(path)!r} does not exist; give a .py file, a package folder or a module name")
                entry = str(path)
            try:
                import_plugin(entry)
            except ImportError as exc:
                raise ValueError(f"cannot import plugin module {entry!r}: {exc}") from None
            resolved.append(entry)
        part_parameters(reserved=SpaceConfig.model_fields)  # a plugin's parameter whose key another part or the space holds is refused here
        return resolved

    @model_validator(mode="after")
    def _consistent(self) -> "Experiment":
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tasks: duplicate task name(s) {dupes}")
        if len(names) < 2:
            raise ValueError(f"tasks: multi-task search needs at least 2 tasks, got {names}")
        if isinstance(self.space.loss_weights, dict) and set(self.space.loss_weights) != set(names):
            raise ValueError(
                f"space.loss_weights: keys {sorted(self.space.loss_weights)} must be exactly the tasks {names}"
            )
        specs = self.task_specs()
        for index, message in self.data.check_tasks(specs):
            if message.startswith("data."):
                raise ValueError(message)
            raise ValueError(f"tasks{'' if index is None else f'[{index}]'}: {message}")
        for message in augment_problems(self.data, specs):
            raise ValueError(message)
        facts = self._backbone_facts()
        if facts.error:
            raise ValueError(
                f"backbone: {self.backbone.name!r} cannot process {self.input_size()[0]}x{self.input_size()[1]} "
                f"inputs ({facts.error}); use larger images (data.image_size) or another backbone"
            )
        n = len(facts.stage_names)
        sp = self.space.split_point
        low, high = (sp, sp) if isinstance(sp, int) else ((sp.low, sp.high) if sp else (0, n))
        if not 0 <= low <= high <= n:
            raise ValueError(
                f"space.split_point: {sp} is outside 0..{n} for backbone {self.backbone.name!r} "
                f"(stages: {', '.join(self.stage_names())})"
            )
        self._defaults = resolve_defaults(self)  # what the file leaves out, sized to its tasks and space
        for key in [k for k in part_keys() if is_subset(k)]:  # cross_stitch_stages, mtan_stages, ...
            stages = self.space.part_param(key)
            bad = [s for s in stages if s >= n] if isinstance(stages, list) else []
            if bad:
                raise ValueError(f"space.{key}: {bad} out of range; stages are 0..{n - 1}")
        for family in self.space.families:  # a family's count bounded by the stages (ple_levels)
            for key, p in family_parameters(family).items():
                if not any(isinstance(b, AtMostStages) for b in p.bounds):
                    continue
                value = self.space.part_param(key)
                ends = [value.low, value.high] if isinstance(value, IntRange) else value if isinstance(value, list) else [value]
                if max(ends) > n:
                    raise ValueError(
                        f"space.{key}: {value if not isinstance(value, IntRange) else value.model_dump()} exceeds the "
                        f"{n} stages of backbone {self.backbone.name!r}; at most {n}"
                    )
        if "affinity" in choices(self.space.tree) and not self.affinity.enabled:
            raise ValueError("space.tree: affinity trees come from the affinity stage; set affinity.epochs > 0")
        if self.affinity.enabled and "hard_split" not in self.space.families:
            raise ValueError("affinity: its proposed trees are hard splits; add hard_split to space.families")
        if self.affinity.enabled and self.space.branches is not None:
            raise ValueError("affinity: space.branches fixes the tree; drop one of them")
        if self.space.branches is not None:
            self._check_branches(self.space.branches, names, n)
        dense = [t.name for t in self.tasks if t.spec().kind_impl.dense]
        if dense and not self._last_stage_spatial():
            raise ValueError(f"tasks: dense task(s) {dense} need a backbone whose last stage outputs maps, not vectors")
        for i, point in enumerate(self.search.points_to_evaluate):
            self._check_point(i, point, names, low, high)
        return self

    @staticmethod
    def _check_branches(branches: list[list[list[str]]], names: list[str], n: int) -> None:
        where = "space.branches"
        if len(branches) != n:
            raise ValueError(f"{where}: {len(branches)} stages given; the backbone has {n}")
        previous = [set(names)]
        for s, part in enumerate(branches):
            flat = [t for g in part for t in g]
            if sorted(flat) != sorted(names):
                raise ValueError(f"{where}[{s}]: the groups must hold each task exactly once: {names}")
            for group in part:
                if not any(set(group) <= parent for parent in previous):
                    raise ValueError(f"{where}[{s}]: group {group} merges branches of stage {s - 1}; branches only split")
            previous = [set(g) for g in part]

    def _last_stage_spatial(self) -> bool:
        return self._backbone_facts().last_spatial

    def _check_point(self, i: int, point: dict[str, Any], names: list[str], low: int, high: int) -> None:
        """A starting point may give any searched parameter, by its config key."""
        where = f"search.points_to_evaluate[{i}]"
        parts = [k for k in part_keys() if not is_subset(k)]  # the families' and schemes' (alpha_same, gradnorm_alpha, ...)
        numbers = (*[k for k in parts if numeric(k)], "grad_clip", "lr")
        context = self.trial_context()
        for key in parts:
            marker = derived(key, self.space.part_param(key))
            if marker is None or key not in point:
                continue
            try:
                value = marker.rule({**context, **point})
            except (KeyError, TypeError, ValueError):
                value = None
            if value is None or abs(float(point[key]) - float(value)) > 1e-9:
                raise ValueError(
                    f"{where}: {key} is derived from {', '.join(marker.inputs)} (space.{key}: {marker.word}, "
                    f"{marker.why}); give {', '.join(marker.inputs)} only, or set space.{key} to a value or range"
                )
        categoricals = ("tree", *[k for k in parts if not numeric(k)], "loss_weighting", "optimization", "class_weighting")
        allowed = ("family", "split_point", "split_points", *numbers, *categoricals, "loss_weights")
        unknown = sorted(set(point) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
        if "family" in point and point["family"] not in self.space.families:
            raise ValueError(f"{where}: family {point['family']!r} is not searched; allowed: {self.space.families}")
        splits = [point["split_point"]] if "split_point" in point else []
        splits += list((point.get("split_points") or {}).values())
        if "split_points" in point and set(point["split_points"]) != set(names):
            raise ValueError(f"{where}: split_points must give a split point for each task {names}")
        for k in splits:
            if not (isinstance(k, int) and low <= k <= high):
                raise ValueError(f"{where}: split point {k!r} must be an integer in {low}..{high}")
        for key in numbers:
            param = self.space_param(key)
            if isinstance(param, str):  # a derived value (alpha_diff: convex), checked above
                continue
            ranged = isinstance(param, (FloatRange, IntRange))
            if key in point and ranged and not param.low <= point[key] <= param.high:
                raise ValueError(f"{where}: {key} {point[key]!r} is outside the space's [{param.low}, {param.high}]")
            if key in point and not ranged:
                raise ValueError(f"{where}: {key} is not searched (fixed to {param}); remove it from the point")
        for key in categoricals:
            if key in point and point[key] not in choices(self.space_param(key)):
                raise ValueError(f"{where}: {key} {point[key]!r} is not among the space's {choices(self.space_param(key))}")
        weights = point.get("loss_weights")
        if weights is not None:
            if self.space.loss_weights != "simplex":
                raise ValueError(f"{where}: loss_weights are only searched with space.loss_weights: simplex")
            if not isinstance(weights, dict) or set(weights) != set(names) or min(weights.values()) <= 0:
                raise ValueError(f"{where}: loss_weights must give a positive weight for each task {names}")

    @property
    def defaults(self) -> Resolved:
        """What the file left out and validation filled in (``spaces._defaults``), and why."""
        return self._defaults

    def space_param(self, key: str) -> Any:
        """``space.<key>`` (a part's parameter: as given, else its space default) with a word
        that stands for a range resolved: ``lr_multiplier: auto`` is the range for the
        experiment's optimizer (``mtl_models.ByConfig``)."""
        if key not in part_keys():
            return getattr(self.space, key)
        return resolve(key, self.space.part_param(key), self.trial_context())

    def trial_context(self) -> dict[str, Any]:
        """The config keys every trial shares (``spaces.fixed_config`` before the input is
        known): what a word of the space is resolved or derived from."""
        return fixed_config(self, {})

    def load_data(self) -> MultiTaskData:
        """Load (or generate) the experiment's dataset, checking every row.

        Raises :class:`mtl_models.DataErrors` naming each bad file, line and column.
        Generators without a ``seed`` use the experiment's; so does a ``split``.
        """
        options = self.data.source_options()
        if "seed" in options and options["seed"] is None:
            options["seed"] = self.seed
        if options.get("split") is not None and options["split"].get("seed") is None:
            options["split"] = {**options["split"], "seed": self.seed}
        data = load_data(self.data.source, self.task_specs(), **options)
        return prepare_for_trials(data, self.data.loader, self.data.memory_budget_mb)

    def _backbone_facts(self) -> "BackboneFacts":
        return backbone_facts(
            self.backbone.name, self.in_channels(), json.dumps(self.backbone.options, sort_keys=True), self.input_size()
        )

    def stage_names(self) -> list[str]:
        return list(self._backbone_facts().stage_names)

    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the images the models see; None where the source does not
        say before its data is read (a registered source without ``image_size``)."""
        return self.data.input_size()

    def num_stages(self) -> int:
        return len(self.stage_names())

    def in_channels(self) -> int:
        return self.data.channels_in()

    def task_specs(self) -> list[TaskSpec]:
        return [t.spec() for t in self.tasks]

    def split_point_range(self) -> tuple[int, int]:
        sp = self.space.split_point
        if sp is None:
            return 0, self.num_stages()
        return (sp, sp) if isinstance(sp, int) else (sp.low, sp.high)


@dataclass(frozen=True)
class BackboneFacts:
    stage_names: tuple[str, ...]
    last_spatial: bool
    error: str | None  # why a dry run at the experiment's input size failed


# A backbone up to this many parameters, at an input up to this many pixels, is dry-run on
# the CPU (built again there under a forked random state; its weights and activations held
# for a moment, some 100 MB at most); a larger one on the meta device, which needs no
# memory but whose shape functions import torch's compiler stack (torch._dynamo, sympy:
# ~1.4 s of a CPU, once per process), which every command that reads an experiment would
# otherwise pay before its first line of work.
CPU_DRY_RUN_MAX_PARAMS = 25_000_000
CPU_DRY_RUN_MAX_PIXELS = 512 * 512


@functools.lru_cache(maxsize=32)
def backbone_facts(name: str, in_channels: int, options_json: str, size: tuple[int, int] | None) -> BackboneFacts:
    """Build the backbone once and push a zero image of ``size`` through it (validation only;
    no image when the size is not known yet)."""
    import torch

    def build() -> list:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loading weights into meta parameters is a no-op, and says so
            return build_backbone(name, in_channels, **json.loads(options_json))

    # on the meta device first: shapes only, so widths of a billion cost no memory here
    try:
        with torch.device("meta"):
            stages = build()
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ValueError(f"backbone.options: {name!r} cannot be built with these options ({first})") from None
    names, last_spatial = tuple(s.name for s in stages), stages[-1].spatial
    if size is None:
        return BackboneFacts(names, last_spatial, None)
    device = "meta"
    params = sum(p.numel() for s in stages for p in s.module.parameters())
    if params <= CPU_DRY_RUN_MAX_PARAMS and size[0] * size[1] <= CPU_DRY_RUN_MAX_PIXELS:
        device = "cpu"
        with torch.random.fork_rng(devices=[]):
            stages = build()
    try:
        x = torch.zeros(1, in_channels, *size, device=device)
    except (RuntimeError, OverflowError) as exc:  # sizes whose product overflows
        return BackboneFacts(names, last_spatial, str(exc).splitlines()[0][:200])
    with torch.no_grad():
        for stage in stages:
            try:
                x = stage.module.eval()(x)
            except (RuntimeError, IndexError, ValueError) as exc:  # a stage with 0 channels fails with IndexError
                return BackboneFacts(names, last_spatial, f"stage {stage.name!r} fails: "
                                     f"{(str(exc).splitlines() or [type(exc).__name__])[0]}")
    return BackboneFacts(names, last_spatial, None)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read and validate an experiment file; raise :class:`ExperimentError` listing every problem.

    Relative paths in the file (data files, weights) are relative to the file.
    ``overrides``: ``KEY=VALUE`` settings applied before validation (``--set``, see
    ``spaces._overrides``); a problem in a value they set is located at its ``--set``.
    """
    path = Path(path)
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise ExperimentError([f"{path}: the experiment must be a mapping of sections, got {type(data).__name__}."])
    origins: dict[tuple[str, ...], str] = {}
    if overrides:
        try:
            data, origins = apply_overrides(data, overrides)
        except ValueError as exc:
            raise ExperimentError([str(exc)]) from None
    exp = validate_experiment(data, base_dir=path.parent.resolve(), source=path, node=node, origins=origins)
    if overrides:
        exp._overrides, exp._document = list(overrides), data
    return exp


def validate_experiment(
    data: dict[str, Any], base_dir: Path | None = None, source: Path | None = None, node: Any = None,
    origins: dict[tuple[str, ...], str] | None = None,
) -> Experiment:
    """Validate an experiment given as a dict (what a YAML file parses to); ``origins``: the
    paths ``--set`` changed, each with its ``KEY=VALUE``, where problems there are located."""
    try:
        exp = Experiment.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ExperimentError(problems(exc, source, node, data, Experiment, origins)) from None
    return exp.model_copy(update={"source_path": source})
