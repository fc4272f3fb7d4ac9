"""E-values (VanderWeele & Ding 2017, Ann Intern Med 167:268-274): how strongly an unmeasured
confounder would have to be associated with both the arm and the outcome, on the risk ratio
scale, to explain away an estimate (or to move its confidence interval to include no effect).

Small pure functions, written here because no Python library we depend on offers them (the
reference implementation is the R package EValue): a risk ratio gives its E-value directly;
an odds ratio is first approximated by a risk ratio (itself for a rare outcome, its square
root for a common one); a difference of means is standardised by the outcome's standard
deviation (d) and approximated by the risk ratio exp(0.91 d) (VanderWeele 2017; Chinn 2000).
The conversion constants and the rare-outcome threshold live in
``data/evalue_conversions.csv`` with their sources; the sentence patterns in
``data/adjustment.csv``.

Examples
--------
>>> round(e_value_rr(3.9), 2)  # VanderWeele & Ding 2017: breastfeeding, OR 3.9, rare outcome
7.26
>>> round(e_value_limit(3.9, 1.8, 8.7), 2)
3.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

import numpy as np
import pandas as pd

from mfr_analysis.tables import load_table

__all__ = [
    "conversion",
    "e_value_limit",
    "e_value_rr",
    "e_value_sentence",
    "e_values_md",
    "e_values_or",
    "e_values_rr",
    "pooled_sd",
    "pooled_sd_from_sums",
    "rr_from_d",
    "rr_from_or",
]


@cache
def _conversions() -> dict[str, float]:
    table = load_table("evalue_conversions")
    return dict(zip(table["name"], table["value"].astype(float), strict=True))


def conversion(name: str) -> float:
    """A constant of ``data/evalue_conversions.csv`` (``rare_outcome_max``, ``log_rr_per_sd``)."""
    return _conversions()[name]


@cache
def _adjustment() -> dict[str, Mapping[str, object]]:
    table = load_table("adjustment")
    return {str(r["key"]): r for r in table.to_dict("records")}


def adjustment_words(key: str) -> str:
    """A sentence pattern or word of ``data/adjustment.csv``."""
    return str(_adjustment()[key]["words"])


def adjustment_value(key: str) -> float:
    """A number of ``data/adjustment.csv`` (e.g. ``imbalance_smd``)."""
    return float(_adjustment()[key]["value"])  # type: ignore[arg-type]


def _usable(x: float) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def e_value_rr(rr: float) -> float:
    """E-value of a risk ratio: RR + sqrt(RR (RR - 1)), with 1/RR for a ratio below 1.

    NaN for a missing or non-positive ratio; 1 for a ratio of exactly 1 (no effect)."""
    if not _usable(rr):
        return math.nan
    ratio = 1 / rr if rr < 1 else rr
    return ratio + math.sqrt(ratio * (ratio - 1))


def e_value_limit(rr: float, low: float, high: float) -> float:
    """E-value of the confidence limit nearer no effect (1 when the interval includes it).

    ``rr`` decides which limit is nearer the null: the lower one above 1, the upper below."""
    if not (_usable(rr) and _usable(low) and _usable(high)):
        return math.nan
    if low <= 1 <= high:
        return 1.0
    return e_value_rr(low if rr > 1 else high)


def e_values_rr(rr: float, low: float, high: float) -> tuple[float, float]:
    """(E-value of the point estimate, of the limit nearer the null) of a risk ratio."""
    return e_value_rr(rr), e_value_limit(rr, low, high)


def rr_from_or(odds_ratio: float, *, prevalence: float) -> float:
    """Approximate risk ratio of an odds ratio: itself for a rare outcome (``prevalence`` at
    most ``rare_outcome_max``), its square root for a common one."""
    if not math.isfinite(odds_ratio) or odds_ratio <= 0:
        return math.nan
    common = prevalence > conversion("rare_outcome_max")
    return math.sqrt(odds_ratio) if common else odds_ratio


def e_values_or(odds_ratio: float, low: float, high: float, *,
                prevalence: float) -> tuple[float, float]:
    """E-values of an odds ratio and its interval, through :func:`rr_from_or`."""
    return e_values_rr(*(rr_from_or(v, prevalence=prevalence) for v in (odds_ratio, low, high)))


def rr_from_d(d: float) -> float:
    """Approximate risk ratio of a standardised mean difference: exp(0.91 d)."""
    return math.exp(conversion("log_rr_per_sd") * d) if math.isfinite(d) else math.nan


def e_values_md(difference: float, low: float, high: float, *,
                sd: float) -> tuple[float, float]:
    """E-values of a difference of means and its interval, each standardised by ``sd`` (the
    outcome's standard deviation) and converted with :func:`rr_from_d`."""
    if not (math.isfinite(sd) and sd > 0):
        return math.nan, math.nan
    return e_values_rr(*(rr_from_d(v / sd) for v in (difference, low, high)))


def pooled_sd(values: np.ndarray, arm: np.ndarray) -> float:
    """Pooled within-arm standard deviation of ``values`` (``arm``: two labels, e.g. 0/1).

    NaN unless both arms have a value and at least one has two."""
    values = np.asarray(values, dtype=float)
    arm = np.asarray(arm)
    keep = np.isfinite(values)
    values, arm = values[keep], arm[keep]
    parts = [values[arm == label] for label in np.unique(arm)]
    if len(parts) != 2 or min(p.size for p in parts) == 0:
        return math.nan
    dof = sum(p.size - 1 for p in parts)
    if dof <= 0:
        return math.nan
    return math.sqrt(sum(float(((p - p.mean()) ** 2).sum()) for p in parts) / dof)


def pooled_sd_from_sums(n: np.ndarray, total: np.ndarray, squares: np.ndarray,
                        arm: np.ndarray) -> float:
    """Pooled within-arm standard deviation of the values behind per-unit sums: ``n``
    values, their ``total`` and sum of ``squares`` per unit, ``arm`` a boolean per unit.

    The same number as :func:`pooled_sd` of the values themselves, from sums that add
    across partitions (so the in-memory and the Dask engines agree)."""
    n, total, squares = (np.asarray(v, dtype=float) for v in (n, total, squares))
    arm = np.asarray(arm, dtype=bool)
    count, within = 0.0, 0.0
    for side in (arm, ~arm):
        n_side = float(n[side].sum())
        if n_side == 0:
            return math.nan
        within += float(squares[side].sum()) - float(total[side].sum()) ** 2 / n_side
        count += n_side - 1
    if count <= 0:
        return math.nan
    return math.sqrt(max(within, 0.0) / count)


def _shown(x: float) -> str:
    """An E-value for a sentence: one decimal, two when one would read as no effect."""
    return f"{x:.2f}" if x < 1.1 else f"{x:.1f}"


def e_value_sentence(row: pd.Series | Mapping[str, object]) -> str:
    """What a row's E-values mean in one sentence ('' for a row without an E-value).

    Reads ``e_value`` and ``e_value_ci``; the patterns are in ``data/adjustment.csv``.

    Examples
    --------
    >>> e_value_sentence({"e_value": 2.1, "e_value_ci": 1.4})  # doctest: +ELLIPSIS
    'an unmeasured confounder ... by a risk ratio of 2.1 each ...; 1.4 to move its interval...'
    """
    def number(column: str) -> float:
        try:
            return float(row[column])  # type: ignore[index,arg-type]
        except (KeyError, TypeError, ValueError):
            return math.nan

    point, limit = number("e_value"), number("e_value_ci")
    if not math.isfinite(point):
        return ""
    if not math.isfinite(limit):
        return adjustment_words("e_value_sentence_point").format(point=_shown(point))
    if limit <= 1:
        return adjustment_words("e_value_sentence_null").format(point=_shown(point))
    return adjustment_words("e_value_sentence").format(point=_shown(point),
                                                       limit=_shown(limit))
