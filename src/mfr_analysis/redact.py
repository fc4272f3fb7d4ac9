"""Text safety for everything the tool writes or says: identifiers masked, formulas defused.

Three promises, each a small pure function:

* **Identifier-shaped text is masked** (:func:`mask_identifiers`, :func:`mask_distinct`):
  e-mail addresses, phone numbers, national ids, IBANs, card numbers and long digit runs
  become ``[email]``, ``[phone]``, ``[id]``, ``[iban]``, ``[card]``. The patterns are the
  data table ``data/identifier_patterns.csv`` (kind, regex, mask, the fewest digits a match
  needs, a positive example and the source of the format), applied in its order. Rows with
  ``action = keep`` are shapes that are *never* identifiers although they look alike (dates,
  one decimal number, the tool's own pseudonyms): they are set aside before the masks run.
  Columns have few distinct spellings, so callers mask distinct values; a cheap vectorised
  pre-filter (an ``@``, or at least as many digits as the least demanding pattern needs)
  leaves almost every value untouched by Python regexes.
* **Cells written to CSV cannot run as formulas** (:func:`neutralise_formulas`,
  :func:`neutralise_table`): OWASP's CSV-injection rule, a cell whose first character (after
  any white space) is ``=``, ``+``, ``-``, ``@`` (or a full-width form of these), a tab or a
  carriage return gets a leading ``'``; a cell that is a plain number (``-2``, ``+3``,
  ``-0.5``) is left alone. pyarrow's CSV writer quotes every string cell.
* **Messages show short, masked excerpts** (:func:`excerpt`, :func:`excerpt_list`,
  :func:`excerpt_message`): identifiers masked, long numbers hidden, each value cut to a few
  characters and a bounded number of values; a row that looks like data rather than column
  names (:func:`looks_like_data`) is never echoed at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mfr_analysis.tables import load_table

#: Characters that start a formula in Excel, LibreOffice or Google Sheets (OWASP), and their
#: full-width forms, which some spreadsheet locales also accept.
FORMULA_START = r"=+\-@\x{FF1D}\x{FF0B}\x{FF0D}\x{FF20}"
_FORMULA_LED = rf"^(?:[\t\r]|[\s\x{{00A0}}]*[{FORMULA_START}])"  # RE2 syntax (pyarrow)
_PLAIN_NUMBER = r"^\s*[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)(?:[eE][+-]?\d+)?\s*$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PLACEHOLDER = "\ue000"  # private-use character: stands in for a kept (never masked) span
EXCERPT_WIDTH = 12  # characters of one value shown in a message
EXCERPT_ITEMS = 8  # values shown in a message
MESSAGE_WIDTH = 160  # characters of a library's error text shown to the user
_SCAN = 2000  # characters of one value or message a message excerpt looks at


@dataclass(frozen=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    mask: str
    min_digits: int


@dataclass(frozen=True)
class _Patterns:
    keep: re.Pattern[str]
    masks: tuple[_Pattern, ...]
    literals: tuple[str, ...]  # a match of any pattern with min_digits 0 holds one of these
    min_digits: int  # every other pattern needs at least this many digits


@cache
def _patterns() -> _Patterns:
    table = load_table("identifier_patterns")
    keep = table[table["action"] == "keep"]
    masks = table[table["action"] == "mask"]
    compiled = tuple(_Pattern(k, re.compile(r), m, int(d)) for k, r, m, d in zip(
        masks["kind"], masks["regex"], masks["mask"], masks["min_digits"], strict=True))
    literals = tuple(str(lit) for lit, d in zip(masks["literal"], masks["min_digits"],
                                                strict=True) if int(d) == 0)
    return _Patterns(
        keep=re.compile("|".join(f"(?:{r})" for r in keep["regex"]), re.IGNORECASE),
        masks=compiled, literals=literals,
        min_digits=min(p.min_digits for p in compiled if p.min_digits > 0))


def pattern_table() -> list[dict[str, object]]:
    """The identifier patterns as records (for tests and documentation)."""
    return load_table("identifier_patterns").to_dict("records")


# ---------------------------------------------------------------------------------------------
# identifiers


_DIGIT = re.compile(r"\d")


def _digits(text: str) -> int:
    return len(_DIGIT.findall(text))


def mask_identifiers(text: str) -> str:
    """``text`` with every identifier-shaped part replaced by its mask (``[email]``, ...).

    >>> mask_identifiers("call 07700 900123 or jane@example.org")
    'call [phone] or [email]'
    >>> mask_identifiers("2024-03-05")
    '2024-03-05'
    """
    text = str(text)
    patterns = _patterns()
    if not _may_hold(text, patterns) or patterns.keep.fullmatch(text.strip()):
        return text  # the common cases: no '@' and few digits, or one date or decimal
    kept: list[str] = []

    def set_aside(match: re.Match[str]) -> str:
        kept.append(match[0])
        return _PLACEHOLDER

    work = patterns.keep.sub(set_aside, text.replace(_PLACEHOLDER, "\ufffd"))
    if kept and not _may_hold(work, patterns):  # e.g. a date: nothing else left to mask
        return text
    for pattern in patterns.masks:
        work = pattern.regex.sub(
            lambda m, p=pattern: p.mask if _digits(m[0]) >= p.min_digits else m[0], work)
    if not kept:
        return work
    restored = iter(kept)
    return re.sub(_PLACEHOLDER, lambda _: next(restored), work)


def _may_hold(text: str, patterns: _Patterns) -> bool:
    return any(lit in text for lit in patterns.literals) or _digits(text) >= patterns.min_digits


def candidates(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Which values could hold an identifier (vectorised pre-filter; null is False)."""
    patterns = _patterns()
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    hit = pc.greater_equal(pc.count_substring_regex(values, r"\d"), patterns.min_digits)
    for literal in patterns.literals:
        hit = pc.or_(hit, pc.match_substring(values, literal))
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)


