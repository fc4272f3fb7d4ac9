"""The Dask engine for cleaning: the pandas cleaning functions, run per partition on a cluster.

``run_clean_dask`` gives the same clean table, quarantine and counts as
:func:`mfr_analysis.pipeline.run_clean` (the pandas engine), for inputs larger than memory.
It builds on the modules both engines share (:mod:`mfr_analysis.read`,
:mod:`mfr_analysis.clean`, :mod:`mfr_analysis.io`) and imports nothing from the pipeline,
which runs it for ``run_clean(engine="dask")``:

1. **Partitions.** Each input file is a partition; a delimited text file larger than
   ``blocksize`` is split into byte ranges at line ends, each read exactly as
   :mod:`mfr_analysis.read` reads the whole file (the same :func:`~mfr_analysis.read.text_layout`
   and pyarrow options, via :func:`~mfr_analysis.read.read_text_range`; true physical
   ``source_line``). A range that does not parse as whole rows (a line break inside a quoted
   cell, ragged rows, an encoding the file's head did not predict) makes the engine read that
   file whole instead, so nothing is ever split mid-record.
2. **Clean per partition** with :func:`mfr_analysis.clean.clean_sessions` (the single source
   of truth): each task writes its clean rows and its quarantine rows to a staging folder and
   returns its report, with ``row_keys=True``: per clean row, the two 64-bit content hashes
   of the de-duplication key and the session id *before* repeats were made unique
   (:attr:`mfr_analysis.clean.CleanResult.row_keys`).
3. **Across partitions** (``dask.dataframe`` over those keys): exact duplicates are rows whose
   128-bit content hash repeats in another partition (the first in input order is kept, as
   the pandas engine keeps it). Both engines find duplicates with that one content hash:
   within a call the pandas engine confirms a repeated hash by comparing the parsed values,
   across partitions the 128 bits (keyed with the pseudonym key) are the proof. Session ids
   are made unique with the pandas engine's own rule
   (:func:`mfr_analysis.clean.unique_session_ids`) applied to the rows whose id repeats
   anywhere; site spellings that differ only in case get the first spelling in input order.
4. **Write.** ``sessions.parquet`` is a folder of ``part-NNNNN.parquet`` files in input order
   (``pandas.read_parquet`` and ``dask.dataframe.read_parquet`` read it as one table),
   ``quarantine.csv`` is one file (the partitions' rows concatenated in input order) and
   ``cleaning_report.json`` adds the partitions' counts
   (:func:`mfr_analysis.clean.merge_reports`). The three are written into the staging folder
   of one output set (:func:`mfr_analysis.io.output_set`; the tasks' own staging folder
   ``.mfr-dask-*`` lives inside it) and published together, ``manifest.json`` last; a run
   killed on the way leaves nothing the next run does not remove.

The cluster is ``distributed``'s: a ``LocalCluster`` (one single-threaded worker process per
core) unless ``scheduler`` names an existing one (``tcp://host:8786``), whose workers must see
the input files and the output folder at the same paths. The pseudonym key is resolved once,
on the client (``key=``, else :func:`mfr_analysis.pseudonymise.load_key`), and sent with the
tasks, so every worker pseudonymises with the same key.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mfr_analysis.clean import (
    DATE_ORDERS,
    QUARANTINE_EXTRA,
    DateOrder,
    clean_sessions,
    full_report,
    merge_reports,
    unique_session_ids,
)
from mfr_analysis.config import (
    CLEANING_REPORT_FILE,
    QUARANTINE_FILE,
    SESSIONS_FILE,
    check_workers,
    max_workers,
    usable_cores,
)
from mfr_analysis.io import (
    check_replaceable,
    output_set,
    refuse_clean_over_inputs,
    write_csv,
    write_json,
    write_parquet,
)
from mfr_analysis.progress import progress_bar
from mfr_analysis.pseudonymise import hex_ids, key_fingerprint, load_key
from mfr_analysis.read import (
    INPUT_COLUMNS,
    TEXT_SUFFIXES,
    InputError,
    RawLogs,
    TextLayout,
    UserMapping,
    combine_sources,
    count_newlines,
    display_names,
    load_mapping,
    raw_input_files,
    read_source,
    read_text_range,
    text_layout,
    whole_line_ranges,
)
from mfr_analysis.tables import normalise_token

log = logging.getLogger(__name__)

DEFAULT_BLOCKSIZE = 128 << 20  # bytes of delimited text per partition
_CHUNK_STRIDE = 1_000_000  # order key of a partition: file index * stride + chunk index
_NOT_TEXT = (b"PAR1", b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # parquet, xlsx, xls: read whole


@dataclass(frozen=True)
class Part:
    """One partition: a whole file, or a byte range of a delimited text file."""

    order: int  # file index * _CHUNK_STRIDE + chunk index: input order of partitions
    path: str
    name: str  # the file's display name (source_file)
    start: int | None = None  # byte range [start, end); None = the whole file
    end: int | None = None
    first_line: int = 0  # physical line number of the first line of the range
    layout: TextLayout | None = None  # how the file is read (a byte range only)

    @property
    def tag(self) -> str:
        """Unique name of the partition's staged files."""
        return f"{self.order:012d}" + ("w" if self.start is None else "r")


