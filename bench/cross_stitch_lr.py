"""Cross-stitch units' learning rate under Adam and SGD: alpha trajectories and accuracy.

    python -m bench.cross_stitch_lr [--epochs 8] [--seeds 2] [--multipliers 0.1 1 10 100 1000]

Misra et al. (2016) train the units at the network's learning rate times 10^2-10^3,
with SGD, where a step on ``alpha`` is ``lr x multiplier x grad`` and ``grad`` on a
unit is tiny. Adam (and AdamW) normalise each parameter's step to about ``lr`` whatever
its gradient, so the same multiplier moves ``alpha`` by about ``lr x multiplier`` per
step: at lr 0.003 x 1000, three units of alpha per step. This measures it on the 4-task
digits data (bench/_digits4.py: real digits, a regression task, missing labels), a
cross-stitch network after every stage with convex rows (alpha_same 0.7, the rest
0.1 each), for each optimizer and multiplier over ``--seeds`` seeds:

- per epoch: the largest ``|alpha|``, the mean row sum (1 at the start), the mean
  diagonal and off-diagonal entries;
- at the end: each task's validation metric and Delta_m against single-task networks
  trained with the same optimizer, budget and seeds.

Writes ``bench/results/cross_stitch_lr.json``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

import mtl_models as mm
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment
from spaces import fixed_config

LR = {"adam": 0.003, "adamw": 0.003, "sgd": 0.03}


def unit_stats(model: mm.CrossStitchModel) -> dict[str, float]:
    alphas = list(model.alphas().values())
    stacked = torch.cat([a.flatten() for a in alphas])
    t = alphas[0].shape[0]
    eye = torch.eye(t, dtype=torch.bool)
    diag = torch.cat([a[eye].flatten() for a in alphas])
    off = torch.cat([a[~eye].flatten() for a in alphas])
    rows = torch.cat([a.sum(dim=1).flatten() for a in alphas])
    return {
        "max_abs": float(stacked.abs().max()),
        "row_sum": float(rows.mean()),
        "row_sum_max": float(rows.abs().max()),
        "diag": float(diag.mean()),
        "off": float(off.mean()),
    }


def train(config: dict[str, Any], data: mm.MultiTaskData) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    mm.seed_everything(int(config["seed"]))
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    trajectory = [unit_stats(model)] if isinstance(model, mm.CrossStitchModel) else []
    while trainer.epoch < int(config["epochs"]):
        try:
            trainer.train_epoch()
        except mm.NonFiniteLossError:
            return {}, trajectory + [{"diverged": trainer.epoch}]
        if trajectory:
            trajectory.append(unit_stats(model))
    return trainer.evaluate("val"), trajectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--optimizers", nargs="+", default=["adam", "sgd"])
    parser.add_argument("--multipliers", nargs="+", type=float, default=[0.1, 1, 10, 100, 1000])
    parser.add_argument("--data", default="bench/runs/digits4")
    args = parser.parse_args()
    torch.set_num_threads(2)
    exp = spaces.validate_experiment(experiment(args.data))
    data = exp.load_data()
    tasks = exp.task_specs()
    higher = {t.name: t.higher_is_better for t in tasks}
    base = {**fixed_config(exp, data.input_spec()), "epochs": args.epochs, "device": "cpu", "lr_schedule": "cosine"}
    out: dict[str, Any] = {**machine(), "epochs": args.epochs, "seeds": args.seeds, "lr": LR, "runs": {}}
    for optimizer in args.optimizers:
        single: dict[str, list[float]] = {t.name: [] for t in tasks}
        for seed in range(args.seeds):
            for t in tasks:
                config = {**base, "family": "single_task", "task": t.name, "optimizer": optimizer,
                          "lr": LR[optimizer], "seed": seed}
                metrics, _ = train(config, data)
                single[t.name].append(metrics[t.name][t.metric_name])
        baseline = {t: statistics.mean(v) for t, v in single.items()}
        noise = {t: statistics.stdev(v) if len(v) > 1 else None for t, v in single.items()}
        out["runs"][optimizer] = {"single_task": {"mean": baseline, "std": noise}, "multipliers": {}}
        print(f"{optimizer}: single-task {baseline}", flush=True)
        for multiplier in args.multipliers:
            rows = []
            for seed in range(args.seeds):
                config = {**base, "family": "cross_stitch", "alpha_same": 0.7, "alpha_diff": 0.1,
                          "lr_multiplier": multiplier, "optimizer": optimizer, "lr": LR[optimizer], "seed": seed}
                started = time.perf_counter()
                metrics, trajectory = train(config, data)
                primary = {t.name: metrics[t.name][t.metric_name] for t in tasks} if metrics else {}
                delta = mm.delta_m(primary, baseline, higher) if metrics else None
                rows.append({"seed": seed, "metrics": primary, "delta_m": delta, "trajectory": trajectory,
                             "seconds": time.perf_counter() - started})
                last = trajectory[-1]
                print(f"{optimizer} x{multiplier:g} seed {seed}: delta_m {delta if delta is None else round(delta, 2)}"
                      f"  max|alpha| {last.get('max_abs', float('nan')):.3g} row sum {last.get('row_sum', float('nan')):.3g}",
                      flush=True)
            deltas = [r["delta_m"] for r in rows if r["delta_m"] is not None]
            out["runs"][optimizer]["multipliers"][str(multiplier)] = {
                "delta_m_mean": statistics.mean(deltas) if deltas else None,
                "delta_m_std": statistics.stdev(deltas) if len(deltas) > 1 else None,
                "max_abs_alpha_end": statistics.mean(r["trajectory"][-1].get("max_abs", float("nan")) for r in rows),
                "seeds": rows,
            }
    path = write_result("cross_stitch_lr", out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
