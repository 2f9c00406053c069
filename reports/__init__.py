"""reports: the results table of a run -> a self-contained HTML report, and exports."""
from ._export import export_trial, pick_trial
from ._html import REPORT_FILE, build_report, write_report
from ._results import (
    CURVES_FILE,
    RESULTS_FILE,
    best_trial,
    load_results,
    metric_column,
    searched,
    single_task_summary,
    task_specs,
)

__all__ = [name for name in dir() if not name.startswith("_")]
