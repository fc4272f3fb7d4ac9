"""Read raw session logs (csv/tsv/xlsx/parquet/jsonl) into one all-string table.

Every value is read as text, exactly as written (``07`` and ``n/a`` survive); headers are
mapped to canonical column names; identifier columns (names, emails, phones, birth dates,
notes, addresses) and unknown extra columns are dropped here and only their headers are
listed. Each row keeps ``source_file`` and ``source_line``:

* csv/tsv: the physical line (line 1 is the header, line 2 the first data row);
* xlsx: the sheet row, and ``source_file`` is ``book.xlsx!Sheet``;
* jsonl: the line number; parquet: the row number (1 = first row).

Rows whose every kept cell is blank are skipped (and counted); rows with the wrong number of
fields are kept, padded, and flagged in the ``source_issue`` column so that cleaning
quarantines them. Any problem that makes a file unusable raises :class:`InputError`, a
one-line message naming the file; a message never echoes more of the data than a short,
masked excerpt (:mod:`mfr_analysis.redact`), and none of a first row that looks like data.

Hostile inputs get a clear line or a flagged row, never a traceback or a silent drop:

* **Size limits** (``data/input_limits.csv``; each can be changed with the environment
  variable it names): an xlsx workbook is refused before openpyxl opens it when its zip
  members expand beyond ``MFR_MAX_UNCOMPRESSED_BYTES`` (2 GiB) in total or one member over
  1 MiB expands more than ``MFR_MAX_COMPRESSION_RATIO`` (100, Apache POI's zip-bomb ratio)
  times; while it is read, beyond ``MFR_MAX_ROWS`` rows (10 million) or ``MFR_MAX_CELLS``
  cells. A parquet file is refused from its metadata (rows, uncompressed size) before it is
  read. Compressed text (gzip, bzip2, xz, zstd) is not read: decompress it first.
* **Binary content** (a PNG renamed ``.csv``: a known signature, or many NUL/control bytes
  in the first 64 KiB) is a one-line error. A stray NUL inside a text table, wherever it is,
  is kept in the row, and cleaning quarantines that row as ``malformed_row``.
* **Headers** are read whole, however long (up to ``MFR_MAX_HEADER_BYTES``, 16 MiB).
* **JSON lines**: a line that is not a JSON object, or is nested too deeply to parse, is a
  flagged row (``malformed_row``); the other lines are read.
* **xlsx**: merged cells take the value of their top-left cell (what the clinician sees);
  a formula cell without a saved result, in a column that is kept, flags its row
  (``formula_without_value``).

Reader flags go in ``source_issue`` as ``reason:where`` items joined by ``;``.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import os
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mfr_analysis import errors
from mfr_analysis.config import SESSIONS_FILE
from mfr_analysis.io import CLEAN_OUTPUT_FILES
from mfr_analysis.redact import (
    excerpt,
    excerpt_list,
    excerpt_message,
    looks_like_data,
    mask_identifiers,
    replace_control,
)
from mfr_analysis.schema import CLEAN_COLUMNS, INTAKE_COLUMNS
from mfr_analysis.tables import load_table

log = logging.getLogger(__name__)

#: Canonical columns a raw file may provide (``delivery`` is derived from ``technique``).
INPUT_COLUMNS: tuple[str, ...] = tuple(
    c for c in CLEAN_COLUMNS if c not in ("delivery", "source_file", "source_line")
)
REQUIRED_COLUMNS: dict[str, str] = {"client_id": "client id", "session_date": "session date"}
ISSUE_COLUMN = "source_issue"
BIRTH_DATE_COLUMN = "birth_date"
"""A date-of-birth column is an identifier: its header is listed with the dropped identifiers
and its values never leave cleaning, which reads them only to derive ``age`` at each session
(:mod:`mfr_analysis.clean`) and then drops them. Until then they travel under this name."""
RAGGED_ROW = "malformed_row:row"  # a row with another number of fields than the header
TEXT_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".dat")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, *EXCEL_SUFFIXES, ".parquet", ".pq", *JSON_SUFFIXES)
DELIMITERS = (",", ";", "\t", "|")
STRING = pa.large_string()
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 21  # complete lines wanted in the sample (header search looks at 20 rows)
_BINARY_SIGNATURES: dict[bytes, str] = {
    b"\x1f\x8b": "gzip-compressed", b"BZh": "bzip2-compressed", b"\xfd7zXZ\x00": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed", b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!": "a RAR archive", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image",
    b"\xff\xd8\xff": "a JPEG image", b"%PDF": "a PDF document", b"\x7fELF": "a program",
}


class InputError(errors.InputError):
    """One-line, user-facing error about an input file (names the file)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def input_limits() -> dict[str, int]:
    """The size limits of ``data/input_limits.csv``, each overridable by its environment
    variable (read on every call, so a test or a worker process sees the current value)."""
    table = load_table("input_limits")
    limits: dict[str, int] = {}
    for name, variable, default in zip(table["limit"], table["env_var"], table["default"],
                                       strict=True):
        text = os.environ.get(variable, "").strip()
        try:
            value = int(float(text)) if text else int(default)
        except ValueError:
            value = 0
        if value < 1:
            raise InputError(f"{variable} must be a positive whole number, not {excerpt(text)}")
        limits[name] = value
    return limits


def _limit_variable(limit: str) -> str:
    table = load_table("input_limits").set_index("limit")
    return str(table.loc[limit, "env_var"])


def _too_big(name: str, what: str, limit: str, value: float) -> InputError:
    """The one line for an input over one of the size limits."""
    unit = " bytes" if limit.endswith("_bytes") else ""
    return InputError(f"{name}: {what}, more than the limit of {value:,.0f}{unit}; refused "
                      f"(set {_limit_variable(limit)} to raise the limit)")


@dataclass(frozen=True)
class RawLogs:
    """All rows of all inputs as text, with canonical column names where recognised.

    ``frame`` holds every value exactly as written (missing cells are NA). Columns with few
    distinct spellings are pandas categoricals of ``str`` (the codes are what cleaning maps
    back to rows), ``session_id`` is plain ``str``; then ``source_file`` (categorical),
    ``source_line`` (int64) and, if any row had the wrong number of fields, ``source_issue``.
    ``dropped_columns`` lists unknown extra headers per source, ``identifier_columns`` the
    dropped identifier headers by kind, ``sources`` how each input was read (format,
    encoding, delimiter, sheets read and skipped, blank rows skipped).
    """

    frame: pd.DataFrame
    dropped_columns: dict[str, list[str]]
    identifier_columns: dict[str, list[str]]
    rows_per_source: dict[str, int]
    sources: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Column:
    """One text column, dictionary-encoded (``codes`` into ``dictionary``, -1 = missing) or,
    when nearly every value is distinct (session ids), kept ``plain``."""

    codes: np.ndarray | None
    dictionary: pa.Array | None
    plain: pa.ChunkedArray | None = None

    def __len__(self) -> int:
        return len(self.plain) if self.codes is None else len(self.codes)