def mask_distinct(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Mask a list of distinct values: (masked values, which ones changed).

    Only values passing :func:`candidates` go through the regexes, so a column of a few
    thousand distinct dates or ratings costs microseconds."""
    out = list(values)
    changed = np.zeros(len(out), dtype=bool)
    if not out:
        return out, changed
    for i in np.flatnonzero(candidates(pa.array(out, pa.large_string()))):
        masked = mask_identifiers(out[i])
        if masked != out[i]:
            out[i], changed[i] = masked, True
    return out, changed


def has_identifier(text: str) -> bool:
    """Does ``text`` hold an identifier-shaped part?"""
    return mask_identifiers(text) != str(text)


def replace_control(text: str) -> str:
    """Control characters (NUL and the like, not tab or line breaks) as U+FFFD."""
    return _CONTROL.sub("\ufffd", str(text))


def _control_bytes(values: pa.Array | pa.ChunkedArray) -> bool:
    """Could any value hold a control character? One numpy pass over the UTF-8 bytes (a
    control character is one byte below 0x20 or 0x7f; tab, LF and CR do not count)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        buffers = chunk.buffers()
        if len(buffers) < 3 or buffers[2] is None:
            continue
        data = np.frombuffer(buffers[2], dtype=np.uint8)
        low = data[data < 0x20]
        if np.isin(low, (9, 10, 13), invert=True).any() or (data == 0x7F).any():
            return True
    return False


def has_control(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Which values hold a NUL or another control character (not tab or line breaks)."""
    if len(values) == 0 or not _control_bytes(values):
        return np.zeros(len(values), dtype=bool)
    hit = pc.match_substring_regex(values, r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)


def safe_text(values: Sequence[str]) -> list[str]:
    """Distinct raw values as they may be written out: identifiers masked, control
    characters replaced, formula-led cells neutralised."""
    masked, _ = mask_distinct(values)
    masked = [replace_control(v) if _CONTROL.search(v) else v for v in masked]
    if not masked:
        return masked
    return neutralise_formulas(pa.array(masked, pa.large_string())).to_pylist()


# ---------------------------------------------------------------------------------------------
# formulas in CSV cells


def formula_led(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Boolean: cells a spreadsheet would run as a formula (and that are not plain numbers)."""
    led = pc.match_substring_regex(values, _FORMULA_LED)
    number = pc.match_substring_regex(values, _PLAIN_NUMBER)
    return pc.fill_null(pc.and_(led, pc.invert(number)), False)


def neutralise_formulas(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """OWASP's rule: a formula-led cell gets a leading ``'``; numbers and nulls unchanged.

    Idempotent: a neutralised cell starts with ``'`` and is left alone the next time."""
    if len(values) == 0:
        return values
    prefixed = pc.binary_join_element_wise(pa.scalar("'", values.type), values,
                                           pa.scalar("", values.type))
    return pc.if_else(formula_led(values), prefixed, values)


def neutralise_table(table: pa.Table) -> pa.Table:
    """Every string column (and string dictionary) of ``table`` neutralised for a CSV file."""
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = neutralise_formulas(column)
        elif pa.types.is_dictionary(kind) and (pa.types.is_string(kind.value_type)
                                               or pa.types.is_large_string(kind.value_type)):
            column = neutralise_formulas(pc.cast(column, kind.value_type))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=None, names=table.column_names)


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text columns are neutralised (the input is not changed)."""
    changed: dict[str, object] = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object).where(column.notna(), None)
        if not (pd.api.types.is_string_dtype(column.dtype) or column.dtype == object):
            continue
        try:
            values = pa.array(column, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue  # mixed objects: not a text column
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            continue
        safe = neutralise_formulas(values).to_pandas()
        changed[name] = pd.Series(safe, index=frame.index, dtype=column.dtype)
    return frame.assign(**changed) if changed else frame


# ---------------------------------------------------------------------------------------------
# message excerpts

_DATE_LIKE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_NUMBER_LIKE = re.compile(r"[\d\s.,:/+\-]+")  # fullmatch, and a digit in it: a value
_LONG_NUMBER = re.compile(r"\d(?:[\s.\-/]?\d){3,}")


def excerpt(value: object, width: int = EXCERPT_WIDTH) -> str:
    """A short, masked, quoted excerpt of one value for a message.

    Identifiers and date-shaped parts are masked, any other run of four or more digits is
    shown as ``#``, non-printable characters as ``?``, and the text is cut to ``width``.

    >>> excerpt("Visit Date")
    "'Visit Date'"
    >>> excerpt("jane@example.org, 1971-07-14")
    "'[email], [d…'"
    """
    text = mask_identifiers(str(value).replace("\ufeff", "")[:_SCAN])
    text = _DATE_LIKE.sub("[date]", text)
    text = _LONG_NUMBER.sub(lambda m: re.sub(r"\d", "#", m[0]), text)
    text = "".join(ch if ch.isprintable() else "?" for ch in text).strip()
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def excerpt_list(values: Iterable[object], limit: int = EXCERPT_ITEMS,
                 width: int = EXCERPT_WIDTH) -> str:
    """At most ``limit`` excerpts joined by commas, with the number left out."""
    values = list(values)
    shown = ", ".join(excerpt(v, width) for v in values[:limit]) or "(none)"
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return shown + more


def looks_like_data(cells: Sequence[object]) -> bool:
    """Does a would-be header row hold values rather than column names?

    True if a cell holds an identifier, a date or is only a number: such a row is patient
    data (a file without a header row), so messages must not echo it."""
    for cell in cells:
        text = str(cell).strip()
        if not text:
            continue
        text = text[:_SCAN]
        if (has_identifier(text) or _DATE_LIKE.search(text)
                or (_NUMBER_LIKE.fullmatch(text) and _digits(text))):
            return True
    return False


_QUOTED = re.compile(r"(['\"])(.*?)\1")
_SEPARATORS = re.compile(r"[,;\t|]")


def _drop_row_dump(line: str) -> str:
    """Cut ``...: a,b,c`` (a delimited row echoed by a parser) after its colon."""
    for colon in (m.start() for m in re.finditer(":", line)):
        if len(_SEPARATORS.findall(line, colon)) >= 2:
            return line[: colon + 1] + " …"
    return line


def excerpt_message(text: object, width: int = MESSAGE_WIDTH) -> str:
    """A library's error text made safe to show: first line only, identifiers and dates
    masked, quoted values cut to a few characters, a trailing dump of a delimited row
    (``...: a,b,c``) dropped, and the whole cut to ``width`` characters."""
    lines = str(text).splitlines()
    line = mask_identifiers((lines[0] if lines else "")[:_SCAN])
    line = _DATE_LIKE.sub("[date]", line)
    line = _drop_row_dump(line)
    line = _QUOTED.sub(lambda m: m[1] + (m[2] if len(m[2]) <= 4 else m[2][:4] + "…") + m[1],
                       line)
    line = _LONG_NUMBER.sub(lambda m: re.sub(r"\d", "#", m[0]), line)
    line = "".join(ch if ch.isprintable() else "?" for ch in line).strip()
    return line if len(line) <= width else line[: width - 1] + "…"


__all__ = ["candidates", "excerpt", "excerpt_list", "excerpt_message", "formula_led",
           "has_control", "has_identifier", "looks_like_data", "mask_distinct",
           "mask_identifiers", "neutralise_formulas", "neutralise_frame", "neutralise_table",
           "pattern_table", "replace_control", "safe_text"]
