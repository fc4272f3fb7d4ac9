"""Wiring with I/O: raw logs -> clean outputs on disk, or -> the derived table in memory.

``run_clean`` writes ``sessions.parquet``, ``quarantine.csv`` and ``cleaning_report.json``
atomically (temporary file + ``os.replace``) and returns the report; re-running it with the
same inputs and key gives byte-identical files. A ``sessions.parquet`` folder of parts left
by the Dask engine is replaced by the file (and the other way round) only once the new
output is complete (:func:`mfr_analysis.io.publish`). ``load_sessions`` accepts raw logs or
a clean ``sessions.parquet`` (or a directory holding one) and returns the derived table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from mfr_analysis.clean import CleanResult, DateOrder, clean_sessions
from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.derive import derive
from mfr_analysis.io import atomic_path, check_replaceable, publish, temporary_beside, write_json
from mfr_analysis.read import (
    InputError,
    RawLogs,
    display_names,
    expand_inputs,
    load_mapping,
    read_source,
)
from mfr_analysis.read import combine_sources as _combine_sources
from mfr_analysis.schema import CLEAN_COLUMNS

log = logging.getLogger(__name__)

Inputs = Sequence[str | Path] | str | Path


OUTPUT_FILES = (SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE)


def raw_input_files(inputs: Inputs) -> list[Path]:
    """The raw log files named by ``inputs`` (folders expanded, earlier outputs left out)."""
    given = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    for item in given:
        if clean_parquet(item) is not None:
            raise InputError(f"{Path(item).name}: already a clean sessions table; pass it to "
                             "claims or report instead of cleaning it again")
    files = [f for f in expand_inputs(given) if f.name not in OUTPUT_FILES]
    if not files:
        raise InputError(f"{', '.join(Path(g).name for g in given)}: no raw log files found "
                         "(only outputs of an earlier clean)")
    return files


def _read(files: list[Path], mapping: str | Path | None, bar: tqdm | None = None) -> RawLogs:
    """Read the files one by one (a progress step each) into one text table."""
    user_mapping = load_mapping(mapping) if mapping is not None else None
    sources = []
    for path, name in zip(files, display_names(files), strict=True):
        if bar is not None:
            bar.set_postfix_str(f"reading {name}")
        sources.extend(read_source(path, user_mapping, name))
        log.debug("read %s", name)
        if bar is not None:
            bar.update()
    return _combine_sources(sources)


def full_report(raw: RawLogs, result: CleanResult) -> dict[str, Any]:
    """The cleaning report plus what the read step dropped and how it read each input."""
    report = dict(result.report)
    report["dropped_columns"] = raw.dropped_columns
    report["identifier_columns_dropped"] = raw.identifier_columns
    report["rows_per_source_read"] = raw.rows_per_source
    report["inputs"] = [dict(info) for info in raw.sources]
    return report


def write_outputs(result: CleanResult, report: dict[str, Any], out_dir: str | Path) -> None:
    """Write sessions.parquet, quarantine.csv and cleaning_report.json, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / SESSIONS_FILE, over_parts=True) as tmp:
        _write_parquet(result.sessions, tmp)
    _write_small_outputs(result, report, out)


NO_DICTIONARY = ("session_id", "client_id", "source_line")  # (nearly) unique per row
WITH_STATISTICS = ("session_date", "audience_group", "arm")  # worth min/max for filtering


def _write_parquet(sessions: pd.DataFrame | pa.Table, path: Path) -> None:
    """zstd parquet; statistics and dictionaries only where they help (a quarter faster)."""
    table = (sessions if isinstance(sessions, pa.Table)
             else pa.Table.from_pandas(sessions, preserve_index=False))
    names = table.column_names
    pq.write_table(table, path, compression="zstd",
                   use_dictionary=[c for c in names if c not in NO_DICTIONARY],
                   write_statistics=[c for c in names if c in WITH_STATISTICS])


def _write_small_outputs(result: CleanResult, report: dict[str, Any], out: Path) -> None:
    with atomic_path(out / QUARANTINE_FILE) as tmp:
        _write_csv(result.quarantine, tmp)
    write_json(report, out / CLEANING_REPORT_FILE, sort_keys=False)


