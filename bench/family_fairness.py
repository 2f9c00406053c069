"""Is the family comparison fair? Hard split against cross-stitch, each sampled at random
from its default space on the 4-task digits, before and after the fairness changes.

    python -m bench.family_fairness [--trials 6] [--before 49c13a7]

A search's own comparison of families is confounded: TPE spends its trials where the
first ones scored well, so a family that starts badly is barely tried again. Here each
family gets ``--trials`` trials of its default space drawn by the random sampler (no
pruning, full budget, the same single-task baseline within a version), on
bench/_digits4.py's 4 tasks (a regression among them, missing labels). Reported per
family: the median Delta_m, its spread, and how many trials collapsed (Delta_m < -20).
With ``--before REV``, the same with the code of a revision from before the fairness
changes (convex rows, optimizer-aware unit learning rate, GradNorm's shared parameters,
regression losses in label units, the cosine schedule), in a git worktree.

Writes ``bench/results/family_fairness.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("hard_split", "cross_stitch")


def experiment(work: Path, trials: int) -> dict[str, Any]:
    return digits4_experiment(
        work / "digits4-data",
        train={"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
        search={"num_trials": trials * len(FAMILIES), "max_concurrent": 2, "sampler": {"name": "random", "seed": 0},
                "pruner": {"name": "nop"}, "resources": {"cpu": 1, "gpu": 0}},
        baselines={"ensemble": False},
    )


def summarise(results: pd.DataFrame) -> dict[str, Any]:
    done = results[(results["phase"] == "search") & (results["status"] == "finished")]
    out = {}
    for family, rows in done.groupby("family"):
        values = sorted(float(v) for v in rows["delta_m"].dropna())
        out[family] = {
            "median": statistics.median(values), "n": len(values), "values": values,
            "quartiles": statistics.quantiles(values, n=4) if len(values) > 1 else values,
            "collapsed_below_minus_20": sum(v < -20 for v in values),
        }
    return out


def run(code: Path, doc: dict[str, Any], out_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """A search with the code in ``code`` (a checkout), one family after the other."""
    per_family = {}
    started = time.monotonic()
    for family in FAMILIES:
        spec = {**doc, "name": f"fairness-{family}", "space": {**doc.get("space", {}), "families": [family]}, **extra}
        path = out_dir.parent / f"{out_dir.name}-{family}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        run_dir = out_dir.parent / f"{out_dir.name}-{family}"
        if not (run_dir / "results.parquet").is_file():
            proc = subprocess.run(
                [sys.executable, "-m", "search.cli", "run", str(path), "--out", str(run_dir), "--no-cache"],
                cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"search failed in {code}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        per_family.update(summarise(pd.read_parquet(run_dir / "results.parquet")))
    return {"families": per_family, "wall_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per family")
    parser.add_argument("--before", help="a git revision from before the fairness changes, e.g. 49c13a7")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="fairness-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    doc = experiment(work, args.trials)
    out: dict[str, Any] = {**machine(), "trials_per_family": args.trials, "epochs": doc["train"]["epochs"]}
    out["after"] = run(ROOT, doc, work / "after", {"confirm": {"top_k": 0}})
    write_result("family_fairness", out)
    if args.before:
        tree = work / f"before-{args.before[:8]}"
        if not tree.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True,
                           capture_output=True)
        out["before"] = {"revision": args.before, **run(tree, doc, work / "before", {})}
    for version in ("after", "before"):
        for family, s in (out.get(version) or {}).get("families", {}).items():
            print(f"{version:6} {family:13} median {s['median']:+8.2f}  quartiles {[round(q, 2) for q in s['quartiles']]}"
                  f"  collapsed {s['collapsed_below_minus_20']}/{s['n']}")
    print(f"wrote {write_result('family_fairness', out)}")


if __name__ == "__main__":
    main()
