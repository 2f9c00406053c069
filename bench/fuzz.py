"""A long fuzzing run of the experiment schema, the data-file parser and ``mtlsearch run``.

    python -m bench.fuzz [--experiments 6000] [--data 6000] [--runs 200] [--seed 28]

The same mutations as tests/test_fuzz.py (tests/fuzz_inputs.py: types, encodings,
byte-order marks, quoting, huge numbers, very long lines, NUL bytes, unicode names),
many more of them, from a recorded seed. Every example is counted as ``valid``,
``refused`` (the project's located error: ``ExperimentError`` naming the file,
``DataFileError`` naming file and line; for ``run``: exit 2, ``mtlsearch: error:``, no
traceback, no run directory) or a *traceback* (anything else; the first few are kept
with the input that caused them). Hypothesis does not shrink here: a failure is
recorded and the run goes on, so the counts are of examples tried.

Writes ``bench/results/fuzz.json``.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, given, seed as hypothesis_seed, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzz_inputs as F  # noqa: E402

from ._common import machine, write_result  # noqa: E402


class _RayWouldStart(Exception):
    pass


def _run_cli(root: Path, document: bytes, content: bytes) -> str:
    import search.run._runner
    from search.cli import main as cli

    (root / "exp.yaml").write_bytes(document)
    (root / "train.csv").write_bytes(content)
    out = root / "run"
    saved = search.run._runner.init_ray

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise _RayWouldStart()

    search.run._runner.init_ray = no_ray
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli(["run", str(root / "exp.yaml"), "--out", str(out)])
    except _RayWouldStart:
        return "valid"
    finally:
        search.run._runner.init_ray = saved
        F.workspace(root)
    text = err.getvalue()
    assert code == 2 and text.startswith("mtlsearch: error: ") and "Traceback" not in text, (code, text[-500:])
    assert not out.exists(), "a refused run left its run directory"
    return "refused"


def _campaign(name: str, examples: int, seed: int, strategy: st.SearchStrategy, check: Callable[[Any], str]) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    failures: list[dict[str, str]] = []

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(example=strategy)
    def run(example: Any) -> None:
        try:
            counts[check(example)] += 1
        except Exception as exc:  # the finding: counted, kept, and the run goes on
            counts["traceback"] += 1
            if len(failures) < 10:
                failures.append({"input": repr(example)[:600], "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                                 "where": traceback.format_exc().strip().splitlines()[-3][:300]})

    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    tried = sum(counts.values())
    print(f"{name}: {tried} examples in {seconds:.0f} s: {dict(counts)}")
    return {"examples": tried, "valid": counts["valid"], "refused": counts["refused"],
            "tracebacks": counts["traceback"], "seconds": round(seconds, 1), "failures": failures}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=6000)
    parser.add_argument("--data", type=int, default=6000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=28)
    args = parser.parse_args(argv)
    root = F.workspace(Path(tempfile.mkdtemp(prefix="mtlsearch-fuzz-")))

    def experiment(document: bytes) -> str:
        (root / "exp.yaml").write_bytes(document)
        return F.check_experiment(root / "exp.yaml")

    def data_file(content: bytes) -> str:
        (root / "fuzz.csv").write_bytes(content)
        return F.check_data_file(root / "fuzz.csv", root / "val.csv")

    result = {
        "what": "mutated experiment files, data files and `mtlsearch run` inputs: valid, refused with a located error, or a traceback",
        "seed": args.seed,
        **machine(),
        "experiments": _campaign("experiments", args.experiments, args.seed, F.experiment_documents(), experiment),
        "data_files": _campaign("data files", args.data, args.seed, F.data_files(), data_file),
        "runs": _campaign("mtlsearch run", args.runs, args.seed, st.tuples(F.experiment_documents(), F.data_files()),
                          lambda pair: _run_cli(root, *pair)),
    }
    result["tracebacks"] = sum(result[k]["tracebacks"] for k in ("experiments", "data_files", "runs"))
    result["examples"] = sum(result[k]["examples"] for k in ("experiments", "data_files", "runs"))
    print(f"total: {result['examples']} examples, {result['tracebacks']} tracebacks -> {write_result('fuzz', result)}")
    return result


if __name__ == "__main__":
    main()
