"""Flow of rows, sessions and clients from the raw files to each claim (CONSORT-style).

One row per box of the diagram: ``stage`` (a stable id), ``parent`` (the box it splits from),
``label`` (words), ``arm`` ('' where no arm applies), ``rows`` (input rows for the boxes
before cleaning, sessions after), ``clients``, ``measure`` (the disclosure cell of the box's
clients, '' for row counts), ``available`` (False where the data cannot give the count) and
``note``.

* Rows: ``raw`` -> ``quarantined`` (+ one ``reason:<code>`` box per reason) | ``duplicate`` |
  ``clean``; ``rows_in = rows_clean + rows_quarantined + rows_duplicate``. A row can carry
  several reasons, so the reason boxes add up to *at least* the quarantined rows, and each
  is at most that total. Rows are not clients: quarantined rows never reach a report cell.
  When the report is run from a clean table without its cleaning report, or for a slice
  (site or group) whose raw rows are not counted apart, these boxes are "not available".
* Clients: ``clean`` -> ``arm:<arm>`` (arm of the client's first session; the arms add up
  to the clean clients and sessions) -> ``pair:<outcome>:<arm>`` / ``no_pair:...`` (clients
  with / without at least one session holding both the before and the after value) ->
  ``followup:<arm>`` / ``no_followup:<arm>`` from ``pair:pain:<arm>`` (clients with a
  follow-up pain rating beside a before-session rating).
* Claims: ``analysed:<claim>|<outcome>`` (the pooled primary row's ``n_clients``; the same
  cell as that claims row), then ``suppressed:...``: clients of
  that claim who are in no group row shown, i.e. the pooled count minus the group rows
  published (0 on an unprotected claims table; given a report's protected claims table, the
  clients behind its rows withheld for privacy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfr_analysis.describe._common import arms_present, cells, with_client_arm
from mfr_analysis.privacy import ALL, CLIENTS
from mfr_analysis.tables import load_table

FLOW_COLUMNS = ("stage", "parent", "label", "arm", "rows", "clients", "measure", "available",
                "note")
#: outcome -> (before, after) columns of a usable pair, and its words
PAIRS: dict[str, tuple[str, str, str]] = {
    "pain": ("pain_pre", "pain_post", "pain"),
    "tightness": ("tightness_pre", "tightness_post", "tightness"),
    "stress": ("stress_pre", "stress_post", "stress"),
    "rom": ("rom_pre", "rom_post", "range of motion"),
}
ROW_KEYS = ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate")
NOT_AVAILABLE = "not available"


def _box(stage: str, parent: str, label: str, *, arm: str = "", rows: float = np.nan,
         clients: float = np.nan, measure: str = "", available: bool = True,
         note: str = "") -> dict:
    return {"stage": stage, "parent": parent, "label": label, "arm": arm, "rows": rows,
            "clients": clients, "measure": measure, "available": available, "note": note}


def _row_boxes(sessions: pd.DataFrame, report: dict) -> list[dict]:
    """Boxes before cleaning, from the cleaning report (row counts, not clients)."""
    counts = {k: report.get(k) for k in ROW_KEYS}
    usable = all(isinstance(v, int | np.integer) for v in counts.values()) and (
        counts["rows_clean"] == len(sessions))
    if not usable:
        why = ("the report was run from a clean table without its cleaning report, or for "
               "a slice whose raw rows are not counted apart")
        return [_box(s, p, w, available=False, note=f"{NOT_AVAILABLE}: {why}") for s, p, w in (
            ("raw", "", "rows read from the input files"),
            ("quarantined", "raw", "rows set aside (quarantined) with a reason"),
            ("duplicate", "raw", "duplicate rows removed"))]
    words = load_table("reason_codes").set_index("reason")["description"].to_dict()
    boxes = [_box("raw", "", "rows read from the input files", rows=counts["rows_in"]),
             _box("quarantined", "raw", "rows set aside (quarantined) with a reason",
                  rows=counts["rows_quarantined"],
                  note="a row can have several reasons: the reasons below add up to at "
                       "least this number")]
    reasons = report.get("reasons") or {}
    for code, rows in sorted(reasons.items(), key=lambda kv: (-int(kv[1]), kv[0])):
        if int(rows) > 0:
            boxes.append(_box(f"reason:{code}", "quarantined",
                              words.get(code, str(code).replace("_", " ")), rows=int(rows)))
    boxes.append(_box("duplicate", "raw", "duplicate rows removed",
                      rows=counts["rows_duplicate"]))
    return boxes


def _usable(sessions: pd.DataFrame, before: str, after: str) -> pd.Series:
    if before not in sessions or after not in sessions:
        return pd.Series(False, index=sessions.index)
    return (sessions[before].notna() & sessions[after].notna()).astype("bool")


def _split(sessions: pd.DataFrame, mask: pd.Series, within: pd.Series
           ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(sessions, clients) of the clients of ``within`` with a masked session, and without."""
    clients = sessions.loc[within, "client_id"]
    having = set(sessions.loc[within & mask, "client_id"])
    has = clients.isin(having)
    return ((int(has.sum()), len(having)),
            (int((~has).sum()), int(clients[~has].nunique())))


