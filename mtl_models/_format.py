"""One way to write every number a user reads: Delta_m, a task's term, metrics, counts, costs.

The report, ``mtlsearch select``, the model card and the progress lines all format
through these functions, so a number reads the same wherever it appears:

- Delta_m and a task's term (its relative change against single-task) are percentages
  (Maninis et al. 2019): signed, two decimals, the unit, then the interval in brackets,
  ``+1.90 % [-3.92, +7.71]``; a value that rounds to zero is ``0.00 %`` (no sign, so
  that ``-0.00`` never suggests a loss).
- A metric is written by its scale: a fraction in [0, 1] (accuracy, F1, mAP, mIoU)
  with three decimals, ``0.873 ± 0.012``; a metric in the labels' units (MAE, RMSE)
  with four significant digits and never in exponent notation.
- Counts (parameters) with thousands separators, ``65,540``, or compact, ``65.5 k``;
  FLOPs compact, ``1.23 G``; latencies in milliseconds with three significant digits.
"""
from __future__ import annotations

import math
from typing import Any

DELTA_DECIMALS = 2
PERCENT = " %"
NOISE_UNKNOWN = "[noise unknown]"
MISSING = "n/a"


def _number(value: Any) -> float | None:
    """``value`` as a float; None for None, NaN, pandas' NA or a non-number."""
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def signed(value: Any, decimals: int = DELTA_DECIMALS) -> str:
    """``+1.90``, ``-0.25``, ``0.00`` (a value that rounds to zero carries no sign)."""
    number = _number(value)
    if number is None:
        return MISSING
    text = f"{number:+.{decimals}f}"
    return text[1:] if float(text) == 0 else text


def delta(mean: Any, low: Any = None, high: Any = None, *, interval: bool | None = None,
          approximate: bool = False) -> str:
    """Delta_m (or a task's term), in percent: ``+1.90 % [-3.92, +7.71]``.

    ``low``/``high``: the interval's bounds; when ``interval`` is True (the default when
    either bound is given) and a bound is missing, the noise is unknown:
    ``+1.90 % [noise unknown]``. ``approximate`` (one run, its noise assumed) appends ``≈``.
    """
    if _number(mean) is None:
        return MISSING
    text = signed(mean) + PERCENT
    if interval is None:
        interval = low is not None or high is not None
    if interval:
        lo, hi = _number(low), _number(high)
        text += f" [{signed(lo)}, {signed(hi)}]" if lo is not None and hi is not None else f" {NOISE_UNKNOWN}"
    return text + (" \u2248" if approximate else "")


def estimate(est: Any, *, approximate: bool | None = None) -> str:
    """An interval estimate (``reports``' ``Estimate`` or its ``as_dict()``) as :func:`delta` writes it."""
    get = est.get if isinstance(est, dict) else lambda key, default=None: getattr(est, key, default)
    approx = bool(get("approximate", False)) if approximate is None else approximate
    return delta(get("mean"), get("low"), get("high"), interval=True, approximate=approx)


def plain(value: Any, significant: int = 4) -> str:
    """A number with ``significant`` digits and no exponent: ``12.35``, ``0.0004321``, ``12346``."""
    number = _number(value)
    if number is None:
        return MISSING
    if number == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(number)))
    decimals = max(0, significant - 1 - magnitude)
    text = f"{number:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def is_fraction(metric: str) -> bool:
    """Whether ``metric`` lies in [0, 1]: every higher-is-better metric of the built-in kinds
    (accuracy, f1, map, miou, pixel_accuracy); the error metrics (mae, rmse) are in the
    labels' units."""
    return metric.lower() not in ("mae", "rmse", "mse", "loss")


def metric(value: Any, name: str, std: Any = None) -> str:
    """A task's metric ``name`` (``accuracy``, ``mae``, ...), with its spread over seeds
    when ``std`` is given: ``0.873 ± 0.012`` (fraction), ``12.35 ± 0.4123`` (label units)."""
    number = _number(value)
    if number is None:
        return MISSING
    show = (lambda v: f"{v:.3f}") if is_fraction(name) else plain
    spread = _number(std)
    return show(number) + (f" \u00b1 {show(spread)}" if spread is not None else "")


def count(value: Any, *, compact: bool = False) -> str:
    """A count: ``65,540``, or with ``compact`` ``65.5 k`` / ``1.23 M`` / ``812``."""
    number = _number(value)
    if number is None:
        return MISSING
    if not compact:
        return f"{int(round(number)):,}"
    return _compact(number)


def _compact(number: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{plain(number / scale, 3)} {unit}"
    return plain(number, 3)


def flops(value: Any) -> str:
    """FLOPs per image, compact: ``1.23 G``, ``456 M``."""
    number = _number(value)
    return MISSING if number is None else _compact(number)


def ms(value: Any) -> str:
    """A latency in milliseconds, three significant digits: ``1.23 ms``."""
    number = _number(value)
    return MISSING if number is None else f"{plain(number, 3)} ms"


def rate(value: Any) -> str:
    """A learning rate as ML code writes it: ``3e-4``, ``0.01``, ``1.5e-3``."""
    number = _number(value)
    if number is None:
        return MISSING
    if number == 0 or 1e-2 <= abs(number) < 1e3:
        return plain(number, 3)
    mantissa, exponent = f"{number:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"
