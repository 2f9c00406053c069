"""Pareto fronts: configs no other config beats on both quality and cost."""
from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(frame: pd.DataFrame, maximize: str, minimize: str) -> pd.Series:
    """True for rows no other row dominates: at least as high ``maximize`` and as low
    ``minimize``, strictly better in one. Rows with a missing value are never on the front."""
    values = frame[[maximize, minimize]].astype(float).to_numpy()
    valid = ~np.isnan(values).any(axis=1)
    good, cost = values[:, 0], values[:, 1]
    on_front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid & (good >= good[i]) & (cost <= cost[i]) & ((good > good[i]) | (cost < cost[i]))
        on_front[i] = not others.any()
    return pd.Series(on_front, index=frame.index)
