"""What the data-quality page shows: where the rows went, why rows were quarantined (in words
that name the field), missing values and how the 0-10 ratings are spread.

Words come from data tables: ``data/field_words.csv`` (a field in words, e.g. 'pain before'),
``data/reason_phrases.csv`` (what went wrong, e.g. 'outside {range}') and
``data/field_bounds.csv`` (the range itself). Shares of ratings are pooled so that no bar
rests on fewer clients than the privacy minimum.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown

from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.report.safe_text import markdown_text
from mfr_analysis.tables import load_table

QUARANTINE_LINK = "data/quarantine.csv"  # relative to the report folder root (this page's)
RATING_COLUMNS = ("pain_pre", "pain_post", "pain_followup", "pressure")
MISSING_COLUMNS = (
    "pain_pre", "pain_post", "pain_followup", "tightness_pre", "tightness_post", "stress_pre",
    "stress_post", "rom_pre", "rom_post", "duration_min", "pressure", "pace", "deep_breathing",
    "technique", "body_region", "adverse_event",
)


@cache
def _field_words() -> dict[str, str]:
    table = load_table("field_words")
    return dict(zip(table["field"], table["words"], strict=True))


@cache
def _reason_phrases() -> dict[str, str]:
    table = load_table("reason_phrases")
    return dict(zip(table["reason"], table["phrase"], strict=True))


@cache
def _bounds() -> dict[str, dict]:
    table = load_table("field_bounds")
    return {row["field"]: row for row in table.to_dict("records")}


def field_words(field: str) -> str:
    """A field in words, e.g. 'pain before' for pain_pre."""
    return _field_words().get(field) or field.replace("_", " ")


def field_range(field: str) -> str:
    """The accepted range of a numeric field in words, e.g. '0-10' or '0-120 minutes (above
    0)'."""
    bounds = _bounds().get(field)
    if bounds is None:
        return "its plausible range"
    low, high = f"{bounds['low']:g}", f"{bounds['high']:g}"
    unit = str(bounds.get("unit") or "")
    unit = "" if unit.startswith("points") else f" {unit}"
    text = f"{low}-{high}{unit}"
    exclusive = [f"above {low}" if not _true(bounds["low_inclusive"]) else "",
                 f"below {high}" if not _true(bounds["high_inclusive"]) else ""]
    extra = " and ".join(e for e in exclusive if e)
    return f"{text} ({extra})" if extra else text


def _true(value: object) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


def reason_words(reason: str, field: str) -> str:
    """One quarantine reason of one field in words, e.g. 'pain before: outside 0-10'."""
    phrase = _reason_phrases().get(reason, reason.replace("_", " "))
    return f"{field_words(field)}: {phrase.format(range=field_range(field))}"


def load_cleaning_report(path: str) -> dict:
    """The cleaning report as a dict, or an empty dict when none is given; a path that does
    not exist raises :class:`InputError` naming it whole."""
    if not path:
        return {}
    return json.loads(_existing(path, "cleaning_report_path").read_text(encoding="utf-8"))


def _existing(path: str, parameter: str) -> Path:
    from mfr_analysis.errors import InputError

    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise InputError(f"{parameter} {file.resolve()}: no such file"
                         + ("" if file.is_absolute() else f" (read from {Path.cwd()})"))
    return file


def raw_input(sessions_path: str) -> bool:
    """Whether a report's input is raw logs (cleaned in memory), not a clean table."""
    from mfr_analysis.pipeline import clean_parquets

    return clean_parquets([sessions_path], warn_unchecked=False) is None


def cleaning_report_for(sessions_path: str, cleaning_report_path: str = "") -> str:
    """The cleaning report of a report's input: the one given (it must exist), else the one
    written in the same output set as the clean table; '' for raw logs, which are cleaned
    in memory with no report kept, and for a clean table without one."""
    from mfr_analysis.pipeline import clean_parquets, clean_table_report

    if cleaning_report_path:
        return str(_existing(cleaning_report_path, "cleaning_report_path"))
    tables = clean_parquets([sessions_path], warn_unchecked=False)
    report = clean_table_report(tables[0]) if tables is not None and len(tables) == 1 else None
    return str(report) if report else ""


def reason_counts(report: dict) -> pd.Series:
    """Rows per quarantine reason code, largest first."""
    return pd.Series(report.get("reasons", {}), dtype="int64").sort_values(ascending=False)


def reason_lines(report: dict) -> pd.Series:
    """Rows per reason and field, in words that name the field ('pain before: outside
    0-10'), largest first. A report without the per-field breakdown (older versions) gives
    the reason codes' descriptions."""
    by_field = report.get("reasons_by_field")
    if by_field is None:
        descriptions = load_table("reason_codes").set_index("reason")["description"]
        counts = reason_counts(report)
        counts.index = [str(descriptions.get(code, code)) for code in counts.index]
        return counts
    counts: dict[str, int] = {}
    for key, rows in by_field.items():
        reason, _, field = str(key).partition(":")
        words = reason_words(reason, field)
        counts[words] = counts.get(words, 0) + int(rows)
    return pd.Series(counts, dtype="int64").sort_values(ascending=False, kind="stable")


def reason_table(report: dict) -> pd.DataFrame:
    """Rows per quarantine reason in words ('pain before: outside 0-10' | '12 rows'), largest
    first. Counts say 'rows' (quarantined rows, not clients), so no count reads as a number
    of clients, sessions or events."""
    lines = reason_lines(report)
    table = pd.DataFrame({"quarantined": [f"{n:,} row{'s' if n != 1 else ''}"
                                          for n in lines.to_numpy()]}, index=lines.index)
    table.index.name = "field: what was wrong"
    return table


