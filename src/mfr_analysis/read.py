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
one-line message naming the file.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import mmap
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
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

from mfr_analysis import errors
from mfr_analysis.schema import CLEAN_COLUMNS
from mfr_analysis.tables import load_table

log = logging.getLogger(__name__)

#: Canonical columns a raw file may provide (``delivery`` is derived from ``technique``).
INPUT_COLUMNS: tuple[str, ...] = tuple(
    c for c in CLEAN_COLUMNS if c not in ("delivery", "source_file", "source_line")
)
REQUIRED_COLUMNS: dict[str, str] = {"client_id": "client id", "session_date": "session date"}
ISSUE_COLUMN = "source_issue"
TEXT_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".dat")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, *EXCEL_SUFFIXES, ".parquet", ".pq", *JSON_SUFFIXES)
DELIMITERS = (",", ";", "\t", "|")
STRING = pa.large_string()
_SAMPLE_BYTES = 1 << 16


class InputError(errors.InputError):
    """One-line, user-facing error about an input file (names the file)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


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
    """Matching key of a header: NFKC, lower case, without spaces, hyphens and underscores."""
    cleaned = unicodedata.normalize("NFKC", str(text)).replace("\ufeff", "").casefold()
    return re.sub(r"[\s_\-]+", "", cleaned)


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
        raise InputError(f"{path.name}: cannot read mapping file ({exc})") from exc
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is a user error here
        raise InputError(f"{path.name}: mapping file is not valid YAML/TOML ({exc})") from exc
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
                f"{path.name}: '{raw}' maps to unknown column '{canonical}'; "
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
        return sum(t is not None for t in self.targets) + sum(map(len, self.identifiers.values()))

    def missing_required(self) -> list[str]:
        """Required canonical columns the headers do not provide."""
        return [c for c in REQUIRED_COLUMNS if c not in self.targets]


def plan_headers(headers: Sequence[object], mapping: UserMapping | None = None) -> HeaderPlan:
    """Map raw headers to canonical names; identifiers and unknown extras are dropped."""
    aliases, identifiers = _alias_index(), _identifier_index()
    targets: list[str | None] = []
    dropped: list[str] = []
    found: dict[str, list[str]] = {}
    for position, raw in enumerate(headers):
        label = str(raw).replace("\ufeff", "").strip() or f"(unnamed column {position + 1})"
        key, short = header_key(raw), header_key(_without_unit_suffix(str(raw)))
        target: str | None = None
        if mapping is not None and (key in mapping.drop or short in mapping.drop):
            dropped.append(label)
        elif mapping is not None and (key in mapping.columns or short in mapping.columns):
            target = mapping.columns.get(key) or mapping.columns[short]
        elif key in identifiers or short in identifiers:
            found.setdefault(identifiers.get(key) or identifiers[short], []).append(label)
        elif key in aliases or short in aliases:
            target = aliases.get(key) or aliases[short]
        else:
            dropped.append(label)
        if target is not None and target in targets:
            dropped.append(f"{label} (second column for {target})")
            target = None
        targets.append(target)
    return HeaderPlan(tuple(targets), dropped, found)


def _require(plan: HeaderPlan, headers: Sequence[object], name: str) -> None:
    missing = plan.missing_required()
    if missing:
        seen = [_short(h) for h in headers[:30]] or ["(none)"]
        more = f" (+{len(headers) - 30} more)" if len(headers) > 30 else ""
        what = " and ".join(f"{REQUIRED_COLUMNS[m]} ({m})" for m in missing)
        raise InputError(f"{name}: no {what} column; headers seen: {', '.join(seen)}{more}")


def _short(text: object, width: int = 40) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in str(text).replace("\ufeff", ""))
    clean = clean.strip()
    return repr(clean if len(clean) <= width else clean[: width - 1] + "…")


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
    count = 0
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        data = np.frombuffer(mm, dtype=np.uint8)
        step = 1 << 26
        for start in range(0, size, step):
            count += int(np.count_nonzero(data[start:start + step] == 10))
        last = int(data[-1])
        del data
    return count + (0 if last == 10 else 1)


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


def _read_delimited(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    if not head.strip():
        raise InputError(f"{name}: file is empty")
    encoding = _detect_encoding(head)
    if b"\x00" in head and encoding != "utf-16":
        raise InputError(f"{name}: not a text table (binary content)")
    text = head.decode(_python_encoding(encoding), errors="replace")
    sample = text.splitlines()
    if len(head) == _SAMPLE_BYTES and len(sample) > 1:
        sample = sample[:-1]  # the last sampled line may be cut
    sample = sample[:200]
    delimiter = _sniff_delimiter(sample[:50])
    rows = list(csv.reader(sample, delimiter=delimiter))
    header_index = _header_row(rows, mapping)
    headers = rows[header_index] if rows else []
    plan = plan_headers(headers, mapping)
    _require(plan, headers, name)
    header_line = _physical_line_after(sample, delimiter, header_index)
    info = {"file": name, "format": "delimited", "delimiter": delimiter, "encoding": encoding,
            "header_line": header_line}
    if encoding != "utf-16":
        fast = _read_with_pyarrow(path, plan, delimiter, encoding, header_line)
        if fast is not None:
            encoding, columns, lines = fast
            return [_finish(name, columns, lines, plan, {**info, "encoding": encoding})]
    log.info("%s: reading with the exact (slower) line-by-line reader", name)
    encoding, columns, lines, issues, blank = _read_with_csv_module(
        path, plan, delimiter, encoding, header_line)
    info = {**info, "encoding": encoding, "reader": "exact", "blank_lines": blank}
    return [_finish(name, columns, lines, plan, info, issues)]


def _read_with_pyarrow(path: Path, plan: HeaderPlan, delimiter: str, encoding: str,
                       header_line: int) -> tuple[str, dict[str, Any], np.ndarray] | None:
    """Fast path; None when the file needs the exact reader (ragged rows, odd quoting)."""
    names = [f"c{i}" for i in range(len(plan.targets))]
    keep = {names[i]: t for i, t in enumerate(plan.targets) if t is not None}
    for enc in dict.fromkeys([encoding, "cp1252", "latin-1"]):
        invalid: list[int] = []

        def on_invalid(row: pacsv.InvalidRow, invalid: list[int] = invalid) -> str:
            invalid.append(row.actual_columns)
            return "skip"

        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=header_line,
                                               encoding="utf8" if enc == "utf-8" else enc,
                                               block_size=8 << 20),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False,
                                                 invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(keep, pa.string()), include_columns=list(keep),
                    strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        except pa.ArrowInvalid as exc:
            if "utf8" in str(exc).lower() and enc != "latin-1":
                continue
            log.debug("pyarrow could not parse %s: %s", path.name, exc)
            return None
        except (pa.ArrowException, UnicodeDecodeError, LookupError) as exc:
            if isinstance(exc, UnicodeDecodeError) and enc != "latin-1":
                continue
            log.debug("pyarrow could not parse %s: %s", path.name, exc)
            return None
        if invalid:
            return None  # ragged rows: the exact reader keeps and flags them
        if _physical_lines(path) != header_line + table.num_rows:
            return None  # line breaks inside quoted cells: rows are not lines
        lines = np.arange(header_line + 1, header_line + 1 + table.num_rows, dtype=np.int64)
        return enc, {keep[n]: table[n] for n in keep}, lines
    return None


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
                issue = f"malformed_row: {len(fields)} fields, header has {width}"
            elif len(fields) < width:
                issue = f"malformed_row: {len(fields)} fields, header has {width}"
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


def _read_excel(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds on a bad file
        raise InputError(f"{name}: not a readable xlsx workbook ({type(exc).__name__})") from exc
    try:
        candidates = []
        for sheet in book.worksheets:
            sheet.reset_dimensions()
            rows = [[_cell_text(v) for v in row]
                    for row in sheet.iter_rows(min_row=1, values_only=True)]
            while rows and not any(c.strip() for c in rows[-1]):
                rows.pop()
            if not rows:
                continue
            h = _header_row(rows, mapping)
            plan = plan_headers(rows[h], mapping)
            candidates.append((sheet.title, rows, h, plan))
    finally:
        book.close()
    if not candidates:
        raise InputError(f"{name}: the workbook has no data")
    chosen = [c for c in candidates if not c[3].missing_required()] or candidates[:1]
    skipped = [c[0] for c in candidates if c not in chosen]
    sources = []
    for title, rows, h, plan in chosen:
        label = f"{name}!{title}"
        _require(plan, rows[h], label)
        width = len(plan.targets)
        keep = [(i, t) for i, t in enumerate(plan.targets) if t is not None]
        body = rows[h + 1:]
        values = {t: [r[i] if i < len(r) else "" for r in body] for i, t in keep}
        issues = [f"malformed_row: {len(r)} cells, header has {width}"
                  if len(r) > width and any(c.strip() for c in r[width:]) else "" for r in body]
        lines = np.arange(h + 2, h + 2 + len(body), dtype=np.int64)
        info = {"file": name, "format": "xlsx", "sheet": title, "header_line": h + 1,
                "sheets_read": [c[0] for c in chosen], "sheets_skipped": skipped}
        columns = {t: pa.array(v, STRING) for t, v in values.items()}
        sources.append(_finish(label, columns, lines, plan, info, issues))
    if skipped:
        log.info("%s: read sheets %s; skipped %s (no client id and date columns)", name,
                 [c[0] for c in chosen], skipped)
    return sources


def _read_parquet(path: Path, name: str, mapping: UserMapping | None) -> list[Source]:
    import pyarrow.parquet as pq

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
    records: list[tuple[int, dict[str, Any] | None]] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            array = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        records = [(i, r if isinstance(r, dict) else None) for i, r in enumerate(array, 1)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            records.append((number, obj if isinstance(obj, dict) else None))
    if records and all(obj is None for _, obj in records):
        raise InputError(f"{name}: not JSON lines (no line holds a JSON object)")
    headers = list(dict.fromkeys(k for _, obj in records if obj for k in obj))
    plan = plan_headers(headers, mapping)
    _require(plan, headers, name)
    keep = [(h, t) for h, t in zip(headers, plan.targets, strict=True) if t is not None]
    columns = {t: pa.array([_cell_text(obj.get(h)) if obj else "" for _, obj in records], STRING)
               for h, t in keep}
    issues = ["" if obj is not None else "malformed_row: not a JSON object" for _, obj in records]
    lines = np.asarray([n for n, _ in records], dtype=np.int64)
    info = {"file": name, "format": "jsonl", "encoding": encoding}
    return [_finish(name, columns, lines, plan, info, issues)]


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
            raise InputError(f"{p.name}: no such file")
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
            magic = handle.read(8)
        suffix = path.suffix.lower()
        if magic.startswith(b"PAR1"):
            return _read_parquet(path, name, mapping)
        if magic.startswith(b"PK\x03\x04"):
            return _read_excel(path, name, mapping)
        if magic.startswith(b"\xd0\xcf\x11\xe0"):
            raise InputError(f"{name}: legacy .xls workbooks are not supported; save as .xlsx")
        if suffix in (".parquet", ".pq", *EXCEL_SUFFIXES):
            raise InputError(f"{name}: not a valid {suffix[1:]} file")
        if suffix in JSON_SUFFIXES:
            return _read_json_lines(path, name, mapping)
        return _read_delimited(path, name, mapping)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - never a traceback for a bad input file
        log.debug("unexpected error reading %s", name, exc_info=True)
        raise InputError(f"{name}: cannot read this file ({type(exc).__name__}: {exc})") from exc


def _combine_column(name: str, sources: Sequence[Source]) -> pd.Series | pd.Categorical:
    """One frame column from all sources: categorical of text, or plain text for ids."""
    parts = [s.columns.get(name) for s in sources]
    if len(parts) == 1 and parts[0] is not None and parts[0].codes is not None:
        index = pd.Index(parts[0].dictionary.cast(STRING).to_pandas(types_mapper=_text_dtype))
        return pd.Categorical.from_codes(parts[0].codes, categories=index)
    if all(p is None or p.codes is not None for p in parts):
        dictionaries = [p.dictionary.cast(STRING) for p in parts if p is not None]
        merged = pa.concat_arrays(dictionaries) if dictionaries else pa.array([], STRING)
        remap_codes, categories = encode_strings(merged)
        small = remap_codes.dtype
        codes, offset = [], 0
        for p, s in zip(parts, sources, strict=True):
            if p is None:
                codes.append(np.full(s.rows, -1, dtype=small))
                continue
            remap = np.append(remap_codes[offset: offset + len(p.dictionary)],
                              np.array([-1], dtype=small))
            offset += len(p.dictionary)
            codes.append(remap[p.codes])
        all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=small)
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


def _text_dtype(arrow_type: pa.DataType) -> pd.StringDtype | None:
    return pd.StringDtype("pyarrow", na_value=np.nan) if arrow_type == STRING else None


def combine_sources(sources: Sequence[Source]) -> RawLogs:
    """Stack sources into one text DataFrame (canonical columns, then source columns)."""
    present = [c for c in (*INPUT_COLUMNS, ISSUE_COLUMN) if any(c in s.columns for s in sources)]
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


__all__ = ["INPUT_COLUMNS", "ISSUE_COLUMN", "InputError", "RawLogs", "expand_inputs",
           "load_mapping", "plan_headers", "read_logs", "read_source"]
