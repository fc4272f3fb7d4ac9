"""Command line: ``mfr-analysis simulate | clean | claims | report``.

Only this module configures logging; every error reaches the user as one line and a
non-zero exit code, never a traceback (a traceback with locals could print patient rows).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from mfr_analysis import __version__
from mfr_analysis.settings import DEFAULTS

app = typer.Typer(
    name="mfr-analysis",
    help="Test the claimed benefits of myofascial release on your own session logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)
log = logging.getLogger("mfr_analysis")
T = TypeVar("T")


class DateOrder(StrEnum):
    dmy = "dmy"
    mdy = "mdy"


class OutputFormat(StrEnum):
    json = "json"
    csv = "csv"


class Correction(StrEnum):
    holm = "holm"
    fdr_bh = "fdr_bh"


class Engine(StrEnum):
    pandas = "pandas"
    dask = "dask"


class SliceBy(StrEnum):
    audience_group = "audience_group"
    site = "site"


# option defaults: the analysis settings' own (mfr_analysis.settings)
DEFAULT_CORRECTION = Correction(DEFAULTS.correction)
DEFAULT_DATE_ORDER = DateOrder(DEFAULTS.date_order)

InputsArg = Annotated[
    list[Path], typer.Argument(metavar="INPUT", help="Raw logs (files or folders), or one or "
                               "more clean sessions.parquet made with the same key.")
]
MappingOpt = Annotated[
    Path | None, typer.Option("--mapping", help="YAML/TOML file: raw header -> column.")
]
DateOrderOpt = Annotated[
    DateOrder, typer.Option("--date-order", help="How to read 05/03/2024: dmy or mdy.")
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
]
AlphaOpt = Annotated[
    float, typer.Option(help="Significance level, after correction (above 0, at most 0.5).")
]
CorrectionOpt = Annotated[Correction, typer.Option(help="Multiplicity correction.")]
MinClientsOpt = Annotated[
    int, typer.Option(help="Fewest clients in a claim x group cell to fit a model (>= 2).")
]

McidOpt = Annotated[
    list[str] | None,
    typer.Option("--mcid", help="Override an MCID, e.g. --mcid pain=1.5 (repeatable)."),
]


def _mcid_overrides(pairs: list[str] | None) -> dict[str, float]:
    """Parse ``outcome=value`` pairs of --mcid; a malformed pair is a one-line error."""
    from mfr_analysis.errors import InputError

    overrides: dict[str, float] = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        try:
            overrides[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"--mcid {pair!r}: expected OUTCOME=NUMBER, e.g. pain=1.5") from None
    return overrides


def _show_progress(requested: bool | None) -> bool:
    """Progress bars when asked, else only when stderr is a terminal (quiet in CI and pipes)."""
    return sys.stderr.isatty() if requested is None else requested


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"mfr-analysis: error: {message}", err=True)
    return typer.Exit(code)


def _run(step: Callable[[], T]) -> T:
    """Run one command body, turning every failure into one clear line and an exit code."""
    from mfr_analysis.errors import UserFacingError

    try:
        return step()
    except UserFacingError as error:
        raise _fail(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise _fail(f"{error.strerror}: {error.filename}") from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    except Exception as error:  # the last guard: one line, and a way to see more
        if os.environ.get("MFR_DEBUG"):
            raise
        from mfr_analysis.redact import excerpt_message

        # the text may quote data (a cell, a row): identifiers masked, values cut short
        first = excerpt_message(error)
        raise _fail(
            f"unexpected {type(error).__name__}: {first} (set MFR_DEBUG=1 for details)", 1
        ) from None


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mfr-analysis {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Test the claimed benefits of myofascial release on your own session logs."""
    _configure_logging(verbose)


@app.command()
def simulate(
    clients: Annotated[int, typer.Option("--clients", min=1, help="Number of clients.")] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 1,
    out: Annotated[
        Path, typer.Option("--out", help="Log file to write: .csv, .tsv, .xlsx, .jsonl, .parquet")
    ] = Path("simulated_sessions.csv"),
) -> None:
    """Write realistic messy session logs and, beside them, the truth of every planted effect."""

    def step() -> None:
        from mfr_analysis.simulate import write_simulation

        written = write_simulation(clients, seed, out)
        for kind, path in written.items():
            typer.echo(f"{kind}: {path}")

    _run(step)


