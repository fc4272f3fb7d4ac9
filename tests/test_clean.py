"""Cleaning: every planted bad value lands in quarantine with its reasons; good rows are exact."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfr_analysis.clean import (
    clean_sessions,
    parse_category,
    parse_date,
    parse_duration,
    parse_field_value,
    parse_hours,
    parse_rating,
    parse_rom,
    reason_codes,
)
from mfr_analysis.pseudonymise import client_pseudonym
from mfr_analysis.read import INPUT_COLUMNS, read_logs
from mfr_analysis.schema import CLEAN_COLUMNS, CleanSessions

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = Path(__file__).parents[1] / "data" / "sample" / "logs" / "sessions_export.csv"
KEY = b"test-key-not-secret"
TODAY = dt.date(2025, 1, 1)

# source_line -> the reason codes that row must carry (and nothing else)
EXPECTED_REASONS: dict[int, str] = {
    9: "missing_client_id",
    10: "unparseable_date",
    11: "date_order_mismatch",
    12: "future_date",
    13: "date_before_1990",
    14: "missing_date",
    15: "unknown_audience_group",
    16: "missing_audience_group",
    17: "unknown_arm",
    18: "unknown_technique",
    19: "unknown_body_region",
    20: "unknown_pace",
    21: "unknown_adverse_event",
    22: "unknown_rom_measure",
    23: "unparseable_boolean",
    24: "unparseable_number",
    25: "out_of_range",
    26: "out_of_range",
    27: "rom_out_of_range",
    28: "rom_without_measure",
    29: "rom_unit_mismatch",
    30: "missing_client_id;unparseable_date;out_of_range",
}
NA = None
RAD = 180 / math.pi
# source_line -> hand-computed clean values (client ids are the raw ids before hashing)
EXPECTED_CLEAN: dict[int, dict[str, object]] = {
    2: dict(client_id="P-001", site="North Clinic", session_date="2024-03-05",
            audience_group="athlete", arm="mfr", technique="foam_roller", delivery="self",
            body_region="calves", duration_min=20, pressure=5, pace="slow", deep_breathing=True,
            pain_pre=7, pain_post=4, pain_followup=5, followup_hours=24,
            rom_measure="knee_flexion_deg", rom_pre=110, rom_post=118, tightness_pre=6,
            tightness_post=3, stress_pre=5, stress_post=2, adverse_event="none"),
    3: dict(client_id="P-001", site="North Clinic", session_date="2024-03-05",
            audience_group="athlete", arm="mfr", technique="foam_roller", delivery="self",
            body_region="calves", duration_min=20, pressure=6, pace="slow", deep_breathing=True,
            pain_pre=7, pain_post=3, pain_followup=NA, followup_hours=NA,
            rom_measure="knee_flexion_deg", rom_pre=1.9 * RAD, rom_post=2.1 * RAD,
            tightness_pre=7, tightness_post=2, stress_pre=NA, stress_post=NA,
            adverse_event="none"),
    4: dict(client_id="P-002", site="South", session_date="2024-03-06",
            audience_group="desk_worker", arm="control", technique="practitioner",
            delivery="practitioner", body_region="lower_back", duration_min=60, pressure=5,
            pace="fast", deep_breathing=False, pain_pre=7, pain_post=6.5, pain_followup=NA,
            followup_hours=NA, rom_measure="sit_and_reach_cm", rom_pre=20.32, rom_post=25.4,
            tightness_pre=6, tightness_post=4, stress_pre=7, stress_post=5,
            adverse_event="bruising"),
    6: dict(client_id="P-003", site="South", session_date="2024-03-05",
            audience_group="senior", arm="control", technique="lacrosse_ball", delivery="self",
            body_region="hamstrings", duration_min=15, pressure=3, pace="slow",
            deep_breathing=False, pain_pre=5, pain_post=5, pain_followup=4, followup_hours=48,
            rom_measure="hip_flexion_deg", rom_pre=70, rom_post=75, tightness_pre=5,
            tightness_post=5, stress_pre=3, stress_post=3, adverse_event="none"),
    7: dict(client_id="P-004", site=NA, session_date="2024-03-07", audience_group="rehab",
            arm="mfr", technique="trigger_point_tool", delivery="self", body_region="neck",
            duration_min=30, pressure=NA, pace=NA, deep_breathing=NA, pain_pre=2, pain_post=1,
            pain_followup=NA, followup_hours=NA, rom_measure="cervical_rotation_deg",
            rom_pre=60, rom_post=70, tightness_pre=NA, tightness_post=NA, stress_pre=NA,
            stress_post=NA, adverse_event=NA),
    8: dict(client_id="P-005", site="North Clinic", session_date="2024-03-07",
            audience_group="chronic_pain", arm="control", technique="other", delivery="self",
            body_region="other", duration_min=10, pressure=8, pace="fast", deep_breathing=True,
            pain_pre=8, pain_post=6, pain_followup=NA, followup_hours=NA, rom_measure=NA,
            rom_pre=NA, rom_post=NA, tightness_pre=9, tightness_post=8, stress_pre=6,
            stress_post=6, adverse_event="increased_pain"),
}


@pytest.fixture(scope="module")
def fixture_result():
    raw = read_logs([FIXTURES / "messy_sessions.csv"])
    return raw, clean_sessions(raw.frame, key=KEY, today=TODAY)


def _value(series: pd.Series, i: int) -> object:
    value = series.iloc[i]
    return None if pd.isna(value) else value


def test_counts_and_invariant(fixture_result) -> None:
    raw, result = fixture_result
    report = result.report
    assert report["rows_in"] == 29  # 30 data lines, one of them all blank
    assert (report["rows_clean"], report["rows_quarantined"], report["rows_duplicate"]) == (
        6, 22, 1)
    assert report["rows_in"] == (report["rows_clean"] + report["rows_quarantined"]
                                 + report["rows_duplicate"])
    assert result.duplicates == 1
    assert report["per_source"] == {"messy_sessions.csv": {
        "rows_in": 29, "rows_clean": 6, "rows_quarantined": 22, "rows_duplicate": 1}}


def test_every_bad_row_is_quarantined_with_exactly_its_reasons(fixture_result) -> None:
    _, result = fixture_result
    q = result.quarantine
    got = dict(zip(q["source_line"].tolist(), q["reasons"].tolist(), strict=True))
    assert got == EXPECTED_REASONS
    assert set(q["source_file"]) == {"messy_sessions.csv"}
    detail = dict(zip(q["source_line"], q["reason_detail"], strict=True))
    assert detail[30] == ("missing_client_id:client_id;unparseable_date:session_date;"
                          "out_of_range:pain_pre;out_of_range:followup_hours")
    assert detail[29] == "rom_unit_mismatch:rom_post"


def test_report_counts_rows_per_reason(fixture_result) -> None:
    _, result = fixture_result
    expected: dict[str, int] = {}
    for reasons in EXPECTED_REASONS.values():
        for code in reasons.split(";"):
            expected[code] = expected.get(code, 0) + 1
    assert result.report["reasons"] == expected
    assert set(expected) <= set(reason_codes())


def test_quarantine_keeps_raw_values_but_no_identifiers(fixture_result) -> None:
    _, result = fixture_result
    q = result.quarantine.set_index("source_line")
    assert q.loc[24, "pain_pre"] == "lots"
    assert q.loc[10, "session_date"] == "31/02/2024"
    assert q.loc[30, "pain_pre"] == "15/10"
    assert q.loc[9, "client_id"] == ""  # blank raw id stays blank
    assert q.loc[25, "client_id"] == client_pseudonym("P-117", KEY)
    assert q.loc[25, "session_id"].startswith("s_")
    text = result.quarantine.to_csv()
    for planted in ("P-117", "Ann Smith", "example.com", "7700 900001", "1971-07-14",
                    "husband", "S117"):
        assert planted not in text
    assert set(result.quarantine.columns) == {*INPUT_COLUMNS, "source_file", "source_line",
                                              "reasons", "reason_detail"}


def test_good_rows_have_exactly_the_hand_computed_values(fixture_result) -> None:
    _, result = fixture_result
    s = result.sessions
    assert s["source_line"].tolist() == list(EXPECTED_CLEAN)
    for i, (line, expected) in enumerate(EXPECTED_CLEAN.items()):
        for column, want in expected.items():
            got = _value(s[column], i)
            if column == "client_id":
                want = client_pseudonym(str(want), KEY)
            elif column == "session_date":
                want = pd.Timestamp(str(want))
            if isinstance(want, float | int) and not isinstance(want, bool):
                assert got == pytest.approx(want), (line, column)
            else:
                assert got == want, (line, column, got, want)


def test_sessions_match_the_schema_and_ids(fixture_result) -> None:
    _, result = fixture_result
    s = result.sessions
    CleanSessions.validate(s)
    assert list(s.columns) == list(CLEAN_COLUMNS)
    assert s["session_id"].is_unique
    assert s["session_id"].str.fullmatch(r"s_[0-9a-f]{16}").all()
    assert s["client_id"].iloc[0] == s["client_id"].iloc[1]  # 'P-001' and 'p-001 '
    assert s["site"].iloc[1] == "North Clinic"  # 'north clinic' merged into one site
    assert result.report["session_ids"]["from_source"] == 6


@pytest.mark.parametrize("column", ["client_id", "clinician"])
def test_a_malformed_pseudonym_still_fails_validation(fixture_result, monkeypatch,
                                                      column: str) -> None:
    """The pseudonym patterns are checked on the distinct values, not row by row: a value
    outside the pattern must still stop cleaning."""
    import pandera.errors

    import mfr_analysis.clean as clean_module
    name, bad = {"client_id": ("client_pseudonyms", "c_0123456789ABCDEF"),  # upper case hex
                 "clinician": ("clinician_pseudonyms", "t_0123456789ABCDEF")}[column]
    good = getattr(clean_module, name)
    monkeypatch.setattr(clean_module, name, lambda ids, key: [bad] + good(list(ids)[1:], key))
    raw, _ = fixture_result
    frame = raw.frame.assign(clinician="Dr A") if column == "clinician" else raw.frame
    with pytest.raises(pandera.errors.SchemaErrors, match=bad):
        clean_sessions(frame, key=KEY, today=TODAY)


def test_input_frame_is_not_changed(fixture_result) -> None:
    raw, _ = fixture_result
    before = raw.frame.copy(deep=True)
    clean_sessions(raw.frame, key=KEY, today=TODAY)
    pd.testing.assert_frame_equal(raw.frame, before)


def test_date_order_mdy_changes_the_reading() -> None:
    raw = pd.DataFrame({"client_id": ["a", "b"], "session_date": ["05/03/2024", "03/25/2024"],
                        "audience_group": ["athlete", "athlete"]})
    dmy = clean_sessions(raw, key=KEY, today=TODAY)
    mdy = clean_sessions(raw, key=KEY, today=TODAY, date_order="mdy")
    assert dmy.sessions["session_date"].tolist() == [pd.Timestamp("2024-03-05")]
    assert dmy.quarantine["reasons"].tolist() == ["date_order_mismatch"]
    assert mdy.sessions["session_date"].tolist() == [pd.Timestamp("2024-05-03"),
                                                     pd.Timestamp("2024-03-25")]
    with pytest.raises(ValueError, match="date_order"):
        clean_sessions(raw, key=KEY, date_order="ymd")  # type: ignore[arg-type]


def test_absent_optional_columns_and_default_arm() -> None:
    raw = pd.DataFrame({"client_id": ["a"], "session_date": ["2024-01-02"],
                        "audience_group": ["senior"]})
    result = clean_sessions(raw, key=KEY, today=TODAY)
    row = result.sessions.iloc[0]
    assert row["arm"] == "mfr"
    assert pd.isna(row["pain_pre"]) and pd.isna(row["technique"]) and pd.isna(row["delivery"])
    assert row["source_file"] == "<frame>" and row["source_line"] == 1
    assert "pain_pre" in result.report["columns_absent"]


def test_missing_audience_column_quarantines_every_row() -> None:
    raw = pd.DataFrame({"client_id": ["a", "b"], "session_date": ["2024-01-02", "2024-01-03"]})
    result = clean_sessions(raw, key=KEY, today=TODAY)
    assert result.report["rows_quarantined"] == 2
    assert set(result.quarantine["reasons"]) == {"missing_audience_group"}


def test_session_ids_derived_without_source_ids_and_repeated_source_ids() -> None:
    raw = pd.DataFrame({
        "session_id": ["1", "1", "", "n/a"],
        "client_id": ["a", "a", "a", "b"],
        "session_date": ["2024-01-02", "2024-01-09", "2024-01-09", "2024-01-09"],
        "audience_group": ["senior"] * 4,
    })
    result = clean_sessions(raw, key=KEY, today=TODAY)
    ids = result.sessions["session_id"]
    assert len(ids) == 4 and ids.is_unique
    assert result.report["session_ids"] == {"from_source": 2, "derived": 2,
                                            "repeated_source_ids": 1}
    again = clean_sessions(raw, key=KEY, today=TODAY)
    assert again.sessions["session_id"].tolist() == ids.tolist()
    other_key = clean_sessions(raw, key=b"another key", today=TODAY)
    assert not set(other_key.sessions["session_id"]) & set(ids)


def test_duplicates_compare_parsed_values_and_keep_the_first() -> None:
    raw = pd.DataFrame({
        "client_id": ["A1", " a1", "A1", "A1"],
        "session_date": ["2024-01-02", "02/01/2024", "2024-01-02", "2024-01-02"],
        "audience_group": ["athlete", "Athletes", "athlete", "athlete"],
        "pain_pre": ["7", "7/10", "70 mm", "6"],
        "source_file": ["a.csv", "b.csv", "b.csv", "b.csv"],
        "source_line": [2, 2, 3, 4],
    })
    result = clean_sessions(raw, key=KEY, today=TODAY)
    assert result.duplicates == 2
    assert result.sessions[["source_file", "source_line"]].values.tolist() == [
        ["a.csv", 2], ["b.csv", 4]]
    assert result.report["per_source"]["b.csv"]["rows_duplicate"] == 2


def _respelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sessions written differently: client ids in upper case with spaces, sites in
    upper case, whole-number ratings as decimals, another file and other lines."""
    text = frame.astype(object).where(frame.notna(), None)

    def decimal(value: object) -> object:
        return f"{value}.0" if isinstance(value, str) and value.isdigit() else value

    return text.assign(
        client_id=[f"  {v.upper()} " if isinstance(v, str) else v for v in text["client_id"]],
        site=[v.upper() if isinstance(v, str) else v for v in text["site"]],
        pain_pre=[decimal(v) for v in text["pain_pre"]],
        source_file="other.csv", source_line=text["source_line"] + 1000,
    )


