"""Missing follow-up: how complete follow-up pain is (by audience group and arm), and how
clients with a follow-up score differ from those without one.

Tidy tables of a derived session table (not changed). A client "has follow-up" when any of
their sessions has a follow-up pain score. The earlier response is the client's mean
within-session pain change (post minus pre): in session logs, clients who felt little relief
answer follow-up less often, which biases complete-case results at follow-up (see
:mod:`mfr_analysis.claims.sensitivity`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfr_analysis.describe._common import with_columns

__all__ = ["followup_cells", "followup_comparison", "followup_completeness"]

ALL = "all"
ARMS = ("all", "mfr", "control")
MEASURE = "followup"
COMPARED = {
    "pain_pre": "pain before the session (client mean)",
    "response": "pain change within sessions (client mean, post minus pre)",
    "sessions": "sessions",
    "weeks": "weeks in treatment",
}


def _per_client(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per (audience group, client): arm, sessions, sessions with follow-up and the
    compared values."""
    sessions = with_columns(sessions, ("pain_pre", "pain_post", "pain_followup"))
    followup = sessions["pain_followup"]
    frame = pd.DataFrame({
        "audience_group": sessions["audience_group"].astype("str"),
        "arm": (sessions["arm"].astype("str").where(sessions["arm"].notna(), "mfr")
                if "arm" in sessions else "mfr"),  # the clean table's default arm
        "client_id": sessions["client_id"].astype("str"),
        "with_followup": followup.notna().to_numpy(),
        "pain_pre": sessions["pain_pre"].to_numpy(dtype=float),
        "response": (sessions["pain_post"] - sessions["pain_pre"]).to_numpy(dtype=float),
        "weeks": (sessions["weeks_since_start"].to_numpy(dtype=float)
                  if "weeks_since_start" in sessions else np.zeros(len(sessions))),
    })
    return frame.groupby(["audience_group", "client_id"], sort=True).agg(
        arm=("arm", "first"), sessions=("with_followup", "size"),
        sessions_with=("with_followup", "sum"), pain_pre=("pain_pre", "mean"),
        response=("response", "mean"), weeks=("weeks", "max")).reset_index().assign(
        has_followup=lambda d: d["sessions_with"] > 0)