class _BackgroundParquet:
    """Write the sessions parquet on a second core while cleaning finishes (validation,
    quarantine, report); the file only replaces the target once cleaning has succeeded and the
    validated frame is known to be the one written."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.table: pa.Table | None = None
        self.tmp: Path | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, sessions: pd.DataFrame) -> None:
        self.tmp = temporary_beside(self.target)
        self.table = pa.Table.from_pandas(sessions, preserve_index=False)
        self.thread = threading.Thread(target=self._run, name="write-sessions", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            _write_parquet(self.table, self.tmp)
        except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
            self.error = exc

    def finish(self, sessions: pd.DataFrame) -> None:
        """Wait for the writer, check it wrote the validated frame, move the file into place."""
        if self.thread is None:
            with atomic_path(self.target, over_parts=True) as tmp:
                _write_parquet(sessions, tmp)
            return
        self.thread.join()
        if self.error is not None:
            self.abort()
            raise self.error
        same = pa.Table.from_pandas(sessions, preserve_index=False)
        if not same.schema.equals(self.table.schema, check_metadata=True):
            _write_parquet(same, self.tmp)  # validation changed a dtype: write what it returned
        publish(self.tmp, self.target)  # also over a folder of parts from the Dask engine
        self.tmp = None

    def abort(self) -> None:
        """Wait for the writer and remove its temporary file."""
        if self.thread is not None:
            self.thread.join()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """UTF-8 CSV safe to open in a spreadsheet (fast: pyarrow's writer, which quotes every
    string cell): formula-led cells get a leading ``'``, numbers are left alone (OWASP)."""
    from mfr_analysis.redact import neutralise_table

    table = neutralise_table(pa.Table.from_pandas(frame, preserve_index=False))
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def run_clean(inputs: Inputs, out_dir: str | Path, *, mapping: str | Path | None = None,
              date_order: DateOrder = "dmy", progress: bool = True,
              engine: str = "pandas", scheduler: str | None = None,
              blocksize: int | None = None, n_workers: int | None = None) -> dict[str, Any]:
    """Clean raw logs into ``out_dir`` (sessions, quarantine, report); return the report.

    ``engine="dask"`` runs the same cleaning per partition on a Dask cluster (a local one of
    ``n_workers`` single-threaded processes, default one per core, or the one at
    ``scheduler``), splitting delimited text files into partitions of about ``blocksize``
    bytes (default :data:`mfr_analysis.scale.DEFAULT_BLOCKSIZE`), and writes
    ``sessions.parquet`` as a folder of parts; see :mod:`mfr_analysis.scale`."""
    if engine not in ("pandas", "dask"):
        raise ValueError(f"engine must be 'pandas' or 'dask', not {engine!r}")
    if engine == "pandas":
        for name, value in (("scheduler", scheduler), ("blocksize", blocksize),
                            ("n_workers", n_workers)):
            if value is not None:
                raise ValueError(f"{name} needs engine='dask'")
    if blocksize is not None and blocksize < 1:
        raise ValueError(f"blocksize must be a positive number of bytes, not {blocksize!r}")
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, not {n_workers!r}")
    if n_workers is not None and scheduler is not None:
        raise ValueError("n_workers sizes a local cluster: not with a scheduler")
    if engine == "dask":  # checks the output folder itself, before any work
        from mfr_analysis.scale import run_clean_dask

        return run_clean_dask(inputs, out_dir, mapping=mapping, date_order=date_order,
                              progress=progress, scheduler=scheduler, blocksize=blocksize,
                              n_workers=n_workers)
    out = Path(out_dir)
    check_replaceable(out / SESSIONS_FILE)  # before any work: a folder we may not replace
    files = raw_input_files(inputs)
    with tqdm(total=len(files) + 3, desc="clean", unit="step", disable=not progress) as bar:
        raw = _read(files, mapping, bar)
        bar.set_postfix_str("cleaning")
        writer = _BackgroundParquet(out / SESSIONS_FILE)
        try:
            result = clean_sessions(raw.frame, date_order=date_order, on_sessions=writer.start)
            bar.update()
            report = full_report(raw, result)
            del raw  # the raw text is no longer needed while the files are written
            bar.set_postfix_str("writing")
            writer.finish(result.sessions)
            _write_small_outputs(result, report, out)
        except BaseException:
            writer.abort()
            raise
        bar.update(2)
    log.info("wrote %s, %s, %s to %s", SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE,
             out_dir)
    return report


def clean_parquet(inputs: Inputs) -> Path | None:
    """The clean ``sessions.parquet`` named by ``inputs`` (file or directory), else None."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if len(items) != 1:
        return None
    path = Path(items[0])
    if path.is_dir() and path.name != SESSIONS_FILE and (path / SESSIONS_FILE).exists():
        path = path / SESSIONS_FILE  # a file, or a folder of parts from the Dask engine
    if path.suffix.lower() in (".parquet", ".pq") and (path.is_file() or path.is_dir()):
        try:
            names = set(pq.read_schema(path).names if path.is_file()
                        else pq.ParquetDataset(path).schema.names)
        except Exception:  # noqa: BLE001 - not a parquet file: let the reader explain
            return None
        if set(CLEAN_COLUMNS) <= names:
            return path
    return None


def load_sessions(inputs: Inputs, *, mapping: str | Path | None = None,
                  date_order: DateOrder = "dmy") -> pd.DataFrame:
    """The derived session table from raw logs (cleaned in memory) or a clean parquet."""
    parquet = clean_parquet(inputs)
    if parquet is not None:
        try:
            sessions = pd.read_parquet(parquet)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{parquet.name}: cannot read ({type(exc).__name__})") from exc
        return derive(sessions)  # validates against DerivedSessions, a superset of the clean
    raw = _read(raw_input_files(inputs), mapping)
    result = clean_sessions(raw.frame, date_order=date_order)
    log.info("cleaned in memory: %d clean, %d quarantined, %d duplicates",
             result.report["rows_clean"], result.report["rows_quarantined"], result.duplicates)
    return derive(result.sessions)
