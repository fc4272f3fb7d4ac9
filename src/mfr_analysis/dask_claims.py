"""Claims on a clean dataset of any size: reduced by client on a Dask cluster when it is large.

:func:`claim_inputs_at_scale` reads a clean table of up to ``in_memory_max`` sessions whole
(:func:`mfr_analysis.pipeline.load_sessions`). A larger one is shuffled by client on a Dask
cluster (``dask.dataframe``), so that each partition holds whole clients; each partition is
derived (:func:`mfr_analysis.derive.derive`: weeks since the client's first session, sessions
per week...) and reduced to per-client sums plus the sessions of small cells
(:func:`mfr_analysis.claims.claim_inputs`), and the reductions are combined
(:func:`mfr_analysis.claims.combine_inputs`). The result equals the in-memory one.
:func:`evaluate_claims_at_scale` fits the claims from it and says in each row's ``note`` when
the reduction ran on the cluster.

Per-client sums grow with clients x groups x arms, which can be a quarter of the sessions (a
client seen in every group and both arms), times one table per series. So the workers write
each partition's per-client sums to a scratch folder, one file per series, and return only
what is small (session counts, small cells' sessions); the claims engine then reads one
series at a time (:class:`SeriesOnDisk`) after the cluster has closed. The driver holds one
series, never all of them, and no worker holds anything once its partition is written.

The cluster is the one of :func:`mfr_analysis.dask_clean.dask_client`: a local one, or the one
at ``scheduler``. The scratch folder is in the system's temporary folder for a local cluster,
and beside the dataset for a remote one (its workers read the dataset, so they share that
file system); ``scratch=`` chooses another. It is removed when the claims are evaluated.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq

from mfr_analysis.claims import claim_inputs, combine_inputs, evaluate_inputs
from mfr_analysis.claims.inputs import UNIT_KEYS, ClaimInputs, SeriesData
from mfr_analysis.dask_clean import dask_client
from mfr_analysis.derive import derive
from mfr_analysis.errors import InputError
from mfr_analysis.pipeline import clean_table_files, load_sessions
from mfr_analysis.progress import progress_bar

IN_MEMORY_SESSIONS = 2_000_000  # up to this many sessions, claims read the table whole
SESSIONS_PER_SHUFFLE_PARTITION = 1_000_000
_ORDER = "_mfr_row_order"


def _numbered(path: str, index: int) -> pd.DataFrame:
    """One part of the clean table with its rows' position in the whole table."""
    table = pd.read_parquet(path)
    return table.assign(**{_ORDER: np.arange(len(table), dtype=np.int64) + (index << 40)})


def _units_file(folder: Path, key: str, part: int) -> Path:
    """Where partition ``part`` writes the per-client sums of series ``key`` (a series key
    holds characters no file name may, hence its digest)."""
    name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return folder / name / f"part-{part:06d}.arrow"


@dataclass(frozen=True)
class _Written:
    """What a partition's reduction returns: its inputs without per-client sums (written to
    files, their client ids as positions in ``clients``), and its sorted client ids."""

    inputs: ClaimInputs
    clients: pa.Array


def _partition_inputs(part: pd.DataFrame, index: int, folder: str) -> _Written | None:
    """Claims inputs of one partition of whole clients (rows back in table order), its
    per-client sums written to ``folder`` and left out of what is returned."""
    if part.empty:
        return None
    part = part.sort_values(_ORDER, kind="stable").drop(columns=_ORDER)
    inputs = claim_inputs(derive(part.reset_index(drop=True)))
    clients = pd.Index(part["client_id"].dropna().astype("string").unique()).sort_values()
    series = {}
    for key, data in inputs.series.items():
        # client ids as integers: the driver reads numbers, not millions of strings
        position = pd.Categorical(data.units["client_id"], categories=clients).codes
        units = data.units.assign(client_id=position.astype(np.int64))
        path = _units_file(Path(folder), key, index)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            feather.write_feather(units, path, compression="uncompressed")
        except OSError as exc:  # a full disk, mostly: the user can choose another folder
            raise InputError(f"cannot write the per-client sums to {folder}: "
                             f"{exc.strerror or exc}; they need about 250 bytes a session "
                             "(scratch= or claims --scratch DIR chooses the folder)") from None
        series[key] = replace(data, units=units.iloc[:0])
    return _Written(replace(inputs, series=series), pa.array(clients.to_numpy(), pa.string()))


