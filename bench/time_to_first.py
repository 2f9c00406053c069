"""Benchmark 4, time to first result: from typing ``mtlsearch run`` to the first trial's
first reported epoch.

    python -m bench.time_to_first [--experiment examples/quickstart.yaml] [--repeats 3]

Runs the real command in a subprocess (fresh interpreter, a local Ray started by the
command itself), timestamps each line it prints and stops it after the first result.
Records when the data was loaded, when Ray was up and when the first epoch of the
first trial was reported. Each repeat uses a fresh output directory and no baseline
cache, so nothing is reused between repeats. Target: <= 15 s on a laptop-class CPU.
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
    "data_loaded": "Ray:",  # printed right after init_ray, which follows data loading
    "first_result": "epoch 1/",
}


def one_run(experiment: Path, num_cpus: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "search.cli", "run", str(experiment), "--out", f"{tmp}/run", "--no-cache"]
        if num_cpus:
            command += ["--num-cpus", str(num_cpus)]
        start = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=Path("examples/quickstart.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    for i in range(args.repeats):
        runs.append(one_run(args.experiment.resolve(), args.num_cpus))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in runs[-1].items()), flush=True)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {"benchmark": "time_to_first", **machine(), "experiment": str(args.experiment), "runs": runs,
              "median_s": median, "target_s": 15.0}
    print(f"Time to first result: {median['first_result']:.1f} s (median of {args.repeats}; "
          f"data loaded and Ray up at {median['data_loaded']:.1f} s); target 15 s")
    print(f"Wrote {write_result('time_to_first', result)}")


if __name__ == "__main__":
    main()
