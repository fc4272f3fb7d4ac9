"""Each client's own result: the reliable change index (Jacobson & Truax 1991).

Which scores: the client's **first session with both a before and an after pain rating**
(``pre`` = ``pain_pre``, ``post`` = ``pain_post`` of that session). The client is the unit,
one pair each: the first pair is the one every client has (later sessions exist only for
clients who stayed, so choosing them would select on how treatment went), and the
reliability in ``data/reliability.csv`` is that of a single rating (a mean over sessions
would need the reliability of a mean). It is the within-session change the ``pain`` claim
judges at the group level with the MCID; this table judges it client by client.

* ``S_diff = sqrt(2) * SD_pre * sqrt(1 - r_xx)`` with ``r_xx`` the test-retest reliability
  of the pain NRS and ``SD_pre`` the SD of the ``pre`` scores of the report's clients (both
  arms; sources in ``data/reliability.csv``);
* ``rci = (post - pre) / S_diff``; lower pain is better, so ``rci < -1.96`` is
  ``improved``, ``rci > 1.96`` ``deteriorated``, else ``unchanged``;
* ``recovered`` (Jacobson & Truax's clinically significant change): improved reliably and
  moved from above the functional cut-off (pain above 3: more than mild) to at or below it;
  ``<NA>`` for a client already at or below the cut-off before (nothing to recover from);
* no spread of ``pre`` (one client, or every client starting at the same score) leaves no
  measurement error to compare with: ``rci`` is NaN and the class ``not_classifiable``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from mfr_analysis.describe._common import (
    arms_present,
    audience_groups,
    cells,
    client_arms,
    with_columns,
)
from mfr_analysis.privacy import ALL
from mfr_analysis.tables import load_table

CRITICAL = 1.96  # two-sided 5 % (Jacobson & Truax 1991)
CLASSES: tuple[str, ...] = ("improved", "unchanged", "deteriorated")
NOT_CLASSIFIABLE = "not_classifiable"
RECOVERY: tuple[str, ...] = ("recovered", "not_recovered", "not_applicable")
CHANGE_COLUMNS = ("client_id", "audience_group", "arm", "pre", "post", "change", "rci",
                  "rci_class", "recovered")
SUMMARY_COLUMNS = ("audience_group", "arm", "kind", "rci_class", "clients", "total", "share",
                   "ci_low", "ci_high", "measure", "total_measure")


def reference(measure: str = "pain") -> dict:
    """Reliability, functional cut-off and their sources for one measure."""
    table = load_table("reliability").set_index("measure")
    return table.loc[measure].to_dict()


def s_diff(sd_pre: float, reliability: float) -> float:
    """Standard error of a difference of two ratings (Jacobson & Truax 1991, p. 14):
    ``sqrt(2 * SE^2)`` with ``SE = SD_pre * sqrt(1 - r_xx)``."""
    se = sd_pre * np.sqrt(1.0 - reliability)
    return float(np.sqrt(2.0 * se ** 2))


def reliable_change(pre: np.ndarray | pd.Series, post: np.ndarray | pd.Series, sd_pre: float,
                    reliability: float) -> np.ndarray:
    """The reliable change index ``(post - pre) / S_diff`` of each pair; NaN when ``S_diff``
    is not a positive number (no spread of ``pre``: nothing to scale a change by)."""
    change = np.asarray(post, dtype=float) - np.asarray(pre, dtype=float)
    scale = s_diff(sd_pre, reliability)
    if not np.isfinite(scale) or scale <= 0:
        return np.full(change.shape, np.nan)
    return change / scale


def classify(rci: np.ndarray | pd.Series, direction: int = -1) -> np.ndarray:
    """'improved' / 'unchanged' / 'deteriorated' at ``|rci| > 1.96``; ``direction`` -1 when a
    fall is better (pain)."""
    signed = np.asarray(rci, dtype=float) * direction
    return np.where(np.isnan(signed), NOT_CLASSIFIABLE, np.where(
        signed > CRITICAL, "improved", np.where(signed < -CRITICAL, "deteriorated",
                                                "unchanged")))


def _first_pairs(sessions: pd.DataFrame) -> pd.DataFrame:
    sessions = with_columns(sessions, ("pain_pre", "pain_post"))
    paired = sessions[sessions["pain_pre"].notna() & sessions["pain_post"].notna()]
    keys = ["client_id", *(c for c in ("session_index", "session_date") if c in paired)]
    return paired.sort_values(keys, kind="stable").drop_duplicates("client_id")


def individual_change(sessions: pd.DataFrame, *, sd_pre: float | None = None
                      ) -> pd.DataFrame:
    """One row per client with a pain pair: pre, post, change, rci, class, recovered.

    ``audience_group`` is the group of the client's first paired session; ``arm`` the
    client's arm (first session). ``sd_pre`` defaults to the SD of these clients' ``pre``."""
    ref = reference("pain")
    pairs = _first_pairs(sessions)
    pre = pairs["pain_pre"].astype("float64").to_numpy()
    post = pairs["pain_post"].astype("float64").to_numpy()
    sd = float(np.std(pre, ddof=1)) if sd_pre is None and len(pre) > 1 else (
        sd_pre if sd_pre is not None else np.nan)
    rci = reliable_change(pre, post, sd, float(ref["reliability"])) if len(pre) else pre
    classes = classify(rci) if len(pre) else np.array([], dtype=str)
    cutoff = float(ref["cutoff"])
    recovered = pd.array(np.where(pre > cutoff, (classes == "improved") & (post <= cutoff),
                                  False), dtype="boolean")
    recovered[pre <= cutoff] = pd.NA
    arms = client_arms(sessions)
    group = (pairs["audience_group"].astype("str").to_numpy()
             if "audience_group" in pairs else np.full(len(pairs), ALL))
    return pd.DataFrame({
        "client_id": pairs["client_id"].to_numpy(), "audience_group": group,
        "arm": pairs["client_id"].map(arms).astype("str").to_numpy(), "pre": pre,
        "post": post, "change": post - pre, "rci": rci, "rci_class": classes,
        "recovered": recovered}, columns=list(CHANGE_COLUMNS))


def _wilson(count: int, total: int) -> tuple[float, float]:
    if total <= 0:
        return np.nan, np.nan
    low, high = proportion_confint(count, total, alpha=0.05, method="wilson")
    return float(low), float(high)


def individual_summary(change: pd.DataFrame) -> pd.DataFrame:
    """Clients per class, per audience group (and all) and arm, with 95 % Wilson intervals.

    Two kinds of rows: ``kind = 'reliable_change'`` (improved, unchanged, deteriorated: of
    all the arm's clients with a pair) and ``kind = 'recovery'`` (recovered, not recovered,
    not applicable = pain at or below the cut-off before: of the same clients).

    For example ``individual_summary(individual_change(sessions))``.
    """
    records = []
    frame = change.assign(recovery=np.where(
        change["recovered"].isna(), "not_applicable",
        np.where(change["recovered"].fillna(False).astype(bool), "recovered",
                 "not_recovered")))
    classes = CLASSES + ((NOT_CLASSIFIABLE,) if (change["rci_class"] == NOT_CLASSIFIABLE).any()
                         else ())
    for group, part in audience_groups(frame):
        for arm in arms_present(part["arm"]):
            rows = part[part["arm"] == arm]
            total = len(rows)
            for kind, column, levels in (("reliable_change", "rci_class", classes),
                                         ("recovery", "recovery", RECOVERY)):
                family = f"individual:{kind}_{arm}"
                for level in levels:
                    n = int((rows[column] == level).sum())
                    low, high = _wilson(n, total)
                    records.append({
                        "audience_group": group, "arm": arm, "kind": kind, "rci_class": level,
                        "clients": n, "total": total, "share": n / total if total else np.nan,
                        "ci_low": low, "ci_high": high, "measure": f"{family}#{level}",
                        "total_measure": f"individual:pair#{arm}"})
    table = pd.DataFrame.from_records(records, columns=list(SUMMARY_COLUMNS))
    return table.astype({"clients": "Int64", "total": "Int64"})


def individual_cells(table: pd.DataFrame, slice_value: str) -> pd.DataFrame:
    """The client counts of :func:`individual_summary`, as disclosure cells.

    Families: ``individual:pair#<arm>`` (clients with a pair, per arm; no total published
    unless the arms' sum is, so its total is the sum of the arms), and per arm
    ``individual:reliable_change_<arm>#<class>`` and ``individual:recovery_<arm>#<class>``
    whose totals twin ``individual:pair#<arm>``."""
    records: dict[tuple[str, str], dict] = {}
    for row in table.itertuples(index=False):
        group = str(row.audience_group)
        records[(group, row.measure)] = {"group": group, "measure": row.measure,
                                         "clients": int(row.clients), "twin": ""}
        base = row.measure.rpartition("#")[0]
        records[(group, base)] = {"group": group, "measure": base, "clients": int(row.total),
                                  "twin": row.total_measure}
        # all groups: the same people as the flow's clients of the arm with a pain pair
        same = f"flow:pair_pain_{row.arm}#with" if group == ALL else ""
        records[(group, row.total_measure)] = {"group": group, "measure": row.total_measure,
                                               "clients": int(row.total), "twin": same}
    for group in {g for g, _ in records}:
        arms = [r for (g, m), r in records.items() if g == group and
                m.startswith("individual:pair#")]
        records[(group, "individual:pair")] = {"group": group, "measure": "individual:pair",
                                               "clients": sum(r["clients"] for r in arms),
                                               "twin": ""}
    return cells(list(records.values()), slice_value)
