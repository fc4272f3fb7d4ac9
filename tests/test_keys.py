"""Pseudonym keys: strong keys only, private key files, a word on stderr when one is made, a
fingerprint in every clean table, and clean tables combined only when one key made them
(issue 10, section 6)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mfr_analysis.config import CLEANING_REPORT_FILE, SESSIONS_FILE
from mfr_analysis.errors import InputError
from mfr_analysis.pipeline import key_fingerprint_of, load_sessions, run_clean
from mfr_analysis.pseudonymise import (
    PseudonymKeyError,
    key_entropy_bits,
    key_fingerprint,
    load_key,
)
from tests.conftest import TEST_KEY

FIXTURES = Path(__file__).parent / "fixtures"
MESSY = FIXTURES / "messy_sessions.csv"
OTHER_KEY = "3c9e51d7a0b84f26e1d5c8a7b3f09e42d6a1c5b8e7f30d94a2c6b1e8d5f7a039"
WEAK = ["4711", "test-key-not-secret", "a" * 64, "ab" * 40, "0123456789abcdef" * 4,
        "password", "correcthorse", "Tr0ub4dor&3", "12345678901234567890123456789012345"]


# ---------------------------------------------------------------------------------------------
# strength


@pytest.mark.parametrize("weak", WEAK)
def test_weak_keys_are_refused_with_how_to_make_one(weak: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFR_PSEUDONYM_KEY", weak)
    with pytest.raises(PseudonymKeyError) as refused:
        load_key()
    message = str(refused.value)
    assert "\n" not in message and "at least 128" in message
    assert "secrets.token_hex(32)" in message
    assert weak not in message  # never echoed


def test_random_keys_of_128_bits_or_more_are_accepted() -> None:
    """secrets.token_hex(n) / token_urlsafe(n) for n >= 16, made from a seeded generator so
    the test is deterministic (the same encodings as the secrets module)."""
    rng = random.Random(20251125)
    for _ in range(3000):
        raw = rng.randbytes(rng.randint(16, 48))
        for text in (raw.hex(), base64.urlsafe_b64encode(raw).rstrip(b"=").decode()):
            assert key_entropy_bits(text.encode()) >= 128, text
        assert key_entropy_bits(raw) >= 128 or len(set(raw)) < 8  # a binary key file
    for _ in range(50):  # and some from the secrets module itself
        assert key_entropy_bits(secrets.token_hex(32).encode()) >= 128
        assert key_entropy_bits(secrets.token_urlsafe(32).encode()) >= 128


def test_key_file_must_be_private_and_regular(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MFR_PSEUDONYM_KEY")
    key_file = tmp_path / "pseudonym.key"
    monkeypatch.setenv("MFR_PSEUDONYM_KEY_FILE", str(key_file))
    key_file.write_text(TEST_KEY + "\n")
    for mode in (0o644, 0o666, 0o620, 0o604):
        key_file.chmod(mode)
        with pytest.raises(PseudonymKeyError, match=rf"run: chmod 600 {key_file}$"):
            load_key()
    key_file.chmod(0o600)
    assert load_key() == TEST_KEY.encode()
    key_file.write_text("4711\n")  # short, and private
    with pytest.raises(PseudonymKeyError, match="too weak"):
        load_key()
    elsewhere = tmp_path / "vault" / "real.key"  # a link to a private regular file is fine
    elsewhere.parent.mkdir()
    elsewhere.write_text(TEST_KEY)
    elsewhere.chmod(0o600)
    key_file.unlink()
    key_file.symlink_to(elsewhere)
    assert load_key() == TEST_KEY.encode()
    key_file.unlink()
    key_file.mkdir()
    with pytest.raises(PseudonymKeyError, match="not a regular file"):
        load_key()
    key_file.rmdir()
    os.mkfifo(key_file, 0o600)  # would block a plain read forever
    with pytest.raises(PseudonymKeyError, match="not a regular file"):
        load_key()


def _clean_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mfr_analysis.cli", "clean", *args,
                           "--no-progress"], capture_output=True, text=True, timeout=300,
                          env=env)


def test_a_new_key_file_is_announced_on_stderr(tmp_path: Path) -> None:
    key_file = tmp_path / "conf" / "pseudonym.key"
    env = {k: v for k, v in os.environ.items() if k != "MFR_PSEUDONYM_KEY"}
    env["MFR_PSEUDONYM_KEY_FILE"] = str(key_file)
    first = _clean_cli(str(MESSY), "--out", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    said = [line for line in first.stderr.splitlines() if "pseudonym key" in line]
    assert len(said) == 1 and f"created a new pseudonym key at {key_file}" in said[0]
    assert "copy it to every machine" in said[0]
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() not in first.stderr
    second = _clean_cli(str(MESSY), "--out", str(tmp_path / "b"), env=env)
    assert second.returncode == 0 and "pseudonym key" not in second.stderr


def test_a_weak_key_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    refused = _clean_cli(str(MESSY), "--out", str(tmp_path / "out"),
                         env={**os.environ, "MFR_PSEUDONYM_KEY": "4711"})
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("mfr-analysis: error: MFR_PSEUDONYM_KEY: the pseudonym key is "
                               "too weak")
    assert not (tmp_path / "out").exists()  # refused before any work


# ---------------------------------------------------------------------------------------------
# fingerprint


def test_the_key_fingerprint_is_recorded_in_the_report_and_the_parquet(tmp_path: Path) -> None:
    report = run_clean([MESSY], tmp_path, progress=False)
    expected = key_fingerprint(TEST_KEY.encode())
    assert len(expected) == 16 and int(expected, 16) >= 0
    assert expected not in (TEST_KEY[:16], hashlib.sha256(TEST_KEY.encode()).hexdigest()[:16])
    assert report["key_fingerprint"] == expected
    assert json.loads((tmp_path / CLEANING_REPORT_FILE).read_text())["key_fingerprint"] == expected
    lone = tmp_path / "elsewhere.parquet"  # a table on its own still says which key made it
    shutil.copy(tmp_path / SESSIONS_FILE, lone)
    assert key_fingerprint_of(lone) == expected
    assert key_fingerprint_of(tmp_path) == expected
    metadata = pq.read_schema(lone).metadata
    assert TEST_KEY.encode() not in b"".join([*metadata.keys(), *metadata.values()])
    assert key_fingerprint(OTHER_KEY.encode()) != expected


def test_the_dask_engine_records_the_fingerprint_in_every_part(tmp_path: Path,
                                                               cluster: str) -> None:
    from mfr_analysis.dask_clean import run_clean_dask

    second = tmp_path / "second.csv"
    shutil.copy(MESSY, second)
    report = run_clean_dask([MESSY, second], tmp_path / "out", scheduler=cluster,
                            progress=False)
    expected = key_fingerprint(TEST_KEY.encode())
    assert report["key_fingerprint"] == expected
    parts = sorted((tmp_path / "out" / SESSIONS_FILE).iterdir())
    assert len(parts) == 2
    assert {pq.read_schema(p).metadata[b"mfr_analysis.key_fingerprint"] for p in parts} == {
        expected.encode()}
    assert key_fingerprint_of(tmp_path / "out") == expected


def test_a_key_passed_in_is_the_one_used_and_nothing_else_is_read(
        tmp_path: Path, cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is resolved once at the edge: given to run_clean, run_clean_dask or
    load_sessions, it is used as is, and neither the environment nor a key file is read
    (here a weak key in the environment would be refused, and no key file may be made)."""
    from mfr_analysis.dask_clean import run_clean_dask

    monkeypatch.setenv("MFR_PSEUDONYM_KEY", "4711")
    key_file = tmp_path / "conf" / "pseudonym.key"
    monkeypatch.setenv("MFR_PSEUDONYM_KEY_FILE", str(key_file))
    key = OTHER_KEY.encode()
    pandas_report = run_clean([MESSY], tmp_path / "pandas", progress=False, key=key)
    dask_report = run_clean_dask([MESSY], tmp_path / "dask", scheduler=cluster,
                                 progress=False, key=key)
    for report in (pandas_report, dask_report):
        assert report["key_fingerprint"] == key_fingerprint(key)
    clean = pd.read_parquet(tmp_path / "pandas" / SESSIONS_FILE)
    in_memory = load_sessions([MESSY], key=key)
    assert set(in_memory["client_id"]) == set(clean["client_id"])
    with pytest.raises(PseudonymKeyError, match="too weak"):  # no key given: the edge reads it
        load_sessions([MESSY])
    assert not key_file.parent.exists()


