"""Families (cross-stitch unit granularities among them), loss weightings and aggregators,
and the task-affinity tree, at equal epochs and at equal wall-clock.

    python -m bench.beyond [--datasets multimnist digits4] [--trials 4] [--seeds 3]
                           [--epochs N] [--digits-epochs N] [--n-train N] [--work DIR]

For each dataset (MultiMNIST as in examples/quickstart.yaml; the 4-task digits of
bench/_digits4.py, a regression and missing labels among them; ``planted``, bench/_planted.py:
two pairs of tasks that need different features, each pair reading its own digit):

- **Families**: one search per row of ``FAMILIES`` (hard split; cross-stitch with its
  unit at each granularity, ``cross_stitch_unit`` channel / scalar / nddr; MTAN; MMoE with 2 or 3
  experts; CGC/PLE with 1 or 2 levels, one shared and one per-task expert), each
  the same ``--trials`` trials of its default space drawn by the random sampler (no
  pruning, every trial the full epochs: equal trial-epochs), no confirmation phase, the
  single-task baseline (3 seeds) trained once and shared. The family's best trial is
  trained again with ``--seeds`` new seeds: its Delta_m mean and spread, its parameter
  count, its training seconds per epoch; and again at **equal wall-clock** with the hard
  split's best (``FAMILY_WALL_CLOCK_RULE``: its epochs scaled by the hard split's
  training time over its own).
- **Weightings**: the hard-split family's best config with each loss weighting or
  gradient aggregator in its place (equal static weights for ``static``, each scheme's
  default parameters; aggregators on every parameter two or more task losses reach,
  ``aggregation_scope: shared``), the same ``--seeds`` new seeds for all, compared
  twice: at **equal epochs** (every scheme the config's epochs) and at **equal
  wall-clock** (``WALL_CLOCK_RULE``: each scheme's epochs scaled by static's measured
  time per training step over its own, so every scheme gets the training time static
  gets; where that rounds to the same epochs the equal-epoch training is the
  equal-wall-clock one, and the JSON says so). Delta_m mean and spread, and the paired
  difference to static (same seeds).
- **Affinity tree**: TAG's lookahead affinity (``measure_affinity``: the trial's
  optimiser, every 10th step, standard errors, noise-gated splits) measured on the fully
  shared network for 2 epochs; its first proposed tree (``trees[0]``: the proposals
  are sorted best affinity score first, as ``mtlsearch affinity`` lists them) replaces
  the hard-split best's tree, trained with the same new seeds, compared with the best
  family's retrained best (Welch 95 % interval of the difference: "within noise" when it
  covers 0) and, paired by seed, with the tree it replaced. Every proposed tree is
  recorded with its reasons.

Retrains run in this process (one trainer at a time, 2 threads), with the run's own
single-task baseline. The JSON records the git revision (and whether the tree was
dirty), the date, the arguments and the sizes. Runs are kept under ``--work`` in a
folder named by the revision and the arguments; a finished search there is reused only
when both match and the tree was clean, and every reuse is printed and listed in the
JSON (``reused``). Writes ``bench/results/beyond.json``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
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
from scipy import stats

import mtl_models as mm
from mtl_models._affinity import measure_affinity
from mtl_models._task_groups import shared_reason
import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from bench._planted import experiment as planted_experiment
from bench.pick_holdup import paired as paired_by_seed
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
NEW_SEEDS_FROM = 2000
FAMILIES: dict[str, dict[str, Any]] = {  # row -> the space's family keys
    "hard_split": {"families": ["hard_split"]},
    "cross_stitch[channel]": {"families": ["cross_stitch"], "cross_stitch_unit": ["channel"]},
    "cross_stitch[scalar]": {"families": ["cross_stitch"], "cross_stitch_unit": ["scalar"]},
    "cross_stitch[nddr]": {"families": ["cross_stitch"], "cross_stitch_unit": ["nddr"]},
    "mtan": {"families": ["mtan"]},
    "mmoe": {"families": ["mmoe"], "mmoe_experts": {"low": 2, "high": 3}},  # whole-backbone experts, gates on the input
    "ple": {"families": ["ple"], "ple_levels": {"low": 1, "high": 2}},  # CGC or a 2-level PLE, 1 shared + 1 per task
}
SCHEMES = ("static", "uncertainty", "dwa", "famo", "gradnorm", "db_mtl", "upgrad", "pcgrad", "cagrad", "mgda",
           "imtlg", "aligned_mtl", "nash_mtl")
WALL_CLOCK_RULE = ("equal wall-clock: scheme s trains max(1, round(E * t_static / t_s)) epochs, E the config's "
                   "epochs and t a scheme's training seconds in its equal-epoch retrain, the fastest of its seeds "
                   "(this run, same config and seeds, evaluation excluded; the fastest seed, as the machine's load "
                   "from other processes only ever slows a training down; the ratios still carry that noise); every scheme thus gets about the training time static gets "
                   "in E epochs; where the epochs equal E the equal-epoch training is the equal-wall-clock one "
                   "(same seeds, reused within this run, marked same_as_equal_epochs)")


FAMILY_WALL_CLOCK_RULE = ("families at equal wall-clock: family f's retrained best trains max(1, round(E * t_hard / t_f)) "
                          "epochs, t the fastest seed's training seconds of the equal-epoch retrain and t_hard the "
                          "hard split's best's; the same seeds; where the epochs equal E the equal-epoch training is "
                          "reused (same_as_equal_epochs)")


def revision() -> dict[str, Any]:
    """The checkout's short revision and whether its tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True)
    return {"revision": head.stdout.strip() or None, "dirty": bool(dirty.stdout.strip()) or head.returncode != 0}


