"""The base every multi-task model family implements, and the family registry."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .._plugins import import_plugin
from .._registry import Registry, SchemeParameter, keyword_parameters
from ..backbones import Stage, build_backbone
from ..tasks import TaskSpec


class MultiTaskModel(nn.Module):
    """A network that maps an image batch to one output per task.

    Input: ``(B, C, H, W)`` floats in [0, 1]; the model normalises them itself with
    the dataset's mean and std (buffers), so an exported model takes raw pixels.
    Output: ``{task_name: (B, output_dim)}``.
    """

    def __init__(self, tasks: list[TaskSpec], input_spec: dict[str, Any]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        channels = int(input_spec["channels"])
        mean = torch.tensor(input_spec.get("mean") or [0.0] * channels, dtype=torch.float32)
        std = torch.tensor(input_spec.get("std") or [1.0] * channels, dtype=torch.float32)
        self.register_buffer("input_mean", mean.view(1, -1, 1, 1))
        self.register_buffer("input_std", std.view(1, -1, 1, 1))

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.predict((x - self.input_mean) / self.input_std)

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """Outputs per task from a normalised batch."""
        raise NotImplementedError

    def member_outputs(self, x: Tensor) -> dict[str, list[Tensor]]:
        """Outputs the training loss is taken on: one per member (ensembles have several)."""
        return {name: [out] for name, out in self(x).items()}

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; ``lr_scale`` multiplies the base learning rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr_scale": 1.0}]

    def shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's ``W`` (Chen et al. 2018, "the last shared layer"): the deepest parameters
        every task's loss flows through (empty when nothing is shared)."""
        return []

    def task_parameters(self) -> dict[str, list[nn.Parameter]] | None:
        """Per task, the parameters its output depends on, read from the structure (no forward
        pass): what its loss's gradient reaches. ``None``: the family does not say (a plugin's);
        the gradient aggregators then find it in the autograd graph of each step's losses."""
        return None

    def multi_task_parameters(self) -> list[nn.Parameter] | None:
        """The parameters two or more tasks' outputs depend on, in ``parameters()`` order: what the
        gradient aggregators combine (torchjd's ``mtl_backward`` shared parameters). A tensor
        counts as a whole: a cross-stitch unit's ``alpha`` that each task reaches in its own
        row is one. ``None`` where :meth:`task_parameters` is."""
        reach = self.task_parameters()
        if reach is None:
            return None
        counts: dict[int, int] = {}
        for params in reach.values():
            for key in {id(p) for p in params}:
                counts[key] = counts.get(key, 0) + 1
        return [p for p in self.parameters() if counts.get(id(p), 0) >= 2]


ModelBuilder = Callable[..., MultiTaskModel]
# ``describe(config) -> str``: the config in one short line; ``structure(config, stage_names)
# -> str``: its sharing structure in words (stage_names: the backbone's, empty where unknown)
Describer = Callable[[dict[str, Any]], str]
StructureWords = Callable[[dict[str, Any], list[str]], str]

_FAMILIES: Registry[ModelBuilder] = Registry("model family", plural="model families")


BASELINE_FAMILIES = ("single_task", "ensemble", "columns")