# ---------------------------------------------------------------------------------------------
# combining clean tables


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clean tables of two sites made with the test key, and one made with another key."""
    from mfr_analysis.simulate import write_simulation

    root = tmp_path_factory.mktemp("sites")
    made = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, seed, key in (("a", 1, TEST_KEY), ("b", 2, TEST_KEY), ("c", 3, OTHER_KEY)):
            log = root / f"site-{name}.csv"
            write_simulation(40, seed, log)
            patch.setenv("MFR_PSEUDONYM_KEY", key)
            run_clean([log], root / name, progress=False)
            made[name] = root / name
    return made


def test_clean_tables_of_one_key_are_combined(sites: dict[str, Path]) -> None:
    a, b = (pd.read_parquet(sites[s] / SESSIONS_FILE) for s in "ab")
    both = load_sessions([sites["a"], sites["b"] / SESSIONS_FILE])
    assert len(both) == len(a) + len(b)
    assert set(both["client_id"]) == set(a["client_id"]) | set(b["client_id"])
    assert both["session_id"].is_unique
    assert load_sessions([sites["a"], sites["a"] / SESSIONS_FILE]).shape[0] == len(a)  # once


def test_clean_tables_of_different_keys_are_refused(sites: dict[str, Path]) -> None:
    with pytest.raises(InputError) as refused:
        load_sessions([sites["a"], sites["c"]])
    message = str(refused.value)
    assert str(sites["a"] / SESSIONS_FILE) in message and str(sites["c"] / SESSIONS_FILE) in message
    assert "different keys" in message and "\n" not in message


def test_the_same_sessions_twice_are_refused(sites: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(sites["a"], tmp_path / "copy")
    with pytest.raises(InputError, match="share .* session ids"):
        load_sessions([sites["a"], tmp_path / "copy"])


def test_claims_and_report_take_several_clean_tables(sites: dict[str, Path],
                                                     tmp_path: Path) -> None:
    from mfr_analysis.report.run import ReportOptions, _prepare_sessions

    env = {**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY}
    done = subprocess.run([sys.executable, "-m", "mfr_analysis.cli", "claims", str(sites["a"]),
                           str(sites["b"]), "--out", str(tmp_path / "claims.json"),
                           "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "claims.json").read_text())
    n_clients = pd.concat([pd.read_parquet(sites[s] / SESSIONS_FILE) for s in "ab"])[
        "client_id"].nunique()
    pooled = [r for r in rows if r["claim_id"] == "pain" and r["audience_group"] == "all"]
    assert pooled[0]["n_clients"] == n_clients
    refused = subprocess.run([sys.executable, "-m", "mfr_analysis.cli", "claims",
                              str(sites["a"]), str(sites["c"]), "--out",
                              str(tmp_path / "c.json")], capture_output=True, text=True,
                             env=env, timeout=300)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode != 0 and len(lines) == 1 and "different keys" in lines[0]

    data = tmp_path / "report" / "data"
    sessions, report = _prepare_sessions([sites["a"], sites["b"]], data, ReportOptions(), False)
    assert sessions == data / SESSIONS_FILE and report == data / CLEANING_REPORT_FILE
    merged = json.loads(report.read_text())
    assert merged["rows_clean"] == len(pd.read_parquet(sessions))
    assert merged["key_fingerprint"] == key_fingerprint(TEST_KEY.encode())
    assert key_fingerprint_of(sessions) == merged["key_fingerprint"]
    assert len(load_sessions(data)) == merged["rows_clean"]


def test_reports_state_the_key_fingerprint_not_the_key(report_dir: Path) -> None:
    report = json.loads((report_dir / "data" / "cleaning_report.json").read_text("utf-8"))
    fingerprint = report["key_fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    page = (report_dir / "claims-all.html").read_text(encoding="utf-8")
    assert f"<code>{fingerprint}</code>" in page
    key = os.environ["MFR_PSEUDONYM_KEY"]
    for path in report_dir.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".json", ".ipynb", ".csv"}:
            assert key not in path.read_text(encoding="utf-8", errors="replace"), path.name
