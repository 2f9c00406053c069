"""The deploy candidate and the ranked configs it was chosen from, in words: which split each
figure is on, against what, and whether it is beyond the noise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd


from ._results import STOPPED_AFTER
from ._stats import LEVEL, BaselineNoise, Estimate


_COMPARED = {1: "beats", 0: "is not distinguishable from", -1: "is worse than"}  # by an Estimate's verdict
_SPLIT = {"val": "validation", "test": "test"}


@dataclass
class Pick:
    """The deploy candidate and the ranked configs it was chosen from.

    ``source``: ``confirm`` (the confirmation phase's configs, each over its fresh seeds)
    or ``search`` (no confirmation: every finished searched config, usually one run each,
    its noise borrowed from the single-task seeds). ``table``: :func:`config_summary` of
    that pool on the validation split (the selection figures), best mean Delta_m first,
    with ``judged`` (each config's estimates on ``split``) and ``judged_delta_m``/
    ``_low``/``_high``/``judged_verdict_single``/``judged_dropped``; ``chosen``: its best
    config that drops no task beyond ``max_task_drop`` on validation (None when every
    config does). ``split``: where the verdict is judged: ``test`` when the pool's runs
    and the baselines were evaluated there, else ``val`` (the selection split). ``k``
    configs were ranked, so Delta_m intervals are at the Bonferroni ``level``.
    ``stopped``: the configs the confirmation race stopped (``search.study._racing``), one row
    each (the confirm row of its first run, with the race's columns), not in ``table``:
    the ranking and the verdict use only configs trained with every seed; ``k`` counts
    them too (the pick is the best of every config that entered the race).
    """

    source: str
    table: pd.DataFrame
    chosen: pd.Series | None
    noise: BaselineNoise
    max_task_drop: str | float | None
    has_default: bool
    has_ensemble: bool
    split: str = "val"
    judged_noise: BaselineNoise | None = None
    k: int = 1
    level: float = LEVEL
    ensemble_compositions: int = 1
    stopped: pd.DataFrame | None = None

    def judged(self, row: pd.Series | None = None) -> dict[str, Estimate]:
        """The estimates of ``row`` (default: the chosen config) on the judging split."""
        row = self.chosen if row is None else row
        return {} if row is None else row["judged"]

    def sentences(self, describe: Callable[[pd.Series], str]) -> list[str]:
        """The verdict in words (plain text): which config to deploy and whether it beats
        single-task, the ensemble and the no-search default beyond the noise, each figure
        with the split it is on."""
        if self.table.empty:
            return ["No config has finished yet; there is nothing to pick."]
        split = _SPLIT[self.split]
        if not self.noise.complete or self.noise.min_seeds < 2:
            noise = ("the single-task baseline has one seed per task, so its seed noise is unknown and no difference "
                     "can be called beyond it (baselines.seeds >= 2 measures it)")
        else:
            judged_noise = self.judged_noise or self.noise
            floor = (", with each task's sampling noise on its labelled examples" if judged_noise.has_floor else
                     " (the examples' sampling noise unknown: no label counts in run.json)")
            noise = (f"intervals are over seeds against the single-task baseline's {self.noise.min_seeds} seeds per "
                     f"task{floor}, paired where both sides share seeds; Delta_m intervals hold together for the "
                     f"best of the k = {self.k} ranked configs (Bonferroni: each at {100 * self.level:.4g} %), "
                     "per-task ones at 95 %")
        where = (
            "the confirmation phase (each shortlisted config trained again with fresh seeds)"
            if self.source == "confirm" else
            "the search (one run per config; a run's noise is taken from the single-task seeds; confirm.top_k > 0 retrains the shortlist with fresh seeds)"
        )
        judged = (
            "judged on the test split, which the choice never saw" if self.split == "test" else
            "judged on that same validation split, because the run has no evaluated test split: the verdict is "
            "optimistic, since the pick is the best of k on these very examples and only the seed noise, not the "
            "examples', is corrected for"
        )
        out = [f"Selected on the validation split from {where}; {judged}; {noise}."]
        chosen = self.chosen
        if chosen is None:
            best = self.table.iloc[0]
            out.append(
                f"No config keeps every task within {self._drop_text()} of single-task on validation; the best by "
                f"Delta_m, {describe(best)} (validation {best['estimates']['delta_m'].text()}), loses {', '.join(best['dropped'])}."
            )
            return out
        selection = chosen["estimates"]["delta_m"]
        judged_est = self.judged().get("delta_m", selection)
        verdict = {1: "beats single-task beyond the noise", 0: "is not distinguishable from single-task at this budget",
                   -1: "is worse than single-task beyond the noise"}[judged_est.verdict]
        runs = f"{judged_est.runs} seed{'s' if judged_est.runs != 1 else ''}"
        if self.split == "test":
            out.append(f"Deploy candidate: {describe(chosen)}, Delta_m on test {judged_est.text()} over {runs}: it "
                       f"{verdict} (selection figure, validation: {selection.text()}).")
        else:
            out.append(f"Deploy candidate: {describe(chosen)}, Delta_m on validation {judged_est.text()} over {runs}: it {verdict}.")
        lost = chosen.get("judged_dropped") or []
        if self.split == "test" and lost:
            out.append(f"On the test split it loses {', '.join(lost)} beyond {self._drop_text()} (it kept every task on validation).")
        warm = chosen.get("warm_start_epochs") or 0
        if warm:
            out.append(
                f"Its columns start from the single-task baselines: it trained {chosen.get('epochs_run', 0):.0f} epochs on top "
                f"of their {warm:.0f}, more than the single-task networks it is compared with (budget_epochs in the table)."
            )
        if chosen.name != self.table.index[0]:
            best = self.table.iloc[0]
            out.append(
                f"The best by Delta_m, {describe(best)} (validation {best['estimates']['delta_m'].text()}), is not the pick: "
                f"it loses {', '.join(best['dropped'])} beyond {self._drop_text()} on validation."
            )
        judged_all = self.judged()
        if self.has_ensemble and "ensemble" in judged_all:
            vs = judged_all["ensemble"]
            how = (f"the ensemble is the mean of its {self.ensemble_compositions} compositions from different seed members"
                   if self.ensemble_compositions > 1 else
                   "one ensemble composition, its noise taken as one single-task run's (baselines.seeds above the "
                   "ensemble size measures it)")
            out.append(f"Against the ensemble it {_COMPARED[vs.verdict]} it ({split} Delta_m {vs.text()}; {how}).")
        if self.has_default and "default" in judged_all and chosen.get("reference") != "default":
            vs = judged_all["default"]
            how = "paired over the same seeds" if vs.paired else "unpaired: the seeds differ"
            out.append(f"Against the no-search default (everything shared, equal loss weights) it "
                       f"{_COMPARED[vs.verdict]} it ({split} Delta_m {vs.text()}, {how}).")
        for name, vs in judged_all.items():  # further references (a confirmation row's `reference` value)
            if name in ("delta_m", "ensemble", "default") or name in {t.name for t in self.noise.tasks}:
                continue
            if chosen.get("reference") != name:
                how = "paired over the same seeds" if vs.paired else "unpaired: the seeds differ"
                out.append(f"Against the reference '{name}' it {_COMPARED[vs.verdict]} it ({split} Delta_m {vs.text()}, {how}).")
        out += self._race_sentences(describe)
        verdicts = self.table["judged_verdict_single"] if "judged_verdict_single" in self.table else self.table["verdict_single"]
        if not (verdicts == 1).any():
            out.append(f"No config beats single-task beyond the noise at this budget ({split}).")
        return out

    def _race_sentences(self, describe: Callable[[pd.Series], str]) -> list[str]:
        """Where the confirmation race stopped each config it stopped, and against which leader."""
        if self.stopped is None or self.stopped.empty:
            return []
        rivals = {row["config_key"]: row for _, row in pd.concat([self.table, self.stopped]).iterrows()}
        parts = []
        for _, row in self.stopped.iterrows():
            rival = rivals.get(row["confirm_stopped_against"])
            against = describe(rival) if rival is not None else "another config"
            parts.append(
                f"{describe(row)} after {int(row[STOPPED_AFTER])} seeds (validation Delta_m against {against} "
                f"{row['confirm_stopped_delta_m']:+.2f} [{row['confirm_stopped_delta_m_low']:+.2f}, "
                f"{row['confirm_stopped_delta_m_high']:+.2f}], paired by seed, each interval at "
                f"{100 * row['confirm_stopped_level']:.4g} %)"
            )
        return [f"The confirmation raced the configs seed by seed and stopped {len(parts)} as worse than the leader "
                f"beyond the noise: {'; '.join(parts)}. The ranking and the verdict use the {len(self.table)} configs "
                "trained with every seed."]

    def _drop_text(self) -> str:
        if self.max_task_drop == "noise":
            return "its noise"
        return f"{self.max_task_drop} %" if self.max_task_drop is not None else "any limit"
