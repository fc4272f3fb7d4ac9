"""Benchmark the benchmarking model: ``python benchmarks/bench_benchmarking.py``.

Generates a session table of ``--clients`` clients (default 200,000) seen by ``--clinicians``
clinicians (default 500) at ``--sites`` sites (default 50), 3-7 sessions each (about 1M
sessions), with every intake factor, planted site and clinician effects and case mix; then
times ``fit_risk`` (the fast path: OLS + moment variance components) and
``benchmark`` by clinician and by site on that fit. ``--mixed N`` also times the exact
MixedLM fit on the first N clients' sessions. The target: the whole benchmarking model at
200,000 clients / 500 clinicians in under 120 s on two cores. Prints figures; asserts none.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from mfr_analysis.benchmarking import benchmark, fit_risk

AGE_BANDS = np.array(["<30", "30-44", "45-59", "60-74", "75+"], dtype=object)
DURATIONS = np.array(["acute", "subacute", "chronic"], dtype=object)
GROUPS = np.array(["athlete", "senior", "desk_worker", "rehab", "chronic_pain"], dtype=object)
TECHNIQUES = np.array(["practitioner", "foam_roller", "lacrosse_ball"], dtype=object)


def synthetic_network(n_clients: int, n_clinicians: int, n_sites: int,
                      seed: int = 0) -> pd.DataFrame:
    """Sessions with site, clinician, intake factors and planted unit effects."""
    rng = np.random.default_rng(seed)
    clinician_site = rng.integers(0, n_sites, n_clinicians)
    clinician = rng.integers(0, n_clinicians, n_clients)
    site = clinician_site[clinician]
    effect = rng.normal(0, 0.3, n_sites)[site] + rng.normal(0, 0.3, n_clinicians)[clinician]
    age = rng.integers(0, 5, n_clients)
    duration = rng.integers(0, 3, n_clients)
    pre = np.clip(rng.normal(5.5, 1.5, n_clients), 0, 10)
    mean_change = (-1.5 - 0.3 * (pre - 5.5) + 0.3 * age + 0.5 * duration + effect
                   + rng.normal(0, 1.2, n_clients))
    per_client = rng.integers(3, 8, n_clients)
    row = np.repeat(np.arange(n_clients), per_client)
    n = row.size
    change = mean_change[row] + rng.normal(0, 0.8, n)
    return pd.DataFrame({
        "client_id": pd.array(np.char.add("c", row.astype(str)), dtype="string"),
        "site": pd.Categorical(np.char.add("site", site[row].astype(str))),
        "clinician": pd.array(np.char.add("k_", clinician[row].astype(str)), dtype="string"),
        "arm": pd.Categorical(["mfr"] * n),
        "audience_group": pd.Categorical(GROUPS[rng.integers(0, 5, n_clients)][row]),
        "age_band": pd.Categorical(AGE_BANDS[age][row]),
        "sex": pd.Categorical(np.where(rng.random(n_clients) < 0.6, "female", "male")[row]),
        "symptom_duration_band": pd.Categorical(DURATIONS[duration][row]),
        "technique": pd.Categorical(TECHNIQUES[rng.integers(0, 3, n)]),
        "pain_pre": pre[row], "pain_post": pre[row] + change,
    })


def main() -> None:
    """Time the fast path at scale (and MixedLM on a subset when asked)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200_000)
    parser.add_argument("--clinicians", type=int, default=500)
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--mixed", type=int, default=0,
                        help="also time MixedLM on this many clients (0: skip)")
    args = parser.parse_args()
    sessions = synthetic_network(args.clients, args.clinicians, args.sites)
    print(f"{len(sessions):,} sessions, {args.clients:,} clients, {args.clinicians} "
          f"clinicians, {args.sites} sites")
    start = time.perf_counter()
    fit = fit_risk(sessions, "pain", method="moments")
    fitted = time.perf_counter()
    by_clinician = benchmark(sessions, "clinician", fit=fit)
    by_site = benchmark(sessions, "site", fit=fit)
    done = time.perf_counter()
    print(f"fit_risk (moments): {fitted - start:.1f} s; ICC site {fit.icc('site'):.3f}, "
          f"clinician {fit.icc('clinician'):.3f}")
    print(f"benchmark by clinician and by site: {done - fitted:.1f} s "
          f"({len(by_clinician.units)} + {len(by_site.units)} rows)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"peak memory {peak:.2f} GiB")
    if args.mixed:
        keep = sessions["client_id"].isin(sessions["client_id"].unique()[:args.mixed])
        subset = sessions.loc[keep.to_numpy()]
        t0 = time.perf_counter()
        exact = fit_risk(subset, "pain", method="mixed")
        t1 = time.perf_counter()
        fast = fit_risk(subset, "pain", method="moments")
        print(f"MixedLM on {args.mixed:,} clients: {t1 - t0:.1f} s (moments "
              f"{time.perf_counter() - t1:.1f} s); ICC clinician {exact.icc('clinician'):.3f} "
              f"vs {fast.icc('clinician'):.3f}")
    print(f"{done - start:.1f}")


if __name__ == "__main__":
    main()
