"""Every performance goal in one table: ``make bench`` (``python benchmarks/run_all.py``).

Each row times a piece of work and the floor of the same work (the least any tool must do
for it) in the same run, at two sizes, and prints both times, their ratio, the peak memory of
the whole process tree of the work (the measured process and every child it starts, such as
Dask workers and Jupyter kernels, summed and sampled every 0.1 s) and whether the goal holds.

Every measurement runs in a fresh child process (``--child``), so one run's memory and
imports never help the next; the two sides of a row alternate (work, floor, work, floor...)
and the best of ``--repeat`` runs of each is kept, as a busy machine only ever slows a run.
Inputs are generated once, before any timing, in a temporary folder (``BENCH_TMP`` to
choose where: the 50M-row input needs about 12 GB of disk).

    python benchmarks/run_all.py                 # the full table (about 40 min on 2 cores)
    python benchmarks/run_all.py --quick         # small sizes, to try the harness (3 min)
    python benchmarks/run_all.py --only clean --only claims --repeat 3
    python benchmarks/run_all.py --markdown benchmarks/latest.md

Not a test: nothing is asserted; the ``goal`` column says which goals hold on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = REPO / "data" / "sample" / "logs"
# a fixed, public key for benchmarks only (a real key is secret and random)
BENCHMARK_KEY = "e2b7f04a9c1d58e36b0a7f2c4d9e81b5a3c6f0d7e4b2a9c85d1f36e07b4a2c9d"
GIB = 2 ** 30
# the sizes the goals of issue 15 name: a goal is judged at its size only
GOAL_ROWS, GOAL_CLIENTS, GOAL_SCALE_ROWS = 10_000_000, 1_000_000, 50_000_000


# ----------------------------------------------------------------------------- memory ---

class TreePeak:
    """Largest total RSS of one process and all its descendants, sampled in a thread; with
    ``limit`` (bytes), the whole tree is killed once it holds more (``stopped`` is then set):
    a run that would exhaust the machine ends as a measured failure, not a lost table."""

    def __init__(self, pid: int, interval: float = 0.1, limit: int | None = None) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.limit = limit
        self.stopped = False
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            tree = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in tree:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            if self.limit is not None and self.peak > self.limit and not self.stopped:
                self.stopped = True
                self._kill_tree()
            self._stop.wait(self.interval)

    def _kill_tree(self) -> None:
        try:
            tree = [*self.process.children(recursive=True), self.process]
        except psutil.Error:
            return
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())

    @property
    def gib(self) -> float:
        return self.peak / GIB


@dataclass
class Run:
    """One timed child: the seconds it reports for its work and its tree's peak memory."""

    seconds: float
    peak_gib: float
    info: dict = field(default_factory=dict)


