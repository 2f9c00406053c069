"""Benchmark: the quickstart's wall time, phase by phase, against an earlier revision (issue 24).

    python -m bench.quickstart_time [--before REV] [--pairs N] [--work DIR]

The quickstart exactly as a new user runs it (``mtlsearch run examples/quickstart.yaml
--out ...``, each revision's own ``examples/quickstart.yaml``), with
``MTLSEARCH_CACHE_DIR`` an empty folder (no cached baselines), from a clone of revision
``--before`` (default aa0e5f3, the revision whose quickstart was measured at 4:29) and
from this checkout, in turn: ``--pairs`` pairs, the order alternating (before first, then
after first), so that load from other work falls on both alike. Other work on the
machine inflates every absolute time; the ratios after / before, pair by pair, are the
point, with the load average at each run's start and end.

Recorded per run: the wall time per phase (``bench.cost_of_answer.phase_walls``: start-up
up to Ray's line, each phase to its last progress line, then the ensemble's and report's
rest), per phase the Tune trials, those answered without training, the epochs trained,
the seconds inside epochs (training and validation: ``epoch_time_s``), the seconds of each
trial outside them (building the model, measuring its cost, checkpoints, reporting) and
how busy the trial slots were (trial seconds / (slots x the phase's span)), and the
verdict (the pick and its Delta_m interval). Writes ``bench/results/quickstart_time.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench._common import machine, write_result
from bench.cost_of_answer import PHASES, clone, phase_walls, run_cli, verdict

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "aa0e5f3"


def run_quickstart(repo: Path, out: Path) -> dict[str, Any]:
    """The quickstart command from ``repo`` (its code first on the path, its example file), every
    line time-stamped; an empty baseline cache."""
    cache = tempfile.mkdtemp(prefix="mtlsearch-cache-", dir="/tmp")
    load_start = os.getloadavg()
    result = run_cli(repo, Path("examples/quickstart.yaml"), out, extra=(), env={"MTLSEARCH_CACHE_DIR": cache})
    return {**result, "load_average_start": load_start, "load_average_end": os.getloadavg()}


def trial_times(run_dir: Path, slots: int = 2) -> dict[str, Any]:
    """Per phase, from each trial's ``result.json``: trials, answered, epochs trained, the seconds in
    epochs and outside them, and how busy the ``slots`` were over the phase's span."""
    out: dict[str, Any] = {}
    for phase in PHASES:
        trials = []
        for result in sorted((run_dir / phase).glob("*/result.json")):
            rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            if not rows:
                continue
            answered = bool(rows[-1].get("answered_from"))
            start = rows[0]["wall_time"] - rows[0]["time_this_iter_s"]
            in_epochs = sum(float(r.get("epoch_time_s") or 0.0) for r in rows)
            trials.append({"start": start, "end": rows[-1]["wall_time"], "answered": answered,
                           "epochs": 0 if answered else len(rows), "in_epochs": in_epochs,
                           "outside": sum(float(r["time_this_iter_s"]) for r in rows) - in_epochs})
        if not trials:
            continue
        span = max(t["end"] for t in trials) - min(t["start"] for t in trials)
        busy = sum(t["end"] - t["start"] for t in trials)
        out[phase] = {
            "trials": len(trials), "answered": sum(t["answered"] for t in trials),
            "epochs_trained": sum(t["epochs"] for t in trials),
            "in_epochs_s": round(sum(t["in_epochs"] for t in trials), 1),
            "outside_epochs_s": round(sum(t["outside"] for t in trials), 1),
            "span_s": round(span, 1), "slots_busy": round(busy / (slots * span), 2) if span > 0 else None,
        }
    return out


def revision(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def measure(repo: Path, work: Path, label: str) -> dict[str, Any]:
    run_dir = work / label
    print(f"[quickstart_time] {label} ({repo}) ...", flush=True)
    ran = run_quickstart(repo, run_dir)
    record = {
        "revision": revision(repo),
        "dirty": bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                     capture_output=True, text=True).stdout.strip()),
        "load_average_start": [round(x, 2) for x in ran["load_average_start"]],
        "load_average_end": [round(x, 2) for x in ran["load_average_end"]],
        "wall": phase_walls(ran["lines"], ran["total_s"]),
        "trials": trial_times(run_dir),
        "experiment_train": {k: json.loads((run_dir / "experiment.json").read_text())["train"][k]
                             for k in ("epochs", "channels_last")},
        "verdict": verdict(run_dir),
    }
    print(json.dumps({k: record[k] for k in ("load_average_start", "wall", "trials")}), flush=True)
    return record


