"""What a model costs to deploy: parameters, FLOPs and inference latency.

Measured the same way for every trial and baseline, so the report can put Delta_m
against cost (a Pareto front) and ``mtlsearch select`` can filter by it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from . import results_table as rt
from .families import MultiTaskModel, count_parameters

_MIN_TIMED_MS = 50.0
# A cost as the results table names it (``device`` is ``cost_device`` there).
COST_COLUMNS = rt.COST_COLUMNS


@dataclass(frozen=True)
class Cost:
    """A model's cost at inference.

    ``flops``: floating-point operations for one image (a multiply-add counts 2, as
    ``torch.utils.flop_counter`` counts). ``latency_ms_b1`` / ``latency_ms_bN``:
    median wall-clock milliseconds of one forward pass on ``device`` for a batch of 1
    and of ``latency_batch`` images (the training batch size), after warm-up.
    """

    params: int
    flops: int
    latency_ms_b1: float
    latency_ms_bN: float
    latency_batch: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def columns(self) -> dict[str, Any]:
        """The cost under the results table's column names (:data:`COST_COLUMNS`)."""
        values = self.to_dict()
        values[rt.COST_DEVICE] = values.pop("device")
        return values


def count_flops(model: MultiTaskModel, input_shape: tuple[int, int, int]) -> int:
    """Floating-point operations of one forward pass on one ``(C, H, W)`` image."""
    device = next(model.parameters()).device
    x = torch.full((1, *input_shape), 0.5, device=device)  # values do not matter; keeps the RNG untouched
    was_training = model.training
    model.eval()
    # imported here: it imports triton (0.1 s), which a trial needs only once it measures
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    model: MultiTaskModel, input_shape: tuple[int, int, int], batch_size: int, warmup: int = 2, repeats: int = 5
) -> float:
    """Median milliseconds of one eval-mode forward pass on a ``(batch_size, C, H, W)`` batch.

    ``repeats`` timed passes at least, more for fast models (up to ``10 * repeats``,
    about 50 ms of timing), after ``warmup`` untimed ones.
    Runs on the model's device; on CUDA it synchronises around each timed pass.
    """
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be >= 1, got {batch_size} and {repeats}.")
    device = next(model.parameters()).device
    x = torch.full((batch_size, *input_shape), 0.5, device=device)
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    times: list[float] = []
    # At least ``repeats`` passes; fast models get more (up to 10x, about 50 ms in all) for a steadier median.
    while len(times) < repeats or (len(times) < 10 * repeats and sum(times) < _MIN_TIMED_MS):
        sync()
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return float(statistics.median(times))


def measure_cost(
    model: MultiTaskModel,
    input_spec: dict[str, Any],
    batch_size: int,
    warmup: int = 2,
    repeats: int = 5,
) -> Cost:
    """Parameters, FLOPs per image and latency at batch 1 and ``batch_size``, on the model's device.

    ``input_spec`` is the config's ``input`` (``channels``, ``height``, ``width``).
    Cheap: ``2 * warmup + 1`` forward passes and about 0.1 s of timed ones for a small model.
    """
    shape = (int(input_spec["channels"]), int(input_spec["height"]), int(input_spec["width"]))
    device = next(model.parameters()).device
    return Cost(
        params=count_parameters(model),
        flops=count_flops(model, shape),
        latency_ms_b1=measure_latency(model, shape, 1, warmup, repeats),
        latency_ms_bN=measure_latency(model, shape, int(batch_size), warmup, repeats),
        latency_batch=int(batch_size),
        device=str(device),
    )
