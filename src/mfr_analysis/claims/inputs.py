"""What the claims models need from a session table: per-client sums, and small cells whole.

Every claim of the registry is analysed as one or more *series* (the change of one outcome,
the pain trend over weeks, one session-factor contrast, adverse events by pressure...). Each
analysis kind (:mod:`mfr_analysis.claims.kinds`) extracts its series from the
:class:`Prepared` session arrays; for each series this module keeps

* ``units``: one row per (audience group, client, arm) -- or per (group, client, exposure)
  for adverse events -- holding counts, sums, cross-products, minima and maxima of the
  series' usable sessions. Everything the client-level methods of large cells compute
  (client means, per-client slopes, cluster-robust scores) is a function of these sums.
* ``rows``: the usable sessions themselves, only for the groups whose count is at most the
  series' session limit (the cells where the engine fits a mixed model or GEE on sessions),
* ``counts``: usable sessions per group, which decide the route of every cell.

Sums add, minima and maxima combine, and small cells stay small, so the inputs of partitions
that each hold *whole clients* combine exactly (:func:`combine_inputs`) into the inputs of
the whole table. The in-memory engine and the Dask reduction both evaluate these inputs,
which is why they give the same table; memory grows with clients, never with sessions.

Naming rule of the per-client sums (the columns of ``units``)
-------------------------------------------------------------
* keys: ``group``, ``client_id``, ``control`` (the unit's arm is control), and for adverse
  events ``exposure`` (the value of the factor, e.g. pressure);
* ``n_sessions``: usable sessions; ``n_<what>_sessions``: of those, the sessions with
  <what> (``n_level_sessions``: sessions at the contrast's level; ``n_event_sessions``:
  sessions with an adverse event);
* ``sum_<v>``: sum of the value v; ``sum_<v>_sq``: of its squares; ``sum_<a>_x_<b>``: of
  the products a x b;
* ``min_<v>``, ``max_<v>``: smallest and largest value (two units of a client combine by
  min and max; every other column adds);
* the suffix ``_with_pre``: the same over the sessions that have a pre-session value.

The values: ``change`` (post minus pre, or follow-up minus pre), ``pre`` (the pre-session
value of the outcome, 0 where missing), ``score`` (the pre-session score whose trend over
the weeks is followed), ``weeks`` (weeks since the client's first session), ``level`` (1 at
the contrast's level, 0 at its reference level) and ``dose`` (a dose claim's factor, e.g.
sessions per week).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mfr_analysis.errors import AnalysisError
from mfr_analysis.tables import VOCABULARY_FIELDS, load_table, normalise_token, synonym_map

__all__ = [
    "ClaimInputs",
    "Prepared",
    "SeriesData",
    "change_sums",
    "combine_inputs",
    "make_series",
    "median_of_counts",
    "pool_units",
    "prepare",
    "trend_sums",
]

NO_GROUP = ""  # sessions without an audience group count in the pooled cell only
KEYS = ("group", "client_id", "control")
UNIT_KEYS = ("group", "client_id", "control", "exposure")  # every key column a unit can have


# ------------------------------------------------------------------------- preparation ---

def _floats(series: pd.Series) -> np.ndarray:
    """Column as float64 with NaN for missing or unparsable values."""
    values = pd.to_numeric(series, errors="coerce")
    return values.to_numpy(dtype=float, na_value=np.nan)


def _labels(series: pd.Series) -> np.ndarray:
    """Text labels as an object array, '' for missing."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([str(u).strip() for u in uniques] + [NO_GROUP], dtype=object)
    return lookup[codes]


