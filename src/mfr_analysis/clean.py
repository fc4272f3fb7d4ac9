"""Clean raw session logs: parse every spelling, validate, pseudonymise, de-duplicate.

The work is vectorised the way messy logs allow: each column has few distinct spellings, so
each column is factorised once, every *distinct* value is parsed once in Python (the small
``parse_*`` functions below), and the results are mapped back to the rows with the integer
codes. Row-level rules (range of motion against its measure, duplicates, session ids) are
numpy operations on those codes.

A row that breaks any rule goes to the quarantine with its raw values (client id replaced by
its pseudonym, session id by the derived one), its source file and line, and every reason
code that applies (``reasons``, codes from ``data/reason_codes.csv``), plus ``reason_detail``
naming the field of each reason; the cleaning report counts rows per reason and field too
(``reasons_by_field``: ``{"out_of_range:pain_pre": 12, ...}``). Blank optional values are
NA; an unreadable non-blank value is a reason, never a silent NA.

The raw text a quarantine shows is made safe to hand over (:mod:`mfr_analysis.redact`):

* an identifier-shaped value (e-mail, phone, national id, IBAN, card, long digit run) in any
  column but the client id quarantines its row as ``identifier_in_text`` and is shown masked
  (``[email]``, ``[phone]``, ...). This includes ``site``, the one free-text column kept in the
  clean table: such a spelling is not a clinic's name, so the row is quarantined rather than
  published under a masked or guessed site;
* a NUL or other control character in any cell (the reader keeps them wherever in the file
  they are) makes a ``malformed_row`` and is shown as U+FFFD;
* a cell a spreadsheet would run as a formula gets a leading ``'`` (OWASP), in both engines.

Decisions worth knowing:

* Dates: ``date_order`` ("dmy" default, or "mdy") decides ``05/03/2024``; dotted dates
  (``05.03.2024``) are always day-first; ISO (``2024-03-05``) is always year-month-day; a date
  that is only valid in the other order is quarantined as ``date_order_mismatch``; Excel
  serials 10000-100000 (1900 date system, 1927-2173) and ``yyyymmdd`` are read; a time part
  is ignored. Two-digit years are 20yy unless that is after ``today``.
* Ratings (0-10): ``7``, ``7/10``, ``7 out of 10``, ``70/100``, ``70 %``, ``70 mm`` (VAS,
  divided by 10), ``7 cm`` (10-cm VAS), ``6-7`` (midpoint), number words; ``none`` is 0.
  A bare number above 10 is out of range, never divided by 10.
* Exact duplicates: rows whose parsed values agree in every canonical column except
  ``source_file``, ``source_line`` and a derived ``session_id`` (a session id given by the
  source must match too) are kept once, the first in input order, and counted where the later
  copy came from; only rows that pass validation are de-duplicated.
* Session ids: ``s_`` + 16 hex digits of a keyed hash of (source file, client pseudonym,
  source session id) when the source has one, else of (client pseudonym, date, source file,
  source line). If a source id repeats within (file, client) with different content, the later
  rows get the line-based id, so every clean session keeps a unique id.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa_schema
import pyarrow as pa
import pyarrow.compute as pc

from mfr_analysis.config import EARLIEST_SESSION_DATE, ROWS_PER_SLICE
from mfr_analysis.pseudonymise import (
    client_pseudonyms,
    clinician_pseudonyms,
    hex_ids,
    keyed_hash64,
)
from mfr_analysis.read import (
    BIRTH_DATE_COLUMN,
    INPUT_COLUMNS,
    ISSUE_COLUMN,
    RawLogs,
    encode_strings,
)
from mfr_analysis.redact import has_control, mask_distinct, neutralise_formulas, safe_text
from mfr_analysis.schema import CATEGORY_DTYPES, CLEAN_COLUMNS, CleanSessions
from mfr_analysis.tables import VOCABULARY_FIELDS, load_table, normalise_token, synonym_map
from mfr_analysis.version import package_version

log = logging.getLogger(__name__)

DateOrder = Literal["dmy", "mdy"]
DATE_ORDERS: tuple[str, ...] = ("dmy", "mdy")
ROM_FIELDS: tuple[str, ...] = ("rom_pre", "rom_post")
QUARANTINE_EXTRA: tuple[str, ...] = ("source_file", "source_line", "reasons", "reason_detail")
_STRING = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3 `str`, what pandera coerces to


# ---------------------------------------------------------------------------------------------
# reference tables


@cache
def reason_codes() -> tuple[str, ...]:
    """All reason codes, in the order of ``data/reason_codes.csv``."""
    return tuple(load_table("reason_codes")["reason"])


def _bit(reason: str) -> int:
    """1-based position of a reason code (0 means 'no problem')."""
    return reason_codes().index(reason) + 1


@cache
def _missing_tokens() -> frozenset[str]:
    return frozenset(normalise_token(t) for t in load_table("missing_tokens")["token"]) | {""}


@cache
def _number_words() -> dict[str, float]:
    table = load_table("number_words")
    return {normalise_token(w): float(v) for w, v in zip(table["word"], table["value"],
                                                            strict=True)}


@cache
def _bounds() -> dict[str, tuple[float, float, bool, bool]]:
    table = load_table("field_bounds")
    return {f: (float(lo), float(hi), bool(li), bool(hi_inc)) for f, lo, hi, li, hi_inc in zip(
        table["field"], table["low"], table["high"], table["low_inclusive"],
        table["high_inclusive"], strict=True)}


@cache
def _rom_bounds() -> pd.DataFrame:
    return load_table("rom_bounds").set_index("rom_measure")


@cache
def _vocab_index(field: str) -> dict[str, str]:
    """Normalised synonym -> canonical, also matching hyphen/space/no-space variants."""
    base = synonym_map(field)
    index = dict(base)
    for key, canonical in base.items():
        for variant in (key.replace("-", " "), key.replace("-", "").replace(" ", "")):
            index.setdefault(variant, canonical)
    return index


# ---------------------------------------------------------------------------------------------
# parsers of one distinct value (pure, never raise)

_TRANSLATE = str.maketrans({
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u00ba": "\u00b0",
    "\u2033": '"', "\u201c": '"', "\u201d": '"', "\u2032": "'", "\u2019": "'", "\u00a0": " ",
})
_NUM = r"[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)"
_QUANTITY = re.compile(rf"^(?P<a>{_NUM})(?:\s*(?:-|to)\s*(?P<b>{_NUM}))?\s*(?P<unit>\D.*)?$")
_HOURS_MINUTES = re.compile(
    rf"^(?P<h>{_NUM})\s*(?:h|hr|hrs|hour|hours)\s*(?P<m>{_NUM})\s*(?:m|min|mins|minutes?)?$")

RATING_UNITS: dict[str, float] = {
    "": 1.0, "/10": 1.0, "outof10": 1.0, "of10": 1.0, "pt": 1.0, "pts": 1.0, "point": 1.0,
    "points": 1.0, "nrs": 1.0, "cm": 1.0, "/100": 0.1, "outof100": 0.1, "of100": 0.1,
    "%": 0.1, "mm": 0.1,
}
DURATION_UNITS: dict[str, float] = {
    "": 1.0, "m": 1.0, "min": 1.0, "mins": 1.0, "minute": 1.0, "minutes": 1.0, "'": 1.0,
    "h": 60.0, "hr": 60.0, "hrs": 60.0, "hour": 60.0, "hours": 60.0,
    "s": 1 / 60, "sec": 1 / 60, "secs": 1 / 60, "second": 1 / 60, "seconds": 1 / 60,
}
HOURS_UNITS: dict[str, float] = {
    "": 1.0, "h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0,
    "d": 24.0, "day": 24.0, "days": 24.0, "w": 168.0, "wk": 168.0, "week": 168.0,
    "weeks": 168.0, "min": 1 / 60, "mins": 1 / 60, "minutes": 1 / 60,
}
ROM_UNITS: dict[str, tuple[str, float]] = {
    "": ("", 1.0),
    **dict.fromkeys(("deg", "degs", "degree", "degrees", "\u00b0"), ("degrees", 1.0)),
    **dict.fromkeys(("rad", "rads", "radian", "radians"), ("degrees", 180 / math.pi)),
    "cm": ("cm", 1.0), "mm": ("cm", 0.1),
    **dict.fromkeys(("in", "inch", "inches", '"', "''"), ("cm", 2.54)),
}


def _prep(text: object) -> str:
    """NFKC, lower case, one kind of dash, single spaces."""
    cleaned = unicodedata.normalize("NFKC", str(text).translate(_TRANSLATE))
    return " ".join(cleaned.lower().split())


def is_missing(text: object) -> bool:
    """True for blanks and the tokens of ``missing_tokens.csv`` (n/a, -, refused, ...)."""
    return normalise_token(_prep(text)) in _missing_tokens()


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _quantity(text: str, units: dict[str, float]) -> float | None:
    """Number or range (midpoint) with an optional unit from ``units``, scaled; else None."""
    match = _QUANTITY.match(text)
    if not match:
        return None
    unit = re.sub(r"\s+", "", match["unit"] or "")
    if unit not in units:
        return None
    value = _number(match["a"])
    if match["b"] is not None:
        value = (value + _number(match["b"])) / 2
    return value * units[unit]


def _words_to_digits(text: str) -> str:
    words = _number_words()
    return re.sub(r"[a-z]+", lambda m: f"{words[m[0]]:g}" if m[0] in words else m[0], text)


def parse_rating(text: object) -> tuple[float, str | None]:
    """A 0-10 self-rating in any spelling -> (value, None), (nan, None) if blank, or a reason."""
    t = _prep(text)
    words = _number_words()
    if t in words:
        return words[t], None
    if is_missing(t):
        return math.nan, None
    value = _quantity(_words_to_digits(t), RATING_UNITS)
    if value is None or not math.isfinite(value):
        return math.nan, "unparseable_number"
    return value, None


def parse_duration(text: object) -> tuple[float, str | None]:
    """Session duration in minutes: ``20``, ``20 min``, ``1 h``, ``1h30``, ``90 s``."""
    t = _prep(text)
    if is_missing(t):
        return math.nan, None
    match = _HOURS_MINUTES.match(t)
    if match:
        return _number(match["h"]) * 60 + _number(match["m"]), None
    value = _quantity(t, DURATION_UNITS)
    if value is None or not math.isfinite(value):
        return math.nan, "unparseable_number"
    return value, None


def parse_hours(text: object) -> tuple[float, str | None]:
    """Follow-up delay in hours: ``24``, ``48 h``, ``2 days``, ``next day``."""
    t = _prep(text)
    if is_missing(t):
        return math.nan, None
    if t in ("next day", "the next day", "following day"):
        return 24.0, None
    value = _quantity(_words_to_digits(t), HOURS_UNITS)
    if value is None or not math.isfinite(value):
        return math.nan, "unparseable_number"
    return value, None


def parse_rom(text: object) -> tuple[float, str, str | None]:
    """Range of motion -> (value, unit kind '', 'degrees' or 'cm', reason); rad/in converted."""
    t = _prep(text)
    if is_missing(t):
        return math.nan, "", None
    match = _QUANTITY.match(t)
    unit = re.sub(r"\s+", "", (match["unit"] or "")) if match else None
    if match is None or unit not in ROM_UNITS:
        return math.nan, "", "unparseable_number"
    kind, factor = ROM_UNITS[unit]
    value = _number(match["a"])
    if match["b"] is not None:
        value = (value + _number(match["b"])) / 2
    value *= factor
    if not math.isfinite(value):
        return math.nan, "", "unparseable_number"
    return value, kind, None


AGE_UNITS: dict[str, float] = {
    **dict.fromkeys(("", "y", "yr", "yrs", "year", "years", "yearsold", "yo", "y/o", "j",
                     "jahre"), 1.0),
}
WEEKS_PER_MONTH = 365.25 / 12 / 7
WEEKS_PER_YEAR = 365.25 / 7
SYMPTOM_DURATION_UNITS: dict[str, float] = {
    **dict.fromkeys(("", "w", "wk", "wks", "week", "weeks"), 1.0),
    **dict.fromkeys(("d", "day", "days"), 1 / 7),
    **dict.fromkeys(("mo", "mos", "mth", "mths", "month", "months"), WEEKS_PER_MONTH),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), WEEKS_PER_YEAR),
}
_AT_LEAST = re.compile(r"^(?:>=?|more than|over|at least)\s*")


@cache
def _symptom_duration_words() -> dict[str, float]:
    table = load_table("symptom_duration_words")
    return {normalise_token(w): float(v) for w, v in zip(table["word"], table["weeks"],
                                                            strict=True)}


def parse_age(text: object) -> tuple[float, str | None]:
    """Age in years: ``42``, ``42 years``, ``42 y/o``, ``40-45`` (midpoint), ``forty``."""
    t = _prep(text)
    if is_missing(t):
        return math.nan, None
    value = _quantity(_words_to_digits(t), AGE_UNITS)
    if value is None or not math.isfinite(value):
        return math.nan, "unparseable_number"
    return value, None


def parse_symptom_duration(text: object) -> tuple[float, str | None]:
    """How long the complaint has lasted, in weeks.

    A bare number is weeks; ``10 days``, ``3 weeks``, ``2 months`` (x 365.25/12/7), ``1 year``
    (x 365.25/7) are converted; ``3-4 weeks`` is the midpoint; ``> 3 months``, ``more than``,
    ``over`` and ``at least`` read the bound given (which names the right band). A word with
    no number (``acute``, ``subacute``, ``chronic``, ...) gives the representative value of
    its band from ``data/symptom_duration_words.csv`` (acute 3, subacute 9, chronic 26
    weeks): the band is right, the number is not a measurement. ``< 6 weeks`` (an upper
    bound only) is not read."""
    t = _prep(text)
    if is_missing(t):
        return math.nan, None
    words = _symptom_duration_words()
    if normalise_token(t) in words:
        return words[normalise_token(t)], None
    value = _quantity(_words_to_digits(_AT_LEAST.sub("", t)), SYMPTOM_DURATION_UNITS)
    if value is None or not math.isfinite(value):
        return math.nan, "unparseable_number"
    return value, None


def in_bounds(field: str, value: float) -> bool:
    """Is ``value`` inside the plausibility bounds of ``field`` (field_bounds.csv)?"""
    lo, hi, lo_inc, hi_inc = _bounds()[field]
    above = value >= lo if lo_inc else value > lo
    below = value <= hi if hi_inc else value < hi
    return bool(above and below)


def parse_field_value(field: str, text: object) -> tuple[float, str | None]:
    """Parse one numeric field and check its bounds: (value, None) or (nan, reason)."""
    parser = {"duration_min": parse_duration, "followup_hours": parse_hours, "age": parse_age,
              "symptom_duration_weeks": parse_symptom_duration}.get(field, parse_rating)
    value, reason = parser(text)
    if reason is None and not math.isnan(value) and not in_bounds(field, value):
        return math.nan, "out_of_range"
    return (math.nan, reason) if reason else (value, None)


_TIME_PART = re.compile(r"(?:[t ]\s*\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:am|pm)?"
                        r"\s*(?:z|utc|gmt|[+-]\d{2}:?\d{2})?)$")
_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_NUMERIC_DATE = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4}|\d{2})$")
_MONTH_FORMATS = ("%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%Y %b %d", "%Y %B %d",
                  "%d %b %y", "%d %B %y", "%b %d %y", "%B %d %y")
EXCEL_EPOCH = dt.date(1899, 12, 30)  # 1900 date system (serial 1 = 1900-01-01 after Excel's bug)
EXCEL_SERIAL_RANGE = (10_000, 100_000)


def _make_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_date(text: object, order: str = "dmy",
               pivot_year: int | None = None) -> tuple[dt.date | None, str | None]:
    """A session date in any common spelling -> (date, None), (None, None) if blank, or reason."""
    t = _prep(text)
    if is_missing(t):
        return None, None
    t = _TIME_PART.sub("", t).strip()
    pivot = pivot_year if pivot_year is not None else dt.date.today().year
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        if len(t) == 8 and t.isdigit() and t[:2] in ("19", "20"):  # yyyymmdd
            found = _make_date(int(t[:4]), int(t[4:6]), int(t[6:]))
            return (found, None) if found else (None, "unparseable_date")
        serial = float(t)
        if EXCEL_SERIAL_RANGE[0] <= serial <= EXCEL_SERIAL_RANGE[1]:
            return EXCEL_EPOCH + dt.timedelta(days=int(serial)), None
        return None, "unparseable_date"
    if match := _ISO.match(t):
        found = _make_date(int(match[1]), int(match[2]), int(match[3]))
        return (found, None) if found else (None, "unparseable_date")
    if match := _NUMERIC_DATE.match(t):
        a, sep, b, y = int(match[1]), match[2], int(match[3]), match[4]
        year = int(y) if len(y) == 4 else (2000 + int(y) if 2000 + int(y) <= pivot
                                           else 1900 + int(y))
        day_first = sep == "." or order == "dmy"
        found = _make_date(year, b, a) if day_first else _make_date(year, a, b)
        if found:
            return found, None
        other = _make_date(year, a, b) if day_first else _make_date(year, b, a)
        return None, "date_order_mismatch" if other else "unparseable_date"
    words = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", t)
    words = re.sub(r"^(mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", "", words)
    words = " ".join(re.sub(r"[,/.\-]", " ", words).replace("sept", "sep").split())
    for fmt in _MONTH_FORMATS:
        try:
            return dt.datetime.strptime(words, fmt).date(), None
        except ValueError:
            continue
    return None, "unparseable_date"


def parse_category(field: str, text: object) -> tuple[str | None, str | None]:
    """Vocabulary lookup: (canonical, None), (None, None) if blank, or (None, reason)."""
    key = normalise_token(_prep(text))
    index = _vocab_index(field)
    for candidate in (key, key.replace("-", " "), key.replace("-", "").replace(" ", "")):
        if candidate in index:
            return index[candidate], None
    if key in _missing_tokens():
        return None, None
    return None, "unparseable_boolean" if field == "boolean" else f"unknown_{field}"


# ---------------------------------------------------------------------------------------------
# column plumbing


def _arrow_strings(series: pd.Series) -> pa.ChunkedArray:
    """The column as an Arrow string array (zero-copy for pyarrow-backed strings)."""
    dtype = series.dtype
    arrow_backed = (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") or (
        isinstance(dtype, pd.ArrowDtype)
        and (pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(
            dtype.pyarrow_dtype)))
    if arrow_backed:
        arr = pa.array(series)
    else:
        arr = pa.array([None if _isna(v) else _text(v) for v in series.tolist()],
                       pa.large_string())
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _isna(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Factorise a text column: (codes, distinct values); code -1 marks a missing cell.

    Codes come in the smallest integer type that holds them (a categorical's own codes)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(), [_text(c) for c in series.cat.categories.tolist()]
    codes, dictionary = encode_strings(_arrow_strings(series))
    return codes, dictionary.to_pylist()


@dataclass(frozen=True)
class Parsed:
    """One column parsed per distinct value; index -1 (the extra last slot) is 'missing'."""

    codes: np.ndarray  # per row, -1 = missing cell
    values: np.ndarray  # per distinct value + 1
    reasons: np.ndarray  # int16 per distinct value + 1: 0 ok, else 1-based reason position
    labels: tuple[str, ...] = ()  # site names, or the unit kind of each distinct ROM value

    def rows(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Parsed value of every row (or of the rows at ``positions``)."""
        codes = self.codes if positions is None else np.take(self.codes, positions)
        return np.take(self.values, codes)  # gathered through the narrow codes

    def row_reasons(self) -> np.ndarray:
        """Reason position of every row (0 = fine)."""
        return self.reasons[self.codes]

    def distinct_keys(self) -> np.ndarray:
        """Integer per distinct value (and the missing slot), equal iff the parsed values are."""
        return pd.factorize(self.values, use_na_sentinel=False)[0]


