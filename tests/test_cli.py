"""The command line: every command documented, every error one line without a traceback, and
what a user needs to know on stderr: progress (also in a pipe) and unrecognised columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mfr_analysis.cli import app, unrecognised_columns
from mfr_analysis.read import closest_column
from tests.conftest import TEST_KEY

COMMANDS = ("simulate", "clean", "claims", "report")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console entry point in a subprocess, as a user would (stderr is a
    pipe, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "mfr_analysis.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY},
    )


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mfr-analysis: error:")


def test_missing_input_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("clean", str(tmp_path / "nope.csv"), "--out", str(tmp_path)))


def test_garbage_input_is_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 20)
    assert_one_line_error(run_cli("claims", str(garbage), "--out", str(tmp_path / "c.json")))


def test_simulate_clean_claims_round_trip(tmp_path: Path) -> None:
    logs = tmp_path / "logs.csv"
    simulated = run_cli("simulate", "--clients", "120", "--seed", "3", "--out", str(logs))
    assert simulated.returncode == 0, simulated.stderr
    assert logs.is_file()
    cleaned = run_cli("clean", str(logs), "--out", str(tmp_path / "clean"), "--no-progress")
    assert cleaned.returncode == 0, cleaned.stderr
    assert (tmp_path / "clean" / "sessions.parquet").is_file()
    claims = run_cli("claims", str(tmp_path / "clean" / "sessions.parquet"),
                     "--out", str(tmp_path / "claims.csv"), "--format", "csv", "--no-progress")
    assert claims.returncode == 0, claims.stderr
    header = (tmp_path / "claims.csv").read_text().splitlines()[0]
    assert header.startswith("claim_id,audience_group,outcome,estimate,ci_low,ci_high,p_value,"
                             "p_adjusted,mcid,n_clients,n_sessions,method,verdict,note")


def test_mcid_override_changes_the_threshold(tmp_path: Path) -> None:
    logs = tmp_path / "logs.csv"
    run_cli("simulate", "--clients", "80", "--seed", "5", "--out", str(logs))
    result = run_cli("claims", str(logs), "--out", str(tmp_path / "c.csv"), "--format", "csv",
                     "--mcid", "pain=1.25", "--no-progress")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table.loc[table["claim_id"] == "pain", "mcid"]) == {1.25}
    assert_one_line_error(run_cli("claims", str(logs), "--out", str(tmp_path / "d.csv"),
                                  "--mcid", "pain=lots"))


# ---------------------------------------------------------------------------------------------
# --help at 80 columns


def _option_names(command: str | None) -> list[str]:
    group = typer.main.get_command(app)
    target = group.commands[command] if command else group  # type: ignore[attr-defined]
    return [name for param in target.params for name in (*param.opts, *param.secondary_opts)
            if name.startswith("-")]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_at_80_columns_shows_every_option_name_whole(command: str | None) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert max(len(line) for line in text.splitlines()) <= 80, text
    body = "\n".join(line for line in text.splitlines() if not line.startswith("Usage:"))
    assert "…" not in body and "..." not in body, text  # nothing cut short
    for name in _option_names(command):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (name, text)
    if command is None:
        for listed in COMMANDS:
            assert re.search(rf"^  {listed} +\w", text, re.MULTILINE), text


# ---------------------------------------------------------------------------------------------
# unrecognised columns, progress in a pipe

RAW_HEADER = ["Client", "Visit Date", "Group", "Pain before", "Pain after", "Pain at follow-up",
              "Email", "Bemerkung", "Invoice jane.doe@example.org", "Room"]


def _raw_log(folder: Path) -> Path:
    rows = [[f"C{i % 7}", f"2024-03-{1 + i % 27:02d}", "athlete", "6", "4", "5",
             f"c{i}@example.org", "note", "x", "R1"] for i in range(40)]
    path = folder / "raw.csv"
    pd.DataFrame(rows, columns=RAW_HEADER).to_csv(path, index=False)
    mapping = folder / "mapping.yaml"
    mapping.write_text("drop: [Bemerkung]\n", encoding="utf-8")
    return path


def test_closest_column_hints_at_a_canonical_name() -> None:
    assert closest_column("Pain at follow-up") == "pain_followup"
    assert closest_column("Sesion date") == "session_date"
    assert closest_column("Room") is None and closest_column("Invoice Ref") is None


def test_unrecognised_columns_leave_out_identifiers_and_mapped_drops(tmp_path: Path) -> None:
    report = {"dropped_columns": {"a.csv": ["Pain at follow-up", "Bemerkung", "Room",
                                            "Pain (second column for pain_pre)",
                                            "(unnamed column 7)"],
                                  "b.csv": ["Room"]},
              "identifier_columns_dropped": {"email": ["Email"]}}
    mapping = tmp_path / "m.yaml"
    mapping.write_text("drop: [Bemerkung]\n", encoding="utf-8")
    assert unrecognised_columns(report, mapping) == [
        "a.csv: 'Pain at follow-up' not recognised — did you mean pain_followup? use --mapping",
        "a.csv and 1 more: 'Room' not recognised: dropped; use --mapping to keep it",
        "a.csv: 'Pain' is a second column for pain_pre: dropped; use --mapping to choose one",
        "a.csv: column 7 has no header: dropped",
    ]
    many = {"dropped_columns": {"a.csv": [f"Extra {i}" for i in range(25)]}}
    lines = unrecognised_columns(many)
    assert len(lines) == 11 and lines[-1].startswith("... and 15 more columns not recognised")


def test_clean_in_a_pipe_says_each_step_and_each_unrecognised_column(tmp_path: Path) -> None:
    raw = _raw_log(tmp_path)
    result = run_cli("clean", str(raw), "--out", str(tmp_path / "out"),
                     "--mapping", str(tmp_path / "mapping.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr
    assert [line.split(" (")[0] for line in lines if line.startswith("clean ")] == [
        "clean 1/4: reading raw.csv", "clean 2/4: cleaning", "clean 4/4: writing"]
    assert ("raw.csv: 'Pain at follow-up' not recognised — did you mean pain_followup? use "
            "--mapping") in lines
    assert "raw.csv: 'Room' not recognised: dropped; use --mapping to keep it" in lines
    assert "raw.csv: 'Invoice [email]' not recognised: dropped; use --mapping to keep it" in lines
    for hidden in ("Email", "Bemerkung", "jane.doe"):  # identifier, dropped on purpose, data
        assert hidden not in result.stderr
    quiet = run_cli("clean", str(raw), "--out", str(tmp_path / "quiet"), "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("clean ")]
    assert "'Pain at follow-up' not recognised" in quiet.stderr  # said even when quiet


def test_claims_on_raw_logs_names_unrecognised_columns(tmp_path: Path) -> None:
    raw = _raw_log(tmp_path)
    result = run_cli("claims", str(raw), "--out", str(tmp_path / "c.json"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "'Pain at follow-up' not recognised — did you mean pain_followup?" in result.stderr


def test_report_in_a_pipe_shows_progress_per_stage_and_slice(simulated_logs: Path,
                                                              tmp_path: Path) -> None:
    logs = pd.read_csv(simulated_logs, dtype=str, keep_default_na=False)
    raw = tmp_path / "logs.csv"
    logs.assign(**{"Pain at follow-up": "3"}).to_csv(raw, index=False)
    result = run_cli("report", str(raw), "--out", str(tmp_path / "reports"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    steps = [line.split(" (")[0] for line in result.stderr.splitlines()
             if re.match(r"^(clean|claims|reports) \d", line)]
    assert steps[0] == "clean 1/4: reading logs.csv" and "clean 4/4: writing" in steps
    assert "claims 1/1: all clients" in steps
    reports = [line.split(": ") for line in steps if line.startswith("reports ")]
    assert [count for count, _ in reports] == ["reports 1/2", "reports 2/2"]
    assert {slug for _, slug in reports} == {"claims-all", "data-quality"}  # in any order
    assert "'Pain at follow-up' not recognised — did you mean pain_followup?" in result.stderr
    assert result.stdout.strip().endswith("index.html")
