"""Families, loss weightings and aggregators, and the task-affinity tree, at equal trial-epochs.

    python -m bench.beyond [--datasets multimnist digits4] [--trials 6] [--seeds 3] [--work DIR]

For each dataset (MultiMNIST as in examples/quickstart.yaml; the 4-task digits of
bench/_digits4.py, a regression and missing labels among them):

- **Families**: one search per family (hard split, cross-stitch, MTAN), each the
  same ``--trials`` trials of its default space drawn by the random sampler (no
  pruning, every trial the full epochs: equal trial-epochs; TPE would spend its
  trials where the first ones scored well), no confirmation phase, the single-task
  baseline (3 seeds) trained once and shared. The family's best trial is then trained
  again with ``--seeds`` new seeds: its Delta_m mean and spread.
- **Weightings**: the hard-split family's best config with each loss weighting or
  gradient aggregator in its place (equal static weights for ``static``, each
  scheme's default parameters), ``--seeds`` new seeds each, the same seeds for all:
  Delta_m mean and spread, and the paired difference to static.
- **Affinity tree**: TAG's lookahead affinity measured on the fully shared network (2
  epochs, as ``mtlsearch affinity`` does by default); its best-scoring proposed tree
  replaces the hard-split best's tree, trained with the same new seeds, and is compared
  with the best family's retrained best (Welch 95 % interval of the difference:
  "within noise" when it covers 0) and, paired by seed, with the tree it replaced.

Retrains run in this process (one trainer at a time, 2 threads), with the run's own
single-task baseline. Writes ``bench/results/beyond.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from scipy import stats

import mtl_models as mm
from mtl_models._affinity import measure_affinity
import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from bench.pick_holdup import paired, retrain
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
NEW_SEEDS_FROM = 2000
FAMILIES = ("hard_split", "cross_stitch", "mtan")
SCHEMES = ("static", "uncertainty", "dwa", "gradnorm", "upgrad", "pcgrad", "cagrad", "mgda", "imtlg",
           "aligned_mtl", "nash_mtl")


def dataset_experiment(name: str, work: Path, trials: int) -> dict[str, Any]:
    search = {"num_trials": trials, "max_concurrent": 2, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "nop"}, "resources": {"cpu": 1, "gpu": 0}}
    common = {"search": search, "baselines": {"seeds": 3, "ensemble": False}, "confirm": {"top_k": 0}}
    if name == "multimnist":
        doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
        return {**doc, **common}
    return digits4_experiment(
        work / "digits4-data",
        train={"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
        space={"split_point": {"low": 0, "high": 4}, "alpha_same": {"low": 0.5, "high": 1.0}, "alpha_diff": "convex",
               "lr_multiplier": "auto", "loss_weights": "simplex"},
        **common,
    )


def spread(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def welch(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of ``a`` - ``b`` with a Welch 95 % interval."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else 1.0
    diff = statistics.mean(a) - statistics.mean(b)
    half = stats.t.ppf(0.975, dof) * se
    return {"mean": diff, "low": diff - half, "high": diff + half}


def run_dataset(name: str, work: Path, trials: int, n_seeds: int) -> dict[str, Any]:
    doc = dataset_experiment(name, work, trials)
    seeds = list(range(NEW_SEEDS_FROM, NEW_SEEDS_FROM + n_seeds))
    cache = work / "cache"
    out: dict[str, Any] = {"trials_per_family": trials, "epochs_per_trial": doc["train"]["epochs"], "new_seeds": seeds,
                           "families": {}, "weightings": {}}
    best_rows = {}
    for family in FAMILIES:
        spec = {**doc, "name": f"beyond-{name}-{family}", "space": {**doc.get("space", {}), "families": [family]}}
        path = work / f"{name}-{family}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        run_dir = work / f"{name}-{family}-run"
        started = time.monotonic()
        if not (run_dir / reports.RESULTS_FILE).is_file():  # a finished run in --work is reused
            run_experiment(spaces.load_experiment(path), run_dir, num_cpus=os.cpu_count(), cache_dir=cache)
        run = reports.load_run(run_dir, evaluate=False)
        searched = run.results[(run.results["phase"] == "search") & (run.results["status"] == "finished")]
        best_rows[family] = reports.best_trial(run.results)
        out["families"][family] = {
            "search_wall_s": round(time.monotonic() - started, 1),
            "finished": int(len(searched)),
            "search_delta_m": sorted(float(v) for v in searched["delta_m"].dropna()),
            "best_config": reports.short_label(best_rows[family]),
            "best_search_delta_m": float(best_rows[family]["delta_m"]),
        }
    exp = spaces.load_experiment(work / f"{name}-hard_split.yaml")
    data = exp.load_data()
    run = reports.load_run(work / f"{name}-hard_split-run", evaluate=False)
    tasks = run.tasks
    baseline = reports.single_task_baseline(run.results, tasks)
    out["single_task_baseline"] = baseline
    out["single_task_noise"] = run.pick.noise.seeds if run.pick is not None else None

    retrained: dict[str, list[float]] = {}
    for family, row in best_rows.items():
        retrained[family] = retrain(json.loads(row["config"]), data, seeds, baseline, tasks)
        out["families"][family]["retrained"] = spread(retrained[family])
        print(f"{name} {family:12} best {out['families'][family]['best_config']}: search "
              f"{out['families'][family]['best_search_delta_m']:+.2f}, new seeds {statistics.mean(retrained[family]):+.2f}"
              f" ± {statistics.stdev(retrained[family]):.2f}", flush=True)

    template = json.loads(best_rows["hard_split"]["config"])
    equal = {t.name: 1.0 / len(tasks) for t in tasks}
    per_scheme: dict[str, list[float]] = {}
    for scheme in SCHEMES:
        started = time.monotonic()
        config = {**template, "loss_weighting": scheme, "loss_weights": equal}
        per_scheme[scheme] = retrain(config, data, seeds, baseline, tasks)
        out["weightings"][scheme] = {**spread(per_scheme[scheme]), "retrain_s": round(time.monotonic() - started, 1)}
        if scheme != "static":
            out["weightings"][scheme]["vs_static_paired"] = paired(per_scheme[scheme], per_scheme["static"])
        print(f"{name} {scheme:12} {statistics.mean(per_scheme[scheme]):+.2f} ± {statistics.stdev(per_scheme[scheme]):.2f}"
              f"  ({time.monotonic() - started:.0f}s)", flush=True)
    out["weightings_architecture"] = reports.short_label(best_rows["hard_split"])

    started = time.monotonic()
    mm.seed_everything(0)
    affinity = measure_affinity({**template, "seed": 0}, data, epochs=2, every=5)
    tree = affinity.trees[0]
    config = {**template, "tree": "affinity", "branches": tree["branches"], "split_point": None, "split_points": None,
              "task_groups": None}
    tree_deltas = retrain(config, data, seeds, baseline, tasks)
    best_family = max(retrained, key=lambda f: statistics.mean(retrained[f]))
    versus = welch(tree_deltas, retrained[best_family])
    out["affinity"] = {
        "measure_epochs": 2, "steps_measured": affinity.steps, "affinity": affinity.affinity, "stages": affinity.stages,
        "tree": tree, "proposed": affinity.trees, "retrained": spread(tree_deltas),
        "best_family": best_family, "vs_best_welch": versus, "within_noise": versus["low"] <= 0 <= versus["high"],
        "vs_hard_split_best_paired": paired(tree_deltas, retrained["hard_split"]),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"{name} affinity tree {tree['name']} {tree['branches']}: {statistics.mean(tree_deltas):+.2f} ± "
          f"{statistics.stdev(tree_deltas):.2f}; vs best ({best_family}) {versus['mean']:+.2f} "
          f"[{versus['low']:+.2f}, {versus['high']:+.2f}]", flush=True)
    return out


def main() -> None:
    log_to_stdout()  # the runs' lines, as the CLI shows them
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["multimnist", "digits4"], choices=["multimnist", "digits4"])
    parser.add_argument("--trials", type=int, default=6, help="random trials per family")
    parser.add_argument("--seeds", type=int, default=3, help="new seeds per retrained config")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (a finished run is reused)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = (args.work or Path(tempfile.mkdtemp(prefix="beyond-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {**machine(), "datasets": {}}
    for name in args.datasets:
        started = time.monotonic()
        out["datasets"][name] = run_dataset(name, work, args.trials, args.seeds)
        out["datasets"][name]["wall_s"] = round(time.monotonic() - started, 1)
        write_result("beyond", out)
    print(f"wrote {write_result('beyond', out)}")


if __name__ == "__main__":
    main()
