"""Does the pick hold up? The single-seed best against the confirmed pick, on fresh seeds.

    python -m bench.pick_holdup [--datasets multimnist digits4] [--seeds 5] [--before REV]

For each dataset, a search as a user runs it (default spaces, the confirmation phase
on): MultiMNIST with examples/quickstart.yaml, and the 4-task digits of
bench/_digits4.py (real digits as PNG + CSV: digit, parity, loops with ~10 % missing
labels, and a regression, ink). Then three configs are trained again, in this process,
with ``--seeds`` new seeds each (seeds no run used), against the run's own single-task
baseline:

- the **single-seed best**: the searched trial with the best Delta_m, what a pick from
  one run per config gives;
- the **confirmed pick**: the deploy candidate of the confirmation phase;
- the **no-search default**: everything shared, equal loss weights.

Reported: how often the single-seed best's advantage over single-task (its search
Delta_m > 0) survives on the new seeds (the share of seeds with Delta_m > 0, and the
mean against the claimed value), the same for the confirmed pick, and the confirmed
pick against the default over the same seeds (mean difference with a paired 95 %
interval). Also the median Delta_m of cross-stitch and hard-split trials of the search,
and, with ``--before REV`` (a git revision from before the fairness changes), the same
medians from that revision's search on the same data (run in a git worktree with its
own code; its defaults: independent alpha_diff, multiplier 1-1000 under Adam, raw
regression losses, constant learning rate).

Writes ``bench/results/pick_holdup.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from scipy import stats

import mtl_models as mm
import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
NEW_SEEDS_FROM = 1000


def dataset_experiment(name: str, work: Path) -> dict[str, Any]:
    if name == "multimnist":
        return yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    return digits4_experiment(
        work / "digits4-data",
        train={"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
        search={"num_trials": 16, "max_concurrent": 2, "sampler": {"name": "tpe", "n_startup_trials": 6},
                "pruner": {"name": "median", "n_startup_trials": 4, "n_warmup_steps": 2},
                "resources": {"cpu": 1, "gpu": 0}},
    )


def retrain(config: dict[str, Any], data: mm.MultiTaskData, seeds: list[int], baseline: dict[str, float],
            tasks: list[mm.TaskSpec]) -> list[float]:
    """Delta_m of ``config`` trained from scratch with each seed (the run's baseline)."""
    higher = {t.name: t.higher_is_better for t in tasks}
    out = []
    for seed in seeds:
        run = {**config, "seed": seed, "device": "cpu"}
        mm.seed_everything(seed)
        model = mm.build_model(run)
        if run.get("column_init") == "single_task":
            raise RuntimeError("single_task column init needs the run's checkpoints; not retrained here")
        trainer = mm.Trainer(model, data, run)
        while trainer.epoch < int(run["epochs"]):
            trainer.train_epoch()
        val = trainer.evaluate("val")
        out.append(mm.delta_m(mm.primary_metrics(model.tasks, val), baseline, higher))
    return out


def family_medians(results: pd.DataFrame) -> dict[str, Any]:
    done = results[(results["phase"] == "search") & (results["status"] == "finished")]
    out = {}
    for family, rows in done.groupby("family"):
        values = rows["delta_m"].dropna()
        out[family] = {"median": float(values.median()), "n": int(len(values)), "min": float(values.min()),
                       "collapsed_below_minus_20": int((values < -20).sum())}
    return out


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    diff = [x - y for x, y in zip(a, b)]
    mean = statistics.mean(diff)
    half = stats.t.ppf(0.975, len(diff) - 1) * statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else math.nan
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(diff)}


def survives(claimed: float, deltas: list[float]) -> dict[str, Any]:
    return {
        "claimed_delta_m": claimed,
        "retrained": deltas,
        "mean": statistics.mean(deltas),
        "std": statistics.stdev(deltas) if len(deltas) > 1 else None,
        "share_above_single_task": sum(d > 0 for d in deltas) / len(deltas),
    }


