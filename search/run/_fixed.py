"""The config every trial of a run shares, before its family and searched values: a module of
its own because the start of a run (search.run._start, which imports no torch at its top)
and the plan (search.run._plan) both need it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtl_models import MultiTaskData
    from spaces import Experiment


def trial_base_config(exp: "Experiment", data: "MultiTaskData") -> dict[str, Any]:
    """The config every trial and baseline shares: the space's fixed keys plus how data is fed.

    ``loader`` (mode, workers, memory budget, augmentations, the trial's GPU share)
    is read by the trainer's data feeds; it changes speed, not results, except for
    the augmentations, which the config records so a row can be rebuilt exactly.
    """
    from spaces import fixed_config

    loader = {**exp.data.loader_config(exp.search.resources.cpu), "gpu_share": exp.search.resources.gpu}
    return {**fixed_config(exp, data.input_spec()), "loader": loader}
