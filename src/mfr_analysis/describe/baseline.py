"""Baseline table ("Table 1", CONSORT item 15): the clients of each arm at their first session.

One row per ``(audience_group, arm, variable, level)``; ``audience_group`` is ``all`` for
every client of the report. The client is the unit and baseline is the client's first
session (:func:`mfr_analysis.describe._common.first_sessions`); a client's arm is the arm
of that session. Variables (words in ``data/baseline_variables.csv``):

* ``clients`` (n); ``sessions_per_client`` and ``weeks_in_treatment`` (first to last
  session): median, ``q1``, ``q3`` over clients;
* ``pain_pre``, ``tightness_pre``, ``stress_pre``: mean and SD of each client's rating
  before the first session; ``rom_pre`` per ``level`` = ROM measure: the rating before the
  client's first session with that measure;
* ``technique`` and ``delivery`` of the first session: ``share`` of the clients with a known
  value at each ``level``;
* ``missing``: clients of the arm without the value.

``smd`` is the standardized difference MFR minus control (Austin 2009, Stat Med
28:3083-3107): continuous ``(mean_mfr - mean_control) / sqrt((sd_mfr^2 + sd_control^2)/2)``;
a two-level share ``(p1 - p0) / sqrt((p1(1-p1) + p0(1-p0))/2)``; a variable of more levels
the multivariate form of Yang & Dalton 2012 (SAS Global Forum 335-2012)
``sqrt((p1 - p0)' S^-1 (p1 - p0))`` over all levels but the last, ``S`` the mean of the two
arms' multinomial covariance matrices. ``smd_flag`` marks ``|smd|`` above the threshold
of ``data/balance.csv`` (0.1). Counts are disclosure cells (:func:`baseline_cells`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfr_analysis.describe._common import (
    arms_present,
    audience_groups,
    cells,
    client_arms,
    first_sessions,
)
from mfr_analysis.privacy import CLIENTS
from mfr_analysis.tables import load_table

BASELINE_COLUMNS = ("audience_group", "arm", "variable", "label", "level", "statistic",
                    "clients", "mean", "sd", "median", "q1", "q3", "share", "missing", "smd",
                    "smd_flag", "smd_method", "measure", "missing_measure")
MEAN_SD, MEDIAN_IQR = "mean_sd", "median_iqr"  # the statistics of a summarised value
SUMMARY_STATISTICS = frozenset({MEAN_SD, MEDIAN_IQR})  # rows whose cell is not a count
CONTINUOUS_SMD = "difference in means / sqrt of the mean of the two variances (Austin 2009)"
BINARY_SMD = "difference in proportions / sqrt(mean of p(1-p)) (Austin 2009)"
CATEGORICAL_SMD = "multivariate standardized difference of proportions (Yang & Dalton 2012)"


def smd_threshold() -> float:
    """The |SMD| above which arms count as imbalanced (``data/balance.csv``)."""
    table = load_table("balance").set_index("statistic")
    return float(table.at["standardized_mean_difference", "threshold"])


def smd_continuous(mean1: float, sd1: float, mean0: float, sd0: float) -> float:
    """Standardized difference of two means (Austin 2009): difference / sqrt((s1^2+s0^2)/2)."""
    pooled = np.sqrt((sd1 ** 2 + sd0 ** 2) / 2.0)
    return float((mean1 - mean0) / pooled) if pooled > 0 else np.nan


def smd_binary(p1: float, p0: float) -> float:
    """Standardized difference of two proportions (Austin 2009)."""
    pooled = np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2.0)
    return float((p1 - p0) / pooled) if pooled > 0 else np.nan


def smd_categorical(p1: np.ndarray, p0: np.ndarray) -> float:
    """Multivariate standardized difference of two distributions over k levels (Yang &
    Dalton 2012): the last level is dropped (the shares sum to 1). A singular covariance
    (a level empty in both arms) is inverted with the pseudo-inverse."""
    p1, p0 = np.asarray(p1, dtype=float)[:-1], np.asarray(p0, dtype=float)[:-1]
    if p1.size == 1:
        return smd_binary(float(p1[0]), float(p0[0]))

    def covariance(p: np.ndarray) -> np.ndarray:
        return np.diag(p) - np.outer(p, p)

    diff = p1 - p0
    s = (covariance(p1) + covariance(p0)) / 2.0
    return float(np.sqrt(max(diff @ np.linalg.pinv(s) @ diff, 0.0)))


def _client_values(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per client: arm, baseline values, sessions and weeks in treatment."""
    first = first_sessions(sessions).set_index("client_id")
    by_client = sessions.groupby("client_id", observed=True, sort=False)
    values = pd.DataFrame({
        "arm": client_arms(sessions),
        "sessions_per_client": by_client.size().astype("float64"),
    })
    if "weeks_since_start" in sessions:
        values["weeks_in_treatment"] = by_client["weeks_since_start"].max()
    for column in ("pain_pre", "tightness_pre", "stress_pre", "technique", "delivery"):
        if column in first:
            values[column] = first[column]
    return values