def _client_boxes(sessions: pd.DataFrame) -> list[dict]:
    """Boxes after cleaning: clients by arm, with a usable pair, with follow-up."""
    sessions = with_client_arm(sessions)
    boxes = [_box("clean", "raw", "clean sessions and their clients", rows=len(sessions),
                  clients=sessions["client_id"].nunique(), measure=CLIENTS)]
    every = pd.Series(True, index=sessions.index)
    for arm in arms_present(sessions["client_arm"]):
        in_arm = (sessions["client_arm"] == arm).astype("bool")
        (rows, clients), _ = _split(sessions, in_arm, every)
        boxes.append(_box(f"arm:{arm}", "clean", f"clients in the {arm} arm (arm of their "
                          "first session)", arm=arm, rows=rows, clients=clients,
                          measure=f"flow:arm#{arm}"))
        for outcome, (before, after, words) in PAIRS.items():
            (rows, clients), (rows_no, clients_no) = _split(
                sessions, _usable(sessions, before, after), in_arm)
            family = f"flow:pair_{outcome}_{arm}"
            boxes.append(_box(f"pair:{outcome}:{arm}", f"arm:{arm}",
                              f"with {words} before and after at least one session", arm=arm,
                              rows=rows, clients=clients, measure=f"{family}#with"))
            boxes.append(_box(f"no_pair:{outcome}:{arm}", f"arm:{arm}",
                              f"no session with {words} before and after", arm=arm,
                              rows=rows_no, clients=clients_no, measure=f"{family}#without"))
        with_pair = in_arm & sessions["client_id"].isin(
            sessions.loc[in_arm & _usable(sessions, "pain_pre", "pain_post"), "client_id"])
        (rows, clients), (rows_no, clients_no) = _split(
            sessions, _usable(sessions, "pain_pre", "pain_followup"), with_pair)
        boxes.append(_box(f"followup:{arm}", f"pair:pain:{arm}",
                          "with a follow-up pain rating (hours after a session)", arm=arm,
                          rows=rows, clients=clients, measure=f"flow:followup_{arm}#with"))
        boxes.append(_box(f"no_followup:{arm}", f"pair:pain:{arm}",
                          "no follow-up pain rating", arm=arm, rows=rows_no,
                          clients=clients_no, measure=f"flow:followup_{arm}#without"))
    return boxes


def primary_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """The primary rows (no ``sensitivity`` label) of a claims table."""
    if "sensitivity" not in claims:
        return claims
    return claims[claims["sensitivity"].fillna("").astype("str") == ""]


