"""Benchmark 4, time to first result: from typing ``mtlsearch run`` to the first trial's
first reported epoch.

    python -m bench.time_to_first [--experiment examples/quickstart.yaml] [--repeats 3]
                                  [--baseline-dir /tmp/old-checkout]

Runs the real command in a subprocess (fresh interpreter, a local Ray started by the
command itself), timestamps each line it prints and stops it after the first result.
Records when the data was loaded, when Ray was up and when the first epoch of the
first trial was reported, and the machine's 1-minute load average as each run started
(``load_1min``: on a machine shared with other work the seconds stretch with it). Each
repeat uses a fresh output directory and no baseline cache, so nothing is reused between
repeats. Target: <= 10 s on a laptop-class CPU
(issue 24; the command reads the experiment and data and formats the plan while Ray
starts, ``search/run/_start.py``). After that, the first result waits on the first trial's
own process, which Ray starts for each Tune trial's actor (Tune gives it a runtime env, so
Ray never hands it an idle worker started in advance): Ray's worker and Tune, torch, this
project, torch's compiler stack (imported by any ``torch.optim`` optimizer), then its first
epoch and validation.

``--baseline-dir``: a checkout of another revision (e.g. the one before a change); each
repeat then runs it too, right before this one, in the same conditions (its own code on
``PYTHONPATH``, Ray's workers included), and the JSON records both medians and the
ratio, which stays meaningful on a machine other work slows down.
Writes ``bench/results/time_to_first.json``.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, write_result

MILESTONES = {
    "data_loaded": "Ray:",  # printed once the data is loaded (and the plan formatted) and Ray is up
    "first_result": "epoch 1/",
}
TARGET_S = 10.0


def one_run(experiment: Path, num_cpus: int | None, code: Path | None = None) -> dict[str, float]:
    """One timed run; ``code``: run that checkout's code instead of this one's."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "search.cli", "run", str(experiment), "--out", f"{tmp}/run", "--no-cache"]
        if num_cpus:
            command += ["--num-cpus", str(num_cpus)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        load_before = os.getloadavg()[0]  # other work on the machine: a reading of a shared machine needs it
        start = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env=env, cwd=code,
        )
        times: dict[str, float] = {}
        lines: list[str] = []
        try:
            for line in process.stdout:
                lines.append(line)
                now = time.perf_counter() - start
                if line.startswith("Loading"):
                    times.setdefault("started", now)
                for name, marker in MILESTONES.items():
                    if marker in line:
                        times.setdefault(name, now)
                if "first_result" in times:
                    break
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        if "first_result" not in times:
            raise SystemExit("The run ended without a result:\n" + "".join(lines[-30:]))
        return {**times, "load_1min": load_before}


def _line(run: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in run.items() if k != "load_1min") + f" (load {run['load_1min']:.1f})"


def _revision(code: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "load_1min"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=Path("examples/quickstart.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--baseline-dir", type=Path, help="a checkout of the revision to compare with, run alternately")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    runs: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    for i in range(args.repeats):
        if args.baseline_dir is not None:
            baseline.append(one_run(args.experiment.resolve(), args.num_cpus, args.baseline_dir.resolve()))
            print(f"baseline run {i + 1}: " + _line(baseline[-1]), flush=True)
        runs.append(one_run(args.experiment.resolve(), args.num_cpus))
        print(f"run {i + 1}: " + _line(runs[-1]), flush=True)
    median = _median(runs)
    result: dict[str, Any] = {"benchmark": "time_to_first", **machine(), "experiment": str(args.experiment),
                              "revision": _revision(here), "runs": runs, "median_s": median, "target_s": TARGET_S}
    if baseline:
        before = _median(baseline)
        result["baseline"] = {"revision": _revision(args.baseline_dir), "runs": baseline, "median_s": before}
        result["ratio_first_result"] = median["first_result"] / before["first_result"]
        result["ratios_per_repeat"] = [r["first_result"] / b["first_result"] for r, b in zip(runs, baseline)]
        print(f"Baseline {result['baseline']['revision']}: first result {before['first_result']:.1f} s (median); "
              f"this revision {median['first_result']:.1f} s: ratio {result['ratio_first_result']:.2f}")
    print(f"Time to first result: {median['first_result']:.1f} s (median of {args.repeats}; "
          f"data loaded and Ray up at {median['data_loaded']:.1f} s); target {TARGET_S:g} s")
    print(f"Wrote {write_result('time_to_first', result)}")


if __name__ == "__main__":
    main()