def _coded(series: pd.Series, code: Callable[[str], float]) -> np.ndarray:
    """Each distinct value of a column coded once by ``code`` (NaN for missing values)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([code(str(u)) for u in uniques] + [np.nan], dtype=float)
    return lookup[codes]


def _has(sessions: pd.DataFrame, column: str) -> bool:
    return column in sessions.columns and bool(sessions[column].notna().any())


def _change(sessions: pd.DataFrame, order: np.ndarray,
            outcome: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(change, pre) of one outcome, sessions in ``order``: given ``*_change`` filled from
    post - pre, or None."""
    def floats(column: str) -> np.ndarray:
        return _floats(sessions[column])[order]

    pre = floats(f"{outcome}_pre") if f"{outcome}_pre" in sessions else None
    post = floats(f"{outcome}_post") if f"{outcome}_post" in sessions else None
    computed = post - pre if pre is not None and post is not None else None
    if _has(sessions, f"{outcome}_change"):
        given = floats(f"{outcome}_change")
        change = given if computed is None else np.where(np.isnan(given), computed, given)
    else:
        change = computed
    if change is None or not np.isfinite(change).any():
        return None
    return change, (pre if pre is not None else np.full(len(change), np.nan))


def _sort_keys(sessions: pd.DataFrame) -> list[str]:
    """Columns that order a client's sessions (datetime or numeric only)."""
    return [c for c in ("session_date", "session_index") if c in sessions
            and (pd.api.types.is_datetime64_any_dtype(sessions[c])
                 or pd.api.types.is_numeric_dtype(sessions[c]))]


def _token(value: str) -> str:
    """A value as a vocabulary token; whole numbers written as floats read as integers."""
    token = normalise_token(value)
    try:
        number = float(token)
    except ValueError:
        return token
    return str(int(number)) if number.is_integer() else token


def _canonical(field_name: str, levels: Sequence[str]) -> Callable[[str], str]:
    """How a raw value of ``field_name`` reads as a canonical value (its vocabulary, the
    boolean one for true/false levels, or the value itself normalised)."""
    if field_name in VOCABULARY_FIELDS:
        vocabulary: Mapping[str, str] = synonym_map(field_name)
    elif {str(v).lower() for v in levels} <= {"true", "false"}:
        vocabulary = synonym_map("boolean")
    else:
        vocabulary = {}
    return lambda value: vocabulary.get(_token(value), _token(value))


def _delivery_from_technique(table: pd.DataFrame) -> pd.Series | None:
    """``delivery`` derived from ``technique`` (``data/techniques.csv``) when it is absent."""
    if not _has(table, "technique"):
        return None
    techniques = load_table("techniques")
    mapping = dict(zip(techniques["technique"], techniques["delivery"], strict=True))
    return table["technique"].map(lambda t: mapping.get(str(t).strip().lower()),
                                  na_action="ignore")


# columns a session table may lack that can be derived from another one
_DERIVED: dict[str, Callable[[pd.DataFrame], pd.Series | None]] = {
    "delivery": _delivery_from_technique,
}


PREPARED_CACHE_BYTES = 256 << 20
"""Sorted arrays a prepared table keeps for later series (least recently used dropped first):
at 1M clients every array kept made 0.75 GB beside the series' sums."""


def _array_bytes(value: object) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_array_bytes(v) for v in value)
    return 0


