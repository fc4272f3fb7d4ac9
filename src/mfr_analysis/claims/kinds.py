"""The one table of analysis kinds: the ``analysis`` names of ``data/claims.csv`` -> kinds.

A new claim on a known kind is one row of the registry; a new kind is one module exposing a
:class:`~mfr_analysis.claims.base.Kind` and one entry here. Everything else -- extraction,
session limits, fits, the MCID override keys a settings object accepts, the words of a
figure's axis, the outcomes drawn before and after -- is asked of the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mfr_analysis.claims import adverse, change, change_per_measure, contrast, dose, trajectory
from mfr_analysis.claims.base import Kind
from mfr_analysis.claims.registry import read_registry
from mfr_analysis.errors import AnalysisError

__all__ = [
    "KINDS",
    "before_after_outcomes",
    "claim_registry",
    "estimate_words",
    "kind_of",
    "mcid_key_problem",
]

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    change.KIND,
    change_per_measure.KIND,
    trajectory.KIND,
    contrast.KIND,
    dose.KIND,
    adverse.KIND,
)}

Registry = pd.DataFrame | str | Path | None


def claim_registry(path: str | Path | None = None) -> pd.DataFrame:
    """The claims registry (``data/claims.csv``, or ``path``, or ``$MFR_CLAIMS_REGISTRY``):
    one row per claim id, in report order, every row on a known analysis kind.

    Each claim states the threshold its verdict uses (``threshold_key`` into
    ``thresholds.csv``, or a per-measure table such as ``rom_bounds``), its
    ``threshold_kind`` and why (``threshold_rationale``); a claim of kind ``none`` states
    none and reaches association verdicts only. See :mod:`mfr_analysis.claims.registry`.
    """
    registry = read_registry(path)
    unknown = [f"{c}: analysis {a!r}" for c, a in zip(registry["claim_id"],
                                                      registry["analysis"], strict=True)
               if a not in KINDS]
    if unknown:
        raise AnalysisError(f"claims registry: {'; '.join(unknown)} is not one of "
                            f"{', '.join(KINDS)}")
    return registry


def resolve(registry: Registry) -> pd.DataFrame:
    """A registry given as a table (checked again) or a path, or the default one."""
    if isinstance(registry, pd.DataFrame):
        unknown = sorted(map(str, set(registry["analysis"]) - set(KINDS))) \
            if "analysis" in registry else ["(no analysis column)"]
        if unknown:
            raise AnalysisError(f"claims registry: analysis {', '.join(unknown)} is not one "
                                f"of {', '.join(KINDS)}")
        return registry
    return claim_registry(registry)


def kind_of(claim: pd.Series) -> Kind:
    """The analysis kind of one registry row."""
    return KINDS[str(claim["analysis"])]


def mcid_key_problem(overrides: Mapping[str, float], registry: Registry = None) -> str:
    """Why some MCID override keys cannot be used with the registry ('' when all can).

    A key is a claim id that states a threshold, or an outcome of such a claim that its
    kind looks thresholds up by (e.g. ``pain_followup``, ``rom:knee_flexion_deg`` or the
    measure ``knee_flexion_deg``)."""
    table = resolve(registry)
    with_threshold: set[str] = set()
    without: set[str] = set()
    for _, claim in table.iterrows():
        if claim["threshold_kind"] == "none":
            without.add(str(claim["claim_id"]))
        else:
            with_threshold |= {str(claim["claim_id"]), *kind_of(claim).outcomes(claim)}
    unknown = sorted(set(overrides) - with_threshold - without)
    if unknown:
        return (f"unknown MCID override key(s) {', '.join(unknown)}; use a claim id with a "
                "threshold, a measure (e.g. knee_flexion_deg) or an outcome (e.g. "
                "rom:knee_flexion_deg, pain_followup)")
    stated_none = sorted(set(overrides) & without - with_threshold)
    if stated_none:
        return (f"claim(s) {', '.join(stated_none)} state no threshold (an association or a "
                "change of unknown unit, see claims.csv): an MCID override does not apply")
    return ""


def estimate_words(claim_id: str, outcome: str, registry: Registry = None) -> str:
    """What a claim's estimate measures, in words for an axis ('' for an unknown claim)."""
    table = resolve(registry)
    found = table.loc[table["claim_id"] == claim_id]
    if found.empty:
        return ""
    claim = found.iloc[0]
    return kind_of(claim).estimate_words(claim, outcome)


def before_after_outcomes(registry: Registry = None) -> list[str]:
    """Outcomes whose claims compare a value before and after a session, in registry order
    (each has ``<outcome>_pre`` and ``<outcome>_post`` columns to draw)."""
    table = resolve(registry)
    return list(dict.fromkeys(
        str(claim["outcome"]) for _, claim in table.iterrows()
        if kind_of(claim).before_after and not change.prefixes(claim)))
