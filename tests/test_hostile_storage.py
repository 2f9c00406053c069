"""Nothing read back from a run directory executes code (issue 28): checkpoints are
loaded with torch's restricted unpickler, the baselines' searcher state is JSON."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import mtl_models as mm
from conftest import make_config, make_tasks, random_data
from search.study._fixed import FixedConfigs


class Payload:
    """Unpickling it runs ``open(marker, 'w')``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _with_manifest(directory: Path) -> None:
    """A manifest that matches: a writer of the run directory can forge it too."""
    data = (directory / "state.pt").read_bytes()
    manifest = {"file": "state.pt", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "epoch": 1}
    (directory / "state.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("manifest", [True, False], ids=["forged manifest", "no manifest"])
def test_a_checkpoint_carrying_a_pickle_payload_is_refused_without_running_it(tmp_path: Path, manifest: bool) -> None:
    marker = tmp_path / "PWNED"
    directory = tmp_path / "checkpoint_000000"
    directory.mkdir()
    torch.save({"epoch": 1, "model": {"w": torch.zeros(2)}, "weighting": Payload(marker)}, directory / "state.pt")
    if manifest:
        _with_manifest(directory)
    with pytest.raises(mm.UnsafeCheckpointError) as info:
        mm.load_checkpoint_state(directory)
    assert not marker.exists()
    text = str(info.value)
    assert text.startswith(f"'{directory / 'state.pt'}' is refused: it holds pickled objects other than tensors and plain data (")
    assert "(it names io.open)" in text and "since unpickling them could run code" in text
    assert isinstance(info.value, mm.CorruptCheckpointError)  # resume and report treat it as an unusable checkpoint
    if not manifest:  # without a manifest the checkpoint check reads it: refused the same way
        assert "pickled objects other than tensors" in mm.checkpoint_problem(directory)
        assert not marker.exists()


def test_the_trainer_state_resumes_through_the_restricted_unpickler(tmp_path: Path) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config("cross_stitch", tasks, epochs=2, loss_weighting="uncertainty", lr_schedule="step", optimizer="sgd")
    mm.seed_everything(0)
    trainer = mm.Trainer(mm.build_model(config), random_data(tasks), config)
    trainer.train_epoch()
    mm.save_checkpoint_state(trainer.state_dict(), tmp_path)
    torch.load(tmp_path / "state.pt", weights_only=True)  # the format itself needs nothing else
    resumed = mm.Trainer(mm.build_model(config), random_data(tasks), config)
    resumed.load_state_dict(mm.load_checkpoint_state(tmp_path))
    assert resumed.epoch == 1
    for a, b in zip(trainer.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(trainer.generator.get_state(), resumed.generator.get_state(), rtol=0, atol=0)


CONFIGS = [{"family": "single_task", "task": "a", "seed": 1, "lr": 0.01, "loader": {"augment": []}}, {"family": "single_task", "task": "b", "seed": 1}]


def test_the_baselines_searcher_state_is_json_and_restores(tmp_path: Path) -> None:
    searcher = FixedConfigs(CONFIGS)
    assert searcher.suggest("t1") == CONFIGS[0]
    searcher.save(str(tmp_path / "state"))
    saved = json.loads((tmp_path / "state").read_text())
    assert saved == {"format": "mtlsearch.fixed_configs/1", "configs": CONFIGS, "next": 1}
    restored = FixedConfigs([])
    restored.restore(str(tmp_path / "state"))
    assert restored.suggest("t2") == CONFIGS[1]
    assert restored.suggest("t3") == FixedConfigs.FINISHED


def test_an_old_pickled_searcher_state_is_migrated_if_plain_and_refused_if_not(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.write_bytes(pickle.dumps({"configs": CONFIGS, "next": 1}))
    restored = FixedConfigs([])
    restored.restore(str(old))
    assert restored.suggest("t2") == CONFIGS[1]
    marker = tmp_path / "PWNED"
    old.write_bytes(pickle.dumps({"configs": [Payload(marker)], "next": 0}))
    with pytest.raises(ValueError, match=r"holds more than plain data \(refers to io\.open\); refused without loading it"):
        FixedConfigs([]).restore(str(old))
    assert not marker.exists()
