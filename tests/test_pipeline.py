"""run_clean / load_sessions: outputs on disk, privacy, determinism, many inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.io import MANIFEST_FILE
from mfr_analysis.pipeline import load_sessions, run_clean
from mfr_analysis.read import InputError
from mfr_analysis.schema import DERIVED_COLUMNS, CleanSessions
from tests.conftest import TEST_KEY

FIXTURES = Path(__file__).parent / "fixtures"
MESSY = FIXTURES / "messy_sessions.csv"
PLANTED = ("Ann Smith", "ann.smith@example.com", "7700 900001", "1971-07-14", "husband Ted",
           "P-001", "P-117", "S001", "S117", "R1")
REPO = Path(__file__).resolve().parents[1]
OTHER_KEY = "9d41c07be2a86f35d1e0b7c4a9f25e6b83d0c71a4e9f26b5c8d3a0e7f1b4c692"


def _digest(out: Path) -> dict[str, str]:
    """Checksums of the outputs; manifest.json records the run (its id and time), not data."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())
            if p.name != MANIFEST_FILE}


def _all_output_text(out: Path) -> str:
    sessions = pd.read_parquet(out / SESSIONS_FILE)
    return "\n".join([sessions.astype(str).to_csv(), (out / QUARANTINE_FILE).read_text(),
                      (out / CLEANING_REPORT_FILE).read_text()])


def test_run_clean_writes_three_files_and_balances(tmp_path: Path) -> None:
    report = run_clean([MESSY], tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE, MANIFEST_FILE])  # nothing else
    on_disk = json.loads((out / CLEANING_REPORT_FILE).read_text())
    assert on_disk == report
    assert report["rows_in"] == 29
    assert report["rows_in"] == (report["rows_clean"] + report["rows_quarantined"]
                                 + report["rows_duplicate"])
    for key in ("reasons", "dropped_columns", "identifier_columns_dropped", "per_source",
                "date_order", "package_version"):
        assert key in report
    assert report["dropped_columns"] == {"messy_sessions.csv": ["Room"]}
    assert report["identifier_columns_dropped"] == {
        "birth_date": ["DOB"], "email": ["Email"], "free_text": ["Therapist notes"],
        "name": ["Client Name"], "phone": ["Phone"]}
    sessions = pd.read_parquet(out / SESSIONS_FILE)
    CleanSessions.validate(sessions)
    assert len(sessions) == report["rows_clean"] == 6
    quarantine = pd.read_csv(out / QUARANTINE_FILE, dtype=str, keep_default_na=False)
    assert len(quarantine) == report["rows_quarantined"] == 22
    assert quarantine.loc[quarantine["source_line"] == "24", "pain_pre"].tolist() == ["lots"]


def test_no_planted_identifier_reaches_any_output(tmp_path: Path) -> None:
    run_clean([MESSY], tmp_path / "out", progress=False)
    text = _all_output_text(tmp_path / "out")
    for planted in PLANTED:
        assert planted not in text, planted
    assert "c_" in text  # pseudonyms are there instead
    assert TEST_KEY not in text


