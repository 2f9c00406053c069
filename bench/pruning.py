"""Does the pruner mistake early transients for failure? Measured on searches run to the end.

    python -m bench.pruning [--datasets multimnist digits4] [--orders 200] [--work DIR]

For each dataset a search runs with pruning disabled (``pruner: nop``, every trial to
its last epoch, the confirmation phase off), recording every trial's Delta_m after every
epoch (``curves.parquet``): MultiMNIST with examples/quickstart.yaml (2 tasks, 12
trials, 5 epochs), and the 4-task digits of bench/_digits4.py (a regression, ~10 %
missing labels; 16 trials, 8 epochs). Then each pruner policy is replayed offline on
those curves. An Optuna pruner decides from the trials' intermediate values and the
completed trials' alone (``prune(study, trial)``), so a replay that reports the same
values at the same steps, with the same trials completed, makes the decisions it would
make in the search. The replay is checked against a real pruned search: the quickstart
searched again with its own pruner (``median``, 3 startup trials, 1 warm-up epoch), whose
curves, replayed in their wall-clock order, must give the same trials pruned at the same
epochs.

The replay's trials run ``max_concurrent`` at a time in the search's order, each epoch
taking as long as it took, a pruned trial freeing its slot at once; the same again for
``--orders`` random orders of the trials (the search's order is one draw of TPE; the
rate should not hang on it). (A search that prunes also feeds TPE other results, so
which configs it proposes next would differ: the replay measures the pruner's decisions
on one fixed set of trials, not the search's whole path.)

Reported per policy and dataset: the trials pruned, how many of those would have
finished in the top 3 (by final Delta_m of the unpruned run) and that **rate** (pruned
trials that would have been top 3 / pruned trials, pooled over the orders), the share of
top-3 trials lost, and the **cost** in trial-epochs (relative to no pruning).

Writes ``bench/results/pruning.json`` (with the git revision and the date).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
import torch
import yaml

import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
TOP = 3
QUICKSTART_PRUNER = {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}  # examples/quickstart.yaml


def revision() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return out + ("+uncommitted" if dirty else "")


def dataset_experiment(name: str, work: Path, pruner: dict[str, Any]) -> dict[str, Any]:
    """The dataset's search with ``pruner`` and no confirmation phase."""
    if name == "multimnist":
        doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
        doc["search"]["pruner"] = pruner
        doc["confirm"] = {"top_k": 0}
        return doc
    return digits4_experiment(
        work / "digits4-data",
        train={"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
        search={"num_trials": 16, "max_concurrent": 2, "sampler": {"name": "tpe", "n_startup_trials": 6},
                "pruner": pruner, "resources": {"cpu": 1, "gpu": 0}},
        confirm={"top_k": 0},
    )


def gather(name: str, work: Path, tag: str, pruner: dict[str, Any]) -> dict[str, Any]:
    """Run (or reuse, from ``work``) the dataset's search with ``pruner``; its metadata says
    at which revision and date it ran and how long it took."""
    run_dir = work / f"{name}-{tag}"
    meta_path = work / f"{name}-{tag}.meta.json"
    if meta_path.is_file() and (run_dir / reports.RESULTS_FILE).is_file():
        return {**json.loads(meta_path.read_text()), "reused_from": str(run_dir)}
    path = work / f"{name}-{tag}.yaml"
    path.write_text(yaml.safe_dump(dataset_experiment(name, work, pruner), sort_keys=False))
    exp = spaces.load_experiment(path)
    started = time.monotonic()
    run_experiment(exp, run_dir, num_cpus=os.cpu_count(), cache_dir=work / "cache")
    meta = {"revision": revision(), "date": machine()["date"], "wall_s": round(time.monotonic() - started, 1),
            "pruner": pruner, "run_dir": str(run_dir)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


@dataclass
class Curve:
    """One searched trial: Delta_m after each epoch (step = epoch - 1), when each epoch ended
    (``wall``), how long each took, whether it ran its whole budget."""

    trial_id: str
    values: list[float]
    wall: list[float]
    durations: list[float]
    complete: bool
    start_order: int


def load_curves(run_dir: Path) -> tuple[list[Curve], int]:
    results = pd.read_parquet(run_dir / reports.RESULTS_FILE)
    curves = pd.read_parquet(run_dir / "curves.parquet")
    search = results[results["phase"] == "search"]
    epochs = int(json.loads(search["config"].iloc[0])["epochs"])
    out = []
    for trial_id, rows in curves[curves["phase"] == "search"].groupby("trial_id"):
        rows = rows.sort_values("epoch")
        status = search.loc[search["trial_id"] == trial_id, "status"].iloc[0]
        totals = rows["time_total_s"].tolist()
        out.append(Curve(trial_id, rows["delta_m"].astype(float).tolist(), rows["wall_time"].astype(float).tolist(),
                         [b - a for a, b in zip([0.0, *totals], totals)], status == "finished", 0))
    out.sort(key=lambda c: c.wall[0] - c.durations[0])
    for i, curve in enumerate(out):
        curve.start_order = i
    return out, epochs


@dataclass
class Replay:
    """One replay: epochs each trial ran (``epochs_run``), the trials the pruner stopped
    (``pruned``: trial -> epochs run), and those it would have let run past where their
    curve ends (``unfinished``: only on a real pruned search's curves)."""

    epochs_run: dict[str, int]
    pruned: dict[str, int]
    unfinished: list[str]


def replay(curves: list[Curve], epochs: int, pruner: optuna.pruners.BasePruner, order: list[int] | None = None,
           concurrency: int = 2) -> Replay:
    """The pruner's decisions on ``curves``, as a search would make them.

    ``order`` None: the epochs in the order they ended in the search (``wall``), a trial
    completing at its last epoch (exactly what the search's study saw when the curves come
    from a pruned search). Else the trials start in ``order``, ``concurrency`` at a time,
    each epoch taking its recorded duration, a stopped trial freeing its slot at once.
    Each trial reports its Delta_m at step ``epoch - 1`` and asks the pruner, as
    ``search.OptunaPrunerScheduler`` does, except at its last epoch: it has run its budget
    and is told COMPLETE with that value. (The check against a real pruned search showed
    it: a trial behind the median at its last epoch finished, the searcher telling the
    study COMPLETE; the scheduler now does not judge a last epoch at all.)
    """
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    trials: dict[str, optuna.Trial] = {}
    epochs_run: dict[str, int] = {}
    pruned: dict[str, int] = {}
    unfinished: list[str] = []

    def report(curve: Curve, step: int) -> bool:
        """Report ``step``; True when the trial ended there (pruned or finished)."""
        trial = trials.setdefault(curve.trial_id, study.ask())
        trial.report(curve.values[step], step)
        epochs_run[curve.trial_id] = step + 1
        if step == epochs - 1:  # its last epoch: it ran its budget (search.OptunaPrunerScheduler does not judge it)
            study.tell(trial, curve.values[step])
            return True
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            pruned[curve.trial_id] = step + 1
            return True
        if step == len(curve.values) - 1:
            if curve.complete:
                study.tell(trial, curve.values[step])
            else:
                unfinished.append(curve.trial_id)
            return True
        return False

    if order is None:
        events = sorted((wall, curve.start_order, step, curve) for curve in curves for step, wall in enumerate(curve.wall))
        for _, _, step, curve in events:
            if curve.trial_id not in pruned:
                report(curve, step)
        return Replay(epochs_run, pruned, unfinished)
    queue = [curves[i] for i in order]
    running: list[tuple[float, int, int, Curve]] = []  # (time the epoch ends, tie-break, step, curve)
    clock, counter = 0.0, 0

    def start(now: float) -> None:
        nonlocal counter
        while queue and len(running) < concurrency:
            curve = queue.pop(0)
            counter += 1
            running.append((now + curve.durations[0], counter, 0, curve))

    start(0.0)
    while running:
        running.sort(key=lambda e: (e[0], e[1]))
        clock, tie, step, curve = running.pop(0)
        if report(curve, step):
            start(clock)
        else:
            running.append((clock + curve.durations[step + 1], tie, step + 1, curve))
    return Replay(epochs_run, pruned, unfinished)


def score(curves: list[Curve], epochs: int, replays: list[Replay]) -> dict[str, Any]:
    """How a policy did over ``replays`` of the same trials: pruned trials that would have
    finished in the top ``TOP`` (by final Delta_m), pooled over the replays, and the cost."""
    final = {c.trial_id: c.values[-1] for c in curves}
    top = set(sorted(final, key=final.__getitem__, reverse=True)[:TOP])
    pruned = sum(len(r.pruned) for r in replays)
    lost = sum(len(top & set(r.pruned)) for r in replays)
    cost = [sum(r.epochs_run.values()) for r in replays]
    full = len(curves) * epochs
    return {
        "pruned_per_search": round(pruned / len(replays), 3),
        "pruned_top3_per_search": round(lost / len(replays), 3),
        "rate_pruned_would_be_top3": round(lost / pruned, 4) if pruned else 0.0,
        "share_of_top3_lost": round(lost / (TOP * len(replays)), 4),
        "trial_epochs": round(sum(cost) / len(cost), 2),
        "cost_vs_no_pruning": round(sum(cost) / len(cost) / full, 4),
    }


def policies() -> dict[str, spaces.PrunerConfig]:
    """The pruners compared: the defaults before, warm-up and criterion variants, the new default."""
    P = spaces.PrunerConfig
    out = {
        "median (Optuna defaults: 5 startup, no warm-up; the default before)": P(name="median"),
        "median, quickstart's (3 startup, 1 warm-up epoch)": P(**QUICKSTART_PRUNER),
    }
    for fraction in (0.2, 0.4, 0.6):
        out[f"median, warm-up {fraction:.0%} of the epochs"] = P(name="median", warmup_fraction=fraction)
    out["percentile 75 (prune the bottom quarter), no warm-up"] = P(name="percentile", percentile=75.0)
    for startup in (3, 4, 5):
        for patience in (1, 2, 3):
            for fraction in (0.0, 0.2, 0.4):
                out[f"patient {patience}, {startup} startup, warm-up {fraction:.0%}"] = P(
                    name="patient", patience=patience, n_startup_trials=startup, warmup_fraction=fraction)
    out["patient 1 at percentile 90 (the bottom tenth), 3 startup"] = P(
        name="patient", patience=1, percentile=90.0, n_startup_trials=3, warmup_fraction=0.0)
    out["successive halving (Optuna defaults)"] = P(name="successive_halving")
    out["hyperband (max_resource = epochs)"] = P(name="hyperband")
    out["new default (patient: 2 steps in a row behind the median, 4 startup, warm-up 10 %)"] = P()
    return out


def measure(curves: list[Curve], epochs: int, n_orders: int, concurrency: int) -> dict[str, Any]:
    """Every policy replayed in the search's own order and in ``n_orders`` random ones."""
    rng = random.Random(0)
    orders = [rng.sample(range(len(curves)), len(curves)) for _ in range(n_orders)]
    final = {c.trial_id: c.values[-1] for c in curves}
    out: dict[str, Any] = {
        "trials": len(curves), "epochs": epochs, "orders": n_orders, "concurrency": concurrency,
        "final_delta_m": {c.trial_id: round(c.values[-1], 3) for c in curves},
        "curves": {c.trial_id: [round(v, 3) for v in c.values] for c in curves},
        "top3": sorted(final, key=final.__getitem__, reverse=True)[:TOP],
        "policies": {},
    }
    for name, config in policies().items():
        own = replay(curves, epochs, _build(config, epochs))
        shuffled = [replay(curves, epochs, _build(config, epochs), order, concurrency) for order in orders]
        out["policies"][name] = {
            "config": config.model_dump(exclude_none=True),
            "search_order": {**score(curves, epochs, [own]), "pruned": own.pruned},
            "random_orders": score(curves, epochs, shuffled),
        }
        r = out["policies"][name]["random_orders"]
        print(f"  {name:75s} rate {r['rate_pruned_would_be_top3']:6.1%}  top-3 lost {r['share_of_top3_lost']:6.1%}  "
              f"cost {r['cost_vs_no_pruning']:6.1%}  (search order: {len(own.pruned)} pruned, "
              f"{score(curves, epochs, [own])['pruned_top3_per_search']:.0f} of them top 3)", flush=True)
    return out


def _build(config: spaces.PrunerConfig, epochs: int) -> optuna.pruners.BasePruner:
    from search.study._samplers import build_pruner

    return build_pruner(config, epochs)


def verify(work: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The replay against a real pruned search: its curves replayed in their wall-clock order
    with its own pruner must stop the same trials at the same epochs."""
    run_dir = Path(meta["run_dir"])
    curves, epochs = load_curves(run_dir)
    results = pd.read_parquet(run_dir / reports.RESULTS_FILE)
    search = results[results["phase"] == "search"]
    real = {t: int(e) for t, e, s in zip(search["trial_id"], search["epochs_run"], search["status"]) if s == "pruned"}
    again = replay(curves, epochs, _build(spaces.PrunerConfig(**meta["pruner"]), epochs))
    return {"pruner": meta["pruner"], "real_pruned": real, "replay_pruned": again.pruned,
            "replay_would_continue": again.unfinished, "same": real == again.pruned and not again.unfinished,
            "run": {k: v for k, v in meta.items() if k != "run_dir"}}


def main() -> None:
    log_to_stdout()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per replay: thousands
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["multimnist", "digits4"])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--no-verify", action="store_true", help="skip the real pruned search of the check")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = (args.work or Path(tempfile.mkdtemp(prefix="pruning-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {**machine(), "revision": revision(), "datasets": {}}
    for name in args.datasets:
        meta = gather(name, work, "unpruned", {"name": "nop"})
        curves, epochs = load_curves(Path(meta["run_dir"]))
        print(f"{name}: {len(curves)} trials run to the end ({epochs} epochs)", flush=True)
        out["datasets"][name] = {"search": {k: v for k, v in meta.items() if k != "run_dir"},
                                 **measure(curves, epochs, args.orders, concurrency=2)}
        write_result("pruning", out)
    if not args.no_verify:
        out["replay_check"] = verify(work, gather("multimnist", work, "pruned", QUICKSTART_PRUNER))
        print(f"replay check: {out['replay_check']}", flush=True)
    print(f"wrote {write_result('pruning', out)}")


if __name__ == "__main__":
    main()
