"""Wall time of the reports: `make report` on the sample, and a 5-slice batch on 1 and 2 workers.

    python benchmarks/bench_report.py [--logs data/sample/logs]

Prints one line per measurement, as figures (seconds). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mfr_analysis.report.run import ReportOptions, plan_jobs, run_jobs, run_reports

REPO = Path(__file__).resolve().parents[1]


# a fixed, public key for benchmarks only (a real key is secret and random)
BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=REPO / "data" / "sample" / "logs")
    args = parser.parse_args()
    os.environ.setdefault("MFR_PSEUDONYM_KEY", BENCHMARK_KEY)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "make-report"
        start = time.perf_counter()
        run_reports([args.logs], out, by="audience_group", workers=os.cpu_count(), progress=False)
        total = time.perf_counter() - start
        print(f"make-report equivalent (clean + 7 notebooks, {os.cpu_count()} workers): "
              f"{total:.1f} s")
        sessions = out / "data" / "sessions.parquet"
        jobs, _ = plan_jobs(sessions, out / "data" / "cleaning_report.json", out,
                            "audience_group", ReportOptions())
        slices = [job for job in jobs if job.parameters.get("slice_column")][:5]
        timings = {}
        for workers in (1, 2):
            batch = Path(folder) / f"batch-{workers}"
            batch.mkdir()
            start = time.perf_counter()
            results = run_jobs(slices, batch, workers=workers, progress=False)
            timings[workers] = time.perf_counter() - start
            failed = sum(bool(r.error) for r in results)
            print(f"5-slice batch, {workers} worker(s): {timings[workers]:.1f} s "
                  f"({timings[workers] / len(slices):.1f} s per report, {failed} failed)")
        print(f"speed-up 2 workers vs 1: {timings[1] / timings[2]:.2f}x")


if __name__ == "__main__":
    main()
