"""Apply a report folder's disclosure plan to a describe table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfr_analysis.privacy import ALL, SUPPRESSED, DisclosurePlan, withheld_label

#: count column -> the column naming its disclosure cell
COUNT_CELLS: dict[str, str] = {"clients": "measure", "rows": "measure",
                               "clients_with_followup": "with_measure",
                               "clients_without_followup": "without_measure",
                               "missing": "missing_measure", "total": "total_measure"}
#: columns that are labels or settings, never blanked
KEPT = frozenset({"audience_group", "arm", "variable", "label", "level", "statistic", "stage",
                  "parent", "kind", "rci_class", "measure", "missing_measure",
                  "total_measure", "available", "note", "smd_method", "privacy",
                  "with_measure", "without_measure"})
#: numbers that give a count away when the count alone is hidden (a share or a Wilson
#: interval with its total, the sessions of a box); means, SDs and quartiles do not
COUNT_LIKE = frozenset({"share", "ci_low", "ci_high", "rows", "sessions",
                        "share_clients_with_followup", "sessions_with_followup",
                        "share_sessions_with_followup"})


def marker(value: object, minimum: int) -> str:
    """'fewer than 11' for a hidden count of 1..minimum-1, else 'suppressed'."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return (f"fewer than {minimum}" if not pd.isna(number) and 1 <= abs(number) < minimum
            else SUPPRESSED)


#: a variable whose levels are sums of another's levels -> that finer variable (delivery is
#: derived from technique, data/techniques.csv: "self" = foam roller + lacrosse ball + ...)
COARSER_OF: dict[str, str] = {"delivery": "technique"}


def _coarse_counts_of_hidden_levels(table: pd.DataFrame, group: pd.Series,
                                    hidden_rows: np.ndarray) -> np.ndarray:
    """Count rows of a coarser variable (:data:`COARSER_OF`) in a (group, arm) where a level
    of its finer variable is hidden: each coarse count is a sum of fine ones, so beside the
    fine counts shown it gives a hidden one back (control delivery "self" 74 minus the three
    self techniques shown is the withheld "other"), and with it the arm's total."""
    if "variable" not in table:
        return np.zeros(len(table), dtype=bool)
    variable = table["variable"].astype("str")
    arm = table["arm"].astype("str") if "arm" in table else pd.Series("", index=table.index)
    cell = group.astype("str") + "|" + arm
    coarse = np.zeros(len(table), dtype=bool)
    for coarser, finer in COARSER_OF.items():
        spoilt = set(cell[(variable == finer).to_numpy() & hidden_rows])
        coarse |= ((variable == coarser) & cell.isin(spoilt)).to_numpy(dtype=bool)
    return coarse


def _shares_of_hidden_sums(table: pd.DataFrame, group: pd.Series,
                           hidden_rows: np.ndarray) -> np.ndarray:
    """Share rows (``statistic == "share"``) whose family (group, variable, arm) has a row
    with a hidden count: a share divides by the sum of its family's counts, so shares shown
    beside their counts give that sum away, and with it the hidden count (and any total
    withheld to protect it)."""
    if "statistic" not in table or "variable" not in table:
        return np.zeros(len(table), dtype=bool)
    shares = (table["statistic"].astype("str") == "share").to_numpy(dtype=bool)
    arm = table["arm"].astype("str") if "arm" in table else pd.Series("", index=table.index)
    family = group.astype("str") + "|" + table["variable"].astype("str") + "|" + arm
    spoilt = pd.Series(hidden_rows & shares, index=table.index).groupby(
        family.to_numpy()).transform("any").to_numpy(dtype=bool)
    return shares & spoilt


def protect(table: pd.DataFrame, plan: DisclosurePlan, slice_value: str) -> pd.DataFrame:
    """The table as a report may publish it: each hidden count reads 'fewer than 11' or
    'suppressed' (its column then holds text), and every number of a row with a hidden
    count (mean, SD, median, quartiles, share, interval, sessions) is blanked. A count
    hidden only as a complement (``plan.count_hidden``) reads 'withheld' and its row keeps
    its mean, SD, median and quartiles (they reveal no count); its share, interval and
    sessions go, and so do the shares of every row of its share family (they would give
    the family's sum away). The counts of a coarser variable summing a hidden level
    (delivery over technique, :data:`COARSER_OF`) are withheld too. A table with ``smd``
    also loses the SMD of a variable whose rows in either arm are blanked, or whose shares
    are. ``privacy`` says what was withheld on each row ('' when nothing)."""
    group = (table["audience_group"].astype("str") if "audience_group" in table
             else pd.Series(ALL, index=table.index))
    hidden: dict[str, np.ndarray] = {}  # count column -> its count is hidden (either way)
    whole: dict[str, np.ndarray] = {}  # count column -> hidden whole
    for count, cell in COUNT_CELLS.items():
        if count in table and cell in table:
            keys = list(zip(group, table[cell].fillna("").astype("str"), strict=True))
            hidden[count] = np.array([bool(m) and plan.counts_hidden(slice_value, g, m)
                                      for g, m in keys], dtype=bool)
            whole[count] = np.array([bool(m) and plan.is_hidden(slice_value, g, m)
                                     for g, m in keys], dtype=bool)
    if "clients" in hidden:  # coarse levels summing hidden fine ones read "withheld"
        hidden["clients"] = hidden["clients"] | _coarse_counts_of_hidden_levels(
            table, group, hidden["clients"])
    touched = np.zeros(len(table), dtype=bool)  # every number goes
    counted = np.zeros(len(table), dtype=bool)  # the count-like numbers go
    for count, mask in hidden.items():
        touched |= whole[count]
        counted |= mask
    counted |= _shares_of_hidden_sums(table, group, touched | counted)
    protected = table.copy()
    for count, mask in hidden.items():
        if mask.any():
            text = [(marker(v, plan.minimum) if w else withheld_label()) if h else v
                    for v, h, w in zip(table[count], mask, whole[count], strict=True)]
            protected[count] = pd.Series(text, index=table.index, dtype="object")
    numeric = [c for c in table.columns if c not in KEPT and c not in hidden
               and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    if "rows" in table and "rows" not in hidden:
        numeric.append("rows")
    for column in numeric:
        gone = touched | counted if column in COUNT_LIKE else touched
        protected[column] = protected[column].astype("Float64").where(~gone)
    if "smd" in table and "variable" in table:
        # one SMD per variable (per level for a continuous one, e.g. each ROM measure)
        shares = (table["statistic"] == "share") if "statistic" in table else False
        level = table["level"].where(~shares, "") if "level" in table else ""
        keys = list(zip(group, table["variable"], pd.Series(level, index=table.index),
                        strict=True))
        share_rows = np.asarray(pd.Series(shares, index=table.index), dtype=bool)
        spoilt = {k for k, t, c, s in zip(keys, touched, counted, share_rows, strict=True)
                  if t or (c and s)}
        gone = np.array([k in spoilt for k in keys], dtype=bool)
        protected["smd"] = protected["smd"].astype("Float64").where(~gone)
        if "smd_flag" in protected:
            protected["smd_flag"] = protected["smd_flag"].astype("boolean").where(~gone)
    protected["privacy"] = np.where(touched | counted, "withheld for privacy", "")
    return protected