def run_child(kind: str, *args: str, limit_gib: float | None = None) -> Run:
    """Run ``run_all.py --child kind args`` and read the JSON line it prints last; a child
    whose process tree outgrows ``limit_gib`` is killed and comes back as a stopped run
    (its seconds until then, ``info["stopped"]`` set)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, *args]
    env = {**os.environ, "MFR_PSEUDONYM_KEY": os.environ.get("MFR_PSEUDONYM_KEY",
                                                              BENCHMARK_KEY)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    start = time.perf_counter()
    limit = None if limit_gib is None else int(limit_gib * GIB)
    with TreePeak(proc.pid, limit=limit) as peak:
        out, err = proc.communicate()
    if peak.stopped:
        return Run(time.perf_counter() - start, peak.peak / GIB,
                   {"stopped": True, "kernel_seconds": math.nan})
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-3:]
        raise RuntimeError(f"{kind} failed: {' | '.join(tail)}")
    result = json.loads(out.strip().splitlines()[-1])
    return Run(float(result.pop("seconds")), peak.peak / GIB, result)


# ----------------------------------------------------------------------------- children ---

KERNEL_SECONDS: list[float] = []  # of the last _timed work in this child (and its children)


def _cpu_kernel() -> float:
    import resource

    return sum(resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _timed(work: Callable[[], object]) -> tuple[float, object]:
    start, kernel = time.perf_counter(), _cpu_kernel()
    value = work()
    KERNEL_SECONDS[:] = [_cpu_kernel() - kernel]
    return time.perf_counter() - start, value


def child(kind: str, args: Sequence[str]) -> dict:
    """The measured work of one child process; returns what it prints (seconds first)."""
    if kind == "read-csv":  # floor of cleaning: a bare multi-threaded Arrow CSV read
        import pyarrow.csv as pacsv

        seconds, table = _timed(lambda: pacsv.read_csv(args[0]))
        return {"seconds": seconds, "rows": table.num_rows}
    if kind == "clean":  # args: csv, out, engine
        from mfr_analysis.pipeline import run_clean

        seconds, report = _timed(lambda: run_clean([args[0]], args[1], progress=False,
                                                   engine=args[2]))
        return {"seconds": seconds, "rows": report["rows_in"]}
    if kind == "bare-papermill":  # floor of a report: papermill runs of an import-only notebook
        import papermill

        notebook, count = Path(args[0]), int(args[1])

        def bare() -> None:
            for i in range(count):
                papermill.execute_notebook(str(notebook), str(notebook.with_name(f"out{i}.ipynb")),
                                           progress_bar=False, kernel_name="python3")
        seconds, _ = _timed(bare)
        return {"seconds": seconds, "notebooks": count}
    if kind == "report":  # args: logs, out, workers
        from mfr_analysis.report.run import run_reports

        seconds, _ = _timed(lambda: run_reports([args[0]], args[1], by="audience_group",
                                                workers=int(args[2]), progress=False))
        pages = len(list(Path(args[1]).glob("*.html"))) - 1  # without the index
        return {"seconds": seconds, "notebooks": pages}
    if kind == "batch":  # args: a report folder made by "report", workers, slices
        from mfr_analysis.report.run import ReportOptions, plan_jobs, protect_folder, run_jobs

        out, workers, count = Path(args[0]), int(args[1]), int(args[2])
        sessions, options = out / "data" / "sessions.parquet", ReportOptions()
        folder = protect_folder(sessions, "audience_group", options)
        jobs, _ = plan_jobs(sessions, out / "data" / "cleaning_report.json", out,
                            "audience_group", options, folder)
        slices = [job for job in jobs if job.parameters.get("slice_column")][:count]
        target = Path(tempfile.mkdtemp(prefix=f"batch-{workers}-", dir=out.parent))
        seconds, results = _timed(lambda: run_jobs(slices, target, workers=workers,
                                                   progress=False))
        failed = sum(bool(r.error) for r in results)
        return {"seconds": seconds, "notebooks": len(slices), "failed": failed}
    if kind == "claims":  # args: a derived session table (parquet)
        import pandas as pd

        from mfr_analysis.claims import evaluate_claims
        from mfr_analysis.pipeline import release_arrow_memory

        sessions = pd.read_parquet(args[0])
        release_arrow_memory()  # as load_sessions does after its read
        seconds, table = _timed(lambda: evaluate_claims(sessions))
        return {"seconds": seconds, "rows": len(sessions), "claims_rows": len(table)}
    if kind == "client-means":  # floor of claims: one pass over the rows, per-client means
        import pandas as pd

        sessions = pd.read_parquet(args[0])
        columns = [c for c in ("pain_pre", "pain_post") if c in sessions]
        seconds, means = _timed(lambda: sessions.groupby("client_id", observed=True)[
            columns].mean())
        return {"seconds": seconds, "rows": len(sessions), "clients": len(means)}
    if kind == "claims-scale":  # args: a Dask-cleaned folder
        from mfr_analysis.dask_claims import evaluate_claims_at_scale

        scratch = Path(args[0]).parent  # the per-client sums on BENCH_TMP's disk too
        seconds, table = _timed(lambda: evaluate_claims_at_scale(args[0], in_memory_max=0,
                                                                 scratch=scratch))
        return {"seconds": seconds, "claims_rows": len(table)}
    if kind == "read-parquet":  # floor of claims at scale: a bare read of the sessions' parts
        import pyarrow.parquet as pq

        seconds, table = _timed(lambda: pq.read_table(Path(args[0]) / "sessions.parquet"))
        return {"seconds": seconds, "rows": table.num_rows}
    raise SystemExit(f"unknown child {kind!r}")


# ----------------------------------------------------------------------------- inputs ---

def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def messy_csv(folder: Path, rows: int) -> Path:
    """``rows`` messy rows (the generator of ``bench_dask_clean.py``), made once per size."""
    path = folder / f"messy-{rows}.csv"
    if not path.exists():
        start = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / "bench_dask_clean.py"), "--rows", str(rows),
                        "--generate-only", str(path)], check=True)
        _say(f"  generated {rows:,} messy rows ({path.stat().st_size / 2**20:,.0f} MiB) in "
             f"{time.perf_counter() - start:.0f} s")
    return path


def simulated_logs(folder: Path, clients: int) -> Path:
    """Messy logs of ``clients`` simulated clients (``mfr-analysis simulate``)."""
    logs = folder / f"logs-{clients}"
    if not logs.exists():
        scratch = folder / f"simulated-{clients}"  # the truth files stay out of the logs
        scratch.mkdir()
        cli = Path(sys.executable).with_name("mfr-analysis")
        subprocess.run([str(cli), "simulate", "--clients", str(clients), "--seed", "11",
                        "--out", str(scratch / "sessions.csv")], check=True,
                       capture_output=True)
        logs.mkdir()
        (scratch / "sessions.csv").rename(logs / "sessions.csv")
    return logs


def derived_sessions(folder: Path, clients: int) -> Path:
    """The synthetic derived session table of ``bench_claims.py`` as parquet."""
    path = folder / f"derived-{clients}.parquet"
    if not path.exists():
        sys.path.insert(0, str(HERE))
        from bench_claims import synthetic_sessions

        synthetic_sessions(clients).to_parquet(path)
    return path


def dask_cleaned(folder: Path, rows: int) -> Path:
    """``rows`` messy rows cleaned by the Dask engine (the input of claims at scale)."""
    out = folder / f"clean-dask-{rows}"
    if not out.exists():
        start = time.perf_counter()
        run_child("clean", str(messy_csv(folder, rows)), str(out), "dask")
        _say(f"  cleaned {rows:,} rows with Dask in {time.perf_counter() - start:.0f} s")
    return out


def import_only_notebook(folder: Path) -> Path:
    """A notebook whose one cell imports what the report notebooks import, and nothing else."""
    import nbformat

    cell = nbformat.v4.new_code_cell(
        "from IPython.display import display\n"
        "from mfr_analysis.claims import evaluate_claims, primary_rows\n"
        "from mfr_analysis.report import disclosure, figures, outcome_views, quality, views\n"
        "from mfr_analysis.report.parameters import check_parameters\n"
        "from mfr_analysis.settings import AnalysisSettings\n")
    path = folder / "imports.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path


# ----------------------------------------------------------------------------- rows ---

@dataclass
class Row:
    """One line of the table."""

    work: str
    size: str
    floor: str
    work_run: Run
    floor_run: Run
    goal: str
    holds: bool | None
    runs: int = 1

    @property
    def ratio(self) -> float:
        return self.work_run.seconds / self.floor_run.seconds


def best_of(repeat: int, *sides: Callable[[], Run]) -> list[Run]:
    """Run the sides in turn, ``repeat`` rounds; keep each side's fastest run, with the
    largest peak of that side's runs (memory does not shrink on a busy machine)."""
    runs: list[list[Run]] = [[] for _ in sides]
    for _ in range(repeat):
        for side, kept in zip(sides, runs, strict=True):
            kept.append(side())
    # a run stopped at the memory ceiling is short because it was cut: never the best
    best = [min(kept, key=lambda r: (bool(r.info.get("stopped")), r.seconds)) for kept in runs]
    for run, kept in zip(best, runs, strict=True):
        run.peak_gib = max(r.peak_gib for r in kept)
    return best


