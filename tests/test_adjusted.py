"""Adjusted and unadjusted side by side (issue 13, points 5 and 6): on sessions with a planted
baseline imbalance and regression to the mean, the ANCOVA recovers the planted effect and
the unadjusted change-score difference is off by the predicted amount; on the per-client-sums
route the unadjusted difference is the difference of the arms' client means, and the E-values
follow from the row's interval and the sessions' pooled within-arm SD."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.claims import KINDS, evaluate_claims
from mfr_analysis.claims.evalue import e_value_sentence

EFFECT = -1.0  # MFR minus control, on the post-session pain at equal pre-session pain
SLOPE = 0.5  # post-session pain regresses half-way back to the mean of pre-session pain
BASELINE = {"mfr": 6.0, "control": 7.0}  # the control arm starts one point higher


def imbalanced_sessions(n_clients: int = 240, sessions: int = 3, seed: int = 5) -> pd.DataFrame:
    """change = (SLOPE - 1) (pre - 6.5) + EFFECT x MFR + noise: the unadjusted difference of
    the changes is EFFECT + (SLOPE - 1) (6 - 7) = -0.5, the ANCOVA one EFFECT = -1."""
    rng = np.random.default_rng(seed)
    client = np.repeat(np.arange(n_clients), sessions)
    control = (np.arange(n_clients) % 2 == 1)[client]
    level = np.where(control, BASELINE["control"], BASELINE["mfr"])
    pre = level + rng.normal(0, 1.0, n_clients)[client] + rng.normal(0, 0.5, len(client))
    post = 6.5 + SLOPE * (pre - 6.5) + np.where(control, 0.0, EFFECT) \
        + rng.normal(0, 0.5, len(client))
    return pd.DataFrame({
        "client_id": [f"c_{c:016x}" for c in client],
        "audience_group": np.where(np.arange(n_clients) % 4 < 2, "athlete", "senior")[client],
        "arm": np.where(control, "control", "mfr"),
        "session_index": np.tile(np.arange(1, sessions + 1), n_clients),
        "weeks_since_start": np.tile(np.arange(sessions, dtype=float), n_clients),
        "pain_pre": pre, "pain_post": post, "pain_change": post - pre})


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return imbalanced_sessions()


def _pain(table: pd.DataFrame, group: str = "all") -> pd.Series:
    return table.loc[(table["claim_id"] == "pain") & (table["audience_group"] == group)].iloc[0]


def test_ancova_recovers_the_effect_and_the_unadjusted_difference_is_biased(
        sessions: pd.DataFrame) -> None:
    table = evaluate_claims(sessions)
    row = _pain(table)
    assert row["design"] == "controlled" and "per-client means" not in row["method"]
    assert row["estimate"] == pytest.approx(EFFECT, abs=0.15)
    assert row["estimate_unadjusted"] == pytest.approx(EFFECT + (SLOPE - 1) * -1.0, abs=0.15)
    assert row["ci_low_unadjusted"] < row["estimate_unadjusted"] < row["ci_high_unadjusted"]
    assert row["covariates"] == "pain before the session"
    assert "started at different levels" in row["covariates_reason"]
    client_pre = sessions.groupby(["client_id", "arm"])["pain_pre"].mean().reset_index()
    mfr, control = (client_pre.groupby("arm")["pain_pre"].mean()[a] for a in ("mfr", "control"))
    assert f"averaged {mfr:.1f} with MFR and {control:.1f} with control" in \
        row["covariates_reason"]
    assert row["e_value"] > row["e_value_ci"] > 1
    assert "to explain away this estimate" in e_value_sentence(row)
    for group in ("athlete", "senior"):
        assert _pain(table, group)["covariates"] == "pain before the session"


def test_rows_that_are_not_controlled_get_nothing(sessions: pd.DataFrame) -> None:
    table = evaluate_claims(sessions)
    other = table.loc[table["design"] != "controlled"]
    assert len(other) > 0
    for column in ("estimate_unadjusted", "ci_low_unadjusted", "ci_high_unadjusted",
                   "e_value", "e_value_ci"):
        assert other[column].isna().all(), column
    assert (other["covariates"] == "").all() and (other["covariates_reason"] == "").all()
    assert table.loc[table["design"] == "controlled", "e_value"].notna().all()


def test_a_trend_row_has_no_covariate_so_it_is_its_own_unadjusted(sessions: pd.DataFrame,
                                                                  ) -> None:
    table = evaluate_claims(sessions)
    trend = table.loc[(table["outcome"] == "pain_pre") & (table["design"] == "controlled")]
    assert len(trend) == 3
    for column in ("estimate", "ci_low", "ci_high"):
        assert (trend[f"{column}_unadjusted"] == trend[column]).all()
    assert (trend["covariates"] == "none").all()
    assert trend["covariates_reason"].str.contains("uses no covariate").all()
    through = trend.loc[(trend["ci_low"] < 0) & (trend["ci_high"] > 0)]
    assert (through["e_value_ci"] == 1.0).all()


def test_per_client_sums_route_by_hand(sessions: pd.DataFrame,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the session limit: the unadjusted difference is the difference of the arms'
    means of client-mean changes, and the E-values use the row's CI and the pooled
    within-arm SD of the sessions' changes."""
    monkeypatch.setitem(KINDS, "change",
                        dataclasses.replace(KINDS["change"], session_limit=50))
    row = _pain(evaluate_claims(sessions))
    assert "per-client means" in row["method"]
    change = sessions.assign(change=sessions["pain_post"] - sessions["pain_pre"])
    means = change.groupby(["client_id", "arm"])["change"].mean().reset_index()
    by_arm = means.groupby("arm")["change"].mean()
    assert row["estimate_unadjusted"] == pytest.approx(by_arm["mfr"] - by_arm["control"],
                                                       rel=1e-9)
    groups = [g["change"].to_numpy() for _, g in change.groupby("arm")]
    sd = math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups)
                   / (sum(len(g) for g in groups) - 2))

    def e_value(d: float) -> float:
        rr = math.exp(0.91 * d)
        rr = 1 / rr if rr < 1 else rr
        return rr + math.sqrt(rr * (rr - 1))

    assert row["e_value"] == pytest.approx(e_value(row["estimate"] / sd), rel=1e-9)
    assert row["e_value_ci"] == pytest.approx(e_value(row["ci_high"] / sd), rel=1e-9)
