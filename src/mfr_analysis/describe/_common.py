"""Pieces the describe tables share: the client's baseline row, the report's groups, cells."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from mfr_analysis.privacy import ALL

ARMS: tuple[str, ...] = ("mfr", "control")
CELL_COLUMNS = ("slice", "group", "measure", "clients", "sessions", "twin")


def _require(sessions: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in sessions.columns]
    if missing:
        raise KeyError(f"sessions table lacks column(s): {', '.join(missing)}")


def with_columns(sessions: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The sessions with every named measure column, missing ones as empty floats (a log
    without pain ratings still gets its tables, with nothing to count)."""
    absent = [c for c in columns if c not in sessions]
    return sessions.assign(**dict.fromkeys(absent, np.nan)) if absent else sessions


def first_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per client: the client's first session (lowest ``session_index``, then date).

    The client is the unit: everything 'at baseline' is read from this row, and a client's
    arm is the arm of this session (a client who later changed arm stays in the first)."""
    _require(sessions, ("client_id",))
    keys = ["client_id", *(c for c in ("session_index", "session_date") if c in sessions)]
    ordered = sessions.sort_values(keys, kind="stable")
    return ordered.drop_duplicates("client_id", keep="first").reset_index(drop=True)


def client_arms(sessions: pd.DataFrame) -> pd.Series:
    """Arm of each client (``client_id`` index): the arm of the first session, 'mfr' if blank
    (the clean table's default arm)."""
    first = first_sessions(sessions)
    arm = (first["arm"].astype("str").where(first["arm"].notna(), "mfr") if "arm" in first
           else pd.Series("mfr", index=first.index))
    return pd.Series(arm.to_numpy(), index=first["client_id"].to_numpy(), name="arm")


def with_client_arm(sessions: pd.DataFrame) -> pd.DataFrame:
    """The sessions with ``client_arm``: every session of a client carries the client's arm."""
    arms = client_arms(sessions)
    return sessions.assign(client_arm=sessions["client_id"].map(arms).astype("str"))


def arms_present(arms: pd.Series) -> list[str]:
    """The arms with clients, in the order mfr, control, then any other."""
    values = set(arms.astype("str"))
    return [a for a in ARMS if a in values] + sorted(values - set(ARMS))


def audience_groups(sessions: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(ALL, all sessions)`` then ``(group, its sessions)`` for each group with sessions."""
    yield ALL, sessions
    if "audience_group" not in sessions:
        return
    column = sessions["audience_group"]
    order = ([str(c) for c in column.cat.categories]
             if isinstance(column.dtype, pd.CategoricalDtype)
             else sorted(column.dropna().astype("str").unique()))
    text = column.astype("str")
    for group in order:
        part = sessions[(text == group) & column.notna()]
        if len(part):
            yield group, part


def cells(records: list[dict], slice_value: str) -> pd.DataFrame:
    """A cells frame (``slice, group, measure, clients, sessions, twin``) from records."""
    frame = pd.DataFrame.from_records(records, columns=[c for c in CELL_COLUMNS
                                                        if c != "slice"])
    frame = frame.assign(slice=slice_value, sessions=frame["sessions"].fillna(0),
                         twin=frame["twin"].fillna(""))
    frame = frame.dropna(subset=["clients"])
    return frame.astype({"clients": "int64", "sessions": "int64"})[list(CELL_COLUMNS)]
