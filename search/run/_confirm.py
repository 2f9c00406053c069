"""Which configs the confirmation phase trains, and with which seeds: the shortlist, the
no-search default and the tuned single-task reference, each with fresh seeds; no (config,
seed) trained twice. Derived from the finished search alone, so a resumed run asks for the
same ones."""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from mtl_models import config_key
from reports import TUNED_SINGLE_TASK, confirm_shortlist, searched
from spaces import Experiment

from ..trial._baselines import tuned_single_task_config


def confirm_configs(exp: Experiment, fixed: dict[str, Any], results: pd.DataFrame) -> list[dict[str, Any]]:
    """The confirmation phase's trials: each shortlisted config (``confirm_shortlist``) and,
    with ``confirm.default``, the no-search default (everything shared: a hard split after
    the last stage, equal static loss weights, joint optimisation), each with
    ``confirm.seeds`` seeds that config was not trained with in the search (the first
    after the experiment's seed). A default identical to a shortlisted config is that
    config's runs, marked ``reference: default``: no (config, seed) is trained twice.

    Like for like: when the shortlist's best trains with other training hyperparameters
    than the baselines (a searched ``lr``, ...), the single-task networks trained with its
    values (:func:`tuned_single_task_config`) join, marked ``reference:
    tuned_single_task``, with that config's seeds (so the two pair seed by seed); a
    shortlisted config that is this reference is marked, not trained again."""
    confirm = exp.confirm
    if not confirm.enabled:
        return []
    shortlist = confirm_shortlist(results, list(exp.search.objectives), confirm.top_k, confirm.max_configs)
    chosen = {row.name: json.loads(row["config"]) for row in shortlist}
    pairs: dict[str, str] = {}  # a reference key -> the config whose seeds it shares
    if confirm.default:
        names = [t.name for t in exp.tasks]
        default = {
            **fixed, "family": "hard_split", "tree": "single", "split_point": exp.num_stages(),
            "loss_weighting": "static", "loss_weights": {t: 1.0 / len(names) for t in names},
            "optimization": "joint", "class_weighting": "none",
        }
        key = config_key(default)
        chosen[key] = {**chosen.get(key, default), "reference": "default"}
    tuned = tuned_single_task_config(exp, fixed, chosen[shortlist[0].name]) if shortlist else None
    if tuned is not None:
        key = config_key(tuned)
        chosen[key] = {**chosen.get(key, tuned), "reference": TUNED_SINGLE_TASK}
        pairs[key] = shortlist[0].name
    search = searched(results)

    def used(key: str) -> set[int]:
        return set(search.loc[search["config_key"] == key, "seed"].dropna().astype(int))

    configs = []
    for key, config in chosen.items():
        taken = used(key) | (used(pairs[key]) if key in pairs else set())
        configs += [{**config, "seed": seed} for seed in _fresh_seeds(exp.seed, confirm.seeds, taken)]
    return configs


def _fresh_seeds(first: int, count: int, used: set[int]) -> list[int]:
    seeds, seed = [], first + 1
    while len(seeds) < count:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds
