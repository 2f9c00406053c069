"""The results table's vocabulary: its column names, its named row filters, its curve layout.

One owner for what a column of ``results.parquet`` / ``curves.parquet`` is called and which
rows a named view holds. The names are made where a trial reports them (the train loop's
``val/<task>/<metric>``, the cost measurement's ``latency_ms_b1``), declared where a search
optimises them (``search.objectives``), written by ``search`` and read by ``reports``, ``select``
and ``export``: every one of those imports this module and spells no column name itself
(``tests/test_results_table.py`` greps the package sources for strays).

It sits in ``mtl_models``, the package every other one imports, and imports nothing from
the project, not even pandas: a filter takes the table and uses its own methods, so a trial
worker that reports metric names pays nothing for it. The names are those of the runs and
cached baselines already on disk; changing one here would orphan them.

Delta_m follows Maninis et al. 2019 / Vandenhende et al. 2021 (``mtl_models._delta``); the
split a number is on is always in its name (validation: ``val/...`` and ``delta_m``, the
selection split; test: ``test/...`` and ``test_delta_m``, the held-out one).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import pandas as pd

# --- a row's identity -------------------------------------------------------------------------

TRIAL_ID = "trial_id"
PHASE = "phase"
STATUS = "status"
CONFIG = "config"  # the whole config as JSON
CONFIG_KEY = "config_key"  # the same for trials that differ only in their seed
FAMILY = "family"
TASK = "task"  # a single-task row's task
SEED = "seed"
REFERENCE = "reference"  # a confirmation row's role: "default", "tuned_single_task" or empty
ENSEMBLE_MEMBER = "ensemble_member"  # a single-task baseline's seed index
CHECKPOINT = "checkpoint"

BASELINES, SEARCH, CONFIRM = "baselines", "search", "confirm"
PHASES = (BASELINES, SEARCH, CONFIRM)
FINISHED, PRUNED, ERRORED = "finished", "pruned", "errored"
ENDED = (FINISHED, PRUNED, ERRORED)
ACTIVE = ("running", "pending")  # a trial of a run still going (or interrupted)
# the families whose rows are baselines (a joint baseline's ``columns`` trial is tabled as its single-task rows)
SINGLE_TASK, ENSEMBLE = "single_task", "ensemble"

# --- metrics: ``<split>/<task>/<metric>`` ---------------------------------------------------

VAL, TEST = "val", "test"
LOSS = "loss"  # the weighted training loss; ``loss/<task>`` each task's
LOSS_WEIGHTS = "loss_weights"  # ``loss_weights/<task>``: the weights as they ended (dynamic schemes move them)


def metric(split: str, task: str, name: str) -> str:
    """The column of ``task``'s metric ``name`` on ``split``: ``<split>/<task>/<name>``."""
    return f"{split}/{task}/{name}"


def val(task: str, name: str) -> str:
    """``val/<task>/<name>``: a validation metric (the selection split)."""
    return metric(VAL, task, name)


def test(task: str, name: str) -> str:
    """``test/<task>/<name>``: a test metric (the held-out split, evaluated post hoc)."""
    return metric(TEST, task, name)


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test where a test module imports it


def primary(spec: Any, split: str = VAL) -> str:
    """The column of a task spec's primary metric (``spec.name``, ``spec.metric_name``) on ``split``."""
    return metric(split, spec.name, spec.metric_name)


def split_prefix(split: str, task: str | None = None) -> str:
    """What every metric column on ``split`` (of ``task``) starts with: ``val/``, ``val/<task>/``."""
    return f"{split}/" if task is None else f"{split}/{task}/"


def parse_metric(column: str) -> tuple[str, str, str] | None:
    """``(split, task, metric)`` of a metric column (``val/a/accuracy``); None for any other column."""
    parts = column.split("/")
    return (parts[0], parts[1], "/".join(parts[2:])) if len(parts) >= 3 and parts[0] in (VAL, TEST) else None


def is_metric(column: str, split: str | None = None) -> bool:
    """Whether ``column`` is a metric column (on ``split``)."""
    parsed = parse_metric(column)
    return parsed is not None and (split is None or parsed[0] == split)


def loss(task: str | None = None) -> str:
    """``loss`` (the weighted total) or ``loss/<task>``."""
    return LOSS if task is None else f"{LOSS}/{task}"


def loss_weight(task: str) -> str:
    """``loss_weights/<task>``."""
    return f"{LOSS_WEIGHTS}/{task}"


def is_reported(key: str) -> bool:
    """Whether a trial's result key is one of the metrics the table keeps from it: its
    validation metrics, losses and loss weights (``val/...``, ``loss...``)."""
    return key.startswith((split_prefix(VAL), LOSS))


def reported(record: Mapping[str, Any], task: str | None = None) -> dict[str, Any]:
    """The :func:`is_reported` entries of a trial's result (``task``'s own only: its
    validation metrics and loss)."""
    if task is None:
        return {k: v for k, v in record.items() if is_reported(k)}
    return {k: v for k, v in record.items() if k.startswith((split_prefix(VAL, task), loss(task)))}


# --- Delta_m and the spread over seeds ----------------------------------------------------------

DELTA_M = "delta_m"  # on validation: what the search maximises


def delta_column(split: str = VAL) -> str:
    """The Delta_m column on ``split``: ``delta_m`` on validation, ``<split>_delta_m`` (``test_delta_m``) else."""
    return DELTA_M if split == VAL else f"{split}_{DELTA_M}"


TEST_DELTA_M = delta_column(TEST)
STD = ":std"  # the spread (sample std) across seeds of a column, beside its mean


