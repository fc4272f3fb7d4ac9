"""Derived columns of the clean session table: changes, session order, time, regularity.

* ``pain_change``, ``rom_change``, ``tightness_change``, ``stress_change``: post minus pre
  (negative pain/tightness/stress change = improvement; positive ROM change = gain).
* ``session_index``: 1 for a client's first session by date; sessions on the same date keep
  the order of the table (source file order, then line).
* ``weeks_since_start``: days since the client's first session, divided by 7.
* ``sessions_per_week`` (client level, the same on every row of a client): number of sessions
  divided by the span from first to last session in weeks, with the span floored at one week
  (so a client seen once, or only within one week, has ``sessions_per_week`` = sessions).
* ``age_band`` and ``symptom_duration_band``: ordered categories from the bands of
  ``data/age_bands.csv`` (<30, 30-44, 45-59, 60-74, 75+) and
  ``data/symptom_duration_bands.csv`` (acute < 6 weeks, subacute 6-12, chronic > 12); NA
  where the value is. Reports show these bands, never the age itself. A clean table
  without the optional intake columns (an earlier version's) gets them as NA.

Each step is a pure ``DataFrame -> DataFrame`` function; :func:`derive` chains them with
``.pipe`` and validates the result against ``schema.DerivedSessions``. Inputs are never
changed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pandera.pandas as pa_schema

from mfr_analysis.pseudonymise import hex_ids_unique
from mfr_analysis.schema import (
    CATEGORY_DTYPES,
    DERIVED_COLUMNS,
    INTAKE_COLUMNS,
    AgeBandDtype,
    DerivedSessions,
    SymptomDurationBandDtype,
)
from mfr_analysis.tables import load_table

CHANGES: dict[str, tuple[str, str]] = {
    "pain_change": ("pain_pre", "pain_post"),
    "rom_change": ("rom_pre", "rom_post"),
    "tightness_change": ("tightness_pre", "tightness_post"),
    "stress_change": ("stress_pre", "stress_post"),
}


def _require(sessions: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> None:
    missing = [c for c in columns if c not in sessions.columns]
    if missing:
        raise KeyError(f"sessions table lacks column(s): {', '.join(missing)}")


def add_changes(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add post-minus-pre change columns (NA when either side is missing)."""
    _require(sessions, [c for pair in CHANGES.values() for c in pair])
    return sessions.assign(**{
        name: sessions[post].astype("float64") - sessions[pre].astype("float64")
        for name, (pre, post) in CHANGES.items()
    })


def _client_codes(sessions: pd.DataFrame) -> np.ndarray:
    return pd.factorize(sessions["client_id"], use_na_sentinel=False)[0]


