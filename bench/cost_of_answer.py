"""Benchmark: the cost of an answer, before and after joint baselines and answered configs (issue 24).

    python -m bench.cost_of_answer [--before REV] [--skip-runs] [--tasks 2 4 8 16]

Two parts:

1. **Before / after.** The quickstart and the 4-task digits set (``bench/_digits4.py``: a
   regression and missing labels), shrunk to fit a loaded 2-core machine (see
   ``SHRINK``), each run with ``mtlsearch run`` twice in a fresh interpreter: once from a
   clone of revision ``--before`` (default 804b194, the revision before issue 24) made
   in a temporary folder, once from this checkout. Recorded per run: Tune trials per
   phase (trials trained and trials answered without training: ``answered_from``), the
   wall time per phase (from the time-stamped progress lines: a phase runs from the end
   of the one before, or Ray's start, to its last line) and the verdict (the pick and
   its Delta_m interval on the judging split; "unchanged" means the same config or one
   whose judged interval holds the other's mean).
2. **Scaling.** Generated data with T = 2, 4, 8, 16 classification tasks (random 8x8
   images, each task a different random linear rule), in this process: the baselines
   phase with ``baselines.columns: joint`` and ``separate`` (Tune trials, wall: first
   trial start to last trial end), and with joint baselines a 3-trial search over hard
   splits at the baselines' settings, k=0 tried first (trials answered without training).

Wall times on a machine other work loads are indicative; the trial counts are the point.
Writes ``bench/results/cost_of_answer.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench._common import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "804b194"
PHASES = ("baselines", "search", "confirm")
# small enough for a loaded 2-core machine; the same for before and after
SHRINK = {
    "quickstart": {"data": {"n_train": 1200, "n_val": 400, "n_test": 400}, "train": {"epochs": 3},
                   "search": {"num_trials": 8, "sampler": {"name": "tpe", "n_startup_trials": 4}},
                   "confirm": {"top_k": 2, "seeds": 2}},
    "digits4": {"train": {"epochs": 4}, "search": {"num_trials": 8, "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0},
                                                   "sampler": {"name": "tpe", "n_startup_trials": 4}},
                "space": {"families": ["hard_split", "cross_stitch"], "split_point": {"low": 0, "high": 4},
                          "loss_weights": "simplex"},
                "baselines": {"seeds": 2, "ensemble": True, "ensemble_size": 2},
                "confirm": {"top_k": 2, "seeds": 2}},
}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "sampler" else value
    return out


def experiments(work: Path) -> dict[str, Path]:
    from bench._digits4 import experiment as digits4

    quick = _merge(yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text()), SHRINK["quickstart"])
    four = _merge(digits4(work / "digits4"), SHRINK["digits4"])
    out = {}
    for name, doc in (("quickstart", quick), ("digits4", four)):
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        out[name] = path
    return out


def clone(revision: str, where: Path) -> Path:
    if not (where / ".git").exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "checkout", "-q", revision], check=True)
    return where


def run_cli(repo: Path, experiment: Path, out: Path, extra: tuple[str, ...] = ("--no-cache", "--num-cpus", "2"),
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """``mtlsearch run`` from ``repo``'s code (first on the path), time-stamping every line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(repo), **(env or {})}
    command = [sys.executable, "-m", "search.cli", "run", str(experiment), "--out", str(out), *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    for line in process.stdout:
        lines.append((time.perf_counter() - start, line.rstrip()))
    process.wait()
    total = time.perf_counter() - start
    if process.returncode:
        tail = "\n".join(l for _, l in lines[-30:])
        raise RuntimeError(f"mtlsearch run failed in {repo}:\n{tail}")
    return {"lines": lines, "total_s": total}


def phase_walls(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    ray_up = next((t for t, line in lines if line.startswith("Ray:")), 0.0)
    last: dict[str, float] = {}
    for t, line in lines:
        match = re.match(r"\[(baselines|search|confirm) ", line)
        if match:
            last[match.group(1)] = t
    out, previous = {"startup_s": round(ray_up, 1)}, ray_up
    for phase in PHASES:
        if phase in last:
            out[f"{phase}_s"] = round(last[phase] - previous, 1)
            previous = last[phase]
    out["report_and_rest_s"] = round(total - previous, 1)
    out["total_s"] = round(total, 1)
    return out


def trial_counts(run_dir: Path) -> dict[str, Any]:
    from ray.tune import ExperimentAnalysis

    import pandas as pd

    results = pd.read_parquet(run_dir / "results.parquet")
    out: dict[str, Any] = {}
    for phase in PHASES:
        path = run_dir / phase
        tune_trials = len(ExperimentAnalysis(str(path)).trials) if path.is_dir() else 0
        rows = results[results["phase"] == phase]
        answered = int(rows["answered_from"].notna().sum()) if "answered_from" in rows else 0
        out[phase] = {"tune_trials": tune_trials, "trained": tune_trials - answered, "answered": answered,
                      "rows": int(len(rows[rows["family"] != "ensemble"]))}
    return out


def verdict(run_dir: Path) -> dict[str, Any]:
    import mtl_models as mm
    import reports

    run = reports.load_run(run_dir)
    pick = run.pick
    if pick.chosen is None:
        return {"pick": None, "sentences": pick.sentences(lambda row: "")}
    row = pick.chosen
    rows = run.results[run.results["config_key"] == row["config_key"]]
    config = json.loads(rows["config"].iloc[0])
    judged = pick.judged().get("delta_m")
    describe = lambda r: mm.describe_config(json.loads(run.results.loc[run.results["config_key"] == r["config_key"], "config"].iloc[0]))  # noqa: E731
    return {
        "pick": mm.describe_config(config),
        "config_key": row["config_key"],
        "split": pick.split,
        "delta_m": None if judged is None else judged.as_dict(),
        "sentences": pick.sentences(describe),
    }


def before_after(before: str, work: Path, names: list[str]) -> dict[str, Any]:
    paths = {name: path for name, path in experiments(work).items() if name in names}
    repos = {"before": clone(before, work / "before"), "after": ROOT}
    out: dict[str, Any] = {}
    for name, path in paths.items():
        out[name] = {"experiment": yaml.safe_load(path.read_text())}
        for label, repo in repos.items():
            run_dir = work / f"{name}-{label}"
            print(f"[cost_of_answer] {name} {label} ({repo}) ...", flush=True)
            ran = run_cli(repo, path, run_dir)
            out[name][label] = {
                "load_average": os.getloadavg(),  # at the end of the run: how loaded the machine was
                "revision": subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip(),
                "trials": trial_counts(run_dir),
                "wall": phase_walls(ran["lines"], ran["total_s"]),
                "verdict": verdict(run_dir),
            }
            print(json.dumps(out[name][label]["trials"]), json.dumps(out[name][label]["wall"]), flush=True)
        b, a = out[name]["before"]["verdict"], out[name]["after"]["verdict"]
        out[name]["verdict_unchanged"] = _same_verdict(b, a)
    return out


def _same_verdict(b: dict[str, Any], a: dict[str, Any]) -> bool | None:
    """The same pick, or each pick's mean within the other's judged interval."""
    if b.get("pick") is None or a.get("pick") is None:
        return b.get("pick") == a.get("pick")
    if b["config_key"] == a["config_key"] or b["pick"] == a["pick"]:
        return True
    bd, ad = b.get("delta_m") or {}, a.get("delta_m") or {}
    try:
        return bool(bd["low"] <= ad["mean"] <= bd["high"] or ad["low"] <= bd["mean"] <= ad["high"])
    except KeyError:
        return None


# --- scaling: T tasks on generated data ----------------------------------------------------------

SOURCE = "bench_linear_tasks"


def _register_source() -> None:
    import torch

    import mtl_models as mm
    from mtl_models.data import register_source

    if SOURCE in mm.available_sources():
        return

    @register_source(SOURCE)
    def linear_tasks(tasks: list[mm.TaskSpec], n_train: int = 256, n_val: int = 128, seed: int = 0) -> mm.MultiTaskData:
        """Random 8x8 grey images; task t's class is the argmax of its own random linear map."""
        g = torch.Generator().manual_seed(seed)
        rules = {t.name: torch.randn(64, t.classes, generator=g) for t in tasks}
        splits = {}
        for name, n in (("train", n_train), ("val", n_val)):
            images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
            flat = images.float().flatten(1) / 255.0 - 0.5
            splits[name] = mm.Split(images, {t: (flat @ w).argmax(1) for t, w in rules.items()})
        return mm.MultiTaskData(list(tasks), splits, description=f"{len(tasks)} linear tasks")


def scaling(task_counts: list[int], work: Path) -> dict[str, Any]:
    import pandas as pd

    import spaces
    from search import init_ray, run_experiment

    _register_source()
    init_ray(num_cpus=2)
    out: dict[str, Any] = {}
    for T in task_counts:
        tasks = [{"name": f"t{i:02d}", "kind": "classification", "classes": 3} for i in range(T)]
        for columns in ("joint", "separate"):
            doc = {
                "name": f"scale{T}", "seed": 0,
                "data": {"source": SOURCE, "n_train": 256, "n_val": 128},
                "tasks": tasks,
                "backbone": {"name": "small_cnn", "options": {"widths": [8, 8]}},
                "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
                # hard splits at the baselines' settings: the k=0 ones are the baselines
                "space": {"families": ["hard_split"], "tree": "single", "split_point": {"low": 0, "high": 2},
                          "loss_weights": "simplex"},
                # separate: only the baselines matter (one searched trial, the run needs one)
                "search": {"num_trials": 3 if columns == "joint" else 1, "max_concurrent": 2, "pruner": {"name": "nop"},
                           "points_to_evaluate": [{"family": "hard_split", "split_point": 0}]},
                "baselines": {"seeds": 2, "ensemble": False, "columns": columns},
                "confirm": {"top_k": 0},
            }
            path = work / f"scale{T}-{columns}.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            print(f"[cost_of_answer] scaling T={T} {columns} ...", flush=True)
            started = time.perf_counter()
            result = run_experiment(spaces.load_experiment(path), work / f"scale{T}-{columns}", cache_dir=None)
            total = time.perf_counter() - started
            counts = trial_counts(result.run_dir)
            curves = pd.read_parquet(result.run_dir / "curves.parquet")
            out.setdefault(str(T), {})[columns] = {
                "baseline_trials": counts["baselines"]["tune_trials"],
                "baseline_wall_s": round(_phase_span(curves, "baselines"), 1),
                "search_trials": counts["search"]["tune_trials"],
                "answered_without_training": counts["search"]["answered"],
                "run_wall_s": round(total, 1),
                "load_average": os.getloadavg(),
            }
            print(json.dumps(out[str(T)][columns]), flush=True)
    return out


def _phase_span(curves: Any, phase: str) -> float:
    """First trial start to last trial end of a phase, from the per-epoch timestamps."""
    rows = curves[curves["phase"] == phase]
    if rows.empty:
        return 0.0
    starts = rows.groupby("trial_id").apply(lambda r: r["timestamp"].min() - (r["time_total_s"].min()))
    return float(rows["timestamp"].max() - starts.min())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--tasks", type=int, nargs="*", default=[2, 4, 8, 16])
    parser.add_argument("--skip-runs", action="store_true", help="only the scaling part")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--work", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--datasets", nargs="*", default=list(SHRINK),
                        help="the before/after runs to make; the others are kept from the last result file")
    args = parser.parse_args(argv)
    last = Path(__file__).resolve().parent / "results" / "cost_of_answer.json"
    previous = json.loads(last.read_text()) if last.is_file() else {}
    result: dict[str, Any] = {**previous, **machine(), "shrunk": SHRINK,
                              "note": "2 CPU cores shared with other work: wall times indicative only; trial counts are exact"}
    result["revision_after"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                              capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_scaling:
            result["scaling"] = scaling(args.tasks, work)
            write_result("cost_of_answer", result)
        if not args.skip_runs:
            result["before_after"] = {**previous.get("before_after", {}), **before_after(args.before, work, args.datasets)}
    print(write_result("cost_of_answer", result))


if __name__ == "__main__":
    main()
