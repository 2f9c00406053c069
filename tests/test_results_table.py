"""The results table's vocabulary has one owner, :mod:`mtl_models.results_table`.

A grep over the package sources (their syntax trees, so docstrings and comments, which
may name a column for the reader, are not counted) finds any column name, split prefix,
std suffix or spelled-out baseline filter outside the owner; the named filters and the
curve layout are checked on a hand-made table whose rows each filter must keep or drop.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from mtl_models import results_table as rt

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search", "reports", "spaces", "mtl_models")
OWNER = Path("mtl_models/results_table.py")
COST_NAMES = {"params", "flops", "latency_ms_b1", "latency_ms_bN", "latency_batch", "cost_device"}
# Values that name a row kind of the table; compared with a ``family``/``phase``/``status``
# column they are a named filter spelled out (``results["family"] == "single_task"``).
ROW_KINDS = {"family": {"single_task", "ensemble"}, "phase": {"baselines", "search", "confirm"},
             "status": {"finished", "pruned", "errored", "running", "pending"}}
# (file, finding): the spellings that must stay, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("search/study/_optuna.py", "cost column 'params'"):
        "Optuna's sampled parameters (FrozenTrial.params) in the record kept on a Tune trial's config, no column",
    ("search/study/_study.py", "cost column 'params'"): "reads that same record back (search/study/_optuna.py's OPTUNA_KEY)",
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _column(node: ast.AST) -> str | None:
    """``"family"`` of ``x["family"]``."""
    return _string(node.slice) if isinstance(node, ast.Subscript) else None


def findings(path: Path, source: str) -> list[str]:
    """Each column name spelled in ``source`` outside a docstring, as ``<line>: <what>``."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    in_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    costs = COST_NAMES if path.parts[0] != "mtl_models" else COST_NAMES - {"params"}  # torch's param-group key
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            first = _string(node.values[0]) if node.values else None
            if first and first.startswith(("val/", "test/")):
                out.append(f"{node.lineno}: split-prefixed metric f-string {first!r}")
            for part in filter(None, map(_string, node.values)):
                if part.endswith("_delta_m") and part == "_delta_m":
                    out.append(f"{node.lineno}: Delta_m column of a split {part!r}")
        text = _string(node)
        if text is not None and id(node) not in skip:
            if text.startswith(("val/", "test/")) and id(node) not in in_fstring:
                out.append(f"{node.lineno}: split-prefixed metric {text!r}")
            if ":std" in text:
                out.append(f"{node.lineno}: std suffix {text!r}")
            if text.startswith("seeds:"):
                out.append(f"{node.lineno}: seed count column {text!r}")
            if text == "test_delta_m":
                out.append(f"{node.lineno}: test Delta_m column {text!r}")
            if text in costs and id(node) not in in_fstring:
                out.append(f"{node.lineno}: cost column {text!r}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            columns = [c for c in map(_column, sides) if c in ROW_KINDS]
            values = {v for v in map(_string, sides) if v is not None}
            for column in columns:
                for value in sorted(values & ROW_KINDS[column]):
                    out.append(f"{node.lineno}: filter spelled out [{column!r}] == {value!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "isin":
            column = _column(node.func.value)
            if column in ROW_KINDS and node.args and isinstance(node.args[0], (ast.List, ast.Tuple)):
                for value in sorted({_string(e) for e in node.args[0].elts} & ROW_KINDS[column]):
                    out.append(f"{node.lineno}: filter spelled out [{column!r}].isin({value!r})")
    return out


def _sources() -> list[Path]:
    return sorted(p.relative_to(ROOT) for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_library_module_spells_a_column_name_outside_the_owner() -> None:
    stray = []
    for path in _sources():
        if path == OWNER:
            continue
        for finding in findings(path, (ROOT / path).read_text()):
            line, what = finding.split(": ", 1)
            if (str(path), what) not in ALLOWED:
                stray.append(f"{path}:{finding}")
    assert stray == [], "spelled outside mtl_models/results_table.py:\n" + "\n".join(stray)


def test_the_owner_itself_is_found_by_the_grep() -> None:
    """The grep can fail: run on the owner, it finds the names the owner spells."""
    found = "\n".join(findings(OWNER, (ROOT / OWNER).read_text()))
    for expected in ("std suffix ':std'", "cost column 'latency_ms_b1'", "cost column 'cost_device'",
                     "seed count column 'seeds:'"):
        assert expected in found, expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('x = row[f"val/{task}/{m}"]\n', ['1: split-prefixed metric f-string \'val/\'']),
        ('x = "test/a/acc"\n', ["1: split-prefixed metric 'test/a/acc'"]),
        ('x = column + ":std"\n', ["1: std suffix ':std'"]),
        ('x = f"{split}_delta_m"\n', ["1: Delta_m column of a split '_delta_m'"]),
        ('x = r["latency_ms_bN"]\n', ["1: cost column 'latency_ms_bN'"]),
        ('x = r[(r["family"] == "single_task") & (r["status"] == "finished")]\n',
         ["1: filter spelled out ['family'] == 'single_task'", "1: filter spelled out ['status'] == 'finished'"]),
        ('x = r[r["phase"].isin(["search", "confirm"])]\n',
         ["1: filter spelled out ['phase'].isin('confirm')", "1: filter spelled out ['phase'].isin('search')"]),
        ('def f():\n    """Reads ``val/<task>/<m>`` and ``test_delta_m``."""\n', []),  # a docstring may name them
        ('x = config["family"] == "mmoe"\n', []),  # a family that is no baseline is no named filter
        ('x = trial.split == "val"\n', []),  # a split's name is no column
    ],
)
def test_the_grep_finds_each_kind_of_spelling(source: str, expected: list[str]) -> None:
    assert sorted(findings(Path("search/x.py"), source)) == sorted(expected)


def test_params_is_torchs_key_in_mtl_models_and_a_column_elsewhere() -> None:
    source = 'groups = [{"params": ps}]\n'
    assert findings(Path("mtl_models/x.py"), source) == []
    assert findings(Path("reports/x.py"), source) == ["1: cost column 'params'"]


# --- the names: those of the runs on disk ---------------------------------------------------------


def test_names_are_those_of_saved_runs() -> None:
    """A run written before this module (and its cached baselines) still loads: the names are theirs."""
    spec = type("Spec", (), {"name": "digit", "metric_name": "accuracy"})()
    assert rt.val("digit", "accuracy") == rt.primary(spec) == "val/digit/accuracy"
    assert rt.test("digit", "accuracy") == rt.primary(spec, rt.TEST) == "test/digit/accuracy"
    assert rt.std("val/digit/accuracy") == "val/digit/accuracy:std"
    assert (rt.delta_column(), rt.delta_column("test"), rt.TEST_DELTA_M) == ("delta_m", "test_delta_m", "test_delta_m")
    assert rt.seeds("digit") == "seeds:digit"
    assert (rt.loss(), rt.loss("digit"), rt.loss_weight("digit")) == ("loss", "loss/digit", "loss_weights/digit")
    assert rt.COST_COLUMNS == ("params", "flops", "latency_ms_b1", "latency_ms_bN", "latency_batch", "cost_device")
    assert rt.OBJECTIVE_DIRECTIONS == {"delta_m": "max", "params": "min", "flops": "min",
                                       "latency_ms_b1": "min", "latency_ms_bN": "min"}


@pytest.mark.parametrize(
    ("column", "parsed"),
    [
        ("val/digit/accuracy", ("val", "digit", "accuracy")),
        ("test/depth/rmse", ("test", "depth", "rmse")),
        ("val/a", None),  # no metric part
        ("loss/digit", None),
        ("loss_weights/digit", None),
        ("delta_m", None),
        ("term/digit", None),  # a config summary's term is no metric column
    ],
)
def test_parse_metric(column: str, parsed: tuple[str, str, str] | None) -> None:
    assert rt.parse_metric(column) == parsed
    assert rt.is_metric(column) == (parsed is not None)
    assert rt.is_metric(column, "test") == (parsed is not None and parsed[0] == "test")


def test_reported_keeps_metrics_losses_and_weights_and_a_tasks_own() -> None:
    record = {"val/a/acc": 0.9, "val/ab/acc": 0.1, "val/b/acc": 0.8, "loss": 1.0, "loss/a": 0.4, "loss/b": 0.6,
              "loss_weights/a": 0.5, "test/a/acc": 0.7, "epoch": 3, "params": 10, "columns/a/params": 5}
    assert rt.reported(record) == {"val/a/acc": 0.9, "val/ab/acc": 0.1, "val/b/acc": 0.8, "loss": 1.0, "loss/a": 0.4,
                                   "loss/b": 0.6, "loss_weights/a": 0.5}
    # task a's own: val/a/... (not val/ab/...), loss/a (and, as before, any loss/a... key)
    assert rt.reported(record, "a") == {"val/a/acc": 0.9, "loss/a": 0.4}


# --- the named filters --------------------------------------------------------------------------


def _table() -> pd.DataFrame:
    rows = [
        # trial, phase, family, task, member, status, delta_m, stopped
        ("s-a-1", "baselines", "single_task", "a", 1, "finished", 0.0, None),
        ("s-a-0", "baselines", "single_task", "a", 0, "finished", 0.0, None),
        ("s-b-0", "baselines", "single_task", "b", 0, "finished", 0.0, None),
        ("s-b-1", "baselines", "single_task", "b", 1, "errored", math.nan, None),
        ("ens", "baselines", "ensemble", None, None, "finished", 1.0, None),
        ("h1", "search", "hard_split", None, None, "finished", 2.0, None),
        ("h2", "search", "hard_split", None, None, "pruned", -1.0, None),
        ("h3", "search", "cross_stitch", None, None, "finished", math.nan, None),
        ("h4", "search", "cross_stitch", None, None, "running", None, None),
        ("c1", "confirm", "hard_split", None, None, "finished", 1.5, None),
        ("c2", "confirm", "hard_split", None, None, "finished", 0.5, 2.0),
        ("c3", "confirm", "hard_split", None, None, "errored", math.nan, None),
    ]
    columns = ["trial_id", "phase", "family", "task", "ensemble_member", "status", "delta_m", rt.STOPPED_AFTER]
    return pd.DataFrame(rows, columns=columns)


def _ids(rows: pd.DataFrame) -> list[str]:
    return list(rows["trial_id"])


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (rt.searched, ["h1", "h2", "h3", "h4"]),
        (rt.finished_searched, ["h1"]),  # finished with a Delta_m: not pruned, not NaN, not running
        (rt.finished, ["s-a-1", "s-a-0", "s-b-0", "ens", "h1", "c1", "c2"]),
        (rt.confirmed, ["c1", "c2"]),
        (lambda r: rt.full_seeds(rt.confirmed(r)), ["c1"]),  # c2 was stopped by the race
        # the finished single-task baselines in seed order (ensemble_member; stable), the errored seed left out
        (rt.single_task_rows, ["s-a-0", "s-b-0", "s-a-1"]),
        (lambda r: rt.single_task_rows(r, "a"), ["s-a-0", "s-a-1"]),
        (lambda r: rt.single_task_rows(r, "b"), ["s-b-0"]),
        (lambda r: rt.single_task_rows(r, "b", status=None), ["s-b-0", "s-b-1"]),
        (rt.baseline_rows, ["s-a-1", "s-a-0", "s-b-0", "ens"]),
        (rt.ensemble_rows, ["ens"]),
        (lambda r: rt.phase_rows(r, "confirm"), ["c1", "c2", "c3"]),
        (lambda r: rt.phase_rows(r, "search", rt.ACTIVE), ["h4"]),
        (lambda r: rt.phase_rows(r, "search", rt.ENDED), ["h1", "h2", "h3"]),
    ],
)
def test_named_filters(view, expected: list[str]) -> None:
    assert _ids(view(_table())) == expected


