"""Wiring with I/O: raw logs -> clean outputs on disk, or -> the derived table in memory.

The engines have one direction: :mod:`mfr_analysis.read`, :mod:`mfr_analysis.clean` and
:mod:`mfr_analysis.io` hold what both cleaning engines share; :mod:`mfr_analysis.dask_clean`
(the Dask engine) builds on them; this module runs the pandas engine and chooses the engine
(``run_clean(engine=...)``), and reads clean tables back (``load_sessions``), which
:mod:`mfr_analysis.dask_claims` builds on.

``run_clean`` writes ``sessions.parquet``, ``quarantine.csv`` and ``cleaning_report.json`` as
one output set (:func:`mfr_analysis.io.output_set`: a staging folder published in one step,
``manifest.json`` last, the folder locked against a concurrent run) and returns the report;
re-running it with the same inputs and key gives byte-identical files (the manifest records
the run). A ``sessions.parquet`` folder of parts left by the Dask engine is replaced by the file
(and the other way round). The pseudonym key is resolved once, here, unless the caller
passes it (``key=``), and passed down; its fingerprint
(:func:`mfr_analysis.pseudonymise.key_fingerprint`) is recorded in ``cleaning_report.json``
(``key_fingerprint``) and in the parquet's schema metadata (:func:`key_fingerprint_of`).

``load_sessions`` accepts raw logs, or one or several clean ``sessions.parquet`` (or folders
holding one) and returns the derived table. Each clean folder is checked against its manifest
first (a mixed or half-written folder is refused), and several clean tables are combined only
when the same key made them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mfr_analysis.clean import CleanResult, DateOrder, clean_sessions, full_report, merge_reports
from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.derive import add_missing_intake, derive
from mfr_analysis.io import (
    FINGERPRINT_METADATA,
    MANIFEST_FILE,
    atomic_path,
    check_replaceable,
    output_set,
    parquet_writer,
    refuse_clean_over_inputs,
    set_files,
    verify_output_set,
    write_csv,
    write_json,
    write_parquet,
)
from mfr_analysis.progress import progress_bar
from mfr_analysis.pseudonymise import key_fingerprint, load_key
from mfr_analysis.read import (
    SUPPORTED_SUFFIXES,
    InputError,
    RawLogs,
    clean_table_path,
    combine_sources,
    display_names,
    load_mapping,
    raw_input_files,
    read_source,
)

log = logging.getLogger(__name__)

Inputs = Sequence[str | Path] | str | Path


ENGINES = ("pandas", "dask")
#: How :func:`check_clean_options` names the options (the CLI passes its own spellings).
OPTION_NAMES = {"engine": "engine", "dask": "engine='dask'", "scheduler": "scheduler",
                "blocksize": "blocksize", "n_workers": "n_workers"}


def check_clean_options(engine: str, *, scheduler: object = None, blocksize: object = None,
                        n_workers: object = None,
                        names: dict[str, str] | None = None) -> None:
    """Refuse, in one line (InputError), an engine or option combination that
    :func:`run_clean` cannot honour; ``names`` spells the options as the caller's user knows
    them (default :data:`OPTION_NAMES`). The values themselves are checked by the engine."""
    names = {**OPTION_NAMES, **(names or {})}
    if engine not in ENGINES:
        raise InputError(f"{names['engine']} must be 'pandas' or 'dask', not {engine!r}")
    for option, value in (("scheduler", scheduler), ("blocksize", blocksize),
                          ("n_workers", n_workers)):
        if value is not None and engine != "dask":
            raise InputError(f"{names[option]} needs {names['dask']}")
    if n_workers is not None and scheduler is not None:
        raise InputError(f"{names['n_workers']} starts a local cluster: not with "
                         f"{names['scheduler']} (the cluster there already has its workers)")


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
    return combine_sources(sources)


def _write_small_outputs(result: CleanResult, report: dict[str, Any], out: Path) -> None:
    with atomic_path(out / QUARANTINE_FILE) as tmp:
        write_csv(result.quarantine, tmp)
    write_json(report, out / CLEANING_REPORT_FILE, sort_keys=False)


class _SessionsWriter:
    """Write the clean table's validated slices into the run's staging folder on a second
    core while cleaning builds the next one; one slice waits at most, so memory holds about
    three slices, never the whole table. Published with the rest of the set only once
    cleaning has succeeded."""

    def __init__(self, target: Path, fingerprint: str | None = None) -> None:
        self.target = target
        self.fingerprint = fingerprint
        self.slices: queue.Queue[pa.Table | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="write-sessions", daemon=True)
        self.thread.start()

    def write(self, sessions: pd.DataFrame) -> None:
        """Queue one slice (waits while the writer is a slice behind)."""
        if self.error is not None:
            raise self.error
        self.slices.put(pa.Table.from_pandas(sessions, preserve_index=False))

    def _run(self) -> None:
        writer = None
        while (table := self.slices.get()) is not None:
            if self.error is not None:
                continue  # drained, so that write() never waits on a dead writer
            try:
                if writer is None:
                    writer = parquet_writer(self.target, table.schema, self.fingerprint)
                writer.write_table(table)
            except BaseException as exc:  # noqa: BLE001 - re-raised in write() or close()
                self.error = exc
        try:
            if writer is not None:
                writer.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in close()
            self.error = self.error or exc

    def close(self, *, quiet: bool = False) -> None:
        """Wait for the writer to finish the file; raise what it met, unless ``quiet``."""
        self.slices.put(None)
        self.thread.join()
        if self.error is not None and not quiet:
            raise self.error


def run_clean(inputs: Inputs, out_dir: str | Path, *, mapping: str | Path | None = None,
              date_order: DateOrder = "dmy", progress: bool = True,
              engine: str = "pandas", scheduler: str | None = None,
              blocksize: int | None = None, n_workers: int | None = None,
              key: bytes | None = None) -> dict[str, Any]:
    """Clean raw logs into ``out_dir`` (sessions, quarantine, report); return the report.

    ``key`` is the pseudonym key (default: :func:`mfr_analysis.pseudonymise.load_key`,
    resolved once, before any work). ``engine="dask"`` runs the same cleaning per partition
    on a Dask cluster (a local one of ``n_workers`` single-threaded processes, default one
    per core, or the one at ``scheduler``), splitting delimited text files into partitions of
    about ``blocksize`` bytes (default :data:`mfr_analysis.dask_clean.DEFAULT_BLOCKSIZE`),
    and writes ``sessions.parquet`` as a folder of parts; see :mod:`mfr_analysis.dask_clean`.
    """
    check_clean_options(engine, scheduler=scheduler, blocksize=blocksize, n_workers=n_workers)
    if engine == "dask":  # checks its values and the output folder itself, before any work
        from mfr_analysis.dask_clean import run_clean_dask

        return run_clean_dask(inputs, out_dir, mapping=mapping, date_order=date_order,
                              progress=progress, scheduler=scheduler, blocksize=blocksize,
                              n_workers=n_workers, key=key)
    out = Path(out_dir)
    check_replaceable(out / SESSIONS_FILE)  # before any work: a folder we may not replace
    files = raw_input_files(inputs)
    refuse_clean_over_inputs(out, files)
    key = load_key() if key is None else key  # resolved once, here, before any work
    fingerprint = key_fingerprint(key)
    with output_set(out, kind="clean") as staged, progress_bar(
            total=len(files) + 3, desc="clean", unit="step", disable=not progress) as bar:
        raw = _read(files, mapping, bar)
        release_arrow_memory()  # what the read's Arrow buffers held (not needed again)
        bar.set_postfix_str("cleaning")
        writer = _SessionsWriter(staged.dir / SESSIONS_FILE, fingerprint)
        frames = [raw.frame]
        raw = replace(raw, frame=raw.frame.iloc[:0])  # what the report needs of the read
        try:
            # popped: cleaning holds the raw text's only reference and frees it early
            result = clean_sessions(frames.pop(), date_order=date_order, key=key,
                                    write_sessions=writer.write)
        except BaseException:
            writer.close(quiet=True)  # its file goes with the staging folder
            raise
        writer.close()
        bar.update()
        report = full_report(raw, result, fingerprint)
        bar.set_postfix_str("writing")
        _write_small_outputs(result, report, staged.dir)
        bar.update(2)
    log.info("wrote %s, %s, %s to %s", SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE,
             out_dir)
    return report


_WARNED_UNCHECKED: set[str] = set()


def verify_clean_table(table: str | Path, *, warn: bool = True) -> dict[str, Any]:
    """Check the output set holding the clean ``table`` before it is read; return the set's
    manifest (``{}`` when its folder has none).

    A folder whose files do not match its ``manifest.json`` raises :class:`InputError`. A
    folder without one (an older version's clean) is accepted with one warning on stderr,
    unless its ``cleaning_report.json`` counts another number of clean rows than the table
    holds (a new table beside an old report), which is refused too. ``warn=False`` logs that
    at INFO instead (readers inside report notebooks, where a warning would show on the page;
    the commands warn before they start them)."""
    table = Path(table)
    folder = table.parent
    manifest = verify_output_set(folder)
    if manifest:
        return manifest
    report_path = folder / CLEANING_REPORT_FILE
    if table.name != SESSIONS_FILE or not (report_path.is_file()
                                           or (folder / QUARANTINE_FILE).is_file()):
        return manifest  # a lone table: nothing to be mixed with
    if report_path.is_file():
        try:
            rows = json.loads(report_path.read_text(encoding="utf-8")).get("rows_clean")
        except (ValueError, AttributeError):
            rows = None
        if rows is not None and rows != _table_rows(table):
            raise InputError(f"{folder}: {SESSIONS_FILE} does not match {CLEANING_REPORT_FILE} "
                             f"({_table_rows(table):,} rows, the report says {rows:,}; the "
                             "outputs are mixed or partly written); run `mfr-analysis clean` "
                             "again")
    if not warn or str(folder) not in _WARNED_UNCHECKED:
        if warn:
            _WARNED_UNCHECKED.add(str(folder))  # once per folder and process
        log.log(logging.WARNING if warn else logging.INFO,
                "%s: no %s (written by an older mfr-analysis), so its files cannot be checked "
                "to belong together; run `mfr-analysis clean` again to get one",
                folder, MANIFEST_FILE)
    return manifest


def clean_table_files(table: str | Path) -> list[Path]:
    """The parquet files of a clean table: the ``sessions.parquet`` file, or the parts of
    a Dask engine's folder, in order; ``table`` may also be the folder holding either."""
    path = Path(table)
    if path.is_dir() and (path / SESSIONS_FILE).exists():
        path = path / SESSIONS_FILE
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]