def test_one_content_hash_finds_the_same_duplicates_in_any_call() -> None:
    """Both engines de-duplicate with one content hash: the same parsed values give the same
    two 64-bit hashes whichever call cleaned them (that is what the Dask engine compares
    across partitions), and a call finds exactly the duplicates those hashes find."""
    raw = read_logs([SAMPLE]).frame
    first = clean_sessions(raw, key=KEY, today=TODAY, row_keys=True)
    other = _respelled(raw)
    second = clean_sessions(other, key=KEY, today=TODAY, row_keys=True)
    assert first.row_keys is not None and second.row_keys is not None
    assert len(first.row_keys) == len(first.sessions) > 1000
    pairs = [set(zip(r.row_keys["dup1"], r.row_keys["dup2"], strict=True))
             for r in (first, second)]
    assert pairs[0] == pairs[1] and len(pairs[0]) == len(first.sessions)
    both = clean_sessions(pd.concat([raw.astype(object), other], ignore_index=True), key=KEY,
                          today=TODAY)
    assert both.duplicates == first.duplicates + second.duplicates + len(second.sessions)

    changed = other.copy()
    row = first.sessions.iloc[0]
    changed.loc[changed["source_line"] == row["source_line"] + 1000, "pain_post"] = (
        "0.5" if row["pain_post"] != 0.5 else "1.5")  # one clean session, one value changed
    moved = clean_sessions(changed, key=KEY, today=TODAY, row_keys=True).row_keys
    assert moved is not None
    assert (moved["dup1"].to_numpy() != second.row_keys["dup1"].to_numpy()).sum() == 1
    other_key = clean_sessions(raw, key=b"another key", today=TODAY, row_keys=True).row_keys
    assert other_key is not None and not set(other_key["dup1"]) & set(first.row_keys["dup1"])
    assert clean_sessions(raw, key=KEY, today=TODAY).row_keys is None  # only when asked


