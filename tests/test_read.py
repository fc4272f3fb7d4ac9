"""Reading: formats, encodings, delimiters, header mapping, and a battery of broken files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfr_analysis import read as read_module
from mfr_analysis.clean import clean_sessions
from mfr_analysis.errors import UserFacingError
from mfr_analysis.read import InputError, header_key, load_mapping, plan_headers, read_logs

FIXTURES = Path(__file__).parent / "fixtures"
KEY = b"test-key-not-secret"
HEADER = "Client ID,Visit Date,Group,Pain Before,Pain After"
ROWS = ["c1,2024-03-05,athlete,7,4", "c2,06/03/2024,senior,5/10,3"]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _csv(tmp_path: Path, name: str = "log.csv", rows: list[str] | None = None,
         header: str = HEADER, sep: str = ",", encoding: str = "utf-8") -> Path:
    lines = [header, *(ROWS if rows is None else rows)]
    return _write(tmp_path / name, "\n".join(line.replace(",", sep) for line in lines) + "\n",
                  encoding)


def _clean_or_input_error(path: Path) -> str:
    """Either a balanced clean result or a one-line InputError naming the file."""
    try:
        raw = read_logs([path])
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message and path.name in message
        return "error"
    result = clean_sessions(raw.frame, key=KEY)
    r = result.report
    assert r["rows_in"] == r["rows_clean"] + r["rows_quarantined"] + r["rows_duplicate"]
    return "clean"


def test_csv_all_strings_canonical_names_and_lines(tmp_path: Path) -> None:
    path = _csv(tmp_path, rows=["007,2024-03-05,athlete,07,n/a"])
    raw = read_logs([path])
    frame = raw.frame
    assert list(frame.columns) == ["client_id", "session_date", "audience_group", "pain_pre",
                                   "pain_post", "source_file", "source_line"]
    assert frame.loc[0, "client_id"] == "007" and frame.loc[0, "pain_pre"] == "07"
    assert frame.loc[0, "pain_post"] == "n/a"
    assert frame.loc[0, "source_file"] == "log.csv" and frame.loc[0, "source_line"] == 2
    assert raw.rows_per_source == {"log.csv": 1}


@pytest.mark.parametrize(("sep", "name"), [(";", "semi.csv"), ("\t", "tabs.tsv"), ("|", "p.txt")])
def test_delimiters_are_sniffed(tmp_path: Path, sep: str, name: str) -> None:
    raw = read_logs([_csv(tmp_path, name, sep=sep)])
    assert raw.frame["pain_pre"].tolist() == ["7", "5/10"]
    assert raw.sources[0]["delimiter"] == sep


def test_bom_and_latin1(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + ROWS[0] + "\n").encode())
    assert read_logs([bom]).frame["client_id"].tolist() == ["c1"]
    latin = _csv(tmp_path, "latin.csv", header=HEADER + ",Clinic,ROM test,ROM before",
                 rows=["c1,2024-03-05,athlete,7,4,Zürich Süd,knee flexion,45°"],
                 encoding="latin-1")
    raw = read_logs([latin])
    assert raw.frame["site"].tolist() == ["Zürich Süd"]
    assert raw.frame["rom_pre"].tolist() == ["45°"]
    assert raw.sources[0]["encoding"] in ("cp1252", "latin-1")
    result = clean_sessions(raw.frame, key=KEY)
    assert result.sessions["rom_pre"].tolist() == [45.0]


def test_header_matching_ignores_case_spaces_hyphens_underscores() -> None:
    assert header_key(" Pain-Before ") == header_key("pain_before") == "painbefore"
    plan = plan_headers(["CLIENT_ID", "visit-date", "Duration (min)", "Pressure [0-10]",
                         "E-Mail", "Date of Birth", "Room", "group"])
    # a birth date is an identifier, read only so that cleaning can derive the age from it
    assert plan.targets == ("client_id", "session_date", "duration_min", "pressure", None,
                            "birth_date", None, "audience_group")
    assert plan.identifiers == {"email": ["E-Mail"], "birth_date": ["Date of Birth"]}
    assert plan.dropped == ["Room"]


def test_identifiers_and_unknown_columns_dropped_and_listed(tmp_path: Path) -> None:
    path = _csv(tmp_path, header=HEADER + ",Client Name,Email,Phone,DOB,Notes,Room",
                rows=["c1,2024-03-05,athlete,7,4,Ann Smith,a@b.org,0770,1971-07-14,hi,3"])
    raw = read_logs([path])
    assert raw.identifier_columns == {"birth_date": ["DOB"], "email": ["Email"],
                                      "free_text": ["Notes"], "name": ["Client Name"],
                                      "phone": ["Phone"]}
    assert raw.dropped_columns == {"log.csv": ["Room"]}
    # the birth date travels on to cleaning (which derives the age and drops it), alone
    assert raw.frame["birth_date"].tolist() == ["1971-07-14"]
    values = raw.frame.drop(columns="birth_date").astype(str).to_numpy().ravel().tolist()
    assert not {"Ann Smith", "a@b.org", "0770", "1971-07-14", "hi", "3"} & set(values)
    sessions = clean_sessions(raw.frame, key=b"a key of at least 16 bytes").sessions
    assert sessions["age"].tolist() == [52.0] and "birth_date" not in sessions.columns
    assert "1971-07-14" not in sessions.astype(str).to_numpy().ravel().tolist()


def test_missing_required_column_names_it_and_the_headers(tmp_path: Path) -> None:
    path = _csv(tmp_path, header="Name,Visit Date,Group", rows=["Ann,2024-03-05,athlete"])
    with pytest.raises(InputError) as caught:
        read_logs([path])
    message = str(caught.value)
    assert message.startswith("log.csv:") and "client id" in message
    assert "'Name'" in message and "'Visit Date'" in message and "\n" not in message
    assert isinstance(caught.value, UserFacingError)


def test_mapping_yaml_and_toml(tmp_path: Path) -> None:
    source = FIXTURES / "mapped_sessions.csv"
    with pytest.raises(InputError, match="no client id"):
        read_logs([source])
    for mapping in ("mapping.yaml", "mapping.toml"):
        raw = read_logs([source], mapping=FIXTURES / mapping)
        assert raw.frame["client_id"].tolist() == ["K-1", "K-2"]
        assert raw.frame["pain_post"].tolist() == ["4", "6"]
        assert raw.dropped_columns == {"mapped_sessions.csv": ["Bemerkung", "Raum"]}
        result = clean_sessions(raw.frame, key=KEY)
        assert result.sessions["session_date"].astype(str).tolist() == ["2024-03-05",
                                                                        "2024-03-06"]
        assert result.sessions["audience_group"].tolist() == ["athlete", "desk_worker"]


def test_bad_mapping_files(tmp_path: Path) -> None:
    bad_target = _write(tmp_path / "m.yaml", "Kunde: customer_number\n")
    with pytest.raises(InputError, match="unknown column 'customer_number'"):
        load_mapping(bad_target)
    not_a_table = _write(tmp_path / "m2.yaml", "- a\n- b\n")
    with pytest.raises(InputError, match="m2.yaml"):
        load_mapping(not_a_table)
    broken = _write(tmp_path / "m3.toml", "x = [\n")
    with pytest.raises(InputError, match="m3.toml"):
        load_mapping(broken)


def test_xlsx_reads_session_sheets_and_reports_skipped(tmp_path: Path) -> None:
    import datetime as dt

    book = openpyxl.Workbook()
    first = book.active
    first.title = "Visits"
    first.append(["Clinic export, March"])  # a title row above the header
    first.append(["Client", "Date", "Group", "Pain before"])
    first.append(["c1", dt.datetime(2024, 3, 5), "athlete", 7])
    first.append(["c2", "06/03/2024", "senior", 6.5])
    notes = book.create_sheet("Notes")
    notes.append(["Anything", "else"])
    second = book.create_sheet("More visits")
    second.append(["Client", "Date", "Group"])
    second.append(["c3", 45356, "rehab"])
    path = tmp_path / "book.xlsx"
    book.save(path)
    raw = read_logs([path])
    frame = raw.frame
    assert frame["source_file"].tolist() == ["book.xlsx!Visits"] * 2 + ["book.xlsx!More visits"]
    assert frame["source_line"].tolist() == [3, 4, 2]
    assert frame["session_date"].tolist() == ["2024-03-05", "06/03/2024", "45356"]
    assert frame["pain_pre"].tolist()[:2] == ["7", "6.5"]
    assert raw.sources[0]["sheets_read"] == ["Visits", "More visits"]
    assert raw.sources[0]["sheets_skipped"] == ["Notes"]
    result = clean_sessions(frame, key=KEY)
    assert result.sessions["session_date"].astype(str).tolist() == [
        "2024-03-05", "2024-03-06", "2024-03-05"]


def test_jsonl_and_parquet(tmp_path: Path) -> None:
    jsonl = tmp_path / "log.jsonl"
    records = [{"client": "c1", "date": "2024-03-05", "group": "athlete", "pain_pre": 7,
                "name": "Ann"}, None, {"client": "c2", "date": "2024-03-06", "group": "senior"}]
    jsonl.write_text("\n".join("{broken" if r is None else json.dumps(r) for r in records)
                     + "\n\n", encoding="utf-8")
    raw = read_logs([jsonl])
    assert raw.frame["source_line"].tolist() == [1, 2, 3]
    assert raw.frame["pain_pre"].tolist()[0] == "7"
    assert raw.identifier_columns == {"name": ["name"]}
    result = clean_sessions(raw.frame, key=KEY)
    assert result.quarantine["source_line"].tolist() == [2]
    assert result.quarantine["reasons"].tolist() == [
        "missing_client_id;missing_date;missing_audience_group;malformed_row"]

    table = pa.table({"Client": ["c1", None], "Session Date": pa.array(
        [pd.Timestamp("2024-03-05"), pd.Timestamp("2024-03-06 10:00")]),
        "Group": ["athlete", "senior"], "Pain Pre": [7.0, 5.5]})
    path = tmp_path / "raw.parquet"
    pq.write_table(table, path)
    frame = read_logs([path]).frame
    assert frame["source_line"].tolist() == [1, 2]
    assert frame["pain_pre"].tolist() == ["7", "5.5"]
    assert frame["session_date"].tolist() == ["2024-03-05 00:00:00", "2024-03-06 10:00:00"]
    assert pd.isna(frame["client_id"].iloc[1])


def test_many_files_keep_their_source_and_line(tmp_path: Path) -> None:
    a = _csv(tmp_path, "a.csv")
    sub = tmp_path / "sub"
    sub.mkdir()
    _csv(sub, "b.csv", sep=";", rows=[ROWS[1], "", ROWS[0]])  # a blank line in the middle
    raw = read_logs([a, sub])
    pairs = list(zip(raw.frame["source_file"], raw.frame["source_line"], strict=True))
    assert pairs == [("a.csv", 2), ("a.csv", 3), ("b.csv", 2), ("b.csv", 4)]
    assert raw.rows_per_source == {"a.csv": 2, "b.csv": 2}
    same_name = _csv(sub, "a.csv")
    names = set(read_logs([a, same_name]).frame["source_file"])
    assert len(names) == 2  # same file name in two folders stays distinguishable


def test_line_breaks_inside_cells_keep_physical_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "nl.csv", HEADER + ",Notes\n" + ROWS[0] + ',"two\nlines"\n'
                  + ROWS[1] + ",x\n")
    raw = read_logs([path])
    assert raw.frame["source_line"].tolist() == [2, 4]
    assert raw.identifier_columns == {"free_text": ["Notes"]}


def _read_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch, range_bytes: int):
    """The file read range by range (ranges of ``range_bytes``) and read whole."""
    monkeypatch.setattr(read_module, "RANGE_BYTES", range_bytes)
    ranged = read_logs([path])
    monkeypatch.setattr(read_module, "RANGE_BYTES", 1 << 40)
    return ranged, read_logs([path])


def _same_raw(a, b) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame)
    for column in a.frame.select_dtypes("category"):  # the same categories in the same order
        assert a.frame[column].cat.categories.tolist() == b.frame[column].cat.categories.tolist()
    assert (a.sources, a.rows_per_source) == (b.sources, b.rows_per_source)


def test_large_file_read_in_ranges_equals_the_whole_read(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    rows = [f"c{rng.randint(1, 40)},2024-03-{rng.randint(1, 28):02d},"
            f"{rng.choice(['athlete', 'senior', 'Desk worker', ''])},{rng.randint(0, 10)},"
            f"{rng.choice(['3', '4/10', 'n/a', ''])}" for _ in range(400)]
    rows[150:153] = ["", ",,,,", ""]  # blank lines, skipped and counted, inside a range
    path = _write(tmp_path / "big.csv", HEADER + "\n" + "\n".join(rows))  # no final line break
    first_lines = []
    read_range = read_module.read_text_range
    monkeypatch.setattr(read_module, "read_text_range",
                        lambda *a: first_lines.append(a[5]) or read_range(*a))
    ranged, whole = _read_both_ways(path, monkeypatch, range_bytes=1000)
    assert len(first_lines) > 10 and first_lines[0] == 2  # really read in ranges, from line 2
    _same_raw(ranged, whole)
    assert whole.sources[0]["blank_rows_skipped"] == 3
    assert ranged.frame["source_line"].tolist() == [
        i + 2 for i in range(400) if not 150 <= i < 153]


@pytest.mark.parametrize("late", ["quoted_line_break", "cp1252_byte", "ragged_row"])
def test_a_range_that_does_not_parse_alone_makes_the_file_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late: str) -> None:
    rows = [f"c{i},2024-03-05,athlete,{i % 10},3" for i in range(300)]
    rows[250] = {"quoted_line_break": 'c250,2024-03-05,"ath\nlete",5,3',
                 "cp1252_byte": "c250,2024-03-05,athl\u00e8te,5,3",
                 "ragged_row": "c250,2024-03-05,athlete,5,3,extra,cells"}[late]
    text = HEADER + "\n" + "\n".join(rows) + "\n"
    path = _bytes(tmp_path / "late.csv", text.encode("cp1252" if late == "cp1252_byte"
                                                      else "utf-8"))
    ranged, whole = _read_both_ways(path, monkeypatch, range_bytes=500)
    _same_raw(ranged, whole)
    if late == "quoted_line_break":
        assert ranged.frame["source_line"].iloc[-1] == 302  # one row on two physical lines
    if late == "cp1252_byte":
        assert ranged.sources[0]["encoding"] == "cp1252"
        assert "athl\u00e8te" in set(ranged.frame["audience_group"])


# ----------------------------------------------------------------------- broken files battery

def _garbage(tmp_path: Path) -> Path:
    return _bytes(tmp_path / "garbage.csv", bytes(range(256)) * 8)


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BROKEN = {
    "empty": (lambda p: _bytes(p / "empty.csv", b""), "error"),
    "blank_lines": (lambda p: _bytes(p / "blank.csv", b"\n\n  \n"), "error"),
    "header_only": (lambda p: _csv(p, "header.csv", rows=[]), "clean"),
    "binary_garbage": (_garbage, "error"),
    "random_text": (lambda p: _bytes(p / "rand.csv", random.Random(3).randbytes(3000).replace(
        b"\x00", b"x")), "error"),
    "wrong_delimiter": (lambda p: _csv(p, "colon.csv", sep=":"), "error"),
    "truncated_last_line": (lambda p: _write(p / "trunc.csv", HEADER + "\n" + ROWS[0] + "\n"
                                             + "c2,2024-03"), "clean"),
    "latin1": (lambda p: _csv(p, "latin.csv", rows=["Jürgen,2024-03-05,athlete,7,4"],
                              encoding="latin-1"), "clean"),
    "all_blank_column": (lambda p: _csv(p, "blankcol.csv", rows=["c1,2024-03-05,athlete,,",
                                                                 "c2,2024-03-06,senior,,"]),
                         "clean"),
    "one_row": (lambda p: _csv(p, "one.csv", rows=ROWS[:1]), "clean"),
    "fake_xlsx": (lambda p: _bytes(p / "fake.xlsx", b"PK\x03\x04not really a zip"), "error"),
    "fake_parquet": (lambda p: _bytes(p / "fake.parquet", b"PAR1 nonsense"), "error"),
    "legacy_xls": (lambda p: _bytes(p / "old.xls", b"\xd0\xcf\x11\xe0" + b"\x00" * 100), "error"),
    "json_not_lines": (lambda p: _bytes(p / "x.jsonl", b"not json at all\n"), "error"),
    "unclosed_quote": (lambda p: _write(p / "quote.csv", HEADER + '\nc1,"2024-03-05,athlete,7,4\n'),
                       "clean"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_give_a_result_or_one_line_error(tmp_path: Path, case: str) -> None:
    make, expected = BROKEN[case]
    assert _clean_or_input_error(make(tmp_path)) == expected


def test_truncated_last_line_is_quarantined_as_malformed(tmp_path: Path) -> None:
    path = _write(tmp_path / "trunc.csv", HEADER + "\n" + ROWS[0] + "\n" + "c2,2024-03")
    result = clean_sessions(read_logs([path]).frame, key=KEY)
    assert result.sessions["source_line"].tolist() == [2]
    assert result.quarantine["source_line"].tolist() == [3]
    assert "malformed_row" in result.quarantine["reasons"].iloc[0]


def test_missing_file_is_an_input_error_naming_the_whole_path(tmp_path: Path) -> None:
    import re

    missing = tmp_path / "sub" / "nope.csv"
    with pytest.raises(InputError, match=re.escape(f"{missing}: no such file")):
        read_logs([missing])