def register_family(
    name: str,
    *,
    config_keys: dict[str, str] | None = None,
    describe: Describer | None = None,
    structure: StructureWords | None = None,
    replace: bool = False,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(config, *, ...) -> MultiTaskModel`` under a family name (a taken
    name is refused unless ``replace``).

    The builder's keyword-only arguments are the family's parameters, keyed
    ``<family>_<name>`` (``def build(config, *, depth: Annotated[int, Ge(0)] = 1)`` of a
    family ``trunk``: ``trunk_depth``) or ``config_keys[name]`` (cross-stitch's
    ``alpha_same``, the key its configs have always had): the space fixes or searches them
    (markers of :mod:`mtl_models._markers` where a type cannot say how), the trial config
    carries them and ``build_model`` passes them; the results table records them.
    ``describe`` and ``structure`` put a config of the family in words
    (:func:`mtl_models.describe_config`, :func:`mtl_models.describe_structure`); without
    them, the family's name and parameters.
    """

    def add(builder: ModelBuilder) -> ModelBuilder:
        builder._family_keys = dict(config_keys or {})  # type: ignore[attr-defined]
        builder._family_words = (describe, structure)  # type: ignore[attr-defined]
        return _FAMILIES.register(name, builder, replace=replace)

    return add


def family_parameters(name: str) -> dict[str, SchemeParameter]:
    """Family ``name``'s parameters by key: its builder's keyword-only arguments (none for
    ``hard_split``, whose tree is the space's own structure, nor for the baselines)."""
    builder = _FAMILIES.get(name)
    return keyword_parameters(name, builder, getattr(builder, "_family_keys", None))


def family_words(name: Any) -> tuple[Describer | None, StructureWords | None]:
    """Family ``name``'s ``describe`` and ``structure`` (None where it gives none or is not registered here)."""
    if not isinstance(name, str) or name not in _FAMILIES:
        return None, None
    return getattr(_FAMILIES[name], "_family_words", (None, None))


def searchable_family_parameters() -> dict[str, SchemeParameter]:
    """Every registered family's searchable parameters by key: what ``space`` may name."""
    return {key: p for name in available_families() for key, p in family_parameters(name).items() if p.searchable}


def family_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's values of its family's parameters, by key (what the results table records;
    a stage subset written ``all`` or ``0,2``)."""
    name = config.get("family")
    if name not in _FAMILIES:  # a plugin's family, its plugin not imported here: its keys by the naming rule
        return {k: v for k, v in config.items() if isinstance(name, str) and k.startswith(f"{name}_")}
    params = family_parameters(name)
    out = {key: config[key] for key in params if key in config}
    for key, p in params.items():  # a stage subset as one cell: "all" (None or not given) or "0,2"
        if p.subset is not None:
            out[key] = p.subset.text(config.get(key))
    return out


def available_families() -> list[str]:
    return _FAMILIES.names()


def build_model(config: dict[str, Any]) -> MultiTaskModel:
    """Build the model a plain config dict describes (the trial config, or an exported one).

    The plugins in ``config['plugins']`` (module names or module paths) are imported
    first, so backbones, task kinds or families that a user registers in their own
    module are found (also in Ray workers and when a bundle is loaded elsewhere).
    """
    for entry in config.get("plugins") or ():
        import_plugin(entry)
    family = config.get("family")
    options = {p.name: config[key] for key, p in family_parameters(family).items() if key in config}
    return _FAMILIES.get(family)(config, **options)


def tasks_from_config(config: dict[str, Any]) -> list[TaskSpec]:
    return [TaskSpec.from_dict(t) for t in config["tasks"]]


def backbone_copies(config: dict[str, Any], n: int) -> list[list[Stage]]:
    """``n`` independently built copies of the configured backbone's stages."""
    spec = config["backbone"]
    return [
        build_backbone(
            spec["name"],
            int(config["input"]["channels"]),
            weights=spec.get("weights"),
            **(spec.get("options") or {}),
        )
        for _ in range(n)
    ]


def build_heads(config: dict[str, Any], tasks: list[TaskSpec], last: Stage) -> nn.ModuleDict:
    """One head per task on the output of stage ``last``, as the task kinds build them."""
    head = config.get("head") or {}
    size = config["input"].get("height"), config["input"].get("width")
    return nn.ModuleDict(
        {
            t.name: t.kind_impl.build_head(
                t,
                last.out_channels,
                spatial=last.spatial,
                pool_size=int(head.get("pool_size", 1)),
                hidden=int(head.get("hidden", 0)),
                output_size=size if None not in size else None,
            )
            for t in tasks
        }
    )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


