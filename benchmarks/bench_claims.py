"""Benchmark the claims engine: ``python benchmarks/bench_claims.py --clients N``.

Generates a derived session table with about five sessions per client (planted effects,
all five audience groups, three ROM measures, no control arm), then times
``evaluate_claims`` on it. The last line printed is the evaluation time in seconds; the
target is 200,000 clients (about 1M sessions) in under two minutes on two cores.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import pandas as pd

GROUPS = ["athlete", "senior", "desk_worker", "rehab", "chronic_pain"]
MEASURES = ["knee_flexion_deg", "hip_flexion_deg", "ankle_dorsiflexion_deg",
            "sit_and_reach_cm"]


def synthetic_sessions(n_clients: int, seed: int = 0, control_share: float = 0.0) -> pd.DataFrame:
    """A derived session table with 3-7 sessions per client (mean 5) and planted effects."""
    rng = np.random.default_rng(seed)
    per_client = rng.integers(3, 8, n_clients)
    client = np.repeat(np.arange(n_clients), per_client)
    n = client.size
    starts = np.concatenate([[0], np.cumsum(per_client)[:-1]])
    index = np.arange(n) - starts[client] + 1
    group = np.array(GROUPS, dtype=object)[rng.integers(0, len(GROUPS), n_clients)][client]
    control = (rng.random(n_clients) < control_share)[client]
    spw = rng.uniform(0.5, 4, n_clients)[client]
    weeks = (index - 1) / spw
    u = rng.normal(0, 1, n_clients)[client]
    slow = rng.random(n) < 0.5
    breathing = rng.random(n) < 0.5
    practitioner = rng.random(n) < 0.3
    pain_pre = np.clip(6 + u - 0.1 * weeks + rng.normal(0, 1, n), 0, 10)
    pain_change = np.where(control, -0.5, -1.5 - 0.3 * slow) + rng.normal(0, 1.2, n)
    pain_post = np.clip(pain_pre + pain_change, 0, 10)
    tight_pre = np.clip(6 + rng.normal(0, 1.3, n), 0, 10)
    tight_post = np.clip(tight_pre - 0.5 + rng.normal(0, 1, n), 0, 10)
    stress_pre = np.clip(5 + rng.normal(0, 1.3, n), 0, 10)
    stress_post = np.clip(stress_pre + rng.normal(0, 1, n), 0, 10)
    measure = np.array(MEASURES, dtype=object)[rng.integers(0, len(MEASURES), n_clients)][client]
    rom_pre = 90 + rng.normal(0, 10, n_clients)[client] + rng.normal(0, 3, n)
    rom_post = rom_pre + np.where(group == "athlete", 6.0, 2.0) + rng.normal(0, 3, n)
    pressure = np.round(rng.uniform(1, 10, n))
    adverse = rng.random(n) < 1 / (1 + np.exp(3.5 - 0.15 * (pressure - 5)))
    followup = np.clip(pain_pre - 1 + rng.normal(0, 1, n), 0, 10)
    ids = np.char.add("c_", np.char.zfill(np.arange(n_clients).astype(str), 16))
    return pd.DataFrame({
        "session_id": np.char.add("s", np.arange(n).astype(str)),
        "client_id": pd.array(ids[client], dtype="string"),
        "audience_group": pd.Categorical(group, categories=GROUPS),
        "arm": pd.Categorical(np.where(control, "control", "mfr"), ["mfr", "control"]),
        "technique": pd.Categorical(np.where(practitioner, "practitioner", "foam_roller")),
        "delivery": pd.Categorical(np.where(practitioner, "practitioner", "self")),
        "pressure": pressure,
        "pace": pd.Categorical(np.where(slow, "slow", "fast"), ["slow", "fast"]),
        "deep_breathing": pd.array(breathing, dtype="boolean"),
        "pain_pre": pain_pre, "pain_post": pain_post, "pain_followup": followup,
        "followup_hours": 24.0,
        "rom_measure": pd.Categorical(measure, categories=MEASURES),
        "rom_pre": rom_pre, "rom_post": rom_post,
        "tightness_pre": tight_pre, "tightness_post": tight_post,
        "stress_pre": stress_pre, "stress_post": stress_post,
        "adverse_event": pd.Categorical(np.where(adverse, "bruising", "none")),
        "session_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.round(weeks * 7),
                                                                       unit="D"),
        "pain_change": pain_post - pain_pre, "rom_change": rom_post - rom_pre,
        "tightness_change": tight_post - tight_pre, "stress_change": stress_post - stress_pre,
        "session_index": pd.array(index, dtype="Int64"), "weeks_since_start": weeks,
        "sessions_per_week": spw,
    })


def main(argv: list[str] | None = None) -> int:
    """Generate the table, time the evaluation, print a summary and the seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-share", type=float, default=0.0,
                        help="share of clients in a control arm (default 0: uncontrolled)")
    args = parser.parse_args(argv)
    from mfr_analysis.claims import evaluate_claims

    started = time.perf_counter()
    sessions = synthetic_sessions(args.clients, args.seed, args.control_share)
    generated = time.perf_counter() - started
    print(f"generated {len(sessions):,} sessions of {args.clients:,} clients "
          f"in {generated:.1f} s", file=sys.stderr)
    started = time.perf_counter()
    table = evaluate_claims(sessions)
    seconds = time.perf_counter() - started
    counts = table["verdict"].value_counts().to_dict()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(table)} rows; verdicts {counts}; peak memory {peak:,.0f} MB", file=sys.stderr)
    print(f"{seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