def _rom_values(sessions: pd.DataFrame) -> dict[str, pd.Series]:
    """ROM before the client's first session with each measure (client_id index)."""
    if "rom_measure" not in sessions or "rom_pre" not in sessions:
        return {}
    rated = sessions[sessions["rom_measure"].notna() & sessions["rom_pre"].notna()]
    out = {}
    for measure, rows in rated.groupby(rated["rom_measure"].astype("str"), sort=True):
        out[str(measure)] = first_sessions(rows).set_index("client_id")["rom_pre"]
    return out


def _words() -> dict[str, str]:
    table = load_table("baseline_variables")
    return dict(zip(table["variable"], table["label"], strict=True))


def _row(group: str, arm: str, variable: str, **values: object) -> dict:
    return {"audience_group": group, "arm": arm, "variable": variable, "level": "",
            "missing": 0, **values}


def _continuous(group: str, arms: list[str], variable: str, values: pd.Series,
                arm_of: pd.Series, statistic: str, family: str | None) -> list[dict]:
    rows, stats = [], {}
    for arm in arms:
        in_arm = arm_of.index[arm_of == arm]
        x = values.reindex(in_arm).astype("float64")
        observed = x.dropna()
        stats[arm] = (observed.mean(), observed.std(ddof=1))
        common = {"statistic": statistic, "clients": len(observed),
                  "missing": int(x.isna().sum())}
        if statistic == MEAN_SD:
            common |= {"mean": stats[arm][0], "sd": stats[arm][1]}
        else:
            common |= {"median": observed.median(), "q1": observed.quantile(0.25),
                       "q3": observed.quantile(0.75), "mean": stats[arm][0],
                       "sd": stats[arm][1]}
        measure = f"{family}_{arm}#observed" if family else f"baseline:clients#{arm}"
        missing = f"{family}_{arm}#missing" if family else ""
        rows.append(_row(group, arm, variable, measure=measure, missing_measure=missing,
                         **common))
    smd = (smd_continuous(*stats["mfr"], *stats["control"])
           if {"mfr", "control"} <= set(stats) else np.nan)
    for row in rows:
        row |= {"smd": smd, "smd_method": CONTINUOUS_SMD if not np.isnan(smd) else ""}
    return rows


def _shares(group: str, arms: list[str], variable: str, values: pd.Series,
            arm_of: pd.Series) -> list[dict]:
    known = values.dropna().astype("str")
    column_levels = (list(values.cat.categories) if isinstance(values.dtype,
                                                                pd.CategoricalDtype) else [])
    levels = [str(v) for v in column_levels if str(v) in set(known)] or sorted(set(known))
    rows, shares = [], {}
    for arm in arms:
        in_arm = arm_of.index[arm_of == arm]
        x = values.reindex(in_arm)
        counts = x.dropna().astype("str").value_counts().reindex(levels, fill_value=0)
        observed = int(counts.sum())
        shares[arm] = (counts / observed).to_numpy() if observed else None
        family = f"baseline:{variable}_{arm}"
        for level, n in counts.items():
            rows.append(_row(group, arm, variable, level=level, statistic="share",
                             clients=int(n), share=n / observed if observed else np.nan,
                             missing=int(x.isna().sum()), measure=f"{family}#{level}",
                             missing_measure=f"{family}#missing"))
    smd, method = np.nan, ""
    if {"mfr", "control"} <= set(shares) and shares["mfr"] is not None and (
            shares["control"] is not None) and len(levels) > 1:
        smd = smd_categorical(shares["mfr"], shares["control"])
        method = BINARY_SMD if len(levels) == 2 else CATEGORICAL_SMD
    for row in rows:
        row |= {"smd": smd, "smd_method": method}
    return rows


def _group_rows(group: str, sessions: pd.DataFrame) -> list[dict]:
    values = _client_values(sessions)
    arm_of = values["arm"]
    arms = arms_present(arm_of)
    rows = [_row(group, arm, "clients", statistic="n", clients=int((arm_of == arm).sum()),
                 measure=f"baseline:clients#{arm}", missing_measure="") for arm in arms]
    for variable in ("sessions_per_client", "weeks_in_treatment"):
        if variable in values:
            rows += _continuous(group, arms, variable, values[variable], arm_of,
                                MEDIAN_IQR, None)
    for variable in ("pain_pre", "tightness_pre", "stress_pre"):
        if variable in values:
            rows += _continuous(group, arms, variable, values[variable], arm_of, MEAN_SD,
                                f"baseline:{variable}")
    for measure, rom in _rom_values(sessions).items():
        for row in _continuous(group, arms, "rom_pre", rom.reindex(values.index), arm_of,
                               MEAN_SD, f"baseline:rom_pre_{measure}"):
            rows.append(row | {"level": measure})
    for variable in ("technique", "delivery"):
        if variable in values:
            rows += _shares(group, arms, variable, values[variable], arm_of)
    return rows


