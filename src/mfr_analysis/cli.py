"""Command line: ``mfr-analysis simulate | clean | claims | report``.

Only this module configures logging; every error reaches the user as one line and a
non-zero exit code, never a traceback (a traceback with locals could print patient rows).
What a user needs to know goes to stderr without opening JSON: progress (a bar on a terminal,
one line per step or slice elsewhere; ``--no-progress`` silences it) and the raw columns that
were not recognised, each with the closest canonical column. Help is click's plain layout,
which wraps at 80 columns without cutting option names.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mfr_analysis.settings import DEFAULTS
from mfr_analysis.version import package_version

app = typer.Typer(
    name="mfr-analysis",
    help="Test the claimed benefits of myofascial release on your own session logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # click's plain help: whole option names at 80 columns
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


CLEAN_OPTION_NAMES = {"engine": "--engine", "dask": "--engine dask", "scheduler": "--scheduler",
                      "blocksize": "--blocksize", "n_workers": "--workers"}


class SliceBy(StrEnum):
    audience_group = "audience_group"
    site = "site"


class BenchmarkBy(StrEnum):
    site = "site"
    clinician = "clinician"


# option defaults: the analysis settings' own (mfr_analysis.settings)
DEFAULT_CORRECTION = Correction(DEFAULTS.correction)
DEFAULT_DATE_ORDER = DateOrder(DEFAULTS.date_order)

InputsArg = Annotated[
    list[Path], typer.Argument(metavar="INPUT", help="Raw logs (files or folders), or one or "
                               "more clean sessions.parquet made with the same key.")
]
MappingOpt = Annotated[
    Path | None, typer.Option("--mapping", metavar="FILE",
                              help="YAML/TOML file: raw header -> column.")
]
DateOrderOpt = Annotated[
    DateOrder, typer.Option("--date-order", help="How to read 05/03/2024: dmy or mdy.")
]
ProgressOpt = Annotated[
    bool,
    typer.Option("--progress/--no-progress", help="Progress on stderr: a bar on a terminal, "
                 "else one line per step."),
]
AlphaOpt = Annotated[
    float, typer.Option(metavar="ALPHA",
                        help="Significance level, after correction (above 0, at most 0.5).")
]
CorrectionOpt = Annotated[Correction, typer.Option(help="Multiplicity correction.")]
MinClientsOpt = Annotated[
    int, typer.Option(metavar="N",
                      help="Fewest clients in a claim x group cell to fit a model (>= 2).")
]

McidOpt = Annotated[
    list[str] | None,
    typer.Option("--mcid", metavar="OUTCOME=X",
                 help="Override an MCID, e.g. --mcid pain=1.5 (repeatable)."),
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


UNRECOGNISED_SHOWN = 10  # unrecognised columns listed on stderr; the others are counted
_SECOND_COLUMN = re.compile(r"^(?P<header>.*) \(second column for (?P<column>\w+)\)$")
_UNNAMED = re.compile(r"^\(unnamed column (?P<position>\d+)\)$")


def unrecognised_columns(report: Mapping[str, Any], mapping: Path | None = None) -> list[str]:
    """Lines for stderr on the raw columns that cleaning dropped without knowing them.

    ``report`` is a cleaning report (its ``dropped_columns``: source -> headers). Identifier
    columns (dropped on purpose, listed apart) and headers the ``mapping`` file drops are not
    mentioned; every other header gets the closest canonical column, if one is close. Headers
    are shown as short, masked excerpts (a header can hold data)."""
    from mfr_analysis.read import closest_column, header_key, load_mapping
    from mfr_analysis.redact import excerpt

    dropped_on_purpose = load_mapping(mapping).drop if mapping is not None else frozenset()
    sources: dict[str, list[str]] = {}
    for source, headers in (report.get("dropped_columns") or {}).items():
        for header in headers:
            if header_key(header) not in dropped_on_purpose:
                sources.setdefault(header, []).append(str(source))
    lines = []
    for header, found_in in list(sources.items())[:UNRECOGNISED_SHOWN]:
        where = found_in[0] + (f" and {len(found_in) - 1} more" if len(found_in) > 1 else "")
        second, unnamed = _SECOND_COLUMN.match(header), _UNNAMED.match(header)
        if second:
            lines.append(f"{where}: {excerpt(second['header'], 40)} is a second column for "
                         f"{second['column']}: dropped; use --mapping to choose one")
        elif unnamed:
            lines.append(f"{where}: column {unnamed['position']} has no header: dropped")
        elif hint := closest_column(header):
            lines.append(f"{where}: {excerpt(header, 40)} not recognised — did you mean "
                         f"{hint}? use --mapping")
        else:
            lines.append(f"{where}: {excerpt(header, 40)} not recognised: dropped; use "
                         "--mapping to keep it")
    if len(sources) > UNRECOGNISED_SHOWN:
        lines.append(f"... and {len(sources) - UNRECOGNISED_SHOWN} more columns not recognised "
                     "(all are listed in cleaning_report.json: dropped_columns)")
    return lines


def _say_unrecognised(report: Mapping[str, Any], mapping: Path | None) -> None:
    for line in unrecognised_columns(report, mapping):
        typer.echo(line, err=True)


def _say_unrecognised_in_report(index: Path, mapping: Path | None) -> None:
    """The unrecognised columns of the raw logs a report run cleaned (none for clean input)."""
    from mfr_analysis.config import CLEANING_REPORT_FILE

    path = index.parent / "data" / CLEANING_REPORT_FILE
    if path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
        if "combined_tables" not in report:  # clean tables: said when they were cleaned
            _say_unrecognised(report, mapping)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mfr-analysis {package_version()}")
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


@app.command(short_help="Write simulated messy logs and their truth.")
def simulate(
    clients: Annotated[int, typer.Option("--clients", min=1, metavar="N",
                                         help="Number of clients.")] = 400,
    seed: Annotated[int, typer.Option("--seed", metavar="SEED",
                                      help="Random seed (same seed, same bytes).")] = 1,
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE",
                           help="Log file to write: .csv, .tsv, .xlsx, .jsonl, .parquet")
    ] = Path("simulated_sessions.csv"),
    network: Annotated[
        bool, typer.Option("--network", help="A clinic network: clinician, age, sex and symptom "
                           "duration columns, planted site and clinician effects and case mix "
                           "(truth in <stem>.truth.json).")
    ] = False,
    sites: Annotated[int, typer.Option("--sites", min=2, metavar="N",
                                       help="Sites of the network (with --network).")] = 20,
    clinicians: Annotated[int, typer.Option("--clinicians", min=3, metavar="N",
                                            help="Clinicians of the network (with --network)."
                                            )] = 80,
) -> None:
    """Write realistic messy session logs and, beside them, the truth of every planted effect."""

    def step() -> None:
        from mfr_analysis.simulate import write_network, write_simulation

        written = (write_network(out, clients, sites, clinicians, seed) if network
                   else write_simulation(clients, seed, out))
        for kind, path in written.items():
            typer.echo(f"{kind}: {path}")

    _run(step)


@app.command(short_help="Clean raw logs into a pseudonymised session table.")
def clean(
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUT",
                                                 help="Raw log files or folders of them.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder.")],
    mapping: MappingOpt = None,
    date_order: DateOrderOpt = DEFAULT_DATE_ORDER,
    progress: ProgressOpt = True,
    engine: Annotated[
        Engine, typer.Option("--engine", help="pandas (in memory) or dask (partitioned, "
                             "larger than memory; writes sessions.parquet as a folder).")
    ] = Engine.pandas,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", metavar="ADDRESS", help="Dask scheduler address "
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
        from mfr_analysis.pipeline import check_clean_options, run_clean

        check_clean_options(engine.value, scheduler=scheduler, blocksize=blocksize,
                            n_workers=workers, names=CLEAN_OPTION_NAMES)
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
                           progress=progress, engine=engine.value,
                           scheduler=scheduler, blocksize=size, n_workers=n_workers)
        _say_unrecognised(report, mapping)
        typer.echo(
            f"rows in {report['rows_in']}: clean {report['rows_clean']}, "
            f"quarantined {report['rows_quarantined']}, duplicate {report['rows_duplicate']} "
            f"-> {out}"
        )

    _run(step)


@app.command(short_help="Test every claim; write the claims table.")
def claims(
    input_path: InputsArg,
    out: Annotated[Path, typer.Option("--out", metavar="FILE",
                                      help="File to write the claims table to.")],
    output_format: Annotated[OutputFormat, typer.Option("--format",
                                                        help="Table format.")] = OutputFormat.json,
    alpha: AlphaOpt = DEFAULTS.alpha,
    correction: CorrectionOpt = DEFAULT_CORRECTION,
    min_clients: MinClientsOpt = DEFAULTS.min_clients,
    mcid: McidOpt = None,
    mapping: MappingOpt = None,
    date_order: DateOrderOpt = DEFAULT_DATE_ORDER,
    progress: ProgressOpt = True,
    in_memory_sessions: Annotated[
        int, typer.Option("--in-memory-sessions", min=0, metavar="N", help="A clean dataset "
                          "with more "
                          "sessions is reduced on a Dask cluster to per-client sums (same "
                          "results, memory grows with clients, not sessions).")
    ] = 2_000_000,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", metavar="ADDRESS",
                                 help="Dask scheduler for that reduction "
                                 "(tcp://host:8786; default: a local cluster). Given, the "
                                 "reduction always runs there.")
    ] = None,
    scratch: Annotated[
        Path | None, typer.Option("--scratch", metavar="DIR", file_okay=False,
                                  help="Folder for that reduction's per-client sums (up to "
                                  "a few hundred bytes a session), removed at the end "
                                  "(default: the system's temporary folder; beside the "
                                  "dataset with --scheduler).")
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
        options = {"settings": settings, "progress": progress}
        tables = clean_parquets(input_path)  # each folder checked against its manifest
        if tables is not None and len(tables) == 1:  # a clean dataset, maybe beyond memory
            from mfr_analysis.dask_claims import evaluate_claims_at_scale

            table = evaluate_claims_at_scale(
                tables[0], scheduler=scheduler, scratch=scratch,
                in_memory_max=0 if scheduler else in_memory_sessions, **options)
        else:  # raw logs, or several clean tables of one key: combined in memory
            sessions = load_sessions(input_path, mapping=mapping,
                                     date_order=settings.date_order,
                                     on_report=lambda report: _say_unrecognised(report, mapping))
            table = evaluate_claims(sessions, **options)
        write_table(table, out, output_format.value)
        counts = table["verdict"].value_counts()
        typer.echo(
            f"{len(table)} claim x group rows -> {out} ("
            + ", ".join(f"{verdict} {n}" for verdict, n in counts.items())
            + ")"
        )

    _run(step)


@app.command(short_help="Write the HTML reports and their index page.")
def report(
    input_path: InputsArg,
    out: Annotated[Path, typer.Option("--out", metavar="DIR",
                                      help="Folder for the HTML reports.")],
    by: Annotated[
        SliceBy | None, typer.Option("--by", help="Also one report per audience group or site.")
    ] = None,
    benchmark: Annotated[
        list[BenchmarkBy] | None, typer.Option(
            "--benchmark", help="Also a page comparing sites or clinicians, risk-adjusted "
            "(funnel plots, never a ranking); give it twice for both.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", metavar="N", help="Parallel report runs "
                                 "(default: one per core; at most two per core, as memory "
                                 "allows).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", metavar="ADDRESS",
                                 help="Run the slices as tasks on this Dask "
                                 "cluster (tcp://host:8786) instead of local processes.")
    ] = None,
    title: Annotated[str, typer.Option(metavar="TEXT",
                                       help="Report title (at most 120 characters).")] = (
        "Myofascial release claims"),
    alpha: AlphaOpt = DEFAULTS.alpha,
    correction: CorrectionOpt = DEFAULT_CORRECTION,
    min_clients: MinClientsOpt = DEFAULTS.min_clients,
    mcid: McidOpt = None,
    min_reported_clients: Annotated[
        int, typer.Option(metavar="N", help="Counts of fewer clients are suppressed (CMS rule: "
                          "11; below "
                          "11 only for internal use).")
    ] = DEFAULTS.min_reported_clients,
    mapping: MappingOpt = None,
    date_order: DateOrderOpt = DEFAULT_DATE_ORDER,
    progress: ProgressOpt = True,
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
                progress=progress,
                benchmark=[unit.value for unit in benchmark or ()],
            )
        except SlicesFailed as failure:  # exit 1, not the 2 of a refused run (below)
            _say_unrecognised_in_report(failure.index, mapping)
            return failure
        _say_unrecognised_in_report(index, mapping)
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
