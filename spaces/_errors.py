"""Pydantic's validation errors as one ``file:line: field: message (got value)`` line per
problem, with the allowed fields or values where the user can act on them."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from ._sources import data_fields, known_sources
from ._overrides import override_at
from ._yaml import format_loc, line_of

_TYPE_MISMATCH = ("_type", "_parsing")
_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.\[\]]*): (.*)$", re.S)


def problems(
    exc: ValidationError, source: Path | None, node: Any, data: Any, root: type[BaseModel],
    origins: dict[tuple[str, ...], str] | None = None,
) -> list[str]:
    """One ``file:line: field: message (got value)`` line per problem, union noise merged
    (``root``: the model validated, whose fields an unknown field's message lists); a problem
    in a value ``--set`` gave (``origins``: path -> ``KEY=VALUE``) is located at ``--set KEY=VALUE``."""
    grouped: dict[tuple, list[dict]] = {}
    for err in exc.errors():
        loc = _yaml_loc(err["loc"], data, missing=err["type"] == "missing")
        match = _FIELD_PREFIX.match(err["msg"].removeprefix("Value error, "))
        if not loc and match:  # a cross-field check names its field first
            loc = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", match.group(1)) if p)
            err = {**err, "msg": match.group(2)}
        if err["type"] == "unknown_source":  # data.source names no registered source
            loc = (*loc, "source")
            named = err["input"].get("source") if isinstance(err["input"], dict) else None
            got = f" {named!r}" if named is not None else ""
            allowed = ", ".join(repr(t) for t in known_sources())
            err = {**err, "type": "value_error", "msg": f"unknown or missing source{got}; allowed: {allowed}"}
        grouped.setdefault(loc, []).append(err)
    problems = []
    for loc, errors in grouped.items():
        specific = [e for e in errors if not e["type"].endswith(_TYPE_MISMATCH)] or errors
        # a field that is a keyword or a range ('auto' | {low, high}): a range given gets the range's errors
        specific = [e for e in specific if e["type"] != "literal_error"] or specific
        messages: list[str] = []
        for err in specific:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}" + _allowed_fields(root, loc, data)
            if msg not in messages:
                messages.append(msg)
        text = " or ".join(messages)
        if specific[0]["type"] not in ("value_error", "missing", "extra_forbidden"):
            text += f" (got {specific[0].get('input')!r})"
        line = line_of(node, loc) if node is not None else None
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        override = override_at(origins or {}, loc)
        if override is not None:
            where = f"--set {override}: "
        problems.append(f"{where}{format_loc(loc)}: {text}")
    return problems


def _yaml_loc(loc: tuple, data: Any, missing: bool) -> tuple:
    """``loc`` without pydantic's union tags: only the keys and indices present in the input."""
    out = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif not (missing and i == len(loc) - 1):
            continue
        out.append(part)
    return tuple(out)


def _allowed_fields(root: type[BaseModel], loc: tuple, data: Any) -> str:
    if loc[:-1] == ("data",):  # the fields depend on the source
        return f"; allowed: {', '.join(data_fields(data['data'].get('source')))}"
    model = _model_at(root, loc[:-1])
    if model is None:
        return ""
    fields = model.allowed_fields() if hasattr(model, "allowed_fields") else list(model.model_fields)
    return f"; allowed: {', '.join(f for f in fields if f != 'source_path')}"


def _model_at(model: Any, loc: tuple) -> Any:
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = _first_model(field.annotation)
        if model is None:
            return None
    return model


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None