def test_rerun_is_byte_identical_and_inputs_untouched(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    shutil.copy(MESSY, source)
    before = source.read_bytes()
    run_clean([source], tmp_path / "a", progress=False)
    run_clean([source], tmp_path / "b", progress=False)
    first = _digest(tmp_path / "a")
    assert first == _digest(tmp_path / "b")
    run_clean([source], tmp_path / "a", progress=False)  # overwrite in place
    assert _digest(tmp_path / "a") == first
    assert source.read_bytes() == before


def test_a_different_key_gives_different_pseudonyms(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_clean([MESSY], tmp_path / "a", progress=False)
    monkeypatch.setenv("MFR_PSEUDONYM_KEY", OTHER_KEY)
    run_clean([MESSY], tmp_path / "b", progress=False)
    a = pd.read_parquet(tmp_path / "a" / SESSIONS_FILE)
    b = pd.read_parquet(tmp_path / "b" / SESSIONS_FILE)
    assert not set(a["client_id"]) & set(b["client_id"])
    assert a["pain_pre"].tolist() == b["pain_pre"].tolist()


def test_key_file_created_once_with_mode_600(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mfr_analysis.pseudonymise import load_key

    key_file = tmp_path / "conf" / "pseudonym.key"
    monkeypatch.delenv("MFR_PSEUDONYM_KEY")
    monkeypatch.setenv("MFR_PSEUDONYM_KEY_FILE", str(key_file))
    key = load_key()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_key() == key and len(key) >= 32
    run_clean([MESSY], tmp_path / "out", progress=False)
    assert key.decode() not in _all_output_text(tmp_path / "out")


def test_many_files_and_per_source_counts(tmp_path: Path) -> None:
    second = tmp_path / "second.csv"
    second.write_text("Client,Date,Group,Pain before\nP-001,2024-03-08,athlete,6\n"
                      "Q-9,2024-03-09,x-ray,5\n", encoding="utf-8")
    report = run_clean([MESSY, second], tmp_path / "out", progress=False)
    assert report["per_source"]["second.csv"] == {
        "rows_in": 2, "rows_clean": 1, "rows_quarantined": 1, "rows_duplicate": 0}
    assert report["rows_in"] == 31
    sessions = pd.read_parquet(tmp_path / "out" / SESSIONS_FILE)
    last = sessions.iloc[-1]
    assert (last["source_file"], last["source_line"]) == ("second.csv", 2)
    first_client = sessions.loc[sessions["source_line"] == 2, "client_id"].tolist()
    assert first_client[0] == last["client_id"]  # same raw id in two files, same pseudonym


def test_load_sessions_from_raw_or_from_the_clean_parquet(tmp_path: Path) -> None:
    run_clean([MESSY], tmp_path / "out", progress=False)
    from_raw = load_sessions([MESSY])
    from_dir = load_sessions(tmp_path / "out")
    from_file = load_sessions([tmp_path / "out" / SESSIONS_FILE])
    assert list(from_raw.columns) == list(DERIVED_COLUMNS)
    pd.testing.assert_frame_equal(from_dir, from_file)
    pd.testing.assert_frame_equal(from_raw.reset_index(drop=True),
                                  from_dir.reset_index(drop=True), check_dtype=False,
                                  check_categorical=False)
    assert from_raw.loc[from_raw["source_line"] == 3, "session_index"].tolist() == [2]


def test_unusable_input_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"^bad.csv: no client id"):
        run_clean([bad], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / SESSIONS_FILE).exists()


def test_benchmark_script_runs_small(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_clean.py"),
                           "--rows", "3000"], capture_output=True, text=True, timeout=120,
                          check=True)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("ratio clean/read: ")
    assert float(last.split(":")[1]) > 0


def test_same_file_twice_is_read_once_and_outputs_are_not_inputs(tmp_path: Path) -> None:
    report = run_clean([MESSY, MESSY], tmp_path / "out", progress=False)
    assert report["rows_in"] == 29
    with pytest.raises(InputError, match="already a clean sessions table"):
        run_clean([tmp_path / "out"], tmp_path / "again", progress=False)
    shutil.copy(MESSY, tmp_path / "out" / "more.csv")
    with pytest.raises(InputError, match="already a clean sessions table"):
        run_clean([tmp_path / "out" / SESSIONS_FILE], tmp_path / "again", progress=False)


def test_benchmark_memory_ceiling_stops_a_process_tree(tmp_path: Path) -> None:
    """A benchmark child whose tree outgrows the ceiling is killed, children first, and
    reported as stopped (the 50M-row scale run once took the machine to 21 GiB)."""
    import time

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from run_all import TreePeak
    finally:
        sys.path.pop(0)
    import psutil

    grow = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(0.5); b = bytearray(300 * 2**20); time.sleep(60)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", grow], stdout=subprocess.PIPE, text=True)
    grandchild = psutil.Process(int(process.stdout.readline()))
    start = time.monotonic()
    with TreePeak(process.pid, interval=0.05, limit=200 * 2**20) as peak:
        assert process.wait(timeout=30) != 0  # killed, long before its 60 s
    process.stdout.close()
    assert peak.stopped and peak.peak > 200 * 2**20
    assert time.monotonic() - start < 30
    grandchild.wait(timeout=10)  # the allocating grandchild went too
    assert not grandchild.is_running()


def test_benchmark_never_keeps_a_run_cut_at_the_ceiling_as_the_best() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from run_all import Run, best_of
    finally:
        sys.path.pop(0)
    runs = iter([Run(9.0, 17.0, {"stopped": True}), Run(30.0, 7.5), Run(40.0, 7.0)])
    (best,) = best_of(3, lambda: next(runs))
    assert best.seconds == 30.0 and not best.info.get("stopped")
    assert best.peak_gib == 17.0  # the side's largest peak, the cut run's included
