"""Small-cell suppression: counts of 1-10 clients never shown, nor derivable from a total."""

from __future__ import annotations

import pandas as pd

from mfr_analysis.privacy import reportable_groups, suppress_counts
from mfr_analysis.report.views import suppress_small_cells


def test_small_counts_hidden_and_one_complement() -> None:
    shown = suppress_counts(pd.Series([5, 40, 30, 0], index=list("abcd")))
    assert shown.tolist() == ["<11", "40", "<11", "0"]


def test_two_small_cells_need_no_complement() -> None:
    assert suppress_counts(pd.Series([5, 4, 30])).tolist() == ["<11", "<11", "30"]


def test_large_counts_shown_and_minimum_configurable() -> None:
    assert suppress_counts(pd.Series([50, 12])).tolist() == ["50", "12"]
    assert suppress_counts(pd.Series([50, 12, 13]), minimum=13).tolist() == ["50", "<13", "<13"]


def test_claims_rows_of_small_cells_lose_their_numbers() -> None:
    claims = pd.DataFrame({
        "claim_id": ["pain", "pain"], "audience_group": ["all", "senior"],
        "outcome": ["pain", "pain"], "estimate": [-1.0, -3.0], "ci_low": [-2.0, -5.0],
        "ci_high": [0.0, -1.0], "p_value": [0.01, 0.02], "p_adjusted": [0.02, 0.02],
        "mcid": [2.0, 2.0], "n_clients": [40, 7], "n_sessions": [200, 30],
        "method": ["m", "m"], "verdict": ["below_threshold", "supported"], "note": ["", ""],
    })
    hidden = suppress_small_cells(claims)
    assert hidden.loc[1, "verdict"] == "suppressed"
    assert hidden.loc[1, ["estimate", "ci_low", "ci_high", "n_clients", "n_sessions"]].isna().all()
    assert hidden.loc[0, "estimate"] == -1.0


def test_reportable_groups_counts_clients_not_sessions() -> None:
    sessions = pd.DataFrame({
        "client_id": [f"c{i}" for i in range(11)] + ["x"] * 50,
        "audience_group": ["athlete"] * 11 + ["senior"] * 50,
    })
    assert reportable_groups(sessions) == ["athlete"]
