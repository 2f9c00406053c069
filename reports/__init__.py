"""reports: a run's results table -> a self-contained HTML report; choosing and exporting configs.

``write_report`` writes the report of one run or compares several; ``select`` lists
the configs meeting deployment constraints and the Pareto-optimal ones;
``export_trial`` writes a deployable bundle (config, weights, model card,
TorchScript, ONNX).
"""
from ._evaluate import EVALUATIONS_FILE, per_class_counts, shortlist, update_evaluations
from ._export import export_trial, pick_trial
from ._html import REPORT_FILE, build_report, write_report
from ._like_for_like import TUNED_TRAINING_KEYS, TunedReference, tuned_reference
from ._pareto import pareto_mask
from ._results import (
    AFFINITY_FILE,
    CURVES_FILE,
    PHASES,
    RACE_FILE,
    RESULTS_FILE,
    STOPPED_AFTER,
    STOPPED_COLUMNS,
    TUNED_SINGLE_TASK,
    add_delta_m,
    add_race,
    best_trial,
    confirmed,
    ensemble_row,
    finished,
    full_seeds,
    load_results,
    metric_column,
    result_row,
    row_metrics,
    searched,
    single_task_baseline,
    single_task_rows,
    single_task_summary,
    task_specs,
    task_values,
)
from ._run import RunData, class_table, load_run
from ._sections import SECTIONS, ReportContext, available_sections, register_section, short_label, worded_label
from ._select import (
    Constraints,
    Objective,
    best_per_objective,
    Pick,
    confirm_shortlist,
    delta_vs,
    deploy_pick,
    parse_min_metric,
    select,
)
from ._config_summary import config_summary
from ._stats import BaselineNoise, Estimate, paired_interval, simultaneous_level

__all__ = [name for name in dir() if not name.startswith("_")]