def test_clean_sessions_needs_the_key_and_reads_no_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MFR_PSEUDONYM_KEY", raising=False)
    key_file = tmp_path / "config" / "pseudonym.key"
    monkeypatch.setenv("MFR_PSEUDONYM_KEY_FILE", str(key_file))
    raw = read_logs([FIXTURES / "messy_sessions.csv"]).frame
    with pytest.raises(TypeError, match="key"):
        clean_sessions(raw, today=TODAY)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="key"):
        clean_sessions(raw, key=None, today=TODAY)  # type: ignore[arg-type]
    result = clean_sessions(raw, key=KEY, today=TODAY)
    assert len(result.sessions) == 6
    assert not key_file.parent.exists()  # no key file made, nothing written


def test_malformed_rows_flagged_by_the_reader_are_quarantined() -> None:
    raw = pd.DataFrame({"client_id": ["a", "b"], "session_date": ["2024-01-02"] * 2,
                        "audience_group": ["senior"] * 2,
                        "source_issue": ["", "malformed_row: 2 fields, header has 3"]})
    result = clean_sessions(raw, key=KEY, today=TODAY)
    assert result.quarantine["reasons"].tolist() == ["malformed_row"]
    assert "source_issue" not in result.sessions.columns


def test_empty_frame() -> None:
    result = clean_sessions(pd.DataFrame({"client_id": [], "session_date": []}, dtype="str"),
                            key=KEY, today=TODAY)
    assert result.report["rows_in"] == 0 and len(result.sessions) == 0
    assert len(result.quarantine) == 0
    CleanSessions.validate(result.sessions)


