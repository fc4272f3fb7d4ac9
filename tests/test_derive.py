"""Derived columns: changes, session order, weeks since start, sessions per week."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mfr_analysis.clean import clean_sessions
from mfr_analysis.derive import (
    add_changes,
    add_session_index,
    add_sessions_per_week,
    add_weeks_since_start,
    derive,
)
from mfr_analysis.schema import DERIVED_COLUMNS, DerivedSessions

KEY = b"test-key-not-secret"


def _sessions() -> pd.DataFrame:
    """Two clients: A on days 1, 1 (two sessions), 8 and 22; B once. Rows out of date order."""
    raw = pd.DataFrame({
        "client_id": ["A", "B", "A", "A", "A"],
        "session_date": ["2024-01-22", "2024-02-01", "2024-01-01", "2024-01-08", "2024-01-01"],
        "audience_group": ["athlete"] * 5,
        "pain_pre": ["7", "5", "8", "", "6"],
        "pain_post": ["4", "5", "6", "3", "6.5"],
        "rom_pre": ["100", "", "90", "95", ""],
        "rom_post": ["110", "", "91", "", ""],
        "rom_measure": ["knee flexion"] * 5,
        "tightness_pre": ["6", "5", "7", "6", "6"],
        "tightness_post": ["3", "5", "7", "2", "8"],
        "stress_pre": ["5", "", "4", "4", "4"],
        "stress_post": ["2", "", "4", "3", "1"],
        "source_line": [2, 3, 4, 5, 6],
    })
    return clean_sessions(raw, key=KEY, today=dt.date(2025, 1, 1)).sessions


def test_changes_are_post_minus_pre() -> None:
    out = add_changes(_sessions())
    assert out["pain_change"].tolist()[:3] == [-3.0, 0.0, -2.0]
    assert pd.isna(out["pain_change"].iloc[3])  # pre missing
    assert out["pain_change"].iloc[4] == 0.5
    assert out["rom_change"].tolist()[0] == 10.0 and out["rom_change"].tolist()[2] == 1.0
    assert out["rom_change"].iloc[1:].isna().tolist() == [True, False, True, True]
    assert out["tightness_change"].tolist() == [-3.0, 0.0, 0.0, -4.0, 2.0]
    assert out["stress_change"].tolist()[0] == -3.0


def test_session_index_by_date_ties_in_source_order() -> None:
    out = add_session_index(_sessions())
    # A: 2024-01-01 (line 4) -> 1, 2024-01-01 (line 6) -> 2, 01-08 -> 3, 01-22 -> 4; B -> 1
    assert out["session_index"].tolist() == [4, 1, 1, 3, 2]
    assert str(out["session_index"].dtype) == "Int64"


def test_weeks_since_start_and_sessions_per_week() -> None:
    out = _sessions().pipe(add_weeks_since_start).pipe(add_sessions_per_week)
    assert out["weeks_since_start"].tolist() == [3.0, 0.0, 0.0, 1.0, 0.0]
    # A: 4 sessions over 3 weeks -> 4/3; B: 1 session, span floored at one week -> 1
    assert out["sessions_per_week"].tolist() == pytest.approx([4 / 3, 1.0, 4 / 3, 4 / 3, 4 / 3])


def test_sessions_per_week_short_span_is_floored_at_one_week() -> None:
    frame = pd.DataFrame({"client_id": ["c", "c", "c"],
                          "session_date": pd.to_datetime(["2024-01-01", "2024-01-02",
                                                          "2024-01-04"])})
    assert add_sessions_per_week(frame)["sessions_per_week"].tolist() == [3.0, 3.0, 3.0]


def test_derive_validates_and_keeps_the_input() -> None:
    sessions = _sessions()
    before = sessions.copy(deep=True)
    out = derive(sessions)
    pd.testing.assert_frame_equal(sessions, before)
    assert list(out.columns) == list(DERIVED_COLUMNS)
    DerivedSessions.validate(out)
    assert out["session_index"].tolist() == [4, 1, 1, 3, 2]


def test_missing_column_raises() -> None:
    with pytest.raises(KeyError, match="pain_post"):
        add_changes(pd.DataFrame({"pain_pre": [1.0]}))
    with pytest.raises(KeyError, match="session_date"):
        add_session_index(pd.DataFrame({"client_id": ["a"]}))


def test_empty_table() -> None:
    empty = _sessions().iloc[0:0]
    out = derive(empty)
    assert len(out) == 0 and list(out.columns) == list(DERIVED_COLUMNS)


def test_repeated_session_ids_fail_validation() -> None:
    from pandera.errors import SchemaErrors

    sessions = _sessions()
    repeated = sessions.assign(session_id=sessions["session_id"].where(
        sessions.index != 1, sessions["session_id"].iloc[0]))
    with pytest.raises(SchemaErrors, match="session_id"):
        derive(repeated)