def timed_pairs(sizes: Sequence[int], repeat: int, make_input: Callable[[int], Path],
                work: str, floor: str,
                limit_gib: float | None = None) -> list[tuple[int, Run, Run]]:
    """(size, work run, floor run) per size: children ``work`` and ``floor`` on one input
    (the work's tree killed above ``limit_gib``, see :func:`run_child`)."""
    pairs = []
    for n in sizes:
        path = str(make_input(n))
        done, base = best_of(repeat, lambda p=path: run_child(work, p, limit_gib=limit_gib),
                             lambda p=path: run_child(floor, p))
        pairs.append((n, done, base))
        stopped = " (stopped: over the memory limit)" if done.info.get("stopped") else ""
        _say(f"  {work} {n:,}: {done.seconds:.1f} s, {done.peak_gib:.2f} GiB{stopped}")
    return pairs


def _at_goal(size: int, goal_size: int, holds: bool) -> bool | None:
    """Whether a goal holds, judged only at the size the goal names (else None: the row
    shows how the figure grows; ``--quick`` never reaches it)."""
    return holds if size == goal_size else None


def clean_rows(folder: Path, sizes: Sequence[int], repeat: int) -> list[Row]:
    """Rows 1 and 2: pandas cleaning vs a bare Arrow read; Dask cleaning vs pandas."""
    rows = []
    for n in sizes:
        csv = str(messy_csv(folder, n))
        pandas, read, dask = best_of(  # interleaved: pandas, bare read, dask
            repeat, lambda c=csv: run_child("clean", c, str(folder / "out-pandas"), "pandas"),
            lambda c=csv: run_child("read-csv", c),
            lambda c=csv: run_child("clean", c, str(folder / "out-dask"), "dask"))
        size = f"{n:,} rows"
        rows.append(Row("clean messy rows (pandas engine)", size, "pyarrow.csv.read_csv",
                        pandas, read, "<= 1.5x, peak <= 3 GiB (10M rows)",
                        _at_goal(n, GOAL_ROWS, pandas.seconds / read.seconds <= 1.5
                                 and pandas.peak_gib <= 3), repeat))
        rows.append(Row(f"clean, Dask engine ({os.cpu_count()} workers)", size,
                        "pandas engine, same file", dask, pandas, "<= 1.2x (10M rows)",
                        _at_goal(n, GOAL_ROWS, dask.seconds / pandas.seconds <= 1.2), repeat))
        _say(f"  clean {size}: pandas {pandas.seconds:.1f} s, read {read.seconds:.1f} s, "
             f"dask {dask.seconds:.1f} s")
    return rows