def test_filters_on_a_table_without_the_race_or_a_family_column() -> None:
    table = _table().drop(columns=[rt.STOPPED_AFTER])
    assert _ids(rt.full_seeds(rt.confirmed(table))) == ["c1", "c2"]  # nothing was stopped
    assert rt.single_task_rows(table.drop(columns=["family"])).empty


# --- the curve layout ---------------------------------------------------------------------------


def test_curve_layout() -> None:
    epochs = pd.DataFrame({
        "epoch": [1, 2], "val/a/acc": [0.5, 0.6], "loss": [1.0, 0.8], "loss/a": [1.0, 0.8], "delta_m": [-1.0, 0.5],
        "time_total_s": [1.0, 2.0], "timestamp": [10, 11], "wall_time": [10.5, 11.5], "params": [7, 7],
        "node_id": ["n", "n"], "epoch_time_s": [1.0, 1.0], "latency_ms_b1": [0.1, 0.1],
    })
    curve = rt.curve(epochs, "t1", "search")
    assert list(curve.columns) == ["trial_id", "phase", "epoch", "val/a/acc", "loss", "loss/a", "delta_m",
                                   "time_total_s", "timestamp", "wall_time"]
    assert curve["trial_id"].tolist() == ["t1", "t1"] and curve["phase"].tolist() == ["search", "search"]
    assert curve["val/a/acc"].tolist() == [0.5, 0.6]
    assert list(epochs.columns)[0] == "epoch"  # the trial's frame is left as it was
