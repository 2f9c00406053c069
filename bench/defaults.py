"""The minimal experiment file against the hand-written full space, at equal compute.

    python -m bench.defaults [--datasets quickstart digits4 planted] [--arms minimal full] [--seeds 3] [--work DIR]

For each dataset, searches that differ only in what the file says about the space:

- **minimal**: the file gives data, tasks, backbone (and the training budget, the
  baselines' seeds and the confirmation phase's size, the same in every arm); the space,
  the trial budget, TPE's startup and the affinity stage are the defaults
  (``spaces._defaults``: trees and the affinity stage for 3+ tasks when cheap, the
  budget sized to the space);
- **full**: the space a careful practitioner writes by hand: both families, every tree
  (``single, per_task, grouped`` and the affinity trees, the affinity stage on for 2
  epochs), split points, cross-stitch inits, loss weights on the simplex and the
  learning rate searched, with the minimal arm's ``num_trials`` (equal trial-epochs);
- **old** (optional, ``--arms``): the defaults before issue 29 written out (``tree:
  single``, no affinity stage), with the minimal arm's ``num_trials``.

Datasets: ``quickstart`` (examples/quickstart.yaml's MultiMNIST, 2 tasks, shrunk: 1000
train rows, 400 validation and test rows, 3 epochs), ``digits4`` (bench/_digits4.py: 4 tasks, a regression and
missing labels, 4 epochs) and ``planted`` (bench/_planted.py: two digits in two colour
channels, two pairs of tasks each reading one, digit labels on 20 % of the train rows;
4 epochs). Baselines: 3 single-task seeds, trained once per dataset and shared by the
arms (the baseline cache); confirmation: the best config (``--confirm-top-k``: the best
k; the product's default is 3) and the no-search default, 3 fresh seeds each. Per arm: the verdict, the deploy pick (its tree, parameters, whether
it is the planted grouping), its validation Delta_m and its test Delta_m over the
confirmation seeds (Welch 95 % interval against the single-task seeds on test), each
task's test term, and the wall time. Writes ``bench/results/defaults.json`` as it goes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from bench._planted import experiment as planted_experiment
from bench._planted import planted_found
from mtl_models.families import partitions_from_config
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
SEARCH = {"max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0}}
FIXED = {"baselines": {"seeds": 3, "ensemble": False}}


def minimal(name: str, work: Path, top_k: int = 1, seeds: int = 3) -> dict[str, Any]:
    """The minimal file: no space, no trial budget, no affinity section."""
    if name == "quickstart":
        doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
        doc["data"].update(n_train=1000, n_val=400, n_test=400)
        doc["train"]["epochs"] = 3
        doc = {k: doc[k] for k in ("name", "seed", "data", "tasks", "backbone", "head", "train")}
    elif name == "digits4":
        doc = digits4_experiment(work / "digits4-data")
        doc["train"] = {**doc["train"], "epochs": 4}
    else:
        doc = planted_experiment(work / "planted-data")
        doc["train"] = {**doc["train"], "epochs": 4}
    return {**doc, "search": dict(SEARCH), "baselines": {**FIXED["baselines"], "seeds": seeds},
            "confirm": {"top_k": top_k, "seeds": seeds}}


def full(doc: dict[str, Any], trials: int) -> dict[str, Any]:
    """The hand-written full space, with ``trials`` trials."""
    space = {
        "families": ["hard_split", "cross_stitch"],
        "tree": ["single", "per_task", "grouped", "affinity"] if len(doc["tasks"]) > 2 else ["single", "per_task", "affinity"],
        "alpha_same": {"low": 0.5, "high": 1.0}, "alpha_diff": "convex", "lr_multiplier": "auto",
        "loss_weights": "simplex", "lr": {"low": 0.0005, "high": 0.01, "log": True},
    }
    return {**doc, "space": space, "affinity": {"epochs": 2, "every": 5}, "search": {**SEARCH, "num_trials": trials}}


def old(doc: dict[str, Any], trials: int) -> dict[str, Any]:
    """The defaults before issue 29, written out: one split point for all tasks, no affinity
    stage, the learning rate fixed at ``train.lr``."""
    return {**doc, "space": {"tree": "single", "lr": doc["train"]["lr"]}, "affinity": {"epochs": 0}, "search": {**SEARCH, "num_trials": trials}}


def resolved(exp: spaces.Experiment) -> dict[str, Any]:
    return {"families": exp.space.families, "tree": exp.space.tree, "num_trials": exp.search.num_trials,
            "n_startup_trials": exp.search.sampler.n_startup_trials, "affinity_epochs": exp.affinity.epochs,
            "lr": exp.space.lr.model_dump() if hasattr(exp.space.lr, "model_dump") else (exp.space.lr or exp.train.lr),
            "filled_in": {k: str(v) for k, v in exp.defaults.filled.items()}}


def judge(run_dir: Path, exp: spaces.Experiment) -> dict[str, Any]:
    """The verdict, the pick, and its Delta_m on validation and on test with intervals."""
    run = reports.load_run(run_dir, evaluate=False)
    pick = run.pick
    chosen = pick.chosen if pick.chosen is not None else pick.table.iloc[0]
    key = chosen["config_key"]
    rows = run.results[(run.results["phase"] == pick.source) & (run.results["config_key"] == key)
                       & (run.results["status"] == "finished")]
    run = reports.load_run(run_dir, evaluate=True, also=rows["trial_id"].tolist())
    results = run.results
    rows = results[results["trial_id"].isin(rows["trial_id"])]
    config = json.loads(rows["config"].iloc[0])
    tasks = run.tasks
    test_noise = reports.BaselineNoise(results, tasks, split="test")
    test = test_noise.vs_single([float(v) for v in rows["test_delta_m"].dropna()])
    terms = {}
    for spec in tasks:
        values = rows[reports.metric_column(spec, "test")].dropna().astype(float).tolist()
        terms[spec.name] = test_noise.task_vs_single(spec, values).as_dict()
    partitions = None
    if config.get("family") == "hard_split":
        partitions = [list(map(list, p)) for p in partitions_from_config(config, [t.name for t in tasks], exp.num_stages())]
    return {
        "verdict": pick.sentences(reports.short_label),
        "pick": reports.short_label(chosen),
        "pick_is_deployable": pick.chosen is not None,
        "family": config.get("family"),
        "tree": config.get("tree"),
        "partitions": partitions,
        "planted_grouping": planted_found(partitions) if exp.name == "planted" else None,
        "params": int(chosen["params"]) if not math.isnan(float(chosen["params"])) else None,
        "val_delta_m": chosen["estimates"]["delta_m"].as_dict(),
        "test_delta_m": test.as_dict(),
        "test_delta_m_runs": [float(v) for v in rows["test_delta_m"].dropna()],
        "test_terms": terms,
        "search_trials": int((results["phase"] == "search").sum()),
        "structures_tried": results.loc[results["phase"] == "search", "tree"].fillna(
            results.loc[results["phase"] == "search", "family"]).value_counts().to_dict()
        if "tree" in results else None,
    }


def welch_difference(a: list[float], b: list[float]) -> dict[str, float]:
    from scipy import stats

    mean = statistics.mean(a) - statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1
    half = float(stats.t.ppf(0.975, dof)) * se
    return {"mean": mean, "low": mean - half, "high": mean + half}


def run_arm(name: str, arm: str, doc: dict[str, Any], work: Path) -> tuple[dict[str, Any], spaces.Experiment]:
    top_k = doc["confirm"]["top_k"]
    name = name if top_k == 1 else f"{name}-top{top_k}"
    name = name if doc["confirm"]["seeds"] == 3 else f"{name}-seeds{doc['confirm']['seeds']}"
    path = work / f"{name}-{arm}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    exp = spaces.load_experiment(path)
    run_dir = work / f"{name}-{arm}-run"
    started = time.monotonic()
    reused = (run_dir / reports.RESULTS_FILE).is_file()  # a finished run in --work is judged again, not rerun
    if not reused:
        run_experiment(exp, run_dir, num_cpus=2, cache_dir=work / "cache", show_plan=True)
    wall = time.monotonic() - started
    out = {"space": resolved(exp), "wall_s": None if reused else round(wall, 1), **judge(run_dir, exp)}
    print(f"{name} {arm}: {out['pick']}: test Delta_m {out['test_delta_m']}; {wall:.0f} s", flush=True)
    return out, exp


def main() -> None:
    log_to_stdout()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["planted", "digits4", "quickstart"])
    parser.add_argument("--arms", nargs="+", default=["minimal", "full"])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--confirm-top-k", type=int, default=1,
                        help="configs the confirmation phase retrains (1 by default here, to save time; the product's default is 3)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="the single-task baselines' seeds and the confirmation's fresh seeds (3, the product's default)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the other datasets' results already in bench/results/defaults.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = (args.work or Path(tempfile.mkdtemp(prefix="defaults-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out: dict[str, Any] = {**machine(), "revision": revision, "work": str(work), "datasets": {}}
    saved = ROOT / "bench" / "results" / "defaults.json"
    if args.keep and saved.is_file():
        before = json.loads(saved.read_text())
        out["datasets"] = before["datasets"]
        for kept in out["datasets"].values():  # each dataset says which code and day measured it
            kept.setdefault("revision", before["revision"])
            kept.setdefault("date", before["date"])
    for name in args.datasets:
        doc = minimal(name, work, args.confirm_top_k, args.seeds)
        key = name if args.confirm_top_k == 1 else f"{name}, confirm.top_k {args.confirm_top_k}"
        key = key if args.seeds == 3 else f"{key}, {args.seeds} seeds"
        entry: dict[str, Any] = out["datasets"].setdefault(key, {})  # --keep: arms not rerun stay
        walls = {arm: entry[arm].get("wall_s") for arm in ("minimal", "full", "old") if isinstance(entry.get(arm), dict)}
        entry.update(revision=revision, **{k: machine()[k] for k in ("date", "machine")})
        arms: dict[str, Any] = {}
        base, exp = run_arm(name, "minimal", doc, work)
        base["wall_s"] = base["wall_s"] if base["wall_s"] is not None else walls.get("minimal")
        arms["minimal"] = base
        entry["minimal"] = base
        write_result("defaults", out)
        trials = exp.search.num_trials
        for arm in [a for a in args.arms if a != "minimal"]:
            if arm == "old" and len(doc["tasks"]) < 3:
                entry["old"] = "the minimal file's space for 2 tasks is the old default space (tree single, no affinity)"
                continue
            entry[arm], _ = run_arm(name, arm, (full if arm == "full" else old)(doc, trials), work)
            if entry[arm]["wall_s"] is None:
                entry[arm]["wall_s"] = walls.get(arm)
            arms[arm] = entry[arm]
            write_result("defaults", out)
        for arm, result in arms.items():
            if arm != "minimal" and len(result["test_delta_m_runs"]) > 1 and len(base["test_delta_m_runs"]) > 1:
                entry[f"minimal_minus_{arm}_test"] = welch_difference(base["test_delta_m_runs"], result["test_delta_m_runs"])
        write_result("defaults", out)
    print(f"wrote {write_result('defaults', out)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