# --------------------------------------------------------------------------------- parsers

@pytest.mark.parametrize(("text", "value"), [
    ("7", 7), ("7/10", 7), ("7 / 10", 7), ("7 out of 10", 7), ("70 mm", 7), ("70mm", 7),
    ("6-7", 6.5), ("6 – 7", 6.5), ("seven", 7), ("Seven out of ten", 7), ("70/100", 7),
    ("70 %", 7), ("7 cm", 7), ("7,5", 7.5), (" 7 ", 7), ("0", 0), ("10", 10), ("none", 0),
])
def test_rating_spellings(text: str, value: float) -> None:
    assert parse_field_value("pain_pre", text) == (pytest.approx(value), None)


@pytest.mark.parametrize("text", ["", "  ", "n/a", "N/A", "-", "refused", "not recorded", "NaN"])
def test_rating_blanks_are_missing_not_errors(text: str) -> None:
    value, reason = parse_rating(text)
    assert math.isnan(value) and reason is None


@pytest.mark.parametrize(("text", "reason"), [
    ("12", "out_of_range"), ("70", "out_of_range"), ("15/10", "out_of_range"),
    ("-1", "out_of_range"), ("700 mm", "out_of_range"), ("lots", "unparseable_number"),
    ("7/5", "unparseable_number"), ("1e5", "unparseable_number"), ("7 kg", "unparseable_number"),
])
def test_rating_errors(text: str, reason: str) -> None:
    value, got = parse_field_value("pain_post", text)
    assert math.isnan(value) and got == reason


