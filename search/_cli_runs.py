"""The ``mtlsearch`` commands that read a finished run (report, select, export), the verdict
printed at the end of ``run``, and what the commands share: exit statuses, JSON output.
``search.cli`` builds the parser and dispatches to these."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import pandas as pd

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def _cli_log() -> logging.Logger:
    from .base._log import get_logger

    return get_logger("cli")


def _print_verdict(run_dir: Path, show: bool = True) -> dict[str, Any]:
    """The report summary's verdict, in words, on the terminal (``show``); the deploy pick is
    recorded on the run's study (``deploy_pick``) and returned (:func:`_pick_record`)."""
    from reports import load_run, tuned_reference, worded_label

    from .study._study import record_deploy_pick

    run = load_run(run_dir, evaluate=False)
    record = _pick_record(run)
    record = record_deploy_pick(Path(run_dir), record) or record
    if show:
        for sentence in run.pick.sentences(worded_label):
            print(sentence)
    chosen = run.pick.chosen
    reference = tuned_reference(run.results, None if chosen is None else chosen["config_key"])
    if reference is not None and show:
        print(reference.sentence())
    return record


def _pick_record(run: Any) -> dict[str, Any]:
    """The deploy pick of a loaded run as JSON (see the module doc's PICK)."""
    from mtl_models import describe_config
    from reports import short_label

    pick, chosen = run.pick, run.pick.chosen
    record: dict[str, Any] = {"trial_id": None, "config_key": None, "source": pick.source, "verdict_split": pick.split,
                              "verdict": pick.sentences(short_label)}
    if chosen is None:
        return record
    config = json.loads(chosen["config"]) if isinstance(chosen.get("config"), str) else None
    phase = run.results.loc[run.results["trial_id"] == chosen["trial_id"], "phase"]
    judged = pick.judged()
    return {
        **record,
        "trial_id": chosen["trial_id"],
        "config_key": chosen["config_key"],
        "family": chosen.get("family"),
        "structure": describe_config(config) if config else None,
        "phase": phase.iloc[0] if len(phase) else None,
        "delta_m": judged["delta_m"].as_dict() if "delta_m" in judged else None,
        "selection_delta_m": chosen["estimates"]["delta_m"].as_dict() if "estimates" in chosen else None,
        "config": config,
    }


def _report(args: argparse.Namespace) -> int:
    from reports import write_report

    from .results._table import write_results

    if len(args.run) > 1 and args.out is None:
        raise ValueError("Comparing several runs needs an output file (--out compare.html).")  # before any work
    runs = []
    for run in args.run:
        _cli_log().info("Reading the trials of %s ...", run)
        results = write_results(run)
        counts = {phase: {str(k): int(v) for k, v in rows["status"].value_counts().items()}
                  for phase, rows in results.groupby("phase")}
        _cli_log().info("  %s", "; ".join(f"{p}: " + ", ".join(f"{n} {s}" for s, n in c.items()) for p, c in counts.items()))
        runs.append({"run": str(run), "results": str(Path(run) / "results.parquet"), "trials": counts})
    _cli_log().info("Building the report (test-split evaluations of the shortlist are cached in each run) ...")
    report = write_report(args.run if len(args.run) > 1 else args.run[0], args.out)
    for entry in runs:
        entry["deploy_pick"] = _print_verdict(Path(entry["run"]), show=False)
    if args.json:
        _print_json({"report": str(report), "runs": runs})
    else:
        print(f"Report: {report}")
    return EXIT_OK


