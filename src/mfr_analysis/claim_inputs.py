"""What the claims models need from a session table: per-client sums, and small cells whole.

Every analysis of :mod:`mfr_analysis.claims` is a *series* (the change of one outcome, the
pain trend over weeks, one session-factor contrast, adverse events by pressure...). For each
series, :func:`extract_inputs` keeps

* ``units``: one row per (audience group, client, arm) -- or per (group, client, pressure)
  for adverse events -- holding counts, sums, cross-products, minima and maxima of the
  series' usable sessions. Everything the client-level methods of large cells compute
  (client means, per-client slopes, cluster-robust scores) is a function of these sums.
* ``rows``: the usable sessions themselves, only for the groups whose count is at most the
  series' session limit (the cells where the engine fits a mixed model or GEE on sessions),
* ``counts``: usable sessions per group, which decide the route of every cell.

Sums add, minima and maxima combine, and small cells stay small, so the inputs of partitions
that each hold *whole clients* combine exactly (:func:`combine_inputs`) into the inputs of
the whole table. The in-memory engine and the Dask path (:mod:`mfr_analysis.scale`) both
evaluate these inputs, which is why they give the same table; memory grows with clients,
never with sessions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mfr_analysis.errors import AnalysisError
from mfr_analysis.tables import load_table, normalise_token, synonym_map

__all__ = [
    "ClaimInputs",
    "Prepared",
    "SeriesData",
    "combine_inputs",
    "extract_inputs",
    "change_units",
    "median_of_counts",
    "pool_units",
    "prepare",
]

CIRCULATION_PREFIXES = ("circulation", "blood_flow")
NO_GROUP = ""  # sessions without an audience group count in the pooled cell only
KEYS = ("group", "client_id", "control")

# how a statistic of two units of one client combines (anything else is a sum)
_COMBINE = {"ymin": "min", "ymax": "max", "yminb": "min", "ymaxb": "max", "wmax": "max"}


# ------------------------------------------------------------------------- preparation ---

@dataclass(frozen=True)
class Prepared:
    """The session table reduced to numpy arrays, sorted by client."""

    clients: np.ndarray
    client_labels: np.ndarray
    group: np.ndarray
    control: np.ndarray
    num: dict[str, np.ndarray]
    rom_measure: np.ndarray | None
    circulation: tuple[str, ...]

    @property
    def n(self) -> int:
        """Number of sessions."""
        return len(self.clients)


def _floats(series: pd.Series) -> np.ndarray:
    """Column as float64 with NaN for missing or unparsable values."""
    values = pd.to_numeric(series, errors="coerce")
    return values.to_numpy(dtype=float, na_value=np.nan)


def _coded(series: pd.Series, mapping: Mapping[str, float]) -> np.ndarray:
    """Map a categorical or text column through ``mapping`` (case-insensitive) to floats."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([mapping.get(str(u).strip().lower(), np.nan) for u in uniques] + [np.nan],
                      dtype=float)
    return lookup[codes]


def _labels(series: pd.Series) -> np.ndarray:
    """Text labels as an object array, '' for missing."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([str(u).strip() for u in uniques] + [NO_GROUP], dtype=object)
    return lookup[codes]


def _adverse(series: pd.Series) -> np.ndarray:
    """1 for any adverse event, 0 for none, NaN when missing (synonyms via the vocabulary)."""
    synonyms = synonym_map("adverse_event")
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    values = []
    for u in uniques:
        token = normalise_token(str(u))
        canonical = synonyms.get(token, token)
        values.append(np.nan if token in ("", "nan", "<na>") else float(canonical != "none"))
    return np.array([*values, np.nan], dtype=float)[codes]


def _has(sessions: pd.DataFrame, column: str) -> bool:
    return column in sessions.columns and bool(sessions[column].notna().any())


def _change(sessions: pd.DataFrame, outcome: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(change, pre) of one outcome: given ``*_change`` filled from post - pre, or None."""
    pre = _floats(sessions[f"{outcome}_pre"]) if f"{outcome}_pre" in sessions else None
    post = _floats(sessions[f"{outcome}_post"]) if f"{outcome}_post" in sessions else None
    computed = post - pre if pre is not None and post is not None else None
    if _has(sessions, f"{outcome}_change"):
        given = _floats(sessions[f"{outcome}_change"])
        change = given if computed is None else np.where(np.isnan(given), computed, given)
    else:
        change = computed
    if change is None or not np.isfinite(change).any():
        return None
    return change, (pre if pre is not None else np.full(len(change), np.nan))