@pytest.mark.parametrize(("text", "minutes"), [
    ("20", 20), ("20 min", 20), ("20 mins", 20), ("20 minutes", 20), ("1 h", 60), ("1h", 60),
    ("1.5 hours", 90), ("1h30", 90), ("1 h 30 min", 90), ("90 s", 1.5), ("15-25", 20),
])
def test_duration_spellings(text: str, minutes: float) -> None:
    assert parse_duration(text) == (pytest.approx(minutes), None)
    assert parse_field_value("duration_min", text)[1] is None


def test_duration_bounds() -> None:
    assert parse_field_value("duration_min", "0")[1] == "out_of_range"
    assert parse_field_value("duration_min", "3 h")[1] == "out_of_range"
    assert parse_field_value("duration_min", "120")[0] == 120


@pytest.mark.parametrize(("text", "hours"), [
    ("24", 24), ("48 h", 48), ("24 hours", 24), ("2 days", 48), ("next day", 24), ("1 week", 168),
])
def test_followup_hours(text: str, hours: float) -> None:
    assert parse_hours(text) == (pytest.approx(hours), None)


@pytest.mark.parametrize(("text", "value", "kind"), [
    ("110", 110, ""), ("45 deg", 45, "degrees"), ("45°", 45, "degrees"), ("45º", 45, "degrees"),
    ("45 degrees", 45, "degrees"), ("1.2 rad", 1.2 * RAD, "degrees"), ("8 in", 20.32, "cm"),
    ('8"', 20.32, "cm"), ("8 inches", 20.32, "cm"), ("20 cm", 20, "cm"), ("-5", -5, ""),
    ("110-114", 112, ""),
])
def test_rom_units(text: str, value: float, kind: str) -> None:
    got_value, got_kind, reason = parse_rom(text)
    assert (got_value, got_kind, reason) == (pytest.approx(value), kind, None)


