"""One registry type for every name -> thing table: backbones, task kinds, label formats,
data sources, augmentations, export formats, loss weightings, model families and report
sections.

timm's ``register_model``/``create_model``: a name in the experiment file maps through a
dict to a factory. Every registry is a :class:`Registry`, so they share one policy:

- ``register`` refuses a name that is taken unless ``replace=True``: a plugin cannot
  shadow a built-in (or another plugin) by accident, only by saying so.
- Registering the *same definition* again is not an error; the new object replaces the
  old. The same definition is the identical object, or a function or class with the
  same module and qualified name: Ray workers, ``importlib.reload`` and a test that
  imports a plugin file again run its decorators again, each time on new objects.
- An unknown name raises :class:`UnknownNameError`, which names the kind of thing, the
  name and the known names.

A registry also reads like a read-only dict (``registry[name]``, ``name in registry``,
iteration in registration order), so code written against the dicts it replaces keeps
working.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Literal, TypeVar, overload

from ._markers import WORD_MARKERS, SpaceDefault, StageSubset

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name no registry entry has. A ``KeyError`` (a registry is a mapping) and a
    ``ValueError`` (the name usually comes from a user's file), with a readable ``str``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _definition(obj: Any) -> Any:
    """What makes two registered objects the same definition: a function's or class's
    module and qualified name (and a lambda's line, as lambdas share one name); for other
    objects, the object itself."""
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj):
        if obj.__name__ == "<lambda>":
            return (obj.__module__, obj.__qualname__, f"line {obj.__code__.co_firstlineno}")
        return (obj.__module__, obj.__qualname__)
    return obj


class Registry(Generic[T]):
    """Names -> objects of one kind (``kind``: ``"backbone"``, ``"data source"``, ...).

    ``defined_by(obj)`` picks what identifies an entry's definition for the re-registration
    rule (default: the object itself; a task kind registry stores instances and passes
    ``type``).
    """

    def __init__(self, kind: str, plural: str | None = None, defined_by: Callable[[T], Any] | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._defined_by = defined_by or (lambda obj: obj)
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: None = None, *, replace: bool = False) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, obj: T | None = None, *, replace: bool = False) -> Any:
        """Add ``obj`` under ``name`` and return it; without ``obj``, a decorator that does.

        A taken name raises ``ValueError`` unless ``replace`` or ``obj`` is the same
        definition as the entry (see the module docstring).
        """
        if obj is None:
            return lambda target: self.register(name, target, replace=replace)
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} needs a non-empty name, got {name!r}.")
        old = self._entries.get(name)
        if old is not None and not replace and not self._same(old, obj):
            raise ValueError(
                f"{self.kind.capitalize()} {name!r} is already registered (by {_where(self._defined_by(old))}); "
                f"choose another name, or pass replace=True to replace it."
            )
        self._entries[name] = obj
        return obj

    def _same(self, old: T, new: T) -> bool:
        a, b = self._defined_by(old), self._defined_by(new)
        return a is b or _definition(a) == _definition(b)

    def get(self, name: str) -> T:
        """The entry ``name``; :class:`UnknownNameError` listing the known names if there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: Any) -> str:
        known = ", ".join(self.names()) or "none"
        return f"Unknown {self.kind} {name!r}; known {self.plural}: {known}."

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        return list(self._entries.items())

    def pop(self, name: str, default: Any = None) -> Any:
        """Remove ``name`` (tests and plugins that clean up after themselves); ``default`` if absent."""
        return self._entries.pop(name, default)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def _where(obj: Any) -> str:
    definition = _definition(obj)
    return ".".join(definition[:2]) + "".join(f" {p}" for p in definition[2:]) if isinstance(definition, tuple) else repr(obj)


