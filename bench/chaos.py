"""Chaos benchmark: a small search under the storage failures clusters have (issue 16).

    python -m bench.chaos [--seed 16] [--trials 8] [--keep DIR]

Runs one small search twice with the real ``mtlsearch`` command: once without faults,
once while these are injected at times drawn from ``--seed`` (seconds after the
search's first reported epoch in that driver's life; what they hit depends on the
machine's speed, which the JSON records):

- trials' checkpoint writes fail with ENOSPC (``disk_full`` faults on random trials and
  epochs, once each: the retry must go on from the last whole checkpoint);
- a second driver is started on the run while the first works (it must refuse);
- the disk of the run directory fills up for real for a few seconds (the run
  directory is on a small tmpfs, filled with a ballast file; needs the right to mount
  one, else this fault is skipped and the JSON says so);
- the driver is SIGKILLed; before the resume a checkpoint that the resume restores
  (one Tune registered for an unfinished trial) is truncated and ``optuna.db``
  overwritten with garbage (the resume must refuse,
  then ``--rebuild-study`` continues);
- the resumed driver is killed too, the run directory moved to another path as if the
  head node were lost (its lock naming a host that is gone), and resumed there (refused
  without ``--break-lock``, then continued with it).

Reports the searched trials finished (or pruned), retried and lost (target 0: every
trial of the search ends finished or pruned, exactly once), whether the faulted search
trained the same configs to the same Delta_m as the fault-free one (trials run one at a
time, so TPE's proposals do not depend on which of two trials ends first), and the
wall time of all its driver runs against the fault-free run's. "Retried" counts what
the results table records (Tune's failure counts in its snapshots: a retry in a driver
life that was killed before its next snapshot is not counted). Writes
``bench/results/chaos.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench._common import machine, write_result
from mtl_models import import_plugin

ROOT = Path(__file__).resolve().parents[1]

LOCK_FILE = "driver.lock"


def experiment(trials: int) -> dict[str, Any]:
    return {
        "name": "chaos",
        "seed": 16,
        "data": {"source": "multimnist", "n_train": 384, "n_val": 128, "n_test": 0},
        "tasks": [{"name": "left", "kind": "classification", "classes": 10},
                  {"name": "right", "kind": "classification", "classes": 10}],
        "backbone": {"name": "small_cnn", "options": {"widths": [8, 16]}},
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        "space": {"lr": {"low": 1e-3, "high": 0.03, "log": True}, "loss_weights": "simplex"},
        "search": {"num_trials": trials, "max_concurrent": 1, "sampler": {"name": "tpe", "n_startup_trials": 3},
                   "pruner": {"name": "nop"}, "max_failures": 2},
        "baselines": {"ensemble": False},
    }


class Driver:
    """One ``mtlsearch`` process, its output kept, its wall time measured."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.start = time.monotonic()
        self.handle = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "search.cli", *args], stdout=self.handle, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def search_started(self, timeout: float) -> float | None:
        """Wait for the search's first reported epoch; returns when it came (None: the driver ended first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if "[search " in self.log.read_text():
                return time.monotonic()
            time.sleep(0.2)
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        time.sleep(2)  # the killed Ray's processes go

    def close(self) -> dict[str, Any]:
        self.handle.close()
        text = self.log.read_text()
        return {"command": "mtlsearch " + " ".join(self.args), "returncode": self.process.returncode,
                "wall_s": round(time.monotonic() - self.start, 1), "tail": text.strip().splitlines()[-3:]}


def run_to_end(args: list[str], log: Path) -> dict[str, Any]:
    driver = Driver(args, log)
    driver.wait()
    return driver.close()


def mount_tmpfs(path: Path, size_mb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                            capture_output=True, text=True)
    return result.returncode == 0


def fill(path: Path) -> int:
    """Write a ballast file until the filesystem is full; returns its size."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12):  # then page by page: no room left even for a small file
            block = b"\0" * size
            try:
                while True:
                    written += f.write(block)
            except OSError:
                pass
    return written


def registered_checkpoints(run_dir: Path) -> list[Path]:
    """Per unfinished trial, the newest checkpoint Tune's newest snapshot of the search
    registered: what a resume restores (the snapshot pickles their paths, hex-encoded)."""
    states = sorted((run_dir / "search").glob("experiment_state-*.json"))
    text = states[-1].read_text(errors="replace") if states else ""
    out = []
    for trial in unfinished_trials(run_dir):
        known = [c for c in sorted(trial.glob("checkpoint_*")) if f"{trial.name}/{c.name}".encode().hex() in text]
        out += known[-1:]
    return out


