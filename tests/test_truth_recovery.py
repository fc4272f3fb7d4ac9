"""End to end against known truth: simulate -> clean -> per-group change lands on the plant.

The simulator writes the effect it planted for every claim x group; after the messy log has
been through the whole cleaning stage, a plain client-level mean change must recover it
within sampling error. A failure here means the mess, the cleaning or the truth is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.pipeline import load_sessions
from mfr_analysis.simulate import write_simulation


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = tmp_path_factory.mktemp("truth") / "logs.csv"
    written = write_simulation(1500, 11, out)
    sessions = load_sessions([written["log"]])
    truth = pd.read_csv(written["truth"])
    return sessions, truth


def client_mean_change(sessions: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Mean (post - pre) per client, then mean and standard error across clients."""
    per_client = (
        sessions.assign(change=sessions[f"{outcome}_post"] - sessions[f"{outcome}_pre"])
        .dropna(subset=["change"])
        .groupby(["audience_group", "arm", "client_id"], observed=True)["change"]
        .mean()
    )
    summary = per_client.groupby(["audience_group", "arm"], observed=True).agg(["mean", "sem"])
    return summary.reset_index()


@pytest.mark.parametrize("outcome", ["pain", "tightness", "stress"])
def test_planted_change_recovered_after_cleaning(cleaned, outcome: str) -> None:
    sessions, truth = cleaned
    observed = client_mean_change(sessions, outcome)
    planted = truth.loc[(truth["claim_id"] == outcome) & (truth["audience_group"] != "all")]
    checked = 0
    for _, row in planted.iterrows():
        for arm, column in (("mfr", "planted_change"), ("control", "placebo_change")):
            cell = observed.loc[(observed["audience_group"] == row["audience_group"])
                                & (observed["arm"] == arm)]
            assert len(cell) == 1, (outcome, row["audience_group"], arm)
            mean, sem = float(cell["mean"].iloc[0]), float(cell["sem"].iloc[0])
            assert abs(mean - row[column]) < 3.5 * sem + 0.05, (
                outcome, row["audience_group"], arm, mean, row[column], sem)
            checked += 1
    assert checked == 10


def test_rom_planted_per_measure_recovered(cleaned) -> None:
    sessions, truth = cleaned
    mfr = sessions.loc[sessions["arm"] == "mfr"].assign(
        change=lambda d: d["rom_post"] - d["rom_pre"])
    per_client = (mfr.dropna(subset=["change"])
                  .groupby(["rom_measure", "audience_group", "client_id"], observed=True)["change"]
                  .mean())
    summary = per_client.groupby(["rom_measure", "audience_group"], observed=True).agg(
        ["mean", "sem", "size"]).reset_index()
    planted = truth.loc[(truth["claim_id"] == "rom") & (truth["audience_group"] != "all")]
    merged = summary.merge(planted, on=["rom_measure", "audience_group"])
    merged = merged.loc[merged["size"] >= 15]
    assert len(merged) >= 15
    z = (merged["mean"] - merged["planted_change"]) / merged["sem"]
    assert (z.abs() < 4).all(), merged.loc[z.abs() >= 4]
    # Across many cells, the errors average out: no systematic bias from unit conversion.
    assert abs(np.mean(z)) < 1.0


def test_nothing_lost_and_every_group_present(cleaned) -> None:
    sessions, _ = cleaned
    assert set(sessions["audience_group"].astype(str)) == {
        "athlete", "senior", "desk_worker", "rehab", "chronic_pain"}
    assert set(sessions["arm"].astype(str)) == {"mfr", "control"}
    assert sessions["session_id"].is_unique
    assert (sessions.groupby("client_id")["session_index"].min() == 1).all()


def test_truth_file_sits_beside_the_log(tmp_path: Path) -> None:
    written = write_simulation(30, 1, tmp_path / "x.csv")
    assert written["truth"].name == "x.truth.csv" and written["truth"].is_file()
