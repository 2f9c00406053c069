"""Decoding image files to one ``(N, C, H, W)`` uint8 array, checked and cached on disk.

Every image is decoded (so a corrupt file is found before training, not in epoch 7)
and resized to the experiment's ``image_size``. The result is cached as one ``.npy``
file keyed by each image's path, size in bytes and modification time plus the
channels and size asked for: a second run with unchanged files memory-maps the cache
instead of decoding again, and touching or replacing any image invalidates it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._progress import report_progress
from ._errors import DataFileError, ProblemLog

log = logging.getLogger("mtlsearch.data")
PROGRESS_EVERY_S = 0.5  # a progress record at most this often while decoding (and one at the end of a long decode)

CACHE_VERSION = 1  # bump when decoding or resizing changes, so old caches are not reused
CACHE_ENV = "MTLSEARCH_CACHE_DIR"
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: about 0.25 GiB of 24-bit RGB


def header_pixels(path: Path) -> int | None:
    """Width x height as the file's header claims it, read without decoding; ``None`` when unknown.

    Pillow's ``Image.open`` is lazy: it parses the header only. Its own bomb check
    (which raises above twice its ``MAX_IMAGE_PIXELS``) is caught and its size read
    from the message, so the caller's limit is the one applied; a file Pillow cannot
    identify is left to the decoder, which reports it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:  # above twice Pillow's limit; its message has the size
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return int(found.group(1)) if found else 2 * int(Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS) + 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None
    return int(width) * int(height)


def default_cache_dir() -> Path:
    """``$MTLSEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mtlsearch/decoded`` (``~/.cache`` by default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mtlsearch" / "decoded"


@dataclass(frozen=True)
class ImageRef:
    """An image file and where it was named: data file, line and column (for errors)."""

    path: Path
    source: Path
    line: int | None = None
    column: int | None = 1
    name: str = "path"

    def error(self, message: str) -> DataFileError:
        return DataFileError(self.source, self.line, self.column, message, self.name)


def _stat(refs: Sequence[ImageRef], log_: ProblemLog) -> list[tuple[str, int, int] | None]:
    """Each image's (absolute path, bytes, mtime); ``None`` (and a problem) where unusable."""
    keys: list[tuple[str, int, int] | None] = []
    for ref in refs:
        try:
            st = ref.path.stat()
        except ValueError:  # a NUL byte in the path
            log_.add(ref.error(f"image path {str(ref.path)[:200]!r} is not a valid file name."))
            keys.append(None)
            continue
        except OSError:
            log_.add(ref.error(f"image {str(ref.path)!r} does not exist."))
            keys.append(None)
            continue
        if not ref.path.is_file():
            log_.add(ref.error(f"image {str(ref.path)!r} is not a file."))
            keys.append(None)
        elif st.st_size == 0:
            log_.add(ref.error(f"image {str(ref.path)!r} is empty (0 bytes)."))
            keys.append(None)
        else:
            keys.append((str(ref.path.resolve()), st.st_size, st.st_mtime_ns))
    return keys