def unfinished_trials(run_dir: Path) -> list[Path]:
    """Search trial folders with at least one checkpoint and fewer epochs than the budget."""
    out = []
    for trial in sorted((run_dir / "search").glob("*_*")):
        if not trial.is_dir() or not list(trial.glob("checkpoint_*")):
            continue
        epochs = []
        for line in (trial / "result.json").read_text().splitlines() if (trial / "result.json").is_file() else []:
            try:
                epochs.append((json.loads(line)["epoch"], json.loads(line)["epochs"]))
            except (ValueError, KeyError):
                pass  # a line cut off by the full disk
        if not epochs or epochs[-1][0] < epochs[-1][1]:
            out.append(trial)
    return out


def chaos_run(exp_file: Path, work: Path, rng: random.Random, tmpfs: bool) -> tuple[Path, list[dict[str, Any]]]:
    """The faulted search; returns where it ended and what happened, in order."""
    events: list[dict[str, Any]] = []
    run_dir = work / "disk" / "run"
    # life 1: the run, with a second driver, a full disk and a SIGKILL at random times in its search
    t_second, t_fill, hold, t_kill = rng.uniform(0, 4), rng.uniform(5, 10), rng.uniform(3, 6), rng.uniform(14, 22)
    first = Driver(["run", str(exp_file), "--out", str(run_dir), "--num-cpus", "2", "--no-cache"], work / "life1.log")
    search = first.search_started(timeout=300) or time.monotonic()
    timeline = sorted([(t_second, "second"), (t_fill, "fill"), (t_kill, "kill")])
    for at, what in timeline:
        if first.wait(timeout=max(0.0, search + at - time.monotonic())) is not None:
            events.append({"event": f"{what} not injected: the driver had ended", "at_s": round(at, 1)})
            continue
        if what == "second":
            second = run_to_end(["resume", str(run_dir), "--no-cache"], work / "second.log")
            events.append({"event": "second driver started on the running run", "at_s": round(at, 1),
                           "refused": second["returncode"] == 2 and "is in use by" in "\n".join(second["tail"]),
                           **second})
        elif what == "fill" and tmpfs:
            ballast = run_dir.parent / "ballast"
            size = fill(ballast)
            time.sleep(hold)
            ballast.unlink()
            events.append({"event": "disk of the run directory full", "at_s": round(at, 1),
                           "hold_s": round(hold, 1), "ballast_mb": round(size / 2**20, 1)})
        elif what == "fill":
            events.append({"event": "disk full skipped: cannot mount a tmpfs here", "at_s": round(at, 1)})
        else:
            first.kill()
            events.append({"event": "driver SIGKILLed", "at_s": round(at, 1)})
    first.wait()
    lives = [first.close()]
    # damage, then resume: refused on the damaged study, continued with --rebuild-study, killed again
    registered = registered_checkpoints(run_dir)
    if registered:
        newest = rng.choice(registered) / "state.pt"
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
        events.append({"event": "a checkpoint a resume restores truncated", "file": str(newest.relative_to(run_dir))})
    study = run_dir / "optuna.db"
    study.write_bytes(os.urandom(study.stat().st_size))
    refused = run_to_end(["resume", str(run_dir), "--no-cache"], work / "refused_study.log")
    events.append({"event": "optuna.db overwritten with garbage; resume", "refused": refused["returncode"] == 2
                   and "--rebuild-study" in "\n".join(refused["tail"]), **refused})
    second_life = Driver(["resume", str(run_dir), "--rebuild-study", "--no-cache"], work / "life2.log")
    t_kill2 = rng.uniform(4, 10)
    search = second_life.search_started(timeout=300) or time.monotonic()
    if second_life.wait(timeout=max(0.0, search + t_kill2 - time.monotonic())) is None:
        second_life.kill()
        events.append({"event": "resumed driver SIGKILLed", "at_s": round(t_kill2, 1)})
    lives.append(second_life.close())
    # the head node is lost: the run directory comes back elsewhere, its lock names the old host
    moved = work / "new-head" / "run"
    moved.parent.mkdir(parents=True)
    shutil.copytree(run_dir, moved, symlinks=True)
    shutil.rmtree(run_dir)
    lock = moved / LOCK_FILE
    if lock.is_file():
        lock.write_text(json.dumps({**json.loads(lock.read_text()), "host": "lost-head"}))
    refused = run_to_end(["resume", str(moved), "--no-cache"], work / "refused_lock.log")
    events.append({"event": "run directory moved to a new head; resume", "refused": refused["returncode"] == 2
                   and "--break-lock" in "\n".join(refused["tail"]), **refused})
    for attempt in range(3):  # the last life runs to the end (another resume only if it did not)
        lives.append(run_to_end(["resume", str(moved), "--break-lock", "--no-cache"], work / f"life{3 + attempt}.log"))
        if lives[-1]["returncode"] == 0:
            break
    events.extend({"event": "driver life", **life} for life in lives)
    return moved, events