def report_rows(folder: Path, inputs: Sequence[tuple[str, Path]], repeat: int) -> list[Row]:
    """Rows 3 and 4: the report (1 worker) vs bare papermill runs; a batch on 2 workers vs 1."""
    notebook = import_only_notebook(folder)
    rows = []
    for index, (label, logs) in enumerate(inputs):
        at_goal = index == 0  # the goals name the sample
        out = folder / f"report-{logs.name}"
        reports: list[Run] = []

        def report(out: Path = out, logs: Path = logs, reports: list[Run] = reports) -> Run:
            reports.append(run_child("report", str(logs), str(out), "1"))
            return reports[-1]

        def bare(reports: list[Run] = reports) -> Run:
            return run_child("bare-papermill", str(notebook), str(reports[-1].info["notebooks"]))
        work, floor = best_of(repeat, report, bare)
        count = work.info["notebooks"]
        rows.append(Row(f"report, {count} notebooks, 1 worker", label,
                        f"{count} bare papermill runs of an import-only notebook", work, floor,
                        "<= 1.5x (sample)",
                        work.seconds / floor.seconds <= 1.5 if at_goal else None, repeat))
        two, one = best_of(repeat, lambda out=out: run_child("batch", str(out), "2", "5"),
                           lambda out=out: run_child("batch", str(out), "1", "5"))
        rows.append(Row("report batch of 5 slices, 2 workers", label, "the same batch, 1 worker",
                        two, one, "<= 0.6 (sample)",
                        two.seconds / one.seconds <= 0.6 if at_goal else None, repeat))
        _say(f"  reports {label}: {work.seconds:.1f} s vs bare {floor.seconds:.1f} s; batch "
             f"2 workers {two.seconds:.1f} s vs 1 {one.seconds:.1f} s")
    return rows


def claims_rows(folder: Path, sizes: Sequence[int], repeat: int) -> list[Row]:
    """Row 5: the claims engine in memory vs one pass of per-client means."""
    return [Row("claims, in memory", f"{n:,} clients / {work.info['rows']:,} sessions",
                "per-client means (one groupby)", work, floor,
                "<= 45 s, <= 4 GiB (1M clients)",
                _at_goal(n, GOAL_CLIENTS, work.seconds <= 45 and work.peak_gib <= 4), repeat)
            for n, work, floor in timed_pairs(sizes, repeat,
                                              lambda n: derived_sessions(folder, n),
                                              "claims", "client-means")]


