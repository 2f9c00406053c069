"""Procedural multi-attribute scenes (dSprites-like), any size and resolution, no download.

Each image shows 1..``max_objects`` non-overlapping objects on a shaded background:
one large *main* object (half-size 20-32 % of the image) and smaller distractors
(8-16 %), each a square, circle, triangle or cross with a random rotation, one of six
colours, a depth (distractors float in front of the main object) and light shading
(circles are shaded as spheres, so the depth map bulges there). Gaussian pixel noise
on top. Rendering is vectorised in torch, one patch per object (10,000 64x64 images
in 2-4 s on two CPU cores), and deterministic in ``seed``; each split draws from its
own stream, so ``n_train`` does not change the validation images.

Tasks (``TASKS``), chosen to be related to different degrees, so that where a
network should split is a real question and not always the first or last stage:

- ``colour`` (classification, 6): the main object's colour; per-pixel, low-level.
- ``shape`` (classification, 4): the main object's shape; mid-level edges/corners,
  invariant to colour, so it shares early features with ``colour`` but not late ones.
- ``size`` (regression): the main object's half-size as a fraction of the image.
- ``position`` (regression, 2): the main object's centre ``(x, y)`` in [0, 1];
  needs the spatial layout that global pooling discards.
- ``count`` (classification, ``max_objects``): label ``k`` means ``k + 1`` objects;
  a global quantity over all objects, unrelated to the main object's attributes.
- ``mask`` (segmentation, 5): per pixel, 0 for background, else the front object's
  shape + 1; the dense counterpart of ``shape`` (target ``(N, H, W)`` long).
- ``depth`` (dense_regression, 1): per pixel depth in [0, 1], background 1; related
  to ``mask`` and ``size`` (target ``(N, 1, H, W)`` float).
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Sequence, Union

import numpy as np
import torch
from annotated_types import Ge, Gt, Le, Lt
from torch import Tensor

from .._registry import Check
from ..tasks import TaskSpec
from ._source import SourceFacts, missing_rate_problems, register_source
from ._tensors import MultiTaskData, Split

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "magenta": (0.85, 0.20, 0.85),
    "cyan": (0.15, 0.85, 0.90),
}
MAIN_SIZE = (0.20, 0.32)
DISTRACTOR_SIZE = (0.08, 0.16)
_CHUNK = 1024  # images rendered at once
_NOISE_BANK = 64
_SPLITS = ("train", "val", "test")


def scene_tasks(max_objects: int = 3) -> dict[str, tuple[tuple[str, ...], int]]:
    """Each scenes task: the task kinds it may be declared as, and its ``classes``."""
    return {
        "colour": (("classification",), len(COLOURS)),
        "shape": (("classification",), len(SHAPES)),
        "size": (("regression",), 1),
        "position": (("regression",), 2),
        "count": (("classification", "regression"), max_objects),
        "mask": (("segmentation",), len(SHAPES) + 1),
        "depth": (("dense_regression",), 1),
    }


TASKS = tuple(scene_tasks())


def check_scene_tasks(tasks: Sequence[TaskSpec], max_objects: int) -> list[str]:
    """Problems with ``tasks`` for this generator, one message per bad task (empty when fine)."""
    known = scene_tasks(max_objects)
    problems = []
    for spec in tasks:
        if spec.name not in known:
            problems.append(f"scenes has no task {spec.name!r}; allowed: {', '.join(known)}")
            continue
        kinds, classes = known[spec.name]
        if spec.kind not in kinds:
            problems.append(f"scenes task {spec.name!r} is kind {' or '.join(kinds)}, not {spec.kind!r}")
        elif spec.kind == "regression" and spec.name == "count":
            if (spec.classes or 1) != 1:
                problems.append(f"scenes task 'count' as regression has 1 value; got classes={spec.classes}")
        elif (spec.classes or 1) != classes:
            what = "classes" if spec.kind in ("classification", "segmentation") else "values"
            problems.append(f"scenes task {spec.name!r} has {classes} {what}; set classes: {classes} (got {spec.classes})")
    return problems


def _sample(rng: np.random.Generator, n: int, k: int, aspect: float) -> dict[str, np.ndarray]:
    """Object parameters ``(n, k)``: sizes, non-overlapping centres, shapes, colours, depths."""
    r = np.concatenate([rng.uniform(*MAIN_SIZE, (n, 1)), rng.uniform(*DISTRACTOR_SIZE, (n, k - 1))], axis=1)
    present = np.ones((n, k), dtype=bool)
    present[:, 1:] = rng.integers(1, k + 1, n)[:, None] > np.arange(1, k)[None, :]
    # r is relative to the shorter side; centres keep each object inside the image
    rx, ry = r * min(1.0, 1.0 / aspect), r * min(1.0, aspect)
    cx, cy = rng.uniform(rx, 1 - rx), rng.uniform(ry, 1 - ry)
    for _ in range(100):  # rejection, vectorised over images: resample objects that touch an earlier one
        dx = (cx[:, :, None] - cx[:, None, :]) / min(1.0, 1.0 / aspect)
        dy = (cy[:, :, None] - cy[:, None, :]) / min(1.0, aspect)
        close = np.hypot(dx, dy) < 1.15 * (r[:, :, None] + r[:, None, :])  # 1.15: >= every shape's outer radius
        close &= np.tril(np.ones((k, k), dtype=bool), -1)[None] & present[:, :, None] & present[:, None, :]
        bad = close.any(axis=2)
        if not bad.any():
            break
        cx = np.where(bad, rng.uniform(rx, 1 - rx), cx)
        cy = np.where(bad, rng.uniform(ry, 1 - ry), cy)
    else:
        present &= ~bad  # still touching after 100 draws: drop that distractor (never the main object)
    z = np.concatenate([rng.uniform(0.55, 0.8, (n, 1)), rng.uniform(0.2, 0.5, (n, k - 1))], axis=1)
    return {
        "r": r, "cx": cx, "cy": cy, "present": present, "z": z,
        "shape": rng.integers(0, len(SHAPES), (n, k)),
        "colour": rng.integers(0, len(COLOURS), (n, k)),
        "theta": rng.uniform(0, 2 * math.pi, (n, k)),
        "background": rng.uniform(0.1, 0.35, (n, 1)) + rng.uniform(-0.05, 0.05, (n, 3)),
        "gradient": rng.uniform(-0.15, 0.15, (n, 2)),
    }


def _inside(shape: int, u: Tensor, v: Tensor, r: Tensor) -> Tensor:
    """Whether each point ``(u, v)`` (in the object's rotated frame) is inside ``SHAPES[shape]``."""
    if shape == 1:
        return u * u + v * v <= r * r
    au, av = u.abs(), v.abs()
    if shape == 0:
        return torch.maximum(au, av) <= 0.8 * r
    if shape == 2:
        return (v <= 0.5 * r) & (math.sqrt(3) * au <= v + r)
    third = r / 3
    return ((au <= third) & (av <= r)) | ((av <= third) & (au <= r))


def _draw(
    p: dict[str, Tensor], objects: Tensor, size: float, height: int, width: int, buffers: dict[str, Tensor]
) -> None:
    """Draw ``objects`` (rows of ``(image, slot)``) into ``buffers`` within a patch around each.

    Objects never overlap (see ``_sample``), so each pixel is written at most once and
    no depth test is needed; rendering only a patch per object, one shape at a time,
    is what makes this fast.
    """
    side = min(height, width)
    patch = min(int(math.ceil(2 * 1.15 * size * side)) + 2, height, width)
    grid = torch.arange(patch)
    palette = torch.tensor(list(COLOURS.values()))
    kinds = p["shape"][objects[:, 0], objects[:, 1]]
    for shape in range(len(SHAPES)):
        chosen = objects[kinds == shape]
        if len(chosen) == 0:
            continue
        b, k = chosen[:, 0], chosen[:, 1]
        cx, cy = p["cx"][b, k] * width, p["cy"][b, k] * height  # pixels
        ox = (cx - patch / 2).floor().long().clamp(0, width - patch)
        oy = (cy - patch / 2).floor().long().clamp(0, height - patch)
        px = (ox[:, None] + grid)[:, None, :]  # (M, 1, P)
        py = (oy[:, None] + grid)[:, :, None]  # (M, P, 1)
        dx = (px + 0.5 - cx[:, None, None]) / side
        dy = (py + 0.5 - cy[:, None, None]) / side
        theta = p["theta"][b, k]
        cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        r = p["r"][b, k][:, None, None]
        inside = _inside(shape, u, v, r)
        m = inside.nonzero(as_tuple=True)[0]  # object of each inside pixel
        ui, vi, ri = u[inside], v[inside], r.expand_as(u)[inside]
        if shape == 1:  # a sphere: shaded and bulging towards the viewer
            sphere = (1.0 - (ui * ui + vi * vi) / (ri * ri)).clamp_min(0.0).sqrt()
            shade, depth = 0.55 + 0.45 * sphere, p["z"][b, k][m] - 0.5 * ri * sphere
        else:  # a slightly tilted plane
            shade, depth = 0.9 - 0.1 * vi / ri, p["z"][b, k][m] - 0.03 * ui / ri
        where = ((b[:, None, None] * height + py) * width + px)[inside]  # pixel index into (B*H*W)
        buffers["rgb"].index_put_((where,), palette[p["colour"][b, k][m]] * shade[:, None])
        if "mask" in buffers:
            buffers["mask"].index_put_((where,), torch.full((len(where),), shape + 1, dtype=torch.uint8))
            buffers["depth"].index_put_((where,), depth)


def _render(
    p: dict[str, Tensor], height: int, width: int, noise: Tensor | None, dense: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Images ``(B, 3, H, W)`` uint8 and, when ``dense``, the shape mask ``(B, H, W)`` and depth ``(B, 1, H, W)``.

    Colours are worked in 0..255 with the 0.5 of rounding folded into the
    background, so quantising is one add, one clamp and one cast.
    """
    n = p["r"].shape[0]
    ys = ((torch.arange(height) + 0.5) / height - 0.5).view(1, height, 1, 1)
    xs = ((torch.arange(width) + 0.5) / width - 0.5).view(1, 1, width, 1)
    gx, gy = p["gradient"][:, 0].view(-1, 1, 1, 1), p["gradient"][:, 1].view(-1, 1, 1, 1)
    rgb = (p["background"].view(-1, 1, 1, 3) + gx * xs + gy * ys).reshape(-1, 3)  # channels last, in [0, 1]
    buffers = {"rgb": rgb}
    if dense:
        buffers["mask"] = torch.zeros(n * height * width, dtype=torch.uint8)
        buffers["depth"] = torch.ones(n * height * width)
    present = p["present"].clone()
    main = present[:, :1].nonzero()
    present[:, 0] = False
    _draw(p, main, MAIN_SIZE[1], height, width, buffers)
    _draw(p, present.nonzero(), DISTRACTOR_SIZE[1], height, width, buffers)
    image = buffers["rgb"].view(n, height, width, 3).permute(0, 3, 1, 2).mul(255.0)
    image = image.add_(noise if noise is not None else 0.5).clamp_(0.0, 255.0).to(torch.uint8)  # noise holds the 0.5
    if not dense:
        return image, None, None
    return image, buffers["mask"].view(n, height, width), buffers["depth"].view(n, 1, height, width)


def generate_scenes(
    n: int,
    height: int = 64,
    width: int = 64,
    max_objects: int = 3,
    noise: float = 0.04,
    seed: int = 0,
    stream: int = 0,
    dense: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``n`` scenes: images ``(n, 3, H, W)`` uint8 and every task's targets (see module doc).

    ``dense=False`` skips the ``mask`` and ``depth`` targets (they cost more memory
    than the images). ``stream`` selects an independent stream of the same ``seed``.
    """
    seeds = np.random.SeedSequence([seed, stream])
    rng = np.random.default_rng(seeds)
    params = _sample(rng, n, max_objects, width / height)
    images = torch.empty((n, 3, height, width), dtype=torch.uint8)
    mask = torch.empty((n, height, width), dtype=torch.uint8) if dense else None
    depth = torch.empty((n, 1, height, width), dtype=torch.float32) if dense else None
    bank = None
    if noise > 0:  # a bank of noise fields (in 0..255, plus the rounding 0.5), one picked per image
        gen = torch.Generator().manual_seed(int(seeds.generate_state(1)[0]))
        bank = (255.0 * noise) * torch.randn((_NOISE_BANK, 3, height, width), generator=gen) + 0.5
    pick = torch.from_numpy(rng.integers(0, _NOISE_BANK, n))

    def chunk(start: int) -> None:
        stop = min(start + _CHUNK, n)
        part = {k: torch.from_numpy(v[start:stop]) for k, v in params.items()}
        part = {k: v.float() if v.is_floating_point() else v.long() if v.dtype != torch.bool else v for k, v in part.items()}
        chunk_noise = bank[pick[start:stop]] if bank is not None else None
        images[start:stop], chunk_mask, chunk_depth = _render(part, height, width, chunk_noise, dense)
        if dense:
            mask[start:stop], depth[start:stop] = chunk_mask, chunk_depth  # type: ignore[index]

    # chunks in parallel threads (torch releases the GIL), each op single-threaded: many
    # small ops scale better this way than through torch's intra-op threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1))) as pool:
            list(pool.map(chunk, range(0, n, _CHUNK)))
    finally:
        torch.set_num_threads(threads)
    present = torch.from_numpy(params["present"])
    targets = {
        "colour": torch.from_numpy(params["colour"][:, 0]).long(),
        "shape": torch.from_numpy(params["shape"][:, 0]).long(),
        "size": torch.from_numpy(params["r"][:, 0]).float(),
        "position": torch.from_numpy(np.stack([params["cx"][:, 0], params["cy"][:, 0]], axis=1)).float(),
        "count": present.sum(dim=1).long() - 1,
    }
    if dense:
        targets["mask"], targets["depth"] = mask.long(), depth  # type: ignore[union-attr]
    return images, targets


def _hide(target: Tensor, rate: float, rng: np.random.Generator) -> Tensor:
    hide = torch.from_numpy(rng.random(len(target)) < rate).view(-1, *([1] * (target.dim() - 1)))
    missing = math.nan if target.is_floating_point() else -1
    return target.masked_fill(hide, missing)


def _at_least_8(size: int | tuple[int, int]) -> int | tuple[int, int]:
    if min((size, size) if isinstance(size, int) else size) < 8:
        raise ValueError(f"scenes images need at least 8 pixels a side, got {size}")
    return size


class ScenesFacts(SourceFacts):
    """The tasks :func:`scene_tasks` lists, with their kinds and classes."""

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        out: list[tuple[int | None, str]] = []
        for i, spec in enumerate(tasks):
            out += [(i, msg) for msg in check_scene_tasks([spec], self.max_objects)]
        return out + missing_rate_problems(self.missing_rate, tasks)

    def task_effects(self, spec: TaskSpec) -> dict[str, str]:
        return {
            "position": {"mirror": "it is the main object's (x, y)", "shift": "it is the main object's (x, y)"},
            "colour": {"intensity": "it is the main object's colour"},
        }.get(spec.name, {})


_Side = Annotated[int, Gt(0)]


@register_source("scenes", facts=ScenesFacts)
def scenes(
    tasks: list[TaskSpec],
    n_train: Annotated[int, Gt(0)] = 8000,
    n_val: Annotated[int, Gt(0)] = 1000,
    n_test: Annotated[int, Ge(0)] = 1000,
    image_size: Annotated[Union[_Side, tuple[_Side, _Side]], Check(_at_least_8)] = 64,
    max_objects: Annotated[int, Ge(1), Le(6)] = 3,
    noise: Annotated[float, Ge(0.0)] = 0.04,
    seed: int = 0,
    missing_rate: dict[str, Annotated[float, Ge(0.0), Lt(1.0)]] | None = None,
) -> MultiTaskData:
    """Generated scenes; ``missing_rate[task]`` hides that share of the task's train labels."""
    problems = check_scene_tasks(tasks, max_objects)
    if problems:
        raise ValueError("scenes: " + "; ".join(problems) + ".")
    if not 1 <= max_objects <= 6:
        raise ValueError(f"scenes: max_objects must be in 1..6, got {max_objects}.")
    height, width = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    if min(height, width) < 8:
        raise ValueError(f"scenes: image_size must be at least 8 pixels, got {image_size}.")
    splits = {}
    hide_rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    for stream, (name, n) in enumerate(zip(_SPLITS, (n_train, n_val, n_test))):
        if n <= 0:
            continue
        dense = any(t.name in ("mask", "depth") for t in tasks)
        images, targets = generate_scenes(n, height, width, max_objects, noise, seed, stream, dense)
        targets = {t.name: targets[t.name] for t in tasks}
        for spec in tasks:
            if spec.name == "count" and spec.kind == "regression":
                targets["count"] = targets["count"].float() + 1.0  # regressed: the number of objects itself
        if name == "train":
            for task, rate in (missing_rate or {}).items():
                targets[task] = _hide(targets[task], rate, hide_rng)
        splits[name] = Split(images, targets)
    return MultiTaskData(
        tasks,
        splits,
        description=f"scenes ({height}x{width}, up to {max_objects} objects, seed {seed})",
        extra={"generator": {"height": height, "width": width, "max_objects": max_objects, "noise": noise, "seed": seed}},
    )
