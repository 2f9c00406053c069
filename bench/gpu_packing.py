"""GPU packing benchmark (not a test): is running k trials on one GPU worth it?

For each model and each k in ``--counts``, two measurements on one GPU:

- **packed**: a real Ray Tune run (``tune.Tuner``) of k trials with
  ``resources_per_trial = {"gpu": 1/k}``; each trial builds its model with
  ``mtl_models.build_model`` and trains it with ``mtl_models.Trainer`` on an in-memory
  ``MultiTaskData`` of random uint8 images (held on the GPU: ``loader.mode: tensors``),
  as a search trial does;
- **bare**: k plain PyTorch processes (multiprocessing), the same model, random data
  resident on the GPU, bf16 autocast, the same batch size: what the GPU gives without
  Ray, the Trainer or the data feed.

Every participant warms up, waits at a barrier (so all k start together), then trains
``--steps`` steps, timestamping every ``--chunk`` steps (after a device sync). The
aggregate throughput is the samples all k trained inside the **overlapping window**
(from the last start to the first finish, when all k were running; each timeline is
interpolated linearly between its timestamps) divided by the window's length.

    PYTHONPATH=. python bench/gpu_packing.py                                   # GPU: bench/results/gpu_packing.json
    PYTHONPATH=. python bench/gpu_packing.py --device cpu --models small_cnn \\
        --counts 1 2 --steps 2 --chunk 1 --warmup 1 --batch 8 --num-cpus 1     # smoke check of the code path

Ratios printed: packed k vs packed 1 (what packing gains over one trial per GPU),
bare k vs bare 1, and packed vs bare at the same k (what Ray + the Trainer cost).
Both sides train in the same precision and memory format (``--precision``,
``--channels-last``: the Trainer's ``config["precision"]``/``config["channels_last"]``).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mtl_models as mm  # noqa: E402
from bench._common import RESULTS, machine  # noqa: E402

TASKS = [
    {"name": "left", "kind": "classification", "classes": 10, "loss": None, "metric": None},
    {"name": "right", "kind": "classification", "classes": 10, "loss": None, "metric": None},
]
# The benchmarked models: the quickstart's CNN on MultiMNIST-sized inputs and ResNet-18 on 64x64 scenes.
MODELS: dict[str, dict[str, Any]] = {
    "small_cnn": {
        "backbone": {"name": "small_cnn", "weights": None, "options": {"widths": [16, 32, 64, 64]}},
        "input": {"channels": 1, "height": 36, "width": 36, "mean": [0.5], "std": [0.25]},
        "head": {"pool_size": 2, "hidden": 0},
        "split_point": 2,
    },
    "resnet18": {
        "backbone": {"name": "resnet18", "weights": None, "options": {}},
        "input": {"channels": 3, "height": 64, "width": 64, "mean": [0.5] * 3, "std": [0.25] * 3},
        "head": {"pool_size": 1, "hidden": 0},
        "split_point": 3,
    },
}


def model_config(model: str, args: argparse.Namespace, k: int) -> dict[str, Any]:
    """A complete trial config (as ``tests/conftest.py::make_config`` builds them): a hard
    split of the model, two 10-class tasks, the Trainer's precision and data feed."""
    m = MODELS[model]
    return {
        "family": "hard_split",
        "split_point": m["split_point"],
        "tasks": TASKS,
        "backbone": m["backbone"],
        "input": m["input"],
        "head": m["head"],
        "optimizer": "adam",
        "lr": 1e-3,
        "epochs": 1,
        "batch_size": args.batch,
        "seed": 0,
        "device": args.device,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "loader": {"mode": "tensors", "num_workers": 0, "augment": [], "gpu_share": 1.0 / k},
    }


def random_data(config: dict[str, Any], n_train: int, seed: int) -> mm.MultiTaskData:
    """Random uint8 images and labels in memory: ``n_train`` train rows, a few val rows."""
    g = torch.Generator().manual_seed(seed)
    shape = (config["input"]["channels"], config["input"]["height"], config["input"]["width"])
    specs = [mm.TaskSpec.from_dict(t) for t in config["tasks"]]
    splits = {}
    for name, n in (("train", n_train), ("val", 16)):
        images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
        targets = {s.name: torch.randint(0, s.classes, (n,), generator=g) for s in specs}
        splits[name] = mm.Split(images, targets)
    return mm.MultiTaskData(specs, splits, description="random")


