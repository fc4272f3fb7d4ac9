"""Claims on a clean dataset of any size: reduced by client on a Dask cluster when it is large.

:func:`claim_inputs_at_scale` reads a clean table of up to ``in_memory_max`` sessions whole
(:func:`mfr_analysis.pipeline.load_sessions`). A larger one is shuffled by client on a Dask
cluster (``dask.dataframe``), so that each partition holds whole clients; each partition is
derived (:func:`mfr_analysis.derive.derive`: weeks since the client's first session, sessions
per week...) and reduced to per-client sums plus the sessions of small cells
(:func:`mfr_analysis.claims.claim_inputs`), and the reductions are combined
(:func:`mfr_analysis.claims.combine_inputs`). The result equals the in-memory one; its size
grows with clients, not sessions. :func:`evaluate_claims_at_scale` fits the claims from it and
says in each row's ``note`` when the reduction ran on the cluster.

The cluster is the one of :func:`mfr_analysis.dask_clean.dask_client`: a local one, or the one
at ``scheduler``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mfr_analysis.claims import claim_inputs, combine_inputs, evaluate_inputs
from mfr_analysis.dask_clean import dask_client
from mfr_analysis.derive import derive
from mfr_analysis.pipeline import clean_table_files, load_sessions
from mfr_analysis.progress import progress_bar

IN_MEMORY_SESSIONS = 2_000_000  # up to this many sessions, claims read the table whole
SESSIONS_PER_SHUFFLE_PARTITION = 1_000_000
_ORDER = "_mfr_row_order"


def _numbered(path: str, index: int) -> pd.DataFrame:
    """One part of the clean table with its rows' position in the whole table."""
    table = pd.read_parquet(path)
    return table.assign(**{_ORDER: np.arange(len(table), dtype=np.int64) + (index << 40)})


def _partition_inputs(part: pd.DataFrame) -> Any:
    """Claims inputs of one partition of whole clients, rows back in table order."""
    if part.empty:
        return None
    part = part.sort_values(_ORDER, kind="stable").drop(columns=_ORDER)
    return claim_inputs(derive(part.reset_index(drop=True)))


def claim_inputs_at_scale(dataset: str | Path, *, scheduler: str | None = None,
                          n_workers: int | None = None, progress: bool = False,
                          in_memory_max: int = IN_MEMORY_SESSIONS) -> tuple[Any, str]:
    """What the claims models need from a clean dataset of any size, and how it was made.

    Returns the claims inputs and a note: empty when the table was read whole, else how it
    was reduced on the cluster (see the module's docstring)."""
    files = clean_table_files(dataset)
    n_sessions = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if n_sessions <= in_memory_max:
        return claim_inputs(load_sessions(dataset)), ""
    import dask
    import dask.dataframe as dd
    from distributed import as_completed

    n_parts = max(1, -(-n_sessions // SESSIONS_PER_SHUFFLE_PARTITION))
    with dask_client(scheduler, n_workers) as client:
        frame = dd.from_map(_numbered, [str(f) for f in files], list(range(len(files))))
        shuffled = frame.shuffle("client_id", npartitions=n_parts)
        tasks = [dask.delayed(_partition_inputs)(p) for p in shuffled.to_delayed()]
        futures = client.compute(tasks)
        pieces = []
        for future in progress_bar(as_completed(futures), total=len(futures), unit="part",
                                   desc="claims inputs (dask)", disable=not progress):
            pieces.append(future.result())
    inputs = combine_inputs([p for p in pieces if p is not None])
    note = (f"reduced on a Dask cluster to per-client sums ({n_sessions:,} sessions in "
            f"{n_parts} partition{'s' if n_parts > 1 else ''} of whole clients); same numbers "
            "as in memory")
    return inputs, note


def evaluate_claims_at_scale(dataset: str | Path, *, scheduler: str | None = None,
                             n_workers: int | None = None,
                             in_memory_max: int = IN_MEMORY_SESSIONS,
                             **options: Any) -> pd.DataFrame:
    """:func:`mfr_analysis.claims.evaluate_claims` on a clean dataset of any size, reduced
    first by :func:`claim_inputs_at_scale`; a reduction on the cluster is stated in ``note``.

    The primary rows only: the lasting-relief missing-data sensitivity rows
    (:mod:`mfr_analysis.claims.sensitivity`) need the client-level follow-up table and are
    computed by the in-memory engine (their ``sensitivity`` column is "" on every row here)."""
    inputs, note = claim_inputs_at_scale(dataset, scheduler=scheduler, n_workers=n_workers,
                                         progress=bool(options.get("progress")),
                                         in_memory_max=in_memory_max)
    table = evaluate_inputs(inputs, **options)
    if note:
        table["note"] = [f"{n}; {note}" if isinstance(n, str) and n else note
                         for n in table["note"]]
    return table


__all__ = ["IN_MEMORY_SESSIONS", "SESSIONS_PER_SHUFFLE_PARTITION", "claim_inputs_at_scale",
           "evaluate_claims_at_scale"]