@dataclass(frozen=True)
class Source:
    """One table read from one file (or one sheet of a workbook)."""

    name: str
    columns: dict[str, Column]  # canonical name -> column (and maybe ISSUE_COLUMN)
    lines: np.ndarray  # source_line of every row
    dropped: list[str]
    identifiers: dict[str, list[str]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Number of rows kept from this source."""
        return len(self.lines)


# ---------------------------------------------------------------------------------------------
# header mapping


def header_key(text: object) -> str:
    """Matching key of a header: NFKC, lower case, without spaces, hyphens, underscores and
    control characters (a NUL in a header does not hide the column)."""
    cleaned = unicodedata.normalize("NFKC", str(text)).replace("\ufeff", "").casefold()
    return re.sub(r"[\s_\-\x00-\x1f\x7f]+", "", cleaned)


def _without_unit_suffix(text: str) -> str:
    """'Duration (min)' -> 'Duration', 'Pain [0-10]' -> 'Pain'."""
    return re.sub(r"\s*[\(\[][^\)\]]*[\)\]]\s*$", "", str(text))


@cache
def _alias_index() -> dict[str, str]:
    table = load_table("column_aliases")
    index = {header_key(c): c for c in INPUT_COLUMNS}
    for canonical, alias in zip(table["canonical"], table["alias"], strict=True):
        index.setdefault(header_key(alias), canonical)
    return index


@cache
def _identifier_index() -> dict[str, str]:
    table = load_table("identifier_columns")
    return {header_key(a): k for a, k in zip(table["alias"], table["kind"], strict=True)}


@dataclass(frozen=True)
class UserMapping:
    """A user's mapping file: raw header -> canonical name, and headers to drop."""

    columns: dict[str, str]
    drop: frozenset[str]
    path: str = ""


def load_mapping(path: str | Path) -> UserMapping:
    """Read a YAML or TOML mapping file ``{"raw header": "canonical_name", drop: [...]}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: cannot read mapping file "
                         f"({excerpt_message(exc)})") from exc
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is a user error here
        raise InputError(f"{path.name}: mapping file is not valid YAML/TOML "
                         f"({excerpt_message(exc)})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path.name}: mapping file must be a table of 'raw header: column'")
    data = dict(data)
    drop = data.pop("drop", []) or []
    if isinstance(drop, str):
        drop = [drop]
    if isinstance(data.get("columns"), dict):
        data = {**data.pop("columns"), **data}
    columns: dict[str, str] = {}
    drops = {header_key(d) for d in drop}
    for raw, target in data.items():
        if target is None or str(target).strip().lower() in ("", "drop"):
            drops.add(header_key(raw))
            continue
        canonical = str(target).strip()
        if canonical not in INPUT_COLUMNS:
            raise InputError(
                f"{path.name}: {excerpt(raw, 40)} maps to unknown column "
                f"{excerpt(canonical, 40)}; "
                f"use one of {', '.join(INPUT_COLUMNS)}"
            )
        columns[header_key(raw)] = canonical
    return UserMapping(columns=columns, drop=frozenset(drops), path=str(path))


@dataclass(frozen=True)
class HeaderPlan:
    """What happens to each header position: canonical target or None (dropped)."""

    targets: tuple[str | None, ...]
    dropped: list[str]
    identifiers: dict[str, list[str]]

    def recognised(self) -> int:
        """Number of headers that map to a canonical column or an identifier kind."""
        kept = sum(t is not None and t != BIRTH_DATE_COLUMN for t in self.targets)
        return kept + sum(map(len, self.identifiers.values()))

    def missing_required(self) -> list[str]:
        """Required canonical columns the headers do not provide."""
        return [c for c in REQUIRED_COLUMNS if c not in self.targets]


_LABEL_WIDTH = 200  # characters of a dropped header kept in the cleaning report


def _header_label(raw: object) -> str:
    """A header as the cleaning report lists it: identifier-shaped parts masked, control
    characters replaced, at most :data:`_LABEL_WIDTH` characters (headers are written out)."""
    text = replace_control(mask_identifiers(str(raw).replace("\ufeff", "").strip()))
    return text if len(text) <= _LABEL_WIDTH else text[: _LABEL_WIDTH - 1] + "…"


def plan_headers(headers: Sequence[object], mapping: UserMapping | None = None) -> HeaderPlan:
    """Map raw headers to canonical names; identifiers and unknown extras are dropped."""
    aliases, identifiers = _alias_index(), _identifier_index()
    targets: list[str | None] = []
    dropped: list[str] = []
    found: dict[str, list[str]] = {}
    for position, raw in enumerate(headers):
        label = _header_label(raw) or f"(unnamed column {position + 1})"
        key, short = header_key(raw), header_key(_without_unit_suffix(str(raw)))
        target: str | None = None
        if mapping is not None and (key in mapping.drop or short in mapping.drop):
            dropped.append(label)
        elif mapping is not None and (key in mapping.columns or short in mapping.columns):
            target = mapping.columns.get(key) or mapping.columns[short]
        elif key in identifiers or short in identifiers:
            kind = identifiers.get(key) or identifiers[short]
            found.setdefault(kind, []).append(label)
            if kind == "birth_date":  # kept only until cleaning has derived the age from it
                target = BIRTH_DATE_COLUMN
        elif key in aliases or short in aliases:
            target = aliases.get(key) or aliases[short]
        else:
            dropped.append(label)
        if target is not None and target in targets:
            if target != BIRTH_DATE_COLUMN:  # a second birth date is listed as an identifier
                dropped.append(f"{label} (second column for {target})")
            target = None
        targets.append(target)
    return HeaderPlan(tuple(targets), dropped, found)


def _require(plan: HeaderPlan, headers: Sequence[object], name: str) -> None:
    """Raise the one-line error for headers without a client id or a date column.

    The headers are shown as short masked excerpts, and not at all when the row holds
    values (a file without a header row: its first row is a patient's data)."""
    missing = plan.missing_required()
    if missing:
        what = " and ".join(f"{REQUIRED_COLUMNS[m]} ({m})" for m in missing)
        if looks_like_data(headers):
            raise InputError(
                f"{name}: no {what} column, and no header row: the first row holds values "
                "(a date, a number or an identifier), not column names; add a header row or "
                "name the columns in a --mapping file")
        raise InputError(f"{name}: no {what} column; headers seen: {excerpt_list(headers)}")


# ---------------------------------------------------------------------------------------------
# building a source table


PLAIN_COLUMNS = ("session_id",)  # nearly unique per row: not worth a dictionary


def _chunked(col: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    col = col if isinstance(col, pa.ChunkedArray) else pa.chunked_array([col])
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, STRING)
    return col


def encode_strings(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode a string column: (codes with -1 for null, distinct values).

    The codes use the smallest integer type pandas would use for a categorical of that size.
    """
    col = _chunked(col)
    if len(col) == 0 or col.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), pa.array([], col.type)
    encoded = pc.dictionary_encode(col)
    dictionary = encoded.chunk(encoded.num_chunks - 1).dictionary
    if any(len(c.dictionary) != len(dictionary) for c in encoded.chunks):
        encoded = pa.chunked_array([pc.dictionary_encode(col.combine_chunks())])
        dictionary = encoded.chunk(0).dictionary
    parts = []
    for chunk in encoded.chunks:
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, -1)
        parts.append(indices.to_numpy(zero_copy_only=False))
    codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return codes.astype(_code_dtype(len(dictionary)), copy=False), dictionary


def _code_dtype(n_categories: int) -> np.dtype:
    """The integer type pandas uses for the codes of a categorical of that size."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _encode_all(columns: dict[str, pa.Array | pa.ChunkedArray]) -> dict[str, Column]:
    """Encode every column, two at a time (Arrow releases the GIL)."""
    def one(item: tuple[str, Any]) -> tuple[str, Column]:
        name, col = item
        if name in PLAIN_COLUMNS:
            return name, Column(None, None, _chunked(col))
        codes, dictionary = encode_strings(col)
        return name, Column(codes, dictionary)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return dict(pool.map(one, columns.items()))


def _blank_rows(columns: dict[str, Column], n: int) -> np.ndarray:
    """Rows whose every cell is null or empty."""
    blank = np.ones(n, dtype=bool)
    for col in columns.values():
        if col.codes is not None:
            empty = np.append(pc.fill_null(pc.equal(pc.utf8_length(col.dictionary), 0),
                                           True).to_numpy(zero_copy_only=False), True)
            blank &= empty[col.codes]
        else:
            empty = pc.fill_null(pc.equal(pc.utf8_length(col.plain), 0), True)
            blank &= empty.to_numpy(zero_copy_only=False)
        if not blank.any():
            break
    return blank


def _physical_lines(path: Path) -> int:
    """Number of physical lines ('\\n'-terminated, plus an unterminated last one)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb") as handle:
        count = count_newlines(handle, 0, size)
        handle.seek(size - 1)
        last = handle.read(1)
    return count + (0 if last == b"\n" else 1)


def count_newlines(handle: Any, start: int, end: int) -> int:
    """Line breaks in bytes ``[start, end)`` of an open binary file.

    Plain reads into one 1 MiB buffer counted by numpy (a third of ``bytes.count``'s time),
    not mmap: a mapped 2 GB file counts as resident memory."""
    buffer = bytearray(1 << 20)
    view = np.frombuffer(buffer, dtype=np.uint8)
    handle.seek(start)
    count, left = 0, end - start
    while left > 0 and (size := handle.readinto(buffer)):
        size = min(size, left)
        count += int(np.count_nonzero(view[:size] == 10))
        left -= size
    return count


def _filter(col: Column, keep: np.ndarray) -> Column:
    if col.codes is not None:
        return Column(col.codes[keep], col.dictionary)
    return Column(None, None, _chunked(col.plain.filter(pa.array(keep))))


def _finish(name: str, columns: dict[str, Any], lines: np.ndarray, plan: HeaderPlan,
            info: dict[str, Any], issues: list[str] | None = None) -> Source:
    """Encode the columns of one source and drop its blank rows."""
    if issues is not None and any(issues):
        columns = {**columns, ISSUE_COLUMN: pa.array(issues, STRING)}
    encoded = _encode_all(columns)
    return _drop_blank(Source(name, encoded, lines, plan.dropped, plan.identifiers, info))


def _drop_blank(source: Source) -> Source:
    """Drop rows with nothing in them (a row flagged as malformed is never blank)."""
    blank = _blank_rows(source.columns, source.rows)
    n_blank = int(blank.sum())
    columns, lines = source.columns, source.lines
    if n_blank:
        keep = ~blank
        columns = {k: _filter(v, keep) for k, v in columns.items()}
        lines = lines[keep]
    info = {**source.info, "rows": int(lines.size), "blank_rows_skipped": n_blank}
    return Source(source.name, columns, lines, source.dropped, source.identifiers, info)


# ---------------------------------------------------------------------------------------------
# delimited text


def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _python_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding == "utf-8" else encoding


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the sample lines into the most, most consistent fields."""
    best, best_score = ",", (0, 0)
    for delim in DELIMITERS:
        counts = [len(row) for row in csv.reader(lines, delimiter=delim) if row]
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        score = (counts.count(mode) if mode > 1 else 0, mode)
        if score > best_score:
            best, best_score = delim, score
    return best


def _header_row(rows: list[list[str]], mapping: UserMapping | None) -> int:
    """Index of the header among the first rows: the first with two recognised columns."""
    for i, row in enumerate(rows[:20]):
        if plan_headers(row, mapping).recognised() >= 2:
            return i
    return next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), 0)


def _physical_line_after(lines: list[str], delimiter: str, row_index: int) -> int:
    """Physical line number (1-based) on which record ``row_index`` of ``lines`` ends."""
    reader = csv.reader(lines, delimiter=delimiter)
    for i, _ in enumerate(reader):
        if i == row_index:
            return reader.line_num
    return 1


def _head_sample(path: Path, name: str) -> tuple[bytes, bool]:
    """The start of a file, enough to find its header: at least 64 KiB, grown (doubling)
    until it holds :data:`_SAMPLE_LINES` complete lines or the whole file, at most the
    ``max_header_bytes`` limit. Returns (bytes, whether they are the whole file)."""
    limit = max(input_limits()["max_header_bytes"], _SAMPLE_BYTES)
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
        whole = len(head) < _SAMPLE_BYTES
        while not whole and head.count(b"\n") < _SAMPLE_LINES and len(head) < limit:
            want = min(len(head), limit - len(head))
            more = handle.read(want)
            head += more
            whole = len(more) < want
        if not whole and not handle.read(1):
            whole = True
    if not whole and b"\n" not in head:
        raise _too_big(name, "the first line is too long to be a table's header",
                       "max_header_bytes", limit)
    return head, whole


def _looks_binary(head: bytes) -> bool:
    """Many NUL or other control bytes: a binary file, not a text table (a few stray NULs
    are not enough: cleaning quarantines the rows that hold them)."""
    data = np.frombuffer(head, dtype=np.uint8)
    nul = int(np.count_nonzero(data == 0))
    control = int(np.count_nonzero((data < 0x20) & ~np.isin(data, (9, 10, 12, 13))))
    return (nul >= 8 and nul > 0.01 * data.size) or (control >= 8 and control > 0.05 * data.size)


def _refuse_binary(head: bytes, name: str) -> None:
    """One line for compressed or binary files (a known signature)."""
    for signature, kind in _BINARY_SIGNATURES.items():
        if head.startswith(signature):
            if kind.endswith("-compressed"):
                raise InputError(f"{name}: a {kind} file; compressed text is not read, "
                                 "decompress it first")
            raise InputError(f"{name}: not a text table ({kind})")


@dataclass(frozen=True)
class TextLayout:
    """How a delimited text file is laid out, as :func:`text_layout` finds it from its head."""

    encoding: str  # detected from the head: utf-8, utf-16, cp1252 or latin-1
    delimiter: str
    header_line: int  # physical line on which the header row ends (1 = the first line)
    plan: HeaderPlan
    data_offset: int | None  # byte offset of the first data line; None: not found by bytes

    def info(self, name: str) -> dict[str, Any]:
        """How the file was read, as the cleaning report lists it."""
        return {"file": name, "format": "delimited", "delimiter": self.delimiter,
                "encoding": self.encoding, "header_line": self.header_line}


def text_layout(path: Path, name: str, mapping: UserMapping | None = None) -> TextLayout:
    """Encoding, delimiter, header row and column plan of a delimited text file, found from
    its head; InputError (one line) for an empty or binary file, or headers without the
    required columns. Both engines read a file (or a byte range of it) with this layout."""
    head, whole = _head_sample(path, name)
    if not head.strip():
        raise InputError(f"{name}: file is empty")
    encoding = _detect_encoding(head[:_SAMPLE_BYTES])
    if encoding != "utf-16" and _looks_binary(head[:_SAMPLE_BYTES]):
        raise InputError(f"{name}: not a text table (binary content)")
    text = head.decode(_python_encoding(encoding), errors="replace")
    sample = text.splitlines()
    if not whole and len(sample) > 1:
        sample = sample[:-1]  # the last sampled line may be cut
    sample = sample[:200]
    delimiter = _sniff_delimiter(sample[:50])
    rows = list(csv.reader(sample, delimiter=delimiter))
    header_index = _header_row(rows, mapping)
    headers = rows[header_index] if rows else []
    plan = plan_headers(headers, mapping)
    _require(plan, headers, name)
    header_line = _physical_line_after(sample, delimiter, header_index)
    data_offset = None
    if encoding != "utf-16":  # one byte per line break: the header ends at its n-th "\n"
        newlines = np.flatnonzero(np.frombuffer(head, dtype=np.uint8) == 10)
        if newlines.size >= header_line:
            data_offset = int(newlines[header_line - 1]) + 1
    return TextLayout(encoding, delimiter, header_line, plan, data_offset)


def _read_delimited(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    layout = text_layout(path, name, mapping)
    info = layout.info(name)
    if layout.encoding != "utf-16":
        ranged = _read_in_ranges(path, name, layout)
        if ranged is not None:
            return [ranged]
        fast = _read_with_pyarrow(path, layout)
        if fast is not None:
            encoding, columns, lines = fast
            return [_finish(name, columns, lines, layout.plan, {**info, "encoding": encoding})]
    log.info("%s: reading with the exact (slower) line-by-line reader", name)
    encoding, columns, lines, issues, blank = _read_with_csv_module(
        path, layout.plan, layout.delimiter, layout.encoding, layout.header_line)
    info = {**info, "encoding": encoding, "reader": "exact", "blank_lines": blank}
    return [_finish(name, columns, lines, layout.plan, info, issues)]


def _arrow_csv(source: Any, plan: HeaderPlan, delimiter: str, encoding: str,
               skip_rows: int = 0) -> tuple[dict[str, pa.ChunkedArray], int, bool]:
    """Delimited text read by pyarrow into the plan's canonical columns, every cell as the
    text written: (columns, rows, whether a row had another number of fields). The one set
    of pyarrow options of the whole-file and the byte-range readers; pyarrow's errors
    propagate."""
    names = [f"c{i}" for i in range(len(plan.targets))]
    keep = {names[i]: t for i, t in enumerate(plan.targets) if t is not None}
    ragged: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        ragged.append(row.actual_columns)
        return "skip"

    table = pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_rows,
                                       encoding="utf8" if encoding == "utf-8" else encoding,
                                       block_size=8 << 20),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False,
                                         invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(keep, pa.string()), include_columns=list(keep),
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    return {keep[n]: table[n] for n in keep}, table.num_rows, bool(ragged)


def _read_with_pyarrow(path: Path, layout: TextLayout
                       ) -> tuple[str, dict[str, Any], np.ndarray] | None:
    """Fast path; None when the file needs the exact reader (ragged rows, odd quoting)."""
    header_line = layout.header_line
    for enc in dict.fromkeys([layout.encoding, "cp1252", "latin-1"]):
        try:
            columns, n_rows, ragged = _arrow_csv(path, layout.plan, layout.delimiter, enc,
                                                 skip_rows=header_line)
        except pa.ArrowInvalid as exc:
            if "utf8" in str(exc).lower() and enc != "latin-1":
                continue
            log.debug("pyarrow could not parse %s: %s", path.name, excerpt_message(exc))
            return None
        except (pa.ArrowException, UnicodeDecodeError, LookupError) as exc:
            if isinstance(exc, UnicodeDecodeError) and enc != "latin-1":
                continue
            log.debug("pyarrow could not parse %s: %s", path.name, excerpt_message(exc))
            return None
        if ragged:
            return None  # ragged rows: the exact reader keeps and flags them
        if _physical_lines(path) != header_line + n_rows:
            return None  # line breaks inside quoted cells: rows are not lines
        lines = np.arange(header_line + 1, header_line + 1 + n_rows, dtype=np.int64)
        return enc, columns, lines
    return None


def read_text_range(path: str | Path, name: str, layout: TextLayout, start: int, end: int,
                    first_line: int) -> Source | None:
    """The rows in bytes ``[start, end)`` of a delimited text file (whole lines, after the
    header), read exactly as the whole file is read (``layout``, pyarrow's options, the true
    physical ``source_line`` from ``first_line``); None when the range does not parse as one
    row per line (a line break inside a quoted cell, ragged rows, an encoding the head did
    not predict): then the file must be read whole."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    try:
        columns, n_rows, ragged = _arrow_csv(pa.BufferReader(data), layout.plan,
                                             layout.delimiter, layout.encoding)
    except (pa.ArrowException, UnicodeDecodeError, LookupError):
        return None
    newlines = int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10))
    lines_in_range = newlines + (0 if data.endswith(b"\n") else 1)
    if ragged or n_rows != lines_in_range:
        return None
    lines = np.arange(first_line, first_line + n_rows, dtype=np.int64)
    return _finish(name, columns, lines, layout.plan, layout.info(name))


RANGE_BYTES = 64 << 20
"""Delimited files larger than this are read one whole-line byte range at a time, each range
encoded before the next is read: the text of a 2 GB file is never all in memory (its Arrow
strings took 2.7 GB at 10M rows, and first-touching that much fresh memory cost seconds)."""


def _line_end(handle: Any, at: int, size: int) -> int:
    """Offset just after the first line break at or after ``at - 1`` (or the file's end)."""
    position = max(at - 1, 0)
    while position < size:
        handle.seek(position)
        block = handle.read(1 << 20)
        cut = block.find(b"\n")
        if cut >= 0:
            return position + cut + 1
        position += len(block)
    return size


def whole_line_ranges(handle: Any, start: int, size: int, blocksize: int
                      ) -> Iterator[tuple[int, int]]:
    """Byte ranges ``(start, end)`` of about ``blocksize`` of an open file from ``start``,
    each ending just after a line break (the last one at the file's end)."""
    while start < size:
        end = _line_end(handle, min(start + blocksize, size), size)
        yield start, end
        start = end


def _read_in_ranges(path: Path, name: str, layout: TextLayout) -> Source | None:
    """A large file read range by range into one source; None when it must be read whole
    (its data offset not found by bytes, or any range not one row per line)."""
    size = path.stat().st_size
    if layout.data_offset is None or size - layout.data_offset <= RANGE_BYTES:
        return None
    parts: list[Source] = []
    line = layout.header_line + 1
    with path.open("rb") as handle:
        for start, end in whole_line_ranges(handle, layout.data_offset, size, RANGE_BYTES):
            part = read_text_range(path, name, layout, start, end, line)
            if part is None:
                return None
            parts.append(part)
            line += part.info["rows"] + part.info["blank_rows_skipped"]
    columns = {c: _merge_columns([p.columns[c] for p in parts]) for c in parts[0].columns}
    info = {**layout.info(name), "rows": sum(p.rows for p in parts),
            "blank_rows_skipped": sum(p.info["blank_rows_skipped"] for p in parts)}
    return Source(name, columns, np.concatenate([p.lines for p in parts]),
                  layout.plan.dropped, layout.plan.identifiers, info)


def _read_with_csv_module(path: Path, plan: HeaderPlan, delimiter: str, encoding: str,
                          header_line: int
                          ) -> tuple[str, dict[str, Any], np.ndarray, list[str], int]:
    """Exact reader: physical line numbers, ragged rows flagged instead of lost."""
    for enc in dict.fromkeys([encoding, "cp1252", "latin-1"]):
        try:
            return (enc, *_csv_module_pass(path, plan, delimiter, _python_encoding(enc),
                                           header_line))
        except UnicodeDecodeError:
            continue
    raise InputError(f"{path.name}: cannot decode the text")  # unreachable: latin-1 decodes all


def _csv_module_pass(path: Path, plan: HeaderPlan, delimiter: str, encoding: str,
                     header_line: int) -> tuple[dict[str, Any], np.ndarray, list[str], int]:
    width = len(plan.targets)
    keep = [(i, t) for i, t in enumerate(plan.targets) if t is not None]
    values: dict[str, list[str]] = {t: [] for _, t in keep}
    lines: list[int] = []
    issues: list[str] = []
    blank = 0
    csv.field_size_limit(1 << 30)
    with path.open("r", encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=False)
        previous = 0
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if start <= header_line:
                continue
            if not any(f.strip() for f in fields):
                blank += 1
                continue
            issue = ""
            if len(fields) > width and any(f.strip() for f in fields[width:]):
                issue = RAGGED_ROW
            elif len(fields) < width:
                issue = RAGGED_ROW
                fields = fields + [""] * (width - len(fields))
            for i, target in keep:
                values[target].append(fields[i])
            lines.append(start)
            issues.append(issue)
    columns = {t: pa.array(v, STRING) for t, v in values.items()}
    return columns, np.asarray(lines, dtype=np.int64), issues, blank


# ---------------------------------------------------------------------------------------------
# other formats


def _cell_text(value: object) -> str:
    """Text of one spreadsheet or JSON value, without losing what was written."""
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


_MERGE_REF = re.compile(
    rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Za-z]{1,3}[0-9]+:[A-Za-z]{1,3}[0-9]+)"')
# a formula element (end tag, or empty element) with no value after it, or an empty one
_FORMULA_WITHOUT_VALUE = re.compile(
    rb"(?:</(?:\w+:)?f>|<(?:\w+:)?f\b[^>]*/>)\s*"
    rb"(?:<(?:\w+:)?v\s*/>|<(?:\w+:)?v>\s*</(?:\w+:)?v>)?\s*</(?:\w+:)?c>")
_CELL_REF = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]+)$")
_XLSX_HEAD_ROWS = 20  # rows read to find a sheet's header
_MAX_COLUMNS = 18_278  # openpyxl's last column (ZZZ); Excel stops at 16,384 (XFD)
_BOMB_MEMBER_BYTES = 1 << 20  # a zip member smaller than this cannot be a bomb


