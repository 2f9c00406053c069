"""Racing confirmation: the shortlist is confirmed seed by seed, and a config that two or
more seeds already show to be worse than the leader beyond the noise trains no more seeds.

Round ``r`` trains seed ``r`` of every config still in the race (the configs share their
confirmation seeds, so rounds pair). After each round ``r >= 2`` that is not the last,
every config is compared with the current *leader* (the best mean validation Delta_m over
its seeds so far) on the seeds both have: the paired t interval of the per-seed
differences (``reports.paired_interval``, ``scipy.stats.ttest_rel``'s). A config whose
interval lies entirely below 0 stops. This is racing as in F-Race and irace (Birattari et
al., GECCO 2002; Lopez-Ibanez et al., Operations Research Perspectives 2016, whose
``t.bonferroni`` test compares each candidate with the best one by paired t-tests), made
sequential-safe by a Bonferroni bound over the looks:

- a race of ``K`` configs with ``S`` seeds looks ``L = S - 2`` times (after seeds
  ``2 .. S-1``; a look after the last seed would save nothing); at each look a config is
  compared with one leader, one of its ``K - 1`` rivals;
- each comparison's upper bound is a one-sided ``1 - alpha / (L (K - 1))`` bound (the
  two-sided interval at ``1 - 2 alpha / (L (K - 1))``);
- the true best config (highest expected validation Delta_m) is stopped only if at some
  look the bound of its difference from some rival (the leader or another) lies below 0
  although the true difference is not negative: by the union bound over the ``L (K - 1)`` (look, rival)
  pairs this happens with probability at most ``alpha`` (``confirm.race_alpha``, 0.05),
  whatever the dependence between looks and however the leader was chosen.

The validation split is the one the deploy pick is chosen on, so the race asks the pick's
question early; it judges nothing (the verdict's intervals, on test, come from the
configs that ran every seed). With ``df = 1`` after two seeds the t quantile is large
(about 25 for three configs), so only a config worse by much more than its seed spread
stops that early. An errored or non-finite run is a missing seed: its config stays in the
race (compared on the seeds it has), never stops the race. References the verdict needs
(the no-search default, the tuned single-task networks: ``reference`` set) never stop, so
their later seeds start whenever a round's last trials leave a slot idle (a look uses each
config's seeds up to its round only, so the decisions do not depend on that timing).
"""
from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.search import Searcher

from mtl_models import atomic_write_json, config_key
from reports import RACE_FILE, paired_interval

from ..base._log import get_logger
from ..trial._trainable import OBJECTIVE

log = get_logger("search")


def race_level(configs: int, looks: int, alpha: float) -> float:
    """The two-sided level of each paired interval of the race, so that its upper bound is a
    one-sided ``1 - alpha / (looks (configs - 1))`` bound (module docstring); 1 when the race
    makes no look or ``alpha`` is 0 (no config stops)."""
    comparisons = looks * (configs - 1)
    if comparisons <= 0 or alpha <= 0:
        return 1.0
    return 1.0 - 2.0 * alpha / comparisons


