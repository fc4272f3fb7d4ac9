"""Benchmark the Dask cleaning engine: ``python benchmarks/bench_dask_clean.py --rows N``.

Generates N messy rows into one CSV (the generator of ``bench_clean.py``, run in a child
process in tiles of at most 5M rows, each tile with its own client and session ids, so the
only duplicates are the planted ones), then times ``run_clean(engine="dask")`` on a local
cluster (one single-threaded worker process per core) and, with ``--pandas``, the pandas
engine on the same file. Peak memory is the largest sum of the resident set sizes of the
benchmark process and all its children (the cluster's workers), sampled every 0.2 s.
``--csv FILE`` times an existing file; ``--keep-csv FILE`` writes the generated file there and
keeps it. The last line printed is the ratio of the Dask engine's wall time to the pandas
engine's (with ``--pandas``).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clean import messy_table  # noqa: E402
from run_all import TreePeak  # noqa: E402

TILE = 5_000_000


# a fixed, public key for benchmarks only (a real key is secret and random)
BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"


def _offset_ids(table: pa.Table, tile: int, rows_per_tile: int) -> pa.Table:
    """Shift the ``S<n>`` session ids and ``P<n>`` client ids of one tile past earlier tiles."""
    if tile == 0:
        return table
    n_clients = max(1, rows_per_tile // 40)
    for name, prefix, shift in (("Session ID", "S", tile * rows_per_tile),
                                ("Client", "P", tile * n_clients)):
        number = pc.cast(pc.utf8_slice_codeunits(table[name], 1), pa.int64())
        text = pc.binary_join_element_wise(
            prefix, pc.cast(pc.add(number, shift), pa.string()), "")
        table = table.set_column(table.schema.get_field_index(name), name, text)
    return table


def write_tiled_csv(path: Path, rows: int) -> None:
    """``rows`` messy rows in tiles of at most ``TILE`` rows, written as one CSV."""
    per_tile = min(rows, TILE)
    base = messy_table(per_tile)
    writer = None
    done, tile = 0, 0
    while done < rows:
        n = min(per_tile, rows - done)
        table = _offset_ids(base.slice(0, n), tile, per_tile)
        if writer is None:
            writer = pacsv.CSVWriter(str(path), table.schema)
        writer.write_table(table)
        done += n
        tile += 1
    if writer is not None:
        writer.close()


class PeakMemory(TreePeak):
    """Largest total RSS of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(os.getpid(), interval)


def _timed(label: str, engine: str, csv_path: Path, out: Path) -> float:
    from mfr_analysis.pipeline import run_clean

    with PeakMemory() as memory:
        t0 = time.perf_counter()
        report = run_clean([csv_path], out, progress=False, engine=engine)
        seconds = time.perf_counter() - t0
    rows = report["rows_in"]
    parts = report.get("engine", {}).get("partitions", 1)
    print(f"{label}: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, peak RSS of the process "
          f"tree {memory.gib:.2f} GiB ({rows:,} rows in {parts} partitions: clean "
          f"{report['rows_clean']:,}, quarantined {report['rows_quarantined']:,}, duplicates "
          f"{report['rows_duplicate']:,})", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
    parser.add_argument("--csv", type=Path, default=None, help="time this existing CSV")
    parser.add_argument("--keep-csv", type=Path, default=None,
                        help="write the generated CSV here and keep it")
    parser.add_argument("--pandas", action="store_true",
                        help="also time the pandas engine on the same file")
    parser.add_argument("--generate-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_only is not None:
        write_tiled_csv(args.generate_only, args.rows)
        return

    os.environ.setdefault("MFR_PSEUDONYM_KEY", BENCHMARK_KEY)
    steps = logging.getLogger("mfr_analysis.dask_clean")  # prints the seconds of each step
    steps.setLevel(logging.INFO)
    steps.addHandler(logging.StreamHandler(sys.stdout))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        csv_path = args.csv
        if csv_path is None:
            csv_path = args.keep_csv or Path(tmp) / "messy.csv"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--rows", str(args.rows),
                            "--generate-only", str(csv_path)], check=True)
            print(f"generated {args.rows:,} messy rows ({csv_path.stat().st_size / 2**20:,.0f} "
                  f"MiB) in {time.perf_counter() - t0:.1f} s", flush=True)
        dask_s = _timed(f"dask engine ({os.cpu_count()} workers)", "dask", csv_path,
                        Path(tmp) / "out-dask")
        if args.pandas:
            pandas_s = _timed("pandas engine", "pandas", csv_path, Path(tmp) / "out-pandas")
            print(f"ratio dask/pandas wall time: {dask_s / pandas_s:.2f}")


if __name__ == "__main__":
    main()
