"""Switching engines on one output folder, and the clean command's --blocksize / --workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mfr_analysis import io
from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.dask_clean import run_clean_dask
from mfr_analysis.errors import InputError
from mfr_analysis.pipeline import run_clean
from tests.conftest import TEST_KEY

OUTPUTS = {SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE, io.MANIFEST_FILE}
COUNTS = ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "reasons",
          "per_source", "session_ids")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated log of 80 clients (about 40 KB of CSV)."""
    from mfr_analysis.simulate import write_simulation

    path = tmp_path_factory.mktemp("options") / "logs.csv"
    write_simulation(80, 11, path)
    return path


@pytest.fixture(scope="module")
def fresh_pandas(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fresh-pandas")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse key is not set yet
        patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
        run_clean([logs], out, progress=False)
    return out


@pytest.fixture(scope="module")
def fresh_dask(logs: Path, cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fresh-dask")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
        run_clean_dask([logs], out, scheduler=cluster, progress=False, blocksize=10_000)
    return out


def _sessions(out: Path, *, sort: bool = False) -> pd.DataFrame:
    table = pd.read_parquet(out / SESSIONS_FILE)
    return table.sort_values("session_id").reset_index(drop=True) if sort else table


def _assert_same_outputs(left: Path, right: Path, *, sort: bool = False) -> None:
    pd.testing.assert_frame_equal(_sessions(left, sort=sort), _sessions(right, sort=sort))
    assert (left / QUARANTINE_FILE).read_bytes() == (right / QUARANTINE_FILE).read_bytes()
    r1, r2 = (json.loads((o / CLEANING_REPORT_FILE).read_text()) for o in (left, right))
    assert {k: r1[k] for k in COUNTS} == {k: r2[k] for k in COUNTS}


def _parts(out: Path) -> list[str]:
    return sorted(p.name for p in (out / SESSIONS_FILE).iterdir())


# ---------------------------------------------------------------------------------------------
# one output folder, both engines


def test_pandas_engine_replaces_a_folder_left_by_the_dask_engine(
        logs: Path, cluster: str, fresh_pandas: Path, tmp_path: Path) -> None:
    run_clean_dask([logs], tmp_path, scheduler=cluster, progress=False, blocksize=10_000)
    assert len(_parts(tmp_path)) > 1
    run_clean([logs], tmp_path, progress=False)
    assert (tmp_path / SESSIONS_FILE).is_file()
    assert set(os.listdir(tmp_path)) == OUTPUTS  # nothing left aside, no staging folder
    _assert_same_outputs(tmp_path, fresh_pandas)
    assert (tmp_path / SESSIONS_FILE).read_bytes() == (fresh_pandas / SESSIONS_FILE).read_bytes()


def test_dask_engine_replaces_a_file_left_by_the_pandas_engine(
        logs: Path, cluster: str, fresh_dask: Path, fresh_pandas: Path, tmp_path: Path) -> None:
    run_clean([logs], tmp_path, progress=False)
    assert (tmp_path / SESSIONS_FILE).is_file()
    run_clean_dask([logs], tmp_path, scheduler=cluster, progress=False, blocksize=10_000)
    assert (tmp_path / SESSIONS_FILE).is_dir()
    assert set(os.listdir(tmp_path)) == OUTPUTS
    assert _parts(tmp_path) == _parts(fresh_dask)
    _assert_same_outputs(tmp_path, fresh_dask)
    _assert_same_outputs(tmp_path, fresh_pandas, sort=True)


def test_a_folder_that_is_not_ours_is_left_alone(logs: Path, cluster: str,
                                                 tmp_path: Path) -> None:
    folder = tmp_path / SESSIONS_FILE
    (folder / "notes").mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(b"PAR1")
    (folder / "readme.txt").write_text("mine")
    for engine in ("pandas", "dask"):  # refused before any work, whatever the engine
        with pytest.raises(InputError, match=r"notes/, readme\.txt"):
            run_clean([logs], tmp_path, progress=False, engine=engine, scheduler=(
                cluster if engine == "dask" else None))
    assert sorted(os.listdir(folder)) == ["notes", "part-00000.parquet", "readme.txt"]
    assert sorted(os.listdir(tmp_path)) == [SESSIONS_FILE]


def test_publish_puts_the_old_output_back_when_the_swap_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / SESSIONS_FILE
    old.mkdir()
    (old / "part-00000.parquet").write_bytes(b"old")
    new = tmp_path / "new.parquet"
    new.write_bytes(b"new")
    real_replace, calls = os.replace, []

    def failing_second_rename(src: Any, dst: Any) -> None:
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", failing_second_rename)
    with pytest.raises(OSError, match="disk gone"):
        io.publish(new, old)
    monkeypatch.undo()
    assert (old / "part-00000.parquet").read_bytes() == b"old"
    assert new.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["new.parquet", SESSIONS_FILE]  # no holder left


# ---------------------------------------------------------------------------------------------
# --blocksize and --workers


def test_cli_small_blocksize_and_workers(logs: Path, fresh_pandas: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--blocksize splits the file into parts, --workers sizes the local cluster (made
    in-process here, to stay fast); the clean table is the pandas engine's."""
    from typer.testing import CliRunner

    from mfr_analysis import dask_clean
    from mfr_analysis.cli import app

    sizes: list[int | None] = []
    real_local_cluster = dask_clean.local_cluster

    def in_process(n_workers: int | None = None, **_: Any) -> Any:
        sizes.append(n_workers)
        return real_local_cluster(n_workers, processes=False)

    monkeypatch.setattr(dask_clean, "local_cluster", in_process)
    result = CliRunner().invoke(app, ["clean", str(logs), "--out", str(tmp_path),
                                      "--engine", "dask", "--blocksize", "16KB", "--workers",
                                      "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sizes == [2]
    report = json.loads((tmp_path / CLEANING_REPORT_FILE).read_text())
    assert report["engine"]["partitions"] >= 5  # about 96 KB of CSV in 16 KB ranges
    assert len(_parts(tmp_path)) == report["engine"]["partitions"]
    _assert_same_outputs(tmp_path, fresh_pandas, sort=True)


def test_cli_blocksize_on_an_existing_cluster(logs: Path, cluster: str, fresh_pandas: Path,
                                              tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mfr_analysis.cli import app

    result = CliRunner().invoke(app, ["clean", str(logs), "--out", str(tmp_path),
                                      "--engine", "dask", "--blocksize", "32KiB",
                                      "--scheduler", cluster, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(_parts(tmp_path)) == 3  # 96 KB in 32 KiB ranges
    _assert_same_outputs(tmp_path, fresh_pandas, sort=True)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess, as a user runs it (stderr exactly as they see it)."""
    return subprocess.run([sys.executable, "-m", "mfr_analysis.cli", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY})


@pytest.mark.parametrize(("options", "says"), [
    (["--blocksize", "64MB"], "--blocksize needs --engine dask"),
    (["--workers", "2"], "--workers needs --engine dask"),
    (["--engine", "pandas", "--workers", "2"], "--workers needs --engine dask"),
    (["--engine", "dask", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "not with --scheduler"),
    (["--engine", "dask", "--blocksize", "lots"], "--blocksize 'lots'"),
    (["--engine", "dask", "--blocksize", "0"], "--blocksize '0'"),
    (["--engine", "dask", "--blocksize", "-5MB"], "--blocksize '-5MB'"),
    (["--engine", "dask", "--blocksize", ""], "--blocksize ''"),
    (["--engine", "dask", "--workers", "0"], "--workers '0'"),
    (["--engine", "dask", "--workers", "two"], "--workers 'two'"),
])
def test_cli_bad_option_is_one_line(logs: Path, tmp_path: Path, options: list[str],
                                    says: str) -> None:
    result = _run_cli("clean", str(logs), "--out", str(tmp_path / "out"), "--no-progress",
                      *options)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mfr-analysis: error:") and says in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # refused before any work


def test_cli_folder_that_is_not_ours_is_one_line(logs: Path, tmp_path: Path) -> None:
    (tmp_path / SESSIONS_FILE).mkdir()
    (tmp_path / SESSIONS_FILE / "mine.csv").write_text("x")
    result = _run_cli("clean", str(logs), "--out", str(tmp_path), "--no-progress")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "mine.csv" in lines[0], result.stderr
    assert os.listdir(tmp_path / SESSIONS_FILE) == ["mine.csv"]


# ---------------------------------------------------------------------------------------------
# --workers bounded by the machine (issue 10, section 7)


def test_max_workers_follows_cores_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from mfr_analysis import config

    monkeypatch.setattr(config, "usable_cores", lambda: 2)
    monkeypatch.setattr(config, "total_memory", lambda: 64 << 30)
    assert config.max_workers() == 2 * config.WORKERS_PER_CORE  # cores bind
    monkeypatch.setattr(config, "total_memory", lambda: 3 << 30)
    assert config.max_workers() == 3  # memory binds: 1 GiB per worker
    monkeypatch.setattr(config, "total_memory", lambda: 512 << 20)
    assert config.max_workers() == 1  # never below one
    monkeypatch.setattr(config, "total_memory", lambda: None)
    assert config.max_workers() == 4
    assert 1 <= config.usable_cores() <= (os.cpu_count() or 1)


def _no_cluster(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("a local cluster was started")


def test_cli_workers_above_the_machine_is_one_line_before_any_work(
        logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in-process with the cluster replaced: the unbounded code would start 10,000
    worker processes here."""
    from typer.testing import CliRunner

    from mfr_analysis import config
    from mfr_analysis.cli import app

    monkeypatch.setattr("distributed.LocalCluster", _no_cluster)
    result = CliRunner().invoke(app, ["clean", str(logs), "--out", str(tmp_path / "out"),
                                      "--engine", "dask", "--workers", "10000",
                                      "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    bound = config.max_workers()
    assert lines == [f"mfr-analysis: error: --workers 10000: expected 1 to {bound} on this "
                     f"machine ({config.usable_cores()} usable core(s) x "
                     f"{config.WORKERS_PER_CORE}, "
                     f"{config.total_memory() / (1 << 30):.1f} GiB of memory at 1 GiB per "
                     "worker)"]
    assert not (tmp_path / "out").exists()


def test_python_api_bounds_n_workers(logs: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mfr_analysis import config, dask_clean

    monkeypatch.setattr("distributed.LocalCluster", _no_cluster)
    too_many = config.max_workers() + 1
    for call in (lambda: run_clean([logs], tmp_path / "a", progress=False, engine="dask",
                                   n_workers=too_many),
                 lambda: run_clean_dask([logs], tmp_path / "b", progress=False,
                                        n_workers=too_many),
                 lambda: dask_clean.local_cluster(too_many)):
        with pytest.raises(InputError, match=rf"n_workers {too_many}: expected 1 to "):
            call()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(("options", "says"), [
    ({"engine": "spark"}, "engine must be 'pandas' or 'dask', not 'spark'"),
    ({"scheduler": "tcp://127.0.0.1:1"}, "scheduler needs engine='dask'"),
    ({"blocksize": 1 << 20}, "blocksize needs engine='dask'"),
    ({"engine": "pandas", "n_workers": 2}, "n_workers needs engine='dask'"),
    ({"engine": "dask", "n_workers": 2, "scheduler": "tcp://127.0.0.1:1"},
     "n_workers starts a local cluster: not with scheduler"),
    ({"engine": "dask", "blocksize": 0}, "blocksize must be a positive number of bytes"),
])
def test_python_api_refuses_options_in_one_line_before_any_work(
        logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any],
        says: str) -> None:
    """The rules the command line applies with its own option names (check_clean_options)."""
    monkeypatch.setattr("distributed.LocalCluster", _no_cluster)
    with pytest.raises(InputError) as refused:
        run_clean([logs], tmp_path / "out", progress=False, **options)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_cli_claims_on_a_cluster_use_the_scratch_folder_given(logs: Path, cluster: str,
                                                              tmp_path: Path) -> None:
    """``claims --scheduler ... --scratch DIR``: the per-client sums go to DIR (emptied at
    the end) and the table equals the in-memory one's, bar the note of the reduction."""
    from typer.testing import CliRunner

    from mfr_analysis.cli import app

    run_clean_dask([logs], tmp_path / "clean", scheduler=cluster, progress=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    runner = CliRunner()
    reduced = runner.invoke(app, ["claims", str(tmp_path / "clean"), "--out",
                                  str(tmp_path / "reduced.csv"), "--format", "csv",
                                  "--scheduler", cluster, "--scratch", str(scratch),
                                  "--no-progress"])
    assert reduced.exit_code == 0, reduced.output
    whole = runner.invoke(app, ["claims", str(tmp_path / "clean"), "--out",
                                str(tmp_path / "whole.csv"), "--format", "csv",
                                "--no-progress"])
    assert whole.exit_code == 0, whole.output
    assert list(scratch.iterdir()) == []
    left = pd.read_csv(tmp_path / "reduced.csv")
    right = pd.read_csv(tmp_path / "whole.csv")
    assert left["note"].str.contains("reduced on a Dask cluster").all()
    left["note"] = left["note"].str.replace(r";? ?reduced on a Dask cluster.*$", "", regex=True)
    pd.testing.assert_frame_equal(left.drop(columns="sensitivity"),
                                  right.drop(columns="sensitivity"), check_dtype=False)
