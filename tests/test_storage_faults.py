"""Storage failures real clusters have, caused for real (issue 16).

One tiny search is run by a driver process while a second driver tries the same run
directory; its trials meet a full disk (checkpoint writes that the kernel refuses with
ENOSPC: ``disk_full`` faults write to ``/dev/full``), then the driver is SIGKILLed while
its third trial hangs after two checkpoints. Each test resumes its own copy of that
killed run directory, after damaging what a crash or a full disk damages: the newest
checkpoint or all of them (truncated, garbage), ``optuna.db`` (garbage, truncated,
emptied, locked by another process, left mid-transaction), the lock of a driver on a
lost head node, the run directory's path. The driver's own writes meet a file-size
limit (``RLIMIT_FSIZE``: the kernel refuses them with EFBIG).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import pandas as pd
import pytest
import torch
import yaml
from ray import tune
from ray.tune import ExperimentAnalysis

import mtl_models as mm
from search import collect_results, resume_experiment, write_results
from search.trial._checkpoints import choose_checkpoint
from search.recovery import _lock
from search.recovery._lock import LOCK_FILE, RunLockedError
from search.recovery._snapshots import SnapshotError
from search.study._study import StudyError, check_study

from conftest import tiny_experiment
from fault_plugin import with_faults

ROOT = Path(__file__).resolve().parents[1]
ENOSPC_TEXT = "No space left on device"
EXPERIMENT = tiny_experiment(**{
    "name": "storage",
    "seed": 1,
    "data": {"source": "multimnist", "n_train": 192, "n_val": 96, "n_test": 0},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {"lr": {"low": 1e-3, "high": 0.02, "log": True}, "loss_weights": "simplex"},
    "search": {
        "num_trials": 4,
        "max_concurrent": 1,
        "sampler": {"name": "tpe", "n_startup_trials": 2},
        "pruner": {"name": "nop"},
        "max_failures": 1,
    },
    "baselines": {"ensemble": False},
})
FAULTS = {  # searched trial number: fault (tests/fault_plugin.py)
    0: {"kind": "disk_full", "epoch": 2, "times": 1},  # the retry writes it: finished
    1: {"kind": "disk_full", "epoch": 2},  # every attempt: errored
    2: {"kind": "hang", "epoch": 3, "times": 1},  # the driver is killed here; resumes go on
}


@dataclass
class Killed:
    run_dir: Path
    pid: int
    second: subprocess.CompletedProcess
    root: Path


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _search_trials(run_dir: Path) -> dict[int, Path]:
    """Optuna trial number -> trial directory of the search (from each trial's params.json)."""
    out = {}
    for params in (run_dir / "search").glob("*/params.json"):
        out[json.loads(params.read_text())["_optuna"]["number"]] = params.parent
    return out


def _snapshot_holds(run_dir: Path, number: int, checkpoint: str) -> bool:
    """Whether Tune's latest experiment snapshot registered ``checkpoint`` for trial ``number``."""
    trial = _search_trials(run_dir).get(number)
    states = sorted((run_dir / "search").glob("experiment_state-*.json"))
    if trial is None or not states:
        return False
    try:
        data = json.loads(states[-1].read_text())
    except json.JSONDecodeError:
        return False
    trial_id = trial.name.rsplit("_", 1)[-1]
    path = f"{trial.name}/{checkpoint}".encode().hex()  # the checkpoint manager is pickled, hex-encoded
    return any(f'"trial_id": "{trial_id}"' in meta[0] and path in meta[1] for meta in data["trial_data"])


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Killed:
    """The experiment run by a driver process, a second driver started on it meanwhile,
    and the first SIGKILLed once its third trial hangs with two checkpoints."""
    root = tmp_path_factory.mktemp("storage")
    experiment = root / "storage.yaml"
    experiment.write_text(yaml.safe_dump(with_faults(EXPERIMENT, root, FAULTS), sort_keys=False))
    run_dir = root / "killed"
    log = (root / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", str(experiment), "--out", str(run_dir), "--num-cpus", "2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait(lambda: (run_dir / LOCK_FILE).is_file(), 120, "the first driver's lock")
        second = subprocess.run([sys.executable, "-m", "search.cli", "resume", str(run_dir)],
                                capture_output=True, text=True, timeout=120)
        _wait(lambda: _snapshot_holds(run_dir, 2, "checkpoint_000001"), 300, "the third trial's second checkpoint")
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        log.close()
    time.sleep(2)  # let the killed Ray's processes go
    return Killed(run_dir, driver.pid, second, root)


def _copy(killed: Killed, name: str) -> Path:
    target = killed.root / name
    shutil.copytree(killed.run_dir, target, symlinks=True)
    return target


def _resume(run_dir: Path, **kwargs) -> tuple[object, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = resume_experiment(run_dir, **kwargs)
    return result, out.getvalue()


def _epochs(trial_dir: Path) -> list[int]:
    """The epochs a trial reported, in order, over all its attempts."""
    return [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def _files(run_dir: Path) -> dict[str, tuple[int, str]]:
    """Every file of a run directory (but the run lock): size and SHA-256."""
    return {str(p.relative_to(run_dir)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def _study(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'optuna.db'}").trials


# ---- two drivers ------------------------------------------------------------------------


def test_a_second_driver_is_refused_and_names_the_holder(killed: Killed) -> None:
    assert killed.second.returncode == 2, killed.second.stderr[-2000:]
    message = killed.second.stderr
    assert f"pid {killed.pid} on host {platform.node()!r}" in message and "still running" in message
    assert f"kill {killed.pid}" in message
    run = json.loads((killed.run_dir / "run.json").read_text())
    assert "resumed" not in run  # the refused driver changed nothing


def _stale_record(pid: int, **changes) -> dict:
    record = {**_lock.this_driver(), "pid": pid, "command": ["mtlsearch", "run"]}
    return {**record, **changes}


def test_a_lock_of_a_live_driver_refuses_and_of_a_dead_or_reused_pid_is_taken_over(tmp_path: Path, capsys) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    path = tmp_path / LOCK_FILE
    try:
        live = _stale_record(sleeper.pid, pid_start=_lock._process(sleeper.pid)[1])
        path.write_text(json.dumps(live))
        with pytest.raises(RunLockedError, match=rf"in use by the driver pid {sleeper.pid} on host .* still running"):
            _lock.acquire(tmp_path)
        path.write_text(json.dumps({**live, "pid_start": live["pid_start"] + 1}))  # the pid is another process now
        _lock.release(tmp_path, _lock.acquire(tmp_path))
        assert "(it is no longer running)" in capsys.readouterr().out
    finally:
        sleeper.kill()
        sleeper.wait()
    path.write_text(json.dumps(live))  # its driver has ended
    held = _lock.acquire(tmp_path)
    assert json.loads(path.read_text()) == held and f"pid {sleeper.pid}" in capsys.readouterr().out
    _lock.release(tmp_path, held)
    assert not path.exists()


RACER = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("lock", {lock_py!r})
lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock)
while not Path({go!r}).exists():
    time.sleep(0.005)
try:
    lock.acquire(Path({run!r}))
except lock.RunLockedError:
    print("refused", flush=True)
    sys.exit(0)
print("took it", flush=True)
time.sleep(3)  # hold it while the others try
"""


def test_only_one_of_several_drivers_takes_over_a_stale_lock(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps(_stale_record(dead.pid)))
    program = RACER.format(lock_py=str(ROOT / "search" / "recovery" / "_lock.py"), go=str(tmp_path / "go"), run=str(tmp_path))
    racers = [subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(1.0)  # all started, waiting for the go
    (tmp_path / "go").touch()
    outcomes = sorted(r.communicate(timeout=60)[0].strip().splitlines()[-1] for r in racers)
    assert outcomes == ["refused"] * 5 + ["took it"]


# ---- a full disk under a trial's checkpoint --------------------------------------------


@pytest.fixture(scope="module")
def killed_rows(killed: Killed) -> dict[int, pd.Series]:
    results, _ = collect_results(killed.run_dir)
    trial_dirs = _search_trials(killed.run_dir)
    by_id = results.set_index("trial_id")
    return {n: by_id.loc[d.name.rsplit("_", 1)[-1]] for n, d in trial_dirs.items()}


def test_a_failed_checkpoint_write_is_retried_from_the_last_whole_checkpoint(killed: Killed, killed_rows) -> None:
    trial = _search_trials(killed.run_dir)[0]
    row = killed_rows[0]
    assert (row["status"], row["epochs_run"], row["retries"]) == ("finished", 3, 1)
    assert ENOSPC_TEXT in (trial / "error.txt").read_text()  # the failed attempt is on record
    # epoch 2's checkpoint write failed; the retry restored epoch 1's checkpoint: no epoch
    # twice (Tune may drop the lines of result.json it had not synced when the driver was
    # killed, seen once under a loaded machine as [2, 3]; never a repeat)
    epochs = _epochs(trial)
    assert epochs == sorted(set(epochs)) and epochs[-1] == 3
    kept = sorted(trial.glob("checkpoint_*"))
    assert len(kept) == 2 and all(mm.checkpoint_problem(c) is None for c in kept)


def test_a_trial_that_cannot_write_its_checkpoint_ends_errored_with_the_disk_error(killed: Killed, killed_rows) -> None:
    trial = _search_trials(killed.run_dir)[1]
    row = killed_rows[1]
    assert (row["status"], row["epochs_run"], row["retries"]) == ("errored", 1, 2)  # two attempts failed
    assert row["error"] == f"OSError: [Errno 28] {ENOSPC_TEXT}" and row["error_type"] == "OSError"
    assert _epochs(trial) == [1]  # the retry restored epoch 1 (no second epoch 1) and failed at epoch 2 again
    assert [c.name for c in trial.glob("checkpoint_*")] == ["checkpoint_000000"]  # nothing half-written kept


# ---- a lost head node: the run directory elsewhere, another host's lock -----------------


@pytest.fixture(scope="module")
def moved(killed: Killed, ray_local):
    """The killed run copied to another path, its lock rewritten as held by a lost head
    node, resumed here (another Ray instance) with --break-lock."""
    run_dir = killed.root / "elsewhere" / "moved"
    run_dir.parent.mkdir()
    shutil.copytree(killed.run_dir, run_dir, symlinks=True)
    lock = json.loads((run_dir / LOCK_FILE).read_text())
    (run_dir / LOCK_FILE).write_text(json.dumps({**lock, "host": "lost-head"}))
    old_study = (killed.run_dir / "optuna.db").read_bytes()
    with pytest.raises(RunLockedError) as refused:
        resume_experiment(run_dir)
    result, output = _resume(run_dir, break_lock=True)
    return result, output, str(refused.value), old_study


def test_a_lock_from_another_host_is_refused_unless_broken(moved) -> None:
    _, output, refused, _ = moved
    assert "host 'lost-head'" in refused and "--break-lock" in refused
    assert "Run lock: took over the lock of the driver pid" in output and "on host 'lost-head'" in output
    assert "(--break-lock)" in output


def test_a_moved_run_resumes_on_its_own_study_and_paths(moved, killed: Killed) -> None:
    result, _, _, old_study = moved
    run_dir = result.run_dir
    assert (killed.run_dir / "optuna.db").read_bytes() == old_study  # the old path is never written
    trials = _study(run_dir)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    searched = result.results[result.results["phase"] == "search"]
    assert len(searched) == 4 and searched["trial_id"].is_unique
    assert searched["status"].value_counts().to_dict() == {"finished": 3, "errored": 1}
    assert all(c.startswith(str(run_dir)) for c in result.results["checkpoint"].dropna())
    assert not (run_dir / LOCK_FILE).exists()  # released when the driver ended


# ---- damaged checkpoints --------------------------------------------------------------


def _damage_study(db: Path) -> None:
    """Garbage, with the hot journal of a transaction cut off beside it (a damaged header
    alone the journal's rollback would repair)."""
    _leave_mid_transaction(db)
    db.write_bytes(os.urandom(db.stat().st_size))


@pytest.fixture(scope="module")
def rebuilt(killed: Killed, ray_local):
    """A copy of the killed run whose optuna.db is damaged and whose hung trial's newest
    checkpoint is cut in half: resumed (refused), then resumed with --rebuild-study."""
    run_dir = _copy(killed, "rebuilt")
    _damage_study(run_dir / "optuna.db")
    trial = _search_trials(run_dir)[2]
    newest = trial / "checkpoint_000001" / "state.pt"
    size = newest.stat().st_size
    newest.write_bytes(newest.read_bytes()[: size // 2])
    with pytest.raises(StudyError) as refused:
        resume_experiment(run_dir)
    result, output = _resume(run_dir, rebuild_study=True)
    return result, output, str(refused.value), trial, size


def test_resume_skips_a_damaged_newest_checkpoint_for_the_one_before_and_says_so(rebuilt) -> None:
    result, output, _, trial, size = rebuilt
    trial_id = trial.name.rsplit("_", 1)[-1]
    assert f"Trial {trial_id}: checkpoint_000001 is corrupt ({size // 2} bytes where its manifest says {size} " \
           "(truncated or overwritten)); it continues from checkpoint_000000." in output.splitlines()
    assert _epochs(trial) == [1, 2, 2, 3]  # epoch 2 again, from epoch 1's checkpoint
    row = result.results.set_index("trial_id").loc[trial_id]
    assert (row["status"], row["epochs_run"]) == ("finished", 3)


def test_resume_restarts_a_trial_with_no_whole_checkpoint_and_says_so(killed: Killed, ray_local) -> None:
    run_dir = _copy(killed, "checkpoints-garbage")
    trial = _search_trials(run_dir)[2]
    for state in trial.glob("checkpoint_*/state.pt"):
        state.write_bytes(os.urandom(state.stat().st_size))
    result, output = _resume(run_dir)
    held = json.loads((killed.run_dir / LOCK_FILE).read_text())  # the killed driver's: this host, its pid gone
    assert (held["pid"], held["host"]) == (killed.pid, platform.node())
    assert output.splitlines()[0] == f"Run lock: took over the lock of the driver {_lock.describe(held)} (it is no longer running)."
    trial_id = trial.name.rsplit("_", 1)[-1]
    line = next(line for line in output.splitlines() if line.startswith(f"Trial {trial_id}:"))
    assert line == (f"Trial {trial_id}: checkpoint_000001 is corrupt (its SHA-256 differs from its manifest's "
                    "(damaged)); checkpoint_000000 is corrupt (its SHA-256 differs from its manifest's (damaged)); "
                    "no whole checkpoint is left, so it restarts from its first epoch.")
    assert _epochs(trial) == [1, 2, 1, 2, 3]
    row = result.results.set_index("trial_id").loc[trial_id]
    assert (row["status"], row["epochs_run"]) == ("finished", 3)


def test_a_checkpoint_is_checked_against_its_manifest(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    for index in range(3):
        directory = trial / f"checkpoint_{index:06d}"
        directory.mkdir(parents=True)
        mm.save_checkpoint_state({"epoch": index + 1, "model": {"w": torch.full((64,), float(index))}}, directory)
    (trial / "checkpoint_000003").mkdir()  # a newer, half-copied one Tune never registered
    (trial / "checkpoint_000003" / "state.pt").write_bytes(b"\x00" * 10)
    latest = tune.Checkpoint(str(trial / "checkpoint_000002"))
    assert choose_checkpoint(latest)[0].path == latest.path
    state = trial / "checkpoint_000002" / "state.pt"
    whole = state.read_bytes()
    state.write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))  # one bit flipped
    chosen, skipped = choose_checkpoint(latest)
    assert chosen.path == str(trial / "checkpoint_000001")
    assert skipped == [(latest.path, "its SHA-256 differs from its manifest's (damaged)")]
    with pytest.raises(mm.CorruptCheckpointError, match=r"checkpoint_000002/state.pt' is corrupt: its SHA-256"):
        mm.load_checkpoint_state(latest.path)
    assert mm.load_checkpoint_state(chosen.path)["epoch"] == 2
    (trial / "checkpoint_000001" / "state.json").unlink()  # no manifest: torch's own checks
    half = trial / "checkpoint_000001" / "state.pt"
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    (trial / "checkpoint_000000" / "state.json").write_text("{")
    chosen, skipped = choose_checkpoint(latest)
    assert chosen is None
    assert [problem for _, problem in skipped][1:] == [
        "it cannot be read (PytorchStreamReader failed reading zip archive: failed finding central directory)",
        "its manifest state.json is unreadable"]


def test_a_checkpoint_write_on_a_full_disk_raises_and_is_never_handed_over(tmp_path: Path) -> None:
    """The kernel's always-full device refuses the write with ENOSPC; the trainable hands
    Tune a checkpoint only after the write returned (so a failed one is never the latest)."""
    os.symlink("/dev/full", tmp_path / "state.pt")
    with pytest.raises(OSError, match=ENOSPC_TEXT):
        mm.save_checkpoint_state({"epoch": 1, "model": {"w": torch.zeros(1024)}}, tmp_path)
    assert not (tmp_path / "state.json").exists()


# ---- the study --------------------------------------------------------------------------


def _hold_exclusive_lock(db: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None); c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("damage", ["garbage", "truncated", "emptied", "locked"])
def test_an_unusable_study_stops_resume_before_anything_changes(killed: Killed, damage: str) -> None:
    run_dir = _copy(killed, f"study-{damage}")
    db = run_dir / "optuna.db"
    data = db.read_bytes()
    holder = None
    if damage == "garbage":
        db.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif damage == "emptied":
        db.write_bytes(b"")
    else:
        holder = _hold_exclusive_lock(db)
    before = _files(run_dir)
    expected = {
        "garbage": "optuna.db is damaged (SQLite: file is not a database)",
        "truncated": "optuna.db is damaged (SQLite: database disk image is malformed)",
        "emptied": "optuna.db is not an Optuna study (no such table: studies)",
        "locked": "optuna.db is locked by another process (SQLite: database is locked",
    }[damage]
    try:
        if damage == "garbage":  # as a user sees it
            cli = subprocess.run([sys.executable, "-m", "search.cli", "resume", str(run_dir)],
                                 capture_output=True, text=True, timeout=120)
            assert cli.returncode == 2 and cli.stderr.startswith("mtlsearch: error: ")
            message = cli.stderr
        else:
            with pytest.raises(StudyError) as error:
                resume_experiment(run_dir)
            message = str(error.value)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    assert expected in message
    assert "Nothing was changed." in message and f"mtlsearch resume {run_dir} --rebuild-study" in message
    assert _files(run_dir) == before


def test_a_cut_off_tune_snapshot_stops_resume_before_anything_changes(killed: Killed) -> None:
    """Restoring a cut-off snapshot, Tune would log the error and run the whole phase again."""
    run_dir = _copy(killed, "snapshot-cut-off")
    state = sorted((run_dir / "search").glob("experiment_state-*.json"))[-1]
    state.write_bytes(state.read_bytes()[:1000])
    before = _files(run_dir)
    with pytest.raises(SnapshotError) as error:
        resume_experiment(run_dir)
    assert str(error.value).startswith(f"Ray Tune's snapshot {run_dir / 'search' / state.name} cannot be read "
                                       "(JSONDecodeError: ")
    assert "Tune would start the search phase over, so nothing was changed." in str(error.value)
    assert _files(run_dir) == before


def _leave_mid_transaction(db: Path) -> None:
    """A process that dies (SIGKILL) in the middle of a write transaction, after SQLite has
    written changed pages to the database file (a small cache spills): a hot journal."""
    program = textwrap.dedent(f"""
        import os, signal, sqlite3
        c = sqlite3.connect({str(db)!r}, isolation_level=None)
        c.execute("PRAGMA cache_size=1")
        c.execute("BEGIN")
        c.execute("DELETE FROM trial_params")
        c.execute("UPDATE trials SET state = 'FAIL'")
        c.execute("CREATE TABLE filler(x)")
        c.execute("INSERT INTO filler VALUES (randomblob(200000))")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", program]).returncode == -signal.SIGKILL
    assert db.with_name(db.name + "-journal").stat().st_size > 0


def test_a_study_left_mid_transaction_is_rolled_back_to_what_was_committed(killed: Killed) -> None:
    run_dir = _copy(killed, "study-mid-transaction")
    committed = [(t.number, t.state, t.params, t.values) for t in _study(run_dir)]
    _leave_mid_transaction(run_dir / "optuna.db")
    notes = check_study(run_dir)
    assert notes == [f"{run_dir / 'optuna.db'} was left in the middle of a transaction (optuna.db-journal); "
                     "SQLite rolled it back, so the study holds what was committed."]
    assert [(t.number, t.state, t.params, t.values) for t in _study(run_dir)] == committed


def test_a_rebuilt_study_continues_the_search_as_the_intact_one(rebuilt, moved) -> None:
    """optuna.db damaged, with the journal of a transaction cut off beside it: resume
    refuses, resume --rebuild-study writes it anew from the trials (the journal moved
    aside with it, or SQLite would replay it into the new file), and the search then
    proposes and trains exactly what the resume of the intact study did."""
    result, output, refused, _, _ = rebuilt
    db = result.run_dir / "optuna.db"
    assert refused.startswith(f"{db} is damaged (SQLite: ")
    assert f"Rebuilt {db} from 3 search trial(s) (1 COMPLETE, 1 FAIL, 1 RUNNING); the old file is " in output
    damaged = sorted(result.run_dir.glob("optuna.db.damaged-*"))
    assert [p.name.rsplit("-", 1)[-1] for p in damaged][1:] == ["journal"] and not db.with_name("optuna.db-journal").exists()
    intact = moved[0]
    rebuilt_trials, reference = _study(result.run_dir), _study(intact.run_dir)
    assert [(t.number, t.state, t.params) for t in rebuilt_trials] == [(t.number, t.state, t.params) for t in reference]
    assert [t.values for t in rebuilt_trials] == [t.values for t in reference]  # the same floats, read back exactly
    assert [t.intermediate_values for t in rebuilt_trials] == [t.intermediate_values for t in reference]
    columns = ["lr", "loss_weights/left", "status", "delta_m"]
    mine = result.results.query("phase == 'search'").sort_values("lr")[columns].reset_index(drop=True)
    theirs = intact.results.query("phase == 'search'").sort_values("lr")[columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, theirs)


# ---- the driver's own writes on a full disk ----------------------------------------------


def test_a_failed_table_write_leaves_the_previous_complete_version(killed: Killed) -> None:
    """``mtlsearch report`` under a file-size limit (RLIMIT_FSIZE; the kernel refuses the
    write with EFBIG, as it refuses one on a full disk with ENOSPC): results.parquet and
    curves.parquet are their previous complete versions, and the error says so."""
    run_dir = _copy(killed, "tables")
    write_results(run_dir)
    tables = ("results.parquet", "curves.parquet")
    before = {name: (run_dir / name).read_bytes() for name in tables}
    limited = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        from search.cli import main
        sys.exit(main(["report", {str(run_dir)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True, timeout=300)
    assert {name: (run_dir / name).read_bytes() for name in tables} == before
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("mtlsearch: error: out of disk space: ")
    assert f"File too large ({run_dir / 'results.parquet'}) [EFBIG]" in proc.stderr
    assert proc.stderr.rstrip().endswith(f"Free space, then write it again with: mtlsearch report {run_dir}.")


def test_a_snapshot_naming_a_missing_module_says_so_not_that_it_was_cut_off(tmp_path: Path) -> None:
    """A whole snapshot whose pickle names a module this Python lacks (a plugin not installed
    here) is not called cut off: the error names the module and what to do."""
    from search.recovery._snapshots import check_snapshots
    from search.results._table import phase_path

    phase = Path(phase_path(tmp_path, "search"))
    phase.mkdir(parents=True)
    (phase / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    name = "searcher-state-2026-12-06_00-00-00.pkl"
    (phase / name).write_bytes(b"\x80\x04cmtlsearch_plugin_not_here\nSearcher\n.")
    with pytest.raises(SnapshotError) as error:
        check_snapshots(tmp_path)
    message = str(error.value)
    assert message.startswith(f"Ray Tune's snapshot {phase}/{name} names code this Python cannot import "
                              "(ModuleNotFoundError: No module named 'mtlsearch_plugin_not_here')")
    assert "cut off" not in message and "nothing was changed" in message
