"""What a gradient aggregator costs per training step, against static weighting on the same model.

    python -m bench.aggregator_cost [--steps 30] [--repeats 3] [--split-point 4] [--families hard_split cross_stitch] [--aggregators upgrad mgda ...]

The quickstart's model (small CNN 16-32-64-64 on 36x36 MultiMNIST-sized inputs, batch
128, two tasks) as a hard split after stage ``--split-point`` (4: all four stages shared)
and as a cross-stitch network (units after every stage); for each loss weighting, the
median wall time of one full training step (forward, backward, the scheme's own work,
optimizer step), over ``--steps`` steps after warm-up, with the schemes measured in
rounds (static, then each method, ``--repeats`` times) so a busy machine slows them
alike. Reported: ms per step and the ratio to static. Each aggregator is measured with
both ``aggregation_scope``s: ``shared`` (every parameter both tasks reach, torchjd's
``mtl_backward``; the row ``<scheme>``) and ``last_shared_stage`` (GradNorm's layer only;
the row ``<scheme>@last_shared_stage``), with the number of parameters each aggregates.
The aggregators compute every task's gradient on the aggregated parameters (torchjd's
Jacobian: one backward per task through them) and solve a small problem on the T x T
Gramian (CAGrad and Nash-MTL with cvxpy).

Writes ``bench/results/aggregator_cost.json`` (``--name``: another name). The scope
comparison on the hard split sharing all four stages, as run for issue 22:
``--families hard_split --aggregators upgrad mgda --name aggregator_cost_scope``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import statistics
import time
from typing import Any

import torch

import mtl_models as mm
from bench._common import machine, write_result

AGGREGATORS = ("upgrad", "pcgrad", "cagrad", "mgda", "imtlg", "aligned_mtl", "nash_mtl")
SCOPES = ("shared", "last_shared_stage")
# (row name, scheme, aggregation_scope)
SCHEMES = [("static", "static", None)] + [
    (a if scope == "shared" else f"{a}@{scope}", a, scope) for a in AGGREGATORS for scope in SCOPES
] + [("gradnorm", "gradnorm", None)]
TASKS = [{"name": n, "kind": "classification", "classes": 10, "loss": None, "metric": None} for n in ("left", "right")]


def config(family: str, scheme: str, scope: str | None = None, split_point: int = 4) -> dict[str, Any]:
    out = {
        "family": family, "tasks": TASKS, "seed": 0, "device": "cpu", "epochs": 1, "batch_size": 128,
        "backbone": {"name": "small_cnn", "weights": None, "options": {"widths": [16, 32, 64, 64]}},
        "input": {"channels": 1, "height": 36, "width": 36, "mean": [0.1], "std": [0.3]},
        "head": {"pool_size": 2, "hidden": 0}, "optimizer": "adam", "lr": 0.003, "loss_weighting": scheme,
    }
    if scope is not None:
        out["aggregation_scope"] = scope
    if family == "hard_split":
        out["split_point"] = split_point
    else:
        out.update(alpha_same=0.9, alpha_diff=0.1, lr_multiplier=1.0)
    return out


def data(n: int = 256) -> mm.MultiTaskData:
    g = torch.Generator().manual_seed(0)
    specs = [mm.TaskSpec.from_dict(t) for t in TASKS]
    splits = {
        name: mm.Split(torch.randint(0, 256, (n, 1, 36, 36), generator=g, dtype=torch.uint8),
                       {t["name"]: torch.randint(0, 10, (n,), generator=g) for t in TASKS})
        for name in ("train", "val")
    }
    return mm.MultiTaskData(specs, splits, description="random MultiMNIST-sized")


def revision() -> str | None:
    """The git commit the benchmark ran at (``None`` outside a checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def aggregated(family: str, scope: str, split_point: int) -> int:
    """How many parameters the aggregators combine under ``scope`` on this model."""
    model = mm.build_model(config(family, "upgrad", scope, split_point))
    params = model.multi_task_parameters() if scope == "shared" else model.shared_parameters()
    return sum(p.numel() for p in params)


def step_times(family: str, scheme: str, scope: str | None, split_point: int, dataset: mm.MultiTaskData,
               steps: int) -> list[float]:
    cfg = config(family, scheme, scope, split_point)
    mm.seed_everything(0)
    trainer = mm.Trainer(mm.build_model(cfg), dataset, cfg)
    x, targets = next(iter(trainer.feeds["train"].batches(128, shuffle=False)))
    trainer.model.train()
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        losses = trainer.losses(trainer.forward(x), targets)
        trainer.weighting.backward(losses, trainer.model)
        trainer.optimizer.step()
        if i >= 3:  # warm-up: allocator, cvxpy's first solve
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split-point", type=int, default=4)
    parser.add_argument("--name", default="aggregator_cost", help="writes bench/results/<name>.json")
    parser.add_argument("--aggregators", nargs="+", default=list(AGGREGATORS), choices=list(AGGREGATORS))
    parser.add_argument("--families", nargs="+", default=["hard_split", "cross_stitch"], choices=["hard_split", "cross_stitch"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = data()
    out: dict[str, Any] = {**machine(), "revision": revision(), "command": "python -m bench.aggregator_cost " + " ".join(sys.argv[1:]),
                           "load_average": list(os.getloadavg()), "threads": args.threads,
                           "steps": args.steps, "repeats": args.repeats,
                           "split_point": args.split_point, "aggregated_parameters": {}, "families": {}}
    for family in args.families:
        out["aggregated_parameters"][family] = {scope: aggregated(family, scope, args.split_point) for scope in SCOPES}
        chosen = [r for r in SCHEMES if r[1] in ("static", "gradnorm") or r[1] in args.aggregators]
        samples: dict[str, list[float]] = {row: [] for row, _, _ in chosen}
        for _ in range(args.repeats):
            for row, scheme, scope in chosen:
                samples[row] += step_times(family, scheme, scope, args.split_point, dataset, args.steps)
                print(f"  {family} {row}: {1000 * statistics.median(samples[row]):.1f} ms so far", flush=True)
        static = statistics.median(samples["static"])
        rows = {}
        for row, _, _ in chosen:
            median = statistics.median(samples[row])
            q = statistics.quantiles(samples[row], n=4)
            rows[row] = {"ms_per_step": 1000 * median, "iqr_ms": [1000 * q[0], 1000 * q[2]], "vs_static": median / static}
            print(f"{family:12} {row:30} {1000 * median:7.1f} ms/step  x{median / static:5.2f} of static", flush=True)
        out["families"][family] = rows
    print(f"wrote {write_result(args.name, out)}")


if __name__ == "__main__":
    main()