def _check_workbook_zip(path: Path, name: str) -> None:
    """Refuse a workbook whose zip members would expand beyond the limits, before openpyxl
    opens it (the sizes are in the zip directory; Python's zipfile never inflates a member
    beyond its stated size)."""
    limits = input_limits()
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{name}: not a readable xlsx workbook ({type(exc).__name__})") from exc
    total = sum(m.file_size for m in members)
    if total > limits["max_uncompressed_bytes"]:
        raise _too_big(name, f"the workbook expands to {total:,} bytes uncompressed",
                       "max_uncompressed_bytes", limits["max_uncompressed_bytes"])
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _BOMB_MEMBER_BYTES and ratio > limits["max_compression_ratio"]:
            raise _too_big(name, f"a part of the workbook expands {ratio:,.0f} times (a zip "
                           "bomb?)", "max_compression_ratio", limits["max_compression_ratio"])


class _Budget:
    """Rows and cells read from one workbook, against the limits (empty cells that openpyxl
    fills in between distant ones count: a few bytes of XML can ask for millions)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.limits = input_limits()
        self.rows = 0
        self.cells = 0

    def take(self, cells: int) -> None:
        self.rows += 1
        self.cells += cells
        if self.rows > self.limits["max_rows"]:
            raise _too_big(self.name, "too many rows", "max_rows", self.limits["max_rows"])
        if self.cells > self.limits["max_cells"]:
            raise _too_big(self.name, "too many cells (empty cells between filled ones count)",
                           "max_cells", self.limits["max_cells"])


@dataclass(frozen=True)
class _SheetXml:
    """What read-only openpyxl does not tell: merged ranges (min_col, min_row, max_col,
    max_row; 1-based) and whether a formula may lack its saved result (an empty ``<v>``, or
    none; a workbook saved by Excel or LibreOffice has none of these)."""

    merged: tuple[tuple[int, int, int, int], ...] = ()
    formulas_without_value: bool = False


def _scan_sheet_xml(archive: zipfile.ZipFile, member: str | None) -> _SheetXml:
    """One streaming pass over a sheet's XML bytes (C-speed searches, no parsing)."""
    from openpyxl.utils.cell import range_boundaries

    if not member or member not in archive.namelist():
        return _SheetXml()
    refs: set[bytes] = set()
    formulas = False
    tail = b""
    with archive.open(member) as handle:
        while chunk := handle.read(1 << 20):
            block = tail + chunk
            refs.update(_MERGE_REF.findall(block))
            formulas = formulas or _FORMULA_WITHOUT_VALUE.search(block) is not None
            tail = block[-512:]
    merged = []
    for ref in refs:
        try:
            bounds = range_boundaries(ref.decode("ascii"))
        except (ValueError, TypeError):
            continue
        if None not in bounds and bounds[:2] != bounds[2:]:
            merged.append(tuple(int(b) for b in bounds))
    return _SheetXml(tuple(sorted(merged, key=lambda b: (b[1], b[0]))), formulas)