def chunks_for(steps: int, chunk: int) -> int:
    return max(1, math.ceil(steps / chunk))


# --- packed: k Ray Tune trials on one GPU -------------------------------------------------


def packed_trial(config: dict[str, Any]) -> None:
    """One Tune trial: the project's model and Trainer; warm up, meet the others, train, report."""
    import ray
    from ray import tune

    bench = config["bench"]
    torch.set_num_threads(max(1, int(bench["cpus"])))
    chunk = bench["chunk"]
    data = random_data(config, chunk * config["batch_size"], seed=int(bench["rank"]))
    mm.seed_everything(int(config["seed"]))
    trainer = mm.Trainer(mm.build_model(config), data, config)  # one train_epoch = `chunk` steps
    for _ in range(chunks_for(bench["warmup"], chunk)):
        trainer.train_epoch()
    barrier = ray.get_actor(bench["barrier"])
    ray.get(barrier.arrive.remote())
    deadline = time.monotonic() + bench["barrier_timeout"]
    while not ray.get(barrier.ready.remote()):
        if time.monotonic() > deadline:
            raise TimeoutError("not all trials reached the barrier: do the k trials fit the Ray resources at once?")
        time.sleep(0.005)
    timeline = [(time.time(), 0)]
    samples = 0
    for _ in range(chunks_for(bench["steps"], chunk)):
        trainer.train_epoch()  # ends with a device sync (the epoch's mean losses go to the host)
        samples += chunk * config["batch_size"]
        timeline.append((time.time(), samples))
    rate = samples / (timeline[-1][0] - timeline[0][0])
    tune.report({"samples_per_s": rate, "timeline": json.dumps(timeline), "device_name": _device_name(trainer.device)})


def run_packed(model: str, k: int, args: argparse.Namespace, storage: Path) -> dict[str, Any]:
    import ray
    from ray import tune

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self, parties: int) -> None:
            self.parties, self.arrived = parties, 0

        def arrive(self) -> int:
            self.arrived += 1
            return self.arrived

        def ready(self) -> bool:
            return self.arrived >= self.parties

    name = f"gpu_packing_barrier_{uuid.uuid4().hex[:8]}"
    barrier = Barrier.options(name=name).remote(k)  # the trials find it by name
    cpus = cpus_per_participant(args, k)
    gpu = 1.0 / k if args.device == "cuda" else 0.0
    config = model_config(model, args, k)
    config["bench"] = {
        "rank": tune.grid_search(list(range(k))), "cpus": cpus, "chunk": args.chunk, "warmup": args.warmup,
        "steps": args.steps, "barrier": name, "barrier_timeout": args.barrier_timeout,
    }
    tuner = tune.Tuner(
        tune.with_resources(packed_trial, {"cpu": cpus, "gpu": gpu}),
        param_space=config,
        tune_config=tune.TuneConfig(max_concurrent_trials=k),
        run_config=tune.RunConfig(name=f"{model}_k{k}", storage_path=str(storage), verbose=0),
    )
    grid = tuner.fit()
    ray.kill(barrier)
    errors = [str(r.error) for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"packed {model} k={k}: {len(errors)} trial(s) failed: {errors[0]}")
    timelines = [json.loads(r.metrics["timeline"]) for r in grid]
    out = summarize(timelines)
    out["resources_per_trial"] = {"cpu": cpus, "gpu": gpu}
    return out


# --- bare: k plain PyTorch processes -------------------------------------------------------