# ---------------------------------------------------------------------------------------------
# planning the partitions (on the client)


def plan_parts(files: Sequence[Path], names: Sequence[str], mapping: UserMapping | None,
               blocksize: int = DEFAULT_BLOCKSIZE) -> list[Part]:
    """Partitions in input order: big delimited files in byte ranges, other files whole."""
    parts: list[Part] = []
    for i, (path, name) in enumerate(zip(files, names, strict=True)):
        ranges = _byte_ranges(path, name, mapping, blocksize)
        if not ranges:
            parts.append(Part(i * _CHUNK_STRIDE, str(path), name))
            continue
        parts.extend(replace(r, order=i * _CHUNK_STRIDE + j) for j, r in enumerate(ranges))
    return parts


def _byte_ranges(path: Path, name: str, mapping: UserMapping | None,
                 blocksize: int) -> list[Part]:
    """Byte ranges of a large delimited file, or [] to read it whole."""
    if path.suffix.lower() not in TEXT_SUFFIXES or blocksize <= 0:
        return []
    size = path.stat().st_size
    if size <= blocksize:
        return []
    with path.open("rb") as handle:
        if handle.read(4).startswith(_NOT_TEXT):
            return []
    try:
        layout = text_layout(path, name, mapping)  # the whole-file reader's own layout
    except InputError:
        return []  # read whole: the reader raises its own error, in its own words
    if layout.data_offset is None:
        return []
    base = Part(0, str(path), name, layout=layout)
    ranges: list[Part] = []
    line = layout.header_line + 1
    with path.open("rb") as handle:
        for start, end in whole_line_ranges(handle, layout.data_offset, size, blocksize):
            ranges.append(replace(base, start=start, end=end, first_line=line))
            line += count_newlines(handle, start, end)
    return ranges if len(ranges) > 1 else []


# ---------------------------------------------------------------------------------------------
# per-partition work (on the workers)


def _read_part(part: Part, mapping: UserMapping | None) -> RawLogs | None:
    """The partition's rows as one text table; None for a byte range that does not parse as
    whole rows (its file must be read whole)."""
    if part.start is None or part.end is None or part.layout is None:
        return combine_sources(read_source(Path(part.path), mapping, part.name))
    source = read_text_range(part.path, part.name, part.layout, part.start, part.end,
                             part.first_line)
    return None if source is None else combine_sources([source])