def _formulas_without_value(archive: zipfile.ZipFile, member: str,
                            max_rows: int) -> dict[int, set[int]]:
    """Sheet row -> columns (1-based) of formula cells saved without a result.

    Such a workbook was written by a script and never recalculated: openpyxl gives None
    (a blank) where the clinician's spreadsheet would show a number. A formula whose saved
    result is an empty string (``t="str"``) has a value. Parsed only for sheets that hold
    a formula that may lack its result (see :func:`_scan_sheet_xml`); the XML is streamed
    and cleared as it goes."""
    try:
        from defusedxml.ElementTree import iterparse
    except ImportError:  # the standard parser (expat >= 2.4 limits entity expansion)
        from xml.etree.ElementTree import iterparse  # noqa: S405
    from openpyxl.utils.cell import column_index_from_string

    found: dict[int, set[int]] = {}
    row = col = 0
    sheet_data = None
    with archive.open(member) as handle:
        for event, elem in iterparse(handle, events=("start", "end")):
            tag = elem.tag.rpartition("}")[2]
            if event == "start":
                if tag == "row":
                    r = elem.get("r", "")
                    row, col = (int(r) if r.isdigit() else row + 1), 0
                elif tag == "sheetData":
                    sheet_data = elem
                continue
            if tag == "c":
                match = _CELL_REF.match(elem.get("r", ""))
                col = column_index_from_string(match[1].upper()) if match else col + 1
                formula = value = False
                for child in elem:
                    kind = child.tag.rpartition("}")[2]
                    if kind == "f":
                        formula = True
                    elif kind == "v":
                        value = bool((child.text or "").strip()) or elem.get("t") in (
                            "str", "inlineStr")
                    elif kind == "is":
                        value = True
                if formula and not value:
                    found.setdefault(int(match[2]) if match else row, set()).add(col)
                    if len(found) > max_rows:
                        break
                elem.clear()
            elif tag == "row" and sheet_data is not None:
                sheet_data.clear()  # rows are done with: keep memory flat
    return found


