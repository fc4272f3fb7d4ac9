"""The command line: every command documented, every error one line without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

COMMANDS = ("simulate", "clean", "claims", "report")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "mfr_analysis.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**__import__("os").environ, "MFR_PSEUDONYM_KEY": TEST_KEY},
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
    table = __import__("pandas").read_csv(tmp_path / "c.csv")
    assert set(table.loc[table["claim_id"] == "pain", "mcid"]) == {1.25}
    assert_one_line_error(run_cli("claims", str(logs), "--out", str(tmp_path / "d.csv"),
                                  "--mcid", "pain=lots"))
