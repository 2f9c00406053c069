"""The ``mtlsearch`` command line: check-data, run, report, export."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


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
    from reports import write_report
    from spaces import load_experiment

    from ._runner import run_experiment

    exp = load_experiment(args.experiment)
    overrides = {}
    if args.num_trials is not None:
        overrides["num_trials"] = args.num_trials
    if args.max_concurrent is not None:
        overrides["max_concurrent"] = args.max_concurrent
    if overrides:
        exp = exp.model_copy(update={"search": exp.search.model_copy(update=overrides)})
    result = run_experiment(exp, args.out, address=args.address, num_cpus=args.num_cpus)
    report = write_report(result.run_dir)
    print(f"Results: {result.run_dir / 'results.parquet'}")
    print(f"Report:  {report}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from reports import write_report

    from ._runner import resume_experiment

    result = resume_experiment(args.run, address=args.address, num_cpus=args.num_cpus)
    print(f"Results: {result.run_dir / 'results.parquet'}")
    print(f"Report:  {write_report(result.run_dir)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from reports import write_report

    from ._table import write_results

    write_results(args.run)
    print(f"Report: {write_report(args.run, args.out)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from reports import export_trial

    out = export_trial(args.run, args.out, trial_id=args.trial)
    print(f"Exported to {out} (load with mtl_models.load({str(out)!r}))")
    return 0


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
    run.set_defaults(func=_run)

    resume = sub.add_parser("resume", help="continue a run stopped by Ctrl-C, a killed driver or a lost node")
    resume.add_argument("run", type=Path, help="run directory")
    resume.add_argument("--address", help="join an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    resume.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    resume.set_defaults(func=_resume)

    report = sub.add_parser("report", help="(re)build results.parquet and report.html of a run, also while it runs")
    report.add_argument("run", type=Path, help="run directory")
    report.add_argument("--out", type=Path, help="report file (default: RUN/report.html)")
    report.set_defaults(func=_report)

    export = sub.add_parser("export", help="export a trial (default: the best) as a deployable bundle")
    export.add_argument("run", type=Path, help="run directory")
    export.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    export.add_argument("--trial", help="trial id (default: best finished searched trial by Delta_m)")
    export.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mtl_models import DataFileError
    from spaces import ExperimentError

    from ._runner import SearchInterrupted

    args = build_parser().parse_args(argv)
    data_log = logging.getLogger("mtlsearch.data")
    if not data_log.handlers:  # decoding progress on long first runs
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        data_log.addHandler(handler)
        data_log.setLevel(logging.INFO)
    try:
        return args.func(args)
    except SearchInterrupted as exc:
        print(f"mtlsearch: interrupted: {exc}", file=sys.stderr)
        return 130
    except (ExperimentError, DataFileError, FileExistsError, FileNotFoundError) as exc:
        print(f"mtlsearch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