def _circulation_columns(sessions: pd.DataFrame) -> tuple[str, ...]:
    return tuple(c for c in sessions.columns
                 if str(c).lower().startswith(CIRCULATION_PREFIXES))


def _sort_keys(sessions: pd.DataFrame) -> list[str]:
    """Columns that order a client's sessions (datetime or numeric only)."""
    return [c for c in ("session_date", "session_index") if c in sessions
            and (pd.api.types.is_datetime64_any_dtype(sessions[c])
                 or pd.api.types.is_numeric_dtype(sessions[c]))]


def prepare(sessions: pd.DataFrame) -> Prepared:
    """Check the input and reduce it to sorted numpy arrays (the input is not changed)."""
    if not isinstance(sessions, pd.DataFrame):
        kind = type(sessions).__name__
        raise AnalysisError(f"expected a pandas DataFrame of sessions, got {kind}")
    if "client_id" not in sessions.columns:
        raise AnalysisError("the session table has no client_id column")
    table = sessions.loc[sessions["client_id"].notna()]
    if table.empty:
        raise AnalysisError("the session table has no sessions with a client_id to analyse")
    client_codes, client_labels = pd.factorize(table["client_id"].astype("string"), sort=True)
    keys = _sort_keys(table)
    order_frame = pd.DataFrame({"_client": client_codes,
                                **{k: table[k].to_numpy() for k in keys}})
    order = order_frame.sort_values(["_client", *keys], kind="stable").index.to_numpy()
    table = table.iloc[order]
    clients = client_codes[order].astype(np.int64)
    group = (_labels(table["audience_group"]) if "audience_group" in table
             else np.full(len(table), NO_GROUP, dtype=object))
    control = (_coded(table["arm"], {"control": 1.0}) == 1.0) if "arm" in table \
        else np.zeros(len(table), dtype=bool)
    num: dict[str, np.ndarray] = {}
    for outcome in ("tightness", "pain", "stress", "rom"):
        pair = _change(table, outcome)
        if pair is not None:
            num[f"{outcome}_change"], num[f"{outcome}_pre"] = pair
    plain = {"pain_pre": "pain_pre", "pain_followup": "pain_followup",
             "followup_hours": "followup_hours", "weeks": "weeks_since_start",
             "spw": "sessions_per_week", "pressure": "pressure"}
    for key, column in plain.items():
        if _has(table, column):
            num[key] = _floats(table[column])
    if _has(table, "pace"):
        num["pace"] = _coded(table["pace"], {"slow": 1.0, "fast": 0.0})
    if _has(table, "deep_breathing"):
        num["breathing"] = _coded(table["deep_breathing"], {
            "true": 1.0, "1": 1.0, "1.0": 1.0, "yes": 1.0, "y": 1.0,
            "false": 0.0, "0": 0.0, "0.0": 0.0, "no": 0.0, "n": 0.0})
    if _has(table, "delivery"):
        num["delivery"] = _coded(table["delivery"], {"practitioner": 1.0, "self": 0.0})
    elif _has(table, "technique"):
        techniques = load_table("techniques")
        mapping = {t: 1.0 if d == "practitioner" else 0.0
                   for t, d in zip(techniques["technique"], techniques["delivery"], strict=True)}
        num["delivery"] = _coded(table["technique"], mapping)
    if _has(table, "adverse_event"):
        num["adverse"] = _adverse(table["adverse_event"])
    circulation = _circulation_columns(table)
    for prefix in sorted({c.rsplit("_", 1)[0] for c in circulation}):
        pair = _change(table, prefix)
        if pair is not None:
            num[f"{prefix}_change"], num[f"{prefix}_pre"] = pair
    rom_measure = _labels(table["rom_measure"]) if _has(table, "rom_measure") else None
    labels = np.asarray(client_labels.astype(str), dtype=object)
    return Prepared(clients, labels, group, control, num, rom_measure, circulation)


# ------------------------------------------------------------------------------ series ---