def _clean_part(part: Part, mapping: UserMapping | None, key: bytes, date_order: DateOrder,
                today: dt.date, staging: str) -> dict[str, Any]:
    """Read and clean one partition; stage its sessions, keys and quarantine rows."""
    raw = _read_part(part, mapping)
    if raw is None:
        return {"order": part.order, "unsplittable": True}
    result = clean_sessions(raw.frame, date_order=date_order, key=key, today=today,
                            row_keys=True)
    report = full_report(raw, result)
    del raw
    assert result.row_keys is not None
    keys = result.row_keys.assign(part=np.int64(part.order),
                                  pos=np.arange(len(result.row_keys), dtype=np.int64))
    folder = Path(staging)
    write_parquet(result.sessions, folder / f"sessions-{part.tag}.parquet",
                  key_fingerprint(key))
    keys.to_parquet(folder / f"keys-{part.tag}.parquet", index=False)
    write_csv(result.quarantine, folder / f"quarantine-{part.tag}.csv", header=False)
    return {"order": part.order, "tag": part.tag, "report": report,
            "sites": [str(s) for s in result.sessions["site"].cat.categories]}


def _finish_part(tag: str, staging: str, out_path: str, drop: np.ndarray,
                 new_ids: dict[int, str], site_labels: dict[str, str],
                 site_categories: list[str]) -> dict[str, int]:
    """Drop cross-partition duplicates, fix repeated ids and site spellings; write the part.

    Returns the dropped rows per source file."""
    source = Path(staging) / f"sessions-{tag}.parquet"
    if not drop.size and not new_ids:
        sites = pd.read_parquet(source, columns=["site"])["site"]
        if [str(c) for c in sites.cat.categories] == site_categories:
            os.replace(source, out_path)  # nothing to change: keep the staged file
            return {}
    table = pq.read_table(source)  # Arrow all the way: no pandas round trip
    dropped: dict[str, int] = {}
    if drop.size:
        names = table["source_file"].take(pa.array(drop)).to_pylist()
        for name in names:
            dropped[name] = dropped.get(name, 0) + 1
    if new_ids:
        ids = np.asarray(table["session_id"].to_numpy(zero_copy_only=False), dtype=object)
        for position, text in new_ids.items():
            ids[position] = text
        column = table.schema.get_field_index("session_id")
        table = table.set_column(column, table.schema.field(column),
                                 pa.array(ids, table.schema.field(column).type))
    site = table["site"].combine_chunks()
    index = {label: i for i, label in enumerate(site_categories)}
    remap = np.array([index[site_labels[normalise_token(str(c))]]
                      for c in site.dictionary.to_pylist()] + [-1], dtype=np.int32)
    codes = remap[np.asarray(site.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                             dtype=np.int64)]
    new_site = pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32(), mask=codes < 0),
        pa.array(site_categories, site.type.value_type))
    column = table.schema.get_field_index("site")
    table = table.set_column(column, pa.field("site", new_site.type), new_site)
    if drop.size:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[drop] = False
        table = table.filter(pa.array(keep))
    write_parquet(table, Path(out_path))
    source.unlink()
    return dropped