def run_dataset(name: str, work: Path, n_seeds: int) -> dict[str, Any]:
    doc = dataset_experiment(name, work)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    exp = spaces.load_experiment(path)
    run_dir = work / f"{name}-run"
    started = time.monotonic()
    if not (run_dir / reports.RESULTS_FILE).is_file():  # a finished run in --work is reused
        run_experiment(exp, run_dir, num_cpus=os.cpu_count(), cache_dir=None)
    search_seconds = time.monotonic() - started
    run = reports.load_run(run_dir, evaluate=False)
    tasks, results = run.tasks, run.results
    baseline = reports.single_task_baseline(results, tasks)
    data = exp.load_data()
    seeds = list(range(NEW_SEEDS_FROM, NEW_SEEDS_FROM + n_seeds))
    single_best = reports.best_trial(results)
    pick = run.pick
    default = results[(results["phase"] == "confirm") & (results["reference"] == "default")]
    configs = {
        "single_seed_best": (single_best, float(single_best["delta_m"])),
        "confirmed_pick": (pick.chosen, float(pick.chosen["delta_m"])) if pick.chosen is not None else None,
        "no_search_default": (default.iloc[0], float(default["delta_m"].mean())) if len(default) else None,
    }
    out: dict[str, Any] = {
        "search_wall_s": round(search_seconds, 1),
        "single_task_baseline": baseline,
        "single_task_seeds": pick.noise.seeds,
        "verdict": pick.sentences(reports.short_label),
        "family_medians": family_medians(results),
        "new_seeds": seeds,
    }
    retrained: dict[str, list[float]] = {}
    for label, entry in configs.items():
        if entry is None:
            continue
        row, claimed = entry
        config = json.loads(row["config"])
        started = time.monotonic()
        retrained[label] = retrain(config, data, seeds, baseline, tasks)
        out[label] = {"trial_id": row["trial_id"], "config": reports.short_label(row),
                      **survives(claimed, retrained[label]), "retrain_s": round(time.monotonic() - started, 1)}
        print(f"{name} {label}: {out[label]['config']}: claimed {claimed:+.2f}, new seeds "
              f"{out[label]['mean']:+.2f} ± {out[label]['std'] or 0:.2f}, "
              f"{out[label]['share_above_single_task']:.0%} above single-task", flush=True)
    if "confirmed_pick" in retrained and "no_search_default" in retrained:
        out["confirmed_pick_vs_default"] = paired(retrained["confirmed_pick"], retrained["no_search_default"])
    if "single_seed_best" in retrained and "no_search_default" in retrained:
        out["single_seed_best_vs_default"] = paired(retrained["single_seed_best"], retrained["no_search_default"])
    return out


def run_before(revision: str, name: str, work: Path) -> dict[str, Any]:
    """The same search with the code of ``revision`` (a git worktree), for the family medians."""
    work = work.resolve()
    tree = work / f"before-{revision[:8]}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True,
                       capture_output=True)
    if name == "multimnist":  # that revision's own quickstart (its space keys and defaults)
        doc = yaml.safe_load((tree / "examples" / "quickstart.yaml").read_text())
    else:
        doc = dataset_experiment(name, work)
    path = work / f"{name}-before.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out_dir = work / f"{name}-before-run"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "search.cli", "run", str(path), "--out", str(out_dir), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the search at {revision} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    results = pd.read_parquet(out_dir / "results.parquet")
    return {"revision": revision, "search_wall_s": round(time.monotonic() - started, 1),
            "family_medians": family_medians(results)}


def main() -> None:
    log_to_stdout()  # the runs' lines, as the CLI shows them
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["multimnist", "digits4"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--before", help="a git revision from before the fairness changes, e.g. 49c13a7")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = (args.work or Path(tempfile.mkdtemp(prefix="pick-holdup-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {**machine(), "seeds": args.seeds, "datasets": {}}
    for name in args.datasets:
        out["datasets"][name] = run_dataset(name, work, args.seeds)
        write_result("pick_holdup", out)  # as it goes: a long run keeps what it measured
        if args.before:
            out["datasets"][name]["before"] = run_before(args.before, name, work)
            write_result("pick_holdup", out)
    print(f"wrote {write_result('pick_holdup', out)}")


if __name__ == "__main__":
    main()
