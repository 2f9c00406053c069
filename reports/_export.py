"""Export a trial of a run as a deployable bundle: config, weights, model card, TorchScript, ONNX."""
from __future__ import annotations

import json
import math
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from mtl_models import BUNDLE_EXPORTS, COST_COLUMNS, atomic_write_text, build_model, load_checkpoint_state, save_bundle

from ._retrain import retrain as _retrain
from ._results import metric_column, single_task_summary
from ._run import RunData, load_run
from ._sections._base import short_label
from ._select import delta_vs

CARD_MARKDOWN = "README.md"


def pick_trial(run: RunData, trial_id: str | None = None) -> pd.Series:
    """Trial ``trial_id``, or, when ``None``, the deploy candidate's representative run: of the
    config with the best mean validation Delta_m (over its confirmation seeds when the run
    has them) that drops no task beyond ``select.max_task_drop``, the run whose validation
    Delta_m is nearest that mean (not its luckiest seed), so the weights are a typical draw
    of the config the card describes."""
    results = run.results
    if trial_id is None:
        chosen = run.pick.chosen
        if chosen is None:
            if run.pick.table.empty:
                raise LookupError("No searched trial has finished with a Delta_m; nothing to pick.")
            raise LookupError(
                "No config keeps every task within select.max_task_drop of single-task "
                f"(best by Delta_m: trial {run.pick.table.iloc[0]['trial_id']}, which drops "
                f"{', '.join(run.pick.table.iloc[0]['dropped'])}); export one with --trial ID, or list them with "
                "`mtlsearch select RUN --max-task-drop none`."
            )
        trial_id = chosen["trial_id"]
    match = results[results["trial_id"] == trial_id]
    if match.empty:
        raise LookupError(f"No trial {trial_id!r} in this run; known: {', '.join(results['trial_id'].astype(str))}.")
    return match.iloc[0]


