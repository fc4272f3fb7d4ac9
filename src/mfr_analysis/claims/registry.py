"""The claims registry (``data/claims.csv``) and the thresholds its claims state.

One row per claim, in report order: ``claim_id``, the claim and its test in words,
``analysis`` (the analysis kind: a key of :data:`mfr_analysis.claims.kinds.KINDS`),
``outcome``, ``factor``, ``level`` and ``reference_level`` (what the kind reads from the
session table), ``outcome_prefixes`` (for a change claim on a family of measures, such as
circulation: every ``<prefix...>_pre``/``_post`` pair whose name starts with one of them,
``;``-separated), ``direction`` (the claimed sign), the threshold (``threshold_key``,
``threshold_kind``, ``threshold_rationale``), ``unit`` and ``hypothesis``.

A claim's threshold is either a row of ``data/thresholds.csv`` (``threshold_key`` = its
``outcome``) or, for a claim analysed per measure, a per-measure table ``data/<key>.csv``
indexed by the claim's ``factor`` column with ``mcid``, ``mcid_reference`` and ``unit``
(``rom_bounds`` for range of motion); a claim of threshold kind ``none`` states none and
reaches association verdicts only.

Another registry file (e.g. one more claim row for a clinic's own question) is used when
its path is given (``registry=`` of :func:`mfr_analysis.claims.evaluate_claims` and
friends) or set in the environment variable ``MFR_CLAIMS_REGISTRY`` (which every step of a
report run, notebooks included, then uses); the shipped file otherwise.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pandas as pd

from mfr_analysis.errors import AnalysisError
from mfr_analysis.tables import load_table

__all__ = [
    "REGISTRY_ENV",
    "THRESHOLD_KINDS",
    "associations",
    "literature",
    "mcid_relative",
    "measure_table",
    "read_registry",
    "threshold",
]

REGISTRY_ENV = "MFR_CLAIMS_REGISTRY"
THRESHOLD_KINDS: tuple[str, ...] = ("within_person", "between_condition", "none")
REQUIRED = ("claim_id", "analysis", "outcome", "direction", "threshold_key", "threshold_kind",
            "threshold_rationale", "unit")
OPTIONAL = ("claim", "test", "factor", "level", "reference_level", "outcome_prefixes",
            "hypothesis")
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def read_registry(path: str | Path | None = None) -> pd.DataFrame:
    """The claims registry: ``path``, else ``$MFR_CLAIMS_REGISTRY``, else the shipped one.

    Raises :class:`AnalysisError` (one line) for a file that cannot be read or a row whose
    threshold is not stated properly.
    """
    chosen = path if path is not None and str(path) != "" else os.environ.get(REGISTRY_ENV)
    if chosen:
        location = Path(chosen)
        try:
            registry = pd.read_csv(location, keep_default_na=False, na_values=[""])
        except FileNotFoundError:
            raise AnalysisError(f"claims registry {location}: no such file") from None
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise AnalysisError(f"claims registry {location}: cannot be read "
                                f"({type(error).__name__})") from None
        name = location.name
    else:
        registry, name = load_table("claims"), "claims.csv"
    missing = [c for c in REQUIRED if c not in registry.columns]
    if missing:
        raise AnalysisError(f"{name}: missing column(s) {', '.join(missing)}")
    registry = registry.assign(**{c: pd.Series(pd.NA, index=registry.index, dtype="object")
                                  for c in OPTIONAL if c not in registry.columns})
    problems = _id_problems(registry) + [
        p for _, claim in registry.iterrows() for p in _threshold_problems(claim)]
    if problems:
        raise AnalysisError(f"{name}: " + "; ".join(problems))
    return registry


def _id_problems(registry: pd.DataFrame) -> list[str]:
    ids = registry["claim_id"]
    problems = []
    if ids.isna().any() or not ids.astype(str).str.fullmatch(r"[a-z][a-z0-9_]*").all():
        problems.append("every claim_id must be lower-case letters, digits and _")
    repeated = sorted(set(ids[ids.duplicated()].astype(str)))
    if repeated:
        problems.append(f"claim_id {', '.join(repeated)} repeated")
    wrong = sorted(str(c) for c, d in zip(ids, registry["direction"], strict=True)
                   if d not in (-1, 1))
    if wrong:
        problems.append(f"{', '.join(wrong)}: direction must be -1 or 1")
    return problems


def _threshold_problems(claim: pd.Series) -> list[str]:
    """What is wrong with the threshold a registry row states (nothing: an empty list)."""
    name, kind, key = claim["claim_id"], claim["threshold_kind"], claim["threshold_key"]
    rationale = claim["threshold_rationale"]
    if kind not in THRESHOLD_KINDS:
        return [f"{name}: threshold_kind {kind!r} is not one of {', '.join(THRESHOLD_KINDS)}"]
    if not (isinstance(rationale, str) and rationale.strip()):
        return [f"{name}: threshold_rationale is empty"]
    if kind == "none":
        return [] if pd.isna(key) else [f"{name}: threshold_kind none with a threshold_key"]
    if isinstance(key, str) and key in _thresholds().index:
        table, source = _thresholds().loc[[key]], "reference"
    else:
        table, source = measure_table(claim), "mcid_reference"
        if table is None:
            return [f"{name}: threshold_key {key!r} is not in thresholds.csv, nor a "
                    f"per-measure table indexed by its factor"]
    if not (table["mcid"].gt(0).all() and table[source].fillna("").str.strip().ne("").all()):
        return [f"{name}: every threshold needs a positive value and a source"]
    return []


@cache
def _thresholds() -> pd.DataFrame:
    return load_table("thresholds").set_index("outcome")


@cache
def _table(name: str, index: str) -> pd.DataFrame | None:
    """A shipped per-measure table indexed by ``index``, or None when there is none."""
    if not _TABLE_NAME.fullmatch(name):
        return None
    try:
        table = load_table(name)
    except (FileNotFoundError, OSError):
        return None
    if not {index, "mcid", "mcid_reference", "unit"} <= set(table.columns):
        return None
    return table.set_index(index)


def measure_table(claim: pd.Series) -> pd.DataFrame | None:
    """The per-measure thresholds of a claim (``data/<threshold_key>.csv`` indexed by its
    factor, e.g. ``rom_bounds`` by ``rom_measure``), or None."""
    key, factor = claim.get("threshold_key"), claim.get("factor")
    if not (isinstance(key, str) and isinstance(factor, str)):
        return None
    return _table(key, factor)


@cache
def _associations() -> pd.DataFrame:
    return load_table("associations").set_index("claim_id")


def associations() -> pd.DataFrame:
    """What went with what for the observational claims (``data/associations.csv``)."""
    return _associations()


def literature() -> pd.DataFrame:
    """Published pooled effects for the overlay (``data/literature.csv``), with references."""
    return load_table("literature")


def threshold(claim: pd.Series, outcome: str,
              overrides: Mapping[str, float]) -> tuple[float, str]:
    """(MCID, its source) of one outcome of a claim: a user override (outcome, measure,
    claim id, in that order), else the registry's table; (NaN, "") when none is stated.

    An outcome ``<outcome>:<measure>`` (a claim analysed per measure) takes the measure's
    threshold from the claim's per-measure table."""
    if claim["threshold_kind"] == "none":
        return math.nan, ""
    measure = outcome.split(":", 1)[1] if ":" in outcome else None
    for key in (outcome, measure, claim["claim_id"]):
        if key is not None and key in overrides:
            return overrides[key], f"set by the user for this run (MCID override {key})"
    if measure is not None:
        table = measure_table(claim)
        if table is None or measure not in table.index:
            return math.nan, ""
        found = table.loc[measure]
        return float(found["mcid"]), str(found["mcid_reference"])
    key = claim["threshold_key"]
    if isinstance(key, str) and key in _thresholds().index:
        found = _thresholds().loc[key]
        return float(found["mcid"]), str(found["reference"])
    return math.nan, ""


def mcid_relative(claim: pd.Series) -> float:
    """The relative MCID of a claim's threshold (e.g. 30 % of baseline pain), or NaN."""
    key = claim["threshold_key"]
    if isinstance(key, str) and key in _thresholds().index:
        value = _thresholds().loc[key, "mcid_relative"]
        return float(value) if pd.notna(value) else math.nan
    return math.nan