def scale_rows(folder: Path, sizes: Sequence[int], repeat: int) -> list[Row]:
    """Row 6: claims at scale on Dask (per-client sums) vs a bare read of the clean parts."""
    return [Row("claims at scale (Dask, per-client sums)", f"{floor.info['rows']:,} sessions",
                "pyarrow read of the clean parts", work, floor,
                "completes, peak <= 8 GiB (50M rows)",
                _at_goal(n, GOAL_SCALE_ROWS, work.peak_gib <= 8
                         and not work.info.get("stopped")), repeat)
            for n, work, floor in timed_pairs(sizes, repeat, lambda n: dask_cleaned(folder, n),
                                              "claims-scale", "read-parquet",
                                              limit_gib=scale_limit_gib())]


def scale_limit_gib() -> float:
    """Memory ceiling of a claims-at-scale run: twice the goal's 8 GiB, at most three
    quarters of this machine (a run past it is stopped and shown as such)."""
    return min(16.0, 0.75 * psutil.virtual_memory().total / GIB)


# ----------------------------------------------------------------------------- table ---

def markdown(rows: Sequence[Row]) -> str:
    """The table as Markdown (also how it is printed)."""
    lines = ["| work | size | floor | work s | floor s | ratio | peak GiB | kernel s | best of "
             "| goal | holds |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        holds = {True: "yes", False: "**no**", None: "(size check)"}[r.holds]
        kernel = "/".join(f"{run.info.get('kernel_seconds', math.nan):.1f}"
                          for run in (r.work_run, r.floor_run))
        stopped = bool(r.work_run.info.get("stopped"))
        work_s = (f"stopped after {r.work_run.seconds:.1f}" if stopped
                  else f"{r.work_run.seconds:.1f}")
        peak = f"over {r.work_run.peak_gib:.2f}" if stopped else f"{r.work_run.peak_gib:.2f}"
        ratio = "" if stopped else f"{r.ratio:.2f}"
        lines.append(f"| {r.work} | {r.size} | {r.floor} | {work_s} | "
                     f"{r.floor_run.seconds:.1f} | {ratio} | {peak} | "
                     f"{kernel} | {r.runs} | {r.goal} | {holds} |")
    lines.append("")
    lines.append("Best of N runs per side, the two sides alternating; peak = largest total RSS "
                 "of the work's process tree (sampled every 0.1 s); kernel s = CPU seconds the "
                 "kernel spent for the work / for the floor (page faults, mostly: on a VM that "
                 "backs memory lazily they can outweigh the work); "
                 f"{os.cpu_count()} cores, {psutil.virtual_memory().total / GIB:.0f} GiB.")
    return "\n".join(lines)


SECTIONS = ("clean", "report", "claims", "scale")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per side (best kept)")
    parser.add_argument("--only", action="append", choices=SECTIONS,
                        help="measure only these sections (repeatable)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        result = child(args.child, rest)
        print(json.dumps({**result, "kernel_seconds": sum(KERNEL_SECONDS)}), flush=True)
        return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sections = args.only or SECTIONS
    clean_sizes = (100_000, 1_000_000) if args.quick else (1_000_000, GOAL_ROWS)
    clients = (20_000, 100_000) if args.quick else (200_000, GOAL_CLIENTS)
    scale = (1_000_000, 5_000_000) if args.quick else (10_000_000, GOAL_SCALE_ROWS)
    simulated = 600 if args.quick else 3000
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mfr-bench-", dir=os.environ.get("BENCH_TMP")) as t:
        folder = Path(t)
        if "clean" in sections:
            _say("cleaning (rows 1-2)")
            rows += clean_rows(folder, clean_sizes, args.repeat)
        if "report" in sections:
            _say("reports (rows 3-4)")
            rows += report_rows(folder, [("sample (3,056 rows)", SAMPLE), (
                f"simulated, {simulated:,} clients", simulated_logs(folder, simulated))],
                args.repeat)
        if "claims" in sections:
            _say("claims in memory (row 5)")
            rows += claims_rows(folder, clients, args.repeat)
        if "scale" in sections:
            _say("claims at scale (row 6)")
            rows += scale_rows(folder, scale, 1)
    table = markdown(rows)
    print(table)
    print(f"\n(all measurements in {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