def searched(run_dir: Path) -> pd.DataFrame:
    results = pd.read_parquet(run_dir / "results.parquet")
    return results[results["phase"] == "search"].copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="keep the run directories and logs here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="mtlsearch-chaos-")) if args.keep is None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    faulted = rng.sample(range(args.trials), 3)
    faults = {n: {"kind": "disk_full", "epoch": rng.randint(2, 4), "times": 1} for n in faulted}
    clean_file, chaos_file = work / "clean.yaml", work / "chaos.yaml"
    clean_file.write_text(yaml.safe_dump(experiment(args.trials), sort_keys=False))
    with_faults = import_plugin(str(ROOT / "tests" / "fault_plugin.py")).with_faults  # the tests' fault plugin
    chaos_file.write_text(yaml.safe_dump(with_faults(experiment(args.trials), work, faults), sort_keys=False))
    tmpfs = mount_tmpfs(work / "disk", 48)
    try:
        print(f"Fault-free run ({args.trials} trials) ...", flush=True)
        clean = run_to_end(["run", str(clean_file), "--out", str(work / "clean"), "--num-cpus", "2", "--no-cache"],
                           work / "clean.log")
        if clean["returncode"] != 0:
            raise SystemExit(f"the fault-free run failed: {clean}")
        print(f"  {clean['wall_s']:.0f} s. Faulted run (seed {args.seed}; disk_full faults on trials "
              f"{sorted(faulted)}; real full disk: {'yes' if tmpfs else 'no, cannot mount a tmpfs'}) ...", flush=True)
        started = time.monotonic()
        final, events = chaos_run(chaos_file, work, rng, tmpfs)
        elapsed = time.monotonic() - started
    finally:
        if tmpfs:
            subprocess.run(["umount", "-l", str(work / "disk")], capture_output=True)
    for event in events:
        print("  " + json.dumps({k: v for k, v in event.items() if k != "tail"}), flush=True)
    if not (final / "results.parquet").is_file():
        raise SystemExit(f"the faulted run did not finish; see {work}")
    mine, theirs = searched(final), searched(work / "clean")
    ended = mine[mine["status"].isin(["finished", "pruned"])]
    key = ["lr", "loss_weights/left"]
    same = mine.sort_values(key)[key].reset_index(drop=True).equals(theirs.sort_values(key)[key].reset_index(drop=True))
    diff = (mine.sort_values(key)["delta_m"].to_numpy() - theirs.sort_values(key)["delta_m"].to_numpy()) if same else None
    lives = [e for e in events if e["event"] == "driver life"]
    figures = {
        "trials": args.trials,
        "finished": int((mine["status"] == "finished").sum()),
        "pruned": int((mine["status"] == "pruned").sum()),
        "retried": int((mine["retries"] > 0).sum()),
        "retries": int(mine["retries"].sum()),
        "lost": int(args.trials - len(ended) + (len(mine) - mine["config"].nunique())),
        "errored": int((mine["status"] == "errored").sum()),
        "same_configs_as_fault_free": bool(same),
        "max_abs_delta_m_difference": None if diff is None else float(abs(diff).max()),
        "driver_lives": len(lives),
        "refusals_as_expected": all(e.get("refused") for e in events if "refused" in e),
        "wall_s_fault_free": clean["wall_s"],
        "wall_s_faulted": round(elapsed, 1),  # first driver's start to the last one's end, restarts included
        "wall_s_faulted_driver_lives": [life["wall_s"] for life in lives],
        "wall_ratio": round(elapsed / clean["wall_s"], 2),
    }
    result = {"benchmark": "chaos", **machine(), "seed": args.seed, "disk_full_faults": faults,
              "real_full_disk": tmpfs, "figures": figures, "events": events}
    print(f"Trials: {figures['finished']} finished, {figures['pruned']} pruned, {figures['errored']} errored, "
          f"{figures['lost']} lost (target 0); {figures['retried']} retried ({figures['retries']} retries); "
          f"same configs and Delta_m as the fault-free run: {same} "
          f"(max |difference| {figures['max_abs_delta_m_difference']}); refusals as expected: "
          f"{figures['refusals_as_expected']}")
    print(f"Wall time: {elapsed:.0f} s from the first driver's start to the last one's end ({len(lives)} driver "
          f"lives, refused drivers and damage in between) vs {clean['wall_s']:.0f} s without faults "
          f"(x{figures['wall_ratio']})")
    print(f"Wrote {write_result('chaos', result)}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