@pytest.mark.parametrize(("text", "order", "expected"), [
    ("2024-03-05", "dmy", "2024-03-05"), ("2024-03-05", "mdy", "2024-03-05"),
    ("05/03/2024", "dmy", "2024-03-05"), ("05/03/2024", "mdy", "2024-05-03"),
    ("5-3-2024", "dmy", "2024-03-05"), ("05.03.2024", "mdy", "2024-03-05"),
    ("05/03/24", "dmy", "2024-03-05"), ("45356", "dmy", "2024-03-05"),
    ("45356.75", "dmy", "2024-03-05"), ("20240305", "dmy", "2024-03-05"),
    ("2024-03-05 14:30", "dmy", "2024-03-05"), ("2024-03-05T14:30:00Z", "dmy", "2024-03-05"),
    ("05/03/2024 2:30 PM", "dmy", "2024-03-05"), ("7 March 2024", "dmy", "2024-03-07"),
    ("March 7, 2024", "mdy", "2024-03-07"), ("Thu 7th Mar 2024", "dmy", "2024-03-07"),
    ("07-Mar-2024", "dmy", "2024-03-07"),
])
def test_date_spellings(text: str, order: str, expected: str) -> None:
    assert parse_date(text, order, 2025) == (dt.date.fromisoformat(expected), None)


@pytest.mark.parametrize(("text", "reason"), [
    ("31/02/2024", "unparseable_date"), ("13/13/2024", "unparseable_date"),
    ("03/25/2024", "date_order_mismatch"), ("yesterday", "unparseable_date"),
    ("5", "unparseable_date"), ("2024-13-01", "unparseable_date"),
])
def test_date_errors(text: str, reason: str) -> None:
    assert parse_date(text, "dmy", 2025) == (None, reason)


@pytest.mark.parametrize(("field", "text", "canonical"), [
    ("audience_group", "Office  Worker", "desk_worker"),
    ("audience_group", "older adult", "senior"), ("audience_group", "post-op", "rehab"),
    ("audience_group", "FIBROMYALGIA", "chronic_pain"),
    ("audience_group", "chronic_pain", "chronic_pain"),
    ("technique", "Foam-Roller", "foam_roller"),
    ("arm", "Sham", "control"), ("body_region", "IT band", "hips"), ("pace", "S", "slow"),
    ("adverse_event", "none", "none"), ("adverse_event", "flare-up", "increased_pain"),
    ("rom_measure", "Sit & Reach", "sit_and_reach_cm"), ("boolean", "Y", "true"),
    ("boolean", "0", "false"),
])
def test_vocabularies(field: str, text: str, canonical: str) -> None:
    assert parse_category(field, text) == (canonical, None)


_messy_text = st.one_of(
    st.text(max_size=25),
    st.from_regex(r"[-+]?\d{1,4}([.,]\d{1,3})?\s*(/\s*10|mm|cm|%|in|rad|deg|°|h|min|days?)?",
                  fullmatch=True),
    st.sampled_from(["6-7", "7 out of 10", "seven", "n/a", "∞", "1e309", "--", "٧", "½"]),
)


@settings(max_examples=300, deadline=None)
@given(_messy_text)
def test_numeric_parsers_never_raise_and_give_a_value_or_a_reason(text: str) -> None:
    codes = set(reason_codes())
    for field in ("pain_pre", "pressure", "duration_min", "followup_hours"):
        value, reason = parse_field_value(field, text)
        if reason is None:
            assert math.isnan(value) or (math.isfinite(value) and _inside(field, value))
        else:
            assert math.isnan(value) and reason in codes
    value, kind, reason = parse_rom(text)
    assert kind in ("", "degrees", "cm")
    assert (reason is None and (math.isnan(value) or math.isfinite(value))) or (
        reason in codes and math.isnan(value))


def _inside(field: str, value: float) -> bool:
    return {"duration_min": 0 < value <= 120, "followup_hours": 0 < value <= 8760}.get(
        field, 0 <= value <= 10)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(
    r"\d{1,5}([-/.]\d{1,4}){0,2}( \d{1,2}:\d{2})?", fullmatch=True)),
    st.sampled_from(["dmy", "mdy"]))
