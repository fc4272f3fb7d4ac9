"""Benchmark claims at scale: ``python benchmarks/bench_claims_scale.py --rows N``.

Generates N messy rows (the generator of ``bench_dask_clean.py``), cleans them with the Dask
engine into a partitioned ``sessions.parquet`` folder (or takes ``--clean DIR``), then times
``evaluate_claims_at_scale`` forced onto a local cluster: shuffle by client, derive, reduce
each partition to per-client sums, combine, fit. With ``--in-memory`` it also times the
in-memory path (read whole, derive, ``evaluate_claims``) on the same data and prints the
largest difference between the two tables. Peak memory is the largest total RSS of the
process tree (the benchmark and the cluster's workers), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dask_clean import PeakMemory  # noqa: E402

# a fixed, public key for benchmarks only (a real key is secret and random)
BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="messy rows to generate")
    parser.add_argument("--clean", type=Path, default=None,
                        help="an existing clean output folder to use instead")
    parser.add_argument("--in-memory", action="store_true",
                        help="also time the in-memory path and compare the tables")
    args = parser.parse_args(argv)
    os.environ.setdefault("MFR_PSEUDONYM_KEY", BENCHMARK_KEY)
    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.dask_claims import evaluate_claims_at_scale
    from mfr_analysis.pipeline import load_sessions, run_clean

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        clean = args.clean
        if clean is None:
            csv_path, clean = Path(tmp) / "messy.csv", Path(tmp) / "clean"
            subprocess.run([sys.executable, str(Path(__file__).parent / "bench_dask_clean.py"),
                            "--rows", str(args.rows), "--generate-only", str(csv_path)],
                           check=True)
            t0 = time.perf_counter()
            report = run_clean([csv_path], clean, progress=False, engine="dask")
            csv_path.unlink()
            print(f"cleaned {args.rows:,} messy rows with the Dask engine in "
                  f"{time.perf_counter() - t0:.1f} s: {report['rows_clean']:,} clean sessions",
                  flush=True)
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            reduced = evaluate_claims_at_scale(clean, in_memory_max=0)
            seconds = time.perf_counter() - t0
        sessions = sum(pq.ParquetFile(f).metadata.num_rows
                       for f in (clean / "sessions.parquet").glob("*.parquet"))
        print(f"claims at scale ({os.cpu_count()} workers): {seconds:.1f} s, "
              f"{sessions / seconds:,.0f} sessions/s, peak RSS of the process tree "
              f"{memory.gib:.2f} GiB; {len(reduced)} rows, verdicts "
              f"{reduced['verdict'].value_counts().to_dict()}", flush=True)
        if args.in_memory:
            with PeakMemory() as memory:
                t0 = time.perf_counter()
                full = evaluate_claims(load_sessions([clean]))
                in_memory = time.perf_counter() - t0
            numbers = full.select_dtypes("number").columns
            diff = np.nanmax(np.abs(full[numbers].to_numpy(float)
                                    - reduced[numbers].to_numpy(float)))
            same = bool((full["verdict"] == reduced["verdict"]).all())
            print(f"in memory: {in_memory:.1f} s, peak RSS {memory.gib:.2f} GiB; same verdicts: "
                  f"{same}; largest numeric difference {diff:.3g}")
            print(f"ratio at scale / in memory: {seconds / in_memory:.2f}")


if __name__ == "__main__":
    main()