def keyword_options(fn: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """The options a registered factory or class takes: its named parameters (a class's
    ``__init__``'s) other than ``self``, ``skip`` and ``*args``/``**kwargs``.

    Optuna's pruners take their options as constructor keyword arguments, so the
    signature is the schema: the experiment file's options are checked against these
    names, and their defaults and type hints are read from here.
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = inspect.signature(target).parameters
    return {
        name: p
        for name, p in params.items()
        if name not in ("self", *skip) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


@dataclass(frozen=True)
class SchemeParameter:
    """One keyword-only argument of a pluggable part (a loss-weighting scheme's constructor, a
    model family's builder): ``key`` names it everywhere but the signature (``<part>_<name>``,
    or the part's mapped key).

    ``annotation``: the type hint with its ``Annotated`` metadata (bounds, markers of
    :mod:`mtl_models._markers`); ``base``: ``float``, ``int``, ``bool``, ``str`` or
    ``Literal``'s choices as a tuple, None for other types (passed from the config but not
    searchable, unless a :class:`StageSubset`).
    """

    scheme: str
    name: str
    key: str
    annotation: Any
    default: Any

    @property
    def base(self) -> Any:
        hint = _strip_annotated(self.annotation)
        if typing.get_origin(hint) is Literal:
            return typing.get_args(hint)
        return hint if hint in (float, int, bool, str) else None

    @property
    def searchable(self) -> bool:
        return (self.base is not None and self.base is not str) or self.subset is not None

    @property
    def bounds(self) -> list[Any]:
        """The ``Annotated`` metadata: the ``annotated_types`` bounds (``Gt(0)``, ...) and markers."""
        return list(getattr(self.annotation, "__metadata__", ()))

    @property
    def subset(self) -> StageSubset | None:
        """The :class:`StageSubset` marker of a subset-of-stages argument, else None."""
        return next((m for m in self.bounds if isinstance(m, StageSubset)), None)

    @property
    def words(self) -> dict[str, Any]:
        """The words the space may give instead of a value (``convex``, ``auto``), by word:
        their :class:`Derived` or :class:`ByConfig` markers."""
        return {m.word: m for m in self.bounds if isinstance(m, WORD_MARKERS)}

    @property
    def space_default(self) -> Any:
        """The space's value where the experiment file leaves the key out: a
        :class:`SpaceDefault`'s, else ``all`` for a stage subset that defaults to every
        stage, else the argument's default."""
        marker = next((m for m in self.bounds if isinstance(m, SpaceDefault)), None)
        if marker is not None:
            return marker.value
        if self.subset is not None and self.default is None:
            return "all"
        return self.default


def _strip_annotated(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def keyword_parameters(part: str, fn: Callable[..., Any], keys: dict[str, str] | None = None) -> dict[str, SchemeParameter]:
    """The keyword-only arguments of ``fn`` (a class: its ``__init__``) by key: ``keys[name]``,
    else ``<part>_<name>``. These are a part's parameters: the space may fix or search
    them, the trial config carries them under their keys, the results table records them.
    (Read once per part, function and keys: the sampler asks for every trial.)"""
    return dict(_keyword_parameters(part, fn, tuple(sorted((keys or {}).items()))))


@functools.lru_cache(maxsize=1024)
def _keyword_parameters(part: str, fn: Callable[..., Any], keys: tuple[tuple[str, str], ...]) -> dict[str, SchemeParameter]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    hints = typing.get_type_hints(target, include_extras=True)
    mapped = dict(keys)
    out = {}
    for param in inspect.signature(target).parameters.values():
        if param.kind is not param.KEYWORD_ONLY:
            continue
        key = mapped.get(param.name, f"{part}_{param.name}")
        default = None if param.default is param.empty else param.default
        out[key] = SchemeParameter(part, param.name, key, hints.get(param.name, Any), default)
    return out


def option_hints(fn: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The type hints of :func:`keyword_options`' options, with their ``Annotated`` bounds and
    checks; each resolved on its own, ``Any`` where it cannot be (Optuna's samplers name some
    types only under ``TYPE_CHECKING``: such an option is checked by its constructor alone)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001  (one unresolvable hint: resolve the others one by one)
        hints = {}
        namespace = getattr(target, "__globals__", {})
        for name, hint in getattr(target, "__annotations__", {}).items():
            try:
                hints[name] = eval(hint, namespace) if isinstance(hint, str) else hint  # noqa: S307  (the part's own source)
            except Exception:  # noqa: BLE001
                hints[name] = Any
    return {name: hints.get(name, Any) for name in keyword_options(fn, skip)}


@dataclass(frozen=True)
class Check:
    """A check of an option's value declared in its type hint, next to its bounds:
    ``image_size: Annotated[int, Ge(1), Check(at_least_8)]``. ``fn(value)`` returns the value
    or raises ``ValueError`` with what the user should read (``spaces`` locates it at the
    option: file, line, field). It runs after the type and the bounds, on a path after the
    path is made absolute; pydantic runs it through this hook, and nothing else needs it.
    """

    fn: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.fn, handler(source))
