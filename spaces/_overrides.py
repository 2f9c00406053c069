"""``--set KEY=VALUE``: change an experiment's setting from the command line, before validation.

``KEY`` is a dotted path into the experiment file (``train.epochs``, ``search.sampler.seed``,
``space.families``); ``VALUE`` is read as YAML, so ``3`` is a number, ``[hard_split]`` a
list, ``{low: 1e-4, high: 0.1}`` a mapping and ``null`` removes a setting's value. Missing
sections along the path are created. Overrides apply in order, after the file is read and
before it is validated, so a bad value is refused with the schema's message, located at
``--set KEY=VALUE`` rather than at a line of the file (Hydra's ``key=value`` overrides, in
argparse's ``--set`` form).
"""
from __future__ import annotations

import copy
import re
from typing import Any, Sequence

import yaml

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"train.epochs=3"`` -> ``(("train", "epochs"), 3)``; a ``ValueError`` says what is wrong."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise ValueError(f"--set {text!r}: expected KEY=VALUE with a dotted KEY, such as train.epochs=3 "
                         f"or space.families=[hard_split]")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {text}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return tuple(key.split(".")), parsed


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``data`` (an experiment file's mapping) with ``overrides`` applied, a copy; and for each
    path set, the ``--set`` text that set it (the last one, where two set the same path).

    Raises ``ValueError`` naming the ``--set`` when a path runs through a value that is not
    a mapping (``train.epochs.x=1`` where ``train.epochs`` is a number).
    """
    out = copy.deepcopy(data)
    origins: dict[tuple[str, ...], str] = {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ValueError(f"--set {text}: {where} is {child!r} in the experiment, not a section with fields")
            node = child
        node[path[-1]] = value
        origins = {p: t for p, t in origins.items() if p[: len(path)] != path}  # a later --set replaces these
        origins[path] = text
    return out, origins


def override_at(origins: dict[tuple[str, ...], str], loc: Sequence[Any]) -> str | None:
    """The ``--set`` text that set the value at ``loc`` (a validation error's location), or one of its sections."""
    parts = tuple(str(p) for p in loc)
    matches = [(len(path), text) for path, text in origins.items() if parts[: len(path)] == path]
    return max(matches)[1] if matches else None
