"""Ray Tune's ``OptunaSearch``, made exact about what the Optuna study learns.

Ray's searcher tells Optuna every ended trial as COMPLETE with its last value when it
has one, also trials that errored or were stopped early, and it reports whatever the
metric holds. Here:

- a trial that errored (an exception, a NaN/inf loss, out of memory) is told FAIL,
  so a NaN or a broken trial never becomes a best value;
- a trial stopped early by the pruner is told PRUNED (Optuna's samplers treat pruned
  trials by their intermediate values, as in a plain Optuna loop);
- intermediate values that are missing or not finite are not reported;
- with several objectives (``metric`` and ``mode`` lists: Delta_m and costs) a trial
  completes with one value per objective, and none is reported along the way;
- Optuna parameters that are only a means to a value (``_``-prefixed raw draws) stay
  in the study and out of the trial config;
- the sampler's random state is seeded for each draw from the seed, the trial's number
  and (for a parameter drawn on its own) the parameter's name (:class:`SeededDraws`), so a
  proposal depends only on the study's history and its number, and a parameter's draw not
  on the draws before it: a proposal that a killed driver had begun (some parameters
  stored, others not) is completed on resume exactly as the uninterrupted search would
  have;
- the study carries the pruner (``study.pruner``), so the scheduler's pruning
  decisions and the sampler (Hyperband's brackets with TPE) see the same study, and
  that study is what ``mtlsearch resume`` restores;
- a proposal identical to an earlier one (TPE repeats a categorical-only config that
  looks good) is trained with the next seed, never the same (config, seed) twice: the
  study is told that seed's value, so the sampler sees the config's seed noise rather
  than a copy of one result, and the results table averages a config over its seeds.
  Each Optuna trial records its ``config_key`` and ``seed`` (user attributes);
- each Optuna trial also names what the results table calls it: user attributes
  ``trial_id`` (the Tune trial, the table's ``trial_id``), ``phase`` (``search``) and the
  loss weights as the table has them (``loss_weights/<task>``, normalised to sum to 1),
  since its parameters hold the raw draws ``_loss_weight.<task>`` the weights are made
  from (``spaces.simplex_weights``); the study names its objectives
  (``study.metric_names``: ``delta_m``, or the multi-objective metrics), and ``mtlsearch
  report`` records the deploy pick on it (``deploy_pick``, ``search.study._study``), which is
  not the study's best trial: the pick is judged over seeds, with its noise;
- intermediate values are reported at the trial's 0-based ``epoch`` (Tune's
  ``training_iteration`` only where no epoch is reported), which stays right when a
  trial restarts from an older checkpoint than its last one;
- each Tune trial's config carries its Optuna trial under ``_optuna`` (``number``,
  every parameter, raw draws included, its user and system attributes), so the
  study can be rebuilt from the trials alone (``mtlsearch resume --rebuild-study``, ``search.study._study``);
- a restored searcher uses the study of the run directory it is resumed from, not the
  path pickled in Tune's snapshot: a run directory copied or moved to another path or
  host resumes on its own ``optuna.db`` (and never touches the old path).

This relies on ``OptunaSearch``'s ``_ot_study``/``_ot_trials`` (Ray 2.58-2.60).
"""
from __future__ import annotations

import math
import pickle
import warnings
import zlib
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from mtl_models import config_key
from spaces import HIDDEN_PREFIX

OPTUNA_KEY = f"{HIDDEN_PREFIX}optuna"  # a Tune trial config's Optuna trial: number, params, user/system attrs
TUNE_TRIAL_ATTR = "tune_trial_id"  # user attribute of the trials of a rebuilt study


def trial_outcome(
    result: dict | None, error: bool, metric: str | list[str]
) -> tuple[TrialState, float | list[float] | None]:
    """How an ended Tune trial enters the Optuna study: state and value (a list of
    values, one per objective, when ``metric`` is a list)."""
    result = result or {}
    if error or result.get("error"):
        return TrialState.FAIL, None
    epochs = result.get("epochs")  # the trial's budget, reported with every result
    if epochs is not None and int(result.get("epoch", 0)) < int(epochs):
        return TrialState.PRUNED, None
    values = [result.get(m) for m in (metric if isinstance(metric, list) else [metric])]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return TrialState.FAIL, None
    values = [float(v) for v in values]
    return TrialState.COMPLETE, values if isinstance(metric, list) else values[0]


def set_metric_names(study: optuna.Study, names: list[str]) -> None:
    """``study.set_metric_names`` (experimental in Optuna since 3.2: its warning is not the user's concern)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def table_attrs(trial_id: str, config: dict[str, Any], phase: str = "search") -> dict[str, Any]:
    """The user attributes that tie an Optuna trial to its row of the results table: ``trial_id``,
    ``phase``, ``config_key`` and the loss weights as the table's ``loss_weights/<task>`` columns."""
    weights = config.get("loss_weights") or {}
    total = sum(float(w) for w in weights.values())
    return {
        "trial_id": trial_id,
        "phase": phase,
        "config_key": config_key(config),
        **{f"loss_weights/{t}": float(w) / total for t, w in weights.items() if total > 0},
    }


class MTLOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with exact trial outcomes and the pruner on its study (see module doc)."""

    def __init__(
        self, *args: Any, pruner: optuna.pruners.BasePruner | None = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        self._pruner = pruner or optuna.pruners.NopPruner()
        self._proposal_seed = seed  # not _seed: OptunaSearch's own (its default sampler's seed)
        self._reported: dict[str, set[int]] = {}
        self._orphans: list[int] = []  # Optuna _trial_ids
        super().__init__(*args, **kwargs)

    def _seeded_sampler(self) -> optuna.samplers.BaseSampler | None:
        """The sampler, wrapped to seed each draw (:class:`SeededDraws`) when a seed is given;
        also for a searcher unpickled from a run made before the wrapper."""
        if self._proposal_seed is not None and self._sampler is not None and not isinstance(self._sampler, SeededDraws):
            self._sampler = SeededDraws(self._sampler, self._proposal_seed)
        return self._sampler

    def _setup_study(self, mode: Any) -> None:
        self._seeded_sampler()
        super()._setup_study(mode)
        self._ot_study.pruner = self._pruner
        if self._ot_study.metric_names is None:
            set_metric_names(self._ot_study, list(self._metric) if isinstance(self._metric, list) else [self._metric])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (into Tune's ``tuner.pkl``) without its study: unpickling would connect to
        the database at the path it was made on. A resume attaches the study of the run
        directory (``search.recovery._relocate.reattach``). Tune's searcher snapshots (``save``) keep the
        whole state; :meth:`restore` reads them without connecting anywhere."""
        state = self.__dict__.copy()
        storage = state.pop("_storage", None)
        state["_study_url"] = getattr(getattr(storage, "_backend", storage), "url", state.get("_study_url"))
        return {**state, "_ot_study": None, "_storage": None, "_ot_trials": {}}

    def use_study(self, storage: optuna.storages.BaseStorage) -> None:
        """Continue the study named like this searcher's in ``storage`` (with this searcher's sampler and pruner)."""
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=self._seeded_sampler())
        self._ot_study.pruner = self._pruner

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def optuna_trial(self, trial_id: str) -> optuna.Trial | None:
        """The Optuna trial behind a Tune trial (None for a trial this searcher did not suggest)."""
        return self._ot_trials.get(trial_id)

    def report(self, trial_id: str, result: dict) -> optuna.Trial | None:
        """Report a Tune result's metric to its Optuna trial, once per step.

        The step is the 0-based epoch (``training_iteration - 1``), as in Optuna's
        examples. Returns the Optuna trial, or None when there is nothing to report
        (unknown or ended trial, missing or non-finite value).
        """
        ot_trial = self._ot_trials.get(trial_id)
        if isinstance(self.metric, list):  # Optuna keeps no intermediate values for several objectives
            return None
        value = result.get(self.metric)
        if ot_trial is None or trial_id in self._completed_trials or value is None:
            return None
        if not math.isfinite(float(value)):
            return None
        step = int(result.get("epoch") or result["training_iteration"]) - 1
        reported = self._reported.setdefault(trial_id, set())
        if step not in reported:  # the pruner scheduler reports first, then Tune calls us
            ot_trial.report(float(value), step)
            reported.add(step)
        return ot_trial

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        state, value = trial_outcome(result, error, self.metric)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except ValueError as exc:  # told before the driver was killed: the study keeps that
            if "Cannot tell a" not in str(exc):
                raise
        self._completed_trials.add(trial_id)

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self._orphans:
            # hand an orphan out again: same number, same parameters, as if never interrupted
            orphan = self._orphans.pop(0)
            self._ot_study._thread_local.cached_all_trials = None  # as ask() does: the sampler reads the history anew
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, orphan)
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config = self._next_seed({k: v for k, v in config.items() if not k.startswith(HIDDEN_PREFIX)}, trial_id)
            ot_trial = self._ot_trials[trial_id]
            for name, value in table_attrs(trial_id, config).items():
                ot_trial.set_user_attr(name, value)
            stored = self._ot_study._storage.get_trial(ot_trial._trial_id)
            config[OPTUNA_KEY] = {  # after everything the searcher records on the trial
                "number": stored.number,
                "params": stored.params,
                "user_attrs": stored.user_attrs,
                "system_attrs": stored.system_attrs,  # e.g. NSGA-II's generations
            }
        return config

    def _next_seed(self, config: dict[str, Any], trial_id: str) -> dict[str, Any]:
        """``config`` with the seed after those earlier trials of the same config used.

        Counts the study's trials numbered before this one whose ``config_key`` matches,
        so the seed depends only on the history: the same on resume.
        """
        ot_trial = self._ot_trials[trial_id]
        key = config_key(config)
        number = ot_trial.number
        repeats = sum(
            1 for t in self._ot_study.get_trials(deepcopy=False)
            if t.number < number and t.user_attrs.get("config_key") == key
        )
        seed = int(config.get("seed", 0)) + repeats
        ot_trial.set_user_attr("config_key", key)
        ot_trial.set_user_attr("seed", seed)
        return {**config, "seed": seed}

    def restore(self, checkpoint_path: str) -> None:
        """Restore the searcher (Tune's resume) on this run's study and find its orphans.

        The snapshot's state comes back, but its Optuna trials are looked up in the
        study this searcher opened (the run directory's ``optuna.db``, wherever the run
        directory is now). Orphans are trials the killed driver asked for after its last
        snapshot, which no Tune trial runs: the next suggestions hand them out again
        (their numbers and parameters), so the study holds each proposal once; the
        runner fails any left over when the search ends."""
        if self._ot_study is None:  # unpickled, not reattached (search.recovery._relocate): the study it was made on
            self.use_study(optuna.storages.RDBStorage(self._study_url))
        with open(checkpoint_path, "rb") as f:
            state = _DetachedStudyUnpickler(f).load()
        state["_ot_trials"] = _rebind(self._ot_study, state["_ot_trials"])
        # what the study holds, also what the killed driver reported after its snapshot
        state["_reported"] = {tid: set(self._storage.get_trial(t._trial_id).intermediate_values)
                              for tid, t in state["_ot_trials"].items()}
        self.__dict__.update({**state, "_ot_study": self._ot_study, "_storage": self._storage})
        known = {t._trial_id for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self._orphans = [t._trial_id for t in sorted(running, key=lambda t: t.number) if t._trial_id not in known]


class SeededDraws(optuna.samplers.BaseSampler):
    """An Optuna sampler whose random state is seeded before each draw: from ``seed`` and
    the trial's number for what it draws for the whole trial (``before_trial``, the
    multivariate ``sample_relative``), and also the parameter's name for a parameter drawn
    on its own (``sample_independent``: TPE's random first trials, a parameter outside the
    relative search space). A draw then depends on the study's history, the trial's number
    and the parameter only: not on how many draws came before it in this process, which a
    resumed proposal (its first parameters stored by the killed driver, so not drawn again)
    or a restored older snapshot of the sampler would change.

    It seeds the ``_rng`` of the sampler and of its ``_random_sampler`` (TPE's and
    NSGA-II's fallback), Optuna's ``LazyRandomState`` (Optuna 4-5); a sampler without one
    draws as it would unwrapped."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed

    def _seed(self, number: int, name: str | None = None) -> None:
        entropy = [self.seed, number] + ([zlib.crc32(name.encode())] if name is not None else [])
        value = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        for s in (self.sampler, getattr(self.sampler, "_random_sampler", None)):
            state = getattr(s, "_rng", None)
            if state is not None:
                state.rng.seed(value)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        self._seed(trial.number)
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        self._seed(trial.number, param_name)
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._seed(trial.number)
        self.sampler.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState, values: Any) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


class _DetachedRDBStorage(optuna.storages.RDBStorage):
    """What an ``RDBStorage`` pickled in a searcher snapshot unpickles to: its URL, no
    connection. Unpickling the real one would connect to (and create tables in) the
    database at the path the snapshot was taken on, which a moved run no longer has."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _DetachedStudyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name == "RDBStorage" and module.startswith("optuna.storages"):
            return _DetachedRDBStorage
        return super().find_class(module, name)


def _rebind(study: optuna.Study, trials: dict[str, optuna.Trial]) -> dict[str, optuna.Trial]:
    """The snapshot's Tune trial -> Optuna trial map on ``study``. A study rebuilt from the
    trials names each trial's Tune trial (user attribute ``tune_trial_id``), since its
    Optuna trial ids may differ; otherwise the ids are the snapshot's own."""
    rebuilt = {t.user_attrs[TUNE_TRIAL_ATTR]: t._trial_id for t in study.get_trials(deepcopy=False)
               if TUNE_TRIAL_ATTR in t.user_attrs}
    known = {t._trial_id for t in study.get_trials(deepcopy=False)}
    out = {}
    for trial_id, old in trials.items():
        ot_id = rebuilt.get(trial_id, old._trial_id)
        if ot_id not in known:
            raise RuntimeError(
                f"optuna.db has no Optuna trial for Tune trial {trial_id}: the study is older than the "
                f"search's trials. Resume with --rebuild-study to rebuild it from them."
            )
        out[trial_id] = optuna.Trial(study, ot_id)
    return out
