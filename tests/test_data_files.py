"""The seed's data files as people write them, the split ratio, the decode cache, and a
corpus of bad inputs each refused with its exact file, line and column."""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torchvision.io import encode_png, write_png

import mtl_models as mm
from conftest import bomb_png
from mtl_models.data import MAX_IMAGE_PIXELS, DataErrors, MAX_LISTED, header_pixels, split_indices

TASKS = [mm.TaskSpec("kind", "classification", 3), mm.TaskSpec("size", "regression")]
SIZE = (8, 8)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test decodes into its own cache (never the user's)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MTLSEARCH_CACHE_DIR", str(path))
    return path


def write_images(root: Path, n: int, prefix: str = "img") -> list[str]:
    """``n`` 10x12 RGB PNGs with distinct first pixels (``i``), named ``img{i}.png``."""
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        image = torch.full((3, 10, 12), 100, dtype=torch.uint8)
        image[:, 0, 0] = i
        write_png(image, str(root / f"{prefix}{i}.png"))
        names.append(f"{prefix}{i}.png")
    return names


def load(train: Path, val: Path | None = None, tasks: list[mm.TaskSpec] = TASKS, **options) -> mm.MultiTaskData:
    return mm.load_data("files", tasks, train=train, val=val or train, image_size=SIZE, **options)


# ---------------------------------------------------------------- accepted spellings

def _seed000(root: Path) -> Path:  # Caffe image list: whitespace, no header, relative paths
    path = root / "train.txt"
    path.write_text("img0.png 0 1.5\nimg1.png -1 2\nimg2.png 2 nan\n")
    return path


def _seed002(root: Path) -> Path:  # "/data/img1.jpg, 0, 1": comma and space, absolute paths
    path = root / "lists" / "train.txt"
    path.parent.mkdir()
    path.write_text("".join(f"{root / n}, {k}, {s}\n" for n, k, s in [("img0.png", 0, 1.5), ("img1.png", -1, 2), ("img2.png", 2, "")]))
    return path


def _csv_header(root: Path) -> Path:
    path = root / "train.csv"
    path.write_text("path,kind,size\nimg0.png,0,1.5\nimg1.png,,2.0\nimg2.png,2,\n")
    return path


def _csv_reordered_header(root: Path) -> Path:
    path = root / "train.csv"
    path.write_text("image,size,kind\nimg0.png,1.5,0\nimg1.png,2,-1\nimg2.png,NaN,2\n")
    return path


def _tsv_spaces_in_path(root: Path) -> Path:
    (root / "my photos").mkdir()
    for n in ("img0.png", "img1.png", "img2.png"):
        os.replace(root / n, root / "my photos" / n)
    path = root / "train.tsv"
    path.write_text("path\tkind\tsize\nmy photos/img0.png\t0\t1.5\nmy photos/img1.png\t-1\t2\nmy photos/img2.png\t2.0\t\n")
    return path


def _bom_crlf_comments(root: Path) -> Path:
    path = root / "train.csv"
    text = "# exported from the labelling tool\r\npath,kind,size\r\n\r\nimg0.png,0,1.5\r\nimg1.png,-1,2\r\n# img9 dropped\r\nimg2.png,2,\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    return path


SPELLINGS: dict[str, Callable[[Path], Path]] = {
    "seed000_whitespace_no_header": _seed000,
    "seed002_comma_space_absolute": _seed002,
    "csv_header": _csv_header,
    "csv_header_reordered": _csv_reordered_header,
    "tsv_path_with_space": _tsv_spaces_in_path,
    "bom_crlf_comments_blank_lines": _bom_crlf_comments,
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_accepted_spelling_loads_the_same_data(tmp_path: Path, spelling: str) -> None:
    write_images(tmp_path, 3)
    data = load(SPELLINGS[spelling](tmp_path))
    train = data.splits["train"]
    assert train.images.shape == (3, 3, 8, 8) and train.images.dtype == torch.uint8
    assert train.targets["kind"].tolist() == [0, -1, 2]  # -1 and empty are both "missing"
    size = train.targets["size"].tolist()
    assert size[:2] == [1.5, 2.0] and math.isnan(size[2])  # empty and nan are missing
    assert train.targets["size"].dtype == torch.float32 and train.targets["kind"].dtype == torch.long


def test_a_task_with_several_values_takes_several_columns(tmp_path: Path) -> None:
    write_images(tmp_path, 2)
    path = tmp_path / "train.csv"
    path.write_text("path,point.1,kind,point.0\nimg0.png,0.25,1,0.5\nimg1.png,,0,\n")
    tasks = [mm.TaskSpec("kind", "classification", 2), mm.TaskSpec("point", "regression", 2)]
    data = mm.load_data("files", tasks, train=path, val=path, image_size=SIZE)
    point = data.splits["train"].targets["point"]
    assert point.shape == (2, 2) and point[0].tolist() == [0.5, 0.25] and point[1].isnan().all()


def test_binary_and_multilabel_columns(tmp_path: Path) -> None:
    write_images(tmp_path, 3)
    path = tmp_path / "train.csv"
    path.write_text("path,smiling,attrs.0,attrs.1\nimg0.png,1,0,1\nimg1.png,-1,1,\nimg2.png,0,-1,0\n")
    tasks = [mm.TaskSpec("smiling", "binary"), mm.TaskSpec("attrs", "multilabel", 2)]
    train = mm.load_data("files", tasks, train=path, val=path, image_size=SIZE).splits["train"]
    smiling, attrs = train.targets["smiling"], train.targets["attrs"]
    assert smiling.shape == (3,) and smiling.dtype == torch.float32
    assert smiling[[0, 2]].tolist() == [1.0, 0.0] and smiling[1].isnan()
    assert attrs.shape == (3, 2) and attrs.nan_to_num(-9).tolist() == [[0, 1], [1, -9], [-9, 0]]


def test_header_can_be_forced_and_extra_columns_ignored(tmp_path: Path) -> None:
    write_images(tmp_path, 2)
    path = tmp_path / "train.csv"
    path.write_text("file,kind,size,notes\nimg0.png,1,0.5,blurry\nimg1.png,0,1.0,\n")
    data = load(path, ignore_columns=["notes"], header=True)
    assert data.splits["train"].targets["kind"].tolist() == [1, 0]


def test_one_file_split_60_25_15_is_seeded_disjoint_and_stratified(tmp_path: Path) -> None:
    write_images(tmp_path, 40)
    path = tmp_path / "all.txt"
    labels = [0] * 20 + [1] * 12 + [2] * 8
    path.write_text("".join(f"img{i}.png {k} {i}\n" for i, k in enumerate(labels)))
    split = {"train": 0.6, "val": 0.25, "test": 0.15, "seed": 1, "stratify": "kind"}
    data = mm.load_data("files", TASKS, file=path, split=split, image_size=SIZE)
    rows = {name: s.targets["size"].long().tolist() for name, s in data.splits.items()}
    assert {k: len(v) for k, v in rows.items()} == {"train": 24, "val": 10, "test": 6}
    assert sorted(sum(rows.values(), [])) == list(range(40))  # every row exactly once
    counts = {name: torch.bincount(s.targets["kind"], minlength=3).tolist() for name, s in data.splits.items()}
    assert counts == {"train": [12, 7, 5], "val": [5, 3, 2], "test": [3, 2, 1]}
    for name, split_ in data.splits.items():  # images follow their rows
        assert split_.images[:, 0, 0, 0].tolist() != []
    again = mm.load_data("files", TASKS, file=path, split=split, image_size=SIZE)
    other = mm.load_data("files", TASKS, file=path, split={**split, "seed": 2}, image_size=SIZE)
    assert again.splits["val"].targets["size"].tolist() == data.splits["val"].targets["size"].tolist()
    assert other.splits["val"].targets["size"].tolist() != data.splits["val"].targets["size"].tolist()


def test_split_indices_cut_each_stratum_by_largest_remainder() -> None:
    parts = split_indices(10, {"train": 0.6, "val": 0.25, "test": 0.15}, seed=0)
    assert [len(p) for p in parts.values()] == [6, 3, 1]
    strata = [0] * 5 + [1] * 5
    parts = split_indices(10, {"train": 0.6, "val": 0.4}, seed=0, strata=strata)
    assert [sorted(np.asarray(strata)[p].tolist()) for p in parts.values()] == [[0, 0, 0, 1, 1, 1], [0, 0, 1, 1]]


# ---------------------------------------------------------------- decode cache and sharing

def test_decoded_images_are_cached_and_invalidated_by_a_changed_file(tmp_path: Path, cache_dir: Path) -> None:
    names = write_images(tmp_path, 3)
    path = _csv_header(tmp_path)
    first = load(path)
    files = sorted(cache_dir.glob("*.npy"))
    assert len(files) == 1  # train and val are the same file, so the same key
    second = load(path)
    assert second.splits["train"].images_file == str(files[0])
    assert torch.equal(first.splits["train"].images, second.splits["train"].images)
    image = torch.full((3, 10, 12), 7, dtype=torch.uint8)
    write_png(image, str(tmp_path / names[1]))
    os.utime(tmp_path / names[1], ns=(1, 1))  # a different mtime whatever the clock
    third = load(path)
    assert len(list(cache_dir.glob("*.npy"))) == 2
    assert (third.splits["train"].images[1] == 7).all()
    uncached = load(path, cache=False)
    assert uncached.splits["train"].images_file is None
    assert torch.equal(uncached.splits["train"].images, third.splits["train"].images)


def test_a_cached_split_pickles_as_its_file_and_materializes(tmp_path: Path) -> None:
    write_images(tmp_path, 3)
    data = load(_csv_header(tmp_path))
    split = data.splits["train"]
    assert split.images_file is not None
    blob = pickle.dumps(split)
    assert len(blob) < 2000  # the path, not the pixels
    assert torch.equal(pickle.loads(blob).images, split.images)
    in_memory = data.materialize().splits["train"]
    assert in_memory.images_file is None and len(pickle.dumps(in_memory)) > split.images.numel()
    os.remove(split.images_file)
    with pytest.raises(FileNotFoundError, match="data.cache_dir on storage every node can read"):
        pickle.loads(blob)


# ---------------------------------------------------------------- the corpus of bad inputs

def _png(root: Path, name: str) -> None:
    write_png(torch.zeros((3, 4, 4), dtype=torch.uint8), str(root / name))


def _files(**contents: str | bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        _png(root, "a.png")
        _png(root, "b.png")
        for name, text in contents.items():
            (root / name.replace("_", ".")).write_bytes(text if isinstance(text, bytes) else text.encode())

    return make


GOOD_VAL = "path,kind,size\na.png,0,1.0\nb.png,1,2.0\n"


def _corrupt(root: Path) -> None:
    _files(train_csv="path,kind,size\na.png,0,1\nbad.png,1,2\n", val_csv=GOOD_VAL)(root)
    (root / "bad.png").write_bytes(b"this is not a png")


def _truncated(root: Path) -> None:
    _files(train_csv="path,kind,size\na.png,0,1\ncut.png,1,2\n", val_csv=GOOD_VAL)(root)
    data = encode_png(torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)).numpy().tobytes()
    (root / "cut.png").write_bytes(data[: len(data) // 2])


def _empty_image(root: Path) -> None:
    _files(train_csv="path,kind,size\na.png,0,1\nzero.png,1,2\n", val_csv=GOOD_VAL)(root)
    (root / "zero.png").write_bytes(b"")


def _directory_as_image(root: Path) -> None:
    _files(train_csv="path,kind,size\na.png,0,1\nfolder,1,2\n", val_csv=GOOD_VAL)(root)
    (root / "folder").mkdir()


def _bomb(root: Path) -> None:
    _files(train_csv="path,kind,size\na.png,0,1\nbomb.png,1,2\n", val_csv=GOOD_VAL)(root)
    bomb_png(root / "bomb.png")


# (name, make the files, file named in the error, line, column, column name, message)
CORPUS = [
    ("missing data file", _files(val_csv=GOOD_VAL), "train.csv", None, None, None, "data file does not exist."),
    ("empty data file", _files(train_csv="", val_csv=GOOD_VAL), "train.csv", None, None, None, "data file has no rows."),
    ("header but no rows", _files(train_csv="path,kind,size\n", val_csv=GOOD_VAL), "train.csv", None, None, None, "data file has a header but no data rows."),
    ("missing image", _files(train_csv="path,kind,size\na.png,0,1\nnothere.png,1,2\n", val_csv=GOOD_VAL), "train.csv", 3, 1, "path", "image '{root}/nothere.png' does not exist."),
    ("corrupt png", _corrupt, "train.csv", 3, 1, "path", "image '{root}/bad.png' could not be decoded"),
    ("truncated png", _truncated, "train.csv", 3, 1, "path", "image '{root}/cut.png' could not be decoded"),
    ("decompression bomb", _bomb, "train.csv", 3, 1, "path", "image '{root}/bomb.png' is too large: its header claims 900,000,000 pixels, more than data.max_image_pixels = 89,478,485; a decompression bomb?"),
    ("zero-byte image", _empty_image, "train.csv", 3, 1, "path", "image '{root}/zero.png' is empty (0 bytes)."),
    ("directory as image", _directory_as_image, "train.csv", 3, 1, "path", "image '{root}/folder' is not a file."),
    ("label out of range", _files(train_csv="path,kind,size\na.png,3,1\n", val_csv=GOOD_VAL), "train.csv", 2, 2, "kind", "label 3 is out of range; allowed: 0..2, or -1 or empty for missing."),
    ("negative label", _files(train_csv="a.png -2 1\n", val_csv=GOOD_VAL), "train.csv", 1, 2, "kind", "label -2 is out of range"),
    ("word as class", _files(train_csv="path,kind,size\na.png,cat,1\n", val_csv=GOOD_VAL), "train.csv", 2, 2, "kind", "label 'cat' is not an integer class index; allowed"),
    ("fractional class", _files(train_csv="path,kind,size\na.png,1.5,1\n", val_csv=GOOD_VAL), "train.csv", 2, 2, "kind", "label '1.5' is not an integer class index"),
    ("nan in a class column", _files(train_csv="path,kind,size\na.png,0,1\nb.png,NaN,2\n", val_csv=GOOD_VAL), "train.csv", 3, 2, "kind", "label 'NaN' is not an integer class index (a missing label is -1 or empty)"),
    ("binary label not 0/1", _files(train_csv="path,kind,size\na.png,0,1\n", val_csv="path,kind,size,smiling\na.png,0,1,2\n"), "val.csv", 2, 4, "smiling", "label '2' is not 0 or 1; allowed: 0 or 1, or -1 or empty for missing."),
    ("word as number", _files(train_csv="path,kind,size\na.png,0,big\n", val_csv=GOOD_VAL), "train.csv", 2, 3, "size", "value 'big' is not a number"),
    ("infinite number", _files(train_csv="path,kind,size\na.png,0,inf\n", val_csv=GOOD_VAL), "train.csv", 2, 3, "size", "value 'inf' is not finite"),
    ("too few columns", _files(train_csv="path,kind,size\na.png,0,1\nb.png,1\n", val_csv=GOOD_VAL), "train.csv", 3, None, None, "expected 3 columns (path, kind, size), got 2."),
    ("too many columns", _files(train_csv="a.png 0 1 7\n", val_csv=GOOD_VAL), "train.csv", 1, None, None, "expected 3 columns (path, kind, size), got 4."),
    ("empty path", _files(train_csv="path,kind,size\n,0,1\n", val_csv=GOOD_VAL), "train.csv", 2, 1, "path", "the image path is empty."),
    ("unknown task in header", _files(train_csv="path,kind,colour\na.png,0,1\n", val_csv=GOOD_VAL), "train.csv", 1, 3, "colour", "column 'colour' is not a task of the experiment; tasks: ['kind', 'size']"),
    ("duplicate header", _files(train_csv="path,kind,kind,size\na.png,0,0,1\n", val_csv=GOOD_VAL), "train.csv", 1, 3, "kind", "duplicate column name 'kind' (also column 2)."),
    ("header misses a task", _files(train_csv="path,kind\na.png,0\n", val_csv=GOOD_VAL), "train.csv", 1, None, None, "the header has no column for ['size']; expected columns: path, kind, size (any order)."),
    ("not text", _files(train_csv=b"path,kind,size\n\xff\xfe\x00garbage\n", val_csv=GOOD_VAL), "train.csv", 2, None, None, "not UTF-8 text (byte 0xff)"),
    ("binary task of one class in train", _files(train_csv="path,kind,size,smiling\na.png,0,1,1\nb.png,1,2,-1\na.png,2,1,1\n", val_csv="path,kind,size,smiling\na.png,0,1,0\nb.png,1,2,1\n"), "train.csv", None, 4, "smiling", "task 'smiling' has a single class in the train split: all 2 labelled row(s) are class 1; a model would learn (or be scored on) nothing. Add rows of the other class(es), or drop the task."),
    ("class task of one class in val", _files(train_csv=GOOD_VAL, val_csv="path,kind,size\na.png,2,1\nb.png,2,2\n"), "val.csv", None, 2, "kind", "task 'kind' has a single class in the val split: all 2 labelled row(s) are class 2;"),
    ("task never labelled in val", _files(train_csv=GOOD_VAL, val_csv="path,kind,size\na.png,-1,1\nb.png,,2\n"), "val.csv", None, 2, "kind", "task 'kind' has no labelled row in the val split"),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_is_refused_naming_file_line_and_column(tmp_path: Path, case: tuple) -> None:
    _, make, file, line, column, name, message = case
    make(tmp_path)
    tasks = TASKS + [mm.TaskSpec("smiling", "binary")] if name == "smiling" else TASKS
    if name == "smiling" and "smiling" not in (tmp_path / "train.csv").read_text():  # give the train file that column
        (tmp_path / "train.csv").write_text("path,kind,size,smiling\na.png,0,1,1\nb.png,1,2,0\n")
    with pytest.raises(mm.DataFileError) as info:
        load(tmp_path / "train.csv", tmp_path / "val.csv", tasks)
    error = info.value
    located = [(Path(p.path).name, p.line, p.column, p.name) for p in getattr(error, "problems", [error])]
    assert (file, line, column, name) in located
    where = str(tmp_path / file) + (f", line {line}" if line else "") + (f", column {column} ({name})" if column else "")
    assert f"{where}: {message.format(root=tmp_path)}" in str(error)


def test_a_bomb_is_refused_from_its_header_without_being_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.io

    _bomb(tmp_path)
    decode, bomb = torchvision.io.decode_image, (tmp_path / "bomb.png").read_bytes()

    def no_bomb(data, *args, **kwargs):
        assert bytes(data.numpy()) != bomb, "a bomb must not reach the decoder"
        return decode(data, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_image", no_bomb)
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    assert header_pixels(tmp_path / "bomb.png") == 900_000_000
    with pytest.raises(mm.DataFileError, match="is too large"):
        load(tmp_path / "train.csv", tmp_path / "val.csv")


def test_a_plugin_source_decoding_through_the_shared_decoder_gets_the_limit(tmp_path: Path) -> None:
    from mtl_models.data import ImageRef, ProblemLog, decode_images

    bomb_png(tmp_path / "bomb.png")
    write_images(tmp_path, 1)
    problems = ProblemLog()
    refs = [ImageRef(tmp_path / "img0.png", tmp_path / "index.json", 3, 9, "file"), ImageRef(tmp_path / "bomb.png", tmp_path / "index.json", 7, 9, "file")]
    assert decode_images(refs, 3, SIZE, problems, cache_dir=tmp_path / "cache") is None
    assert [str(p) for p in problems.problems] == [
        f"{tmp_path / 'index.json'}, line 7, column 9 (file): image '{tmp_path / 'bomb.png'}' is too large: its header claims "
        "900,000,000 pixels, more than data.max_image_pixels = 89,478,485; a decompression bomb? shrink the image or raise "
        "data.max_image_pixels."
    ]
    assert not list((tmp_path / "cache").iterdir())  # the half-written cache file is removed


@pytest.mark.parametrize("limit,refused", [(119, True), (120, False)])
def test_the_pixel_limit_is_configurable_and_inclusive(tmp_path: Path, limit: int, refused: bool) -> None:
    write_images(tmp_path, 2)  # 10 x 12 = 120 pixels each
    (tmp_path / "train.csv").write_text("img0.png,0,1\nimg1.png,1,2\n")
    if refused:
        with pytest.raises(DataErrors) as info:
            load(tmp_path / "train.csv", max_image_pixels=limit)
        assert f"{tmp_path / 'train.csv'}, line 1, column 1 (path): image '{tmp_path / 'img0.png'}' is too large: " \
            f"its header claims 120 pixels, more than data.max_image_pixels = {limit}" in str(info.value)
        assert info.value.total == 2
    else:
        assert len(load(tmp_path / "train.csv", max_image_pixels=limit).splits["train"]) == 2
    assert MAX_IMAGE_PIXELS == 89_478_485


def test_a_task_missing_most_of_its_classes_in_train_is_a_warning(tmp_path: Path) -> None:
    write_images(tmp_path, 4)
    (tmp_path / "train.csv").write_text("img0.png,0,1\nimg1.png,1,1\nimg2.png,1,2\nimg3.png,-1,2\n")
    (tmp_path / "val.csv").write_text("img0.png,0,1\nimg1.png,4,1\n")
    tasks = [mm.TaskSpec("kind", "classification", 5), mm.TaskSpec("size", "regression")]
    data = load(tmp_path / "train.csv", tmp_path / "val.csv", tasks)
    assert "train/kind: 3 of its 5 classes have no labelled train rows (only [0, 1] have); it cannot learn the others." in data.warnings()
    (tmp_path / "train.csv").write_text("img0.png,0,1\nimg1.png,1,1\nimg2.png,3,2\nimg3.png,-1,2\n")
    assert "train/kind: class(es) [2, 4] have no labelled train rows." in load(tmp_path / "train.csv", tmp_path / "val.csv", tasks).warnings()


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 15


def test_split_ratio_that_leaves_a_split_empty_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path, 3)
    path = tmp_path / "all.csv"
    path.write_text("img0.png,0,1\nimg1.png,1,1\nimg2.png,2,1\n")
    with pytest.raises(mm.DataFileError) as info:
        mm.load_data("files", TASKS, file=path, split={"train": 0.8, "val": 0.1, "test": 0.1}, image_size=SIZE)
    assert str(info.value) == (
        "2 problems in the data (nothing was trained):\n"
        f"  {path}: split 'val' is empty: 3 rows x 0.1 rounds to 0; add rows or change data.split.\n"
        f"  {path}: split 'test' is empty: 3 rows x 0.1 rounds to 0; add rows or change data.split."
    )


def test_every_bad_row_is_collected_listing_the_first_twenty(tmp_path: Path) -> None:
    write_images(tmp_path, 1)
    rows = "".join(f"img0.png,{5 + i},1\n" for i in range(25))
    (tmp_path / "train.csv").write_text("path,kind,size\n" + rows)
    with pytest.raises(DataErrors) as info:
        load(tmp_path / "train.csv")
    error = info.value
    assert error.total == 25 and len(error.problems) == MAX_LISTED
    text = str(error)
    assert text.startswith("25 problems in the data")
    assert [p.line for p in error.problems] == list(range(2, 22))
    assert text.endswith("... and 5 more (the first 20 are listed)")


def test_label_and_image_problems_are_reported_together(tmp_path: Path) -> None:
    write_images(tmp_path, 2)
    (tmp_path / "broken.png").write_bytes(b"nope")
    (tmp_path / "train.csv").write_text("path,kind,size\nimg0.png,9,1\nmissing.png,0,1\nbroken.png,1,1\nimg1.png,0,x\n")
    with pytest.raises(DataErrors) as info:
        load(tmp_path / "train.csv")
    assert [(p.line, p.column) for p in info.value.problems] == [(2, 2), (3, 1), (4, 1), (5, 3)]
