"""The ``mtlsearch`` command line: check-data, plan, run, resume, affinity, report, select, export.

Conventions (as ML engineers know them from pip, git, Ray and Hydra):

- ``mtlsearch --version``; ``-v`` (debug lines) and ``-q`` (only warnings, errors and the
  results; ``-qq``: errors and results), before or after the command. The run's lines go to
  standard output, warnings and errors to standard error (``Warning: ...``, ``mtlsearch:
  error: ...``); progress (decoding images, evaluating, retraining) to standard error, as a
  bar on a terminal (tqdm) and as a line now and then otherwise (``search.base._log``).
- ``--set KEY=VALUE`` (repeatable) on the commands that read an experiment file: a dotted
  key into the file, a YAML value (``train.epochs=3``, ``space.families=[hard_split]``),
  applied before validation (a bad one is refused like a bad line of the file, located at
  its ``--set``) and recorded in the run (``experiment.yaml`` is the file with them
  applied; ``run.json``'s ``overrides``).
- Exit status: 0 success; 1 nothing matched or a check failed (``select`` with no
  qualifying config, ``check-data`` that found problems in the data); 2 a usage or input
  error (bad arguments, experiment file, run directory, data given to ``run``, storage that
  cannot be used); 130 interrupted (``mtlsearch resume`` continues).
- ``--json`` on check-data, report, select and export: one JSON document on standard output
  (every other line on standard error), the same exit status as without it; a usage or
  input error (exit 2) prints no document, only its ``mtlsearch: error:`` line. Schemas:

  check-data: ``{"experiment": path, "ok": bool, "rows": {split: n}, "tasks": [{"name",
  "kind", "classes"}], "labels": {"<split>/<task>": {"rows", "labelled", "missing_rate",
  ...}}, "warnings": [str], "loader": {"mode", "resolved", "augment": [name]},
  "problems": [{"path", "line", "column", "name", "message"}], "total_problems": n}``
  (on problems ``ok`` is false, exit 1, and only ``experiment``, ``ok``, ``problems``,
  ``total_problems`` are given).

  report: ``{"report": path, "runs": [{"run": path, "results": path, "trials": {phase:
  {status: n}}, "deploy_pick": PICK}]}``, PICK as recorded on the study (below).

  select: ``{"run", "configs", "selection_split", "verdict_split", "level", "qualifying":
  [{"trial_id", "family", "structure", "seeds", "delta_m": {"split", "role", "mean", "low", "high",
  "level", "approximate"}, "verdict_delta_m": {...}, "<metric columns>", "params", "flops",
  "latency_ms_b1", "latency_ms_bN", "pareto", "config"}], "pareto": [trial_id]}``.

  export: ``{"bundle": path, "trial_id", "phase", "family", "structure", "seed", "status",
  "epochs_run", "epochs", "deploy_candidate": bool, "retrained": bool, "files": [name],
  "warnings": [str]}``.

  PICK (``deploy_pick``, also the study user attribute ``deploy_pick`` in ``optuna.db``):
  ``{"trial_id", "config_key", "family", "structure", "phase", "source", "verdict_split",
  "delta_m": {"mean", "low", "high", "level", "runs", ...}, "selection_delta_m": {...},
  "verdict": [sentence], "config": {...}, "study_trials": [number]}``; ``trial_id`` null
  (with the verdict saying why) when no config qualifies.
- ``mtlsearch --print-completion bash`` (or zsh, tcsh) prints a shell completion script (shtab).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._cli_runs import (  # the commands the parser dispatches to, and what they share
    EXIT_NOTHING,
    EXIT_OK,
    _cli_log,
    _export,
    _print_json,
    _print_verdict,
    _report,
    _select,
)
from ._cli_errors import user_error


def _load(args: argparse.Namespace, extra: list[str] | None = None) -> Any:
    """The experiment of ``args.experiment`` with ``--set`` (and ``extra``) applied."""
    from spaces import load_experiment

    return load_experiment(args.experiment, overrides=[*(extra or []), *(args.set or [])])


def _check_data(args: argparse.Namespace) -> int:
    from mtl_models import DataFileError
    from mtl_models.data import format_data_report, make_feeds

    exp = _load(args)
    try:
        data = exp.load_data()
    except DataFileError as exc:  # the check ran and failed: exit 1, as a linter does
        listed = getattr(exc, "problems", [exc])
        if args.json:
            _print_json({"experiment": str(args.experiment), "ok": False, "total_problems": getattr(exc, "total", 1),
                         "problems": [{"path": p.path, "line": p.line, "column": p.column, "name": p.name,
                                       "message": p.message} for p in listed]})
        print(f"mtlsearch: error: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    loader = exp.data.loader_config(exp.search.resources.cpu)
    feeds = make_feeds(data, [t.name for t in exp.tasks], "cpu", {**loader, "gpu_share": exp.search.resources.gpu})
    mode = feeds["train"].mode
    rows = sum(len(s) for s in data.splits.values())
    if args.json:
        _print_json({
            "experiment": str(args.experiment), "ok": True,
            "rows": {name: len(split) for name, split in data.splits.items()},
            "tasks": [{"name": t.name, "kind": t.kind, "classes": t.classes} for t in data.tasks],
            "labels": data.label_summary(), "warnings": data.warnings(),
            "loader": {"mode": loader["mode"], "resolved": mode, "augment": [a["name"] for a in loader["augment"]]},
            "problems": [], "total_problems": 0,
        })
        return EXIT_OK
    print(format_data_report(data))
    augment = ", ".join(a["name"] for a in loader["augment"]) or "none"
    print(f"Loader: {loader['mode']} -> {mode} on this machine's CPU; augmentations: {augment}")
    print(f"OK: {rows} rows checked, no problems.")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from .run._start import import_phase_libraries, load_run_data, load_while_ray_starts

    extra = [f"search.num_trials={args.num_trials}"] if args.num_trials is not None else []
    extra += [f"search.max_concurrent={args.max_concurrent}"] if args.max_concurrent is not None else []

    def load() -> tuple:
        """Everything before the first trial that needs no Ray, done while Ray starts."""
        exp = _load(args, extra)
        return (exp, *load_run_data(exp, show_plan=True, num_cpus=args.num_cpus))

    exp, data, plan_text = load_while_ray_starts(load, args.address, args.num_cpus, then=import_phase_libraries)
    from .run._runner import run_experiment

    result = run_experiment(
        exp, args.out, address=args.address, num_cpus=args.num_cpus, storage=args.storage, cache_dir=_cache_dir(args),
        show_plan=True, data=data, plan_text=plan_text,
    )
    from reports import write_report

    _cli_log().info("Writing the report ...")
    report = write_report(result.run_dir)
    _print_verdict(result.run_dir)
    print(f"Results: {result.run_dir / 'results.parquet'}")
    print(f"Report:  {report}")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from .run._plan import plan

    exp = _load(args, [f"search.num_trials={args.num_trials}"] if args.num_trials is not None else [])
    print(plan(exp, timed=not args.no_timing, num_cpus=args.num_cpus))
    return 0


def _affinity(args: argparse.Namespace) -> int:
    from mtl_models import atomic_write_json

    from .run._affinity import affinity_in_ray, format_affinity
    from .base._cluster import init_ray, trial_resources
    from .run._fixed import trial_base_config

    exp = _load(args)
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
    from .recovery._cache import default_cache_dir

    return None if args.no_cache else (args.cache_dir or default_cache_dir())


def _resume(args: argparse.Namespace) -> int:
    from reports import write_report

    from .run._runner import resume_experiment

    result = resume_experiment(args.run, address=args.address, num_cpus=args.num_cpus, cache_dir=_cache_dir(args),
                               break_lock=args.break_lock, rebuild_study=args.rebuild_study)
    _cli_log().info("Writing the report ...")
    report = write_report(result.run_dir)
    _print_verdict(result.run_dir)
    print(f"Results: {result.run_dir / 'results.parquet'}")
    print(f"Report:  {report}")
    return 0


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path,
                        help="reuse baselines trained before on the same data and budget from here "
                        "(default: $MTLSEARCH_CACHE_DIR or ~/.cache/mtlsearch)")
    parser.add_argument("--no-cache", action="store_true", help="always train the baselines")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtlsearch")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q``, given before or after the command (SUPPRESS: a subcommand does not reset them)."""
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more lines: debug messages (on standard output; warnings always on standard error)")
    parser.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                        help="fewer lines: only warnings, errors and results (-qq: only errors and results)")


