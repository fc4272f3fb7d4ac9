"""Shared fixtures: a fixed pseudonym key, one simulated-and-cleaned dataset and one small
Dask cluster per session."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a strong test key (64 hex digits, 256 bits): never the key of a real run
TEST_KEY = "5f0c3a9e7b1d4c2a8e6f0b3d5a7c9e1f2b4d6f8a0c2e4a6b8d0f1e3c5a7b9d2f"
# public trial data with published numbers (tests/data/README.md: sources and licences)
REFERENCE_DATA = REPO / "tests" / "data"


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the user's key file."""
    monkeypatch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)


@pytest.fixture(scope="session")
def simulated_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A messy simulated log of 300 clients (with its truth file beside it)."""
    from mfr_analysis.simulate import write_simulation

    out = tmp_path_factory.mktemp("sim") / "logs.csv"
    write_simulation(300, 7, out)
    return out


def built_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str,
               build: Callable[[Path], None]) -> Path:
    """A read-only folder that ``build`` fills once per test run, shared by the pytest-xdist
    processes (the first to come builds it while the others wait on a lock)."""
    if worker_id == "master":  # one process: its own temporary folder
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above each worker's
    folder = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / f"{name}.done").exists():
            build(folder)
            (shared / f"{name}.done").touch()
    return folder


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Reports for all clients and each audience group of simulated logs of 300 clients
    (built once per test run: the tests only read them)."""
    from mfr_analysis.report.run import run_reports
    from mfr_analysis.simulate import write_simulation

    def build(folder: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:  # session scope: before any test's key
            patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
            logs = folder.parent / f"{folder.name}-logs" / "logs.csv"
            write_simulation(300, 7, logs)
            run_reports([logs], folder, by="audience_group", workers=2, progress=False)

    return built_once(tmp_path_factory, worker_id, "reports", build)


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """A small in-process Dask cluster (two single-threaded workers): its address."""
    from mfr_analysis.dask_clean import local_cluster

    with local_cluster(2, processes=False) as local:
        yield local.scheduler_address
