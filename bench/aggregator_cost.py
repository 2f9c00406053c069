"""What a gradient aggregator costs per training step, against static weighting on the same model.

    python -m bench.aggregator_cost [--steps 30] [--repeats 3]

The quickstart's model (small CNN 16-32-64-64 on 36x36 MultiMNIST-sized inputs, batch
128, two tasks) as a hard split after stage 2 and as a cross-stitch network; for each
loss weighting, the median wall time of one full training step (forward, backward, the
scheme's own work, optimizer step), over ``--steps`` steps after warm-up, with the
schemes measured in rounds (static, then each method, ``--repeats`` times) so a busy
machine slows them alike. Reported: ms per step and the ratio to static. The
aggregators compute every task's gradient on the shared parameters (one backward per
task through the shared layers, torchjd's Jacobian) and solve a small problem on the
T x T Gramian (CAGrad and Nash-MTL with cvxpy).

Writes ``bench/results/aggregator_cost.json``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

import mtl_models as mm
from bench._common import machine, write_result

SCHEMES = ("static", "upgrad", "pcgrad", "cagrad", "mgda", "imtlg", "aligned_mtl", "nash_mtl", "gradnorm")
TASKS = [{"name": n, "kind": "classification", "classes": 10, "loss": None, "metric": None} for n in ("left", "right")]


def config(family: str, scheme: str) -> dict[str, Any]:
    out = {
        "family": family, "tasks": TASKS, "seed": 0, "device": "cpu", "epochs": 1, "batch_size": 128,
        "backbone": {"name": "small_cnn", "weights": None, "options": {"widths": [16, 32, 64, 64]}},
        "input": {"channels": 1, "height": 36, "width": 36, "mean": [0.1], "std": [0.3]},
        "head": {"pool_size": 2, "hidden": 0}, "optimizer": "adam", "lr": 0.003, "loss_weighting": scheme,
    }
    if family == "hard_split":
        out["split_point"] = 2
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


def step_times(family: str, scheme: str, dataset: mm.MultiTaskData, steps: int) -> list[float]:
    cfg = config(family, scheme)
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = data()
    out: dict[str, Any] = {**machine(), "threads": args.threads, "steps": args.steps, "repeats": args.repeats,
                           "families": {}}
    for family in ("hard_split", "cross_stitch"):
        samples: dict[str, list[float]] = {s: [] for s in SCHEMES}
        for _ in range(args.repeats):
            for scheme in SCHEMES:
                samples[scheme] += step_times(family, scheme, dataset, args.steps)
        static = statistics.median(samples["static"])
        rows = {}
        for scheme in SCHEMES:
            median = statistics.median(samples[scheme])
            q = statistics.quantiles(samples[scheme], n=4)
            rows[scheme] = {"ms_per_step": 1000 * median, "iqr_ms": [1000 * q[0], 1000 * q[2]], "vs_static": median / static}
            print(f"{family:12} {scheme:12} {1000 * median:7.1f} ms/step  x{median / static:5.2f} of static", flush=True)
        out["families"][family] = rows
    print(f"wrote {write_result('aggregator_cost', out)}")


if __name__ == "__main__":
    main()
