"""Data benchmarks (not tests): scenes generation speed, decode cache, feed throughput.

    PYTHONPATH=. python bench/data_bench.py [--images 4000] [--threads 2]

Prints wall and CPU seconds; CPU seconds are the fairer figure on a shared machine.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torchvision.io import encode_jpeg

import mtl_models as mm
from mtl_models.data import generate_scenes, make_feeds


class Timer:
    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} s wall, {self.cpu:.2f} s CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4000, help="JPEG files for the decode-cache benchmark")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    generate_scenes(64, 64, 64)
    for dense in (False, True):
        with Timer() as t:
            generate_scenes(10_000, 64, 64, seed=0, dense=dense)
        print(f"scenes: 10,000 64x64 images{' + mask + depth' if dense else ''}: {t}")

    tasks = [mm.TaskSpec("a", "classification", 2), mm.TaskSpec("b", "regression")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, targets = generate_scenes(args.images, 218, 178, seed=1, dense=False)  # CelebA-sized JPEGs
        rows = []
        for i in range(args.images):
            (root / f"{i:06d}.jpg").write_bytes(encode_jpeg(images[i], quality=90).numpy().tobytes())
            rows.append(f"{i:06d}.jpg {int(targets['shape'][i]) % 2} {float(targets['size'][i]):.4f}")
        (root / "all.txt").write_text("\n".join(rows) + "\n")
        options = dict(file=root / "all.txt", split={"train": 0.8, "val": 0.2}, image_size=(64, 64), cache_dir=root / "cache")
        with Timer() as first:
            mm.load_data("files", tasks, **options)
        with Timer() as second:
            data = mm.load_data("files", tasks, **options)
        print(f"files: {args.images} 178x218 JPEGs -> 64x64, first run (decode + cache): {first}")
        print(f"files: second run (cache hit): {second}  ({first.wall / second.wall:.0f}x faster)")

        for mode in ("tensors", "stream"):
            feeds = make_feeds(data, ["a", "b"], "cpu", {"mode": mode, "num_workers": 2 if mode == "stream" else 0})
            g = torch.Generator().manual_seed(0)
            list(feeds["train"].batches(256, True, g))
            with Timer() as t:
                n = sum(len(x) for x, _ in feeds["train"].batches(256, True, g))
            print(f"feed {mode:7s}: one epoch of {n} images, batch 256, CPU: {t} ({n / t.wall:,.0f} images/s)")


if __name__ == "__main__":
    main()