@dataclass(frozen=True)
class SeriesData:
    """Per-unit sums of one series, its sessions per group, and the small groups' sessions."""

    kind: str  # change, trend, dose, contrast or adverse
    units: pd.DataFrame
    counts: dict[str, int]
    rows: pd.DataFrame


@dataclass(frozen=True)
class ClaimInputs:
    """Everything :func:`mfr_analysis.claims.evaluate_inputs` needs, for any table size."""

    series: dict[str, SeriesData]
    groups: tuple[str, ...]  # audience groups present (no empty label)
    circulation: tuple[str, ...]  # circulation-like column names present
    rom_measured: bool  # rom values come with a rom_measure
    present: tuple[str, ...]  # measures found in the table (keys of Prepared.num)
    followup_hours: pd.Series  # value -> sessions, over sessions with a follow-up change
    limits: dict[str, int]  # sessions up to which a group's sessions are kept, by kind
    n_sessions: int  # sessions behind the inputs (all rows of the prepared tables)


def _frame(prep: Prepared, mask: np.ndarray, **values: np.ndarray) -> pd.DataFrame:
    """Usable sessions of one series: keys, then the values, in the prepared order."""
    return pd.DataFrame({"group": prep.group[mask],
                         "client_id": prep.client_labels[prep.clients[mask]],
                         "control": prep.control[mask],
                         **{name: v[mask] for name, v in values.items()}})


