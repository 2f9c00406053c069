"""The seed's data files as people write them: ``path, label_task1, label_task2, ...``.

Accepted spellings (seed 000's Caffe image lists, seed 002's ``train.txt``):

- any file name (``train.txt``, ``val.csv``, ...); one file per split, or one file
  split by ratio (``split``: e.g. 60/25/15, seeded, optionally stratified by a task);
- comma, tab or whitespace separated (``auto`` looks at the first row); blank lines
  and lines starting with ``#`` are skipped; a UTF-8 byte-order mark is ignored;
- with a header row (first cell ``path``/``image``/``file``/``filename``, or any cell
  naming a task; columns may come in any order) or without one (columns in the
  order of the experiment's ``tasks``);
- image paths relative to the data file, absolute, or starting with ``~``;
- labels in the task kind's format (see ``_labels.py``): a class index with ``-1`` or
  empty for missing, numbers with empty or ``nan`` for missing; a task with ``k``
  values takes ``k`` columns (header names ``name.0 .. name.{k-1}``).

Every row is checked before anything is decoded for training: all problems are
collected and raised together (:class:`DataErrors`), each naming file, line and column.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..tasks import TaskSpec
from ._errors import DataFileError, ProblemLog
from ._images import ImageRef
from ._labels import LabelError, label_format

PATH_WORDS = ("path", "image", "file", "filename", "image_path", "img", "images")
DELIMITERS = {"comma": ",", "tab": "\t", "whitespace": None}
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Row:
    """One data row: its line, its image and each task's parsed label."""

    line: int
    image: ImageRef
    labels: dict[str, Any]


@dataclass
class Table:
    """A parsed data file: rows that passed, and whether the file had a header."""

    path: Path
    rows: list[Row] = field(default_factory=list)
    header: bool = False
    columns: dict[str, list[int]] = field(default_factory=dict)  # task -> 0-based cell indices


def _read_lines(path: Path, problems: ProblemLog) -> list[tuple[int, str]] | None:
    if not path.exists():
        problems.add(DataFileError(path, None, None, "data file does not exist."))
        return None
    if not path.is_file():
        problems.add(DataFileError(path, None, None, "data file is not a file."))
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.add(DataFileError(path, line, None, f"not UTF-8 text (byte {raw[exc.start]:#04x}); is this a data file?"))
        return None
    return [(i, s) for i, s in enumerate(text.splitlines(), 1) if s.strip() and not s.lstrip().startswith("#")]


def _splitter(first: str, delimiter: str) -> Any:
    sep = DELIMITERS[delimiter] if delimiter != "auto" else ("," if "," in first else "\t" if "\t" in first else None)
    if sep == ",":
        return lambda s: [c.strip() for c in next(csv.reader([s], skipinitialspace=True))]
    if sep == "\t":
        return lambda s: [c.strip() for c in s.split("\t")]
    return lambda s: s.split()


def _guarded(split: Any) -> Any:
    """``split``, returning why not (a string) where a row cannot be split (a quoted cell
    longer than the csv module's field limit, ...)."""

    def guarded(text: str) -> list[str] | str:
        try:
            return split(text)
        except csv.Error as exc:
            return f"the row cannot be split into cells ({exc})."

    return guarded


def _looks_like_header(cells: list[str], names: set[str]) -> bool:
    if cells[0].strip().lower() in PATH_WORDS or any(c in names for c in cells[1:]):
        return True
    labels = cells[1:]

    def numeric(text: str) -> bool:
        try:
            float(text)
            return True
        except ValueError:
            return text == ""

    return bool(labels) and not any(numeric(c) for c in labels)


def _header_columns(
    path: Path, line: int, cells: list[str], tasks: list[TaskSpec], ignore: Sequence[str], problems: ProblemLog
) -> dict[str, list[int]] | None:
    expected = {name: (spec, i) for spec in tasks for i, name in enumerate(label_format(spec).column_names(spec))}
    seen: dict[str, int] = {}
    found: dict[str, dict[int, int]] = {spec.name: {} for spec in tasks}
    ok = True
    for j, name in enumerate(cells[1:], 1):
        if name in seen:
            problems.add(DataFileError(path, line, j + 1, f"duplicate column name {name!r} (also column {seen[name] + 1}).", name))
            ok = False
            continue
        seen[name] = j
        if name in expected:
            spec, offset = expected[name]
            found[spec.name][offset] = j
        elif name not in ignore:
            problems.add(
                DataFileError(
                    path, line, j + 1,
                    f"column {name!r} is not a task of the experiment; tasks: {[t.name for t in tasks]} "
                    "(list it in data.ignore_columns to skip it).",
                    name,
                )
            )
            ok = False
    missing = [n for n, (spec, i) in expected.items() if i not in found[spec.name]]
    if missing:
        problems.add(
            DataFileError(
                path, line, None,
                f"the header has no column for {missing}; expected columns: "
                f"{', '.join(['path', *expected])} (any order).",
            )
        )
        ok = False
    if not ok:
        return None
    return {name: [offsets[i] for i in range(len(offsets))] for name, offsets in found.items()}