RAW_WITHOUT_REPORT = ("_The input was raw logs, cleaned in memory for this report: where each "
                      "row went was not recorded. `mfr-analysis report` or `mfr-analysis "
                      "clean` writes the cleaning report and the quarantine file._")
CLEAN_WITHOUT_REPORT = "_No cleaning report was given: the input was an already clean table._"


def quality_summary(cleaning_report_path: str, sessions_path: str = "") -> Markdown:
    """One paragraph on where the input rows went, the commonest reasons in words; without
    a cleaning report, what the input was (``sessions_path``: raw logs or a clean table)."""
    report = load_cleaning_report(cleaning_report_path)
    if not report:
        if not sessions_path:
            return Markdown("_No cleaning report was given._")
        return Markdown(RAW_WITHOUT_REPORT if raw_input(sessions_path) else CLEAN_WITHOUT_REPORT)
    lines = reason_lines(report)
    top = "; ".join(f"{markdown_text(words)} ({n:,})" for words, n in lines.head(5).items())
    dropped = report.get("dropped_columns") or {}
    n_dropped = sum(len(v) for v in dropped.values()) if isinstance(dropped, dict) else len(dropped)
    return Markdown(
        f"{report['rows_in']:,} rows read: **{report['rows_clean']:,} clean**, "
        f"{report['rows_quarantined']:,} quarantined, {report['rows_duplicate']:,} exact "
        f"duplicates. Most common reasons: {top or 'none'}. {n_dropped} unknown column(s) and "
        "every identifier column (names, e-mails, phones, birth dates, notes) were dropped "
        "before analysis; client ids are keyed pseudonyms."
    )


def quarantine_link(report: dict) -> HTML:
    """A relative link to the quarantine file, saying it holds row-level data for the
    analyst (the page sits at the report folder root, the file in its data/ folder)."""
    rows = int(report.get("rows_quarantined", 0)) if report else 0
    return HTML(
        f'<p class="mfr-quarantine">Every quarantined row ({rows:,}) is listed in '
        f'<a href="{QUARANTINE_LINK}">{QUARANTINE_LINK}</a> in this report folder, with its raw '
        "values, source file and line, and its reasons. That file holds row-level data "
        "(pseudonymised, identifiers masked): it is for the analyst who ran the report to fix "
        "the source logs, not for sharing with the report's readers.</p>"
    )


def missing_followup_note() -> Markdown:
    """What missing follow-up pain means, in one short paragraph."""
    return Markdown(
        "**Missing follow-up.** Pain at follow-up is asked hours after the session (for "
        "example 24 or 48 hours later), so it is missing far more often than the other "
        "measures. Missing follow-up is not random: clients who felt much worse, or much "
        "better, may be more or less likely to answer, so results at follow-up can be biased "
        "in either direction."
    )


def missing_names(columns: list[str] | tuple[str, ...] = MISSING_COLUMNS) -> dict[str, str]:
    """Column -> words for the missing-values view."""
    return {c: field_words(c) for c in columns}


def _pool(values: np.ndarray, clients: pd.Series, minimum: int) -> list[tuple[int, int]]:
    """Adjacent rating values pooled from 0 upwards until each bin rests on ``minimum``
    clients or more; a remainder under the minimum joins the last bin. Returns (low, high)
    pairs of the values with data; empty when all values together rest on fewer clients."""
    bins: list[tuple[int, int]] = []
    start = last = None
    seen: set = set()
    for value in range(11):
        here = clients.loc[values == value]
        if here.empty:
            continue
        start = value if start is None else start
        last = value
        seen |= set(here)
        if len(seen) >= minimum:
            bins.append((start, value))
            start, seen = None, set()
    if start is not None:  # a remainder resting on fewer than the minimum
        if not bins:
            return []
        bins[-1] = (bins[-1][0], last)
    return bins


def rating_shares(sessions: pd.DataFrame, columns: list[str] | tuple[str, ...] = RATING_COLUMNS,
                  minimum: int = MIN_REPORTED_CLIENTS) -> pd.DataFrame:
    """Share of each group's sessions at each 0-10 rating value (rounded to the nearest whole
    number). Values held by fewer than ``minimum`` clients are pooled with their neighbours
    into one bin (low..high), so no bar rests on fewer clients; a group-measure with fewer
    than ``minimum`` clients in all is left out.

    Columns: audience_group, field, low, high, share (of the group's sessions with a value).
    """
    out = []
    for field in columns:
        if field not in sessions:
            continue
        rated = sessions.dropna(subset=[field])
        for group, part in rated.groupby("audience_group", observed=True):
            values = np.clip(np.floor(part[field].to_numpy(dtype=float) + 0.5), 0, 10)
            clients = part["client_id"].reset_index(drop=True)
            for low, high in _pool(values, clients, minimum):
                inside = (values >= low) & (values <= high)
                out.append({"audience_group": str(group), "field": field, "low": low,
                            "high": high, "share": float(inside.mean())})
    frame = pd.DataFrame(out, columns=["audience_group", "field", "low", "high", "share"])
    return frame.astype({"low": "int64", "high": "int64", "share": "float64"})


def ratings_caption(minimum: int = MIN_REPORTED_CLIENTS) -> str:
    """What the rating bars show, for the figure caption."""
    return (f"Share of each group's sessions at each rating. A value held by fewer than "
            f"{minimum} clients is pooled with its neighbours into one wider bar; ratings "
            "between whole numbers (e.g. '6-7' read as 6.5) count at the nearest whole number.")