def _parse_distinct(codes: np.ndarray, uniques: list[str], parse: Callable[[str], tuple],
                    missing: tuple, dtype: Any) -> Parsed:
    """Parse each distinct value once (plus the 'missing' slot) and keep codes for the rows."""
    results = [parse(u) for u in uniques] + [missing]
    values = np.array([r[0] for r in results], dtype=dtype)
    reasons = np.array([_bit(r[-1]) if r[-1] else 0 for r in results], dtype=np.int16)
    labels = tuple(r[1] for r in results) if len(missing) == 3 else ()
    return Parsed(codes, values, reasons, labels)


def _absent(n: int, value: Any, dtype: Any, reason: str | None = None) -> Parsed:
    return Parsed(np.full(n, -1, dtype=np.int32), np.array([value], dtype=dtype),
                  np.array([_bit(reason) if reason else 0], dtype=np.int16))


# ---------------------------------------------------------------------------------------------
# the reasons of every row


class _Reasons:
    """Bit mask of reasons per row, plus which field raised each reason (for the detail)."""

    def __init__(self, n: int) -> None:
        self.mask = np.zeros(n, dtype=np.uint64)
        self.by_field: list[tuple[str, np.ndarray, np.ndarray]] = []

    def add(self, field: str, row_reasons: np.ndarray) -> None:
        hit = np.flatnonzero(row_reasons)
        if hit.size:
            codes = row_reasons[hit].astype(np.int16)
            self.mask[hit] |= np.left_shift(np.uint64(1), (codes - 1).astype(np.uint64))
            self.by_field.append((field, hit, codes))

    def add_where(self, field: str, rows: np.ndarray, reason: str) -> None:
        self.add(field, np.where(rows, _bit(reason), 0).astype(np.int16))

    def text(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reasons, reason_detail) strings for the given rows, built once per combination."""
        if rows.size == 0:
            return np.array([], dtype=object), np.array([], dtype=object)
        codes = reason_codes()
        distinct, inverse = np.unique(self.mask[rows], return_inverse=True)
        labels = np.array([";".join(c for i, c in enumerate(codes) if int(m) >> i & 1)
                           for m in distinct], dtype=object)
        reasons = labels[inverse.reshape(-1)]
        detail_matrix = np.zeros((rows.size, len(self.by_field)), dtype=np.int16)
        for j, (_, hit, hit_codes) in enumerate(self.by_field):
            where = np.searchsorted(rows, hit)
            inside = (where < rows.size) & (rows[np.minimum(where, rows.size - 1)] == hit)
            detail_matrix[where[inside], j] = hit_codes[inside]
        combos, inverse = np.unique(detail_matrix, axis=0, return_inverse=True)
        fields = [f for f, _, _ in self.by_field]
        details = np.array([";".join(f"{codes[c - 1]}:{fields[j]}" for j, c in enumerate(row) if c)
                            for row in combos], dtype=object)
        return reasons, details[inverse.reshape(-1)]

    def by_field_counts(self) -> dict[str, int]:
        """Rows per ``reason:field`` (each row once per pair), in reason-code order.

        ``field`` is the column the reason came from, without the reader's note in brackets
        ("row (truncated line)" -> "row", "pain_pre (NUL or control character)" -> "pain_pre").
        """
        rows: dict[tuple[int, str], list[np.ndarray]] = {}
        for field, hit, hit_codes in self.by_field:
            name = field.split(" (", 1)[0]
            for code in np.unique(hit_codes):
                rows.setdefault((int(code), name), []).append(hit[hit_codes == code])
        codes = reason_codes()
        return {f"{codes[code - 1]}:{name}": int(np.unique(np.concatenate(parts)).size)
                for (code, name), parts in sorted(rows.items())}


# ---------------------------------------------------------------------------------------------
# hashing helpers


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective scramble of 64-bit integers."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _combine(h: np.ndarray, values: np.ndarray, salt: int) -> np.ndarray:
    v = np.asarray(values).astype(np.uint64) + np.uint64(salt)
    return _mix(h ^ _mix(v))


# ---------------------------------------------------------------------------------------------
# the cleaning step


@dataclass(frozen=True)
class CleanResult:
    """Clean sessions, quarantined rows, the number of exact duplicates, and the report.

    ``row_keys`` (asked for with ``clean_sessions(..., row_keys=True)``) has one row per
    clean session, in the same order, with what de-duplicating *across* calls needs:
    ``dup1``, ``dup2``, the two 64-bit content hashes of the de-duplication key (equal for
    rows that are exact duplicates of each other, whichever call cleaned them, given one
    key); ``base``, the 64-bit session id before repeats were made unique; ``line``, the
    source line; ``has_source_id``, whether the source gave the session id; ``rehashed``,
    whether this call changed the id to make it unique."""

    sessions: pd.DataFrame
    quarantine: pd.DataFrame
    duplicates: int
    report: dict[str, Any]
    row_keys: pd.DataFrame | None = None


def clean_sessions(raw: pd.DataFrame, *, key: bytes, date_order: DateOrder = "dmy",
                   today: dt.date | None = None,
                   write_sessions: Callable[[pd.DataFrame], None] | None = None,
                   row_keys: bool = False) -> CleanResult:
    """Parse, validate, pseudonymise and de-duplicate raw rows; the input is not changed.

    ``raw`` is released once the quarantine is built: a caller that passes its only
    reference (as the pipeline does) frees the raw text before the clean table is built.
    ``key`` is the pseudonym key (resolved by the caller, e.g. with
    :func:`mfr_analysis.pseudonymise.load_key`): this function reads no environment and
    writes no file. ``write_sessions``, if given, receives the clean table in validated
    slices of at most :data:`~mfr_analysis.config.ROWS_PER_SLICE` rows, in order (at least
    one, maybe empty), instead of the table being kept: it never sits whole in memory (2 GiB
    at 10M rows), and :attr:`CleanResult.sessions` holds its columns and dtypes but no row.
    A caller must not publish what it wrote unless this function returns. ``row_keys=True``
    adds :attr:`CleanResult.row_keys`.
    """
    if date_order not in DATE_ORDERS:
        raise ValueError(f"date_order must be one of {DATE_ORDERS}, not {date_order!r}")
    if not isinstance(key, bytes | bytearray) or not key:
        raise TypeError("key must be the pseudonym key as bytes "
                        "(see mfr_analysis.pseudonymise.load_key)")
    today = today or dt.date.today()
    n = len(raw)
    reasons = _Reasons(n)
    file_codes, file_names = _source_files(raw)
    source_line = _source_lines(raw)
    with ThreadPoolExecutor(max_workers=1) as background:  # GIL-free work beside the main thread
        source_ids = background.submit(_source_session_ids, raw, n, key)

        parsed = _parse_all(raw, date_order, today, key, reasons)
        client_hash = _client_hashes(parsed["client_id"])
        file_hash = keyed_hash64(np.asarray(file_names, dtype=object), key) if file_names else (
            np.zeros(0, dtype=np.uint64))
        source_id, has_source_id = source_ids.result()

        valid = reasons.mask == 0
        hashing = background.submit(  # numpy only: runs beside the duplicate search
            _session_hashes, client_hash, parsed["session_date"].rows(),
            np.take(file_hash, file_codes), source_line, source_id, has_source_id)
        distinct = {column: _distinct_content(column, p, key) for column, p in parsed.items()}
        valid_rows = np.flatnonzero(valid)
        content = _content_hash(valid_rows, distinct, parsed, source_id,
                                _content_salts(key, list(parsed), 1))
        duplicate = _duplicates(valid, parsed, source_id, content)
        keep = valid & ~duplicate
        base_ids = hashing.result()
        ids, conflicts = unique_session_ids(base_ids, keep, source_line)

    keys = None
    if row_keys:
        kept = np.flatnonzero(keep)
        keys = pd.DataFrame({
            "dup1": content[~duplicate[valid_rows]],
            "dup2": _content_hash(kept, distinct, parsed, source_id,
                                  _content_salts(key, list(parsed), 2)),
            "base": base_ids[kept], "line": source_line[kept],
            "has_source_id": has_source_id[kept], "rehashed": ids[kept] != base_ids[kept],
        })
    quarantined = np.flatnonzero(~valid)
    quarantine = _quarantine_frame(raw, quarantined, parsed, ids, file_codes, file_names,
                                   source_line, reasons)
    report = _report(n, keep, valid, duplicate, reasons, file_codes, file_names,
                     date_order, has_source_id, conflicts, raw)
    # Nothing row-sized but the parsed codes is held beside the clean table: the hashes (eight
    # bytes a row each) and, when the caller kept no reference, the raw text (0.4 and 0.8 GB
    # at 10M rows).
    del raw, client_hash, source_id, source_ids, valid_rows, content, base_ids, hashing
    del distinct, reasons, quarantined

    _check_pseudonyms(parsed)
    kept = np.flatnonzero(keep)
    build = _sessions_builder(parsed, ids, file_codes, file_names, source_line)
    if write_sessions is None:
        sessions = _validated(build(kept))
    else:
        for start in range(0, max(kept.size, 1), ROWS_PER_SLICE):
            write_sessions(_validated(build(kept[start:start + ROWS_PER_SLICE])))
        sessions = _validated(build(kept[:0]))
    del parsed, build
    log.info("cleaned %d rows: %d clean, %d quarantined, %d duplicates", n,
             report["rows_clean"], report["rows_quarantined"], report["rows_duplicate"])
    return CleanResult(sessions, quarantine, report["rows_duplicate"], report, keys)


def _parse_all(raw: pd.DataFrame, date_order: str, today: dt.date, key: bytes,
               reasons: _Reasons) -> dict[str, Parsed]:
    """Parse every canonical column and record the reasons of every row in ``reasons``."""
    parsed: dict[str, Parsed] = {}
    for column in INPUT_COLUMNS:
        if column == "session_id":  # nearly unique: only its control characters are checked
            if column in raw.columns:
                reasons.add(CONTROL_DETAIL.format(column=column), np.where(
                    has_control(_arrow_strings(raw[column])), _bit("malformed_row"), 0))
            continue
        if column not in raw.columns:
            parsed[column] = _absent_column(column, len(raw))
        else:
            codes, uniques = encode(raw[column])
            unsafe = _flag_text(column, codes, uniques, reasons)
            parsed[column] = _parse_column(column, codes, uniques, date_order, today, key,
                                           unsafe)
        if parsed[column].reasons.any():  # most columns have no bad spelling at all
            reasons.add(column, parsed[column].row_reasons())
    _check_rom(parsed, reasons)
    if BIRTH_DATE_COLUMN in raw.columns:
        parsed["age"] = _ages_from_birth_dates(raw[BIRTH_DATE_COLUMN], parsed, date_order,
                                               today, reasons)
    if ISSUE_COLUMN in raw.columns:
        _add_reader_issues(raw[ISSUE_COLUMN], reasons)
    return parsed


CONTROL_DETAIL = "{column} (NUL or control character)"
PSEUDONYMISED: tuple[str, ...] = ("client_id", "clinician")
"""Columns replaced by keyed-hash pseudonyms: their raw text is never written, so an
identifier-shaped value there (a clinician's e-mail as their name) is not a reason."""


def _flag_text(column: str, codes: np.ndarray, uniques: list[str],
               reasons: _Reasons) -> np.ndarray:
    """Flag rows whose raw text must not be kept: a NUL or other control character (a
    malformed row, wherever in the file it is) or, except in the client id (pseudonymised,
    never written out), an identifier-shaped value (e-mail, phone, national id ...).

    Works on the distinct values; returns which of them are unsafe (plus the missing slot)."""
    unsafe = np.zeros(len(uniques) + 1, dtype=bool)
    if not uniques:
        return unsafe
    control = has_control(pa.array(uniques, pa.large_string()))
    if control.any():
        reasons.add(CONTROL_DETAIL.format(column=column),
                    np.append(np.where(control, _bit("malformed_row"), 0), 0)[codes])
    unsafe[:-1] |= control
    if column not in PSEUDONYMISED:
        _, identifier = mask_distinct(uniques)
        if identifier.any():
            reasons.add(column, np.append(np.where(identifier, _bit("identifier_in_text"), 0),
                                          0)[codes])
        unsafe[:-1] |= identifier
    return unsafe


def _add_reader_issues(issues: pd.Series, reasons: _Reasons) -> None:
    """Problems the reader flagged per row: ``reason:where`` items joined by ``;``.

    ``where`` names a column or says ``row (...)``; an item whose code is not a reason code
    (or an older free-text flag) counts as ``malformed_row`` of the row."""
    codes, values = encode(issues)
    known = set(reason_codes())
    for position, value in enumerate(values):
        for item in filter(None, (part.strip() for part in str(value).split(";"))):
            code, _, where = item.partition(":")
            code, where = code.strip(), where.strip()
            if code not in known or not where or code == "malformed_row" and not (
                    where.startswith("row")):
                code, where = "malformed_row", "row"
            reasons.add_where(where, codes == position, code)


@cache
def _clean_schema() -> pa_schema.DataFrameSchema:
    """``CleanSessions`` less two row-wise checks proved once per distinct value instead.

    session_id uniqueness: :func:`unique_session_ids` has already proved it on the 64-bit ids,
    which map one-to-one to the ``s_`` + hex strings (ten times faster than hashing millions
    of strings again). The pseudonym patterns of client_id and clinician: every row's value
    is taken from the column's few distinct pseudonyms, which :func:`_check_pseudonyms`
    matches (a regex over 10M rows took 1.3 s of 2.6). Validation is in place (the frame is
    ours) and strict, since the frame holds exactly the clean columns."""
    schema = CleanSessions.to_schema().update_column("session_id", unique=False)
    schema = schema.update_columns({c: {"checks": []} for c in PSEUDONYMISED})
    schema.strict = True  # the frame has exactly the clean columns: validate without a copy
    return schema


@cache
def _pseudonym_schemas() -> dict[str, pa_schema.DataFrameSchema]:
    columns = CleanSessions.to_schema().columns
    return {c: pa_schema.DataFrameSchema({c: columns[c].set_name(c)}) for c in PSEUDONYMISED}


def _check_pseudonyms(parsed: dict[str, Parsed]) -> None:
    """The clean schema's checks of the pseudonymised columns, on their distinct values."""
    for column, schema in _pseudonym_schemas().items():
        distinct = pd.Series(parsed[column].values, dtype="str").dropna()
        schema.validate(pd.DataFrame({column: distinct}), lazy=True)


def _source_files(raw: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Codes and names of the source files (a placeholder name when the frame has none)."""
    if "source_file" not in raw.columns:
        return np.zeros(len(raw), dtype=np.int32), ["<frame>"] if len(raw) else []
    codes, names = encode(raw["source_file"])
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes).astype(np.int32)
        names = [*names, "<unknown>"]
    return codes, names


def _source_lines(raw: pd.DataFrame) -> np.ndarray:
    """Source line of every row (the row number where the frame has none)."""
    position = np.arange(1, len(raw) + 1, dtype=np.int64)
    if "source_line" not in raw.columns:
        return position
    column = raw["source_line"]
    if pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
        lines = column.to_numpy(dtype=np.int64)
        return lines if (lines >= 1).all() else np.where(lines >= 1, lines, position)
    lines = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    usable = np.isfinite(lines) & (lines >= 1)
    return np.where(usable, lines, position).astype(np.int64)


def _parse_column(column: str, codes: np.ndarray, uniques: list[str], date_order: str,
                  today: dt.date, key: bytes, unsafe: np.ndarray) -> Parsed:
    """Parse one canonical column from its codes and distinct values.

    ``unsafe`` marks distinct values whose rows are quarantined for their text; a site
    spelling so marked never becomes a site name of the clean table."""
    if column == "client_id":
        return _parse_clients(codes, uniques, key)
    if column == "clinician":
        return _parse_clinicians(codes, uniques, key)
    if column == "site":
        return _parse_sites(codes, uniques, unsafe)
    if column == "session_date":
        return _parse_dates(codes, uniques, date_order, today)
    if column in VOCABULARY_FIELDS:
        categories = list(CATEGORY_DTYPES[column].categories)
        blank = (categories.index("mfr"), None) if column == "arm" else (
            (-1, "missing_audience_group") if column == "audience_group" else (-1, None))

        def category_code(text: str) -> tuple[int, str | None]:
            value, reason = parse_category(column, text)
            return (categories.index(value), None) if value else (
                (-1, reason) if reason else blank)

        return _parse_distinct(codes, uniques, category_code, blank, np.int16)
    if column == "deep_breathing":
        def boolean(text: str) -> tuple[int, str | None]:
            value, reason = parse_category("boolean", text)
            return (int(value == "true"), None) if value else (-1, reason)

        return _parse_distinct(codes, uniques, boolean, (-1, None), np.int8)
    if column in ROM_FIELDS:
        return _parse_distinct(codes, uniques, parse_rom, (math.nan, "", None), np.float64)
    return _parse_distinct(codes, uniques, lambda t: parse_field_value(column, t),
                           (math.nan, None), np.float64)


def _absent_column(column: str, n: int) -> Parsed:
    if column == "client_id":
        return _absent(n, None, object, "missing_client_id")
    if column == "clinician":
        return _absent(n, None, object)
    if column == "session_date":
        return _absent(n, np.iinfo(np.int64).min, np.int64, "missing_date")
    if column == "arm":
        return _absent(n, list(CATEGORY_DTYPES["arm"].categories).index("mfr"), np.int16)
    if column == "audience_group":
        return _absent(n, -1, np.int16, "missing_audience_group")
    if column in VOCABULARY_FIELDS or column == "site":
        return _absent(n, -1, np.int16)
    if column == "deep_breathing":
        return _absent(n, -1, np.int8)
    return _absent(n, math.nan, np.float64)


def _parse_clients(codes: np.ndarray, uniques: list[str], key: bytes) -> Parsed:
    present = [not is_missing(u) for u in uniques]
    pseudonyms = client_pseudonyms([u for u, p in zip(uniques, present, strict=True) if p], key)
    it = iter(pseudonyms)
    values = np.array([next(it) if p else None for p in present] + [None], dtype=object)
    reasons = np.array([0 if p else _bit("missing_client_id") for p in present]
                       + [_bit("missing_client_id")], dtype=np.int16)
    return Parsed(codes, values, reasons)


def _parse_clinicians(codes: np.ndarray, uniques: list[str], key: bytes) -> Parsed:
    """Clinician names -> ``t_`` pseudonyms (keyed hash, like client ids); blank is NA."""
    present = [not is_missing(u) for u in uniques]
    pseudonyms = iter(clinician_pseudonyms([u for u, p in zip(uniques, present, strict=True)
                                            if p], key))
    values = np.array([next(pseudonyms) if p else None for p in present] + [None], dtype=object)
    return Parsed(codes, values, np.zeros(len(uniques) + 1, dtype=np.int16))


def _parse_sites(codes: np.ndarray, uniques: list[str],
                 unsafe: np.ndarray | None = None) -> Parsed:
    """Free-text site names: spaces trimmed; spellings differing only in case are merged.

    An ``unsafe`` spelling (identifier-shaped, or with a NUL) gets no name: its rows are
    quarantined, and the name must not reach the clean table's categories either."""
    labels: dict[str, int] = {}
    names: list[str] = []
    values = []
    for i, u in enumerate(uniques):
        if is_missing(u) or (unsafe is not None and unsafe[i]):
            values.append(-1)
            continue
        norm = normalise_token(u)
        if norm not in labels:
            labels[norm] = len(names)
            names.append(" ".join(str(u).split()))
        values.append(labels[norm])
    return Parsed(codes, np.array([*values, -1], dtype=np.int32),
                  np.zeros(len(uniques) + 1, dtype=np.int16), tuple(names))


def _parse_dates(codes: np.ndarray, uniques: list[str], date_order: str,
                 today: dt.date) -> Parsed:
    earliest = dt.date.fromisoformat(EARLIEST_SESSION_DATE)
    epoch = dt.date(1970, 1, 1)

    def day_number(text: str) -> tuple[int, str | None]:
        found, reason = parse_date(text, date_order, today.year)
        if found is None:
            return np.iinfo(np.int64).min, reason or "missing_date"
        if found > today:
            return np.iinfo(np.int64).min, "future_date"
        if found < earliest:
            return np.iinfo(np.int64).min, "date_before_1990"
        return (found - epoch).days, None

    return _parse_distinct(codes, uniques, day_number, (np.iinfo(np.int64).min, "missing_date"),
                           np.int64)


_NO_DAY = np.iinfo(np.int64).min


def completed_years(birth: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Age in completed years on the dates ``on`` of people born on ``birth`` (numpy dates);
    someone born on 29 February turns a year older on 1 March in common years.

    >>> completed_years(np.array(["1990-06-15"], "datetime64[D]"),
    ...                 np.array(["2024-06-14"], "datetime64[D]"))
    array([33])
    """
    birth = np.asarray(birth, dtype="datetime64[D]")
    on = np.asarray(on, dtype="datetime64[D]")

    def parts(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        months = d.astype("datetime64[M]")
        year_month = months.astype(np.int64)  # months since 1970-01
        day = (d - months).astype(np.int64)
        return year_month // 12, (year_month % 12) * 32 + day

    birth_year, birth_day = parts(birth)
    year, day = parts(on)
    return year - birth_year - (day < birth_day)


def _ages_from_birth_dates(column: pd.Series, parsed: dict[str, Parsed], date_order: str,
                           today: dt.date, reasons: _Reasons) -> Parsed:
    """``age`` where the log gives none: completed years from the date of birth to the session
    date. A birth date that cannot be read quarantines its row (``unparseable_birth_date``);
    one that gives an age outside 0-120 at the session is ``out_of_range`` of ``age``. The
    birth dates themselves go nowhere: this returns the ages only."""
    epoch = dt.date(1970, 1, 1)

    def birth_day(text: str) -> tuple[int, str | None]:
        found, reason = parse_date(text, date_order, today.year)
        if found is None:
            return _NO_DAY, "unparseable_birth_date" if reason else None
        return (found - epoch).days, None

    codes, uniques = encode(column)
    births = _parse_distinct(codes, uniques, birth_day, (_NO_DAY, None), np.int64)
    if births.reasons.any():
        reasons.add(BIRTH_DATE_COLUMN, births.row_reasons())
    age = parsed["age"]
    values = age.rows()
    birth, session = births.rows(), parsed["session_date"].rows()
    fill = (np.isnan(values) & (age.row_reasons() == 0) & (birth != _NO_DAY)
            & (session != _NO_DAY))
    if not fill.any():
        return age
    years = completed_years(birth[fill].astype("datetime64[D]"),
                            session[fill].astype("datetime64[D]")).astype(np.float64)
    lo, hi, _, _ = _bounds()["age"]
    outside = (years < lo) | (years > hi)
    filled = np.flatnonzero(fill)
    bad = np.zeros(values.size, dtype=bool)
    bad[filled[outside]] = True
    reasons.add_where("age", bad, "out_of_range")
    values = values.copy()
    values[filled] = np.where(outside, np.nan, years)
    codes, distinct = pd.factorize(values)  # few distinct ages: back to codes
    return Parsed(codes.astype(np.int32), np.append(np.asarray(distinct, np.float64), np.nan),
                  np.zeros(len(distinct) + 1, dtype=np.int16))


def _check_rom(parsed: dict[str, Parsed], reasons: _Reasons) -> None:
    """Range of motion against its measure: named, same unit, inside the accept range.

    The verdict depends only on (measure, ROM spelling), so it is worked out once per pair in
    a small table and looked up for every row with one 2-D gather.
    """
    measure = parsed["rom_measure"]
    categories = list(CATEGORY_DTYPES["rom_measure"].categories)
    bounds = _rom_bounds().reindex(categories)
    kind_code = {"": 0, "degrees": 1, "cm": 2}
    blank_slot, unknown_slot = len(categories), len(categories) + 1
    slot_u = np.where(measure.values >= 0, measure.values,
                      np.where(measure.reasons > 0, unknown_slot, blank_slot))
    slot = np.take(slot_u, measure.codes)
    for column in ROM_FIELDS:
        rom = parsed[column]
        value = rom.values
        kind = np.array([kind_code[k] for k in (rom.labels or ("",) * value.size)], np.int8)
        has_value = ~np.isnan(value)
        table = np.zeros((len(categories) + 2, value.size), dtype=np.int16)
        for m, (unit, low, high) in enumerate(zip(bounds["unit"], bounds["accept_low"],
                                                  bounds["accept_high"], strict=True)):
            mismatch = has_value & (kind != 0) & (kind != kind_code[unit])
            with np.errstate(invalid="ignore"):
                outside = has_value & ~mismatch & ((value < low) | (value > high))
            table[m] = np.where(mismatch, _bit("rom_unit_mismatch"),
                                np.where(outside, _bit("rom_out_of_range"), 0))
        table[blank_slot] = np.where(has_value, _bit("rom_without_measure"), 0)
        reasons.add(column, table[slot, rom.codes])


def _client_hashes(clients: Parsed) -> np.ndarray:
    """The 64 bits of each row's client pseudonym (0 when missing)."""
    per_distinct = np.array([int(v[2:], 16) if v else 0 for v in clients.values], dtype=np.uint64)
    return per_distinct[clients.codes]


def _source_session_ids(raw: pd.DataFrame, n: int, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Keyed hash of each row's source session id (trimmed), and whether it has one."""
    if "session_id" not in raw.columns or n == 0:
        return np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=bool)
    ids = _arrow_strings(raw["session_id"])
    tokens = pa.array(sorted(_missing_tokens()), pa.large_string())
    hashes, present = np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=bool)
    # in row slices: the ids as Python strings (what the hash takes) are 1.3 GB at 10M rows
    for start in range(0, n, ROWS_PER_SLICE):
        trimmed = pc.utf8_trim_whitespace(ids.slice(start, ROWS_PER_SLICE))
        # a null (a file without session ids, stacked with one that has them) is missing
        # too: is_in gives false, not null, for a null value
        missing = pc.or_(pc.is_null(trimmed), pc.fill_null(
            pc.is_in(pc.utf8_lower(trimmed), value_set=tokens), True))
        here = ~missing.to_numpy(zero_copy_only=False)
        if here.any():
            texts = pc.filter(trimmed, pa.array(here)).to_numpy(zero_copy_only=False)
            hashes[start:start + here.size][here] = keyed_hash64(
                np.asarray(texts, dtype=object), key)
        present[start:start + here.size] = here
    return hashes, present


def _distinct_content(column: str, parsed: Parsed, key: bytes) -> np.ndarray:
    """64 bits per distinct value of a column (and its missing slot), equal whenever the
    parsed values are equal, in any call: what makes a row's content hash comparable across
    partitions."""
    values = parsed.values
    if column in PSEUDONYMISED:  # the pseudonym's own 64 bits
        return np.array([int(v[2:], 16) if v else 0 for v in values], dtype=np.uint64)
    if column == "site":  # spellings that differ only in case are one site
        labels = np.array([normalise_token(label) for label in parsed.labels], dtype=object)
        named = keyed_hash64(labels, key) if labels.size else np.zeros(0, dtype=np.uint64)
        return np.append(named, np.uint64(0))[values]
    if values.dtype.kind == "f":  # -0.0 is 0.0, and every NaN the same
        canonical = np.where(np.isnan(values), np.nan, values + 0.0)
        return canonical.astype(np.float64).view(np.uint64)
    return values.astype(np.int64).view(np.uint64)


def _content_salts(key: bytes, columns: list[str], which: int) -> np.ndarray:
    """Keyed 64-bit salts, one per column and one for the source session id (``which``
    tells the two hashes of a row apart): without the key, nobody can make two different
    rows hash alike on purpose."""
    names = np.array([f"mfr-dedup-{which}:{c}" for c in [*columns, "source_session_id"]],
                     dtype=object)
    return keyed_hash64(names, key)


def _content_hash(rows: np.ndarray, distinct: dict[str, np.ndarray], parsed: dict[str, Parsed],
                  source_id: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of ``rows``: the XOR of each column's salted, mixed distinct
    value (so rows equal in every column hash alike), and of its source session id."""
    columns = list(zip(salts[:-1], parsed.items(), strict=True))

    def xor_of(part: list[tuple[np.uint64, tuple[str, Parsed]]]) -> np.ndarray:
        h = np.zeros(rows.size, dtype=np.uint64)
        for salt, (column, p) in part:
            h ^= np.take(_mix(distinct[column] ^ salt), np.take(p.codes, rows))
        return h

    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy gathers release the GIL
        halves = list(pool.map(xor_of, [columns[0::2], columns[1::2]]))
    return halves[0] ^ halves[1] ^ _mix(source_id[rows] ^ salts[-1])


def _duplicates(valid: np.ndarray, parsed: dict[str, Parsed], source_id: np.ndarray,
                content: np.ndarray) -> np.ndarray:
    """Valid rows that repeat an earlier valid row exactly (boolean over all rows).

    ``content`` is the content hash of each valid row (:func:`_content_hash`): equal rows
    have equal hashes, and the rare unequal rows with equal hashes are weeded out here by
    comparing their parsed values."""
    duplicate = np.zeros(valid.size, dtype=bool)
    rows = np.flatnonzero(valid)
    if rows.size < 2:
        return duplicate
    h = content
    # Only rows whose hash occurs more than once can be duplicates: find those hashes with a
    # sort (cheaper than a hash table of every row), then work on that small subset.
    ordered = np.sort(h)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if repeated.size == 0:
        return duplicate
    candidates = np.flatnonzero(pd.Index(repeated).get_indexer(h) >= 0)
    codes, _ = pd.factorize(h[candidates])
    seen_before = np.concatenate(([-1], np.maximum.accumulate(codes)[:-1]))
    first_of_group = np.flatnonzero(codes > seen_before)
    repeat = np.flatnonzero(codes <= seen_before)
    if repeat.size:
        first = rows[candidates[first_of_group[codes[repeat]]]]
        later = rows[candidates[repeat]]
        same = source_id[later] == source_id[first]
        for p in parsed.values():
            keys = p.distinct_keys()
            same &= keys[p.codes[later]] == keys[p.codes[first]]
        duplicate[later[same]] = True  # a mismatch would be a 64-bit hash collision
    return duplicate


def _session_hashes(client: np.ndarray, days: np.ndarray, file: np.ndarray, line: np.ndarray,
                    source_id: np.ndarray, has_source_id: np.ndarray) -> np.ndarray:
    """64-bit session ids: from (file, client, source id), else (file, client, date, line)."""
    ids = np.empty(client.size, dtype=np.uint64)
    given = np.flatnonzero(has_source_id) if not has_source_id.all() else slice(None)
    derived = np.flatnonzero(~has_source_id)
    ids[given] = _combine(_combine(_mix(file[given] ^ np.uint64(0x51D)), client[given], 4),
                          source_id[given], 5)
    if derived.size:
        ids[derived] = _combine(_combine(_combine(
            _mix(file[derived] ^ np.uint64(0x5E55)), client[derived], 1), days[derived], 2),
            line[derived], 3)
    return ids


def unique_session_ids(ids: np.ndarray, keep: np.ndarray,
                       line: np.ndarray) -> tuple[np.ndarray, int]:
    """Make 64-bit session ids unique among the ``keep`` rows, in row order: a repeat gets
    its source line mixed in (deterministic); returns the ids and the number of repeats.
    The Dask engine applies the same rule to ids that repeat across partitions."""
    ids = ids.copy()
    conflicts = 0
    rows = np.flatnonzero(keep)
    for salt in range(6, 64):
        kept = ids[rows]
        ordered = np.sort(kept)
        if not (ordered[1:] == ordered[:-1]).any():
            break
        repeat = pd.Series(kept).duplicated().to_numpy()
        conflicts += int(repeat.sum())
        again = rows[repeat]
        ids[again] = _combine(ids[again], line[again], salt)
    return ids, conflicts


# ---------------------------------------------------------------------------------------------
# output frames


def _categorical(codes: np.ndarray, column: str) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int16), dtype=CATEGORY_DTYPES[column])


def _strings(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    table = pa.table({"v": values})
    return table.to_pandas(types_mapper=lambda t: _STRING if pa.types.is_large_string(t) or
                           pa.types.is_string(t) else None)["v"]


def _validated(sessions: pd.DataFrame) -> pd.DataFrame:
    """The clean schema checked in place (its checks are row by row: a slice at a time is
    the whole table's validation)."""
    return _clean_schema().validate(sessions, lazy=True, inplace=True)


def _sessions_builder(parsed: dict[str, Parsed], ids: np.ndarray, file_codes: np.ndarray,
                      file_names: list[str], source_line: np.ndarray
                      ) -> Callable[[np.ndarray], pd.DataFrame]:
    """A function giving the clean table of the rows at given positions, in the dtypes of
    ``CleanSessions``; what every slice shares (the pseudonyms and file names as Arrow
    dictionaries, the categories) is made once, here."""
    sites = pd.Index(list(parsed["site"].labels), dtype="str")
    clients, clinicians = parsed["client_id"], parsed["clinician"]
    client_values = pa.array(clients.values, pa.large_string())
    clinician_values = pa.array(clinicians.values, pa.large_string())
    file_values = pa.array(file_names, pa.large_string())
    techniques = load_table("techniques").set_index("technique")["delivery"]
    delivery_of = np.array([*[CATEGORY_DTYPES["delivery"].categories.get_loc(techniques[c])
                              for c in CATEGORY_DTYPES["technique"].categories], -1])

    def build(kept_rows: np.ndarray) -> pd.DataFrame:
        def take(column: str) -> np.ndarray:
            return parsed[column].rows(kept_rows)

        jobs: dict[str, Callable[[], Any]] = {column: partial(take, column) for column in parsed
                                              if column not in PSEUDONYMISED}
        jobs["session_id"] = lambda: hex_ids(ids[kept_rows])
        jobs["client_id"] = lambda: client_values.take(pa.array(np.take(clients.codes,
                                                                        kept_rows)))
        jobs["clinician"] = lambda: clinician_values.take(pa.array(np.where(
            (c := np.take(clinicians.codes, kept_rows)) < 0, clinicians.values.size - 1,
            c)))  # -1: the missing slot
        jobs["source_file"] = lambda: file_values.take(pa.array(file_codes[kept_rows]))
        # numpy gathers and Arrow kernels release the GIL: two cores build the columns
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            taken = {name: future.result() for name, future in futures.items()}

        breathing = taken["deep_breathing"]
        columns: dict[str, Any] = {
            "session_id": _strings(taken["session_id"]),
            "client_id": _strings(taken["client_id"]),
            "clinician": _strings(taken["clinician"]),
            "site": pd.Categorical.from_codes(taken["site"], categories=sites),
            "session_date": taken["session_date"].astype("datetime64[D]").astype(
                "datetime64[ns]"),
            "delivery": pd.Categorical.from_codes(delivery_of[taken["technique"]],
                                                  dtype=CATEGORY_DTYPES["delivery"]),
            "deep_breathing": pd.arrays.BooleanArray(breathing == 1, breathing < 0),
            "source_file": _strings(taken["source_file"]),
            "source_line": pd.arrays.IntegerArray(source_line[kept_rows],
                                                  np.zeros(kept_rows.size, dtype=bool)),
        }
        for column in VOCABULARY_FIELDS:
            columns[column] = _categorical(taken[column], column)
        for column in CLEAN_COLUMNS:
            if column not in columns:
                columns[column] = taken[column].astype(np.float64, copy=False)
        return pd.DataFrame({c: columns[c] for c in CLEAN_COLUMNS}, copy=False)

    return build


def _quarantine_frame(raw: pd.DataFrame, rows: np.ndarray, parsed: dict[str, Parsed],
                      ids: np.ndarray, file_codes: np.ndarray, file_names: list[str],
                      source_line: np.ndarray, reasons: _Reasons) -> pd.DataFrame:
    """Raw values (as text) of rejected rows; client id pseudonymised, session id derived."""
    columns: dict[str, Any] = {}
    for column in INPUT_COLUMNS:
        if column == "session_id":
            columns[column] = hex_ids(ids[rows]).to_pylist()
        elif column in PSEUDONYMISED:  # the pseudonym, never the raw text
            p = parsed[column]
            columns[column] = [v or "" for v in p.values[p.codes[rows]]]
        elif column in raw.columns:  # raw text, as it may be shown (see safe_text)
            codes, values = encode(raw[column].iloc[rows])
            columns[column] = np.array([*safe_text(values), ""], dtype=object)[codes]
        else:  # absent from every input: blank, so the file always has the same columns
            columns[column] = np.full(rows.size, "", dtype=object)
    reason_text, detail = reasons.text(rows)
    names = neutralise_formulas(pa.array(file_names, pa.large_string())).to_pylist() if (
        file_names) else []
    columns["source_file"] = np.array(names, dtype=object)[file_codes[rows]]
    columns["source_line"] = source_line[rows]
    columns["reasons"] = reason_text
    columns["reason_detail"] = detail
    frame = pd.DataFrame(columns)
    text_columns = [c for c in frame.columns if c != "source_line"]
    return frame.astype(dict.fromkeys(text_columns, "str")).astype({"source_line": "int64"})


def _report(n: int, keep: np.ndarray, valid: np.ndarray, duplicate: np.ndarray,
            reasons: _Reasons, file_codes: np.ndarray, file_names: list[str], date_order: str,
            has_source_id: np.ndarray, conflicts: int, raw: pd.DataFrame) -> dict[str, Any]:
    codes = reason_codes()
    counts = {c: int(np.count_nonzero(reasons.mask & np.uint64(1 << i)))
              for i, c in enumerate(codes)}

    def per_file(rows: np.ndarray | None = None) -> np.ndarray:
        chosen = file_codes if rows is None else file_codes[rows]
        return np.bincount(chosen, minlength=len(file_names))

    totals = [per_file(), per_file(keep), per_file(~valid), per_file(duplicate)]
    per_source = {name: {"rows_in": int(totals[0][i]), "rows_clean": int(totals[1][i]),
                         "rows_quarantined": int(totals[2][i]),
                         "rows_duplicate": int(totals[3][i])}
                  for i, name in enumerate(file_names)}
    known = {*INPUT_COLUMNS, "source_file", "source_line", ISSUE_COLUMN, BIRTH_DATE_COLUMN}
    report = {
        "rows_in": n,
        "rows_clean": int(keep.sum()),
        "rows_quarantined": int((~valid).sum()),
        "rows_duplicate": int(duplicate.sum()),
        "reasons": {c: k for c, k in counts.items() if k},
        "reasons_by_field": reasons.by_field_counts(),
        "per_source": per_source,
        "date_order": date_order,
        "session_ids": {"from_source": int(has_source_id[keep].sum()),
                        "derived": int((~has_source_id[keep]).sum()),
                        "repeated_source_ids": conflicts},
        "columns_absent": [c for c in INPUT_COLUMNS if c not in raw.columns],
        "columns_ignored": sorted(str(c) for c in raw.columns if c not in known),
        "package_version": package_version(),
    }
    assert report["rows_in"] == (report["rows_clean"] + report["rows_quarantined"]
                                 + report["rows_duplicate"]), "row accounting is broken"
    return report


# ---------------------------------------------------------------------------------------------
# the cleaning report of a run


def full_report(raw: RawLogs, result: CleanResult,
                fingerprint: str | None = None) -> dict[str, Any]:
    """The cleaning report plus what the read step dropped and how it read each input, and
    the fingerprint of the key that made the pseudonyms."""
    report = dict(result.report)
    report["dropped_columns"] = raw.dropped_columns
    report["identifier_columns_dropped"] = raw.identifier_columns
    report["rows_per_source_read"] = raw.rows_per_source
    report["inputs"] = [dict(info) for info in raw.sources]
    if fingerprint is not None:
        report["key_fingerprint"] = fingerprint
    return report


def _add(target: dict[str, Any], source: dict[str, Any]) -> None:
    for name, value in source.items():
        target[name] = target.get(name, 0) + value


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cleaning report from several (partitions, or clean tables combined): counts
    added, the first report's settings, inputs in order."""
    first = reports[0]
    merged: dict[str, Any] = {}
    for count in ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate"):
        merged[count] = sum(r[count] for r in reports)
    reasons: dict[str, int] = {}
    by_field: dict[str, int] = {}
    per_source: dict[str, dict[str, int]] = {}
    ids: dict[str, int] = {}
    dropped: dict[str, list[str]] = {}
    identifiers: dict[str, set[str]] = {}
    rows_read: dict[str, int] = {}
    inputs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in reports:
        _add(reasons, r["reasons"])
        _add(by_field, r.get("reasons_by_field", {}))
        for name, counts in r["per_source"].items():
            _add(per_source.setdefault(name, {}), counts)
        _add(ids, r["session_ids"])
        for name, headers in r["dropped_columns"].items():
            dropped.setdefault(name, list(headers))
        for kind, headers in r["identifier_columns_dropped"].items():
            identifiers.setdefault(kind, set()).update(headers)
        _add(rows_read, r["rows_per_source_read"])
        for info in r["inputs"]:
            slot = (info.get("file"), info.get("sheet"))
            if slot not in inputs:
                inputs[slot] = dict(info)
            else:
                for count in ("rows", "blank_rows_skipped", "blank_lines"):
                    if count in info:
                        inputs[slot][count] = inputs[slot].get(count, 0) + info[count]
    merged["reasons"] = {c: reasons[c] for c in reason_codes() if reasons.get(c)}
    order = {c: i for i, c in enumerate(reason_codes())}  # the order one engine writes
    merged["reasons_by_field"] = {k: by_field[k] for k in sorted(
        by_field, key=lambda k: (order[k.split(":", 1)[0]], k.split(":", 1)[1]))}
    merged["per_source"] = per_source
    merged["date_order"] = first["date_order"]
    merged["session_ids"] = {k: ids.get(k, 0) for k in first["session_ids"]}
    merged["columns_absent"] = [c for c in INPUT_COLUMNS
                                if all(c in r["columns_absent"] for r in reports)]
    merged["columns_ignored"] = sorted({c for r in reports for c in r["columns_ignored"]})
    merged["package_version"] = first["package_version"]
    merged["dropped_columns"] = dropped
    merged["identifier_columns_dropped"] = {k: sorted(v) for k, v in sorted(identifiers.items())}
    merged["rows_per_source_read"] = rows_read
    merged["inputs"] = list(inputs.values())
    return merged