def read_data_file(
    path: Path | str,
    tasks: list[TaskSpec],
    problems: ProblemLog | None = None,
    delimiter: str = "auto",
    header: bool | str = "auto",
    ignore_columns: Sequence[str] = (),
) -> Table:
    """Parse and check one data file; problems go to ``problems`` (raised here when not given).

    Rows with a problem are left out of the returned table.
    """
    own = problems is None
    problems = problems if problems is not None else ProblemLog()
    path = Path(path)
    table = Table(path)
    lines = _read_lines(path, problems)
    if lines is not None and not lines:
        problems.add(DataFileError(path, None, None, "data file has no rows."))
    if not lines:
        if own:
            problems.raise_if_any()
        return table
    split = _guarded(_splitter(lines[0][1], delimiter))
    formats = {spec.name: label_format(spec) for spec in tasks}
    names = {n for spec in tasks for n in formats[spec.name].column_names(spec)} | set(ignore_columns)
    first_line, first = lines[0][0], split(lines[0][1])
    if isinstance(first, str):
        problems.add(DataFileError(path, first_line, None, first))
        if own:
            problems.raise_if_any()
        return table
    table.header = _looks_like_header(first, names) if header == "auto" else bool(header)
    if table.header:
        columns = _header_columns(path, first_line, first, tasks, ignore_columns, problems)
        lines = lines[1:]
        width = len(first)
        if columns is None:
            if own:
                problems.raise_if_any()
            return table
        if not lines:
            problems.add(DataFileError(path, None, None, "data file has a header but no data rows."))
    else:
        columns, position = {}, 1
        for spec in tasks:
            k = formats[spec.name].columns(spec)
            columns[spec.name] = list(range(position, position + k))
            position += k
        width = position
    table.columns = columns
    header_names = first if table.header else ["path", *(n for spec in tasks for n in formats[spec.name].column_names(spec))]
    layout = ", ".join(header_names)
    for line, text in lines:
        cells = split(text)
        if isinstance(cells, str):  # why the row cannot be split
            problems.add(DataFileError(path, line, None, cells))
            continue
        if len(cells) != width:
            problems.add(DataFileError(path, line, None, f"expected {width} columns ({layout}), got {len(cells)}."))
            continue
        if not cells[0]:
            problems.add(DataFileError(path, line, 1, "the image path is empty.", header_names[0]))
            continue
        if "\x00" in cells[0]:
            problems.add(DataFileError(path, line, 1, "the image path contains a NUL byte.", header_names[0]))
            continue
        try:
            image = Path(cells[0]).expanduser()
        except RuntimeError:  # ~name of no user
            problems.add(DataFileError(path, line, 1, f"cannot expand {cells[0].split('/')[0][:100]!r}: no such user.", header_names[0]))
            continue
        ref = ImageRef(image if image.is_absolute() else path.parent / image, path, line, 1, header_names[0])
        labels, ok = {}, True
        for spec in tasks:
            cols = columns[spec.name]
            try:
                labels[spec.name] = formats[spec.name].parse(spec, [cells[c] for c in cols])
            except LabelError as exc:
                col = cols[exc.offset]
                problems.add(DataFileError(path, line, col + 1, str(exc), header_names[col]))
                ok = False
        if ok:
            table.rows.append(Row(line, ref, labels))
    if own:
        problems.raise_if_any()
    return table


def split_indices(
    n: int, fractions: dict[str, float], seed: int, strata: Sequence[Any] | None = None
) -> dict[str, np.ndarray]:
    """Row indices per split: ``fractions`` of every stratum, chosen at random with ``seed``.

    Each stratum (one value of ``strata``; all rows when ``None``) is shuffled and cut
    by the largest-remainder rounding of its size times each fraction, so every split
    gets each class in about the same proportion. Indices come back sorted.
    """
    rng = np.random.default_rng(seed)
    keys = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for key in sorted(set(keys.tolist())):
        members = rng.permutation(np.flatnonzero(keys == key))
        exact = np.array([len(members) * f for f in fractions.values()])
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: len(members) - counts.sum()]:
            counts[i] += 1
        start = 0
        for name, count in zip(fractions, counts):
            parts[name].append(members[start : start + count])
            start += count
    return {name: np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for name, p in parts.items()}