def _select(args: argparse.Namespace) -> int:
    import pandas as pd

    from mtl_models import results_table as rt
    from reports import Constraints, load_run, metric_column, parse_min_metric, select

    run = load_run(args.run, evaluate=False)
    constraints = Constraints(
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
        latency=rt.LATENCY_BN if args.latency_batch == "N" else rt.LATENCY_B1,
        min_metric=parse_min_metric(args.min_metric or []),
        families=tuple(args.family or ()),
        include_baselines=args.include_baselines,
        max_task_drop=run.max_task_drop if args.max_task_drop is None else _task_drop(args.max_task_drop),
    )
    chosen = select(run.results, run.tasks, constraints, compositions=run.compositions, labelled=run.labelled)
    metric_cols = [metric_column(t) for t in run.tasks]
    costs = list(rt.COSTS)
    source = "confirmed over fresh seeds" if run.pick.source == "confirm" else "searched, one run per config"
    judged = run.pick.split
    level = run.pick.level
    if args.json:
        records = [
            {
                "trial_id": r["trial_id"],
                "family": r["family"],
                "structure": _describe(r),
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
        return EXIT_NOTHING if chosen.empty else EXIT_OK  # as the table: 1 when nothing qualifies
    if chosen.empty:
        print("No config meets these constraints.")
        return EXIT_NOTHING
    from mtl_models import format_count, format_delta, format_flops, format_metric, format_ms

    name = "test" if judged == "test" else "val"
    formats = {rt.PARAMS: format_count, rt.FLOPS: format_flops, **{c: format_ms for c in rt.LATENCIES}}
    table = pd.DataFrame({
        "trial_id": chosen["trial_id"],
        "structure": [_describe(r) for _, r in chosen.iterrows()],
        "seeds": chosen["seeds"].astype(int),
        "delta_m (val, selection)": chosen["delta_m"].map(format_delta),
        **({f"delta_m ({name}, verdict)": chosen["judged_delta_m"].map(format_delta)} if judged == "test" else {}),
        f"interval ({name})": [_bounds(r, "judged_delta_m") for _, r in chosen.iterrows()],
        **{f"{metric_column(t)} (val)": chosen[metric_column(t)].map(lambda v, t=t: format_metric(v, t.metric_name))
           for t in run.tasks if metric_column(t) in chosen},
        **{c: chosen[c].map(formats[c]) for c in costs if c in chosen},
        "pareto": chosen["pareto"].map({True: "*", False: ""}),
    })
    print(table.to_string(index=False))
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
    from mtl_models import format_signed

    return f"[{format_signed(low)}, {format_signed(high)}]" + (" \u2248" if row.get("approximate") else "")


def _plain(value: object) -> object:
    """A JSON-able scalar from a table cell (NaN -> None)."""
    import math

    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _describe(row: "pd.Series") -> str:
    from mtl_models import describe_config, describe_structure

    config = json.loads(row["config"])
    words = describe_structure(config)
    return describe_config(config) + (f" ({words})" if words else "")


def _export(args: argparse.Namespace) -> int:
    from mtl_models import BUNDLE_EXPORTS, describe_config, load_card
    from reports import export_trial, load_results

    if args.best and args.trial:
        raise ValueError("Give --trial ID or --best, not both.")
    unknown = [f for f in args.no_format or [] if f not in BUNDLE_EXPORTS]
    if unknown:
        raise ValueError(f"--no-format {', '.join(unknown)}: not a serving format; known: {', '.join(BUNDLE_EXPORTS)}.")
    _refuse_to_overwrite(args.out, args.force)
    formats = [f for f in BUNDLE_EXPORTS if f not in (args.no_format or [])]
    _cli_log().info("Exporting %s of %s (%s) ...", f"trial {args.trial}" if args.trial else "the deploy candidate", args.run,
               ", ".join(formats) or "weights only")
    out = export_trial(args.run, args.out, trial_id=args.trial, formats=formats, command=["mtlsearch", *args.argv],
                       retrain=args.retrain, device=args.device)
    card = load_card(out)
    results, _ = load_results(args.run)
    row = results[results["trial_id"] == card["trial_id"]].iloc[0]
    config = json.loads(row["config"])
    warnings = _export_warnings(row, bool(card.get("retrained")))
    for warning in warnings:
        _cli_log().warning(warning)
    candidate = bool((card.get("config") or {}).get("deploy_candidate")) and (card.get("config") or {}).get(
        "exported_run") == (card.get("config") or {}).get("representative_run")
    files = sorted(p.name for p in out.iterdir())
    if args.json:
        _print_json({
            "bundle": str(out), "trial_id": card["trial_id"], "phase": row["phase"], "family": row["family"],
            "structure": describe_config(config), "seed": config.get("seed"), "status": row["status"],
            "epochs_run": int(row["epochs_run"]), "epochs": int(row["epochs"]), "deploy_candidate": candidate,
            "retrained": bool(card.get("retrained")), "files": files, "warnings": warnings,
        })
        return EXIT_OK
    which = "the deploy candidate" if candidate else "as asked"
    print(f"Exported trial {card['trial_id']} ({which}; {row['phase']} phase, {describe_config(config)}, "
          f"seed {config.get('seed')}{', retrained on train + val' if card.get('retrained') else ''}) to {out}: "
          f"{', '.join(files)}")
    print(f"Load with mtl_models.load({str(out)!r})")
    return EXIT_OK


def _refuse_to_overwrite(out: Path, force: bool) -> None:
    """``export --out`` must be new, empty, or (with ``--force``) an earlier bundle: never anything else."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise FileExistsError(f"--out {out}: a file of that name exists; give another --out.")
    if not force:
        raise FileExistsError(f"--out {out} exists and is not empty; give --force to replace it, or another --out.")
    if not (out / "card.json").is_file():
        raise FileExistsError(f"--out {out} exists and is not a bundle (no card.json); --force replaces only an "
                              f"earlier export. Give another --out.")


def _export_warnings(row: "pd.Series", retrained: bool) -> list[str]:
    """What a deployer must hear about an exported trial that did not finish its budget."""
    status, done, budget = row["status"], int(row["epochs_run"]), int(row["epochs"])
    if status == "finished" or retrained:
        return []
    if status == "pruned":
        return [f"trial {row['trial_id']} was pruned at epoch {done} of {budget}: the bundle holds a network trained for "
                f"{done} epoch(s), stopped because it looked worse than the others; its metrics are those of that epoch."]
    return [f"trial {row['trial_id']} is {status} (after {done} of {budget} epochs"
            + (f"; {row['error']}" if isinstance(row.get("error"), str) else "")
            + "): the bundle holds its last checkpoint, not a trained result."]
