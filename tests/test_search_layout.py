"""search/ grouped by job (issue 26): each group imports only the groups below it, so a group
reads alone; and the module paths from before the grouping still load, since Ray Tune's
snapshots and the pickles of Optuna and cloudpickle name functions and classes by them."""
# regroup: skip-file (it names the module paths from before the grouping on purpose)
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top: a group imports only groups before it here. search/'s flat modules (the
# package's lazy face, the CLI, the old-path aliases) may import any group.
LAYERS = ("base", "trial", "results", "study", "recovery", "run")
FLAT = {"__init__", "__main__", "cli", "_cli_runs", "_cli_errors", "_aliases"}
FIXTURE = Path(__file__).parent / "data" / "search_before_regroup.pkl"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def search_imports() -> dict[str, set[str]]:
    """Each module of search/ -> the modules of search/ it imports, also inside functions."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "search").rglob("*.py")):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
                deps.update(subs or [target])
        graph[name] = {d for d in deps if d.split(".")[0] == "search" and d != name}
    return graph


def group(module: str) -> str:
    """``search.run._phases`` -> ``run``; a flat module of search/ (or the package) -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports against the layering: a group importing a group at or above its own layer (which
    is how a cycle between groups shows), or a flat module other than the package itself."""
    out = []
    for module, deps in sorted(graph.items()):
        mine = group(module)
        for dep in sorted(deps):
            theirs = group(dep)
            if mine == theirs or not mine or dep == "search":  # within a group; the CLI; ``import search``
                continue
            if not theirs:
                out.append(f"{module} -> {dep}: group {mine!r} imports a flat module of search/")
            elif theirs not in LAYERS or mine not in LAYERS:
                out.append(f"{module} -> {dep}: a group not in LAYERS")
            elif LAYERS.index(theirs) >= LAYERS.index(mine):
                out.append(f"{module} -> {dep}: {mine!r} may import only {list(LAYERS[:LAYERS.index(mine)])}")
    return out


def test_search_has_its_groups_and_its_face_only() -> None:
    flat = {p.stem for p in (ROOT / "search").glob("*.py")}
    groups = {p.parent.name for p in (ROOT / "search").glob("*/__init__.py")}
    assert flat - FLAT == set(), "a flat module of search/ belongs in a group (regroup.py --place NAME=GROUP)"
    assert groups == set(LAYERS)


def test_groups_import_only_the_groups_below() -> None:
    assert violations(search_imports()) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"search.run._phases": {"search.study._optuna", "search.base._log"}}, 0),  # downward
        ({"search.study._racing": {"search.study._optuna"}}, 0),  # within a group
        ({"search.cli": {"search.run._runner"}, "search": {"search._aliases"}}, 0),  # the face imports anything
        ({"search.base._cluster": {"search"}}, 0),  # the package itself (its location, to ship it to a cluster)
        ({"search.trial._trainable": {"search.run._phases"}}, 1),  # upward
        ({"search.run._x": {"search.study._y"}, "search.study._y": {"search.run._x"}}, 1),  # a cycle: its upward edge
        ({"search.results._table": {"search.cli"}}, 1),  # a group reaching the CLI
        ({"search.base._log": {"search.extra._z"}}, 1),  # a group the layering does not know
    ],
)
def test_violations_find_an_upward_import(graph: dict[str, set[str]], expected: int) -> None:
    assert len(violations(graph)) == expected


def test_importing_search_imports_no_group_and_old_paths_load_in_a_fresh_process() -> None:
    """``import search`` stays cheap (the CLI's start), and an old path unpickles in a process
    that never imported the new one, as in a Ray worker restoring a trial."""
    code = (
        "import pickle, sys, search\n"
        "print(sorted(m for m in sys.modules if m.startswith('search')))\n"
        "lock = pickle.loads(b'csearch._lock\\nrun_lock\\n.')\n"
        "new = sys.modules['search.recovery._lock']\n"
        "print(lock.__module__, lock is new.run_lock, sys.modules['search._lock'] is new, new.__spec__.name)\n"  # regroup: keep
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.splitlines() == [
        "['search', 'search._aliases']",
        "search.recovery._lock True True search.recovery._lock",
    ]


def _aliases() -> dict[str, str]:
    return importlib.import_module("search._aliases").MOVED


@pytest.mark.parametrize("old", sorted(_aliases()))
def test_an_old_module_path_is_the_new_module(old: str) -> None:
    """For each moved module: the old path imports the new module itself, and a global of it
    pickled under the old path (protocol 2 writes the path as text) loads as that global."""
    new = importlib.import_module(_aliases()[old])
    assert importlib.import_module(old) is new
    assert new.__name__ == new.__spec__.name == _aliases()[old]
    name = next(n for n, v in sorted(vars(new).items())
                if callable(v) and getattr(v, "__module__", None) == new.__name__ and "<" not in v.__qualname__)
    raw = pickle.dumps(getattr(new, name), protocol=2)
    old_raw = raw.replace(f"c{new.__name__}\n".encode(), f"c{old}\n".encode())
    assert old_raw != raw
    assert pickle.loads(old_raw) is getattr(new, name)


def test_objects_pickled_before_the_grouping_load() -> None:
    """``tests/data/search_before_regroup.pkl``: what Ray Tune's snapshots pickle, pickled with
    Ray's cloudpickle at commit aa0e5f3, before the grouping: the trial-directory namer (saved
    under both of its old homes), the trainable, the searchers, the scheduler, the progress
    callback and the errors a run raises."""
    from search.base._log import get_logger  # noqa: F401  (the package, not only the aliases)
    from search.recovery._lock import RunLockedError
    from search.recovery._relocate import RelocatableSearchGenerator
    from search.recovery._snapshots import SnapshotError
    from search.results._progress import ProgressPrinter
    from search.run import _phases
    from search.run._runner import RunResult
    from search.study._fixed import FixedConfigs
    from search.study._optuna import MTLOptunaSearch
    from search.study._pruning import OptunaPrunerScheduler
    from search.study._racing import RacingConfigs
    from search.study._study import StudyError
    from search.trial._trainable import train_trial

    raw = FIXTURE.read_bytes()
    assert b"search._runner" in raw and b"search.run." not in raw  # written under the old paths (regroup: keep)
    saved = pickle.loads(raw)
    assert saved["dirname_runner"] is _phases._dirname
    assert saved["dirname_phases"] is _phases._dirname
    assert saved["train_trial"] is train_trial
    assert saved["classes"] == [RacingConfigs, RelocatableSearchGenerator, _phases.SearchInterrupted,
                                _phases.Baselines, RunResult, StudyError, SnapshotError, RunLockedError]
    assert type(saved["fixed"]) is FixedConfigs
    assert saved["fixed"]._configs == [{"family": "single_task", "task": "left", "seed": 0}]
    assert type(saved["scheduler"]) is OptunaPrunerScheduler
    assert (saved["scheduler"]._metric, saved["scheduler"]._mode) == ("val/delta_m", "max")
    assert saved["scheduler"]._pruner._n_warmup_steps == 1
    assert saved["scheduler"]._exempt({"family": "hard_split"}) is False
    assert type(saved["progress"]) is ProgressPrinter
    assert type(saved["optuna_search"]) is MTLOptunaSearch
    assert saved["optuna_search"]._proposal_seed == 3


def test_a_run_saved_before_the_grouping_resumes(tmp_path: Path, ray_local) -> None:
    """``tests/data/run_before_regroup.tar.gz``: a finished run of ``run_before_regroup.yaml``
    made at commit aa0e5f3 (before the grouping; moved since, so it is also relocated), less
    its report, event files and older checkpoints. Its Tune snapshots name the old module
    paths (``search._phases._dirname``, ``search._optuna.MTLOptunaSearch``, ...): without the
    aliases the resume stops at the baselines' snapshot (No module named 'search._phases').
    Resumed, nothing trains again and the results table is the saved one."""
    import pandas as pd

    from search import resume_experiment

    with tarfile.open(Path(__file__).parent / "data" / "run_before_regroup.tar.gz") as archive:
        archive.extractall(tmp_path / "run", filter="data")
    run_dir = tmp_path / "run"
    saved = pd.read_parquet(run_dir / "results.parquet")
    assert b"search._phases" in next((run_dir / "baselines").glob("search_gen_state-*.json")).read_bytes()  # regroup: keep
    with contextlib.redirect_stdout(io.StringIO()):
        result = resume_experiment(run_dir, num_cpus=2)
    columns = ["trial_id", "phase", "status", "seed", "epochs_run", "val/left/accuracy", "val/right/accuracy", "delta_m"]
    assert list(saved["phase"]) == ["baselines"] * 4 + ["search"] * 2
    pd.testing.assert_frame_equal(result.results[columns].reset_index(drop=True), saved[columns], check_exact=True)
    assert len(json.loads((run_dir / "run.json").read_text())["resumed"]) == 1