def dataset_experiment(name: str, work: Path, trials: int, epochs: int | None, n_train: int | None = None) -> dict[str, Any]:
    search = {"num_trials": trials, "max_concurrent": 2, "sampler": {"name": "random", "seed": 0},
              "pruner": {"name": "nop"}, "resources": {"cpu": 1, "gpu": 0}}
    common = {"search": search, "baselines": {"seeds": 3, "ensemble": False}, "confirm": {"top_k": 0}}
    if name == "multimnist":
        doc = {**yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text()), **common}
        if epochs:
            doc["train"] = {**doc["train"], "epochs": epochs}
        if n_train:
            doc["data"] = {**doc["data"], "n_train": n_train}
        return doc
    make = planted_experiment if name == "planted" else digits4_experiment
    return make(
        work / f"{name}-data",
        train={"epochs": epochs or 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
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


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """The paired difference ``a - b`` of two retrains' values, which come in the same seed order."""
    return paired_by_seed(dict(enumerate(a)), dict(enumerate(b)))


def retrain(config: dict[str, Any], data: mm.MultiTaskData, seeds: list[int], baseline: dict[str, float],
            tasks: list[mm.TaskSpec]) -> dict[str, Any]:
    """Delta_m of ``config`` trained from scratch with each seed (the run's baseline), the
    parameter count and the training seconds per seed (evaluation excluded)."""
    higher = {t.name: t.higher_is_better for t in tasks}
    deltas, train_s, params = [], [], 0
    for seed in seeds:
        run = {**config, "seed": seed, "device": "cpu"}
        if run.get("column_init") == "single_task":
            raise RuntimeError("single_task column init needs the run's checkpoints; not retrained here")
        mm.seed_everything(seed)
        model = mm.build_model(run)
        params = sum(p.numel() for p in model.parameters())
        trainer = mm.Trainer(model, data, run)
        started = time.perf_counter()
        while trainer.epoch < int(run["epochs"]):
            trainer.train_epoch()
        train_s.append(time.perf_counter() - started)
        val = trainer.evaluate("val")
        deltas.append(mm.delta_m(mm.primary_metrics(model.tasks, val), baseline, higher))
    return {**spread(deltas), "params": params, "epochs": int(config["epochs"]),
            "train_s": [round(s, 1) for s in train_s]}


def tree_text(branches: list[list[list[str]]]) -> str:
    return " | ".join(" ".join("{" + ",".join(g) + "}" for g in part) for part in branches)


def run_dataset(name: str, work: Path, args: argparse.Namespace, reused: list[str]) -> dict[str, Any]:
    doc = (dataset_experiment(name, work, args.trials, args.epochs, args.n_train) if name == "multimnist"
           else dataset_experiment(name, work, args.trials, args.digits_epochs))
    seeds = list(range(NEW_SEEDS_FROM, NEW_SEEDS_FROM + args.seeds))
    cache = work / "cache"
    epochs = int(doc["train"]["epochs"])
    out: dict[str, Any] = {"trials_per_family": args.trials, "epochs_per_trial": epochs, "data": doc["data"],
                           "new_seeds": seeds, "families": {}, "weightings": {}}
    best_rows = {}
    for family, keys in FAMILIES.items():
        slug = family.replace("[", "-").replace("]", "")
        spec = {**doc, "name": f"beyond-{name}-{slug}", "space": {**doc.get("space", {}), **keys}}
        path = work / f"{name}-{slug}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        run_dir = work / f"{name}-{slug}-run"
        started = time.monotonic()
        if (run_dir / reports.RESULTS_FILE).is_file():  # only in a folder of this revision and arguments
            reused.append(f"{name} {family}: search {run_dir}")
            print(f"REUSING the finished search {run_dir} (same revision, clean tree, same arguments)", flush=True)
        else:
            run_experiment(spaces.load_experiment(path), run_dir, num_cpus=os.cpu_count(), cache_dir=cache)
        run = reports.load_run(run_dir, evaluate=False)
        searched = run.results[(run.results["phase"] == "search") & (run.results["status"] == "finished")]
        best_rows[family] = reports.best_trial(run.results)
        out["families"][family] = {
            "space": keys,
            "search_wall_s": round(time.monotonic() - started, 1),
            "finished": int(len(searched)),
            "search_delta_m": sorted(float(v) for v in searched["delta_m"].dropna()),
            "search_params": {"min": int(searched["params"].min()), "max": int(searched["params"].max())},
            "best_config": reports.short_label(best_rows[family]),
            "best_search_delta_m": float(best_rows[family]["delta_m"]),
        }
    hard = "hard_split"
    exp = spaces.load_experiment(work / f"{name}-{hard}.yaml")
    data = exp.load_data()
    run = reports.load_run(work / f"{name}-{hard}-run", evaluate=False)
    tasks = run.tasks
    baseline = reports.single_task_baseline(run.results, tasks)
    out["single_task_baseline"] = baseline

    configs = {f: json.loads(row["config"]) for f, row in best_rows.items()}
    retrained: dict[str, list[float]] = {}
    for family, config in configs.items():
        result = retrain(config, data, seeds, baseline, tasks)
        retrained[family] = result["values"]
        per_epoch = statistics.mean(result["train_s"]) / epochs
        out["families"][family].update({"retrained": result, "params": result["params"],
                                        "train_s_per_epoch": round(per_epoch, 2)})
        print(f"{name} {family:22} best {out['families'][family]['best_config']} ({result['params']:,} params, "
              f"{per_epoch:.1f} s/epoch): search {out['families'][family]['best_search_delta_m']:+.2f}"
              f", new seeds {result['mean']:+.2f} ± {result['std']:.2f}", flush=True)
    t_hard = min(out["families"]["hard_split"]["retrained"]["train_s"])
    for family, config in configs.items():  # equal wall-clock: FAMILY_WALL_CLOCK_RULE
        at_epochs_f = out["families"][family]["retrained"]
        cost = min(at_epochs_f["train_s"]) / t_hard
        wall_epochs = max(1, round(epochs / cost))
        if wall_epochs == epochs:
            wall = {**at_epochs_f, "same_as_equal_epochs": True}
        else:
            wall = retrain({**config, "epochs": wall_epochs}, data, seeds, baseline, tasks)
        out["families"][family].update({"cost_vs_hard_split": cost, "equal_wall_clock": wall})
        print(f"{name} {family:22} x{cost:.2f} of the hard split's training time; equal wall-clock ({wall_epochs} "
              f"epochs) {wall['mean']:+.2f} ± {wall['std']:.2f}", flush=True)

    template = configs[hard]
    equal = {t.name: 1.0 / len(tasks) for t in tasks}
    scheme_configs = {s: {**template, "loss_weighting": s, "loss_weights": equal, "aggregation_scope": "shared"}
                      for s in SCHEMES}
    at_epochs: dict[str, dict[str, Any]] = {}
    at_wall: dict[str, dict[str, Any]] = {}
    for scheme in SCHEMES:  # equal epochs: every scheme E epochs, the same seeds
        at_epochs[scheme] = retrain(scheme_configs[scheme], data, seeds, baseline, tasks)
        if scheme != "static":
            at_epochs[scheme]["vs_static_paired"] = paired(at_epochs[scheme]["values"], at_epochs["static"]["values"])
        print(f"{name} {scheme:12} {epochs} epochs {at_epochs[scheme]['mean']:+.2f} ± {at_epochs[scheme]['std']:.2f}"
              f"  ({sum(at_epochs[scheme]['train_s']):.0f}s training)", flush=True)
    t_static = min(at_epochs["static"]["train_s"])
    for scheme in SCHEMES:  # equal wall-clock: WALL_CLOCK_RULE
        cost = min(at_epochs[scheme]["train_s"]) / t_static
        wall_epochs = max(1, round(epochs / cost))
        if wall_epochs == epochs:
            at_wall[scheme] = {**at_epochs[scheme], "same_as_equal_epochs": True}
            at_wall[scheme].pop("vs_static_paired", None)
        else:
            at_wall[scheme] = retrain({**scheme_configs[scheme], "epochs": wall_epochs}, data, seeds, baseline, tasks)
        if scheme != "static":
            at_wall[scheme]["vs_static_paired"] = paired(at_wall[scheme]["values"], at_wall["static"]["values"])
        out["weightings"][scheme] = {"cost_vs_static": cost, "equal_epochs": at_epochs[scheme],
                                     "equal_wall_clock": at_wall[scheme]}
        print(f"{name} {scheme:12} x{cost:.2f} of static's training time; equal wall-clock ({wall_epochs} epochs) "
              f"{at_wall[scheme]['mean']:+.2f} ± {at_wall[scheme]['std']:.2f}", flush=True)
    out["weightings_architecture"] = reports.short_label(best_rows[hard])

    started = time.monotonic()
    mm.seed_everything(0)
    affinity = measure_affinity({**template, "seed": 0}, data, epochs=2)
    tree = affinity.trees[0]
    config = {**template, "tree": "affinity", "branches": tree["branches"], "split_point": None, "split_points": None,
              "task_groups": None}
    tree_result = retrain(config, data, seeds, baseline, tasks)
    tree_deltas = tree_result["values"]
    best_family = max(retrained, key=lambda f: statistics.mean(retrained[f]))
    versus = welch(tree_deltas, retrained[best_family])
    stage_names = affinity.stages
    out["affinity"] = {
        "measure_epochs": 2, "every": affinity.every, "steps_measured": affinity.steps,
        "affinity": affinity.affinity, "stderr": affinity.stderr, "network": affinity.network,
        "network_stderr": affinity.network_stderr, "stages": stage_names,
        "tree": {**tree, "text": tree_text(tree["branches"]),
                 "reasons": [shared_reason(w, stage_names) for w in tree.get("shared_within_noise", [])]},
        "proposed": [{"name": t["name"], "text": tree_text(t["branches"]), "score": t["score"],
                      "reasons": [shared_reason(w, stage_names) for w in t.get("shared_within_noise", [])]}
                     for t in affinity.trees],
        "retrained": tree_result, "best_family": best_family, "vs_best_welch": versus,
        "within_noise": versus["low"] <= 0 <= versus["high"],
        "vs_hard_split_best_paired": paired(tree_deltas, retrained[hard]),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"{name} affinity tree {tree['name']} {tree_text(tree['branches'])}: {tree_result['mean']:+.2f} ± "
          f"{tree_result['std']:.2f}; vs best ({best_family}) {versus['mean']:+.2f} "
          f"[{versus['low']:+.2f}, {versus['high']:+.2f}]", flush=True)
    return out


def main() -> None:
    log_to_stdout()  # the runs' lines, as the CLI shows them
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["multimnist", "digits4"],
                        choices=["multimnist", "digits4", "planted"])
    parser.add_argument("--trials", type=int, default=4, help="random trials per family")
    parser.add_argument("--seeds", type=int, default=3, help="new seeds per retrained config")
    parser.add_argument("--epochs", type=int, default=None, help="MultiMNIST epochs per trial (default 5)")
    parser.add_argument("--digits-epochs", type=int, default=None, help="4-task digits and planted epochs per trial (default 8)")
    parser.add_argument("--n-train", type=int, default=None, help="MultiMNIST training images (default 3000)")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the runs here, in a folder per revision and arguments (a finished search of the "
                             "same clean revision and arguments is reused, and said so)")
    parser.add_argument("--name", default="beyond", help="bench/results/<name>.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rev = revision()
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("work", "name")}
    key = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:10]
    folder = f"{rev['revision']}-{key}"
    if rev["dirty"]:  # uncommitted changes: nothing of it is ever reused
        folder += "-dirty-" + datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    work = ((args.work or Path(tempfile.mkdtemp(prefix="beyond-"))) / folder).resolve()
    work.mkdir(parents=True, exist_ok=True)
    reused: list[str] = []
    out: dict[str, Any] = {**machine(), **rev, "command": "python -m bench.beyond", "arguments": arguments,
                           "wall_clock_rule": WALL_CLOCK_RULE, "family_wall_clock_rule": FAMILY_WALL_CLOCK_RULE,
                           "reused": reused, "datasets": {}}
    for name in args.datasets:
        started = time.monotonic()
        out["datasets"][name] = run_dataset(name, work, args, reused)
        out["datasets"][name]["wall_s"] = round(time.monotonic() - started, 1)
        write_result(args.name, out)
    print(f"reused: {reused or 'nothing'}")
    print(f"wrote {write_result(args.name, out)}")


if __name__ == "__main__":
    main()