def _aggregate(frame: pd.DataFrame, keys: Sequence[str],
               spec: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """Named aggregation by ``keys`` (sorted), returned as plain columns."""
    if frame.empty:
        columns = {k: frame[k] for k in keys}
        columns.update({name: pd.Series(dtype=float) for name in spec})
        return pd.DataFrame(columns)
    grouped = frame.groupby(list(keys), sort=True, observed=True)
    return grouped.agg(**spec).reset_index()


def change_units(frame: pd.DataFrame) -> pd.DataFrame:
    finite_pre = np.isfinite(frame["pre"].to_numpy(dtype=float))
    y = frame["y"].to_numpy(dtype=float)
    work = frame[list(KEYS)].assign(
        y=y, yb=np.where(finite_pre, y, np.nan), fp=finite_pre.astype(np.int64),
        pre=np.where(finite_pre, frame["pre"].to_numpy(dtype=float), 0.0))
    return _aggregate(work, KEYS, {
        "n": ("y", "size"), "sy": ("y", "sum"), "ymin": ("y", "min"), "ymax": ("y", "max"),
        "nb": ("fp", "sum"), "syb": ("yb", "sum"), "yminb": ("yb", "min"),
        "ymaxb": ("yb", "max"), "spre": ("pre", "sum")})


def _trend_units(frame: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    y, w = frame["y"].to_numpy(dtype=float), frame["weeks"].to_numpy(dtype=float)
    work = frame[list(keys)].assign(y=y, w=w, ww=w * w, wy=w * y)
    spec = {"n": ("y", "size"), "sw": ("w", "sum"), "sy": ("y", "sum"), "sww": ("ww", "sum"),
            "swy": ("wy", "sum"), "wmax": ("w", "max"), "ymin": ("y", "min"),
            "ymax": ("y", "max")}
    if "spw" in frame:
        work = work.assign(spw=frame["spw"].to_numpy(dtype=float))
        spec["sspw"] = ("spw", "sum")
    return _aggregate(work, keys, spec)


def _contrast_units(frame: pd.DataFrame) -> pd.DataFrame:
    y = frame["y"].to_numpy(dtype=float)
    level = frame["level"].to_numpy(dtype=float)
    pre = frame["pre"].to_numpy(dtype=float)
    fp = np.isfinite(pre)
    p = np.where(fp, pre, 0.0)
    yb = np.where(fp, y, np.nan)
    work = frame[["group", "client_id"]].assign(
        y=y, ly=level * y, lv=level, fp=fp.astype(np.int64), lb=np.where(fp, level, 0.0),
        yb=np.where(fp, y, 0.0), ymb=yb, lyb=np.where(fp, level * y, 0.0), p=p, lp=level * p,
        pp=p * p, py=p * np.where(fp, y, 0.0))
    return _aggregate(work, ("group", "client_id"), {
        "n": ("y", "size"), "sl": ("lv", "sum"), "sy": ("y", "sum"), "sly": ("ly", "sum"),
        "ymin": ("y", "min"), "ymax": ("y", "max"),
        "nb": ("fp", "sum"), "slb": ("lb", "sum"), "syb": ("yb", "sum"),
        "slyb": ("lyb", "sum"), "sp": ("p", "sum"), "slp": ("lp", "sum"),
        "spp": ("pp", "sum"), "spy": ("py", "sum"), "yminb": ("ymb", "min"),
        "ymaxb": ("ymb", "max")})


def _adverse_units(frame: pd.DataFrame) -> pd.DataFrame:
    return _aggregate(frame, ("group", "client_id", "pressure"),
                      {"n": ("events", "size"), "events": ("events", "sum")})


_UNITS = {"change": change_units, "trend": _trend_units,
          "dose": lambda f: _trend_units(f, ("group", "client_id")),
          "contrast": _contrast_units, "adverse": _adverse_units}


def _small_groups(rows: pd.DataFrame, counts: Mapping[str, int], limit: int) -> pd.DataFrame:
    """The rows of the groups with at most ``limit`` usable sessions."""
    small = [g for g, n in counts.items() if n <= limit]
    return rows.loc[rows["group"].isin(small)].reset_index(drop=True)


def _series(kind: str, frame: pd.DataFrame, limit: int) -> SeriesData:
    """Units, counts and the sessions of groups with at most ``limit`` usable sessions."""
    counts = {str(k): int(v) for k, v in frame["group"].value_counts(sort=False).items()}
    return SeriesData(kind, _UNITS[kind](frame), counts, _small_groups(frame, counts, limit))


def _finite(*arrays: np.ndarray) -> np.ndarray:
    keep = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        keep &= np.isfinite(a)
    return keep


def extract_inputs(prep: Prepared, registry: pd.DataFrame,
                   limits: Mapping[str, int]) -> ClaimInputs:
    """The claims inputs of a prepared table: every registered series, as units and rows.

    ``limits`` maps a series kind to the number of usable sessions up to which a group's
    sessions are kept whole (its cell is then fitted on sessions).
    """
    num, series = prep.num, {}
    everyone = np.ones(prep.n, dtype=bool)

    def change(key: str, y: np.ndarray, pre: np.ndarray, base: np.ndarray,
               always: bool = False) -> None:
        mask = base & np.isfinite(y)
        if always or mask.any():
            series[key] = _series("change", _frame(prep, mask, y=y, pre=pre),
                                  limits["change"])

    for claim in registry.itertuples():
        analysis, outcome = str(claim.analysis), str(claim.outcome)
        if analysis == "change" and outcome != "circulation" and f"{outcome}_change" in num:
            change(f"change:{outcome}", num[f"{outcome}_change"], num[f"{outcome}_pre"],
                   everyone)
        elif analysis == "change" and outcome == "circulation":
            for key in sorted(k for k in num if k.endswith("_change")
                              and k.startswith(CIRCULATION_PREFIXES)):
                prefix = key[:-len("_change")]
                change(f"change:{prefix}", num[key], num[f"{prefix}_pre"], everyone)
        elif analysis == "change_per_measure" and "rom_change" in num \
                and prep.rom_measure is not None:
            finite = np.isfinite(num["rom_change"])
            for measure in sorted(set(pd.unique(prep.rom_measure[finite])) - {NO_GROUP}):
                change(f"change:rom:{measure}", num["rom_change"], num["rom_pre"],
                       prep.rom_measure == measure)
        elif analysis == "trajectory":
            if "pain_pre" in num and "weeks" in num:
                mask = _finite(num["pain_pre"], num["weeks"])
                series["trend"] = _series("trend", _frame(prep, mask, y=num["pain_pre"],
                                                          weeks=num["weeks"]), limits["trend"])
            if "pain_followup" in num and "pain_pre" in num:
                change("change:pain_followup", num["pain_followup"] - num["pain_pre"],
                       num["pain_pre"], everyone, always=True)
        elif analysis == "contrast":
            factor = {"pace": "pace", "deep_breathing": "breathing",
                      "delivery": "delivery"}[str(claim.factor)]
            if f"{outcome}_change" in num and factor in num:
                y = num[f"{outcome}_change"]
                mask = _finite(y, num[factor]) & ~prep.control
                series[f"contrast:{claim.claim_id}"] = _series(
                    "contrast", _frame(prep, mask, y=y, level=num[factor],
                                       pre=num[f"{outcome}_pre"]), limits["contrast"])
        elif analysis == "dose" and all(k in num for k in ("pain_pre", "weeks", "spw")):
            mask = _finite(num["pain_pre"], num["weeks"], num["spw"]) & ~prep.control
            series["dose"] = _series("dose", _frame(prep, mask, y=num["pain_pre"],
                                                    weeks=num["weeks"], spw=num["spw"]),
                                     limits["dose"])
        elif analysis == "adverse" and "adverse" in num and "pressure" in num:
            mask = _finite(num["adverse"], num["pressure"]) & ~prep.control
            series["adverse"] = _series("adverse", _frame(
                prep, mask, events=num["adverse"], pressure=num["pressure"]),
                limits["adverse"])
    hours = pd.Series(dtype=float)
    if "change:pain_followup" in series and "followup_hours" in num:
        usable = np.isfinite(num["pain_followup"] - num["pain_pre"])
        values = num["followup_hours"][usable]
        hours = pd.Series(values[np.isfinite(values)]).value_counts(sort=False).sort_index()
    groups = tuple(g for g in pd.unique(prep.group) if g != NO_GROUP)
    return ClaimInputs(series, groups, prep.circulation, prep.rom_measure is not None,
                       tuple(num), hours, dict(limits), prep.n)


def combine_inputs(parts: Sequence[ClaimInputs]) -> ClaimInputs:
    """The inputs of a table from those of its partitions (each holding whole clients)."""
    parts = [p for p in parts if p is not None]
    if len(parts) == 1:
        return parts[0]
    limits = parts[0].limits
    series: dict[str, SeriesData] = {}
    for key in dict.fromkeys(k for p in parts for k in sorted(p.series)):
        pieces = [p.series[key] for p in parts if key in p.series]
        kind = pieces[0].kind
        counts: dict[str, int] = {}
        for piece in pieces:
            for group, n in piece.counts.items():
                counts[group] = counts.get(group, 0) + n
        rows = _small_groups(pd.concat([p.rows for p in pieces], ignore_index=True), counts,
                             limits[kind])
        units = pool_units(pd.concat([p.units for p in pieces], ignore_index=True))
        series[key] = SeriesData(kind, units, counts, rows)
    hours = pd.concat([p.followup_hours for p in parts])
    hours = hours.groupby(level=0).sum().sort_index() if len(hours) else hours
    groups = tuple(dict.fromkeys(g for p in parts for g in p.groups))
    circulation = tuple(dict.fromkeys(c for p in parts for c in p.circulation))
    present = tuple(dict.fromkeys(k for p in parts for k in p.present))
    return ClaimInputs(series, groups, circulation, any(p.rom_measured for p in parts),
                       present, hours, dict(limits), sum(p.n_sessions for p in parts))


def pool_units(units: pd.DataFrame) -> pd.DataFrame:
    """Units sorted by their keys, those with equal keys combined (sums added, extremes kept).

    Without a ``group`` column this pools a client's units across audience groups."""
    keys = [c for c in ("group", "client_id", "control", "pressure") if c in units]
    if not units.duplicated(keys).any():
        return units.sort_values(keys, kind="stable").reset_index(drop=True)
    rules = {c: _COMBINE.get(c, "sum") for c in units.columns if c not in keys}
    return units.groupby(keys, sort=True, observed=True).agg(rules).reset_index()


def median_of_counts(counts: pd.Series) -> float:
    """Median of the values behind a value -> count table (NumPy's even-count convention)."""
    if counts.empty:
        return math.nan
    values = counts.index.to_numpy(dtype=float)
    cumulative = np.cumsum(counts.to_numpy(dtype=np.int64))
    total = int(cumulative[-1])
    low = values[np.searchsorted(cumulative, (total - 1) // 2 + 1)]
    high = values[np.searchsorted(cumulative, total // 2 + 1)]
    return float((low + high) / 2)
