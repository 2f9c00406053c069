"""Benchmark 1, trial overhead: a trial's training loop against a bare PyTorch loop.

    python bench/trial_overhead.py [--device cpu|cuda] [--threads 2] [--repeats 5]

Both train the same model (``mtl_models.build_model``), on the same data, batch size,
optimiser and device; they run one after the other, epoch by epoch, interleaved, so
load on the machine hits both alike. Three figures, each samples/s over the bare loop:

- ``trainer``: :class:`mtl_models.Trainer`'s epoch (data feed, loss weighting,
  per-task losses with missing labels masked, on-device loss sums) against the bare loop;
- ``trial``: a whole Ray Tune trial (``search.train_trial``: train, validate, report,
  checkpoint every epoch), its samples/s from Tune's reported epoch times against a
  bare loop that also validates each epoch;
- ``startup``: the wall time of a search of many one-epoch trials (``trials``, two
  at a time), each trial in a fresh Ray actor (a new process that imports torch and
  builds its optimiser, about 3 s on a laptop CPU) against actors reused from trial to
  trial (``reuse_actors``, what mtlsearch's Tuner runs do);
- on CUDA the ``trainer`` figure runs with the trial's defaults (bf16, channels_last)
  and the bare loop with the same.

Target: >= 0.95. Writes ``bench/results/trial_overhead[_cuda].json``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

import mtl_models as mm
from bench._common import machine, write_result


def make_data(n_train: int, n_val: int, size: int = 36, seed: int = 0) -> mm.MultiTaskData:
    """MultiMNIST-shaped random data: 1x36x36 uint8 images, two 10-class tasks."""
    g = torch.Generator().manual_seed(seed)
    tasks = [mm.TaskSpec("left", "classification", 10), mm.TaskSpec("right", "classification", 10)]
    splits = {}
    for name, n in (("train", n_train), ("val", n_val)):
        images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
        splits[name] = mm.Split(images, {t.name: torch.randint(0, 10, (n,), generator=g) for t in tasks})
    return mm.MultiTaskData(tasks, splits, description="bench")


def make_config(data: mm.MultiTaskData, batch_size: int, device: str, family: str) -> dict[str, Any]:
    config = {
        "family": family,
        "tasks": [t.to_dict() for t in data.tasks],
        "backbone": {"name": "small_cnn", "weights": None, "options": {"widths": [16, 32, 64, 64]}},
        "input": data.input_spec(),
        "head": {"pool_size": 2, "hidden": 0},
        "optimizer": "adam",
        "lr": 0.003,
        "epochs": 1,
        "batch_size": batch_size,
        "seed": 0,
        "device": device,
        "loss_weighting": "static",
        "loss_weights": {"left": 0.5, "right": 0.5},
        "loader": {"mode": "tensors", "num_workers": 0, "augment": []},
    }
    if family == "hard_split":
        config["split_point"] = 2
    return config


class BareLoop:
    """The same model and optimiser trained the plainest way: tensors on the device,
    a random permutation, forward, weighted cross-entropies, backward, step."""

    def __init__(self, config: dict[str, Any], data: mm.MultiTaskData, device: torch.device) -> None:
        torch.manual_seed(0)
        self.model = mm.build_model(config).to(device)
        self.device = device
        self.batch_size = config["batch_size"]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["lr"])
        self.train = self._to_device(data.splits["train"])
        self.val = self._to_device(data.splits["val"])
        self.autocast = mm.autocast_dtype(config, device)
        if config.get("channels_last") and device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    def _to_device(self, split: mm.Split) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return split.images.to(self.device), {k: v.to(self.device) for k, v in split.targets.items()}

    def epoch(self) -> None:
        images, targets = self.train
        self.model.train()
        for index in torch.randperm(len(images), device=self.device).split(self.batch_size):
            x = images[index].float().div_(255.0)
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                out = self.model(x)
                loss = sum(0.5 * F.cross_entropy(out[t].float(), y[index]) for t, y in targets.items())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    @torch.no_grad()
    def validate(self) -> None:
        images, targets = self.val
        self.model.eval()
        correct = {t: torch.zeros((), device=self.device) for t in targets}
        for index in torch.arange(len(images), device=self.device).split(self.batch_size * 2):
            out = self.model(images[index].float().div_(255.0))
            for t, y in targets.items():
                correct[t] += (out[t].argmax(1) == y[index]).sum()
        [c.item() for c in correct.values()]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def bench_trainer(config: dict[str, Any], data: mm.MultiTaskData, device: torch.device, repeats: int) -> dict[str, Any]:
    """Trainer epochs and bare epochs, interleaved; samples/s of each (medians)."""
    n = len(data.splits["train"])
    torch.manual_seed(0)
    trainer = mm.Trainer(mm.build_model(config), data, config, device=device)
    bare = BareLoop(config, data, device)
    trainer.train_epoch(), bare.epoch()  # warm-up (allocator, cudnn autotuning, lazy init)
    times: dict[str, list[float]] = {"trainer": [], "bare": []}
    for _ in range(repeats):
        times["bare"].append(timed(bare.epoch, device))
        times["trainer"].append(timed(trainer.train_epoch, device))
    rates = {k: n / statistics.median(v) for k, v in times.items()}
    return {"samples_per_s": rates, "epoch_s": times, "ratio": rates["trainer"] / rates["bare"]}


def bench_trial(config: dict[str, Any], data: mm.MultiTaskData, device: torch.device, epochs: int, cpus: int) -> dict[str, Any]:
    """A Ray Tune trial's reported epoch times (train + validate + report + checkpoint)
    against the bare loop's train + validate, timed just before and just after the trial."""
    import ray
    from ray import tune

    from search import train_trial

    n = len(data.splits["train"])
    torch.set_num_threads(cpus)
    bare = BareLoop(config, data, device)
    bare.epoch()

    def bare_epochs(k: int) -> list[float]:
        return [timed(lambda: (bare.epoch(), bare.validate()), device) for _ in range(k)]

    bare_times = bare_epochs(max(1, epochs // 2))  # bare epochs before and after the trial: both see the same load
    ray.init(num_cpus=cpus, num_gpus=1 if device.type == "cuda" else 0, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            trainable = tune.with_resources(
                tune.with_parameters(train_trial, data=data, baseline=None, cpus=cpus),
                {"cpu": cpus, "gpu": 1 if device.type == "cuda" else 0},
            )
            tuner = tune.Tuner(
                trainable,
                param_space={**config, "epochs": epochs},
                run_config=tune.RunConfig(storage_path=storage, name="overhead", verbose=0),
            )
            start = time.perf_counter()
            results = tuner.fit()
            trial_wall = time.perf_counter() - start
            frame = results[0].metrics_dataframe
    finally:
        ray.shutdown()
    epoch_times = frame["time_this_iter_s"].tolist()[1:]  # report to report: also checkpoint + report; epoch 1 warms up
    torch.set_num_threads(cpus)
    bare_times += bare_epochs(max(1, epochs // 2))
    trial_rate, bare_rate = n / statistics.median(epoch_times), n / statistics.median(bare_times)
    return {
        "samples_per_s": {"trial": trial_rate, "bare": bare_rate},
        "epoch_s": {"trial": epoch_times, "bare": bare_times},
        "trial_wall_s": trial_wall,
        "ratio": trial_rate / bare_rate,
    }


def bench_startup(config: dict[str, Any], data: mm.MultiTaskData, device: torch.device, trials: int, cpus: int) -> dict[str, Any]:
    """Wall seconds per trial of ``trials`` one-epoch trials, ``cpus`` at a time, with fresh
    actors and with reused ones (alternating twice, so load hits both alike)."""
    import ray
    from ray import tune

    from search import train_trial

    gpu = 1.0 / cpus if device.type == "cuda" else 0.0

    def search(reuse: bool) -> float:
        ray.init(num_cpus=cpus, num_gpus=1 if gpu else 0, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        try:
            with tempfile.TemporaryDirectory() as storage:
                tuner = tune.Tuner(
                    tune.with_resources(tune.with_parameters(train_trial, data=data, baseline=None, cpus=1),
                                        {"cpu": 1, "gpu": gpu}),
                    param_space={**config, "epochs": 1, "seed": tune.grid_search(list(range(trials)))},
                    tune_config=tune.TuneConfig(reuse_actors=reuse),
                    run_config=tune.RunConfig(storage_path=storage, name="startup", verbose=0),
                )
                start = time.perf_counter()
                tuner.fit()
                return (time.perf_counter() - start) / trials
        finally:
            ray.shutdown()

    times: dict[str, list[float]] = {"fresh": [], "reused": []}
    for _ in range(2):
        times["fresh"].append(search(False))
        times["reused"].append(search(True))
    fresh, reused = statistics.median(times["fresh"]), statistics.median(times["reused"])
    return {"trials": trials, "s_per_trial": times, "ratio_fresh_over_reused": fresh / reused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU); the trial gets as many CPUs")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs of each loop")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--family", default="hard_split", choices=["hard_split", "cross_stitch"])
    parser.add_argument("--no-trial", action="store_true", help="skip the Ray Tune trial and startup figures")
    parser.add_argument("--startup-trials", type=int, default=12, help="one-epoch trials of the startup figure")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible here.")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    data = make_data(args.n_train, args.n_train // 3)
    config = make_config(data, args.batch_size, args.device, args.family)
    result: dict[str, Any] = {"benchmark": "trial_overhead", **machine(), "args": vars(args), "target": 0.95}
    result["trainer"] = bench_trainer(config, data, device, args.repeats)
    print(f"Trainer loop: {result['trainer']['samples_per_s']['trainer']:.0f} samples/s, bare loop "
          f"{result['trainer']['samples_per_s']['bare']:.0f} samples/s -> ratio {result['trainer']['ratio']:.3f}")
    if not args.no_trial:
        result["trial"] = bench_trial(config, data, device, args.repeats + 1, args.threads)
        print(f"Ray Tune trial (train+val+report+checkpoint): {result['trial']['samples_per_s']['trial']:.0f} samples/s, "
              f"bare train+val {result['trial']['samples_per_s']['bare']:.0f} samples/s -> ratio {result['trial']['ratio']:.3f}")
        small = make_data(args.n_train // 6, args.n_train // 12)  # short trials: startup matters most there
        result["startup"] = bench_startup(config, small, device, args.startup_trials, args.threads)
        per = {k: statistics.median(v) for k, v in result["startup"]["s_per_trial"].items()}
        print(f"One-epoch trials, wall per trial: fresh actors {per['fresh']:.2f} s, reused actors "
              f"{per['reused']:.2f} s -> {result['startup']['ratio_fresh_over_reused']:.2f}x")
    path = write_result("trial_overhead" + ("_cuda" if args.device == "cuda" else ""), result)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
