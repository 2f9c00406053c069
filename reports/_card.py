"""The model card of an exported trial: what it predicts, how well against the baselines (on
which split), at what cost, from what; as ``card.json`` and a readable ``README.md``."""
from __future__ import annotations

import json
import math
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mtl_models import (
    results_table as rt,
    format_count,
    format_delta,
    format_estimate,
    format_flops,
    format_metric,
    format_ms,
)

from ._results import ensemble_row, metric_column, searched, single_task_summary
from ._run import RunData
from ._sections._base import short_label, structure_words, worded_label
from ._select import delta_vs



def model_card(run: RunData, row: pd.Series, command: Sequence[str] | None = None) -> dict[str, Any]:
    """The model card of ``row``: what it predicts, how well against the baselines, at what cost, from what."""
    results, tasks = run.results, run.tasks
    single = single_task_summary(results)
    ensemble = ensemble_row(results)
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
            "vs_single_task": _number(row.get(rt.delta_column(split))),
            "vs_ensemble": None if ensemble is None else _number(delta_vs(row, ensemble, tasks, split)),
        }
        for split in splits
    }
    delta["note"] = ("These are this exported run's own numbers (one seed), per split; `config` gives the config's "
                     "mean over its seeds, with the split of each figure.")
    info = run.info
    export_command = list(command) if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    config = json.loads(row["config"])
    stats = config_statistics(run, row)
    return {
        "name": f"{run.name}/{row['trial_id']}",
        "trial_id": row["trial_id"],
        "family": row["family"],
        "structure": {"short": short_label(row), "words": structure_words(row)},
        "no_search_default": is_no_search_default(run, row),
        "license": str((run.experiment or {}).get("license") or "unspecified"),
        "intended_use": intended_use(run, row, stats),
        "limitations": limitations(run, row, stats),
        "output_semantics": {
            t.name: {"kind": t.kind, "meaning": t.kind_impl.describe_output(t)} for t in tasks
        },
        "tasks": [t.to_dict() for t in tasks],
        "metrics": metrics,
        "delta_m": delta,
        "config": stats,
        "test_split_note": (
            "Test metrics were computed after the search, only for shortlisted configs; the search chose on validation."
            if "test" in splits else "No test-split metrics for this trial."
        ),
        "cost": {
            k: _plain(row.get(k))
            for k in rt.COST_COLUMNS
        },
        "training": {
            "epochs": int(row["epochs_run"]),
            "status": row["status"],
            "lr": _number(row.get("lr")),
            "batch_size": config.get("batch_size"),
        },
        "data": {
            "description": info.get("data"),
            "labels": info.get("labels"),
            "source": (run.experiment.get("data") or {}),
        },
        "input": config["input"],
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


def is_no_search_default(run: RunData, row: pd.Series) -> bool:
    """Whether ``row`` is the no-search default (every stage shared, equal loss weights):
    the run's default reference itself, a config that builds and trains the same model
    (same config key), or, in a run without that reference, a hard split sharing every
    stage with equal static weights."""
    if row.get("reference") == "default":
        return True
    results = run.results
    if "reference" in results and "config_key" in results:
        keys = set(results.loc[results["reference"] == "default", "config_key"].dropna())
        if keys:
            return row.get("config_key") in keys
    config = json.loads(row["config"])
    weights = list((config.get("loss_weights") or {}).values())
    return bool(
        config.get("family") == "hard_split" and run.stage_names
        and int(config.get("split_point") or 0) == len(run.stage_names)
        and not any(config.get(k) for k in ("split_points", "task_groups", "branches", "affinity_tree"))
        and config.get("loss_weighting") in (None, "static")
        and (not weights or max(weights) - min(weights) <= 1e-9)
    )


def intended_use(run: RunData, row: pd.Series, stats: dict[str, Any] | None) -> str:
    """What the model is for, in one paragraph: its tasks, its input and the data it was fit on."""
    tasks = ", ".join(f"{t.name} ({t.kind})" for t in run.tasks)
    spec = json.loads(row["config"])["input"]
    data = run.info.get("data") or (run.experiment.get("data") or {}).get("source") or "the run's data"
    chosen = ("the deploy candidate of the run (the best config by validation Delta_m that loses no task beyond "
              "select.max_task_drop)" if stats and stats.get("deploy_candidate") else "a trial chosen by hand (--trial)")
    return (
        f"Predicts {tasks} from {spec.get('channels')}-channel {spec.get('height')}x{spec.get('width')} images "
        f"scaled to [0, 1], drawn like those of {data}. It is {chosen}: a model for that data distribution and "
        "these label definitions, to be evaluated on the deployer's own data before use; it was not validated "
        "for other image sources, sizes or label sets, nor for decisions about people."
    )


def limitations(run: RunData, row: pd.Series, stats: dict[str, Any] | None) -> list[str]:
    """What the card's numbers do not cover: the budget, the data, the splits and the noise."""
    out = []
    exp = run.experiment or {}
    train = exp.get("train") or {}
    trials = searched(run.results)
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    budget = row.get("budget_epochs")
    budget = int(row["epochs_run"]) if budget is None or pd.isna(budget) else budget
    out.append(
        f"Budget: {len(trials)} searched trials ("
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"), each at most {train.get('epochs', '?')} "
        f"epochs; this model trained {_count_text(budget)} epochs (counting any single-task warm start). A longer "
        "budget or a larger search can rank the structures differently."
    )
    labelled = run.labelled
    if labelled:
        sizes = "; ".join(f"{split}: " + ", ".join(f"{t} {n:,}" for t, n in tasks.items())
                          for split, tasks in sorted(labelled.items()))
        out.append(f"Data: labelled examples per split and task: {sizes}. Trained on the train split only "
                   "(unless the card says it was retrained).")
    else:
        out.append("Data: the label counts of the run are unknown (no run.json label summary).")
    if run.has_test:
        out.append("Splits: the config was chosen on the validation split; the test figures were computed afterwards "
                   "on a split the choice never saw, for the shortlisted configs and the baselines only.")
    else:
        out.append("Splits: there is no evaluated test split, so every figure is on the validation split the config "
                   "was chosen on: optimistic (the best of k on those very examples).")
    if stats:
        est = stats["delta_m_vs_single_task"]
        verdict = ("beyond the noise" if est.get("low") is not None and (est["low"] > 0 or est["high"] < 0)
                   else "not beyond the noise")
        out.append(
            f"Noise: the weights are one seed of {len(stats['runs'])} run(s) of this config; its Delta_m against "
            f"single-task on {stats.get('verdict_split', 'val')} is {format_estimate(est)}, {verdict}. Another seed "
            "gives other per-task figures within those intervals."
        )
    else:
        out.append("Noise: this run was not among the ranked configs; its figures are one seed's, with no interval.")
    out.append("Calibration: the probabilities obtained from the outputs (softmax or sigmoid of the logits) were "
               "not checked for calibration.")
    return out


def _count_text(value: Any) -> str:
    number = _number(value)
    return "?" if number is None else (f"{int(number)}" if float(number).is_integer() else f"{number:.1f}")


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
        "verdict": pick.sentences(worded_label) if is_pick else None,
        "single_task_seeds": {t.name: pick.noise.seeds.get(t.name, 0) for t in run.tasks},
        "k_configs": pick.k,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a short human-readable Markdown page (``README.md`` of the bundle)."""
    structure = card.get("structure") or {}
    words = f" ({structure['words']})" if structure.get("words") else ""
    lines = [f"# {card['name']}: {structure.get('short', card['family'])}{words}", ""]
    lines += [f"Licence: {card.get('license', 'unspecified')}.", ""]
    if card.get("no_search_default") is not None:
        lines += [("This model is the no-search default (every stage shared, equal loss weights)."
                   if card["no_search_default"] else
                   "This model is not the no-search default (every stage shared, equal loss weights): the search chose it."), ""]
    if card.get("intended_use"):
        lines += ["## Intended use", "", card["intended_use"], ""]
    if card.get("limitations"):
        lines += ["## Limitations", ""] + [f"- {item}" for item in card["limitations"]] + [""]
    lines += ["## Outputs", "", f"Input `{card['input_name']}`: (B, C, H, W) floats in [0, 1], {json.dumps(card['input'])}. "
              "Serving outputs, in this order:", ""]
    semantics = card.get("output_semantics") or {}
    for task in card["outputs"]:
        meaning = semantics.get(task, {})
        lines.append(f"- `{task}` ({meaning.get('kind', '?')}): {meaning.get('meaning', '')}")
    lines += ["", "## Metrics", ""]
    splits = [s for s in ("val", "test") if s in next(iter(card["metrics"].values()))]
    stats = card.get("config")
    config_metrics = (stats or {}).get("config_metrics") or {}
    lines += ["| task | metric | split | this model (exported run) | its config (mean over seeds) | single-task | ensemble |",
              "|---|---|---|---|---|---|---|"]
    for task, m in card["metrics"].items():
        arrow = "higher" if m["higher_is_better"] else "lower"
        show = lambda v: format_metric(v, m["metric"])  # noqa: E731
        for split in splits:
            v = m[split]
            lines.append(
                f"| {task} | {m['metric']} ({arrow} is better) | {split} | {show(v['model'])} | "
                f"{show((config_metrics.get(split) or {}).get(task))} | {show(v['single_task'])} | {show(v['ensemble'])} |"
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
            f"- Delta_m of the exported run itself ({split}): {format_delta(d['vs_single_task'])} vs single-task, "
            f"{format_delta(d['vs_ensemble'])} vs the ensemble"
        )
    lines.append(f"- {card['test_split_note']}")
    if card.get("retrained"):
        r = card["retrained"]
        lines.append(f"- **Retrained** on {' + '.join(r['on'])} ({r['rows']} rows, {r['epochs']} epochs): {r['note']}")
        for task, metrics in (r["test"] or {}).items():
            lines.append(f"  - {task} (test, retrained): " + ", ".join(f"{k} {format_metric(v, k)}" for k, v in metrics.items()))
    cost = card["cost"]
    lines += [
        "",
        f"Cost: {format_count(cost[rt.PARAMS])} parameters, {format_flops(cost[rt.FLOPS])} FLOPs per image, "
        f"latency {format_ms(cost[rt.LATENCY_B1])} at batch 1 and {format_ms(cost[rt.LATENCY_BN])} at "
        f"batch {format_count(cost[rt.LATENCY_BATCH])} on {cost[rt.COST_DEVICE]}.",
        "",
        f"Data: {card['data']['description']}.",
        "",
        "## Files",
        "",
        "| file | role | sha256 |",
        "|---|---|---|",
    ]
    roles = {name: role for role, name in card["files"].items()}
    digests = card.get("sha256") or {}
    for name in sorted(set(digests) | set(roles)):
        lines.append(f"| `{name}` | {roles.get(name, 'plugin')} | {digests.get(name, '(see SHA256SUMS)')} |")
    lines += [
        "",
        "Check them with `sha256sum -c SHA256SUMS` (it covers this README and card.json too).",
        "",
        f"Produced by: `{card['provenance']['search_command']}`, then `{card['provenance']['export_command']}` "
        f"({card['provenance']['exported']}).",
        "",
        "```python",
        "import mtl_models",
        "model = mtl_models.load(BUNDLE_DIR)   # eval mode, CPU; weights from weights.safetensors",
        "outputs = model(images)              # {task: tensor}, see Outputs",
    ]
    if "torch_export" in card["files"]:
        lines += [
            "",
            "import torch                         # without mtl_models: the torch.export program",
            f"program = torch.export.load(BUNDLE_DIR + '/{card['files']['torch_export']}').module()",
            "outputs = program(images)            # a tuple, in the Outputs order",
        ]
    lines += ["```", ""]
    return "\n".join(lines)


def _interval(est: dict[str, Any]) -> str:
    text = format_estimate(est, approximate=False)
    return text + (" (one run: noise assumed)" if est.get("approximate") else "") + (" (paired)" if est.get("paired") else "")


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
