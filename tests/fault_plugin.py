"""A test-only plugin: faults injected into chosen searched trials, to test a search's resilience.

:func:`with_faults` adds it to an experiment: it copies this file next to the experiment
and writes ``faults.json`` beside the copy, ``{searched trial number: fault}``; every
trial imports the plugin, whose trial hook looks the trial's Optuna number
(``config["_optuna"]["number"]``) up there. A fault: ``kind`` (``raise``: an exception;
``nan``: the weights turn NaN so the loss does; ``oom``: ``torch.cuda.OutOfMemoryError``;
``disk_full``: writing the epoch's checkpoint fails with a real ``ENOSPC``, its state file
being a link to ``/dev/full``, the kernel's always-full device; ``hang``: the trial stops
making progress before the epoch, a stuck filesystem, until it is stopped), ``epoch``
(default 1) and ``times`` (on how many attempts of the trial it fires, a retry or a resume
being an attempt; default every one), counted in the node's temp directory.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ray import tune

from mtl_models import CHECKPOINT_STATE_FILE
from search import register_trial_hook

SPEC_FILE = "faults.json"
KINDS = ("raise", "nan", "oom", "disk_full", "hang")
COUNTS_DIR = "mtlsearch-faults"


def with_faults(experiment: dict[str, Any], folder: Path, faults: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``experiment`` with this plugin and ``faults`` (``{trial number: fault}``) in ``folder``."""
    for fault in faults.values():
        assert fault["kind"] in KINDS, f"fault kind {fault['kind']!r}; allowed: {', '.join(KINDS)}"
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / Path(__file__).name
    shutil.copyfile(__file__, plugin)
    (folder / SPEC_FILE).write_text(json.dumps({str(n): f for n, f in faults.items()}))
    return {**experiment, "plugins": [*experiment.get("plugins", []), str(plugin)]}


def _fault(config: dict[str, Any]) -> dict[str, Any] | None:
    number = (config.get("_optuna") or {}).get("number")
    if number is None:  # a baseline or confirmation trial
        return None
    for entry in config.get("plugins") or ():
        spec = Path(entry).with_name(SPEC_FILE)
        if Path(entry).name == Path(__file__).name and spec.is_file():
            return json.loads(spec.read_text()).get(str(number))
    return None


def _fires(fault: dict[str, Any]) -> bool:
    """Whether ``fault`` fires on this attempt of the trial: on every one, or on its first ``times``."""
    if fault.get("times") is None:
        return True
    folder = Path(tempfile.gettempdir()) / COUNTS_DIR / tune.get_context().get_trial_id()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{fault['kind']}-{fault.get('epoch', 1)}"
    attempt = len(list(folder.glob(f"{name}-*")))
    (folder / f"{name}-{attempt}").touch()
    return attempt < int(fault["times"])


@register_trial_hook("test_faults")
def inject(event: str, config: dict[str, Any], **context: Any) -> None:
    fault = _fault(config)
    if fault is None:
        return
    epoch = int(fault.get("epoch", 1))
    if event == "checkpoint":
        if fault["kind"] == "disk_full" and int(context["epoch"]) == epoch and _fires(fault):
            os.symlink("/dev/full", os.path.join(context["directory"], CHECKPOINT_STATE_FILE))
        return
    trainer = context["trainer"]
    if fault["kind"] == "disk_full" or epoch != trainer.epoch + 1 or not _fires(fault):
        return
    if fault["kind"] == "raise":
        raise RuntimeError(f"injected fault at epoch {epoch}")
    if fault["kind"] == "oom":
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected fault at epoch {epoch})")
    if fault["kind"] == "hang":
        while True:  # no progress until the trial is stopped (its actor killed, or the driver with it)
            time.sleep(1.0)
    with torch.no_grad():  # "nan": poison the weights; the trainer's own check must catch the loss
        for p in trainer.model.parameters():
            p.fill_(float("nan"))
