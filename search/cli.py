"""The ``mtlsearch`` command line: check-data, plan, run, resume, report, select, export."""
from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _check_data(args: argparse.Namespace) -> int:
    from mtl_models.data import format_data_report, make_feeds
    from spaces import load_experiment

    exp = load_experiment(args.experiment)
    data = exp.load_data()
    print(format_data_report(data))
    loader = exp.data.loader_config(exp.search.resources.cpu)
    feeds = make_feeds(data, [t.name for t in exp.tasks], "cpu", {**loader, "gpu_share": exp.search.resources.gpu})
    mode = feeds["train"].mode
    augment = ", ".join(a["name"] for a in loader["augment"]) or "none"
    print(f"Loader: {loader['mode']} -> {mode} on this machine's CPU; augmentations: {augment}")
    print(f"OK: {sum(len(s) for s in data.splits.values())} rows checked, no problems.")
    return 0


def _run(args: argparse.Namespace) -> int:
    from ._start import load_while_ray_starts

    def load() -> tuple:
        """Everything before the first trial that needs no Ray, done while Ray starts."""
        from spaces import load_experiment

        from ._runner import load_run_data

        exp = load_experiment(args.experiment)
        overrides = {}
        if args.num_trials is not None:
            overrides["num_trials"] = args.num_trials
        if args.max_concurrent is not None:
            overrides["max_concurrent"] = args.max_concurrent
        if overrides:
            exp = exp.model_copy(update={"search": exp.search.model_copy(update=overrides)})
        return (exp, *load_run_data(exp, show_plan=True, num_cpus=args.num_cpus))

    exp, data, plan_text = load_while_ray_starts(load, args.address, args.num_cpus)
    from reports import write_report

    from ._runner import run_experiment

    result = run_experiment(
        exp, args.out, address=args.address, num_cpus=args.num_cpus, storage=args.storage, cache_dir=_cache_dir(args),
        show_plan=True, data=data, plan_text=plan_text,
    )
    report = write_report(result.run_dir)
    _print_verdict(result.run_dir)
    print(f"Results: {result.run_dir / 'results.parquet'}")
    print(f"Report:  {report}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from spaces import load_experiment

    from ._plan import plan

    exp = load_experiment(args.experiment)
    if args.num_trials is not None:
        exp = exp.model_copy(update={"search": exp.search.model_copy(update={"num_trials": args.num_trials})})
    print(plan(exp, timed=not args.no_timing, num_cpus=args.num_cpus))
    return 0


def _print_verdict(run_dir: Path) -> None:
    """The report summary's verdict, in words, on the terminal."""
    from reports import load_run, short_label, tuned_reference

    run = load_run(run_dir, evaluate=False)
    for sentence in run.pick.sentences(short_label):
        print(sentence)
    chosen = run.pick.chosen
    reference = tuned_reference(run.results, None if chosen is None else chosen["config_key"])
    if reference is not None:
        print(reference.sentence())


def _affinity(args: argparse.Namespace) -> int:
    from mtl_models import atomic_write_json
    from spaces import load_experiment

    from ._affinity import affinity_in_ray, format_affinity
    from ._cluster import init_ray, trial_resources
    from ._runner import trial_base_config

    exp = load_experiment(args.experiment)
    data = exp.load_data()
    init_ray(args.address, args.num_cpus, exp.plugins)
    fixed = trial_base_config(exp, data)
    print(f"Measuring task affinity: {args.epochs} epochs of one fully shared {exp.backbone.name} ...", flush=True)
    result = affinity_in_ray(fixed, data, args.epochs, args.every, trial_resources(exp), exp.stage_names(), args.max_groups)
    print(format_affinity(result))
    if args.out is not None:
        atomic_write_json(args.out, result)
        print(f"Affinity: {args.out}")
    return 0


def _cache_dir(args: argparse.Namespace) -> Path | None:
    from ._cache import default_cache_dir

    return None if args.no_cache else (args.cache_dir or default_cache_dir())


def _resume(args: argparse.Namespace) -> int:
    from reports import write_report

    from ._runner import resume_experiment

    result = resume_experiment(args.run, address=args.address, num_cpus=args.num_cpus, cache_dir=_cache_dir(args),
                               break_lock=args.break_lock, rebuild_study=args.rebuild_study)
    report = write_report(result.run_dir)
    _print_verdict(result.run_dir)
    print(f"Results: {result.run_dir / 'results.parquet'}")
    print(f"Report:  {report}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from reports import write_report

    from ._table import write_results

    for run in args.run:
        write_results(run)
    print(f"Report: {write_report(args.run if len(args.run) > 1 else args.run[0], args.out)}")
    return 0


def _select(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from reports import Constraints, load_run, metric_column, parse_min_metric, select

    run = load_run(args.run, evaluate=False)
    constraints = Constraints(
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
        latency="latency_ms_bN" if args.latency_batch == "N" else "latency_ms_b1",
        min_metric=parse_min_metric(args.min_metric or []),
        families=tuple(args.family or ()),
        include_baselines=args.include_baselines,
        max_task_drop=run.max_task_drop if args.max_task_drop is None else _task_drop(args.max_task_drop),
    )
    chosen = select(run.results, run.tasks, constraints, compositions=run.compositions, labelled=run.labelled)
    metric_cols = [metric_column(t) for t in run.tasks]
    costs = ["params", "flops", "latency_ms_b1", "latency_ms_bN"]
    source = "confirmed over fresh seeds" if run.pick.source == "confirm" else "searched, one run per config"
    judged = run.pick.split
    level = run.pick.level
    if args.json:
        records = [
            {
                "trial_id": r["trial_id"],
                "family": r["family"],
                "seeds": int(r["seeds"]),
                "delta_m": {"split": "val", "role": "selection", "mean": _plain(r["delta_m"]),
                            "low": _plain(r.get("delta_m_low")), "high": _plain(r.get("delta_m_high")), "level": level,
                            "approximate": bool(r.get("approximate", False))},
                "verdict_delta_m": {"split": r.get("judged_split", "val"), "role": "verdict",
                                    "mean": _plain(r.get("judged_delta_m")), "low": _plain(r.get("judged_delta_m_low")),
                                    "high": _plain(r.get("judged_delta_m_high")), "level": level},
                **{c: _plain(r.get(c)) for c in metric_cols + costs if c in chosen},
                "pareto": bool(r["pareto"]),
                "config": json.loads(r["config"]),
            }
            for _, r in chosen.iterrows()
        ]
        print(json.dumps({"run": str(args.run), "configs": source, "selection_split": "val", "verdict_split": judged,
                          "level": level, "qualifying": records,
                          "pareto": [r["trial_id"] for r in records if r["pareto"]]}, indent=2))
        return 0
    if chosen.empty:
        print("No config meets these constraints.")
        return 1
    name = "test" if judged == "test" else "val"
    table = pd.DataFrame({
        "trial_id": chosen["trial_id"],
        "structure": [_describe(r) for _, r in chosen.iterrows()],
        "seeds": chosen["seeds"].astype(int),
        "delta_m (val, selection)": chosen["delta_m"],
        **({f"delta_m ({name}, verdict)": chosen["judged_delta_m"]} if judged == "test" else {}),
        f"interval ({name})": [_bounds(r, "judged_delta_m") for _, r in chosen.iterrows()],
        **{f"{c} (val)": chosen[c] for c in metric_cols if c in chosen},
        **{c: chosen[c] for c in costs if c in chosen},
        "pareto": chosen["pareto"].map({True: "*", False: ""}),
    })
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    front = chosen.loc[chosen["pareto"], "trial_id"].tolist()
    print(f"\n{len(chosen)} qualifying config(s), {source}; ranked on the validation split (selection); "
          + ("intervals on the test split, which the choice never saw"
             if judged == "test" else "no evaluated test split, so the intervals are on that same validation split "
             "(optimistic: the best of k on the same examples)")
          + f"; Delta_m intervals at {100 * level:.4g} % each (Bonferroni over {run.pick.k} configs).")
    print(f"Pareto-optimal (Delta_m vs params / latency, *): {', '.join(front)}")
    print(f"Export one with: mtlsearch export {args.run} --trial {chosen['trial_id'].iloc[0]} --out DIR "
          "(trial_id: each config's run nearest its mean Delta_m)")
    return 0


def _task_drop(value: str) -> str | float | None:
    """``--max-task-drop``: ``noise``, ``none`` or a percentage."""
    if value in ("noise", "none"):
        return None if value == "none" else value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--max-task-drop {value!r}: give noise, none or a percentage such as 1.0.") from None


def _bounds(row: "pd.Series", column: str = "delta_m") -> str:
    import math

    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or high is None or math.isnan(float(low)) or math.isnan(float(high)):
        return "-"
    return f"[{float(low):+.2f}, {float(high):+.2f}]" + (" ~" if row.get("approximate") else "")


def _plain(value: object) -> object:
    """A JSON-able scalar from a table cell (NaN -> None)."""
    import math

    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _describe(row: "pd.Series") -> str:
    import json

    from mtl_models import describe_config

    return describe_config(json.loads(row["config"]))


def _export(args: argparse.Namespace) -> int:
    from reports import export_trial

    if args.best and args.trial:
        raise ValueError("Give --trial ID or --best, not both.")
    formats = [f for f in ("torchscript", "onnx") if f not in (args.no_format or [])]
    out = export_trial(args.run, args.out, trial_id=args.trial, formats=formats, command=["mtlsearch", *args.argv],
                       retrain=args.retrain, device=args.device)
    print(f"Exported trial to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f"Load with mtl_models.load({str(out)!r})")
    return 0


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path,
                        help="reuse baselines trained before on the same data and budget from here "
                        "(default: $MTLSEARCH_CACHE_DIR or ~/.cache/mtlsearch)")
    parser.add_argument("--no-cache", action="store_true", help="always train the baselines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlsearch", description="Search how a multi-task network should share its layers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check-data", help="check every row of an experiment's data (files, images, labels) and summarise the labels"
    )
    check.add_argument("experiment", type=Path, help="experiment YAML file")
    check.set_defaults(func=_check_data)

    run = sub.add_parser("run", help="run an experiment: baselines, then the search, then the report")
    run.add_argument("experiment", type=Path, help="experiment YAML file")
    run.add_argument("--out", type=Path, required=True, help="run directory to create (results, report, checkpoints)")
    run.add_argument("--address", help="join an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    run.add_argument("--num-trials", type=int, help="override search.num_trials")
    run.add_argument("--max-concurrent", type=int, help="override search.max_concurrent")
    run.add_argument("--storage", help="where Ray Tune keeps trials and checkpoints: a shared filesystem path or an "
                     "object-store URI (s3://bucket/prefix); default: the run directory")
    _cache_arguments(run)
    run.set_defaults(func=_run)

    plan = sub.add_parser(
        "plan", help="print the resolved space (defaults filled in), the trials per phase and the expected wall time "
        "(from a short timing of an epoch on this machine), without running anything"
    )
    plan.add_argument("experiment", type=Path, help="experiment YAML file")
    plan.add_argument("--num-cpus", type=int, help="CPUs the run will have (default: all of this machine's)")
    plan.add_argument("--num-trials", type=int, help="as `run --num-trials`: override search.num_trials")
    plan.add_argument("--no-timing", action="store_true", help="skip the timing (no data is loaded, no wall time)")
    plan.set_defaults(func=_plan)

    affinity = sub.add_parser(
        "affinity", help="measure task affinity (TAG lookahead, per stage) on one shared network and propose branch trees"
    )
    affinity.add_argument("experiment", type=Path, help="experiment YAML file")
    affinity.add_argument("--epochs", type=int, default=2, help="epochs of the shared network (default 2)")
    affinity.add_argument("--every", type=int, default=10, help="measure every this many steps (default 10, as TAG's reference code)")
    affinity.add_argument("--max-groups", type=int, help="at most this many groups per stage in the proposed trees")
    affinity.add_argument("--out", type=Path, help="write the matrices and trees as JSON here")
    affinity.add_argument("--address", help="join an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    affinity.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    affinity.set_defaults(func=_affinity)

    resume = sub.add_parser("resume", help="continue a run stopped by Ctrl-C, a killed driver or a lost node")
    resume.add_argument("run", type=Path, help="run directory")
    resume.add_argument("--address", help="join an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    resume.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    resume.add_argument("--break-lock", action="store_true",
                        help="take over the run lock held by a driver on another host (one that is gone, e.g. a lost "
                        "head node); a live driver on this host is never overridden")
    resume.add_argument("--rebuild-study", action="store_true",
                        help="write a new optuna.db from the search's trials (when it is damaged, locked or lost); "
                        "the old file is kept as optuna.db.damaged-<time>")
    _cache_arguments(resume)
    resume.set_defaults(func=_resume)

    report = sub.add_parser(
        "report", help="(re)build results.parquet and report.html of a run (also while it runs), or compare runs"
    )
    report.add_argument("run", type=Path, nargs="+", help="run directory; several to compare them in one report")
    report.add_argument("--out", type=Path, help="report file (default: RUN/report.html; required for several runs)")
    report.set_defaults(func=_report)

    select = sub.add_parser("select", help="list the finished configs meeting deployment constraints, and the Pareto-optimal ones")
    select.add_argument("run", type=Path, help="run directory")
    select.add_argument("--max-params", type=float, metavar="N", help="at most N parameters")
    select.add_argument("--max-latency-ms", type=float, metavar="MS", help="at most MS milliseconds per forward pass")
    select.add_argument("--latency-batch", choices=["1", "N"], default="1",
                        help="latency at batch 1 (default) or at the training batch size N")
    select.add_argument("--min-metric", action="append", metavar="TASK=VALUE",
                        help="task's validation metric at least this good (>= for accuracy, <= for errors); repeatable")
    select.add_argument("--family", action="append", help="only this family (hard_split, cross_stitch, ...); repeatable")
    select.add_argument("--include-baselines", action="store_true", help="also consider the ensemble baseline")
    select.add_argument("--max-task-drop", metavar="noise|none|PCT",
                        help="how much any task may lose against single-task: noise (nothing beyond its noise), "
                        "none (no limit) or a percentage (default: the experiment's select.max_task_drop)")
    select.add_argument("--json", action="store_true", help="print JSON (with each config) instead of a table")
    select.set_defaults(func=_select)

    export = sub.add_parser("export", help="export a trial (default: the best) as a deployable bundle")
    export.add_argument("run", type=Path, help="run directory")
    export.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--trial", help="trial id (see the report's leaderboard or `mtlsearch select`)")
    which.add_argument("--best", action="store_true", help="the deploy candidate (the default): its run whose Delta_m is nearest the config's mean")
    export.add_argument("--no-format", action="append", choices=["torchscript", "onnx"],
                        help="skip a serving format (e.g. where onnx is not installed); repeatable")
    export.add_argument("--retrain", action="store_true",
                        help="first train the config again from scratch on train + val (same seed and epochs); "
                             "the test split stays held out")
    export.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where --retrain trains (default: the trial's)")
    export.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ._log import log_to_stdout

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in exported model cards
    log_to_stdout()  # the run's lines and warnings
    data_log = logging.getLogger("mtlsearch.data")
    if not data_log.handlers:  # decoding progress on long first runs, on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        data_log.addHandler(handler)
        data_log.setLevel(logging.INFO)
        data_log.propagate = False
    try:
        return args.func(args)
    except Exception as exc:  # the user errors below get a line and an exit status; anything else its traceback
        code = _user_error(exc, args)
        if code is None:
            raise
        return code


def _user_error(exc: Exception, args: argparse.Namespace) -> int | None:
    """Print a user error's line and return its exit status; None for a bug (keep the traceback).
    The error classes are imported here, not before the command: ``run`` starts Ray first."""
    from mtl_models import CorruptCheckpointError, DataFileError
    from spaces import ExperimentError

    from ._lock import RunLockedError
    from ._phases import SearchInterrupted
    from ._snapshots import SnapshotError
    from ._study import StudyError

    if isinstance(exc, SearchInterrupted):
        print(f"mtlsearch: interrupted: {exc}", file=sys.stderr)
        return 130
    if isinstance(exc, (RunLockedError, StudyError, SnapshotError, CorruptCheckpointError)):  # storage the run cannot use as it is
        print(f"mtlsearch: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, KeyError):
        return None  # a bug, not a user error: keep the traceback
    if isinstance(exc, (ExperimentError, DataFileError, FileExistsError, FileNotFoundError, LookupError, ValueError)):
        print(f"mtlsearch: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
        print(f"mtlsearch: error: {_out_of_space(exc, args)}", file=sys.stderr)
        return 2
    return None


OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # full disk, quota, file-size limit


def _out_of_space(exc: OSError, args: argparse.Namespace) -> str:
    """What to tell a user whose command ran out of disk space, and what to do next."""
    where = f" ({exc.filename})" if exc.filename else ""  # atomic writes name their file
    run = getattr(args, "out", None) if args.command == "run" else getattr(args, "run", None)
    again = {
        "run": f"continue the run with: mtlsearch resume {run}",
        "resume": f"continue the run with: mtlsearch resume {run}",
        "report": f"write it again with: mtlsearch report {' '.join(map(str, run or []))}",
    }.get(args.command, "run the command again")
    return (
        f"out of disk space: {exc.strerror}{where} [{errno.errorcode.get(exc.errno, exc.errno)}]. The disk (or quota, "
        f"or file-size limit) ran out while writing. The run's tables, study, snapshots and report are replaced "
        f"whole, so each is its last complete version; trials that could not write a checkpoint are retried from "
        f"their last whole one. Free space, then {again}."
    )


if __name__ == "__main__":
    sys.exit(main())