def _claim_boxes(sessions: pd.DataFrame, claims: pd.DataFrame | None) -> list[dict]:
    if claims is None or claims.empty:
        return []
    primary = primary_claims(claims)
    clients = pd.to_numeric(primary["n_clients"], errors="coerce").astype("float64")
    groups = primary["audience_group"].astype("str")
    boxes = []
    for index in primary.index[groups == ALL]:
        claim, outcome = str(primary.at[index, "claim_id"]), str(primary.at[index, "outcome"])
        key = f"{claim}|{outcome}"
        analysed = clients.at[index]
        rows_of_claim = (primary["claim_id"].astype("str") == claim) & (
            primary["outcome"].astype("str") == outcome) & (groups != ALL)
        shown = clients[rows_of_claim]
        suppressed = analysed - shown.sum() if shown.notna().any() else (
            np.nan if np.isnan(analysed) else 0.0)
        sessions_analysed = pd.to_numeric(pd.Series([primary.at[index, "n_sessions"]]),
                                          errors="coerce").iloc[0]
        boxes += [
            _box(f"analysed:{key}", "clean", f"analysed for the claim '{claim}' ({outcome})",
                 rows=sessions_analysed, clients=analysed, measure=f"flow:analysed[{key}]"),
            _box(f"suppressed:{key}", f"analysed:{key}", "in audience-group rows withheld for "
                 "privacy (the all-clients row minus the group rows shown)",
                 clients=max(suppressed, 0.0) if not np.isnan(suppressed) else np.nan,
                 note="clients can belong to more than one audience group" if (
                     not np.isnan(suppressed) and suppressed < 0) else ""),
        ]
    return boxes


def client_flow(sessions: pd.DataFrame, cleaning_report: dict | None,
                claims: pd.DataFrame | None) -> pd.DataFrame:
    """The flow table: one row per box, from the cleaning report, sessions and claims.

    For example ``client_flow(sessions, report, claims).set_index("stage").loc["clean",
    "clients"]`` gives the clients of the clean table.
    """
    boxes = [*_row_boxes(sessions, cleaning_report or {}), *_client_boxes(sessions),
             *_claim_boxes(sessions, claims)]
    frame = pd.DataFrame.from_records(boxes, columns=list(FLOW_COLUMNS))
    return frame.astype({"rows": "Int64", "clients": "Int64", "available": "bool"})


def flow_cells(table: pd.DataFrame, slice_value: str) -> pd.DataFrame:
    """The client counts the flow publishes, as disclosure cells (group ``all``).

    Each split is a family ``base#part`` (total = sum of parts): the arms of the clean
    clients, with/without a pair per arm, with/without follow-up. A family's total twins the
    cell that publishes the same people elsewhere (the clean clients, an arm, the arm's
    clients with a pain pair), and an analysed count twins its claims row."""
    named = table[table["measure"].astype("str").str.startswith("flow:")
                  & table["clients"].notna()]
    count = dict(zip(table["measure"], table["clients"], strict=True))
    records = []
    for measure, clients in zip(named["measure"], named["clients"], strict=True):
        twin = measure[len("flow:analysed["):-1] if measure.startswith("flow:analysed[") else ""
        records.append({"group": ALL, "measure": measure, "clients": int(clients),
                        "twin": twin})
    for base in dict.fromkeys(m.rpartition("#")[0] for m in named["measure"] if "#" in m):
        arm = base.rsplit("_", 1)[-1]
        if base == "flow:arm":
            twin = CLIENTS
        elif base.startswith("flow:pair_"):
            twin = f"flow:arm#{arm}"
        else:  # flow:followup_<arm>: the arm's clients with a pain pair
            twin = f"flow:pair_pain_{arm}#with"
        clients = count.get(twin)
        if clients is not None and not pd.isna(clients):
            records.append({"group": ALL, "measure": base, "clients": int(clients),
                            "twin": twin})
    return cells(records, slice_value)
