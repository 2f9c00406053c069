"""Property-based fuzzing of the experiment schema and the data-file parser (issue 28).

Mutated YAML and CSV inputs (types, encodings, byte-order marks, quoting, huge
numbers, very long lines, NUL bytes, unicode names) end as a valid result or as the
project's located error (:class:`spaces.ExperimentError` naming the file,
:class:`mtl_models.DataFileError` naming file and line), never a traceback; a run
refused by ``mtlsearch run`` leaves no run directory. Derandomised: CI sees the same
examples every time. ``python -m bench.fuzz`` runs many more.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import search.run._runner
from fuzz_inputs import check_data_file, check_experiment, data_files, experiment_documents, workspace
from search.cli import main as cli

def fast(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workspace(tmp_path_factory.mktemp("fuzz"))


def test_the_mutations_reach_both_outcomes(root: Path) -> None:
    """The fuzzers are not vacuous: the unmutated inputs load, and a mutation can refuse them."""
    (root / "exp.yaml").write_text("name: [unclosed\n")
    assert check_experiment(root / "exp.yaml") == "refused"
    (root / "one.csv").write_bytes(b"path,kind,size\nb.png,2,1\nb.png,1,1e39\n")
    assert check_data_file(root / "one.csv", root / "val.csv") == "refused"
    assert check_data_file(root / "train.csv", root / "val.csv") == "valid"


@fast(800)
@given(document=experiment_documents())
def test_a_mutated_experiment_is_valid_or_a_located_error(root: Path, document: bytes) -> None:
    path = root / "exp.yaml"
    path.write_bytes(document)
    assert check_experiment(path) in ("valid", "refused")


@fast(1100)
@given(content=data_files())
def test_a_mutated_data_file_loads_or_is_a_located_error(root: Path, content: bytes) -> None:
    path = root / "fuzz.csv"
    path.write_bytes(content)
    assert check_data_file(path, root / "val.csv") in ("valid", "refused")


class _RayWouldStart(Exception):
    """Raised instead of starting Ray: the experiment and its data passed every check."""


@fast(40)
@given(document=experiment_documents(), content=data_files())
def test_a_refused_run_is_exit_2_with_no_traceback_and_no_run_directory(
    root: Path, document: bytes, content: bytes, capsys: pytest.CaptureFixture
) -> None:
    (root / "exp.yaml").write_bytes(document)
    (root / "train.csv").write_bytes(content)
    out = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(search.run._start, "init_ray", lambda *a, **k: None)  # Ray starts while the files are read
    mp.setattr(search.run._runner, "init_ray", lambda *a, **k: (_ for _ in ()).throw(_RayWouldStart()))
    try:
        code = cli(["run", str(root / "exp.yaml"), "--out", str(out)])
    except _RayWouldStart:
        return  # valid: it would have run
    finally:
        mp.undo()
        workspace(root)  # the good files back for the next example
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mtlsearch: error: ") and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------- what the fuzzing found, pinned

GOOD_HEAD = "path,kind,size\na.png,0,1\nb.png,1,2\n"


@pytest.mark.parametrize(
    "row,message",
    [
        ("a.png\x00x,2,1", "line 4, column 1 (path): the image path contains a NUL byte."),
        ("~nobody_here/x.png,2,1", "line 4, column 1 (path): cannot expand '~nobody_here': no such user."),
        ("a.png,2,3.4e39", "line 4, column 3 (size): value '3.4e39' is beyond float32's range (+-3.4e38); allowed: a finite number"),
        ('"' + "x" * 200_000 + '",2,1', "line 4: the row cannot be split into cells (field larger than field limit (131072))."),
    ],
    ids=["NUL in a path", "unknown ~user", "beyond float32", "field over csv's limit"],
)
def test_data_rows_the_fuzzing_found_are_located_errors(root: Path, row: str, message: str) -> None:
    import mtl_models as mm

    path = root / "found.csv"
    path.write_text(GOOD_HEAD + row + "\n")
    with pytest.raises(mm.DataFileError) as info:
        mm.load_data("files", [mm.TaskSpec("kind", "classification", 3), mm.TaskSpec("size", "regression")],
                     train=str(path), val=str(root / "val.csv"), image_size=(4, 4), cache=False)
    assert str(info.value).startswith(f"{path}, {message}")


@pytest.mark.parametrize(
    "text,encoding,message",
    [
        ("name: caf\xe9\n", "latin-1", "{path}:1: not UTF-8 text (byte 0xe9); save the file as UTF-8."),
        ("name: x\nseed: 0\nbad: \xe9\n", "cp1252", "{path}:3: not UTF-8 text (byte 0xe9)"),
        ("name: " + "[" * 5000, "utf-8", "{path}: not valid YAML (nested too deeply)."),
        ("seed: " + "9" * 5000 + "\n", "utf-8", "{path}: not valid YAML (Exceeds the limit (4300 digits) for integer string conversion"),
        ("name: x\ndata: {source: files, train: " + "x" * 5000 + ".csv}\n", "utf-8", "data.train: data file '"),
        ("name: x\ndata: {source: files, train: ~nobody_here/t.csv}\n", "utf-8", "data.train: path '~nobody_here/t.csv' cannot be resolved (Could not determine home directory.)"),
    ],
    ids=["latin-1", "cp1252 line 3", "deep nesting", "5000-digit integer", "name too long", "unknown ~user (bench/fuzz.py)"],
)
def test_experiments_the_fuzzing_found_are_located_errors(tmp_path: Path, text: str, encoding: str, message: str) -> None:
    import spaces

    path = tmp_path / "exp.yaml"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.load_experiment(path)
    assert message.format(path=path) in str(info.value)


def test_an_experiment_in_utf16_with_a_bom_is_read(root: Path) -> None:
    import yaml

    from fuzz_inputs import EXPERIMENT

    path = root / "utf16.yaml"
    path.write_bytes(yaml.safe_dump(EXPERIMENT, allow_unicode=True).encode("utf-16"))
    assert check_experiment(path) == "valid"


@pytest.mark.parametrize("widths,message", [
    ([{"a": 1}], "cannot be built with these options (unsupported operand type(s) for %: 'dict' and 'int')"),
    ([10**12, 10**12], None),  # built on the meta device: no memory is taken; refused or not, no traceback
    ([4, 0], "cannot process 4x4 inputs (stage "),  # found by bench/fuzz.py: an IndexError in the dry run
])
def test_backbone_options_that_cannot_build_are_located_errors(root: Path, widths: list, message: str | None) -> None:
    import yaml

    from fuzz_inputs import EXPERIMENT

    path = root / "backbone.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, "backbone": {"name": "small_cnn", "options": {"widths": widths}}}))
    outcome = check_experiment(path)
    if message is not None:
        import spaces

        with pytest.raises(spaces.ExperimentError) as info:
            spaces.load_experiment(path)
        assert f"{path}:" in str(info.value)
        assert "backbone.options: 'small_cnn' " + message in str(info.value) or "backbone: 'small_cnn' " + message in str(info.value)
    else:
        assert outcome in ("valid", "refused")


def test_an_image_size_whose_tensor_overflows_is_a_located_error(root: Path) -> None:
    """Found by bench/fuzz.py: 4 x 2**62 pixels overflowed torch's size computation in the dry run."""
    import yaml

    import spaces
    from fuzz_inputs import EXPERIMENT

    path = root / "huge.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, "data": {**EXPERIMENT["data"], "image_size": [4, 2**62]}}))
    with pytest.raises(spaces.ExperimentError, match=r"backbone: 'small_cnn' cannot process 4x4611686018427387904 inputs \(Storage size calculation overflowed"):
        spaces.load_experiment(path)