def baseline_members(sessions: pd.DataFrame, slice_value: str
                     ) -> dict[tuple[str, str, str], frozenset]:
    """The clients behind every count of Table 1 but the arm totals, keyed as
    :func:`baseline_cells` keys them: per group, arm and variable those with the value
    (``#observed``, or ``#<level>``) and those without (``#missing``).

    For the exact subtraction audit (:mod:`mfr_analysis.privacy_audit`): an arm's clients
    minus those missing a measure are those who have it, and a delivery is the sum of its
    techniques; the audit sees such chains only through these sets."""
    out: dict[tuple[str, str, str], frozenset] = {}
    for group, part in audience_groups(sessions):
        values = _client_values(part)
        families = {f"baseline:{v}": values[v] for v in ("pain_pre", "tightness_pre",
                                                          "stress_pre") if v in values}
        families |= {f"baseline:rom_pre_{measure}": rom.reindex(values.index)
                     for measure, rom in _rom_values(part).items()}
        ids = values.index.astype("str")
        arm_of = values["arm"].to_numpy()
        for arm in arms_present(values["arm"]):
            in_arm = arm_of == arm
            for family, column in families.items():
                known = column.notna().to_numpy()
                out[(slice_value, group, f"{family}_{arm}#observed")] = frozenset(
                    ids[in_arm & known])
                out[(slice_value, group, f"{family}_{arm}#missing")] = frozenset(
                    ids[in_arm & ~known])
            for variable in ("technique", "delivery"):
                if variable not in values:
                    continue
                text = values[variable].astype("str").to_numpy()
                known = values[variable].notna().to_numpy()
                family = f"baseline:{variable}_{arm}"
                for level in sorted(set(text[in_arm & known])):
                    out[(slice_value, group, f"{family}#{level}")] = frozenset(
                        ids[in_arm & known & (text == level)])
                out[(slice_value, group, f"{family}#missing")] = frozenset(
                    ids[in_arm & ~known])
    return out


def baseline_table(sessions: pd.DataFrame) -> pd.DataFrame:
    """Table 1: per audience group (and all) and arm, the clients at their first session.

    For example ``baseline_table(sessions).query("variable == 'pain_pre'")``.
    """
    records = [row for group, part in audience_groups(sessions)
               for row in _group_rows(group, part)]
    table = pd.DataFrame.from_records(records, columns=list(BASELINE_COLUMNS))
    words = _words()
    threshold = smd_threshold()
    smd = table["smd"].astype("float64")
    return table.assign(
        label=table["variable"].map(words).fillna(table["variable"]),
        level=table["level"].fillna(""),
        smd=smd, smd_flag=(smd.abs() > threshold).astype("bool"),
        smd_method=table["smd_method"].fillna(""),
        missing_measure=table["missing_measure"].fillna(""),
    ).astype({"clients": "Int64", "missing": "Int64"})


def baseline_cells(table: pd.DataFrame, slice_value: str) -> pd.DataFrame:
    """The client counts Table 1 publishes, as disclosure cells.

    Families (total = sum of parts): ``baseline:clients#<arm>`` (total twin of the group's
    clients); per arm ``baseline:<variable>_<arm>#observed|#missing`` and
    ``baseline:<technique|delivery>_<arm>#<level>|#missing`` (total twin of the arm's
    clients)."""
    records: dict[tuple[str, str], dict] = {}

    def add(group: str, measure: str, clients: object, twin: str = "") -> None:
        if measure and not pd.isna(clients):
            records[(group, measure)] = {"group": group, "measure": measure,
                                         "clients": int(clients), "twin": twin}

    arm_clients = table[table["variable"] == "clients"]
    for group, rows in arm_clients.groupby("audience_group", sort=False):
        add(str(group), "baseline:clients", rows["clients"].sum(), CLIENTS)
    arm_size = {(str(g), str(a)): n for g, a, n in arm_clients[
        ["audience_group", "arm", "clients"]].itertuples(index=False)}
    for row in table.itertuples(index=False):
        group = str(row.audience_group)
        add(group, row.measure, row.clients)
        if row.missing_measure:
            add(group, row.missing_measure, row.missing)
            base = row.missing_measure.rpartition("#")[0]
            add(group, base, arm_size.get((group, str(row.arm))),
                f"baseline:clients#{row.arm}")
    return cells(list(records.values()), slice_value)