def _order_by(clients: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Row order by client, then date, then table position (one int64 sort key if it fits)."""
    n = clients.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    day0 = days - days.min()
    bits = [int(x).bit_length() for x in (clients.max(), day0.max(), n)]
    if sum(bits) <= 63:
        key = ((clients.astype(np.int64) << (bits[1] + bits[2])) | (day0 << bits[2])
               | np.arange(n, dtype=np.int64))
        return np.argsort(key)  # keys are unique, so no stable sort is needed
    return np.lexsort((np.arange(n), days, clients))


def add_session_index(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add ``session_index``: 1 = the client's first session by date, ties in table order."""
    _require(sessions, ["client_id", "session_date"])
    n = len(sessions)
    clients = _client_codes(sessions)
    days = sessions["session_date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
    order = _order_by(clients, days)
    sorted_clients = clients[order]
    starts = np.r_[True, sorted_clients[1:] != sorted_clients[:-1]] if n else np.zeros(0, bool)
    position = np.arange(n)
    first_position = np.maximum.accumulate(np.where(starts, position, 0)) if n else position
    index = np.empty(n, dtype=np.int64)
    index[order] = position - first_position + 1
    return sessions.assign(session_index=pd.array(index, dtype="Int64"))


def add_weeks_since_start(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add ``weeks_since_start``: days since the client's first session / 7."""
    _require(sessions, ["client_id", "session_date"])
    first = sessions.groupby("client_id", observed=True, sort=False)["session_date"].transform(
        "min")
    days = (sessions["session_date"] - first).dt.days.astype("float64")
    return sessions.assign(weeks_since_start=days / 7.0)


def add_sessions_per_week(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add client-level ``sessions_per_week`` = sessions / max(1, weeks from first to last)."""
    _require(sessions, ["client_id", "session_date"])
    by_client = sessions.groupby("client_id", observed=True, sort=False)["session_date"]
    span_weeks = (by_client.transform("max") - by_client.transform("min")).dt.days / 7.0
    count = by_client.transform("size").astype("float64")
    return sessions.assign(sessions_per_week=count / np.maximum(1.0, span_weeks))


def add_missing_intake(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add the optional intake columns a table lacks (an earlier version's), all NA."""
    n = len(sessions)
    blank = {
        "clinician": lambda: pd.Series(pd.array([None] * n, dtype="str"), index=sessions.index),
        "age": lambda: np.full(n, np.nan),
        "sex": lambda: pd.Categorical.from_codes(np.full(n, -1), dtype=CATEGORY_DTYPES["sex"]),
        "symptom_duration_weeks": lambda: np.full(n, np.nan),
    }
    missing = {c: blank[c]() for c in INTAKE_COLUMNS if c not in sessions.columns}
    return sessions.assign(**missing) if missing else sessions


@cache
def _band_edges(table: str) -> tuple[tuple[str, float, float, bool, bool], ...]:
    bands = load_table(table)
    return tuple(zip(bands["band"], bands["low"].astype(float), bands["high"].astype(float),
                     bands["low_inclusive"].astype(bool), bands["high_inclusive"].astype(bool),
                     strict=True))


def band_codes(values: pd.Series | np.ndarray, table: str) -> np.ndarray:
    """Position of each value's band in ``data/<table>.csv`` (-1: missing or in no band)."""
    x = np.asarray(values, dtype=np.float64)
    codes = np.full(x.size, -1, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        for i, (_, low, high, low_inclusive, high_inclusive) in enumerate(_band_edges(table)):
            above = x >= low if low_inclusive else x > low
            below = x <= high if high_inclusive else x < high
            codes[above & below & (codes < 0)] = i
    return codes


def add_bands(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add ``age_band`` and ``symptom_duration_band`` from the band tables."""
    _require(sessions, ["age", "symptom_duration_weeks"])
    return sessions.assign(
        age_band=pd.Categorical.from_codes(band_codes(sessions["age"], "age_bands"),
                                           dtype=AgeBandDtype),
        symptom_duration_band=pd.Categorical.from_codes(
            band_codes(sessions["symptom_duration_weeks"], "symptom_duration_bands"),
            dtype=SymptomDurationBandDtype),
    )


def derive(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns of design.md and validate against ``DerivedSessions``."""
    derived = (
        sessions.pipe(add_changes)
        .pipe(add_session_index)
        .pipe(add_weeks_since_start)
        .pipe(add_sessions_per_week)
        .pipe(add_missing_intake)
        .pipe(add_bands)
    )
    derived = derived[[c for c in DERIVED_COLUMNS if c in derived.columns]]
    validated = _derived_schema().validate(derived, lazy=True, inplace=True)
    unique = hex_ids_unique(validated["session_id"])
    if not (unique or (unique is None and validated["session_id"].is_unique)):
        DerivedSessions.validate(validated, lazy=True)  # raises, naming the repeated ids
    return validated


@cache
def _derived_schema() -> pa_schema.DataFrameSchema:
    """``DerivedSessions`` minus the string-hashing uniqueness check of session_id, which
    :func:`derive` does by decoding the ``s_`` + hex ids instead (same verdict, faster);
    validated in place since ``derive`` owns the frame it built."""
    schema = DerivedSessions.to_schema().update_column("session_id", unique=False)
    schema.strict = True
    return schema