def _table_rows(table: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in clean_table_files(table))


def _in_set(table: Path, manifest: dict[str, Any]) -> bool:
    name = table.name
    return any(f == name or f.startswith(name + "/") for f in manifest.get("files", {}))


def clean_table_report(table: str | Path) -> Path | None:
    """The ``cleaning_report.json`` that belongs with the clean ``table`` (the same verified
    output set), else None."""
    table = Path(table)
    report = table.parent / CLEANING_REPORT_FILE
    manifest = verify_clean_table(table)
    if manifest:
        return report if _in_set(table, manifest) and CLEANING_REPORT_FILE in manifest[
            "files"] else None
    return report if table.name == SESSIONS_FILE and report.is_file() else None


def key_fingerprint_of(table: str | Path) -> str | None:
    """The key fingerprint recorded in a clean table (a ``sessions.parquet`` file, its folder
    of parts, or a folder holding it), None for a table written before fingerprints."""
    found = set()
    for file in clean_table_files(table):
        metadata = pq.read_schema(file).metadata or {}
        value = metadata.get(FINGERPRINT_METADATA)
        found.add(value.decode("ascii", "replace") if value else None)
    if len(found) > 1:
        raise InputError(f"{table}: its parts were made with different pseudonym keys")
    return found.pop() if found else None