class SeriesOnDisk(Mapping[str, SeriesData]):
    """The series of combined claims inputs whose per-client sums are read from the
    partitions' files when a series is asked for; the last series read is kept (a claim asks
    for its series a few times in a row), no other.

    ``ranks[p]`` gives the rank among all clients of partition p's clients (in its sorted
    order): read units get it as their client id and are sorted by their keys, so that they
    are in the order of the in-memory engine's units and every sum is taken in the same
    order (the same bits, not only the same numbers to rounding)."""

    def __init__(self, series: Mapping[str, SeriesData], folder: Path,
                 parts: Mapping[str, Sequence[int]], ranks: Mapping[int, np.ndarray]) -> None:
        self._series, self._folder, self._parts, self._ranks = dict(series), folder, parts, ranks
        self._last: tuple[str, SeriesData] | None = None

    def __getitem__(self, key: str) -> SeriesData:
        data = self._series[key]
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        self._last = None  # let the previous series go before the next one is read
        pieces = []
        for part in self._parts[key]:
            piece = pd.read_feather(_units_file(self._folder, key, part))
            rank = self._ranks[part][piece["client_id"].to_numpy()]
            pieces.append(piece.assign(client_id=rank))
        loaded = replace(data, units=_sorted_units(pieces) if pieces else data.units)
        self._last = (key, loaded)
        return loaded

    def __contains__(self, key: object) -> bool:  # without reading the series
        return key in self._series

    def __iter__(self) -> Iterator[str]:
        return iter(self._series)

    def __len__(self) -> int:
        return len(self._series)