def _set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="change a setting of the experiment file: a dotted key and a YAML value, e.g. "
                        "train.epochs=3 or space.families=[hard_split]; repeatable; validated like the file "
                        "and recorded in the run (experiment.yaml, run.json)")


def _json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on standard output (other lines go to standard "
                        "error; schema: python -c 'import search.cli; help(search.cli)')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlsearch", description="Search how a multi-task network should share its layers.",
        epilog="Exit status: 0 success, 1 nothing matched or a check failed, 2 usage or input error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _verbosity_arguments(parser)
    try:
        import shtab
    except ImportError:  # completion is optional
        shtab = None
    if shtab is not None:
        shtab.add_argument_to(parser, ["--print-completion"], help="print a shell completion script (bash, zsh, tcsh)")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check-data", help="check every row of an experiment's data (files, images, labels) and summarise the labels"
    )
    check.add_argument("experiment", type=Path, help="experiment YAML file")
    _set_argument(check)
    _json_argument(check, "the label summary, warnings and problems")
    check.set_defaults(func=_check_data)

    run = sub.add_parser("run", help="run an experiment: baselines, then the search, then the report")
    run.add_argument("experiment", type=Path, help="experiment YAML file")
    run.add_argument("--out", type=Path, required=True, help="run directory to create (results, report, checkpoints)")
    run.add_argument("--address", help="join an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    run.add_argument("--num-trials", type=int, help="override search.num_trials (as --set search.num_trials=N)")
    run.add_argument("--max-concurrent", type=int, help="override search.max_concurrent (as --set search.max_concurrent=N)")
    _set_argument(run)
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
    _set_argument(plan)
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
    _set_argument(affinity)
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
    _json_argument(report, "the report's path, each run's trial counts and deploy pick")
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

    export = sub.add_parser(
        "export", help="export the deploy candidate (default) or a given trial as a deployable bundle",
        description="Write a bundle a deployer loads: config.json, the weights, the serving formats (default: all "
        "that are installed), and the model card (card.json, README.md). Without --trial it exports the deploy "
        "candidate, the config that `mtlsearch report` recommends: when the run has a confirmation phase that is "
        "a confirmation run (the config's run, with fresh seeds, whose validation Delta_m is nearest the config's "
        "mean), else a searched trial. It names the trial it exported, refuses to overwrite an existing directory "
        "(--force replaces an earlier bundle), and warns when the trial was pruned or errored.",
    )
    export.add_argument("run", type=Path, help="run directory")
    export.add_argument("--out", type=Path, required=True, help="bundle directory to write (new or empty; see --force)")
    export.add_argument("--force", action="store_true", help="replace --out when it holds an earlier bundle")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--trial", help="trial id (see the report's leaderboard or `mtlsearch select`)")
    which.add_argument("--best", action="store_true",
                       help="the deploy candidate (the default): a confirmation run when the run has them, the "
                       "config's run whose Delta_m is nearest its mean")
    export.add_argument("--no-format", action="append", metavar="FORMAT",
                        help="skip a serving format (torchscript, onnx, torch_export, ...: the known ones are listed when an unknown "
                        "one is given), e.g. where onnx is not installed; repeatable")
    _json_argument(export, "what was exported (trial, phase, files, warnings)")
    export.add_argument("--retrain", action="store_true",
                        help="first train the config again from scratch on train + val (same seed and epochs); "
                             "the test split stays held out")
    export.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where --retrain trains (default: the trial's)")
    export.set_defaults(func=_export)
    for name, command in sub.choices.items():
        _verbosity_arguments(command)
        for action in command._actions:  # what the shell completes
            if action.dest == "experiment":
                action.complete = getattr(shtab, "FILE", None)  # type: ignore[attr-defined]
            elif action.dest == "run":
                action.complete = getattr(shtab, "DIRECTORY", None)  # type: ignore[attr-defined]
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (see the module doc). Called in-process (tests,
    scripts), it leaves the ``mtlsearch`` logger's level and streams as it found them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)  # --help, --version, --print-completion and usage errors: no torch import
    args.argv = argv  # recorded in exported model cards

    from .base._log import console_state, log_to_console, restore_console, verbosity_level

    saved = console_state()
    log_to_console(verbosity_level(getattr(args, "verbose", 0), getattr(args, "quiet", 0)),
                   info_to_stderr=bool(getattr(args, "json", False)))
    try:
        return _dispatch(args)
    finally:
        restore_console(saved)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except Exception as exc:  # the user errors below get a line and an exit status; anything else its traceback
        code = user_error(exc, args)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