def check_same_key(tables: Sequence[Path]) -> str | None:
    """The key fingerprint shared by ``tables``; InputError (one line, naming two files)
    when they were made with different keys or one has no fingerprint."""
    fingerprints = [key_fingerprint_of(t) for t in tables]
    if len(tables) < 2:
        return fingerprints[0] if fingerprints else None
    for table, fingerprint in zip(tables, fingerprints, strict=True):
        if fingerprint is None:
            raise InputError(f"{table}: made by an older mfr-analysis without a key "
                             "fingerprint; clean it again to combine it with other tables")
    first = fingerprints[0]
    for table, fingerprint in zip(tables[1:], fingerprints[1:], strict=True):
        if fingerprint != first:
            raise InputError(f"{tables[0]} and {table} were pseudonymised with different keys "
                             f"(key fingerprints {first} and {fingerprint}); clean both with "
                             "the same key to combine them")
    return first


def clean_parquets(inputs: Inputs, *, warn_unchecked: bool = True) -> list[Path] | None:
    """The clean tables named by ``inputs`` (each output set verified, one key), or None when
    the inputs are raw logs; InputError when raw logs and clean tables are mixed.
    ``warn_unchecked``: see :func:`verify_clean_table`."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    found = [clean_table_path(item) for item in items]
    if not items or all(t is None for t in found):
        return None
    raw = [item for item, t in zip(items, found, strict=True) if t is None]
    if raw:
        raise InputError(f"{Path(raw[0]).name}: not a clean sessions table; pass either raw "
                         "logs or clean sessions.parquet tables, not both")
    tables = list({os.path.realpath(t): t for t in found if t is not None}.values())
    for table in tables:
        verify_clean_table(table, warn=warn_unchecked)
    check_same_key(tables)
    return tables


def input_files(inputs: Inputs) -> list[Path]:
    """Every file a run reading ``inputs`` depends on: clean tables with the files of their
    output sets, raw files (folders expanded to their supported files); for
    :func:`mfr_analysis.io.refuse_output_over_inputs`."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    found: list[Path] = []
    for item in map(Path, items):
        table = clean_table_path(item)
        if table is not None:
            found.extend([table, *set_files(table.parent)])
        elif item.is_dir():
            found.extend(f for f in sorted(item.iterdir())
                         if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
        else:
            found.append(item)
    return found


def _read_table(table: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(table)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{table.name}: cannot read ({type(exc).__name__})") from exc
    release_arrow_memory()
    return frame


def release_arrow_memory() -> None:
    """Hand Arrow's freed buffers back to the system: its allocator keeps what a read used
    (as much as the table again), which the analysis that follows would otherwise add to."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def combine_tables(frames: Sequence[pd.DataFrame], names: Sequence[str | Path]) -> pd.DataFrame:
    """Several clean tables (of one key) as one: categories united, session ids unique
    (InputError naming two files that share one, e.g. the same sessions cleaned twice)."""
    origin = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    frames = [add_missing_intake(f) for f in frames]  # an earlier version's table lacks them
    categorical = [c for c in frames[0].columns
                   if isinstance(frames[0][c].dtype, pd.CategoricalDtype)]
    united = {}
    for column in categorical:
        levels = [v for f in frames if column in f for v in f[column].cat.categories]
        united[column] = pd.CategoricalDtype(list(dict.fromkeys(levels)))
    aligned = [f.astype({c: dtype for c, dtype in united.items() if c in f}) for f in frames]
    combined = pd.concat(aligned, ignore_index=True)
    repeated = combined["session_id"].duplicated(keep=False).to_numpy()
    if repeated.any():
        where = sorted(set(origin[repeated]))
        first, second = (where[0], where[1]) if len(where) > 1 else (where[0], where[0])
        raise InputError(f"{names[first]} and {names[second]} share "
                         f"{int(repeated.sum()) // 2:,} session ids (the same sessions cleaned "
                         "twice?); combine each clean table only once")
    return combined


def load_sessions(inputs: Inputs, *, mapping: str | Path | None = None,
                  date_order: DateOrder = "dmy", key: bytes | None = None,
                  on_report: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """The derived session table from raw logs (cleaned in memory) or from one or several
    clean tables (each checked against its manifest, all made with one key; a folder without
    a manifest is only logged at INFO here, the commands warn about it before they start).

    ``key`` pseudonymises raw logs (default: :func:`mfr_analysis.pseudonymise.load_key`,
    resolved only when the inputs are raw logs); clean tables need none. ``on_report``, given,
    receives the cleaning report of raw logs cleaned here."""
    tables = clean_parquets(inputs, warn_unchecked=False)
    if tables is not None:
        frames = [_read_table(t) for t in tables]
        sessions = frames[0] if len(frames) == 1 else combine_tables(frames, tables)
        return derive(sessions)  # validates against DerivedSessions, a superset of the clean
    files = raw_input_files(inputs)
    key = load_key() if key is None else key  # resolved once, here, before any work
    raw = _read(files, mapping)
    result = clean_sessions(raw.frame, date_order=date_order, key=key)
    log.info("cleaned in memory: %d clean, %d quarantined, %d duplicates",
             result.report["rows_clean"], result.report["rows_quarantined"], result.duplicates)
    if on_report is not None:
        on_report(full_report(raw, result))
    return derive(result.sessions)


def combine_clean_tables(tables: Sequence[Path], out_dir: str | Path) -> Path:
    """Write several clean tables (one key, see :func:`clean_parquets`) as one output set in
    ``out_dir``: ``sessions.parquet`` and, when every table has its cleaning report, their
    merged ``cleaning_report.json``; return the sessions path."""
    fingerprint = check_same_key(tables)
    frames = [_read_table(t) for t in tables]
    combined = combine_tables(frames, tables)
    reports = [clean_table_report(t) for t in tables]
    with output_set(out_dir, kind="clean") as staged:
        write_parquet(combined, staged.dir / SESSIONS_FILE, fingerprint)
        if all(r is not None for r in reports):
            texts = [json.loads(r.read_text(encoding="utf-8")) for r in reports]  # type: ignore[union-attr]
            try:
                merged = merge_reports(texts)
            except (KeyError, TypeError, IndexError):
                merged = None  # reports of older versions lack some counts
            if merged is not None:
                merged["key_fingerprint"] = fingerprint
                merged["combined_tables"] = len(tables)
                write_json(merged, staged.dir / CLEANING_REPORT_FILE, sort_keys=False)
    return Path(out_dir) / SESSIONS_FILE
