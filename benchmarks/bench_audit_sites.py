"""Time of the exact disclosure audit on a site folder (the block audit above the budget).

    python benchmarks/bench_audit_sites.py [--clients 4000] [--sites 20]

Simulates a clinic network (:func:`mfr_analysis.simulate.write_network`), cleans it, plans
the ``--by site`` folder (claims of the pooled report and of every site) and prints the
folder's size, the largest block's cost and the time spent in the audit (all rounds) and in
the whole plan. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mfr_analysis import privacy_audit
from mfr_analysis.claims import evaluate_claims
from mfr_analysis.pipeline import load_sessions, run_clean
from mfr_analysis.simulate import write_network

BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--sites", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("MFR_PSEUDONYM_KEY", BENCHMARK_KEY)
    from mfr_analysis.report import disclosure

    spent = {"audit": 0.0, "rounds": 0, "found": 0, "sets": 0, "cost": 0}
    for name in ("audit_blocks", "audit_disclosure"):
        original = getattr(privacy_audit, name)

        def timed(*a, _original=original, **k):
            start = time.perf_counter()
            result = _original(*a, **k)
            spent["audit"] += time.perf_counter() - start
            spent["rounds"] += 1
            spent["found"] = len(result[0])
            spent["sets"] = len(a[0])
            spent["cost"] = privacy_audit.block_cost(a[0], a[1])
            return result
        setattr(privacy_audit, name, timed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        log = write_network(root / "logs.csv", args.clients, args.sites, seed=1)["log"]
        run_clean([log], root / "clean", progress=False)
        sessions = load_sessions([root / "clean" / "sessions.parquet"])
        print(f"{len(sessions):,} sessions of {sessions['client_id'].nunique():,} clients, "
              f"{sessions['site'].nunique()} sites", flush=True)
        start = time.perf_counter()
        plan = disclosure.plan_folder(sessions, "site", evaluate_claims, minimum=11)
        total = time.perf_counter() - start
    print(f"plan_folder: {total:.1f} s, of which the audit {spent['audit']:.1f} s "
          f"({spent['rounds']} audit calls); {len(plan.slices)} reports, "
          f"{len(plan.withheld)} withheld, {len(plan.plan.count_hidden)} count-only cells "
          f"({spent['found']} of them added by the audit); {spent['sets']:,} audited counts, "
          f"largest block {spent['cost']:,} (budget {disclosure.AUDIT_BUDGET:,})")


if __name__ == "__main__":
    main()
