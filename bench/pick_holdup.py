"""Does the pick hold up? The top single-seed results on new seeds, judged on test, and the pick.

    python -m bench.pick_holdup [--datasets multimnist digits4] [--seeds 5] [--top 5] [--before REV]

For each dataset, a search as a user runs it, **from scratch** in a new directory (no
earlier run is reused; the git revision is recorded): MultiMNIST with
examples/quickstart.yaml made smaller to fit the benchmark's budget (see ``SIZE``), and
the 4-task digits of bench/_digits4.py (real digits as PNG + CSV: digit, parity, loops
with ~10 % missing labels, and a regression, ink). The confirmation phase is widened to
the ``--top`` best single-seed configs (``confirm.top_k``) and the no-search default,
``--seeds`` new seeds each (seeds the search did not train that config with), and the
single-task baseline is trained with seeds that cover those, so comparisons pair.

The report's evaluation (``reports.load_run``) then measures every confirmation run and
every single-task seed on the **test** split, which neither the search nor the pick saw.
Reported per dataset:

- for each of the top single-seed configs: its search (validation, one seed) Delta_m,
  whether it claimed an advantage over single-task (> 0), its test Delta_m on the new
  seeds (each, the mean, the share > 0, and the mean's 95 % interval paired with the
  single-task seeds), and whether the advantage *survives* (the interval above 0); the
  rate among those that claimed one;
- the confirmed pick (chosen on the new seeds' validation means, as the product does):
  its test Delta_m against single-task and against the no-search default, both paired
  over the seeds they share (``scipy.stats.ttest_rel`` interval), and the product's
  own verdict sentences (test split, Bonferroni over the k confirmed configs);
- the median Delta_m of each family in the search; with ``--before REV``, the same medians
  from that revision's search on the same data.

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

import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
# Sized for about 20 minutes for both datasets on 2 CPU cores shared with other jobs:
# MultiMNIST at a third of the quickstart's training rows (1000, validation 500, test
# 1000), 3 epochs instead of 5, 8 trials instead of 12; digits4 at 5 epochs and 10 trials
# (the earlier bench: 8 epochs, 16 trials). The confirmation phase is what it must be:
# the top 5 and the default, 5 new seeds each.
SIZE = {
    "multimnist": {"data": {"n_train": 1000, "n_val": 500, "n_test": 1000}, "train": {"epochs": 3},
                   "search": {"num_trials": 8, "sampler": {"name": "tpe", "n_startup_trials": 4}}},
    "digits4": {},
}


def revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _merge(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for key, value in changes.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) and key != "sampler" else value
    return out


def dataset_experiment(name: str, work: Path, top: int, seeds: int) -> dict[str, Any]:
    if name == "multimnist":
        doc = _merge(yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text()), SIZE["multimnist"])
    else:
        doc = digits4_experiment(
            work / "digits4-data",
            train={"epochs": 5, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
            search={"num_trials": 10, "max_concurrent": 2, "sampler": {"name": "tpe", "n_startup_trials": 5},
                    "pruner": {"name": "median", "n_startup_trials": 4, "n_warmup_steps": 2},
                    "resources": {"cpu": 1, "gpu": 0}},
        )
    # single-task seeds seed .. seed+seeds+1: they cover the confirmation's fresh seeds (seed+1 ...), so pairs line up
    return {**doc, "confirm": {"top_k": top, "seeds": seeds, "default": True},
            "baselines": {**(doc.get("baselines") or {}), "seeds": seeds + 2, "ensemble": True}}


def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Mean difference ``a - b`` over the seeds both have, with the ttest_rel 95 % interval."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return {"n": len(common), "mean": None, "low": None, "high": None, "seeds": common}
    x, y = [a[s] for s in common], [b[s] for s in common]
    ci = stats.ttest_rel(x, y).confidence_interval(0.95)
    return {"n": len(common), "seeds": common, "mean": statistics.mean(x) - statistics.mean(y),
            "low": float(ci.low), "high": float(ci.high)}


def family_medians(results: pd.DataFrame) -> dict[str, Any]:
    done = results[(results["phase"] == "search") & (results["status"] == "finished")]
    out = {}
    for family, rows in done.groupby("family"):
        values = rows["delta_m"].dropna()
        out[family] = {"median": float(values.median()), "n": int(len(values)), "min": float(values.min()),
                       "collapsed_below_minus_20": int((values < -20).sum())}
    return out


def single_task_by_seed(results: pd.DataFrame, tasks: list, split: str) -> dict[int, float]:
    """Delta_m of each single-task seed on ``split`` (each task's term against the seeds' mean)."""
    noise = reports.BaselineNoise(results, tasks, split)
    out = {}
    seeds = set.intersection(*(set(noise.by_seed.get(t.name, {})) for t in tasks))
    for seed in seeds:
        out[seed] = statistics.mean(noise.term(t, noise.by_seed[t.name][seed]) for t in tasks)
    return out


def run_dataset(name: str, work: Path, n_seeds: int, top: int) -> dict[str, Any]:
    doc = dataset_experiment(name, work, top, n_seeds)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    exp = spaces.load_experiment(path)
    run_dir = work / f"{name}-run"
    if run_dir.exists():
        raise RuntimeError(f"{run_dir} exists: the benchmark runs every search from scratch (give a new --work).")
    started = time.monotonic()
    run_experiment(exp, run_dir, num_cpus=os.cpu_count(), cache_dir=None)
    search_seconds = time.monotonic() - started
    out = analyse(run_dir, doc, top, name)
    out["search_and_confirm_wall_s"] = round(search_seconds, 1)
    return out


def analyse(run_dir: Path, doc: dict[str, Any], top: int, name: str = "") -> dict[str, Any]:
    """The figures of a finished run (its test evaluation made here, cached in the run)."""
    started = time.monotonic()
    run = reports.load_run(run_dir, evaluate=True)  # every confirmation run and baseline seed on test, cached
    evaluate_seconds = time.monotonic() - started
    tasks, results, pick = run.tasks, run.results, run.pick
    search = results[(results["phase"] == "search") & (results["status"] == "finished")]
    confirm = results[(results["phase"] == "confirm") & (results["status"] == "finished")]
    single_test = single_task_by_seed(results, tasks, "test")
    out: dict[str, Any] = {
        "experiment": {k: doc[k] for k in ("data", "train", "search", "baselines", "confirm") if k in doc},
        "test_evaluation_wall_s": round(evaluate_seconds, 1),
        "trials": {phase: int((results["phase"] == phase).sum()) for phase in ("baselines", "search", "confirm")},
        "pruned_in_search": int((results[results["phase"] == "search"]["status"] == "pruned").sum()),
        "verdict_split": pick.split,
        "k_confirmed_configs": pick.k,
        "bonferroni_level": pick.level,
        "verdict": pick.sentences(reports.short_label),
        "single_task_seeds": pick.noise.seeds,
        "family_medians": family_medians(results),
    }
    score = search.groupby("config_key")["delta_m"].mean().sort_values(ascending=False)
    rows = []
    for rank, (key, claimed) in enumerate(score.head(top).items(), 1):
        runs = confirm[(confirm["config_key"] == key)]
        by_seed = {int(s): float(d) for s, d in zip(runs["seed"], runs["test_delta_m"]) if not pd.isna(d)}
        vs_single = paired(by_seed, single_test)
        entry = {
            "rank": rank, "config_key": key,
            "config": reports.short_label(search[search["config_key"] == key].iloc[0]),
            "search_delta_m_val_one_seed": float(claimed),
            "claimed_advantage": bool(claimed > 0),
            "new_seeds": sorted(by_seed),
            "test_delta_m": [by_seed[s] for s in sorted(by_seed)],
            "test_mean": statistics.mean(by_seed.values()) if by_seed else None,
            "test_share_above_single_task": sum(v > 0 for v in by_seed.values()) / len(by_seed) if by_seed else None,
            "test_vs_single_task_paired": vs_single,
            "survives": bool(vs_single["low"] is not None and vs_single["low"] > 0),
        }
        rows.append(entry)
        print(f"{name} #{rank} {entry['config']}: search {claimed:+.2f} (val, 1 seed) -> test "
              f"{entry['test_mean'] if entry['test_mean'] is not None else float('nan'):+.2f} over {len(by_seed)} new "
              f"seeds, paired vs single [{vs_single['low']}, {vs_single['high']}]", flush=True)
    claimed = [r for r in rows if r["claimed_advantage"]]
    out["top_single_seed"] = rows
    out["advantage_survival"] = {
        "claimed": len(claimed), "survived": sum(r["survives"] for r in claimed),
        "rate": (sum(r["survives"] for r in claimed) / len(claimed)) if claimed else None,
        "rule": "claimed: search Delta_m (validation, one seed) > 0; survived: the mean test Delta_m over the new "
                "seeds has a paired 95 % interval against the single-task seeds entirely above 0",
    }
    default = confirm[confirm["reference"] == "default"] if "reference" in confirm else confirm.iloc[0:0]
    default_test = {int(s): float(d) for s, d in zip(default["seed"], default["test_delta_m"]) if not pd.isna(d)}
    if pick.chosen is not None:
        runs = confirm[confirm["config_key"] == pick.chosen["config_key"]]
        pick_test = {int(s): float(d) for s, d in zip(runs["seed"], runs["test_delta_m"]) if not pd.isna(d)}
        out["confirmed_pick"] = {
            "config": reports.short_label(pick.chosen),
            "is_default": pick.chosen.get("reference") == "default",
            "selection_val_delta_m": pick.chosen["estimates"]["delta_m"].as_dict(),
            "product_test_estimates": {k: v.as_dict() for k, v in pick.judged().items()},
            "test_delta_m_by_seed": pick_test,
            "test_vs_single_task_paired": paired(pick_test, single_test),
            "test_vs_no_search_default_paired": paired(pick_test, default_test),
            "exported_run": pick.chosen["trial_id"],
        }
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
        doc = dataset_experiment(name, work, 5, 5)
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
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--before", help="a git revision from before the fairness changes, e.g. 49c13a7")
    parser.add_argument("--work", type=Path, default=None, help="a new directory (default: a fresh temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = (args.work or Path(tempfile.mkdtemp(prefix="pick-holdup-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    out: dict[str, Any] = {**machine(), "revision": revision(), "seeds": args.seeds, "top": args.top, "datasets": {}}
    for name in args.datasets:
        out["datasets"][name] = run_dataset(name, work, args.seeds, args.top)
        out["wall_s"] = round(time.monotonic() - started, 1)
        write_result("pick_holdup", out)  # as it goes: a long run keeps what it measured
        if args.before:
            out["datasets"][name]["before"] = run_before(args.before, name, work)
            write_result("pick_holdup", out)
    print(f"wrote {write_result('pick_holdup', out)}")


if __name__ == "__main__":
    main()
