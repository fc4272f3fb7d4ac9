"""Text safety: identifier masks, formula neutralisation and message excerpts (unit level)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mfr_analysis.clean import clean_sessions
from mfr_analysis.read import INPUT_COLUMNS, read_logs
from mfr_analysis.redact import (
    excerpt,
    excerpt_list,
    excerpt_message,
    looks_like_data,
    mask_distinct,
    mask_identifiers,
    neutralise_formulas,
    neutralise_frame,
    pattern_table,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "logs" / "sessions_export.csv"
KEY = bytes.fromhex("5f0c3a9e7b1d4c2a8e6f0b3d5a7c9e1f2b4d6f8a0c2e4a6b8d0f1e3c5a7b9d2f")

IDENTIFIERS = {  # value -> what must be left of it
    "jane.doe+mfr@example.co.uk": "[email]",
    "call 07700 900123 please": "call [phone] please",
    "+44 7700 900123": "[phone]",
    "07700900123": "[phone]",
    "0044 7700 900123": "[phone]",
    "+1 (555) 123-4567": "[phone]",
    "(555) 123-4567": "[phone]",
    "555.123.4567": "[phone]",
    "030 1234567": "[phone]",
    "06 12 34 56 78": "[phone]",
    "06.12.34.56.78": "[phone]",
    "123-45-6789": "[id]",
    "AB 12 34 56 C": "[id]",
    "850709-9805": "[id]",
    "12345678Z": "[id]",
    "MRN 1234567890": "MRN [id]",
    "943 476 5919": "[phone]",  # an NHS number has the 3-3-4 shape: masked all the same
    "DE89 3704 0044 0532 0130 00": "[iban]",
    "4111 1111 1111 1111": "[card]",
    "4111-1111-1111-1111": "[card]",
    "Tel: 020 7946 0958, j.roe@example.org": "Tel: [phone], [email]",
}

LEGITIMATE = [  # the spellings cleaning reads: never masked
    "2024-03-05", "05/03/2024", "5/3/24", "05.03.2024", "20240305", "45356", "45356.5",
    "2024-03-05 14:30", "2024-03-05T14:30:00+01:00", "2024-03-05T14:30:00Z",
    "3/5/2024 2:30 PM", "05/03/2024 14:30:00", "2024-03-05 - 2024-03-12", "March 5, 2024",
    "Tue 5th March 2024", "7/10", "70 mm", "6-7", "6 - 7", "7 out of 10", "70/100", "70 %",
    "seven", "1h30", "90 s", "45-60 min", "93.4", "0.30000000000000004", "1.2 rad", "-169",
    "2.5 in", "120-130 deg", "48 h", "next day", "c_0123456789abcdef", "c_1234567890123456",
    "s_9876543210987654", "n/a", "-", "refused", "North Clinic", "foam roller", "1e+16",
]


def test_every_pattern_masks_its_own_example() -> None:
    for row in pattern_table():
        if row["action"] == "mask":
            assert mask_identifiers(f"x {row['example']} y") == f"x {row['mask']} y", row["kind"]
        else:  # a shape that is never an identifier
            assert mask_identifiers(str(row["example"])) == row["example"], row["kind"]


@pytest.mark.parametrize(("text", "masked"), sorted(IDENTIFIERS.items()))
def test_identifier_shapes_are_masked(text: str, masked: str) -> None:
    assert mask_identifiers(text) == masked


@pytest.mark.parametrize("text", LEGITIMATE)
def test_legitimate_values_are_never_masked(text: str) -> None:
    assert mask_identifiers(text) == text


def test_mask_distinct_reports_what_changed() -> None:
    values = ["2024-03-05", "jane@example.org", "7/10", "07700 900123"]
    masked, changed = mask_distinct(values)
    assert masked == ["2024-03-05", "[email]", "7/10", "[phone]"]
    assert changed.tolist() == [False, True, False, True]


def _kept_values(frame: pd.DataFrame) -> set[str]:
    """Distinct raw values of the kept columns that cleaning scans (not the client and
    session ids: pseudonymised or derived, never written out)."""
    values: set[str] = set()
    for column in INPUT_COLUMNS:
        if column in frame.columns and column not in ("client_id", "session_id"):
            values.update(str(v) for v in frame[column].dropna().unique())
    return values


def test_no_value_of_the_shipped_sample_is_masked() -> None:
    raw = read_logs([SAMPLE])
    values = sorted(_kept_values(raw.frame))
    masked, changed = mask_distinct(values)
    assert not changed.any(), [v for v, c in zip(values, changed, strict=True) if c]
    result = clean_sessions(raw.frame, key=KEY)
    assert "identifier_in_text" not in result.report["reasons"]


@pytest.mark.parametrize("seed", [1, 2])
def test_no_value_the_simulator_writes_is_masked(tmp_path: Path, seed: int) -> None:
    from mfr_analysis.simulate import write_simulation

    path = tmp_path / "logs.csv"
    write_simulation(150, seed, path)
    raw = read_logs([path])
    values = sorted(_kept_values(raw.frame))
    _, changed = mask_distinct(values)
    assert not changed.any(), [v for v, c in zip(values, changed, strict=True) if c]
    result = clean_sessions(raw.frame, key=KEY)
    assert "identifier_in_text" not in result.report["reasons"]
    # the pseudonyms the tool writes are not masked either
    ids = result.sessions["client_id"].tolist() + result.sessions["session_id"].tolist()
    assert not mask_distinct(ids)[1].any()


PAYLOADS = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3+cmd",
            "\t=1+1", "\r=1+1", " =1+1", "\uff1d1+1"]


def test_formula_led_cells_get_a_quote_and_numbers_do_not() -> None:
    numbers = ["-2", "-0.5", "+3", "7", "-1e5", " -2 "]
    plain = ["abc", "", "n/a", "'=already"]
    values = pa.array([*PAYLOADS, *numbers, *plain, None], pa.large_string())
    out = neutralise_formulas(values).to_pylist()
    assert out[: len(PAYLOADS)] == ["'" + p for p in PAYLOADS]
    assert out[len(PAYLOADS):] == [*numbers, *plain, None]
    again = neutralise_formulas(pa.array(out, pa.large_string())).to_pylist()
    assert again == out  # idempotent


def test_neutralise_frame_leaves_numbers_and_the_input_alone() -> None:
    frame = pd.DataFrame({"note": ["=1+1", "ok", None], "estimate": [-2.0, 1.5, float("nan")],
                          "group": pd.Categorical(["-x", "a", None])})
    out = neutralise_frame(frame)
    assert out["note"].tolist()[:2] == ["'=1+1", "ok"] and pd.isna(out["note"].iloc[2])
    assert out["group"].tolist()[:2] == ["'-x", "a"]
    pd.testing.assert_series_equal(out["estimate"], frame["estimate"])
    assert frame["note"].iloc[0] == "=1+1"


def test_excerpts_are_short_and_masked() -> None:
    assert excerpt("Visit Date") == "'Visit Date'"
    assert excerpt("Jane Doe Smith-Jones") == "'Jane Doe Sm…'"
    assert "1971" not in excerpt("1971-07-14") and "07700" not in excerpt("07700 900123")
    assert excerpt_list([f"h{i}" for i in range(20)]).endswith("(+12 more)")
    assert looks_like_data(["Jane Doe", "1971-07-14", "jane@example.org"])
    assert looks_like_data(["c1", "7"])
    assert not looks_like_data(["Client ID", "Visit Date", "Pain (0-10)"])


def test_excerpt_message_drops_row_dumps_and_long_values() -> None:
    text = "CSV parse error: Expected 5 columns, got 7: Jane Doe,1971-07-14,jane@x.org,07700 900123"
    out = excerpt_message(text)
    for value in ("Jane", "1971", "jane@x.org", "07700", "900123"):
        assert value not in out
    out = excerpt_message("KeyError: 'Jane Doe Smith' not found\nsecond line")
    assert "Doe" not in out and "second" not in out and out.startswith("KeyError: 'Jane")
    assert len(excerpt_message("x" * 5000)) <= 160
