"""Benchmark the cleaning step: ``python benchmarks/bench_clean.py --rows N``.

Generates N messy rows once (a few thousand varied base rows with about 2 % planted bad
values and 0.5 % exact duplicates, tiled with distinct client and session ids; vectorised, in
a child process), writes them to a CSV in a temporary directory, then times ``run_clean`` on
it and a bare ``pyarrow.csv.read_csv`` of the same file. ``--repeat K`` times both K times,
interleaved, and keeps the best of each (a shared machine is noisy); ``--csv FILE`` times an
existing file instead. The peak RSS is the cleaning's (taken before any bare read). The last
line printed is the ratio ``clean / bare read``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

BASE_ROWS = 4000

GROUPS = ["athlete", "Athletes", "runner", "senior", "older adult", "Elderly", "desk worker",
          "Office worker", "IT worker", "rehab", "post-op", "Post surgery", "chronic pain",
          "Fibromyalgia", "CLBP"]
ARMS = ["", "", "", "MFR", "treatment", "control", "Sham", "placebo"]
TECHNIQUES = ["foam roller", "Foam Rolling", "therapist", "Manual therapy", "lacrosse ball",
              "tennis ball", "massage stick", "massage gun", ""]
REGIONS = ["calves", "Calf", "quads", "hamstring", "IT band", "glutes", "lower back", "Lumbar",
           "upper back", "neck", "traps", "foot", ""]
PACES = ["slow", "Slow", "fast", "quick", "", "S", "F"]
BOOLS = ["yes", "no", "Y", "N", "1", "0", "", "TRUE", "false"]
ADVERSE = ["none", "None", "", "no", "bruising", "more pain", "numb", "nil", "dizziness"]
SITES = ["North Clinic", "north clinic ", "South", "Central Physio", ""]
MISSING = ["", "n/a", "-", "refused", "NA"]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
ROM = {  # measure spelling -> (low, high, unit kind)
    "knee flexion": (90, 150, "deg"), "hip flexion": (60, 130, "deg"), "SLR": (50, 100, "deg"),
    "ankle dorsiflexion": (5, 45, "deg"), "shoulder flexion": (120, 185, "deg"),
    "neck rotation": (40, 85, "deg"), "sit and reach": (-10, 35, "cm"),
}


# a fixed, public key for benchmarks only (a real key is secret and random)
BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"


def _rating(rng: np.random.Generator, value: float) -> str:
    v = int(round(min(10, max(0, value))))
    style = rng.integers(0, 12)
    if style == 0:
        return f"{v}/10"
    if style == 1:
        return f"{v} out of 10"
    if style == 2:
        return f"{v * 10 + int(rng.integers(0, 10))} mm"
    if style == 3 and 0 < v < 10:
        return f"{v}-{v + 1}"
    if style == 4:
        return WORDS[v]
    if style == 5:
        return str(rng.choice(MISSING))
    return str(v)


def _rom(rng: np.random.Generator, value: float, kind: str) -> str:
    style = rng.integers(0, 6)
    if kind == "cm":
        if style == 0:
            return f"{value / 2.54:.1f} in"
        if style == 1:
            return f'{value / 2.54:.1f}"'
        return f"{value:.0f}" if style < 4 else f"{value:.0f} cm"
    if style == 0:
        return f"{np.deg2rad(value):.3f} rad"
    if style == 1:
        return f"{value:.0f}°"
    if style == 2:
        return f"{value:.0f} deg"
    return f"{value:.0f}"


def _date(rng: np.random.Generator, day: np.datetime64) -> str:
    d = day.astype(object)
    style = rng.integers(0, 6)
    if style == 0:
        return d.strftime("%d/%m/%Y")
    if style == 1:
        return d.strftime("%d.%m.%Y")
    if style == 2:
        return str((day - np.datetime64("1899-12-30")).astype(int))
    if style == 3:
        return d.strftime("%Y-%m-%d") + " 10:30"
    return d.strftime("%Y-%m-%d")


def base_rows(n: int, seed: int = 7) -> dict[str, list[str]]:
    """A few thousand varied messy rows, with about 2 % planted bad values."""
    rng = np.random.default_rng(seed)
    days = np.datetime64("2021-01-01") + rng.integers(0, 1400, n)
    cols: dict[str, list[str]] = {k: [] for k in (
        "Session ID", "Client", "Clinic", "Visit Date", "Client Group", "Arm", "Tool",
        "Body part", "Duration", "Pressure 0-10", "Pace", "Breathing", "Pain before",
        "Pain after", "Pain next day", "Follow-up hours", "ROM test", "ROM before",
        "ROM after", "Stiffness before", "Stiffness after", "Stress before", "Stress after",
        "Adverse event", "Client Name", "Therapist notes", "Room")}
    for i in range(n):
        pain = rng.uniform(2, 9)
        measure = str(rng.choice(list(ROM)))
        lo, hi, kind = ROM[measure]
        rom = rng.uniform(lo, hi)
        row = {
            "Session ID": "", "Client": "",
            "Clinic": str(rng.choice(SITES)),
            "Visit Date": _date(rng, days[i]),
            "Client Group": str(rng.choice(GROUPS)),
            "Arm": str(rng.choice(ARMS)),
            "Tool": str(rng.choice(TECHNIQUES)),
            "Body part": str(rng.choice(REGIONS)),
            "Duration": str(rng.choice(["20", "20 min", "15 mins", "1 h", "30", "45 minutes",
                                        "10", ""])),
            "Pressure 0-10": _rating(rng, rng.uniform(3, 8)),
            "Pace": str(rng.choice(PACES)),
            "Breathing": str(rng.choice(BOOLS)),
            "Pain before": _rating(rng, pain),
            "Pain after": _rating(rng, pain - rng.uniform(0, 3)),
            "Pain next day": _rating(rng, pain - rng.uniform(-1, 2)) if rng.random() < .3 else "",
            "Follow-up hours": str(rng.choice(["24", "48 h", "24 hours", ""])),
            "ROM test": measure,
            "ROM before": _rom(rng, rom, kind),
            "ROM after": _rom(rng, rom + rng.uniform(0, 6), kind),
            "Stiffness before": _rating(rng, rng.uniform(3, 9)),
            "Stiffness after": _rating(rng, rng.uniform(1, 7)),
            "Stress before": _rating(rng, rng.uniform(2, 8)),
            "Stress after": _rating(rng, rng.uniform(1, 7)),
            "Adverse event": str(rng.choice(ADVERSE)),
            "Client Name": str(rng.choice(["Ann Smith", "Bob Jones", "Cy Young"])),
            "Therapist notes": str(rng.choice(["", "felt better", "call back Tuesday"])),
            "Room": str(rng.integers(1, 5)),
        }
        if rng.random() < 0.02:  # plant one bad value
            field, bad = [("Pain before", "12"), ("Visit Date", "31/02/2023"),
                          ("Client Group", "astronaut"), ("Duration", "500"),
                          ("ROM before", "400"), ("Visit Date", "2099-01-01"),
                          ("Pain after", "lots"), ("Client Group", "")][int(rng.integers(0, 8))]
            row[field] = bad
        for k, v in row.items():
            cols[k].append(v)
    return cols


def messy_table(rows: int, seed: int = 7, duplicate_share: float = 0.005) -> pa.Table:
    """Tile the base rows to ``rows`` rows with distinct client and session ids (vectorised)."""
    rng = np.random.default_rng(seed)
    base = base_rows(min(BASE_ROWS, rows), seed)
    nbase = len(base["Visit Date"])
    take = np.arange(rows) % nbase
    # plant exact duplicates: some rows copy the row just before them, ids included
    dup = np.flatnonzero(rng.random(rows) < duplicate_share)
    dup = dup[dup > 0]
    source = np.arange(rows)
    source[dup] = dup - 1
    take = take[source]
    n_clients = max(1, rows // 40)
    client_num = (source // 40) % n_clients  # about 40 sessions per client
    columns = {}
    for name, values in base.items():
        if name == "Session ID":
            columns[name] = pc.binary_join_element_wise(
                "S", pc.cast(pa.array(source), pa.string()), "")
        elif name == "Client":
            columns[name] = pc.binary_join_element_wise(
                "P", pc.cast(pa.array(client_num + 100000), pa.string()), "")
        else:
            dictionary = pa.array(values, pa.string())
            columns[name] = pc.take(dictionary, pa.array(take))
    return pa.table(columns)


def write_messy_csv(path: Path, rows: int, seed: int = 7) -> Path:
    """Write ``rows`` messy rows as a comma-separated UTF-8 file."""
    pacsv.write_csv(messy_table(rows, seed), path)
    return path


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _generate(path: Path, rows: int) -> None:
    """Write the messy CSV in a child process, so its memory is not counted as cleaning's."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--rows", str(rows), "--generate-only", str(path)],
                   check=True)
    size = path.stat().st_size / 2**20
    print(f"generated {rows:,} messy rows ({size:,.0f} MiB) in {time.perf_counter() - t0:.1f} s")


