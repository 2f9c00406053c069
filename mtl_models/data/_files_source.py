"""The ``files`` source: the seed's data files (``_files`` reads them), declared once.

Its loader's signature is the ``data`` section's schema for ``source: files`` (defaults,
types, bounds, the checks that a file exists and that split fractions sum to 1); every
path is relative to the experiment file. :class:`FilesFacts` answers what is known before
the files are read: that one layout is given (files per split, or one file and a
``split``), the training rows (a count of lines) and whether ``split.stratify`` is a
classification task.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, Union

from annotated_types import Ge, Gt, Le, Lt
from typing_extensions import NotRequired, TypedDict

from .._registry import Check
from ..tasks import TaskSpec
from ._errors import DataFileError, ProblemLog
from ._files import SPLIT_NAMES, Row, Table, read_data_file, split_indices
from ._images import MAX_IMAGE_PIXELS, decode_images, default_cache_dir
from ._labels import label_format
from ._source import SourceFacts, register_source
from ._tensors import MultiTaskData, Split, tensor_from_numpy


def _a_file(path: Path) -> Path:
    try:
        exists = path.is_file()
    except OSError as exc:  # a name too long for the file system, ...
        raise ValueError(f"data file {str(path)[:200]!r} cannot be read ({exc.strerror})") from None
    if not exists:
        raise ValueError(f"data file {str(path)!r} does not exist")
    return path


class SplitFractions(TypedDict):
    """Fractions of one data file per split, the shuffling seed (default: the experiment's)
    and an optional stratifying classification task."""

    __pydantic_config__ = {"extra": "forbid"}  # type: ignore[misc]  (read by spaces' validation)

    train: Annotated[float, Gt(0.0), Le(1.0)]
    val: Annotated[float, Gt(0.0), Lt(1.0)]
    test: NotRequired[Annotated[float, Ge(0.0), Lt(1.0)]]
    seed: NotRequired[int | None]
    stratify: NotRequired[str | None]


def _sums_to_one(split: SplitFractions) -> SplitFractions:
    train, val, test = split["train"], split["val"], split.get("test", 0.0)
    total = train + val + test
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"train + val + test must be 1, got {train} + {val} + {test} = {total:g}")
    return split


_DataFile = Annotated[Path, Check(_a_file)]
_Side = Annotated[int, Gt(0)]


class FilesFacts(SourceFacts):
    """One layout of files; the rows a count of lines; ``split.stratify`` a classification task."""

    def check(self) -> None:
        if self.file is not None:
            if self.train or self.val or self.test:
                raise ValueError("data: give either file + split or train/val[/test] files, not both")
            if self.split is None:
                raise ValueError("data.split: one data file needs split fractions, e.g. {train: 0.6, val: 0.25, test: 0.15}")
        elif self.train is None or self.val is None:
            raise ValueError("data: give train and val files (test optional), or one file with split fractions")
        elif self.split is not None:
            raise ValueError("data.split: only used with data.file (one file to split)")

    def train_rows(self) -> int | None:
        """The training file's lines (less a header line), or the one file's times its train
        fraction: a count of newlines, not a parse (an estimate for sizing, never for training)."""
        path = self.train or self.file
        try:
            with open(path, "rb") as handle:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        except OSError:
            return None
        rows = max(lines - 1, 0)
        return int(rows * self.split["train"]) if self.file is not None and self.split is not None else rows

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        stratify = self.split.get("stratify") if self.split else None
        if stratify is None:
            return []
        by_name = {t.name: t for t in tasks}
        if stratify not in by_name:
            return [(None, f"data.split.stratify: {stratify!r} is not a task; allowed: {list(by_name)}")]
        if by_name[stratify].kind != "classification":
            return [(None, f"data.split.stratify: task {stratify!r} is {by_name[stratify].kind}; stratify by a classification task")]
        return []


@register_source("files", facts=FilesFacts)
def files(
    tasks: list[TaskSpec],
    train: _DataFile | None = None,
    val: _DataFile | None = None,
    test: _DataFile | None = None,
    file: _DataFile | None = None,
    split: Annotated[SplitFractions, Check(_sums_to_one)] | None = None,
    image_size: tuple[_Side, _Side] = (64, 64),
    channels: Literal[1, 3] = 3,
    delimiter: Literal["auto", "comma", "tab", "whitespace"] = "auto",
    header: Union[Literal["auto"], bool] = "auto",
    ignore_columns: Sequence[str] = (),
    cache: bool = True,
    cache_dir: Path | None = None,
    max_image_pixels: Annotated[int, Gt(0)] = MAX_IMAGE_PIXELS,
) -> MultiTaskData:
    """Data files: one per split (``train``, ``val``, optional ``test``), or one ``file`` and a ``split``.

    ``split`` is ``{train: 0.6, val: 0.25, test: 0.15, seed: 0, stratify: task}``
    (``stratify`` optional: a class-index task). Images are decoded once and cached
    under ``cache_dir`` (default :func:`default_cache_dir`) unless ``cache`` is false.
    Raises :class:`DataErrors` listing every problem found.
    """
    problems = ProblemLog()
    options = {"delimiter": delimiter, "header": header, "ignore_columns": ignore_columns}
    split_rows: dict[str, tuple[Table, list[Row]]] = {}
    if file is not None:
        table = read_data_file(Path(file), tasks, problems, **options)
        split = dict(split or {})
        fractions = {n: float(split.get(n, 0.0)) for n in SPLIT_NAMES if float(split.get(n, 0.0)) > 0}
        stratify = split.get("stratify")
        strata = [row.labels[stratify] for row in table.rows] if stratify else None
        chosen = split_indices(len(table.rows), fractions, int(split.get("seed", 0)), strata)
        for name, index in chosen.items():
            if table.rows and len(index) == 0:
                problems.add(
                    DataFileError(
                        table.path, None, None,
                        f"split {name!r} is empty: {len(table.rows)} rows x {fractions[name]} rounds to 0; "
                        "add rows or change data.split.",
                    )
                )
            split_rows[name] = (table, [table.rows[i] for i in index])
    else:
        for name, p in (("train", train), ("val", val), ("test", test)):
            if p is not None:
                table = read_data_file(Path(p), tasks, problems, **options)
                split_rows[name] = (table, table.rows)
    for name, (table, rows) in split_rows.items():
        _labelled_everywhere(table.path, name, rows, tasks, table, problems)
    if not problems:  # judged on whole files only: a row left out for a bad label would skew it
        for name, (table, rows) in split_rows.items():
            _more_than_one_class(table.path, name, rows, tasks, table, problems)
    size = tuple(int(s) for s in image_size)
    if problems:  # check every image anyway, so one pass reports every problem
        refs = {row.image: None for _, rows in split_rows.values() for row in rows}
        decode_images(list(refs), channels, size, problems, validate_only=True, max_pixels=max_image_pixels)
        problems.raise_if_any()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    arrays = {
        name: decode_images([row.image for row in rows], channels, size, problems, cache_dir=directory if cache else None, max_pixels=max_image_pixels)
        for name, (_, rows) in split_rows.items()
    }
    problems.raise_if_any()
    splits = {}
    for name, (table, rows) in split_rows.items():
        array = arrays[name]
        targets = {spec.name: label_format(spec).tensor(spec, [row.labels[spec.name] for row in rows]) for spec in tasks}
        images_file = getattr(array, "filename", None)
        splits[name] = Split(tensor_from_numpy(array), targets, str(images_file) if images_file else None)
    sources = sorted({str(table.path) for table, _ in split_rows.values()})
    data = MultiTaskData(
        tasks,
        splits,
        description=f"data files {', '.join(sources)}",
        extra={"warnings": _duplicate_warnings(split_rows), "files": sources},
    )
    return data


def _labelled_everywhere(path: Path, split_name: str, rows: list[Row], tasks: list[TaskSpec], table: Table, problems: ProblemLog) -> None:
    """A task with no label at all in train or val cannot be trained or scored."""
    if split_name not in ("train", "val") or not rows:
        return
    for spec in tasks:
        fmt = label_format(spec)
        if all(_is_missing(row.labels[spec.name], fmt.missing) for row in rows):
            col = table.columns[spec.name][0]
            problems.add(
                DataFileError(
                    path, None, col + 1,
                    f"task {spec.name!r} has no labelled row in the {split_name} split; "
                    "its loss and metric would be undefined.",
                    spec.name,
                )
            )


SINGLE_CLASS_KINDS = ("classification", "binary")


def _more_than_one_class(path: Path, split_name: str, rows: list[Row], tasks: list[TaskSpec], table: Table, problems: ProblemLog) -> None:
    """A class task whose labelled train or val rows are all one class cannot be learned or scored.

    Trained anyway, it reaches accuracy 1 by always answering that class, with F1 0:
    a number that looks like a result. Refused, naming the class found.
    """
    if split_name not in ("train", "val") or not rows:
        return
    for spec in tasks:
        if spec.kind not in SINGLE_CLASS_KINDS:
            continue
        fmt = label_format(spec)
        values = [row.labels[spec.name] for row in rows if not _is_missing(row.labels[spec.name], fmt.missing)]
        found = sorted({int(v[0] if isinstance(v, list) else v) for v in values})
        if len(found) == 1:
            col = table.columns[spec.name][0]
            problems.add(
                DataFileError(
                    path, None, col + 1,
                    f"task {spec.name!r} has a single class in the {split_name} split: all {len(values)} labelled "
                    f"row(s) are class {found[0]}; a model would learn (or be scored on) nothing. "
                    "Add rows of the other class(es), or drop the task.",
                    spec.name,
                )
            )


def _is_missing(value: Any, missing: Any) -> bool:
    """Whether a parsed label is the format's missing value (-1, or NaN: ``v != v``)."""
    values = value if isinstance(value, list) else [value]
    return all(v != v or v == missing for v in values)


def _duplicate_warnings(split_rows: dict[str, tuple[Table, list[Row]]]) -> list[str]:
    out = []
    seen: dict[Path, str] = {}
    for name, (_, rows) in split_rows.items():
        paths = [row.image.path.resolve() for row in rows]
        repeated = len(paths) - len(set(paths))
        if repeated:
            out.append(f"{name}: {repeated} row(s) repeat an image already listed in the same split.")
        across: dict[str, list[Path]] = {}
        for p in set(paths):
            if p in seen:
                across.setdefault(seen[p], []).append(p)
            else:
                seen[p] = name
        for other, dupes in across.items():
            out.append(f"{len(dupes)} image(s) are in both {other} and {name} (e.g. {str(sorted(dupes)[0])!r}): a leak between splits?")
    return out
