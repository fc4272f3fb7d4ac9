"""Names shared by every stage: environment variables, file names, limits.

The analysis settings (significance, correction, minimum clients, privacy minimum, MCID
overrides, date order) and their defaults live in :mod:`mfr_analysis.settings`."""

from __future__ import annotations

import math
import os
from pathlib import Path

from mfr_analysis.settings import DEFAULTS

PSEUDONYM_KEY_ENV = "MFR_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE_ENV = "MFR_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = "~/.config/mfr-analysis/pseudonym.key"

SESSIONS_FILE = "sessions.parquet"
QUARANTINE_FILE = "quarantine.csv"
CLEANING_REPORT_FILE = "cleaning_report.json"

EARLIEST_SESSION_DATE = "1990-01-01"

# Row-sized work that would otherwise hold a whole column's worth of temporaries (hashing the
# source session ids, building, validating and writing the clean table) runs in slices of
# this many rows: pyarrow's default row-group length, so a table written slice by slice has
# the same row groups, and bytes, as one written whole.
ROWS_PER_SLICE = 1 << 20

# CMS cell-size rule: counts of 1-10 clients are never shown in a report. The default of
# AnalysisSettings.min_reported_clients (the analysis settings' defaults live there only).
MIN_REPORTED_CLIENTS = DEFAULTS.min_reported_clients
UNIT_LEVELS: tuple[str, ...] = ("site", "clinician")  # units compared, outermost first

AUDIENCE_GROUPS: tuple[str, ...] = ("athlete", "senior", "desk_worker", "rehab", "chronic_pain")

# Local worker processes (Dask clean, report runs): at most this many per usable core, and no
# more than the memory allows at this much per worker.
WORKERS_PER_CORE = 2
MEMORY_PER_WORKER = 1 << 30  # bytes


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, lowered by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_value("cpu.max")
    if quota:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def total_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, lowered by a cgroup limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not POSIX
        total = None
    limit = _cgroup_value("memory.max")
    if limit and (total is None or limit < total):
        total = int(limit)
    return total


def _cgroup_value(name: str) -> float | None:
    """A cgroup v2 limit of this process (``cpu.max`` as cores, ``memory.max`` as bytes)."""
    try:
        text = Path("/sys/fs/cgroup", name).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        if name == "cpu.max":
            return None if text[0] == "max" else int(text[0]) / int(text[1])
        return None if text[0] == "max" else float(text[0])
    except (IndexError, ValueError, ZeroDivisionError):
        return None


def max_workers() -> int:
    """Most local worker processes this machine can bear: usable cores x WORKERS_PER_CORE,
    and no more than total memory / MEMORY_PER_WORKER (at least one)."""
    bound = usable_cores() * WORKERS_PER_CORE
    memory = total_memory()
    if memory is not None:
        bound = min(bound, memory // MEMORY_PER_WORKER)
    return max(1, bound)


def check_workers(n_workers: int, option: str = "--workers") -> None:
    """Raise InputError (one line, naming the bound and why) if ``n_workers`` is out of range."""
    from mfr_analysis.errors import InputError

    bound = max_workers()
    if n_workers < 1 or n_workers > bound:
        memory = total_memory()
        why = f"{usable_cores()} usable core(s) x {WORKERS_PER_CORE}"
        if memory is not None:
            why += (f", {memory / (1 << 30):.1f} GiB of memory at "
                    f"{MEMORY_PER_WORKER / (1 << 30):g} GiB per worker")
        raise InputError(f"{option} {n_workers}: expected 1 to {bound} on this machine ({why})")
