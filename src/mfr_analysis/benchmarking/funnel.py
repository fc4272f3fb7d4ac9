"""Funnel-plot limits with overdispersion (Spiegelhalter 2005, Stat Med 24:1185-1202;
Spiegelhalter 2005, Qual Saf Health Care 14:347-351), and the flags they give.

A unit's indicator ``y_i`` (observed minus expected: a mean change, or a share of
responders) has standard error ``s_i`` under the hypothesis that the unit is "in control"
(target 0). Its z-score is ``z_i = y_i / s_i``; the limits at level ``p`` are
``0 +- z_p s_i`` (z_p = 1.960 at 95 %, 3.090 at 99.8 %).

Overdispersion: the z-scores are winsorised at 10 % (the lowest and highest 10 % set to the
10th and 90th percentiles), and ``phi = mean(z_w^2)``; under no overdispersion
``I phi`` is about chi-square on I - 1 degrees of freedom (``dispersion_p``).

* ``multiplicative``: limits ``+- z_p sqrt(phi) s_i``, applied when ``phi > 1`` (it never
  narrows the limits).
* ``additive`` (the default; random effects, as the risk model): ``tau^2`` by DerSimonian
  and Laird from the winsorised z-scores,
  ``tau^2 = (I phi - (I - 1)) / (sum w_i - sum w_i^2 / sum w_i)``, ``w_i = 1 / s_i^2``,
  truncated at 0, and limits ``+- z_p sqrt(s_i^2 + tau^2)``. Additive limits stay wide for
  large units (a large unit is not flagged only for being precise), which the
  multiplicative ones do not.
* ``none``: the plain limits.

Flags compare ``direction * y_i`` with the limits: ``above`` (better outcomes than
expected: for pain a larger fall, ``direction = -1``), ``below`` or ``within``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "LIMIT_LEVELS",
    "Dispersion",
    "OverdispersionMethod",
    "estimate_dispersion",
    "flags",
    "half_width",
    "limit_grid",
    "winsorised",
    "z_for",
]

LIMIT_LEVELS: tuple[float, ...] = (0.95, 0.998)  # Spiegelhalter's two funnels
WINSOR_FRACTION = 0.10  # Spiegelhalter 2005: 10 % at each end
OverdispersionMethod = Literal["additive", "multiplicative", "none"]


@dataclass(frozen=True)
class Dispersion:
    """Overdispersion of one indicator across units: ``phi`` (winsorised mean z^2),
    ``tau2`` (additive between-unit variance) and whether the limits apply it."""

    method: str
    phi: float
    tau2: float
    n_units: int
    p_value: float
    applied: bool


def z_for(level: float) -> float:
    """Two-sided normal quantile of a limit level (0.95 -> 1.960, 0.998 -> 3.090)."""
    return float(stats.norm.ppf(0.5 + level / 2))


def winsorised(z: np.ndarray, fraction: float = WINSOR_FRACTION) -> np.ndarray:
    """z-scores with the lowest and highest ``fraction`` set to those percentiles (numpy's
    linear percentiles)."""
    low, high = np.quantile(z, [fraction, 1 - fraction])
    return np.clip(z, low, high)


def estimate_dispersion(estimate: np.ndarray, se: np.ndarray,
                        method: OverdispersionMethod = "additive",
                        fraction: float = WINSOR_FRACTION) -> Dispersion:
    """Spiegelhalter's overdispersion estimate of units' indicators (target 0)."""
    if method not in ("additive", "multiplicative", "none"):
        raise ValueError(f"overdispersion {method!r}: expected additive, multiplicative "
                         "or none")
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    keep = np.isfinite(estimate) & np.isfinite(se) & (se > 0)
    estimate, se = estimate[keep], se[keep]
    units = int(estimate.size)
    if units < 2:
        return Dispersion(method, math.nan, 0.0, units, math.nan, False)
    z = winsorised(estimate / se, fraction)
    phi = float(np.mean(z ** 2))
    p_value = float(stats.chi2.sf(units * phi, units - 1))
    tau2 = 0.0
    if method == "additive":
        w = 1.0 / se ** 2
        tau2 = max(0.0, (units * phi - (units - 1)) / (w.sum() - (w ** 2).sum() / w.sum()))
        applied = tau2 > 0
    else:
        applied = method == "multiplicative" and phi > 1
    return Dispersion(method, phi, tau2, units, p_value, applied)


def half_width(se: np.ndarray | float, z: float, dispersion: Dispersion | None) -> np.ndarray:
    """Half-width of the limits around the target 0 at normal quantile ``z``."""
    se = np.asarray(se, float)
    if dispersion is None or not dispersion.applied:
        return z * se
    if dispersion.method == "multiplicative":
        return z * math.sqrt(dispersion.phi) * se
    return z * np.sqrt(se ** 2 + dispersion.tau2)


def flags(estimate: np.ndarray, se: np.ndarray, direction: int,
          dispersion: Dispersion | None, level: float = 0.95) -> np.ndarray:
    """``above`` (better than expected), ``below`` or ``within`` the limits at ``level``;
    NA where the indicator or its standard error is missing."""
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    width = half_width(se, z_for(level), dispersion)
    better = direction * estimate
    out = np.where(better > width, "above", np.where(better < -width, "below", "within"))
    return np.where(np.isfinite(better) & np.isfinite(width), out, None)


def limit_grid(n_low: int, n_high: int, sd: float, dispersion: Dispersion | None, *,
               points: int = 60, extra: float = 0.0) -> pd.DataFrame:
    """Limits for plotting against clients: ``n_clients, level, lower, upper`` for the
    standard error ``sqrt(sd^2 / n + extra)`` over a geometric grid of client counts."""
    n_low, n_high = max(1, int(n_low)), max(int(n_low), int(n_high), 1)
    grid = np.unique(np.geomspace(n_low, n_high, points).round().astype(int))
    rows = []
    for level in LIMIT_LEVELS:
        width = half_width(np.sqrt(sd ** 2 / grid + extra), z_for(level), dispersion)
        rows.append(pd.DataFrame({"n_clients": grid, "level": level,
                                  "lower": -width, "upper": width}))
    return pd.concat(rows, ignore_index=True)