def ratios(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    b, a = before["wall"], after["wall"]
    return {key: round(a[key] / b[key], 2) for key in b if key in a and b[key]}


def from_log(log: Path, work: Path) -> list[dict[str, Any]]:
    """The pairs a run of this benchmark printed to ``log`` (its lines and its run folders in
    ``work``): for a benchmark stopped before it wrote its result, e.g. after its first pair. The
    revisions are those of ``work``'s clone and of this checkout now (whether either was dirty
    then, a log does not say)."""
    revisions = {"before": revision(work / "before-repo"), "after": revision(ROOT)}
    pairs: list[dict[str, Any]] = []
    label = None
    for line in log.read_text().splitlines():
        if line.startswith("[quickstart_time] ") and line.endswith(" ..."):
            label = line.split()[1]
        elif line.startswith("{") and label is not None:
            which, index = label.split("-")
            while len(pairs) <= int(index):
                pairs.append({"order": []})
            record = json.loads(line)
            run_dir = work / label
            config = json.loads((run_dir / "experiment.json").read_text())
            pairs[int(index)][which] = {
                "revision": revisions[which], "dirty": None,
                **record, "load_average_start": [round(x, 2) for x in record["load_average_start"]],
                "experiment_train": {k: config["train"][k] for k in ("epochs", "channels_last")},
                "verdict": verdict(run_dir),
            }
            pairs[int(index)]["order"].append(which)
            label = None
    pairs = [p for p in pairs if "before" in p and "after" in p]
    for p in pairs:
        p["ratio_after_before"] = ratios(p["before"], p["after"])
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--work", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--from-log", type=Path, help="write the result from this benchmark's printed lines and "
                        "the runs in --work (a benchmark stopped early), running nothing")
    parser.add_argument("--append", action="store_true", help="add the pairs to the last result file, keeping "
                        "everything else it holds")
    parser.add_argument("--note", help="a note kept with each new pair (what the revisions differ in)")
    parser.add_argument("--after-first", action="store_true", help="start each pair with this checkout, not --before")
    args = parser.parse_args(argv)
    last = Path(__file__).resolve().parent / "results" / "quickstart_time.json"
    document = json.loads(last.read_text()) if args.append and last.is_file() else {}
    if args.from_log is not None:
        pairs = from_log(args.from_log, Path(args.work))
    else:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            work = Path(args.work or tmp)
            work.mkdir(parents=True, exist_ok=True)
            repos = {"before": clone(args.before, work / "before-repo"), "after": ROOT}
            pairs = []
            for i in range(args.pairs):
                order = ("before", "after") if (i + args.after_first) % 2 == 0 else ("after", "before")
                pair = {label: measure(repos[label], work, f"{label}-{i}") for label in order}
                pair["order"] = list(order)
                pair["ratio_after_before"] = ratios(pair["before"], pair["after"])
                pairs.append(pair)
                print(f"[quickstart_time] pair {i}: {pair['ratio_after_before']}", flush=True)
    for pair in pairs:
        pair.update({"note": args.note} if args.note else {})
    keys = pairs[0]["ratio_after_before"].keys()
    revisions = f"{pairs[0]['after']['revision']} against {pairs[0]['before']['revision']}"
    result = {
        "before": args.before,
        "note": "2 CPU cores shared with other work: absolute times are inflated by it; read the ratios, "
                "each from a pair of runs made one after the other (order alternating)",
        **document,  # an earlier result appended to keeps its own fields (its summary, notes)
        **machine(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "mtlsearch run examples/quickstart.yaml --out DIR, MTLSEARCH_CACHE_DIR an empty folder",
        "pairs": document.get("pairs", []) + pairs,
        "median_ratio_after_before": {  # of this invocation's pairs only: earlier ones compare other revisions
            "revisions": revisions,
            **{k: round(statistics.median(p["ratio_after_before"][k] for p in pairs), 2)
               for k in keys if all(k in p["ratio_after_before"] for p in pairs)},
        },
    }
    print(write_result("quickstart_time", result))


if __name__ == "__main__":
    main()