def main(argv: list[str] | None = None) -> None:
    """Generate, clean and time; the last line printed is the ratio clean / bare read."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
    parser.add_argument("--csv", type=Path, default=None,
                        help="time this existing CSV instead of generating one")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each side this many times (interleaved) and keep the best")
    parser.add_argument("--generate-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_only is not None:
        write_messy_csv(args.generate_only, args.rows)
        return

    os.environ.setdefault("MFR_PSEUDONYM_KEY", BENCHMARK_KEY)
    from mfr_analysis.pipeline import run_clean

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = args.csv
        if csv_path is None:
            csv_path = Path(tmp) / "messy.csv"
            _generate(csv_path, args.rows)
        start_rss = _peak_rss_gib()
        clean_times: list[float] = []
        read_times: list[float] = []
        rss = 0.0
        for _ in range(args.repeat):  # interleaved, best of each: robust to a busy machine
            t0 = time.perf_counter()
            report = run_clean([csv_path], Path(tmp) / "out", progress=False)
            clean_times.append(time.perf_counter() - t0)
            if len(clean_times) == 1:
                rss = _peak_rss_gib()  # before any bare read adds its own peak
            t0 = time.perf_counter()
            table = pacsv.read_csv(csv_path)
            read_times.append(time.perf_counter() - t0)
            del table
        clean_s, read_s = min(clean_times), min(read_times)
        rows = report["rows_in"]
        print(f"run_clean: {clean_s:.2f} s, {rows / clean_s:,.0f} rows/s "
              f"(clean {report['rows_clean']:,}, quarantined {report['rows_quarantined']:,}, "
              f"duplicates {report['rows_duplicate']:,}); peak RSS {rss:.2f} GiB "
              f"(before: {start_rss:.2f} GiB); runs: {', '.join(f'{t:.1f}' for t in clean_times)}")
        print(f"pyarrow.csv.read_csv: {read_s:.2f} s ({rows:,} rows); runs: "
              f"{', '.join(f'{t:.1f}' for t in read_times)}")
    print(f"ratio clean/read: {clean_s / read_s:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
