"""Resume a run whose directory moved: another path, another head node, another Ray.

A run directory copied or moved elsewhere (``--out`` on shared storage, resumed from a
new head node) is resumed from where it is now. Two things Ray Tune and the searcher
keep from the first run would still point at the old place, and are pointed anew
after ``Tuner.restore`` and before ``fit()`` by :func:`reattach`:

- the search generator's snapshot holds the ``Experiment`` it was made with, storage
  path included; Tune moves the restored trials to the new place but not that
  experiment, so the trials the generator creates after the restore would be written
  under the old path (Ray 2.60). :class:`RelocatableSearchGenerator`, the generator
  every phase uses, takes the storage the run is in now;
- the Optuna searcher is pickled without its study (``MTLOptunaSearch.__getstate__``)
  and continues the study of the run directory (``RUN/optuna.db``); the confirmation
  race writes its file (``RUN/confirm_race.json``) in the run directory as it is now.

And one thing of the Ray session: Tune restores the searcher from a driver staging
folder named by the experiment's first start time and name, so resuming the same run
(or a copy of it) a second time in one process would restore the first resume's newer
searcher snapshot. :func:`clear_driver_staging` empties it before a restore.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import optuna
import ray
from ray.train._internal.storage import get_fs_and_path  # how Tune's StorageContext resolves a path (Ray 2.58-2.60)
from ray.train.constants import _get_ray_train_session_dir
from ray.tune.search import SearchGenerator

from reports import RACE_FILE

from ..study._optuna import MTLOptunaSearch
from ..study._racing import RacingConfigs


class RelocatableSearchGenerator(SearchGenerator):
    """Tune's ``SearchGenerator`` whose restored experiment writes where the run is now
    (:meth:`relocate`), not where its snapshot was taken."""

    _relocation: tuple[Any, str] | None = None  # (pyarrow filesystem, path), set after a restore

    def relocate(self, storage_path: str) -> None:
        """Make the trials created after the coming restore go under ``storage_path``."""
        self._relocation = get_fs_and_path(storage_path, None)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self._relocation is None or self._experiment is None:
            return
        storage = copy.copy(self._experiment.storage)  # as Tune does for the restored trials
        storage.storage_filesystem, storage.storage_fs_path = self._relocation
        self._experiment.storage = storage
        self._experiment.spec["storage"] = storage


def reattach(tuner: Any, storage_path: str, study_path: Path) -> None:
    """Point a restored Tuner's search generator at ``storage_path`` (where the run's Tune
    experiments are now) and its Optuna searcher, if any, at the study in ``study_path``."""
    tune_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)  # Ray 2.58-2.60
    searcher = getattr(tune_config, "search_alg", None)
    while searcher is not None:
        if isinstance(searcher, RelocatableSearchGenerator):
            searcher.relocate(storage_path)
        if isinstance(searcher, MTLOptunaSearch):
            searcher.use_study(optuna.storages.RDBStorage(f"sqlite:///{study_path}"))
        if isinstance(searcher, RacingConfigs):
            searcher.set_race_file(str(study_path.parent / RACE_FILE))
        searcher = getattr(searcher, "searcher", None)  # SearchGenerator, ConcurrencyLimiter: what they wrap


def clear_driver_staging(experiment: str) -> None:
    """Remove this Ray session's driver staging folders of experiments named ``experiment``
    (``<session>/artifacts/<start time>/<experiment>/driver_artifacts``), which an earlier
    restore in this process left; Tune downloads the experiment's own state into it anew."""
    if ray.is_initialized():
        for staging in Path(_get_ray_train_session_dir()).glob(f"*/{experiment}/driver_artifacts"):
            shutil.rmtree(staging, ignore_errors=True)