def cache_key(files: list[tuple[str, int, int]], channels: int, size: Sequence[int]) -> str:
    """Hash of the images' (path, bytes, mtime) and the decoding settings."""
    blob = json.dumps({"v": CACHE_VERSION, "channels": channels, "size": list(size), "files": files})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def decode_file(path: Path, channels: int, size: Sequence[int], max_pixels: int | None = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """One image as ``(channels, H, W)`` uint8 at ``size``; raises ``ValueError`` saying why not.

    torchvision decodes PNG, JPEG, GIF and WebP; anything else (BMP, TIFF, ...) goes
    through Pillow. Grey images are repeated to RGB and alpha is dropped as asked.
    An image whose header claims more than ``max_pixels`` pixels (a decompression
    bomb: a small file that decodes to gigabytes) is refused before decoding;
    ``None`` turns the check off.
    """
    from torchvision.io import ImageReadMode, decode_image  # here: importing torchvision costs a second
    from torchvision.transforms.v2.functional import resize

    if max_pixels is not None:
        pixels = header_pixels(path)
        if pixels is not None and pixels > max_pixels:
            raise ImageTooLarge(
                f"its header claims {pixels:,} pixels, more than data.max_image_pixels = {max_pixels:,}; "
                "a decompression bomb? shrink the image or raise data.max_image_pixels"
            )
    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec's
            warnings.simplefilter("ignore", DeprecationWarning)
            image = decode_image(data, mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        image = _decode_with_pillow(path, channels, exc)
    if image.dtype != torch.uint8:  # 16-bit PNGs
        image = (image.float() * (255.0 / torch.iinfo(image.dtype).max)).round().to(torch.uint8)
    if tuple(image.shape[-2:]) != tuple(size):
        image = resize(image, list(size), antialias=True)
    return image


class ImageTooLarge(ValueError):
    """An image whose header claims more pixels than the limit (refused undecoded)."""


def _decode_with_pillow(path: Path, channels: int, first: Exception) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(first).strip().splitlines()[0] if str(first).strip() else type(first).__name__
        raise ValueError(f"{reason}; Pillow: {exc}") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def decode_images(
    refs: Sequence[ImageRef],
    channels: int,
    size: Sequence[int],
    problems: ProblemLog,
    cache_dir: Path | None = None,
    workers: int | None = None,
    validate_only: bool = False,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
) -> np.ndarray | None:
    """All ``refs`` decoded into ``(N, channels, H, W)`` uint8; ``None`` when any failed.

    Every failure is added to ``problems`` (located at the row that names the image).
    With ``cache_dir`` the array is a read-only memory map of the cache file, written
    on the first decode; without it, an in-memory array. ``validate_only`` decodes
    and drops each image (a check that holds no memory) and returns ``None``.
    An image whose header claims more than ``max_pixels`` pixels is refused undecoded.
    """
    size = tuple(int(s) for s in size)
    files = _stat(refs, problems)
    if validate_only or any(f is None for f in files):  # decode the others, to report every bad image at once
        _decode_into(None, [r for r, f in zip(refs, files) if f is not None], channels, size, problems, workers, max_pixels)
        return None
    shape = (len(refs), channels, *size)
    target: Path | None = None
    if cache_dir is not None:
        key = cache_key([f for f in files if f is not None], channels, size)
        target = Path(cache_dir) / f"{key}.npy"
        if target.is_file():
            cached = np.load(target, mmap_mode="r")
            if cached.shape == shape and cached.dtype == np.uint8:
                log.info("decoded images: cache hit %s (%d images)", target, len(refs))
                return cached
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.npy.tmp")
        out: np.ndarray = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    else:
        out = np.empty(shape, dtype=np.uint8)
    failed = _decode_into(out, refs, channels, size, problems, workers, max_pixels)
    if target is None:
        return None if failed else out
    out.flush()  # type: ignore[attr-defined]
    del out
    if failed:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, target)
    return np.load(target, mmap_mode="r")


def _decode_into(
    out: np.ndarray | None,
    refs: Sequence[ImageRef],
    channels: int,
    size: tuple[int, ...],
    problems: ProblemLog,
    workers: int | None,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
) -> bool:
    def one(i: int) -> DataFileError | None:
        ref = refs[i]
        try:
            image = decode_file(ref.path, channels, size, max_pixels)
            if out is not None:
                out[i] = image.numpy()
        except ImageTooLarge as exc:
            return ref.error(f"image {str(ref.path)!r} is too large: {exc}.")
        except (ValueError, RuntimeError, OSError) as exc:
            return ref.error(f"image {str(ref.path)!r} could not be decoded ({exc}).")
        return None

    workers = workers or min(8, os.cpu_count() or 1)
    started = last = time.monotonic()
    failed = False
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, err in enumerate(pool.map(one, range(len(refs)), chunksize=64), 1):
            if err is not None:
                problems.add(err)
                failed = True
            if time.monotonic() - last > PROGRESS_EVERY_S or (done == len(refs) and last > started):
                last = time.monotonic()
                report_progress(log, "decoding images", done, len(refs),
                                f"decoding images: {done}/{len(refs)} ({done / max(last - started, 1e-9):.0f}/s)")
    return failed
