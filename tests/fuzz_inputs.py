"""Mutated experiment files and data files for property-based fuzzing (issue 28).

Shared by ``tests/test_fuzz.py`` (a few thousand examples, derandomised) and
``bench/fuzz.py`` (a longer run that counts what it tried). Each ``check_*`` function
feeds one input to the project's parser and returns ``"valid"`` or ``"refused"``; any
other outcome (an exception that is not the project's located error, a refusal that
does not name the file, a run directory left behind) raises, which hypothesis reports
with the input that caused it.
"""
from __future__ import annotations

import copy
import csv
import io
from pathlib import Path
from typing import Any

import torch
import yaml
from hypothesis import strategies as st
from torchvision.io import write_png

import mtl_models as mm
import spaces

TASKS = [mm.TaskSpec("kind", "classification", 3), mm.TaskSpec("size", "regression")]
GOOD_TRAIN = "path,kind,size\na.png,0,1.0\nb.png,1,2.0\na.png,2,0.5\n"
GOOD_VAL = "path,kind,size\nb.png,2,1.0\na.png,1,0.5\n"
EXPERIMENT: dict[str, Any] = {
    "name": "fuzz",
    "seed": 0,
    "data": {"source": "files", "train": "train.csv", "val": "val.csv", "image_size": [4, 4], "cache": False},
    "tasks": [
        {"name": "kind", "kind": "classification", "classes": 3},
        {"name": "size", "kind": "regression"},
    ],
    "backbone": {"name": "small_cnn", "options": {"widths": [4, 8]}},
    "space": {"families": ["hard_split", "cross_stitch"]},
    "search": {"num_trials": 2, "max_concurrent": 1},
    "train": {"epochs": 1, "batch_size": 2, "lr": 0.01, "device": "cpu"},
}


def workspace(root: Path) -> Path:
    """Two 4x4 PNGs and a good train and val file under ``root`` (returned)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("a.png", "b.png")):
        write_png(torch.full((3, 4, 4), 60 * i, dtype=torch.uint8), str(root / name))
    (root / "train.csv").write_text(GOOD_TRAIN)
    (root / "val.csv").write_text(GOOD_VAL)
    return root


# ---------------------------------------------------------------- pieces of hostile text

TOKENS = [
    "", " ", "\t", "\n", "\r\n", "\r", "\x00", "\ufeff", "\x1b", "\u2028", "\ud7ff", "\U0001f600", "é", "ß", "名前",
    ":", ": ", "- ", "-", ",", ";", "#", "'", '"', '""', "\\", "{", "}", "[", "]", "{}", "[]", "|", ">", "?", "? ",
    "&a ", "*a", "<<: *a", "!!python/object/apply:os.system ['true']", "!!binary AAAA", "!!float", "!!int x", "!tag",
    "%YAML 1.1\n", "---\n", "...\n", "~", "null", "true", "no", "on", "yes", "NaN", ".nan", ".inf", "-.inf", "inf",
    "-1", "0", "1", "2", "3", "1.5", "1e999", "-1e999", "1e-400", "3.4e39", "0x1F", "0o17", "0b101", "1_000",
    "2001-12-14", "12:30:00", "9" * 30, "9" * 4400, "1" + "0" * 400, "1e308", "-0", "+1", "1.", ".5",
    "a.png", "b.png", "/", "..", "3.4e39", "-1e300", "1e-50", "~nobody_here/x.png", "~/x.png", "C:\\x.png", "a.png\x00.png", "x" * 70_000,
]

hostile_text = st.one_of(
    st.sampled_from(TOKENS),
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from([c for c in TOKENS if len(c) == 1]), max_size=8),
    st.builds(lambda t, n: t * n, st.sampled_from(["[", "{", "- ", "a: ", "&x [*x, *x] ", "\"", "'"]), st.integers(1, 3000)),
)

ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252", "utf-32"]


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace") if encoding != "utf-8" else text.encode("utf-8", errors="surrogatepass")


# ---------------------------------------------------------------- experiment files


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value or key in a nested document (dict keys and list indices)."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _leaves(v, (*path, i))
    return out


yaml_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.sampled_from(TOKENS[:70]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


@st.composite
def experiment_documents(draw: st.DrawFn) -> bytes:
    """The base experiment with its values replaced, keys renamed or removed and the text
    edited by hostile pieces, in one of several encodings."""
    doc = copy.deepcopy(EXPERIMENT)
    for _ in range(draw(st.integers(0, 3))):
        paths = _leaves(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["value", "value", "rename", "drop"]))
        if action == "value":
            parent[path[-1]] = draw(yaml_values)
        elif isinstance(parent, dict) and action == "rename":
            parent[draw(st.one_of(st.text(max_size=10), st.sampled_from(TOKENS[:40])))] = parent.pop(path[-1])
        elif isinstance(parent, dict):
            parent.pop(path[-1])
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.sampled_from([False, None])))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 4))
        text = text[:at] + draw(hostile_text) + text[at + cut :]
    return encode(text, draw(st.sampled_from(ENCODINGS)))


def check_experiment(path: Path) -> str:
    """``valid`` or ``refused`` (an :class:`ExperimentError` naming the file); anything else raises."""
    try:
        spaces.load_experiment(path)
    except spaces.ExperimentError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        return "refused"
    return "valid"


# ---------------------------------------------------------------- data files

cells = st.one_of(
    st.sampled_from(["a.png", "b.png", "a.png", "0", "1", "2", "-1", "", "nan", "1.5", "0.25", "path", "kind", "size"]),
    hostile_text,
)


@st.composite
def data_files(draw: st.DrawFn) -> bytes:
    """A data file: a header or none, rows of good and hostile cells, written with a
    delimiter, quoting and line ends of the draw, in one of several encodings."""
    header = draw(st.sampled_from([["path", "kind", "size"], ["size", "path", "kind"], None, ["path", "kind", "size", "名前"]]))
    good = [["a.png", "0", "1.0"], ["b.png", "1", "2.0"], ["a.png", "2", "0.5"]]
    rows = [list(r) for r in draw(st.lists(st.sampled_from(good), min_size=0, max_size=4))]
    for _ in range(draw(st.integers(0, 3))):  # a good row with one cell hostile (the width right: it gets parsed)
        row = list(draw(st.sampled_from(good)))
        row[draw(st.integers(0, 2))] = draw(cells)
        rows.append(row)
    rows += draw(st.lists(st.lists(cells, min_size=0, max_size=5), max_size=2))
    rows = draw(st.permutations(rows))
    if header is not None:
        rows = [header, *rows]
    delimiter = draw(st.sampled_from([",", "\t", " ", ", "]))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()) and delimiter in (",", "\t"):
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator=ending, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))).writerows(rows)
        text = out.getvalue()
    else:
        text = ending.join(delimiter.join(r) for r in rows) + draw(st.sampled_from(["", ending]))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(hostile_text) + text[at:]
    return encode(text, draw(st.sampled_from(ENCODINGS)))


def check_data_file(path: Path, val: Path) -> str:
    """``valid`` (the files source loads it) or ``refused`` (a :class:`DataFileError` located in
    one of the files); anything else raises."""
    try:
        data = mm.load_data("files", TASKS, train=str(path), val=str(val), image_size=(4, 4), cache=False)
    except mm.DataFileError as exc:
        problems = getattr(exc, "problems", [exc])
        assert all(p.path in (str(path), str(val)) for p in problems), f"a problem not located in a data file: {exc}"
        return "refused"
    for split in data.splits.values():
        size = split.targets["size"]
        assert (torch.isfinite(size) | size.isnan()).all(), "a regression target overflowed"
    return "valid"