@app.command()
def clean(
    inputs: Annotated[list[Path], typer.Argument(help="Raw log files or folders of them.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    mapping: MappingOpt = None,
    date_order: DateOrderOpt = DEFAULT_DATE_ORDER,
    progress: ProgressOpt = None,
    engine: Annotated[
        Engine, typer.Option("--engine", help="pandas (in memory) or dask (partitioned, "
                             "larger than memory; writes sessions.parquet as a folder).")
    ] = Engine.pandas,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address "
                                 "(tcp://host:8786); default: a local cluster. Needs "
                                 "--engine dask.")
    ] = None,
    blocksize: Annotated[
        str | None, typer.Option("--blocksize", metavar="SIZE", help="Bytes of delimited text "
                                 "per Dask partition, e.g. 64MB, 128MiB, 1GB or a byte count "
                                 "(default 128MiB). Needs --engine dask.")
    ] = None,
    workers: Annotated[
        str | None, typer.Option("--workers", metavar="N", help="Worker processes of the "
                                 "local Dask cluster (default: one per core; at most 2 per "
                                 "core and 1 GiB of memory each). Needs --engine dask; not "
                                 "with --scheduler.")
    ] = None,
) -> None:
    """Clean raw logs into sessions.parquet, quarantine.csv and cleaning_report.json."""

    def step() -> None:
        from mfr_analysis.config import check_workers
        from mfr_analysis.errors import InputError
        from mfr_analysis.pipeline import run_clean

        for name, value in (("--scheduler", scheduler), ("--blocksize", blocksize),
                            ("--workers", workers)):
            if value is not None and engine is not Engine.dask:
                raise InputError(f"{name} needs --engine dask")
        if workers is not None and scheduler is not None:
            raise InputError("--workers starts a local cluster: not with --scheduler (the "
                             "cluster there already has its workers)")
        n_workers = None
        if workers is not None:
            try:
                n_workers = int(workers)
            except ValueError:
                n_workers = 0
            if n_workers < 1:
                raise InputError(f"--workers {workers!r}: expected a whole number of at least 1")
            check_workers(n_workers)  # bounded by the machine's cores and memory
        size = None
        if blocksize is not None:
            from dask.utils import parse_bytes

            try:
                size = parse_bytes(blocksize) if blocksize.strip() else 0
            except (ValueError, OverflowError):
                size = 0
            if size < 1:
                raise InputError(f"--blocksize {blocksize!r}: expected a positive size such as "
                                 "64MB, 128MiB, 1GB or a number of bytes")
        report = run_clean(inputs, out, mapping=mapping, date_order=date_order.value,
                           progress=_show_progress(progress), engine=engine.value,
                           scheduler=scheduler, blocksize=size, n_workers=n_workers)
        typer.echo(
            f"rows in {report['rows_in']}: clean {report['rows_clean']}, "
            f"quarantined {report['rows_quarantined']}, duplicate {report['rows_duplicate']} "
            f"-> {out}"
        )

    _run(step)


