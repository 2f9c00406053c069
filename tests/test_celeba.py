"""CelebA from a local folder in torchvision's layout: attributes and landmarks as tasks.

The fixture writes a 12-image CelebA folder with every file torchvision's ``CelebA``
reads. torchvision refuses it (it checks each list file's MD5 against the real
dataset's), so the loader reads the same files itself; one test lifts that checksum
check to prove both read the same labels from the same layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.io import encode_jpeg

import mtl_models as mm
from conftest import bomb_png
from mtl_models.data import CELEBA_ATTRIBUTES, attribute_target

N = 12
PARTITION = [0] * 6 + [1] * 3 + [2] * 3
RNG = np.random.default_rng(0)
ATTR = RNG.choice([-1, 1], size=(N, 40))
LANDMARKS = RNG.integers(60, 160, size=(N, 10))
TASKS = [
    mm.TaskSpec("smiling", "classification", 2),
    mm.TaskSpec("male", "classification", 2),
    mm.TaskSpec("landmarks", "regression", 10),
]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTLSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_celeba(root: Path) -> Path:
    """A CelebA folder (``root/celeba``) as torchvision expects it, with 12 aligned 178x218 images."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(N)]
    for i, name in enumerate(names):
        image = torch.zeros((3, 218, 178), dtype=torch.uint8)
        image[:, :, :] = torch.tensor([20 * i, 255 - 20 * i, 100], dtype=torch.uint8).view(3, 1, 1)
        (folder / "img_align_celeba" / name).write_bytes(encode_jpeg(image, quality=95).numpy().tobytes())
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, PARTITION)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} {i + 100}\n" for i, n in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{N}\nimage_id x_1 y_1 width height\n" + "".join(f"{n}    95  71 226 313\n" for n in names)
    )
    # the real files' spacing: a trailing space after the header, two spaces before positives
    attr_rows = "".join(n + "".join(f" {v:2d}" for v in row) + "\n" for n, row in zip(names, ATTR))
    (folder / "list_attr_celeba.txt").write_text(f"{N}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + attr_rows)
    lm_header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    lm_rows = "".join(n + "".join(f" {v:4d}" for v in row) + "\n" for n, row in zip(names, LANDMARKS))
    (folder / "list_landmarks_align_celeba.txt").write_text(f"{N}\n{lm_header}\n" + lm_rows)
    return root


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    return make_celeba(tmp_path / "data")


def load(root: Path, tasks: list[mm.TaskSpec] = TASKS, **options) -> mm.MultiTaskData:
    return mm.load_data("celeba", tasks, root=root, image_size=(32, 32), **options)


def test_splits_labels_and_landmarks_follow_the_files(celeba_root: Path) -> None:
    data = load(celeba_root)
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 6, "val": 3, "test": 3}
    smiling = CELEBA_ATTRIBUTES.index("Smiling")
    val = data.splits["val"]
    assert val.targets["smiling"].tolist() == ((ATTR[6:9, smiling] + 1) // 2).tolist()
    assert val.targets["male"].dtype == torch.long
    expected = LANDMARKS[6:9] / np.array([178, 218] * 5)
    torch.testing.assert_close(val.targets["landmarks"], torch.from_numpy(expected).float())
    assert val.images.shape == (3, 3, 32, 32)


def test_the_same_labels_as_torchvision_reads(celeba_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="Dataset not found or corrupted"):  # the MD5 check
        torchvision.datasets.CelebA(str(celeba_root), split="train", download=False)
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", lambda *a, **k: True)
    data = mm.load_data("celeba", TASKS, root=celeba_root, image_size=(218, 178))
    for split, tv_split in (("train", "train"), ("val", "valid"), ("test", "test")):
        ref = torchvision.datasets.CelebA(str(celeba_root), split=tv_split, target_type=["attr", "landmarks"], download=False)
        ours = data.splits[split]
        names = [a for a in ref.attr_names if a]
        assert ours.targets["smiling"].tolist() == ref.attr[:, names.index("Smiling")].tolist()
        assert ours.targets["male"].tolist() == ref.attr[:, names.index("Male")].tolist()
        torch.testing.assert_close(ours.targets["landmarks"] * torch.tensor([178.0, 218.0] * 5), ref.landmarks_align.float())
        image, _ = ref[0]
        pil = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)
        assert (ours.images[0].int() - pil.int()).abs().max() <= 2  # same JPEG, possibly another libjpeg


def test_task_limits_and_case_insensitive_names(celeba_root: Path) -> None:
    tasks = [mm.TaskSpec("shadow", "classification", 2), mm.TaskSpec("young", "classification", 2)]
    data = load(celeba_root, tasks, attributes={"shadow": "5_o_Clock_Shadow"}, n_train=4, n_test=0)
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 4, "val": 3}
    assert data.extra["task_map"] == {"shadow": "5_o_Clock_Shadow", "young": "Young"}


def test_attribute_target_is_the_one_place_that_knows_the_kind() -> None:
    raw = np.array([-1, 1, 1])
    assert attribute_target(mm.TaskSpec("a", "classification", 2), raw).tolist() == [0, 1, 1]


def _rewrite(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def _set_first_value(path: Path, image: str, value: str) -> None:
    lines = path.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(image))
    cells = lines[i].split()
    lines[i] = " ".join([cells[0], value, *cells[2:]])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "break_it,file,line,column,message",
    [
        (lambda f: (f / "list_attr_celeba.txt").unlink(), "list_attr_celeba.txt", None, None, "CelebA file is missing"),
        (lambda f: _set_first_value(f / "list_attr_celeba.txt", "000002.jpg", "7"), "list_attr_celeba.txt", 4, 2, "value '7' is not one of [-1, 1]."),
        (lambda f: _rewrite(f / "list_landmarks_align_celeba.txt", "000003.jpg", "000003.jpg 5"), "list_landmarks_align_celeba.txt", 5, None, "expected 11 columns (image + 10), got 12."),
        (lambda f: (f / "img_align_celeba" / "000007.jpg").write_bytes(b"broken"), "list_eval_partition.txt", 7, 1, "could not be decoded"),
        (lambda f: bomb_png(f / "img_align_celeba" / "000005.jpg"), "list_eval_partition.txt", 5, 1, "is too large: its header claims 900,000,000 pixels"),
        (lambda f: _rewrite(f / "list_eval_partition.txt", "000004.jpg 0", "000004.jpg 5"), "list_eval_partition.txt", 4, 2, "partition '5' is not one of 0 (train), 1 (valid), 2 (test)."),
    ],
    ids=["missing attr file", "attribute not -1/1", "landmarks row too long", "corrupt image", "decompression bomb", "unknown partition"],
)
def test_bad_celeba_files_name_file_line_and_column(celeba_root: Path, break_it, file: str, line, column, message: str) -> None:
    folder = celeba_root / "celeba"
    break_it(folder)
    with pytest.raises(mm.DataFileError) as info:
        load(celeba_root)
    problems = getattr(info.value, "problems", [info.value])
    hits = [p for p in problems if Path(p.path).name == file and p.line == line and p.column == column]
    assert hits and message in str(hits[0])


def test_unknown_attribute_is_refused_listing_the_known_ones(celeba_root: Path) -> None:
    with pytest.raises(ValueError, match=r"CelebA has no task 'smilng'; a task is an attribute \(5_o_Clock_Shadow, "):
        load(celeba_root, [mm.TaskSpec("smilng", "classification", 2), TASKS[1]])
