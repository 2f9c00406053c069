"""mtl_models: backbones cut into stages, task specs, multi-task model families,
loss weighting, datasets, the train/evaluate routine and deployable bundles.

Every model is built from one plain, JSON-able config dict (``build_model``); the
same dict is what a search trial samples, what the results table records and what
an exported bundle holds. The results table's column names, named filters and curve
layout are ``results_table``'s (imported by ``spaces``, ``search`` and ``reports``).
"""
from . import results_table
from ._bundle import (
    BUNDLE_EXPORTS,
    file_sha256,
    load,
    load_card,
    load_checkpoint_state,
    load_config,
    load_single_task_models,
    save_bundle,
    save_checkpoint_state,
    verify_bundle,
)
from ._checkpoint import CHECKPOINT_STATE_FILE, CorruptCheckpointError, UnsafeCheckpointError, checkpoint_problem
from ._cost import COST_COLUMNS, Cost, count_flops, measure_cost, measure_latency
from ._delta import delta_m
from ._format import count as format_count
from ._format import delta as format_delta
from ._format import estimate as format_estimate
from ._format import flops as format_flops
from ._format import metric as format_metric
from ._format import ms as format_ms
from ._format import plain as format_plain
from ._format import rate as format_rate
from ._format import signed as format_signed
from ._describe import canonical_config, config_key, describe_config, describe_structure, loss_scale_free, shares_nothing
from ._deploy import TaskOutputs, example_input, export_onnx, export_program, export_torchscript
from ._io import atomic_directory, atomic_path, atomic_write_json, atomic_write_text
from ._plugins import import_plugin, is_plugin_path
from ._progress import PROGRESS_KEY, report_progress
from ._markers import ByConfig, Derived, SpaceDefault, StageSubset
from ._registry import Check, Registry, UnknownNameError, keyword_options, option_hints
from ._schedule import SCHEDULES, LRSchedule, schedule_from_config
from ._train import (
    NonFiniteLossError,
    Trainer,
    autocast_dtype,
    evaluate,
    evaluate_model,
    flatten_metrics,
    make_optimizer,
    metric_key,
    primary_metrics,
    resolve_device,
    seed_everything,
    uses_channels_last,
)
from .backbones import Stage, available_backbones, backbone_options, build_backbone, register_backbone, stage_names
from .data import (
    DataErrors,
    DataFeed,
    DataFileError,
    MultiTaskData,
    Split,
    available_sources,
    load_data,
    register_source,
    source_options,
)
from .families import (
    CROSS_STITCH_UNITS,
    MTANModel,
    AtMostStages,
    ExpertsModel,
    NDDRUnit,
    ScalarCrossStitchUnit,
    BranchedModel,
    CrossStitchModel,
    CrossStitchUnit,
    ColumnsModel,
    EnsembleModel,
    MultiTaskModel,
    BASELINE_FAMILIES,
    family_parameters,
    family_words,
    family_settings,
    searchable_family_parameters,
    available_families,
    build_branched,
    build_model,
    count_parameters,
    register_family,
)
from .tasks import TaskKind, TaskSpec, available_task_kinds, get_task_kind, register_task_kind
from .weighting import (
    LossWeighting,
    SchemeParameter,
    available_weightings,
    build_weighting,
    register_weighting,
    searchable_weighting_parameters,
    weighting_parameters,
    weighting_settings,
)

__all__ = [name for name in dir() if not name.startswith("_")]
