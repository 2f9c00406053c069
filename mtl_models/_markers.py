"""What a part's signature cannot say by its type alone, said next to it in ``Annotated``.

A part's keyword-only arguments are its schema (:func:`mtl_models.keyword_parameters`):
the type says what the experiment file may give (a number: a value or a range; a
``Literal`` or ``bool``: a value or a list of choices), ``annotated_types`` bounds say
which values are allowed. Some arguments are searched in a way no type says; each way is
one marker here, read by the one extractor and the one sampler (``spaces``), never
special-cased per part:

- :class:`StageSubset`: a subset of the backbone's stages, searched as one boolean per
  stage (cross-stitch's ``stages``, MTAN's);
- :class:`Derived`: a word the space may give instead of a value, the value then computed
  from the trial's config (cross-stitch's ``alpha_diff: convex``);
- :class:`ByConfig`: a word that stands for a range chosen by another config key
  (cross-stitch's ``lr_multiplier: auto``, a range per optimizer);
- :class:`SpaceDefault`: what the space does when the file leaves the key out, where
  that is not the argument's default (search a range, or one of the words above).

Markers compare by identity (``eq=False``): a part's hints are read from its one
signature, and an identity hash lets markers hold tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True, eq=False)
class SpaceDefault:
    """The space's value for this key where the experiment file leaves it out, when that is
    not the argument's default: a range ``{"low": .., "high": ..[, "log": ..]}`` (searched),
    or one of the argument's words (``"search"``, ``"convex"``, ``"auto"``)."""

    value: Any


@dataclass(frozen=True, eq=False)
class StageSubset:
    """A subset of the backbone's stages: the argument is ``list[int] | None`` (None: every
    stage). The space gives ``all``, a list of stage indices, or ``search``: one boolean
    Optuna parameter ``<prefix>.<s>`` per stage ``s``. ``last``: the last stage is always in
    the subset (MTAN's last attention block feeds the heads), so it is not searched and a
    given list gains it."""

    prefix: str
    last: bool = False

    WORDS = ("all", "search")

    def searched_names(self, num_stages: int) -> list[str]:
        """The Optuna parameters of ``search``, in the order they are asked."""
        return [f"{self.prefix}.{s}" for s in range(num_stages - 1 if self.last else num_stages)]

    def choose(self, num_stages: int, space: Any, ask: Callable[[str], bool]) -> list[int] | None:
        """The subset for the space's value ``space`` (``all``, ``search`` or a list); ``ask(name)``
        answers one boolean parameter (the trial's ``suggest_categorical(name, [True, False])``)."""
        if space == "all":
            return None
        last = [num_stages - 1] if self.last else []
        if space == "search":
            return [s for s, name in enumerate(self.searched_names(num_stages)) if ask(name)] + last
        return sorted(set(space) | set(last)) if self.last else list(space)

    def optuna_params(self, stages: list[int] | None, num_stages: int) -> dict[str, bool]:
        """The boolean parameters ``search`` would have asked to choose ``stages`` (None: none asked)."""
        if stages is None:
            return {}
        return {name: s in stages for s, name in enumerate(self.searched_names(num_stages))}

    @staticmethod
    def text(stages: list[int] | None) -> str:
        """``all`` or ``0,2``: how the results table writes a subset."""
        return "all" if stages is None else ",".join(str(s) for s in stages)


@dataclass(frozen=True, eq=False)
class Derived:
    """The word ``word`` in the space: the value is not searched but computed from the
    trial's config so far, ``rule(config)`` (after the arguments before it: ``inputs``),
    because ``why``."""

    word: str
    rule: Callable[[dict[str, Any]], Any]
    inputs: tuple[str, ...]
    why: str


@dataclass(frozen=True, eq=False)
class ByConfig:
    """The word ``word`` in the space: search the range ``ranges[config[key]]``
    (``{"low", "high"[, "log"]}``), the one that suits the config's ``key``; ``why`` says
    where the ranges come from."""

    word: str
    key: str
    ranges: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    why: str = ""

    def range_for(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        value = config.get(self.key)
        if value not in self.ranges:
            raise ValueError(f"{self.word!r} has no range for {self.key} {value!r}; known: {', '.join(self.ranges)}")
        return self.ranges[value]


WORD_MARKERS = (Derived, ByConfig)