def std(column: str) -> str:
    """The column of ``column``'s spread across seeds: ``<column>:std``."""
    return column + STD


def seeds(task: str) -> str:
    """``seeds:<task>``: how many seeds the single-task summary's ``task`` metric is the mean of."""
    return f"seeds:{task}"


# The confirmation race's stop (``search.study._racing``), on the confirm rows of each config it stopped.
STOPPED_AFTER = "confirm_stopped_after"  # seeds a raced config ran before it stopped (empty: it ran every seed)
STOPPED_COLUMNS = (STOPPED_AFTER, "confirm_stopped_against", "confirm_stopped_delta_m",
                   "confirm_stopped_delta_m_low", "confirm_stopped_delta_m_high", "confirm_stopped_level")

# --- cost (``mtl_models.Cost``) and budget ----------------------------------------------------

PARAMS = "params"
FLOPS = "flops"  # for one image
LATENCY_B1 = "latency_ms_b1"  # median ms of one forward pass at batch 1
LATENCY_BN = "latency_ms_bN"  # ... at ``latency_batch`` (the training batch size)
LATENCY_BATCH = "latency_batch"
COST_DEVICE = "cost_device"  # where the cost was measured
LATENCIES = (LATENCY_B1, LATENCY_BN)
COSTS = (PARAMS, FLOPS, *LATENCIES)  # the numeric costs one may minimise or constrain
COST_COLUMNS = (*COSTS, LATENCY_BATCH, COST_DEVICE)
EPOCH = "epoch"
EPOCHS_RUN, WARM_START_EPOCHS, BUDGET_EPOCHS = "epochs_run", "warm_start_epochs", "budget_epochs"
BUDGET_COLUMNS = (WARM_START_EPOCHS, BUDGET_EPOCHS, EPOCHS_RUN)
# a searched objective is a column: Delta_m to maximise, or a cost to minimise
OBJECTIVE_DIRECTIONS = {DELTA_M: "max", **{cost: "min" for cost in COSTS}}

# --- named filters ------------------------------------------------------------------------------


def phase_rows(results: pd.DataFrame, phase: str, statuses: Iterable[str] | None = None) -> pd.DataFrame:
    """The rows (or a curves table's) of ``phase`` (``BASELINES``, ``SEARCH``, ``CONFIRM``), of any
    status or one of ``statuses``."""
    keep = results[PHASE] == phase
    if statuses is not None:
        keep &= results[STATUS].isin(list(statuses))
    return results[keep]


def searched(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of the search phase (any status)."""
    return phase_rows(results, SEARCH)


def finished(results: pd.DataFrame) -> pd.DataFrame:
    """Finished rows with a Delta_m."""
    return results[(results[STATUS] == FINISHED) & results[DELTA_M].notna()]


def finished_searched(results: pd.DataFrame) -> pd.DataFrame:
    """The searched trials that finished with a Delta_m: what the search's pick is chosen from."""
    return finished(searched(results))


def confirmed(results: pd.DataFrame) -> pd.DataFrame:
    """The finished trials of the confirmation phase (of raced-out configs too: :func:`full_seeds`)."""
    return phase_rows(results, CONFIRM, (FINISHED,))


def full_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` without those of configs the confirmation race stopped (``STOPPED_AFTER`` set)."""
    if STOPPED_AFTER not in rows:
        return rows
    return rows[rows[STOPPED_AFTER].isna()]


def single_task_rows(results: pd.DataFrame, task: str | None = None, *, status: str | None = FINISHED) -> pd.DataFrame:
    """The single-task baseline trials (of ``task``; finished unless ``status`` says otherwise,
    None: any), in seed order (``ensemble_member``)."""
    if FAMILY not in results:
        return results.iloc[0:0]
    keep = results[FAMILY] == SINGLE_TASK
    if status is not None:
        keep &= results[STATUS] == status
    if task is not None:
        keep &= results[TASK] == task
    rows = results[keep]
    return rows.sort_values(ENSEMBLE_MEMBER, kind="stable") if ENSEMBLE_MEMBER in rows else rows


def baseline_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The finished single-task trials and the ensemble: what Delta_m is measured against."""
    return results[results[FAMILY].isin([SINGLE_TASK, ENSEMBLE]) & (results[STATUS] == FINISHED)]


def ensemble_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The composed ensemble's row (at most one)."""
    return results[results[FAMILY] == ENSEMBLE]


# --- the curves table: one row per trial and epoch --------------------------------------------

CURVE_KEYS = (TRIAL_ID, PHASE)  # first, then the epoch's record
# what a curve keeps of an epoch besides :func:`is_reported` metrics (``wall_time``, ``timestamp``:
# when the epoch ended, to order epochs across trials and nodes)
CURVE_RECORD = (EPOCH, DELTA_M, "time_total_s", "timestamp", "wall_time")


def curve_columns(columns: Iterable[str]) -> list[str]:
    """Which of a trial's per-epoch result columns its curve keeps, in their order."""
    return [c for c in columns if is_reported(c) or c in CURVE_RECORD]


def curve(epochs: pd.DataFrame, trial_id: str, phase: str) -> pd.DataFrame:
    """A trial's rows of the curves table: ``trial_id``, ``phase``, then :func:`curve_columns`
    of its per-epoch results ``epochs`` (one row per epoch)."""
    out = epochs[curve_columns(epochs.columns)].copy()
    for i, (name, value) in enumerate(zip(CURVE_KEYS, (trial_id, phase))):
        out.insert(i, name, value)
    return out
