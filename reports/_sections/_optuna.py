"""What mattered in the search: Optuna's parameter importances and parallel coordinates,
read from the run's study (``RUN/optuna.db``, study ``search``)."""
from __future__ import annotations

import optuna
import plotly.graph_objects as go

from .._run import RunData
from ._base import Block, ReportContext, note, per_run, register_section

STUDY_FILE = "optuna.db"
STUDY_NAME = "search"


@register_section("importance", "Search behaviour: what mattered", order=70)
def importance(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_importance)


def load_study(run: RunData) -> optuna.Study | None:
    """The run's Optuna study, read-only use; ``None`` when the run has none."""
    path = run.run_dir / STUDY_FILE
    if not path.is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:  # no study of that name (e.g. the search had not started)
        return None


def _run_importance(run: RunData) -> list[Block]:
    study = load_study(run)
    if study is None:
        return []
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Raw draws behind a value (``_``-prefixed, e.g. the unnormalised loss weights) are not config keys.
    params = sorted({p for t in complete for p in t.params if not p.startswith("_")})
    if len(complete) < 2 or not params:
        return []  # too few completed trials for importances
    blocks: list[Block] = [
        "<p>From the Optuna study: each trial's last reported &Delta;<sub>m</sub> (pruned trials at their pruning "
        "epoch). Parameters that only exist for one family (split point, alphas, unit learning rate) are "
        "ranked among that family's trials, the shared ones (family, learning rate) among all; fANOVA "
        "estimates are rough with few trials.</p>"
    ]
    blocks.append(_importances(complete, study.directions))
    fig = optuna.visualization.plot_parallel_coordinate(study, params=params, target=_delta_m, target_name="Δm")
    fig.update_layout(title="Parallel coordinates: each line a trial, coloured by Δm", height=460)
    blocks.append(fig)
    return blocks


def _delta_m(trial: optuna.trial.FrozenTrial) -> float:
    """Delta_m, the first objective (multi-objective studies also hold costs)."""
    return trial.values[0]


def _importances(trials: list[optuna.trial.FrozenTrial], directions: list) -> Block:
    """fANOVA importances per scope: all trials (shared parameters), then each family's trials."""
    scopes: list[tuple[str, list[optuna.trial.FrozenTrial]]] = [("all trials", trials)]
    families = sorted({t.params.get("family") for t in trials if isinstance(t.params.get("family"), str)})
    scopes += [(f"{f} trials", [t for t in trials if t.params.get("family") == f]) for f in families]
    fig = go.Figure()
    skipped = []
    for scope, group in scopes:
        params = sorted(set.intersection(*(set(t.params) for t in group))) if group else []
        params = [p for p in params if not p.startswith("_") and len({repr(t.params[p]) for t in group}) > 1]
        if len(group) < 2 or not params:
            skipped.append(f"{scope} ({len(group)} trials)")
            continue
        if len({_delta_m(t) for t in group}) < 2:  # fANOVA has nothing to attribute (and raises)
            skipped.append(f"{scope} (all {len(group)} trials at the same Δm)")
            continue
        study = optuna.create_study(directions=directions)
        study.add_trials(group)
        values = optuna.importance.get_param_importances(
            study, params=params, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=_delta_m
        )
        names = list(values)[::-1]
        fig.add_trace(
            go.Bar(x=[values[n] for n in names], y=[f"{n} ({scope})" for n in names], orientation="h",
                   name=f"{scope} (n={len(group)})", hovertemplate="%{y}: %{x:.2f}<extra></extra>")
        )
    if not fig.data:
        return note("Too few completed trials with different Δm for parameter importances"
                    + (f": {', '.join(skipped)}." if skipped else "."))
    fig.update_layout(
        title="Parameter importances for Δm (fANOVA, per scope)", xaxis_title="importance (sums to 1 per scope)",
        height=160 + 28 * sum(len(t.y) for t in fig.data),
    )
    if skipped:
        fig.add_annotation(text="not enough trials: " + ", ".join(skipped), xref="paper", yref="paper",
                           x=1, y=-0.25, showarrow=False, font={"size": 11, "color": "#666"})
    return fig