def bare_worker(rank: int, config: dict[str, Any], settings: dict[str, Any], barrier: Any, queue: Any) -> None:
    """Plain PyTorch: the same model, random data on the device, autocast, no Trainer/Ray."""
    try:
        torch.set_num_threads(max(1, int(settings["cpus"])))
        torch.manual_seed(rank)
        device = torch.device(config["device"])
        model = mm.build_model(config).to(device).train()
        channels_last = mm.uses_channels_last(config, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = mm.make_optimizer(model.param_groups(), config)
        batch, chunk = int(config["batch_size"]), settings["chunk"]
        n = chunk * batch
        shape = (config["input"]["channels"], config["input"]["height"], config["input"]["width"])
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, device=device)
        specs = model.tasks
        labels = {s.name: torch.randint(0, s.classes, (n,), device=device) for s in specs}
        autocast = mm.autocast_dtype(config, device)

        def step() -> None:
            index = torch.randint(0, n, (batch,), device=device)
            x = images[index].float().div_(255.0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                outputs = model(x)
                loss = sum(s.kind_impl.loss(s, outputs[s.name], labels[s.name][index], None) for s in specs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        for _ in range(chunks_for(settings["warmup"], chunk) * chunk):
            step()
        sync()
        barrier.wait(timeout=settings["barrier_timeout"])
        timeline = [(time.time(), 0)]
        samples = 0
        for _ in range(chunks_for(settings["steps"], chunk)):
            for _ in range(chunk):
                step()
            sync()
            samples += chunk * batch
            timeline.append((time.time(), samples))
        queue.put((rank, timeline, None))
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which raises)
        queue.put((rank, None, f"{type(exc).__name__}: {exc}"))


def run_bare(model: str, k: int, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    config = model_config(model, args, k)
    settings = {"cpus": cpus_per_participant(args, k), "chunk": args.chunk, "warmup": args.warmup,
                "steps": args.steps, "barrier_timeout": args.barrier_timeout}
    procs = [ctx.Process(target=bare_worker, args=(r, config, settings, barrier, queue)) for r in range(k)]
    for p in procs:
        p.start()
    results, errors = {}, []
    try:
        for _ in range(k):
            rank, timeline, error = queue.get(timeout=args.barrier_timeout + 600)
            if error:
                errors.append(f"process {rank}: {error}")
            else:
                results[rank] = timeline
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    if errors:
        raise RuntimeError(f"bare {model} k={k}: {errors[0]}")
    return summarize([results[r] for r in sorted(results)])


# --- the numbers ---------------------------------------------------------------------------


def summarize(timelines: list[list[tuple[float, int]]]) -> dict[str, Any]:
    """Aggregate samples/s over the window in which all participants were training."""
    starts = [t[0][0] for t in timelines]
    ends = [t[-1][0] for t in timelines]
    lo, hi = max(starts), min(ends)
    overlapping = hi > lo
    if not overlapping:  # should not happen after the barrier; fall back to the whole span
        lo, hi = min(starts), max(ends)
    samples = 0.0
    for t in timelines:
        times, counts = np.array([p[0] for p in t]), np.array([p[1] for p in t], dtype=float)
        samples += float(np.interp(hi, times, counts) - np.interp(lo, times, counts))
    per = [t[-1][1] / (t[-1][0] - t[0][0]) for t in timelines]
    return {
        "aggregate_samples_per_s": samples / (hi - lo),
        "window_s": hi - lo,
        "overlapping": overlapping,
        "start_spread_s": max(starts) - min(starts),
        "per_participant_samples_per_s": per,
    }


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    def rate(side: str, k: str) -> float | None:
        entry = results.get(k, {}).get(side)
        return entry["aggregate_samples_per_s"] if entry else None

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {
        k: {
            "packed_vs_packed_1": div(rate("packed", k), rate("packed", "1")),
            "bare_vs_bare_1": div(rate("bare", k), rate("bare", "1")),
            "packed_vs_bare": div(rate("packed", k), rate("bare", k)),
        }
        for k in results
    }


def cpus_per_participant(args: argparse.Namespace, k: int) -> float:
    """Each of the k trials' CPUs: ``--cpus-per-trial``, at most an equal share of Ray's CPUs."""
    return round(min(args.cpus_per_trial, args.num_cpus / k), 4)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["small_cnn", "resnet18"])
    parser.add_argument("--counts", nargs="+", type=int, default=[1, 2, 4, 8], help="trials per GPU (k)")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per trial")
    parser.add_argument("--chunk", type=int, default=25, help="steps between timestamps (one Trainer epoch)")
    parser.add_argument("--warmup", type=int, default=25, help="untimed steps before the barrier")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                        help="config['precision'] and the bare side's autocast (default: bf16 on cuda, fp32 on cpu)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="config['channels_last'] and the bare side's memory format (default: on for cuda)")
    parser.add_argument("--num-cpus", type=float, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--cpus-per-trial", type=float, default=2.0,
                        help="CPUs per trial / bare process, at most num_cpus / k (default 2)")
    parser.add_argument("--barrier-timeout", type=float, default=600.0)
    parser.add_argument("--skip-bare", action="store_true", help="only the packed (Ray Tune) side")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file (default: bench/results/gpu_packing.json; gpu_packing_cpu_smoke.json on cpu)")
    args = parser.parse_args(argv)
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    if args.channels_last is None:
        args.channels_last = args.device == "cuda"
    if args.num_cpus is None:
        args.num_cpus = float(os.cpu_count() or 1)
    if args.out is None:
        args.out = RESULTS / ("gpu_packing.json" if args.device == "cuda" else "gpu_packing_cpu_smoke.json")
    args.chunk = max(1, min(args.chunk, args.steps))
    if min(args.counts) < 1:
        parser.error("--counts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_packing: --device cuda, but torch sees no CUDA GPU on this machine "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU machine, or check "
              "the code path here with --device cpu and tiny settings (see the module docstring).", file=sys.stderr)
        return 2
    import ray

    # Ray's workers inherit this environment: let them import mtl_models from this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(address="local", num_cpus=args.num_cpus, num_gpus=1 if args.device == "cuda" else 0,
             include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    storage = Path(tempfile.mkdtemp(prefix="gpu_packing_"))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.perf_counter()
    try:
        for model in args.models:
            results[model] = {}
            for k in args.counts:
                entry: dict[str, Any] = {"packed": run_packed(model, k, args, storage)}
                if not args.skip_bare:
                    entry["bare"] = run_bare(model, k, args)
                results[model][str(k)] = entry
                bare = entry.get("bare", {}).get("aggregate_samples_per_s")
                print(f"{model:10s} k={k}: packed {entry['packed']['aggregate_samples_per_s']:10.1f} samples/s"
                      + (f", bare {bare:10.1f} samples/s" if bare else ""), flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)

    report = {
        "benchmark": "gpu_packing",
        **machine(),
        "command": [sys.executable, *sys.argv],
        "settings": {
            "device": args.device, "models": args.models, "counts": args.counts, "steps": args.steps,
            "chunk": args.chunk, "warmup": args.warmup, "batch": args.batch, "precision": args.precision,
            "channels_last": args.channels_last, "ray_num_cpus": args.num_cpus,
            "cpus_per_trial": {str(k): cpus_per_participant(args, k) for k in args.counts},
            "model_configs": {m: model_config(m, args, 1) for m in args.models},
        },
        "results": {m: {"by_k": r, "ratios": ratios(r)} for m, r in results.items()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{'model':10s} {'k':>2s} {'packed/s':>11s} {'bare/s':>11s} {'packed k/1':>10s} "
          f"{'bare k/1':>9s} {'packed/bare':>11s}")
    fmt = lambda v, w, p=2: f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}s}"  # noqa: E731
    for model, r in report["results"].items():
        for k, entry in r["by_k"].items():
            q = r["ratios"][k]
            bare = entry.get("bare", {}).get("aggregate_samples_per_s")
            print(f"{model:10s} {k:>2s} {fmt(entry['packed']['aggregate_samples_per_s'], 11, 1)} {fmt(bare, 11, 1)} "
                  f"{fmt(q['packed_vs_packed_1'], 10)} {fmt(q['bare_vs_bare_1'], 9)} {fmt(q['packed_vs_bare'], 11)}")
    print(f"\nWritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