def export_trial(
    run_dir: str | Path,
    out: str | Path,
    trial_id: str | None = None,
    formats: Sequence[str] = tuple(BUNDLE_EXPORTS),
    command: Sequence[str] | None = None,
    evaluate: bool = True,
    retrain: bool = False,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the bundle of ``trial_id`` (default: the best finished searched trial) to ``out``.

    The bundle holds ``config.json`` (the trial's own config, so ``mtl_models.load(out)``
    rebuilds the exact model), ``weights.pt``, the serving ``formats`` (default
    TorchScript ``model.ts`` and ONNX ``model.onnx``, outputs in the card's
    ``outputs`` order), ``card.json`` and a readable ``README.md`` model card: tasks,
    metrics against both baselines (validation, and test where evaluated), cost,
    data, and the commands that produced it. Written atomically.

    ``retrain``: train the config again from scratch on train + val (same seed and
    epochs, on ``device``, default the trial's) and export that model instead; the
    card's ``retrained`` says so and gives its held-out test metrics.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, evaluate=evaluate, also=[trial_id] if trial_id else [])
    row = pick_trial(run, trial_id)
    if not isinstance(row.get("checkpoint"), str):
        raise LookupError(f"Trial {row['trial_id']!r} ({row['status']}) has no checkpoint to export.")
    config = json.loads(row["config"])
    card = model_card(run, row, command)
    if retrain:
        retrained = _retrain(run, row, device=device, progress=progress)
        model, card["retrained"] = retrained.model, retrained.info
    else:
        model = build_model(config)
        model.load_state_dict(load_checkpoint_state(row["checkpoint"])["model"])
    out = save_bundle(model, config, out, card, exports=formats)
    card = json.loads((out / "card.json").read_text())
    atomic_write_text(out / CARD_MARKDOWN, card_markdown(card))
    return out


def model_card(run: RunData, row: pd.Series, command: Sequence[str] | None = None) -> dict[str, Any]:
    """The model card of ``row``: what it predicts, how well against the baselines, at what cost, from what."""
    results, tasks = run.results, run.tasks
    single = single_task_summary(results)
    ensemble_rows = results[results["family"] == "ensemble"]
    ensemble = ensemble_rows.iloc[0] if len(ensemble_rows) else None
    splits = ["val", "test"] if _number(row.get(metric_column(tasks[0], "test"))) is not None else ["val"]
    metrics = {
        t.name: {
            "metric": t.metric_name,
            "higher_is_better": t.higher_is_better,
            **{
                split: {
                    "model": _number(row.get(metric_column(t, split))),
                    "single_task": _number(single.get(metric_column(t, split))),
                    "ensemble": None if ensemble is None else _number(ensemble.get(metric_column(t, split))),
                }
                for split in splits
            },
        }
        for t in tasks
    }
    delta = {
        split: {
            "vs_single_task": _number(row.get("delta_m" if split == "val" else "test_delta_m")),
            "vs_ensemble": None if ensemble is None else _number(delta_vs(row, ensemble, tasks, split)),
        }
        for split in splits
    }
    delta["note"] = ("These are this exported run's own numbers (one seed), per split; `config` gives the config's "
                     "mean over its seeds, with the split of each figure.")
    info = run.info
    export_command = list(command) if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {
        "name": f"{run.name}/{row['trial_id']}",
        "trial_id": row["trial_id"],
        "family": row["family"],
        "tasks": [t.to_dict() for t in tasks],
        "metrics": metrics,
        "delta_m": delta,
        "config": config_statistics(run, row),
        "test_split_note": (
            "Test metrics were computed after the search, only for shortlisted configs; the search chose on validation."
            if "test" in splits else "No test-split metrics for this trial."
        ),
        "cost": {
            k: _plain(row.get(k))
            for k in COST_COLUMNS
        },
        "training": {
            "epochs": int(row["epochs_run"]),
            "status": row["status"],
            "lr": _number(row.get("lr")),
            "batch_size": json.loads(row["config"]).get("batch_size"),
        },
        "data": {
            "description": info.get("data"),
            "labels": info.get("labels"),
            "source": (run.experiment.get("data") or {}),
        },
        "input": json.loads(row["config"])["input"],
        "provenance": {
            "run_dir": str(run.run_dir.resolve()),
            "checkpoint": row["checkpoint"],
            "search_command": " ".join(shlex.quote(str(a)) for a in info.get("command", [])) or None,
            "export_command": " ".join(shlex.quote(str(a)) for a in export_command),
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "versions": info.get("versions"),
        },
        "usage": "model = mtl_models.load(DIR); outputs = model(images)  # images: (B, C, H, W) floats in [0, 1]",
    }


def config_statistics(run: RunData, row: pd.Series) -> dict[str, Any] | None:
    """The exported run's config over its seeds, as the report ranks it: the selection figure
    (validation mean Delta_m with its interval) and the verdict's figures on the judging split
    (test when evaluated): Delta_m against single-task, the ensemble and the no-search
    default, each task's relative gain, the runs and seeds, which run was exported and
    why, and the verdict in words."""
    pick = run.pick
    match = pick.table[pick.table["config_key"] == row.get("config_key")] if len(pick.table) else pick.table
    if match.empty:
        return None
    config = match.iloc[0]
    estimates = config["estimates"]
    judged = config.get("judged") or estimates
    is_pick = pick.chosen is not None and pick.chosen["config_key"] == config["config_key"]
    return {
        "source": pick.source,
        "source_note": (
            "retrained with fresh seeds in the confirmation phase (the search's own run left out)"
            if pick.source == "confirm" else "the search's runs of this config (one run: its noise assumed from the single-task seeds)"
        ),
        "runs": list(config["trial_ids"]),
        "seeds": list(config["seed_list"]),
        "exported_run": row["trial_id"],
        "representative_run": config["trial_id"],
        "exported_run_note": (
            "the config's run whose validation Delta_m is nearest its mean (a typical seed, not the luckiest)"
            if row["trial_id"] == config["trial_id"] else "the run asked for with --trial (not the config's representative run)"
        ),
        "selection": {"split": "val", "delta_m_vs_single_task": estimates["delta_m"].as_dict()},
        "verdict_split": pick.split,
        "delta_m_vs_single_task": judged["delta_m"].as_dict(),
        "delta_m_vs_ensemble": judged["ensemble"].as_dict() if "ensemble" in judged else None,
        "delta_m_vs_no_search_default": judged["default"].as_dict() if "default" in judged else None,
        "task_gain_percent": {t.name: judged[t.name].as_dict() for t in run.tasks if t.name in judged},
        "config_metrics": {pick.split: {t.name: _number((config.get("judged_metrics") or {}).get(metric_column(t, pick.split)))
                                        for t in run.tasks},
                           "val": {t.name: _number(config.get(metric_column(t))) for t in run.tasks}},
        "dropped_tasks": list(config["dropped"]),
        "deploy_candidate": is_pick,
        "verdict": pick.sentences(short_label) if is_pick else None,
        "single_task_seeds": {t.name: pick.noise.seeds.get(t.name, 0) for t in run.tasks},
        "k_configs": pick.k,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a short human-readable Markdown page (``README.md`` of the bundle)."""
    lines = [f"# {card['name']} ({card['family']})", ""]
    lines += ["Predicts: " + ", ".join(f"`{t['name']}` ({t['kind']}, {t['classes']})" for t in card["tasks"]), ""]
    splits = [s for s in ("val", "test") if s in next(iter(card["metrics"].values()))]
    stats = card.get("config")
    config_metrics = (stats or {}).get("config_metrics") or {}
    lines += ["| task | metric | split | this model (exported run) | its config (mean over seeds) | single-task | ensemble |",
              "|---|---|---|---|---|---|---|"]
    for task, m in card["metrics"].items():
        arrow = "higher" if m["higher_is_better"] else "lower"
        for split in splits:
            v = m[split]
            lines.append(
                f"| {task} | {m['metric']} ({arrow} is better) | {split} | {_show(v['model'])} | "
                f"{_show((config_metrics.get(split) or {}).get(task))} | {_show(v['single_task'])} | {_show(v['ensemble'])} |"
            )
    lines.append("")
    if stats:
        est = stats["delta_m_vs_single_task"]
        on = stats.get("verdict_split", "val")
        lines.append(f"- **Exported run**: {stats['exported_run']}, {stats.get('exported_run_note', '')}.")
        selection = (stats.get("selection") or {}).get("delta_m_vs_single_task")
        if selection and on != "val":
            lines.append(f"- Selection figure (val): this config's Delta_m {_interval(selection)} vs single-task.")
        lines.append(
            f"- **This config over {est['runs']} run(s)** ({stats['source_note']}), on {on}: Delta_m {_interval(est)} "
            f"vs single-task ({100 * est['level']:.4g} % interval, Bonferroni over {stats.get('k_configs', 1)} configs)"
            + (f", {_interval(stats['delta_m_vs_ensemble'])} vs the ensemble" if stats["delta_m_vs_ensemble"] else "")
            + (f", {_interval(stats['delta_m_vs_no_search_default'])} vs the no-search default"
               if stats["delta_m_vs_no_search_default"] else "")
        )
        lines += [f"  - {line}" for line in stats["verdict"] or []]
    for split in [s for s in ("val", "test") if s in card["delta_m"]]:
        d = card["delta_m"][split]
        lines.append(
            f"- Delta_m of the exported run itself ({split}): {_show(d['vs_single_task'], '+.2f')} % vs single-task, "
            f"{_show(d['vs_ensemble'], '+.2f')} % vs the ensemble"
        )
    lines.append(f"- {card['test_split_note']}")
    if card.get("retrained"):
        r = card["retrained"]
        lines.append(f"- **Retrained** on {' + '.join(r['on'])} ({r['rows']} rows, {r['epochs']} epochs): {r['note']}")
        for task, metrics in (r["test"] or {}).items():
            lines.append(f"  - {task} (test, retrained): " + ", ".join(f"{k} {_show(v)}" for k, v in metrics.items()))
    cost = card["cost"]
    lines += [
        "",
        f"Cost: {_show(cost['params'], ',.0f')} parameters, {_show(cost['flops'], ',.0f')} FLOPs per image, "
        f"latency {_show(cost['latency_ms_b1'], '.3g')} ms at batch 1 and {_show(cost['latency_ms_bN'], '.3g')} ms at "
        f"batch {_show(cost['latency_batch'], '.0f')} on {cost['cost_device']}.",
        "",
        f"Data: {card['data']['description']}. Input: {json.dumps(card['input'])}.",
        "",
        "Files: " + ", ".join(f"`{f}` ({k})" for k, f in card["files"].items()) + ".",
        f"Serving outputs, in order: {', '.join(card['outputs'])} (input `{card['input_name']}`: (B, C, H, W) in [0, 1]).",
        "",
        f"Produced by: `{card['provenance']['search_command']}`, then `{card['provenance']['export_command']}` "
        f"({card['provenance']['exported']}).",
        "",
        "```python",
        "import mtl_models",
        "model = mtl_models.load(BUNDLE_DIR)   # eval mode, CPU",
        "outputs = model(images)              # {task: (B, output_dim)}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _interval(est: dict[str, Any]) -> str:
    if est["mean"] is None:
        return "-"
    if est["low"] is None:
        return f"{est['mean']:+.2f} (noise unknown)"
    return (f"{est['mean']:+.2f} [{est['low']:+.2f}, {est['high']:+.2f}]" + (" (approximate: one run)" if est["approximate"] else "")
            + (" (paired)" if est.get("paired") else ""))


def _show(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _number(value: Any) -> float | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _plain(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    number = _number(value)
    if number is None:
        return None
    return int(number) if float(number).is_integer() else number