def _cells(clients: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(audience group, arm, clients) of every cell: each group and all, each arm and all
    (a client seen in several groups is one client of ``all``)."""
    pooled = clients.groupby("client_id", sort=True).agg(
        arm=("arm", "first"), sessions=("sessions", "sum"),
        sessions_with=("sessions_with", "sum"), has_followup=("has_followup", "any"),
        pain_pre=("pain_pre", "mean"), response=("response", "mean"),
        weeks=("weeks", "max")).reset_index()
    out = []
    for group, frame in [(ALL, pooled), *((g, f) for g, f in clients.groupby(
            "audience_group", sort=True))]:
        for arm in ARMS:
            cell = frame if arm == ALL else frame.loc[frame["arm"] == arm]
            if len(cell):
                out.append((str(group), arm, cell))
    return out


def followup_completeness(sessions: pd.DataFrame) -> pd.DataFrame:
    """Clients and sessions with a follow-up pain score, by audience group (incl. ``all``)
    and arm (incl. ``all``): ``clients``, ``clients_with_followup``,
    ``share_clients_with_followup``, ``sessions``, ``sessions_with_followup``,
    ``share_sessions_with_followup``."""
    rows = []
    for group, arm, cell in _cells(_per_client(sessions)):
        clients, with_clients = len(cell), int(cell["has_followup"].sum())
        n_sessions, with_sessions = int(cell["sessions"].sum()), int(cell["sessions_with"].sum())
        rows.append({
            "audience_group": group, "arm": arm, "clients": clients,
            "clients_with_followup": with_clients,
            "share_clients_with_followup": with_clients / clients if clients else np.nan,
            "sessions": n_sessions, "sessions_with_followup": with_sessions,
            "share_sessions_with_followup": with_sessions / n_sessions if n_sessions
            else np.nan})
    return _with_measures(pd.DataFrame(rows))


def followup_comparison(sessions: pd.DataFrame) -> pd.DataFrame:
    """Clients with and without any follow-up score, compared per audience group (incl.
    ``all``, arms together): one row per (group, variable) with ``mean``/``sd`` of each
    side, the clients of each side and the standardized difference (with minus without,
    over the pooled SD ``sqrt((sd_with^2 + sd_without^2) / 2)``)."""
    rows = []
    for group, arm, cell in _cells(_per_client(sessions)):
        if arm != ALL:
            continue
        has = cell["has_followup"].to_numpy(dtype=bool)
        for column, words in COMPARED.items():
            values = cell[column].to_numpy(dtype=float)
            with_, without = values[has & np.isfinite(values)], values[~has & np.isfinite(values)]
            sd_with = float(np.std(with_, ddof=1)) if len(with_) > 1 else np.nan
            sd_without = float(np.std(without, ddof=1)) if len(without) > 1 else np.nan
            pooled = np.sqrt((sd_with**2 + sd_without**2) / 2)
            mean_with = float(with_.mean()) if len(with_) else np.nan
            mean_without = float(without.mean()) if len(without) else np.nan
            rows.append({
                "audience_group": group, "variable": column, "label": words,
                "clients_with_followup": int(has.sum()),
                "clients_without_followup": int((~has).sum()),
                "mean_with": mean_with, "sd_with": sd_with,
                "mean_without": mean_without, "sd_without": sd_without,
                "std_difference": (mean_with - mean_without) / pooled
                if np.isfinite(pooled) and pooled > 0 else np.nan})
    return _with_measures(pd.DataFrame(rows))


def _measure(arm: str, part: str = "") -> str:
    """The cell of the clients of an arm (``all``: every arm) with (``with``), without
    (``without``) or regardless of (``""``) follow-up."""
    if arm == ALL:
        return f"{MEASURE}:clients" + (f"#{part}" if part else "")
    return f"{MEASURE}:{arm}" + (f"#{part}" if part else "")


def _with_measures(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the disclosure cell of each count beside it (``describe.protect``)."""
    arm = table["arm"] if "arm" in table else pd.Series(ALL, index=table.index)
    columns = {"measure": "", "with_measure": "with", "without_measure": "without"}
    return table.assign(**{name: [_measure(str(a), part) for a in arm]
                           for name, part in columns.items()})


def _names(arm: str) -> dict[str, tuple[str, str]]:
    """The two names of each count of one arm (``all``: every arm), by part ('' = all its
    clients, ``with`` / ``without`` follow-up): one per margin family it belongs to."""
    if arm == ALL:
        return {"": (_measure(ALL), f"{MEASURE}:arms"),
                "with": (_measure(ALL, "with"), f"{MEASURE}:with"),
                "without": (_measure(ALL, "without"), f"{MEASURE}:without")}
    return {"": (_measure(arm), f"{MEASURE}:arms#{arm}"),
            "with": (_measure(arm, "with"), f"{MEASURE}:with#{arm}"),
            "without": (_measure(arm, "without"), f"{MEASURE}:without#{arm}")}


def followup_cells(sessions: pd.DataFrame, cleaning_report: object, claims: object,
                   slice_value: str) -> pd.DataFrame:
    """The client counts the follow-up tables publish, as disclosure cells (columns
    ``slice, group, measure, clients, sessions, twin``).

    Arm x follow-up is a two-way table, and a plan line has one total and its parts, so each
    margin is a family of its own and the same people under two names are twins (hidden
    together): ``followup:clients`` = ``#with`` + ``#without`` = ``followup:arms#mfr`` +
    ``#control`` (the group's clients, twin of its ``clients`` cell); ``followup:with`` =
    ``#mfr`` + ``#control`` and ``followup:without`` likewise; ``followup:<arm>`` =
    ``#with`` + ``#without``; and ``followup:with#mfr`` is ``followup:mfr#with``."""
    rows: list[dict] = []
    for r in followup_completeness(sessions).itertuples(index=False):
        counts = {"": (r.clients, r.sessions),
                  "with": (r.clients_with_followup, r.sessions_with_followup),
                  "without": (r.clients - r.clients_with_followup,
                              r.sessions - r.sessions_with_followup)}
        for part, (first, second) in _names(str(r.arm)).items():
            clients, n_sessions = (int(n) for n in counts[part])
            twins = [second, *(["clients"] if first == _measure(ALL) else [])]
            rows += [{"slice": slice_value, "group": str(r.audience_group), "measure": name,
                      "clients": clients, "sessions": n_sessions, "twin": twin}
                     for name, twin in [*((first, t) for t in twins), (second, "")]]
    return pd.DataFrame(rows, columns=["slice", "group", "measure", "clients", "sessions",
                                       "twin"])


def followup_members(sessions: pd.DataFrame, slice_value: str) -> dict[tuple, frozenset]:
    """The clients behind every follow-up cell (:func:`followup_cells`), for the exact
    disclosure audit (:mod:`mfr_analysis.privacy_audit`)."""
    out: dict[tuple, frozenset] = {}
    for group, arm, cell in _cells(_per_client(sessions)):
        ids = cell["client_id"].astype("str")
        parts = {"": frozenset(ids), "with": frozenset(ids[cell["has_followup"]])}
        parts["without"] = parts[""] - parts["with"]
        for part, names in _names(arm).items():
            out.update({(slice_value, group, name): parts[part] for name in names})
    return out