def test_date_parser_never_raises(text: str, order: str) -> None:
    found, reason = parse_date(text, order, 2025)
    assert (found is None) or isinstance(found, dt.date)
    assert reason is None or (found is None and reason in reason_codes())


def test_an_eight_character_decimal_is_no_yyyymmdd_date() -> None:
    # "200000.0" has 8 characters and starts with 20: it once reached int(".0") and raised
    assert parse_date("200000.0", "dmy", 2025) == (None, "unparseable_date")
    assert parse_date("20240305", "dmy", 2025) == (dt.date(2024, 3, 5), None)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.sampled_from(
    ["audience_group", "arm", "technique", "body_region", "pace", "adverse_event", "rom_measure",
     "boolean"]))
def test_vocabulary_parser_never_raises(text: str, field: str) -> None:
    value, reason = parse_category(field, text)
    if value is not None:
        assert reason is None
    assert reason is None or reason in reason_codes()


_cell = st.one_of(st.text(max_size=8), st.sampled_from(
    ["", "7", "7/10", "2024-03-05", "05/03/2024", "athlete", "senior", "x", "n/a", "45356", "12",
     "knee flexion", "8 in", "yes", "c1", "c2"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({c: _cell for c in (
    "client_id", "session_date", "audience_group", "arm", "pain_pre", "pain_post",
    "rom_measure", "rom_pre", "deep_breathing", "duration_min")}), max_size=12))
def test_random_frames_always_balance(rows: list[dict[str, str]]) -> None:
    raw = pd.DataFrame(rows, columns=["client_id", "session_date", "audience_group", "arm",
                                      "pain_pre", "pain_post", "rom_measure", "rom_pre",
                                      "deep_breathing", "duration_min"], dtype="str")
    result = clean_sessions(raw, key=KEY, today=TODAY)
    r = result.report
    assert r["rows_in"] == len(rows) == r["rows_clean"] + r["rows_quarantined"] + r[
        "rows_duplicate"]
    assert len(result.sessions) == r["rows_clean"]
    assert len(result.quarantine) == r["rows_quarantined"]
    assert (result.quarantine["reasons"].str.len() > 0).all()
    assert np.isin(result.sessions["source_line"], np.arange(1, len(rows) + 1)).all()


def test_reasons_match_what_the_simulator_planted() -> None:
    """Known truth from the simulator: per row, the planted reason codes and duplicates."""
    from mfr_analysis import simulate
    from mfr_analysis.read import plan_headers

    clean, _ = simulate.simulate_sessions(120, 11)
    messy, labels = simulate.make_messy(clean, 11, return_labels=True)
    plan = plan_headers(list(messy.columns))
    raw = pd.DataFrame({t: messy.iloc[:, i] for i, t in enumerate(plan.targets) if t})
    raw["source_line"] = np.arange(2, len(raw) + 2)
    result = clean_sessions(raw, key=KEY, today=dt.date(2026, 1, 1))
    got = dict.fromkeys(raw["source_line"], frozenset())
    for line, reasons in zip(result.quarantine["source_line"], result.quarantine["reasons"],
                             strict=True):
        got[line] = frozenset(reasons.split(";"))
    want = {line: frozenset(r.split(";")) if r else frozenset()
            for line, r in zip(raw["source_line"], labels["planted_reasons"], strict=True)}
    assert got == want
    assert result.duplicates == int(labels["is_duplicate"].sum())


def test_pseudonyms_are_keyed_hmac_of_the_normalised_id() -> None:
    import hashlib
    import hmac

    from mfr_analysis.pseudonymise import hex_ids, hex_ids_unique

    expected = "c_" + hmac.new(KEY, b"ab 12", hashlib.sha256).hexdigest()[:16]
    assert client_pseudonym(" AB  12 ", KEY) == client_pseudonym("ab 12", KEY) == expected
    assert client_pseudonym("ab 12", b"other") != expected
    ids = hex_ids(np.array([0, 255, 0xDEADBEEF01234567], dtype=np.uint64))
    assert ids.to_pylist() == ["s_0000000000000000", "s_00000000000000ff", "s_deadbeef01234567"]
    series = pd.Series(ids.to_pylist(), dtype="str")
    assert hex_ids_unique(series) is True
    assert hex_ids_unique(pd.concat([series, series.iloc[:1]])) is False
    assert hex_ids_unique(pd.Series(["s_1", "x"], dtype="str")) is None