@app.command()
def claims(
    input_path: InputsArg,
    out: Annotated[Path, typer.Option("--out", help="File to write the claims table to.")],
    output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.json,
    alpha: AlphaOpt = DEFAULTS.alpha,
    correction: CorrectionOpt = DEFAULT_CORRECTION,
    min_clients: MinClientsOpt = DEFAULTS.min_clients,
    mcid: McidOpt = None,
    mapping: MappingOpt = None,
    date_order: DateOrderOpt = DEFAULT_DATE_ORDER,
    progress: ProgressOpt = None,
    in_memory_sessions: Annotated[
        int, typer.Option("--in-memory-sessions", min=0, help="A clean dataset with more "
                          "sessions is reduced on a Dask cluster to per-client sums (same "
                          "results, memory grows with clients, not sessions).")
    ] = 2_000_000,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler for that reduction "
                                 "(tcp://host:8786; default: a local cluster). Given, the "
                                 "reduction always runs there.")
    ] = None,
) -> None:
    """Test every claim overall and per audience group; write the tidy claims table.

    INPUT is raw logs, or one or several clean sessions.parquet tables (e.g. one per site),
    which are combined only when the same pseudonym key made them."""

    def step() -> None:
        from mfr_analysis.claims import evaluate_claims
        from mfr_analysis.io import refuse_output_over_inputs, write_table
        from mfr_analysis.pipeline import clean_parquets, input_files, load_sessions
        from mfr_analysis.settings import AnalysisSettings

        refuse_output_over_inputs([out], input_files(input_path))  # before any work
        settings = AnalysisSettings(alpha=alpha, correction=correction.value,
                                    min_clients=min_clients,
                                    mcid_overrides=_mcid_overrides(mcid),
                                    date_order=date_order.value)
        options = {"settings": settings, "progress": _show_progress(progress)}
        tables = clean_parquets(input_path)  # each folder checked against its manifest
        if tables is not None and len(tables) == 1:  # a clean dataset, maybe beyond memory
            from mfr_analysis.scale import evaluate_claims_at_scale

            table = evaluate_claims_at_scale(
                tables[0], scheduler=scheduler,
                in_memory_max=0 if scheduler else in_memory_sessions, **options)
        else:  # raw logs, or several clean tables of one key: combined in memory
            sessions = load_sessions(input_path, mapping=mapping,
                                     date_order=settings.date_order)
            table = evaluate_claims(sessions, **options)
        write_table(table, out, output_format.value)
        counts = table["verdict"].value_counts()
        typer.echo(
            f"{len(table)} claim x group rows -> {out} ("
            + ", ".join(f"{verdict} {n}" for verdict, n in counts.items())
            + ")"
        )

    _run(step)


@app.command()
def report(
    input_path: InputsArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for the HTML reports.")],
    by: Annotated[
        SliceBy | None, typer.Option("--by", help="Also one report per audience group or site.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Parallel report runs (default: one per "
                                 "core; at most two per core, as memory allows).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Run the slices as tasks on this Dask "
                                 "cluster (tcp://host:8786) instead of local processes.")
    ] = None,
    title: Annotated[str, typer.Option(help="Report title (at most 120 characters).")] = (
        "Myofascial release claims"),
    alpha: AlphaOpt = DEFAULTS.alpha,
    correction: CorrectionOpt = DEFAULT_CORRECTION,
    min_clients: MinClientsOpt = DEFAULTS.min_clients,
    mcid: McidOpt = None,
    min_reported_clients: Annotated[
        int, typer.Option(help="Counts of fewer clients are suppressed (CMS rule: 11; below "
                          "11 only for internal use).")
    ] = DEFAULTS.min_reported_clients,
    mapping: MappingOpt = None,
    date_order: DateOrderOpt = DEFAULT_DATE_ORDER,
    progress: ProgressOpt = None,
) -> None:
    """Run the report notebooks with papermill and write self-contained HTML plus an index.

    Every option is checked before any work. Exit codes: 0 all reports written, 1 some
    report failed (named on stderr; the index lists it), 2 refused, 130 interrupted (Ctrl-C
    or SIGTERM; the previous report in --out stays as it was).
    """
    from mfr_analysis.report.run import SlicesFailed, sigterm_as_interrupt

    def step() -> SlicesFailed | None:
        from mfr_analysis.report.run import ReportOptions, run_reports
        from mfr_analysis.settings import AnalysisSettings

        settings = AnalysisSettings(alpha=alpha, correction=correction.value,
                                    min_clients=min_clients,
                                    mcid_overrides=_mcid_overrides(mcid),
                                    min_reported_clients=min_reported_clients,
                                    date_order=date_order.value)
        options = ReportOptions(title=title, mapping=str(mapping) if mapping else "",
                                settings=settings)
        try:
            index = run_reports(
                input_path,
                out,
                by=by.value if by else None,
                workers=workers,
                scheduler=scheduler,
                options=options,
                progress=_show_progress(progress),
            )
        except SlicesFailed as failure:  # exit 1, not the 2 of a refused run (below)
            return failure
        typer.echo(f"reports -> {index}")
        return None

    with sigterm_as_interrupt():
        failure = _run(step)
    if failure is not None:
        typer.echo(f"mfr-analysis: error: {failure}", err=True)
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``mfr-analysis`` console script."""
    app()


if __name__ == "__main__":
    main()
