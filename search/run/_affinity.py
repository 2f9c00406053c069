"""Task affinity as a stage of a run: TAG's lookahead affinity per stage, measured as a Ray
task with a trial's resources (the device, precision and data feed a trial would use),
saved as ``RUN/affinity.json``, its proposed branch trees handed to the search."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ray

from mtl_models import MultiTaskData, atomic_write_json
from mtl_models._affinity import AffinityResult, measure_affinity
from mtl_models._task_groups import shared_reason
from reports import AFFINITY_FILE


def affinity_in_ray(
    fixed: dict[str, Any], data: MultiTaskData, epochs: int, every: int, resources: dict[str, float],
    stage_names: list[str] | None = None, max_groups: int | None = None,
) -> dict[str, Any]:
    """Measure the affinity of ``fixed``'s tasks and backbone in a Ray task; return it as a dict
    (tasks, stage names, per-stage matrices, measured steps, proposed trees)."""
    task = ray.remote(_measure).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"])
    result = ray.get(task.remote(fixed, data, epochs, every, resources["cpu"], max_groups))
    if stage_names and len(stage_names) == len(result["stages"]):
        result["stages"] = list(stage_names)
    return result


def _measure(config: dict[str, Any], data: MultiTaskData, epochs: int, every: int, cpus: float,
             max_groups: int | None) -> dict[str, Any]:
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    result: AffinityResult = measure_affinity(config, data, epochs=epochs, every=every, max_groups=max_groups)
    return result.to_dict()


def save_affinity(run_dir: Path, result: dict[str, Any]) -> Path:
    path = Path(run_dir) / AFFINITY_FILE
    atomic_write_json(path, result)
    return path


def load_affinity(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / AFFINITY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def format_affinity(result: dict[str, Any]) -> str:
    """The matrices (each entry with its standard error over the measured steps), the
    proposed trees and, where a tree shares a stage, why (the CLI's output)."""
    tasks = result["tasks"]
    width = max(20, *(len(t) + 2 for t in tasks))
    lr_note = ""
    if result.get("lrs"):
        lr_note = f", {result.get('optimizer', 'adam')} at lr {min(result['lrs']):.2g}..{max(result['lrs']):.2g}"
    lines = [f"Task affinity (TAG lookahead, {result['steps']} steps measured over {result['epochs']} epoch(s)"
             f"{lr_note}): "
             "row i, column j = (1 - L_j after task i's optimiser step / L_j before) / lr, mean +- standard error "
             "(positive: i helps j)"]
    stderr = result.get("stderr") or [[[float("nan")] * len(tasks) for _ in tasks] for _ in result["affinity"]]
    blocks = list(zip(result["stages"], result["affinity"], stderr))
    if result.get("network"):
        nan = [[float("nan")] * len(tasks) for _ in tasks]
        blocks.append(("the whole shared trunk", result["network"], result.get("network_stderr") or nan))
    for stage, matrix, errors in blocks:
        lines.append(f"  {stage}:" if stage.startswith("the ") else f"  after {stage}:")
        lines.append("    " + " " * width + "".join(f"{t:>{width}}" for t in tasks))
        for name, row, err in zip(tasks, matrix, errors):
            cells = "".join(f"{f'{v:.3g} +- {e:.2g}':>{width}}" for v, e in zip(row, err))
            lines.append("    " + f"{name:<{width}}" + cells)
    lines.append("Proposed branch trees (per stage, the groups of tasks that share it), best affinity first:")
    stages = result["stages"]
    for i, tree in enumerate(result["trees"]):
        parts = " | ".join(" ".join("{" + ",".join(g) + "}" for g in part) for part in tree["branches"])
        lines.append(f"  {i}. {tree['name']}: {parts}  (score {tree['score']:.3g})")
        if tree.get("selection"):
            sel = tree["selection"]
            lines.append("       TAG selection: " + " ".join("{" + ",".join(g) + "}" for g in sel["groups"])
                         + f" (mean served affinity {sel['score']:.3g})")
        for why in tree.get("shared_within_noise", []):
            lines.append("       " + shared_reason(why, stages))
    return "\n".join(lines)