def race_stops(
    values: dict[str, dict[int, float | None]], level: float, protected: frozenset[str] | set[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """The configs that stop at this look: ``values[key][seed]`` is a config's validation
    Delta_m of that seed (None: errored), for the configs still in the race.

    Each config not in ``protected`` is paired by seed with every rival (the seeds both
    finished, at least two): the paired t interval at ``level`` of its differences. It stops
    when one lies entirely below 0; the rival named is the one with the lowest upper bound,
    the leader (the best mean) as a rule. Comparing with every rival, not only the leader,
    costs nothing in the guarantee: the Bonferroni count already covers every rival (module
    docstring), and a leader that lost a seed to an error cannot shield a config that the
    others already show beyond the noise. Returns ``{key: {"against", "seeds", "mean",
    "low", "high", "level"}}`` (Delta_m points, config minus rival)."""
    if level >= 1.0:
        return {}
    stops = {}
    for key, runs in values.items():
        if key in protected:
            continue
        worst = None
        for rival, other in values.items():
            seeds = sorted(s for s, v in runs.items() if _finite(v) and _finite(other.get(s))) if rival != key else []
            if len(seeds) < 2:
                continue
            mean, low, high = paired_interval([runs[s] - other[s] for s in seeds], level=level)
            if not math.isnan(high) and high < 0 and (worst is None or high < worst["high"]):
                worst = {"against": rival, "seeds": len(seeds), "mean": mean, "low": low, "high": high, "level": level}
        if worst is not None:
            stops[key] = worst
    return stops


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def race_entries(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The confirmation's flat trial list (``search.confirm_configs``: each config once per
    seed, in seed order) as race entries: ``{"key", "config" (with its first seed), "seeds",
    "protected"}`` in order of first appearance. A config with a ``reference`` is protected."""
    entries: dict[str, dict[str, Any]] = {}
    for config in configs:
        key = config_key(config)
        entry = entries.setdefault(key, {"key": key, "config": dict(config), "seeds": [],
                                         "protected": config.get("reference") is not None})
        entry["seeds"].append(int(config["seed"]))
    return list(entries.values())


class RacingConfigs(Searcher):
    """Suggests the confirmation trials round by round and stops configs (module docstring).

    ``entries``: :func:`race_entries`; every entry has the same number of seeds ``S``.
    ``alpha``: the chance allowed of stopping the true best (0: no config stops, every one
    trains all its seeds). ``race_file``: where the race is written after every round
    (``reports.RACE_FILE`` in the run directory, atomically), for the results table and the
    report. Suggests nothing (None: Tune asks again) while a round's trials run; the
    :data:`OBJECTIVE` of each completed trial is what it compares. Its state (the values
    seen, the trials out, the round, the stops) is saved as JSON with Tune's snapshots, so a
    resumed run keeps every finished seed and the same decisions.
    """

    def __init__(self, entries: list[dict[str, Any]], alpha: float = 0.05, race_file: str | None = None) -> None:
        super().__init__(metric=OBJECTIVE, mode="max")
        self._entries = [dict(e) for e in entries]
        self._race_file = race_file
        self._alpha = float(alpha)
        seeds = {len(e["seeds"]) for e in self._entries}
        if len(seeds) > 1:
            raise ValueError(f"every raced config needs the same number of seeds, got {sorted(seeds)}")
        self._rounds = seeds.pop() if seeds else 0
        self._level = race_level(len(self._entries), max(self._rounds - 2, 0), self._alpha)
        self._values: dict[str, dict[str, float | None]] = {e["key"]: {} for e in self._entries}
        self._out: dict[str, list] = {}  # trial_id -> [key, seed]
        self._round = 0
        self._stops: dict[str, dict[str, Any]] = {}
        self._finished = False

    @property
    def max_trials(self) -> int:
        return len(self._entries) * self._rounds

    def set_race_file(self, path: str) -> None:
        """Where the race is written (a resumed run whose directory moved)."""
        self._race_file = path

    def _alive(self) -> list[dict[str, Any]]:
        return [e for e in self._entries if e["key"] not in self._stops]

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        while not self._finished:
            todo = self._todo() or self._ahead()
            if todo:
                entry, seed = todo[0]
                self._out[trial_id] = [entry["key"], seed]
                return {**entry["config"], "seed": seed}
            if not self._round_done():
                return None  # the round's trials are running
            self._end_round()
        return Searcher.FINISHED

    def _end_round(self) -> None:
        """Decide at the end of a round: stop configs (a look), then go on to the next seed or finish."""
        if self._finished:
            return
        done = self._round + 1  # seeds every config in the race has now had
        if done >= self._rounds:
            self._finished = True
        elif done >= 2:
            values = {e["key"]: {s: self._values[e["key"]][str(s)] for s in e["seeds"][:done]} for e in self._alive()}
            protected = {e["key"] for e in self._entries if e["protected"]}
            for key, stop in race_stops(values, self._level, protected).items():
                self._stops[key] = {**stop, "after": done}
                log.info(
                    "Confirmation race: %s stops after %d seeds: validation Delta_m %+.2f [%+.2f, %+.2f] against "
                    "%s (each interval at %.4g %%); %d trainings saved", _label(self._entry(key)), done,
                    stop["mean"], stop["low"], stop["high"], _label(self._entry(stop["against"])),
                    100 * stop["level"], self._rounds - done,
                )
        if not self._finished:
            self._round += 1
        self._write()

    def _entry(self, key: str) -> dict[str, Any]:
        return next(e for e in self._entries if e["key"] == key)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        issued = self._out.pop(trial_id, None)
        if issued is None:
            return
        key, seed = issued
        ended = bool(result) and not error and int(result.get("epoch") or 0) >= int(result.get("epochs") or 0)
        value = result.get(OBJECTIVE) if ended else None  # errored or stopped short: a missing seed
        self._values[key][str(seed)] = float(value) if _finite(value) else None
        while not self._finished and self._round_done():  # decide now: Tune may not ask again
            self._end_round()

    def _round_done(self) -> bool:
        return all(str(e["seeds"][self._round]) in self._values[e["key"]] for e in self._alive())

    def _missing(self, entries: list[dict[str, Any]], indices: range) -> list[tuple[dict[str, Any], int]]:
        out = {(k, int(s)) for k, s in self._out.values()}
        return [(e, e["seeds"][i]) for i in indices for e in entries
                if str(e["seeds"][i]) not in self._values[e["key"]] and (e["key"], e["seeds"][i]) not in out]

    def _todo(self) -> list[tuple[dict[str, Any], int]]:
        """The current round's (entry, seed) pairs neither finished nor out."""
        return self._missing(self._alive(), range(self._round, self._round + 1))

    def _ahead(self) -> list[tuple[dict[str, Any], int]]:
        """Later seeds of the references, which never stop: they fill the slots a round's last
        trials leave idle, and wasting no training; the looks use seeds up to the round only."""
        return self._missing([e for e in self._entries if e["protected"]], range(self._round + 1, self._rounds))

    def race(self) -> dict[str, Any]:
        """The race as written to ``race_file``: per config its seeds, the seeds it ran and where it stopped."""
        return {
            "format": "mtlsearch.confirm_race/1",
            "alpha": self._alpha, "level": self._level, "seeds": self._rounds, "finished": self._finished,
            "trials": sum(len(v) for v in self._values.values()) + len(self._out),
            "configs": [
                {"config_key": e["key"], "reference": e["config"].get("reference"), "seeds": e["seeds"],
                 "protected": e["protected"], "values": self._values[e["key"]], "stopped": self._stops.get(e["key"])}
                for e in self._entries
            ],
        }

    def _write(self) -> None:
        if self._race_file is not None:
            atomic_write_json(self._race_file, self.race())

    def save(self, checkpoint_path: str) -> None:
        state = {"format": "mtlsearch.racing_configs/1", "entries": self._entries, "alpha": self._alpha,
                 "values": self._values, "out": self._out, "round": self._round, "stops": self._stops,
                 "finished": self._finished}
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as f:
            state = json.load(f)
        self._entries, self._alpha = state["entries"], float(state["alpha"])
        self._rounds = len(self._entries[0]["seeds"]) if self._entries else 0
        self._level = race_level(len(self._entries), max(self._rounds - 2, 0), self._alpha)
        self._values, self._out, self._round = state["values"], state["out"], int(state["round"])
        self._stops, self._finished = state["stops"], bool(state["finished"])


def _label(entry: dict[str, Any]) -> str:
    from mtl_models import describe_config

    reference = entry["config"].get("reference")
    return describe_config(entry["config"]) + (f" ({reference})" if reference else "")