@dataclass(frozen=True)
class Prepared:
    """The session table's sessions sorted by client, with the arrays every series needs.

    ``table`` holds the sessions with a client id in their original order and ``order``
    sorts them; columns are read lazily, sorted and once (:meth:`values`, :meth:`change`,
    :meth:`levels`...), so each analysis kind asks for what its claims name and nothing
    else is copied or converted.
    """

    table: pd.DataFrame = field(repr=False)
    order: np.ndarray = field(repr=False)
    clients: np.ndarray
    client_labels: np.ndarray
    group: np.ndarray
    control: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        """Number of sessions."""
        return len(self.clients)

    def _cached(self, key: tuple, compute: Callable[[], object]) -> object:
        """``compute()`` once per key while it stays among the most recently used arrays
        (:data:`PREPARED_CACHE_BYTES`); older ones are dropped and made again if asked for."""
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # now the most recently used
            return self._cache[key]
        value = self._cache[key] = compute()
        held = {k: _array_bytes(v) for k, v in self._cache.items()}
        total = sum(held.values())
        for old in list(self._cache)[:-1]:
            if total <= PREPARED_CACHE_BYTES:
                break
            total -= held[old]
            del self._cache[old]
        return value

    def column(self, name: str) -> pd.Series | None:
        """A column with at least one value (derived when it can be), sorted, else None
        (not kept: the arrays made from it are)."""
        if _has(self.table, name):
            return self.table[name].iloc[self.order]
        derive = _DERIVED.get(name)
        derived = derive(self.table) if derive is not None else None
        if derived is None or not derived.notna().any():
            return None
        return derived.iloc[self.order]

    def values(self, name: str) -> np.ndarray | None:
        """A numeric column as floats (NaN where missing), or None without any value."""
        def read() -> np.ndarray | None:
            found = self.column(name)
            return None if found is None else _floats(found)
        return self._cached(("values", name), read)  # type: ignore[return-value]

    def change(self, outcome: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(change, pre) of an outcome from ``*_change`` or ``*_post - *_pre``, or None."""
        return self._cached(("change", outcome),  # type: ignore[return-value]
                            lambda: _change(self.table, self.order, outcome))

    def labels(self, name: str) -> np.ndarray | None:
        """A text column as stripped labels ('' for missing), or None without any value."""
        def read() -> np.ndarray | None:
            found = self.column(name)
            return None if found is None else _labels(found)
        return self._cached(("labels", name), read)  # type: ignore[return-value]

    def levels(self, name: str, level: str, reference: str) -> np.ndarray | None:
        """1.0 where ``name`` is ``level``, 0.0 where it is ``reference``, NaN otherwise
        (values read through the field's vocabulary), or None without any value."""
        def code() -> np.ndarray | None:
            found = self.column(name)
            if found is None:
                return None
            canonical = _canonical(name, (level, reference))
            want, other = canonical(level), canonical(reference)
            return _coded(found, lambda v: 1.0 if canonical(v) == want
                          else 0.0 if canonical(v) == other else math.nan)
        return self._cached(("levels", name, level, reference), code)  # type: ignore[return-value]

    def coded(self, name: str, code: Callable[[str], float]) -> np.ndarray | None:
        """A column coded value by value (NaN for missing), or None without any value."""
        def read() -> np.ndarray | None:
            found = self.column(name)
            return None if found is None else _coded(found, code)
        return self._cached(("coded", name, code), read)  # type: ignore[return-value]

    def columns_starting(self, prefixes: Sequence[str]) -> tuple[str, ...]:
        """Names of the columns that start with one of ``prefixes`` (any case)."""
        lowered = tuple(p.lower() for p in prefixes)
        return tuple(str(c) for c in self.table.columns if str(c).lower().startswith(lowered))

    def client_ids(self, mask: np.ndarray) -> pd.Categorical:
        """The client ids of the sessions in ``mask``, as a categorical over the sorted ids:
        grouping by it reads integer codes, not a million strings each time."""
        dtype = self._cached(("client_dtype",), lambda: pd.CategoricalDtype(
            pd.Index(self.client_labels, dtype="str")))
        return pd.Categorical.from_codes(self.clients[mask], dtype=dtype)

    def groups(self, mask: np.ndarray) -> pd.Categorical:
        """The audience groups of the sessions in ``mask``, as a categorical over the sorted
        labels (grouping reads codes; a million strings are never rebuilt per series)."""
        def encode() -> tuple[np.ndarray, pd.CategoricalDtype]:
            codes, labels = pd.factorize(self.group, sort=True)
            return codes, pd.CategoricalDtype(pd.Index(labels, dtype="str"))
        codes, dtype = self._cached(("group_codes",), encode)  # type: ignore[misc]
        return pd.Categorical.from_codes(codes[mask], dtype=dtype)

    def frame(self, mask: np.ndarray, **values: np.ndarray) -> pd.DataFrame:
        """Usable sessions of one series: keys, then the values, in the prepared order."""
        return pd.DataFrame({"group": self.groups(mask),
                             "client_id": self.client_ids(mask),
                             "control": self.control[mask],
                             **{name: v[mask] for name, v in values.items()}})


def prepare(sessions: pd.DataFrame) -> Prepared:
    """Check the input and sort it by client (then session date); the input is not changed."""
    if not isinstance(sessions, pd.DataFrame):
        kind = type(sessions).__name__
        raise AnalysisError(f"expected a pandas DataFrame of sessions, got {kind}")
    if "client_id" not in sessions.columns:
        raise AnalysisError("the session table has no client_id column")
    present = sessions["client_id"].notna().to_numpy(dtype=bool)
    table = sessions if present.all() else sessions.loc[present]  # no copy of a whole table
    if table.empty:
        raise AnalysisError("the session table has no sessions with a client_id to analyse")
    client_codes, client_labels = pd.factorize(table["client_id"].astype("string"), sort=True)
    keys = _sort_keys(table)
    order_frame = pd.DataFrame({"_client": client_codes,
                                **{k: table[k].to_numpy() for k in keys}})
    order = order_frame.sort_values(["_client", *keys], kind="stable").index.to_numpy()
    clients = client_codes[order].astype(np.int64)
    group = (_labels(table["audience_group"])[order] if "audience_group" in table
             else np.full(len(table), NO_GROUP, dtype=object))
    control = (_coded(table["arm"], lambda v: 1.0 if v.strip().lower() == "control"
                      else math.nan)[order] == 1.0) if "arm" in table \
        else np.zeros(len(table), dtype=bool)
    labels = np.asarray(client_labels.astype(str), dtype=object)
    return Prepared(table, order, clients, labels, group, control)


def finite(*arrays: np.ndarray) -> np.ndarray:
    """Sessions where every array is finite."""
    keep = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        keep &= np.isfinite(a)
    return keep


# ------------------------------------------------------------------------------ series ---

@dataclass(frozen=True)
class SeriesData:
    """Per-unit sums of one series, its sessions per group, and the small groups' sessions."""

    shape: str  # change, trend, dose, contrast or adverse: how the units were summed
    units: pd.DataFrame
    counts: dict[str, int]
    rows: pd.DataFrame
    limit: int  # usable sessions up to which a cell is fitted on its sessions
    tally: pd.Series | None = None  # value -> sessions of a descriptive column (e.g. hours)


@dataclass(frozen=True)
class ClaimInputs:
    """Everything :func:`mfr_analysis.claims.evaluate_inputs` needs, for any table size."""

    series: Mapping[str, SeriesData]  # by "<claim_id>|<outcome>"
    found: dict[str, tuple[str, ...]]  # claim id -> what its kind found (for not-measured words)
    groups: tuple[str, ...]  # audience groups present (no empty label)
    n_sessions: int  # sessions behind the inputs (all rows of the prepared tables)


def aggregate(frame: pd.DataFrame, keys: Sequence[str],
               spec: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """Named aggregation by ``keys`` (sorted), returned as plain columns."""
    if frame.empty:
        columns = {k: frame[k] for k in keys}
        columns.update({name: pd.Series(dtype=float) for name in spec})
        return pd.DataFrame(columns)
    coded = _unit_codes(frame, keys)
    if coded is None:
        grouped = frame.groupby(list(keys), sort=True, observed=True)
        return grouped.agg(**spec).reset_index()
    ids, columns = coded
    sums = frame.drop(columns=list(keys)).groupby(ids, sort=True).agg(**spec)
    return pd.DataFrame({**columns, **{c: sums[c].to_numpy() for c in sums.columns}})


def _unit_codes(frame: pd.DataFrame, keys: Sequence[str]
                ) -> tuple[np.ndarray, dict[str, object]] | None:
    """(each row's unit, numbered in key order; the key columns of the units), or None when a
    key is missing somewhere or the keys' codes do not fit one int64.

    Grouping by several keys made pandas factorise and sort every key (a million client
    categories) again for each series: 12 of the 45 s of claims on a million clients. The
    keys' codes in one integer give the same units in the same order (categories sort by
    their codes; booleans and numbers by value), factorised once."""
    codes, levels = [], []
    for key in keys:
        column = frame[key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            code, level = column.cat.codes.to_numpy(dtype=np.int64), column.cat.categories
        else:
            code, level = pd.factorize(column, sort=True)
        if (code < 0).any():
            return None
        codes.append(np.asarray(code, dtype=np.int64))
        levels.append(level)
    sizes = [max(len(level), 1) for level in levels]
    if math.prod(sizes) >= 2**62:
        return None
    combined = np.zeros(len(frame), dtype=np.int64)
    for code, size in zip(codes, sizes, strict=True):
        combined = combined * size + code
    ids, rest = pd.factorize(combined, sort=True)  # rest: each unit's combined code
    columns: dict[str, object] = {}
    for key, level, size in reversed(list(zip(keys, levels, sizes, strict=True))):
        rest, code = np.divmod(rest, size)  # the last key's code, then the ones before
        column = frame[key]
        columns[key] = (pd.Categorical.from_codes(code, dtype=column.dtype)
                        if isinstance(column.dtype, pd.CategoricalDtype)
                        else pd.Index(level).take(code))
    return ids, {key: columns[key] for key in keys}


def with_arrays(frame: pd.DataFrame, keys: Sequence[str], **arrays: np.ndarray
                ) -> pd.DataFrame:
    """The ``keys`` columns of ``frame`` beside ``arrays``, none of them copied (``assign``
    copies every array under copy-on-write: 5M floats each, a third of extraction's time)."""
    return pd.DataFrame({**{k: frame[k] for k in keys}, **arrays}, copy=False)


def change_sums(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-unit sums of a change series (columns ``y``: the change, ``pre``)."""
    finite_pre = np.isfinite(frame["pre"].to_numpy(dtype=float))
    y = frame["y"].to_numpy(dtype=float)
    yb = np.where(finite_pre, y, np.nan)
    work = with_arrays(
        frame, KEYS, y=y, yb=yb, fp=finite_pre.astype(np.int64), yy=y * y, yyb=yb * yb,
        pre=np.where(finite_pre, frame["pre"].to_numpy(dtype=float), 0.0))
    return aggregate(work, KEYS, {
        "n_sessions": ("y", "size"), "sum_change": ("y", "sum"),
        "sum_change_sq": ("yy", "sum"), "sum_change_sq_with_pre": ("yyb", "sum"),
        "min_change": ("y", "min"), "max_change": ("y", "max"),
        "n_sessions_with_pre": ("fp", "sum"), "sum_change_with_pre": ("yb", "sum"),
        "min_change_with_pre": ("yb", "min"), "max_change_with_pre": ("yb", "max"),
        "sum_pre": ("pre", "sum")})


def trend_sums(frame: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """Per-unit sums of a score over weeks (columns ``y``: the score, ``weeks``, and
    ``dose`` when present)."""
    y, w = frame["y"].to_numpy(dtype=float), frame["weeks"].to_numpy(dtype=float)
    doses = {"dose": frame["dose"].to_numpy(dtype=float)} if "dose" in frame else {}
    work = with_arrays(frame, keys, y=y, w=w, ww=w * w, wy=w * y, **doses)
    spec = {"n_sessions": ("y", "size"), "sum_weeks": ("w", "sum"), "sum_score": ("y", "sum"),
            "sum_weeks_sq": ("ww", "sum"), "sum_weeks_x_score": ("wy", "sum"),
            "max_weeks": ("w", "max"), "min_score": ("y", "min"), "max_score": ("y", "max")}
    if doses:
        spec["sum_dose"] = ("dose", "sum")
    return aggregate(work, keys, spec)


def _small_groups(rows: pd.DataFrame, counts: Mapping[str, int], limit: float) -> pd.DataFrame:
    """The rows of the groups with at most ``limit`` usable sessions."""
    small = [g for g, n in counts.items() if n <= limit]
    return rows.loc[rows["group"].isin(small)].reset_index(drop=True)


def make_series(shape: str, frame: pd.DataFrame, sums: Callable[[pd.DataFrame], pd.DataFrame],
                limit: int, *, keep_all: bool = False, tally: pd.Series | None = None,
                ) -> SeriesData:
    """Units (``sums`` of ``frame``), counts and the sessions of the groups with at most
    ``limit`` usable sessions (of every group with ``keep_all``, for a refit)."""
    counts = {str(k): int(v) for k, v in frame["group"].value_counts(sort=False).items()
              if v > 0}  # a categorical also counts the groups this series has no rows of
    rows = _small_groups(frame, counts, math.inf if keep_all else limit)
    return SeriesData(shape, sums(frame), counts, rows, limit, tally)


def combine_inputs(parts: Sequence[ClaimInputs | None]) -> ClaimInputs:
    """The inputs of a table from those of its partitions (each holding whole clients)."""
    present = [p for p in parts if p is not None]
    if len(present) == 1:
        return present[0]
    series: dict[str, SeriesData] = {}
    for key in dict.fromkeys(k for p in present for k in sorted(p.series)):
        pieces = [p.series[key] for p in present if key in p.series]
        first = pieces[0]
        counts: dict[str, int] = {}
        for piece in pieces:
            for group, n in piece.counts.items():
                counts[group] = counts.get(group, 0) + n
        kept = pd.concat([p.rows for p in pieces], ignore_index=True)
        rows = _small_groups(kept, counts, first.limit)
        units = pool_units(pd.concat([p.units for p in pieces], ignore_index=True))
        tallies = [p.tally for p in pieces if p.tally is not None]
        tally = _add_tallies(tallies) if tallies else None
        series[key] = SeriesData(first.shape, units, counts, rows, first.limit, tally)
    found: dict[str, tuple[str, ...]] = {}
    for part in present:
        for claim_id, names in part.found.items():
            found[claim_id] = tuple(dict.fromkeys((*found.get(claim_id, ()), *names)))
    groups = tuple(dict.fromkeys(g for p in present for g in p.groups))
    return ClaimInputs(series, found, groups, sum(p.n_sessions for p in present))


def _add_tallies(tallies: Sequence[pd.Series]) -> pd.Series:
    both = pd.concat(tallies)
    return both.groupby(level=0).sum().sort_index() if len(both) else both


def pool_units(units: pd.DataFrame) -> pd.DataFrame:
    """Units sorted by their keys, those with equal keys combined (sums added, extremes kept).

    Without a ``group`` column this pools a client's units across audience groups."""
    keys = [c for c in UNIT_KEYS if c in units]
    if not units.duplicated(keys).any():
        return units.sort_values(keys, kind="stable").reset_index(drop=True)
    rules = {c: "min" if c.startswith("min_") else "max" if c.startswith("max_") else "sum"
             for c in units.columns if c not in keys}
    return units.groupby(keys, sort=True, observed=True).agg(rules).reset_index()


def value_tally(values: np.ndarray) -> pd.Series:
    """value -> number of sessions with it (finite values only), sorted by value."""
    return pd.Series(values[np.isfinite(values)]).value_counts(sort=False).sort_index()


def median_of_counts(counts: pd.Series | None) -> float:
    """Median of the values behind a value -> count table (NumPy's even-count convention)."""
    if counts is None or counts.empty:
        return math.nan
    values = counts.index.to_numpy(dtype=float)
    cumulative = np.cumsum(counts.to_numpy(dtype=np.int64))
    total = int(cumulative[-1])
    low = values[np.searchsorted(cumulative, (total - 1) // 2 + 1)]
    high = values[np.searchsorted(cumulative, total // 2 + 1)]
    return float((low + high) / 2)
