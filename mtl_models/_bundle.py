"""Deployable bundles: the plain config and the weights, and the loader that rebuilds the model."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import Tensor

from ._checkpoint import load_checkpoint_state, save_checkpoint_state
from ._deploy import INPUT_NAME, example_input, export_onnx, export_program, export_torchscript
from ._io import atomic_directory
from ._plugins import is_plugin_path
from ._registry import Registry
from .families import MultiTaskModel, build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
SAFETENSORS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "README.md"
CHECKSUMS_FILE = "SHA256SUMS"
PLUGINS_DIR = "plugins"

Exporter = Callable[[MultiTaskModel, Path, Tensor], Path]
# Serving formats a bundle can hold: name -> (file in the bundle, exporter).
BUNDLE_EXPORTS: Registry[tuple[str, Exporter]] = Registry("export format", defined_by=lambda entry: entry[1])
BUNDLE_EXPORTS.register("torchscript", ("model.ts", export_torchscript))
BUNDLE_EXPORTS.register("onnx", ("model.onnx", export_onnx))
BUNDLE_EXPORTS.register("torch_export", ("model.pt2", export_program))


def save_bundle(
    model: MultiTaskModel,
    config: dict[str, Any],
    directory: str | Path,
    card: dict[str, Any] | None = None,
    exports: Sequence[str] = (),
    markdown: Callable[[dict[str, Any]], str] | None = None,
) -> Path:
    """Write ``config.json``, the weights, ``card.json``, the ``exports`` and ``SHA256SUMS`` to ``directory``, atomically.

    ``config`` must be the plain dict the model was built from; it is all
    :func:`load` needs besides the weights, which are written twice: ``weights.pt``
    (``torch.save`` of the state dict) and ``weights.safetensors`` (the same tensors,
    loadable without pickle by any safetensors reader). ``exports`` names serving
    formats of :data:`BUNDLE_EXPORTS` (``torchscript``: ``model.ts``, ``onnx``:
    ``model.onnx``, ``torch_export``: ``model.pt2``); each takes ``images``
    ``(B, C, H, W)`` in [0, 1] and returns one tensor per task in the order the card's
    ``outputs`` lists. The card records ``files`` (role -> name) and ``sha256`` (name ->
    digest) of every file but itself; ``markdown(card)``, when given, is written as
    ``README.md``; ``SHA256SUMS`` (``sha256sum -c SHA256SUMS``) covers every file,
    the card and README included. Plugins given as paths (``.py`` files, package
    folders) are copied into the bundle's ``plugins/``, so the bundle loads wherever
    mtl_models is installed.
    """
    unknown = [name for name in exports if name not in BUNDLE_EXPORTS]
    if unknown:
        raise ValueError(f"Unknown export format(s) {unknown}; known: {', '.join(BUNDLE_EXPORTS)}.")
    directory = Path(directory)
    model = model.cpu().eval()
    card = dict(card or {})
    card["outputs"] = list(model.task_names)
    card["input_name"] = INPUT_NAME
    card["files"] = {"config": CONFIG_FILE, "weights": WEIGHTS_FILE, "safetensors": SAFETENSORS_FILE, "card": CARD_FILE}
    with atomic_directory(directory) as tmp:
        config = _bundle_plugins(config, tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        # safetensors refuses tensors that share memory: each is stored as its own contiguous copy
        save_safetensors({k: v.contiguous().clone() for k, v in state.items()}, str(tmp / SAFETENSORS_FILE),
                         metadata={"format": "pt", "outputs": ",".join(model.task_names)})
        example = example_input(config["input"])
        for name in exports:
            filename, exporter = BUNDLE_EXPORTS[name]
            exporter(model, tmp / filename, example)
            card["files"][name] = filename
        if markdown is not None:
            card["files"]["readme"] = CARD_MARKDOWN_FILE
        card["files"]["checksums"] = CHECKSUMS_FILE
        card["sha256"] = {name: digest for name, digest in _digests(tmp).items() if name != CARD_FILE}
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
        if markdown is not None:
            (tmp / CARD_MARKDOWN_FILE).write_text(markdown(card))
        digests = _digests(tmp)
        (tmp / CHECKSUMS_FILE).write_text("".join(f"{d}  {name}\n" for name, d in digests.items()))
    return directory


def _digests(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (but ``SHA256SUMS``), by path relative to it, sorted."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name != CHECKSUMS_FILE and "__pycache__" not in path.parts:
            out[name] = file_sha256(path)
    return out


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_bundle(directory: str | Path) -> list[str]:
    """The files of a bundle whose sha256 differs from ``SHA256SUMS`` (or that are missing); empty when intact."""
    directory = Path(directory)
    sums = directory / CHECKSUMS_FILE
    if not sums.is_file():
        return [CHECKSUMS_FILE]
    bad = []
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = directory / name
        if not path.is_file() or file_sha256(path) != digest:
            bad.append(name)
    return bad


def _bundle_plugins(config: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Copy the config's plugin files and folders into ``directory/plugins``; the config
    then names them relative to the bundle."""
    entries = []
    for entry in config.get("plugins") or ():
        path = Path(entry)
        if is_plugin_path(entry) and path.exists():
            target = directory / PLUGINS_DIR / path.name
            target.parent.mkdir(exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copyfile(path, target)
            entry = f"{PLUGINS_DIR}/{path.name}"
        entries.append(entry)
    return {**config, "plugins": entries} if entries else config


def load(directory: str | Path, map_location: str | torch.device = "cpu") -> MultiTaskModel:
    """Rebuild a bundle's model from its config alone and load its weights; in eval mode.

    The weights come from ``weights.safetensors`` (no pickle), or ``weights.pt`` in a
    bundle exported before it was written. The model takes ``(B, C, H, W)`` float
    images in [0, 1] and returns ``{task: output}``; :func:`load_config` gives the
    tasks and input size.
    """
    directory = Path(directory)
    config = load_config(directory)
    model = build_model(config)
    safe, weights = directory / SAFETENSORS_FILE, directory / WEIGHTS_FILE
    if safe.is_file():
        model.load_state_dict(load_safetensors(str(safe), device=str(map_location)))
    elif weights.is_file():
        model.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    else:
        raise FileNotFoundError(f"{str(weights)!r} is missing; is {str(directory)!r} an exported bundle?")
    return model.to(map_location).eval()


def load_config(directory: str | Path) -> dict[str, Any]:
    """The plain model config a bundle was exported with (its plugin paths made absolute)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing; is {str(directory)!r} an exported bundle?")
    config = json.loads(path.read_text())
    if config.get("plugins"):
        config["plugins"] = [
            str((Path(directory) / e).resolve()) if is_plugin_path(e) and not Path(e).is_absolute() else e
            for e in config["plugins"]
        ]
    return config


def load_single_task_models(config: dict[str, Any], checkpoints: dict[str, str] | None) -> dict[str, MultiTaskModel]:
    """Per task, the single-task network of ``config``'s backbone and task, with the weights
    of ``checkpoints[task]`` (a run's single-task baselines): what ``column_init:
    single_task`` starts cross-stitch columns from."""
    if not checkpoints:
        raise ValueError("column_init 'single_task' needs the single-task baselines' checkpoints; none were given.")
    models = {}
    for spec in config["tasks"]:
        single = build_model({**config, "family": "single_task", "task": spec["name"]})
        single.load_state_dict(load_checkpoint_state(checkpoints[spec["name"]])["model"])
        models[spec["name"]] = single
    return models


def load_card(directory: str | Path) -> dict[str, Any]:
    """A bundle's model card: tasks, metrics with baselines, cost, data, provenance, ``outputs`` order."""
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing; is {str(directory)!r} an exported bundle?")
    return json.loads(path.read_text())
