"""Small-cell suppression for anything a report shows (CMS cell-size rule by default)."""

from __future__ import annotations

import pandas as pd

from mfr_analysis.config import MIN_REPORTED_CLIENTS


def is_small(count: pd.Series, minimum: int = MIN_REPORTED_CLIENTS) -> pd.Series:
    """True where a client count lies in 1..minimum-1 and must not be shown."""
    return count.between(1, minimum - 1)


def suppress_counts(count: pd.Series, minimum: int = MIN_REPORTED_CLIENTS) -> pd.Series:
    """Counts as display text, hiding small cells and one more when a total would reveal one.

    Complementary suppression: if exactly one cell of a set is hidden, the next smallest is
    hidden too, so that the hidden value cannot be derived from a published total.
    """
    hidden = is_small(count, minimum)
    if hidden.sum() == 1:
        visible = count[~hidden & (count > 0)]
        if not visible.empty:
            hidden = hidden | (count.index == visible.idxmin())
    text = count.map(lambda n: f"{int(n):,}")
    return text.where(~hidden, f"<{minimum}")


def reportable_groups(
    sessions: pd.DataFrame, column: str = "audience_group", minimum: int = MIN_REPORTED_CLIENTS
) -> list[str]:
    """Values of ``column`` with at least ``minimum`` distinct clients."""
    clients = sessions.groupby(column, observed=True)["client_id"].nunique()
    return [str(value) for value in clients.index[clients >= minimum]]
