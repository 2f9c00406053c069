"""Export a trial of a run as a deployable bundle: config, weights, model card, TorchScript, ONNX."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from mtl_models import BUNDLE_EXPORTS, build_model, load_checkpoint_state, save_bundle

from ._card import card_markdown, model_card
from ._retrain import retrain as _retrain
from ._run import RunData, load_run, record_export


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
    out = save_bundle(model, config, out, card, exports=formats, markdown=card_markdown)
    record_export(run_dir, {"trial_id": str(row["trial_id"]), "out": str(Path(out).resolve()),
                            "exported": card["provenance"]["exported"], "retrained": bool(retrain)})
    return out
