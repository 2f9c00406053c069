"""Model families: hard split (tree), cross-stitch (channel, scalar or NDDR units), MTAN, MMoE, CGC/PLE,
single-task and ensemble baselines."""
from ._base import (
    MultiTaskModel,
    BASELINE_FAMILIES,
    family_parameters,
    family_words,
    family_settings,
    searchable_family_parameters,
    available_families,
    build_model,
    count_parameters,
    register_family,
    tasks_from_config,
)
from ._cross_stitch import UNITS as CROSS_STITCH_UNITS
from ._cross_stitch import CrossStitchModel, CrossStitchUnit, NDDRUnit, ScalarCrossStitchUnit
from ._columns import ColumnsModel
from ._ensemble import EnsembleModel
from ._mtan import MTANModel
from ._experts import AtMostStages, ExpertsModel, level_stages
from . import _mmoe, _ple  # noqa: F401  (register the mixture-of-experts families)
from ._hard_split import (
    BranchedModel,
    build_branched,
    describe_tree,
    grouped_partitions,
    partitions_from_config,
    per_task_partitions,
    split_point_partitions,
)

__all__ = [
    "AtMostStages",
    "ExpertsModel",
    "level_stages",
    "CROSS_STITCH_UNITS",
    "MTANModel",
    "NDDRUnit",
    "ScalarCrossStitchUnit",
    "BranchedModel",
    "CrossStitchModel",
    "CrossStitchUnit",
    "ColumnsModel",
    "EnsembleModel",
    "MultiTaskModel",
    "BASELINE_FAMILIES",
    "family_parameters",
    "family_words",
    "family_settings",
    "searchable_family_parameters",
    "available_families",
    "build_branched",
    "build_model",
    "describe_tree",
    "grouped_partitions",
    "partitions_from_config",
    "per_task_partitions",
    "count_parameters",
    "register_family",
    "split_point_partitions",
    "tasks_from_config",
]