class _MergeFill:
    """Fill merged ranges with their top-left value, row by row, as the rows stream by."""

    def __init__(self, merged: Sequence[tuple[int, int, int, int]]) -> None:
        self.pending = list(merged)  # sorted by first row
        self.next = 0
        self.active: list[tuple[tuple[int, int, int, int], Any]] = []

    def apply(self, index: int, row: Sequence[Any], columns: int) -> Sequence[Any]:
        """Row ``index`` (1-based) with merged cells filled, up to ``columns`` columns."""
        while self.next < len(self.pending) and self.pending[self.next][1] <= index:
            bounds = self.pending[self.next]
            self.next += 1
            if bounds[1] == index and bounds[0] <= len(row):
                self.active.append((bounds, row[bounds[0] - 1]))
        if not self.active:
            return row
        self.active = [(b, v) for b, v in self.active if b[3] >= index]
        filled = list(row)
        for (min_col, _, max_col, _), value in self.active:
            stop = min(max_col, columns)
            if len(filled) < stop:
                filled.extend([None] * (stop - len(filled)))
            for c in range(min_col - 1, stop):
                if filled[c] is None or filled[c] == "":
                    filled[c] = value
        return filled


def _sheet_rows(sheet: Any, budget: _Budget, fill: _MergeFill | None,
                columns: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """(sheet row, values) of every row, counted against the budget, merges filled."""
    rows = sheet.iter_rows(min_row=1, values_only=True)
    try:
        for index, row in enumerate(rows, 1):
            budget.take(len(row))
            yield index, (fill.apply(index, row, columns) if fill is not None else row)
    finally:
        rows.close()


def _has_content(row: Sequence[Any]) -> bool:
    return any(v.strip() if isinstance(v, str) else v is not None for v in row)


def _sheet_head(sheet: Any, budget: _Budget, xml: _SheetXml) -> tuple[int, list[list[str]]]:
    """The first rows of a sheet as text, from its first non-blank row: (its row, rows)."""
    first, rows = 0, []
    stream = _sheet_rows(sheet, budget, _MergeFill(xml.merged) if xml.merged else None,
                         _MAX_COLUMNS)
    try:
        for index, row in stream:
            if not rows and not _has_content(row):
                continue
            first = first or index
            rows.append([_cell_text(v) for v in row])
            if len(rows) == _XLSX_HEAD_ROWS:
                break
    finally:
        stream.close()
    return first, rows


@dataclass(frozen=True)
class _SheetPlan:
    title: str
    sheet: Any
    xml: _SheetXml
    header_line: int  # sheet row of the header
    headers: list[str]
    plan: HeaderPlan


def _read_sheet(book_name: str, chosen: _SheetPlan, archive: zipfile.ZipFile,
                budget: _Budget, info: dict[str, Any]) -> Source:
    """Stream one sheet's rows below its header into the kept columns."""
    plan, h = chosen.plan, chosen.header_line
    width = len(plan.targets)
    keep = [(i, t) for i, t in enumerate(plan.targets) if t is not None]
    values: dict[str, list[str]] = {t: [] for _, t in keep}
    lines: list[int] = []
    issues: list[str] = []
    without_value: dict[int, set[int]] = {}
    if chosen.xml.formulas_without_value:
        member = getattr(chosen.sheet, "_worksheet_path", None)
        without_value = _formulas_without_value(archive, member, budget.limits["max_rows"])
    kept_columns = {i + 1: t for i, t in keep}
    last_content = 0
    fill = _MergeFill(chosen.xml.merged) if chosen.xml.merged else None
    for index, row in _sheet_rows(chosen.sheet, budget, fill, width):
        if index <= h:
            continue
        for i, target in keep:
            values[target].append(_cell_text(row[i]) if i < len(row) else "")
        problems = [RAGGED_ROW] if len(row) > width and _has_content(row[width:]) else []
        problems += [f"formula_without_value:{kept_columns[c]}"
                     for c in sorted(without_value.get(index, ())) if c in kept_columns]
        issues.append(";".join(problems))
        lines.append(index)
        if _has_content(row):
            last_content = len(lines)
    del lines[last_content:], issues[last_content:]  # trailing blank rows are not rows
    for column in values.values():
        del column[last_content:]
    label = f"{book_name}!{chosen.title}"
    if chosen.xml.merged:
        info = {**info, "merged_ranges_filled": len(chosen.xml.merged)}
    n_formulas = sum(1 for row_cells in without_value.values() for c in row_cells
                     if c in kept_columns)
    if n_formulas:
        info = {**info, "formula_cells_without_value": n_formulas}
    columns = {t: pa.array(v, STRING) for t, v in values.items()}
    return _finish(label, columns, np.asarray(lines, dtype=np.int64), plan, info, issues)


def _read_excel(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    import openpyxl

    _check_workbook_zip(path, name)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds on a bad file
        raise InputError(f"{name}: not a readable xlsx workbook ({type(exc).__name__})") from exc
    budget = _Budget(name)
    try:
        with zipfile.ZipFile(path) as archive:
            candidates: list[_SheetPlan] = []
            for sheet in book.worksheets:
                sheet.reset_dimensions()
                xml = _scan_sheet_xml(archive, getattr(sheet, "_worksheet_path", None))
                first, rows = _sheet_head(sheet, budget, xml)
                if not rows:
                    continue
                h = _header_row(rows, mapping)
                candidates.append(_SheetPlan(sheet.title, sheet, xml, first + h, rows[h],
                                             plan_headers(rows[h], mapping)))
            if not candidates:
                raise InputError(f"{name}: the workbook has no data")
            chosen = [c for c in candidates if not c.plan.missing_required()] or candidates[:1]
            skipped = [c.title for c in candidates if c not in chosen]
            sources = []
            for c in chosen:
                _require(c.plan, c.headers, f"{name}!{c.title}")
                info = {"file": name, "format": "xlsx", "sheet": c.title,
                        "header_line": c.header_line,
                        "sheets_read": [x.title for x in chosen], "sheets_skipped": skipped}
                sources.append(_read_sheet(name, c, archive, budget, info))
    finally:
        book.close()
    if skipped:
        log.info("%s: read sheets %s; skipped %s (no client id and date columns)", name,
                 [c.title for c in chosen], skipped)
    return sources


def _read_parquet(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{name}: not a readable parquet file ({type(exc).__name__})") from exc
    _check_parquet_size(metadata, name)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{name}: not a readable parquet file ({type(exc).__name__})") from exc
    plan = plan_headers(table.column_names, mapping)
    _require(plan, table.column_names, name)
    columns = {t: _parquet_text(table.column(i)) for i, t in enumerate(plan.targets) if t}
    lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    info = {"file": name, "format": "parquet"}
    return [_finish(name, columns, lines, plan, info)]


def _check_parquet_size(metadata: Any, name: str) -> None:
    """Refuse, from the footer alone, a parquet file that would expand beyond the limits
    (dictionary and run-length encoding let a few kilobytes stand for billions of values)."""
    limits = input_limits()
    rows = int(metadata.num_rows)
    if rows > limits["max_rows"]:
        raise _too_big(name, f"{rows:,} rows", "max_rows", limits["max_rows"])
    size = sum(int(metadata.row_group(i).total_byte_size)
               for i in range(metadata.num_row_groups))
    if size > limits["max_uncompressed_bytes"]:
        raise _too_big(name, f"{size:,} bytes uncompressed", "max_uncompressed_bytes",
                       limits["max_uncompressed_bytes"])


def _parquet_text(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_timestamp(col.type):
        seconds = col.cast(pa.timestamp("s", col.type.tz), safe=False)
        return pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S")
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    try:
        return pc.cast(col, STRING)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else _cell_text(v) for v in col.to_pylist()], STRING)


def _read_json_lines(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{name}: file is empty")
    encoding = _detect_encoding(raw[:_SAMPLE_BYTES])
    try:
        text = raw.decode(_python_encoding(encoding))
    except UnicodeDecodeError:
        encoding, text = "latin-1", raw.decode("latin-1")
    records: list[tuple[int, dict[str, Any] | None, str]] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            array = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        except RecursionError as exc:  # one array: no line to set aside
            raise InputError(f"{name}: not valid JSON (nested too deeply)") from exc
        except ValueError as exc:  # e.g. a number of more than 4300 digits
            raise InputError(f"{name}: not valid JSON ({type(exc).__name__})") from exc
        if not isinstance(array, list):
            raise InputError(f"{name}: not valid JSON lines (one value that is not a list)")
        records = [(i, *_json_record(r)) for i, r in enumerate(array, 1)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj: Any = json.loads(line)
            except (RecursionError, ValueError) as exc:  # JSONDecodeError is a ValueError
                records.append((number, None, _json_problem(exc)))
                continue
            records.append((number, *_json_record(obj)))
    if records and all(obj is None for _, obj, _ in records):
        raise InputError(f"{name}: not JSON lines (no line holds a JSON object)")
    headers = list(dict.fromkeys(k for _, obj, _ in records if obj for k in obj))
    plan = plan_headers(headers, mapping)
    _require(plan, headers, name)
    keep = [(h, t) for h, t in zip(headers, plan.targets, strict=True) if t is not None]
    columns: dict[str, list[str]] = {t: [] for _, t in keep}
    issues: list[str] = []
    for _, obj, problem in records:
        cells = _json_cells(obj, keep) if obj is not None else None
        if cells is None:  # not an object, or a value nested too deeply to write as text
            cells = [""] * len(keep)
            problem = problem or "JSON nested too deeply"
        for (_, target), cell in zip(keep, cells, strict=True):
            columns[target].append(cell)
        issues.append(f"malformed_row:row ({problem})" if problem else "")
    lines = np.asarray([n for n, _, _ in records], dtype=np.int64)
    info = {"file": name, "format": "jsonl", "encoding": encoding}
    arrays = {t: pa.array(v, STRING) for t, v in columns.items()}
    return [_finish(name, arrays, lines, plan, info, issues)]


def _json_problem(exc: BaseException) -> str:
    """What was wrong with one JSON value, in words that quote none of it."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return "not a JSON object"


def _json_record(value: Any) -> tuple[dict[str, Any] | None, str]:
    return (value, "") if isinstance(value, dict) else (None, "not a JSON object")


def _json_cells(obj: dict[str, Any], keep: list[tuple[str, str]]) -> list[str] | None:
    """The kept values of one record as text; None if one cannot be written back as text."""
    try:
        return [_cell_text(obj.get(h)) for h, _ in keep]
    except (RecursionError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# public entry points


def expand_inputs(paths: Sequence[str | Path] | str | Path) -> list[Path]:
    """Files to read: given files in order; directories expand to their supported files."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir()
                              if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES
                              and not f.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file")
    if not out:
        raise InputError(f"{', '.join(map(str, paths)) or 'input'}: no data files found")
    seen: set[Path] = set()
    unique: list[Path] = []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    if len(unique) < len(out):
        log.warning("the same file was given more than once; reading it once")
    return unique


def clean_table_path(item: str | Path) -> Path | None:
    """The clean ``sessions.parquet`` named by one input (the file, a Dask engine's folder of
    parts, or a folder holding either), else None; nothing is verified here."""
    path = Path(item)
    if path.is_dir() and path.name != SESSIONS_FILE and (path / SESSIONS_FILE).exists():
        path = path / SESSIONS_FILE
    if path.suffix.lower() in (".parquet", ".pq") and (path.is_file() or path.is_dir()):
        try:
            names = set(pq.read_schema(path).names if path.is_file()
                        else pq.ParquetDataset(path).schema.names)
        except Exception:  # noqa: BLE001 - not a parquet file: let the reader explain
            return None
        if set(CLEAN_COLUMNS) - set(INTAKE_COLUMNS) <= names:  # intake factors are optional
            return path
    return None


def raw_input_files(inputs: Sequence[str | Path] | str | Path) -> list[Path]:
    """The raw log files named by ``inputs``: folders expanded, the outputs of an earlier
    clean left out; InputError (one line) for a clean table or when nothing raw is left."""
    given = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    for item in given:
        if clean_table_path(item) is not None:
            raise InputError(f"{Path(item).name}: already a clean sessions table; pass it to "
                             "claims or report instead of cleaning it again")
    files = [f for f in expand_inputs(given) if f.name not in CLEAN_OUTPUT_FILES]
    if not files:
        raise InputError(f"{', '.join(Path(g).name for g in given)}: no raw log files found "
                         "(only outputs of an earlier clean)")
    return files


def display_names(paths: Sequence[Path]) -> list[str]:
    """Short, unique names for source_file: the file name, with parent folders if needed."""
    names = [p.name for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < 8:
        depth += 1
        names = ["/".join(p.parts[-depth:]) for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def read_source(path: str | Path, mapping: UserMapping | None = None,
                name: str | None = None) -> list[Source]:
    """Read one file into one source table (or one per sheet); InputError if unusable."""
    path = Path(path)
    name = name or path.name
    try:
        if not path.is_file():
            raise InputError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"{name}: file is empty")
        with path.open("rb") as handle:
            magic = handle.read(16)
        suffix = path.suffix.lower()
        if magic.startswith(b"PAR1"):
            return _read_parquet(path, name, mapping)
        if magic.startswith(b"PK\x03\x04"):
            return _read_excel(path, name, mapping)
        if magic.startswith(b"\xd0\xcf\x11\xe0"):
            raise InputError(f"{name}: legacy .xls workbooks are not supported; save as .xlsx")
        _refuse_binary(magic, name)
        if suffix in (".parquet", ".pq", *EXCEL_SUFFIXES):
            raise InputError(f"{name}: not a valid {suffix[1:]} file")
        if suffix in JSON_SUFFIXES:
            return _read_json_lines(path, name, mapping)
        return _read_delimited(path, name, mapping)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    except RecursionError as exc:
        raise InputError(f"{name}: cannot read this file (nested too deeply)") from exc
    except MemoryError as exc:
        raise InputError(f"{name}: cannot read this file (not enough memory)") from exc
    except Exception as exc:  # noqa: BLE001 - never a traceback for a bad input file
        log.debug("unexpected error reading %s", name, exc_info=True)
        detail = excerpt_message(exc)  # a parser's message may quote the data: masked, cut
        raise InputError(f"{name}: cannot read this file ({type(exc).__name__}"
                         f"{': ' + detail if detail else ''})") from exc


def _combine_column(name: str, sources: Sequence[Source]) -> pd.Series | pd.Categorical:
    """One frame column from all sources: categorical of text, or plain text for ids."""
    parts = [s.columns.get(name) for s in sources]
    if len(parts) == 1 and parts[0] is not None and parts[0].codes is not None:
        index = pd.Index(parts[0].dictionary.cast(STRING).to_pandas(types_mapper=_text_dtype))
        return pd.Categorical.from_codes(parts[0].codes, categories=index)
    if all(p is None or p.codes is not None for p in parts):
        all_codes, categories = _unified_codes(parts, [s.rows for s in sources])
        index = pd.Index(categories.cast(STRING).to_pandas(types_mapper=_text_dtype))
        return pd.Categorical.from_codes(all_codes, categories=index)
    chunks = []
    for p, s in zip(parts, sources, strict=True):
        if p is None:
            chunks.append(pa.nulls(s.rows, STRING))
        elif p.codes is None:
            chunks.extend(c.cast(STRING) for c in p.plain.chunks)
        else:
            indices = pa.array(p.codes, mask=p.codes < 0)
            chunks.append(p.dictionary.cast(STRING).take(indices))
    column = pa.chunked_array(chunks, STRING)
    return pa.table({name: column}).to_pandas(types_mapper=_text_dtype)[name]


def _unified_codes(parts: Sequence[Column | None], rows: Sequence[int]
                   ) -> tuple[np.ndarray, pa.Array]:
    """Stacked dictionary-encoded parts as codes into one shared dictionary, in order of
    first appearance (as one encode of the stacked text would give); a missing part is -1."""
    dictionaries = [p.dictionary.cast(STRING) for p in parts if p is not None]
    merged = pa.concat_arrays(dictionaries) if dictionaries else pa.array([], STRING)
    remap_codes, categories = encode_strings(merged)
    small = remap_codes.dtype
    codes, offset = [], 0
    for p, n in zip(parts, rows, strict=True):
        if p is None:
            codes.append(np.full(n, -1, dtype=small))
            continue
        remap = np.append(remap_codes[offset: offset + len(p.dictionary)],
                          np.array([-1], dtype=small))
        offset += len(p.dictionary)
        codes.append(remap[p.codes])
    return (np.concatenate(codes) if codes else np.zeros(0, dtype=small)), categories


def _merge_columns(parts: Sequence[Column]) -> Column:
    """One column of consecutive ranges of a file (the same kind of column in each)."""
    if parts[0].codes is None:
        return Column(None, None, pa.chunked_array(
            [c for p in parts for c in p.plain.chunks], parts[0].plain.type))
    return Column(*_unified_codes(parts, [len(p) for p in parts]))


def _text_dtype(arrow_type: pa.DataType) -> pd.StringDtype | None:
    return pd.StringDtype("pyarrow", na_value=np.nan) if arrow_type == STRING else None


def combine_sources(sources: Sequence[Source]) -> RawLogs:
    """Stack sources into one text DataFrame (canonical columns, then source columns)."""
    present = [c for c in (*INPUT_COLUMNS, BIRTH_DATE_COLUMN, ISSUE_COLUMN)
               if any(c in s.columns for s in sources)]
    data: dict[str, Any] = {c: _combine_column(c, sources) for c in present}
    names = [s.name for s in sources]
    file_codes = np.concatenate([np.full(s.rows, i, dtype=np.int32)
                                 for i, s in enumerate(sources)] or [np.zeros(0, np.int32)])
    data["source_file"] = pd.Categorical.from_codes(
        file_codes, categories=pd.Index(list(dict.fromkeys(names)), dtype="str"))
    data["source_line"] = np.concatenate([s.lines for s in sources] or [np.zeros(0, np.int64)])
    frame = pd.DataFrame(data, copy=False)
    identifiers: dict[str, list[str]] = {}
    for s in sources:
        for kind, headers in s.identifiers.items():
            identifiers.setdefault(kind, [])
            identifiers[kind].extend(h for h in headers if h not in identifiers[kind])
    return RawLogs(
        frame=frame,
        dropped_columns={s.name: list(s.dropped) for s in sources if s.dropped},
        identifier_columns={k: sorted(v) for k, v in sorted(identifiers.items())},
        rows_per_source={s.name: s.rows for s in sources},
        sources=tuple(s.info for s in sources),
    )


def read_logs(paths: Sequence[str | Path] | str | Path, mapping: str | Path | None = None,
              *, on_file: Callable[[str], None] | None = None) -> RawLogs:
    """Read many raw log files (and directories of them) into one all-string table."""
    files = expand_inputs(paths)
    user_mapping = load_mapping(mapping) if mapping is not None else None
    sources: list[Source] = []
    for path, name in zip(files, display_names(files), strict=True):
        sources.extend(read_source(path, user_mapping, name))
        log.info("read %s", name)
        if on_file is not None:
            on_file(name)
    return combine_sources(sources)


__all__ = ["BIRTH_DATE_COLUMN", "INPUT_COLUMNS", "ISSUE_COLUMN", "InputError", "RawLogs",
           "Source", "TextLayout",
           "clean_table_path", "closest_column", "combine_sources", "display_names",
           "expand_inputs", "load_mapping", "plan_headers", "raw_input_files", "read_logs",
           "count_newlines", "read_source", "read_text_range", "text_layout",
           "whole_line_ranges"]


def closest_column(header: object, cutoff: float = 0.75) -> str | None:
    """The canonical column whose name or alias (``data/column_aliases.csv``) is spelt most
    like ``header``, for a "did you mean" hint; None when nothing is close enough.

    Headers are compared by :func:`header_key` (and without a unit suffix) with difflib's
    ratio; keys shorter than five characters get no hint (too many false friends).

    >>> closest_column("Pain at follow-up")
    'pain_followup'
    >>> closest_column("Invoice Ref") is None
    True
    """
    import difflib

    aliases = _alias_index()
    for key in dict.fromkeys((header_key(_without_unit_suffix(str(header))), header_key(header))):
        if len(key) < 5:
            continue
        found = difflib.get_close_matches(key, list(aliases), n=1, cutoff=cutoff)
        if found:
            return aliases[found[0]]
    return None