# ---------------------------------------------------------------------------------------------
# the driver


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` if given, else to a new LocalCluster with one
    single-threaded worker process per core."""
    from distributed import Client

    quiet = logging.getLogger("distributed")  # errors reach the user once, as one line
    level = quiet.level
    if not log.isEnabledFor(logging.DEBUG):
        quiet.setLevel(logging.CRITICAL)
    try:
        with _client(scheduler, n_workers, Client) as client:
            yield client
    finally:
        quiet.setLevel(level)


@contextmanager
def _client(scheduler: str | None, n_workers: int | None,
            Client: Any) -> Iterator[Any]:  # noqa: N803
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") \
                from exc
        try:
            yield client
        finally:
            client.close()
        return
    with local_cluster(n_workers) as cluster, Client(cluster) as client:
        yield client


def local_cluster(n_workers: int | None = None, *, processes: bool = True) -> Any:
    """``distributed.LocalCluster``: one single-threaded worker per usable core (or
    ``n_workers``, at most :func:`mfr_analysis.config.max_workers`), no dashboard, the
    scheduler's HTTP endpoint on a free port (never a clash on 8787)."""
    from distributed import LocalCluster

    if n_workers is not None:
        check_workers(n_workers, "n_workers")
    return LocalCluster(n_workers=n_workers or min(usable_cores(), max_workers()),
                        threads_per_worker=1, processes=processes, dashboard_address=None,
                        scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                        silence_logs=logging.CRITICAL)


def run_clean_dask(inputs: Any, out_dir: str | Path, *, mapping: str | Path | None = None,
                   date_order: DateOrder = "dmy", progress: bool = True,
                   scheduler: str | None = None, blocksize: int | None = None,
                   n_workers: int | None = None, key: bytes | None = None) -> dict[str, Any]:
    """Clean raw logs on a Dask cluster into ``out_dir``; return the cleaning report.

    ``key`` is the pseudonym key (default: :func:`mfr_analysis.pseudonymise.load_key`,
    resolved once, before any work); ``blocksize`` the bytes of delimited text per partition
    (default :data:`DEFAULT_BLOCKSIZE`); ``n_workers`` sizes a local cluster, ``scheduler``
    names an existing one instead."""
    if date_order not in DATE_ORDERS:
        raise ValueError(f"date_order must be one of {DATE_ORDERS}, not {date_order!r}")
    if blocksize is not None and blocksize < 1:
        raise InputError(f"blocksize must be a positive number of bytes, not {blocksize!r}")
    if n_workers is not None:
        check_workers(n_workers, "n_workers")
    out = Path(out_dir)
    check_replaceable(out / SESSIONS_FILE)  # before any work, not at the end
    files = raw_input_files(inputs)
    refuse_clean_over_inputs(out, files)
    names = display_names(files)
    user_mapping = load_mapping(mapping) if mapping is not None else None
    for path, name in zip(files, names, strict=True):  # fail early, on the client, in one line
        if not path.is_file():
            raise InputError(f"{name}: no such file")
    key = load_key() if key is None else key
    today = dt.date.today()
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 2)
        clock = now

    parts = plan_parts(files, names, user_mapping,
                       DEFAULT_BLOCKSIZE if blocksize is None else blocksize)
    lap("plan")
    with output_set(out, kind="clean") as staged:
        staging = Path(tempfile.mkdtemp(prefix=".mfr-dask-", dir=staged.dir))
        try:
            with dask_client(scheduler, n_workers) as client, progress_bar(
                    total=len(parts) + 2, desc="clean (dask)", unit="part",
                    disable=not progress) as bar:
                lap("cluster")
                results = _clean_all(client, parts, user_mapping, key, date_order, today,
                                     staging, bar)
                lap("clean")
                bar.set_postfix_str("duplicates across partitions")
                plan = _across_partitions(client, results, staging)
                lap("across_partitions")
                bar.update()
                bar.set_postfix_str("writing")
                report = _write_all(client, results, plan, staging, staged.dir,
                                    key_fingerprint(key))
                lap("write")
                bar.update()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("dask engine seconds per step: %s", seconds)  # not in the report: re-runs match
    log.info("wrote %s, %s, %s to %s (dask, %d partitions)", SESSIONS_FILE, QUARANTINE_FILE,
             CLEANING_REPORT_FILE, out, len(results))
    return report


def _clean_all(client: Any, parts: list[Part], mapping: UserMapping | None, key: bytes,
               date_order: str, today: dt.date, staging: Path,
               bar: Any) -> list[dict[str, Any]]:
    """Clean every partition; files whose ranges do not split cleanly are read whole."""
    from distributed import as_completed

    results: dict[int, dict[str, Any]] = {}
    todo = parts
    while todo:
        futures = [client.submit(_clean_part, p, mapping, key, date_order, today, str(staging),
                                 pure=False) for p in todo]
        failed_files: set[int] = set()
        for future in as_completed(futures):
            result = future.result()
            if "unsplittable" in result:
                failed_files.add(result["order"] // _CHUNK_STRIDE)
            else:
                results[result["order"]] = result
            bar.update()
        retry = []
        for file_index in sorted(failed_files):
            chunks = [p for p in todo if p.order // _CHUNK_STRIDE == file_index]
            for p in chunks:  # forget every range of that file
                done = results.pop(p.order, None)
                if done is not None:
                    for stem in ("sessions", "keys"):
                        (staging / f"{stem}-{done['tag']}.parquet").unlink(missing_ok=True)
                    (staging / f"quarantine-{done['tag']}.csv").unlink(missing_ok=True)
            log.info("%s: cannot be split at line ends; reading it whole", chunks[0].name)
            retry.append(Part(file_index * _CHUNK_STRIDE, chunks[0].path, chunks[0].name))
            bar.total += 1
        todo = retry
    return [results[k] for k in sorted(results)]


@dataclass
class _Plan:
    drop: dict[int, np.ndarray]  # partition order -> positions of duplicates to drop
    new_ids: dict[int, dict[int, str]]  # partition order -> {position: session id}
    duplicates: int
    dropped_with_source_id: int
    conflicts_delta: int
    site_labels: dict[str, str]
    site_categories: list[str]


_KEYS_PER_BUCKET = 4_000_000  # rows' keys one task searches for repeats (16 bytes each)


def _repeated_keys(paths: Sequence[str], bucket: int, buckets: int) -> dict[str, np.ndarray]:
    """The content keys (``dup1``) and session-id keys (``base``) that occur more than once in
    all partitions' key files, among those of hash bucket ``bucket`` (key mod ``buckets``).

    The keys are uniform 64-bit hashes, so each of ``buckets`` tasks holds about 1/buckets of
    them, sorted once; each task reads the key files (two columns). Dask's ``value_counts``
    of both columns made nearly all of the 10.2 s this step took in a 40.2 s run of 10M
    rows (it found one repeat); this takes 1.5-2 s there."""
    columns: dict[str, list[np.ndarray]] = {"dup1": [], "base": []}
    for path in paths:
        table = pq.read_table(path, columns=list(columns))
        for name, kept in columns.items():
            values = table.column(name).drop_null().to_numpy()
            kept.append(values[values % np.uint64(buckets) == bucket] if buckets > 1
                        else values)
    found = {}
    for name, pieces in columns.items():
        values = np.sort(np.concatenate(pieces))
        found[name] = np.unique(values[1:][values[1:] == values[:-1]])
    return found


def _across_partitions(client: Any, results: list[dict[str, Any]], staging: Path) -> _Plan:
    """Exact duplicates and repeated session ids across partitions, and the site spellings."""
    import dask.dataframe as dd

    site_labels: dict[str, str] = {}
    for r in results:
        for label in r["sites"]:
            site_labels.setdefault(normalise_token(label), label)
    site_categories = list(dict.fromkeys(site_labels.values()))
    empty = _Plan({}, {}, 0, 0, 0, site_labels, site_categories)
    if len(results) < 2:
        return empty
    paths = [str(staging / f"keys-{r['tag']}.parquet") for r in results]
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
    buckets = max(1, -(-rows // _KEYS_PER_BUCKET))
    repeated = client.gather([client.submit(_repeated_keys, paths, bucket, buckets, pure=False)
                              for bucket in range(buckets)])
    dup_values = np.concatenate([r["dup1"] for r in repeated])
    id_values = np.concatenate([r["base"] for r in repeated])
    if not (len(dup_values) or len(id_values)):
        return empty
    full = dd.from_map(pd.read_parquet, paths)
    candidates = full.map_partitions(
        lambda df: df[df["dup1"].isin(dup_values) | df["base"].isin(id_values)]).compute()
    candidates = candidates.sort_values(["part", "pos"], kind="stable").reset_index(drop=True)

    # exact duplicates: the same 128-bit key in another partition; keep the first in input order
    is_dup = candidates.duplicated(["dup1", "dup2"], keep="first").to_numpy()
    drop: dict[int, np.ndarray] = {}
    for part, rows in candidates[is_dup].groupby("part")["pos"]:
        drop[int(part)] = np.sort(rows.to_numpy(dtype=np.int64))

    # session ids: clean._unique_ids over the kept rows whose id repeats, in input order
    kept = candidates[~is_dup & candidates["base"].isin(id_values).to_numpy()]
    new_ids: dict[int, dict[int, str]] = {}
    conflicts = 0
    if len(kept):
        ids, conflicts = unique_session_ids(kept["base"].to_numpy(dtype=np.uint64),
                                            np.ones(len(kept), dtype=bool),
                                            kept["line"].to_numpy(dtype=np.int64))
        for (part, pos), text in zip(kept[["part", "pos"]].itertuples(index=False),
                                     hex_ids(ids).to_pylist(), strict=True):
            new_ids.setdefault(int(part), {})[int(pos)] = text
    was_rehashed = int(candidates.loc[candidates["base"].isin(id_values), "rehashed"].sum())
    return _Plan(drop, new_ids, int(is_dup.sum()),
                 int(candidates.loc[is_dup, "has_source_id"].sum()),
                 conflicts - was_rehashed, site_labels, site_categories)


def _write_all(client: Any, results: list[dict[str, Any]], plan: _Plan, staging: Path,
               out: Path, fingerprint: str) -> dict[str, Any]:
    """Finish every part into the sessions folder in ``out`` (the output set's staging folder),
    then write the quarantine and the report there."""
    folder = out / SESSIONS_FILE
    folder.mkdir()
    futures = [client.submit(
        _finish_part, r["tag"], str(staging), str(folder / f"part-{i:05d}.parquet"),
        plan.drop.get(r["order"], np.zeros(0, np.int64)), plan.new_ids.get(r["order"], {}),
        plan.site_labels, plan.site_categories, pure=False) for i, r in enumerate(results)]
    dropped_per_file: dict[str, int] = {}
    for dropped in client.gather(futures):
        for name, count in dropped.items():
            dropped_per_file[name] = dropped_per_file.get(name, 0) + count
    report = merge_reports([r["report"] for r in results])
    _apply_plan(report, plan, dropped_per_file)
    report["engine"] = {"name": "dask", "partitions": len(results),
                        "duplicates_across_partitions": plan.duplicates}
    report["key_fingerprint"] = fingerprint

    header = staging / "quarantine-header.csv"
    write_csv(pd.DataFrame(columns=[*INPUT_COLUMNS, *QUARANTINE_EXTRA]).astype(
        {"source_line": "int64"}), header)
    with (out / QUARANTINE_FILE).open("wb") as target:
        for name in ["quarantine-header.csv",
                     *(f"quarantine-{r['tag']}.csv" for r in results)]:
            with (staging / name).open("rb") as piece:
                shutil.copyfileobj(piece, target, 16 << 20)
    write_json(report, out / CLEANING_REPORT_FILE, sort_keys=False)
    return report


def _apply_plan(report: dict[str, Any], plan: _Plan, dropped: dict[str, int]) -> None:
    report["rows_clean"] -= plan.duplicates
    report["rows_duplicate"] += plan.duplicates
    for name, count in dropped.items():
        report["per_source"][name]["rows_clean"] -= count
        report["per_source"][name]["rows_duplicate"] += count
    ids = report["session_ids"]
    ids["from_source"] -= plan.dropped_with_source_id
    ids["derived"] -= plan.duplicates - plan.dropped_with_source_id
    ids["repeated_source_ids"] += plan.conflicts_delta
    if report["rows_in"] != (report["rows_clean"] + report["rows_quarantined"]
                             + report["rows_duplicate"]):
        raise RuntimeError("row accounting is broken")


__all__ = ["DEFAULT_BLOCKSIZE", "Part", "dask_client", "local_cluster", "merge_reports",
           "plan_parts", "run_clean_dask"]
