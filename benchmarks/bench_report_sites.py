"""Wall time of a 20-site report batch on 1 and 2 local workers, and on a Dask cluster.

    python benchmarks/bench_report_sites.py [--clients 2000] [--sites 20] [--no-dask]

Simulates and cleans ``--clients`` clients, spreads the clients over ``--sites`` sites (a
keyed-hash of the pseudonym, so each site has enough clients to be reported), then times the
``--by site`` batch (one report per site; the overall report is left out) with a process pool
of 1 and 2 workers and, unless ``--no-dask``, as tasks on a 2-worker Dask LocalCluster. Prints
one line per measurement. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from mfr_analysis.pipeline import run_clean
from mfr_analysis.report.run import ReportOptions, plan_jobs, protect_folder, run_jobs
from mfr_analysis.simulate import write_simulation

# a fixed, public key for benchmarks only (a real key is secret and random)
BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MFR_PSEUDONYM_KEY", BENCHMARK_KEY)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_simulation(args.clients, 11, root / "logs.csv")
        (root / "logs.truth.csv").unlink(missing_ok=True)
        (root / "logs.truth.json").unlink(missing_ok=True)
        run_clean([root / "logs.csv"], root / "clean", progress=False)
        sessions = pd.read_parquet(root / "clean" / "sessions.parquet")
        site = sessions["client_id"].map(lambda c: f"Site {int(c[2:], 16) % args.sites + 1:02d}")
        sessions["site"] = site.astype("category")
        (root / "sited").mkdir()  # beside its clean set, it would no longer match the manifest
        sessions.to_parquet(root / "sited" / "sessions.parquet", index=False)
        options = ReportOptions()
        folder = protect_folder(root / "sited" / "sessions.parquet", "site", options)
        jobs, suppressed = plan_jobs(root / "sited" / "sessions.parquet",
                                     root / "clean" / "cleaning_report.json", root, "site",
                                     options, folder)
        slices = [job for job in jobs if job.parameters.get("slice_column")]
        print(f"{len(slices)} site reports ({len(suppressed)} suppressed), "
              f"{len(sessions):,} sessions of {sessions['client_id'].nunique():,} clients")
        timings: dict[str, float] = {}
        runs = [("1 worker", {"workers": 1}), ("2 workers", {"workers": 2})]
        cluster = None
        if not args.no_dask:
            from mfr_analysis.dask_clean import local_cluster

            cluster = local_cluster(2)
            runs.append(("Dask LocalCluster, 2 workers", {"scheduler": cluster.scheduler_address}))
        try:
            for label, how in runs:
                batch = root / label.replace(" ", "-").replace(",", "")
                batch.mkdir()
                start = time.perf_counter()
                results = run_jobs(slices, batch, progress=False, **how)
                timings[label] = time.perf_counter() - start
                failed = sum(bool(r.error) for r in results)
                print(f"{len(slices)}-site batch, {label}: {timings[label]:.1f} s "
                      f"({timings[label] / len(slices):.1f} s per report, {failed} failed)",
                      flush=True)
        finally:
            if cluster is not None:
                cluster.close()
        print(f"speed-up 2 workers vs 1: {timings['1 worker'] / timings['2 workers']:.2f}x")


if __name__ == "__main__":
    main()
