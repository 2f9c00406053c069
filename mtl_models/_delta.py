"""Delta_m: a multi-task model's mean relative gain over the single-task baseline."""
from __future__ import annotations

import math
from typing import Mapping


def delta_m(
    metrics: Mapping[str, float], baseline: Mapping[str, float], higher_is_better: Mapping[str, bool]
) -> float:
    """``Delta_m = (100 / T) * sum_t (-1)^{l_t} (M_t - B_t) / B_t`` in percent.

    ``M_t`` is the model's metric on task ``t``, ``B_t`` the single-task baseline's,
    and ``l_t = 1`` where lower is better (Maninis et al. 2019; Vandenhende et al.
    2021). Positive means better than single-task. Tasks are those of ``baseline``;
    NaN when any ``M_t`` is missing or non-finite or any ``B_t`` is zero.
    """
    if not baseline:
        return math.nan
    total = 0.0
    for task, base in baseline.items():
        value = metrics.get(task, math.nan)
        if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
            return math.nan
        sign = 1.0 if higher_is_better[task] else -1.0
        total += sign * (value - base) / base
    return 100.0 * total / len(baseline)
