"""The Optuna samplers and pruners an experiment may name: one registry each, one schema rule.

An entry is the Optuna class and the defaults this project sets where they differ from
Optuna's (TPE: multivariate, 5 random trials first); the class's constructor keyword
arguments are the options the experiment file may give next to ``name`` (Optuna's
pruners and samplers take their options that way, so the signature is the schema): an
unknown name is refused with the allowed ones, a value is checked against the argument's
type hint and the entry's ``bounds``, and ``search`` builds every entry one way
(:func:`search.build_sampler`, :func:`search.build_pruner`). A new sampler or pruner is
one :func:`register_sampler` / :func:`register_pruner` call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Mapping

import optuna
from annotated_types import Ge
from pydantic import BaseModel, ConfigDict, create_model
from pydantic_core import PydanticCustomError

from mtl_models import Registry, keyword_options, option_hints

from ._patient_pruner import PatientPruner


@dataclass(frozen=True, eq=False)
class OptunaPart:
    """An Optuna sampler or pruner class, the defaults we set (``defaults``: by argument, where
    they differ from the class's) and bounds we add to an argument's hint (``bounds``:
    ``annotated_types`` constraints, by argument). ``multi_objective_only``: a sampler for
    several objectives only (NSGA-II)."""

    cls: type
    defaults: Mapping[str, Any] = field(default_factory=dict)
    bounds: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    multi_objective_only: bool = False

    def arguments(self) -> list[str]:
        """The constructor's keyword arguments (``self``, ``*args``, ``**kwargs`` left out)."""
        return list(keyword_options(self.cls))

    def defaults_for(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` with our defaults for the arguments it leaves out."""
        return {**self.defaults, **given}

    def validate(self, kind: str, name: str, given: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """``given`` (the options besides ``name``) checked: unknown arguments (a ValueError
        listing the allowed ones), then each value against its hint and bounds (a pydantic
        ``ValidationError`` located at the argument); returns the validated values."""
        allowed = [a for a in self.arguments() if a not in skip]
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(f"unknown argument(s) {unknown} for {kind} {name!r}; allowed: {', '.join(sorted(allowed)) or 'none'}")
        model = _options_model(self, skip)
        validated = model.model_validate(dict(given))
        return {k: getattr(validated, k) for k in given}


_MODELS: dict[tuple[OptunaPart, tuple[str, ...]], type[BaseModel]] = {}


def _options_model(part: OptunaPart, skip: tuple[str, ...]) -> type[BaseModel]:
    """A model of ``part``'s arguments: each one's hint (``Any`` where Optuna's cannot be
    resolved: its constructor checks it) with our bounds; required where neither the class
    nor we give a default (the percentile pruner's ``percentile``)."""
    key = (part, skip)
    if key not in _MODELS:
        params = keyword_options(part.cls, skip=skip)
        fields = {}
        for name, hint in option_hints(part.cls, skip=skip).items():
            required = params[name].default is params[name].empty and name not in part.defaults
            fields[name] = (Annotated[(hint, *part.bounds[name])] if name in part.bounds else hint, ... if required else None)
        _MODELS[key] = create_model(
            f"{part.cls.__name__}_options", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields
        )
    return _MODELS[key]


SAMPLERS: Registry[OptunaPart] = Registry("sampler", defined_by=lambda part: part.cls)
PRUNERS: Registry[OptunaPart] = Registry("pruner", defined_by=lambda part: part.cls)


def register_sampler(name: str, part: OptunaPart, *, replace: bool = False) -> OptunaPart:
    """Make ``search.sampler.name: <name>`` build ``part.cls`` (seeded with the experiment's seed
    where it takes ``seed``)."""
    return SAMPLERS.register(name, part, replace=replace)


def register_pruner(name: str, part: OptunaPart, *, replace: bool = False) -> OptunaPart:
    """Make ``search.pruner.name: <name>`` build ``part.cls``."""
    return PRUNERS.register(name, part, replace=replace)


def registered_name(registry: Registry[OptunaPart], name: Any) -> str:
    """``name`` if ``registry`` has it; else pydantic's own message for a choice, listing the
    registered names in registration order (``Input should be 'tpe', 'nsga2' or 'random'``)."""
    if isinstance(name, str) and name in registry:
        return name
    names = [repr(n) for n in registry]
    expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


# TPE: multivariate (one density over the parameters together, as BOHB's, Falkner et al. 2018) and
# 5 random trials first, as the project always set them; ``_defaults`` sizes the random start to the space.
register_sampler("tpe", OptunaPart(optuna.samplers.TPESampler, {"n_startup_trials": 5, "multivariate": True}, {"n_startup_trials": (Ge(0),)}))
register_sampler("nsga2", OptunaPart(optuna.samplers.NSGAIISampler, {"population_size": 10}, {"population_size": (Ge(2),)}, multi_objective_only=True))
register_sampler("random", OptunaPart(optuna.samplers.RandomSampler))

register_pruner("patient", OptunaPart(PatientPruner))
register_pruner("median", OptunaPart(optuna.pruners.MedianPruner))
register_pruner("percentile", OptunaPart(optuna.pruners.PercentilePruner))
register_pruner("successive_halving", OptunaPart(optuna.pruners.SuccessiveHalvingPruner))
register_pruner("hyperband", OptunaPart(optuna.pruners.HyperbandPruner))
register_pruner("threshold", OptunaPart(optuna.pruners.ThresholdPruner))
register_pruner("nop", OptunaPart(optuna.pruners.NopPruner))