def _sorted_units(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    """Partitions' per-client sums as one table sorted by its keys, as
    :func:`mfr_analysis.claims.inputs.pool_units` sorts them; each partition's group
    categories become the union of all (different ones would concatenate to strings)."""
    groups = [piece["group"].astype("category") for piece in pieces]  # no copy if it is one
    labels = sorted({str(g) for found in groups for g in found.cat.categories})
    units = pd.concat([piece.assign(group=found.cat.set_categories(labels))
                       for piece, found in zip(pieces, groups, strict=True)],
                      ignore_index=True)
    pieces.clear()  # the caller's list: its frames go before the sorted copy is made
    keys = [c for c in UNIT_KEYS if c in units]
    columns = [units[k].cat.codes if k == "group" else units[k] for k in reversed(keys)]
    order = np.lexsort([c.to_numpy() for c in columns])
    return units.take(order).reset_index(drop=True)


def _client_ranks(clients: Mapping[int, pa.Array]) -> dict[int, np.ndarray]:
    """Each partition's clients' ranks among all clients (partitions hold distinct clients)."""
    parts = sorted(clients)
    every = pa.chunked_array([clients[p] for p in parts], pa.string())
    ranks = np.empty(len(every), dtype=np.int64)
    ranks[pc.sort_indices(every).to_numpy()] = np.arange(len(every), dtype=np.int64)
    offsets = np.cumsum([0] + [len(clients[p]) for p in parts])
    return {p: ranks[offsets[i]:offsets[i + 1]] for i, p in enumerate(parts)}


def _scratch_folder(dataset: Path, scratch: str | Path | None,
                    scheduler: str | None) -> Path:
    """A new folder for the partitions' per-client sums (see the module's docstring)."""
    where = Path(scratch) if scratch is not None else (
        dataset.resolve().parent if scheduler else None)
    prefix = ".mfr-claims-units-" if scratch is None and scheduler else "mfr-claims-units-"
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    except OSError as exc:
        raise InputError(f"cannot make a scratch folder for the per-client sums in "
                         f"{where or tempfile.gettempdir()}: {exc.strerror or exc}; choose "
                         "one with scratch=") from exc


@contextmanager
def reduced_inputs(dataset: str | Path, *, scheduler: str | None = None,
                   n_workers: int | None = None, progress: bool = False,
                   in_memory_max: int = IN_MEMORY_SESSIONS,
                   scratch: str | Path | None = None) -> Iterator[tuple[ClaimInputs, str]]:
    """The claims inputs of a clean dataset of any size and how they were made, valid inside
    the ``with`` block: from a reduction on the cluster, their series read from a scratch
    folder (:class:`SeriesOnDisk`) removed on leaving the block.

    The note is empty when the table was read whole, else it says how it was reduced."""
    files = clean_table_files(dataset)
    n_sessions = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if n_sessions <= in_memory_max:
        yield claim_inputs(load_sessions(dataset)), ""
        return
    import dask
    import dask.dataframe as dd
    from distributed import as_completed

    folder = _scratch_folder(Path(dataset), scratch, scheduler)
    try:
        n_parts = max(1, -(-n_sessions // SESSIONS_PER_SHUFFLE_PARTITION))
        with dask_client(scheduler, n_workers) as client:
            frame = dd.from_map(_numbered, [str(f) for f in files], list(range(len(files))))
            shuffled = frame.shuffle("client_id", npartitions=n_parts)
            tasks = [dask.delayed(_partition_inputs)(p, i, str(folder))
                     for i, p in enumerate(shuffled.to_delayed())]
            futures = client.compute(tasks)
            index = {future.key: i for i, future in enumerate(futures)}
            pieces: dict[int, _Written] = {}
            for future in progress_bar(as_completed(futures), total=len(futures),
                                       unit="part", desc="claims inputs (dask)",
                                       disable=not progress):
                result = future.result()
                if result is not None:
                    pieces[index[future.key]] = result
                future.release()
        order = sorted(pieces)
        combined = combine_inputs([pieces[i].inputs for i in order])
        parts = {key: [i for i in order if key in pieces[i].inputs.series]
                 for key in combined.series}
        ranks = _client_ranks({i: pieces[i].clients for i in order})
        inputs = replace(combined, series=SeriesOnDisk(combined.series, folder, parts, ranks))
        note = (f"reduced on a Dask cluster to per-client sums ({n_sessions:,} sessions in "
                f"{n_parts} partition{'s' if n_parts > 1 else ''} of whole clients); same "
                "numbers as in memory")
        yield inputs, note
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def claim_inputs_at_scale(dataset: str | Path, *, scheduler: str | None = None,
                          n_workers: int | None = None, progress: bool = False,
                          in_memory_max: int = IN_MEMORY_SESSIONS,
                          scratch: str | Path | None = None) -> tuple[ClaimInputs, str]:
    """:func:`reduced_inputs` held in memory (every series' per-client sums at once: for
    inspection and tests; :func:`evaluate_claims_at_scale` reads one series at a time)."""
    with reduced_inputs(dataset, scheduler=scheduler, n_workers=n_workers, progress=progress,
                        in_memory_max=in_memory_max, scratch=scratch) as (inputs, note):
        held = {key: inputs.series[key] for key in inputs.series}
        return replace(inputs, series=held), note


def evaluate_claims_at_scale(dataset: str | Path, *, scheduler: str | None = None,
                             n_workers: int | None = None,
                             in_memory_max: int = IN_MEMORY_SESSIONS,
                             scratch: str | Path | None = None,
                             **options: Any) -> pd.DataFrame:
    """:func:`mfr_analysis.claims.evaluate_claims` on a clean dataset of any size, reduced
    first by :func:`reduced_inputs`; a reduction on the cluster is stated in ``note``.

    The primary rows only: the lasting-relief missing-data sensitivity rows
    (:mod:`mfr_analysis.claims.sensitivity`) need the client-level follow-up table and are
    computed by the in-memory engine (their ``sensitivity`` column is "" on every row here)."""
    with reduced_inputs(dataset, scheduler=scheduler, n_workers=n_workers,
                        progress=bool(options.get("progress")), in_memory_max=in_memory_max,
                        scratch=scratch) as (inputs, note):
        table = evaluate_inputs(inputs, **options)
    if note:
        table["note"] = [f"{n}; {note}" if isinstance(n, str) and n else note
                         for n in table["note"]]
    return table


__all__ = ["IN_MEMORY_SESSIONS", "SESSIONS_PER_SHUFFLE_PARTITION", "SeriesOnDisk",
           "claim_inputs_at_scale", "evaluate_claims_at_scale", "reduced_inputs"]
