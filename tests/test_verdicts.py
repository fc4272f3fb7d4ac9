"""Verdicts never claim more than the design and the registry's thresholds allow (issue 11).

A claim reaches supported / below_threshold / no_meaningful_effect only against a threshold
the registry states with its source, and only for a controlled or uncontrolled change; a
claim without one, or an observational association, reaches association verdicts only.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis import claims
from mfr_analysis.claims import (
    DESIGNS,
    VERDICTS,
    AnalysisError,
    claim_registry,
    decide_verdict,
    evaluate_claims,
)
from mfr_analysis.models import FitFailed
from mfr_analysis.report.labels import verdict_label, verdict_plain
from tests.test_claims import make_sessions

SIZED = {"supported", "below_threshold", "no_meaningful_effect"}  # need a stated threshold
ASSOCIATION = {"association_shown", "no_association_shown", "contradicted"}
ALPHA = 0.05
MCID = 2.0

# (adjusted p, effect relative to the claimed direction, TOST p) -> the verdict with a stated
# threshold (controlled or uncontrolled change), and without one (or observational)
RESULTS = [
    ((0.001, +3.0, 0.90), "supported", "association_shown"),        # beyond the MCID
    ((0.001, +2.0, 0.50), "supported", "association_shown"),        # at the MCID
    ((0.001, +1.0, 0.01), "below_threshold", "association_shown"),  # real but small
    ((0.001, -1.0, 0.01), "contradicted", "contradicted"),          # the other way, small
    ((0.001, -3.0, 0.90), "contradicted", "contradicted"),          # the other way, large
    ((0.40, +0.1, 0.001), "no_meaningful_effect", "no_association_shown"),  # equivalent
    ((0.40, -0.1, 0.001), "no_meaningful_effect", "no_association_shown"),
    ((0.40, +1.5, 0.30), "inconclusive", "no_association_shown"),   # neither shown
    ((0.40, -1.5, 0.30), "inconclusive", "no_association_shown"),
    ((0.001, 0.0, 0.001), "inconclusive", "inconclusive"),          # significant zero
    ((math.nan, +1.0, 0.30), "inconclusive", "inconclusive"),       # no p-value
    ((0.001, math.nan, math.nan), "inconclusive", "inconclusive"),  # no estimate
]


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("direction", [-1, 1])
@pytest.mark.parametrize("threshold", [MCID, math.nan], ids=["threshold", "none"])
@pytest.mark.parametrize(("result", "with_threshold", "without"), RESULTS)
def test_every_verdict_design_and_threshold(design: str, direction: int, threshold: float,
                                            result: tuple[float, float, float],
                                            with_threshold: str, without: str) -> None:
    p, relative, tost = result
    effect = relative * direction  # the signed estimate on the model's scale
    tost = tost if math.isfinite(threshold) else math.nan  # no margin, no TOST
    verdict = decide_verdict("fit", p, effect, direction, threshold, tost, design=design,
                             alpha=ALPHA)
    judged = math.isfinite(threshold) and design != "observational"
    assert verdict == (with_threshold if judged else without)
    if not judged:
        assert verdict not in SIZED


@pytest.mark.parametrize(("design", "threshold"), list(itertools.product(
    [*DESIGNS, ""], [MCID, math.nan])))
def test_fits_that_cannot_be_read_and_missing_data(design: str, threshold: float) -> None:
    for status in ("not_measured", "insufficient_data"):
        assert decide_verdict(status, math.nan, math.nan, -1, threshold, math.nan,
                              design=design, alpha=ALPHA) == status
    # a failed or degenerate fit (status 'inconclusive') stays inconclusive, even with a p
    assert decide_verdict("inconclusive", 0.001, -3.0, -1, threshold, 0.001,
                          design=design, alpha=ALPHA) == "inconclusive"


def test_the_walk_reaches_every_verdict_and_each_has_words() -> None:
    reached = {r for _, with_threshold, without in RESULTS for r in (with_threshold, without)}
    assert reached | {"not_measured", "insufficient_data"} == set(VERDICTS)
    for verdict in VERDICTS:  # the legend is written from report_labels.csv
        assert verdict_label(verdict) != verdict.replace("_", " ")
    assert "no threshold" in verdict_plain("association_shown")
    assert "not show that there is none" in verdict_plain("no_association_shown")


# ------------------------------------------------------------------- the registry ---

def test_every_claim_states_its_threshold_or_none() -> None:
    registry = claim_registry().set_index("claim_id")
    kinds = registry["threshold_kind"]
    assert set(kinds) <= {"within_person", "between_condition", "none"}
    assert registry["threshold_rationale"].str.len().min() > 40
    assert (kinds.eq("none") == registry["threshold_key"].isna()).all()
    # between-condition contrasts, the dose slope and adverse odds state none (no published
    # between-condition MCID; observational); the within-person changes state one
    assert set(kinds.index[kinds == "none"]) == {
        "circulation", "slow_pace", "breathing", "consistency", "pressure_safety", "delivery"}
    for claim_id in ("slow_pace", "breathing", "delivery"):
        assert "not a person's change" in registry.loc[claim_id, "threshold_rationale"]


def test_a_broken_registry_is_refused(tmp_path: Path) -> None:
    registry = claim_registry()
    broken = registry.assign(threshold_key=registry["threshold_key"].where(
        registry["claim_id"] != "pain", "made_up"))
    broken.to_csv(tmp_path / "claims.csv", index=False)
    with pytest.raises(AnalysisError, match="pain: threshold_key 'made_up'"):
        claim_registry(tmp_path / "claims.csv")
    unknown = registry.assign(analysis=registry["analysis"].where(
        registry["claim_id"] != "pain", "regression"))
    unknown.to_csv(tmp_path / "kinds.csv", index=False)
    with pytest.raises(AnalysisError, match="pain: analysis 'regression' is not one of"):
        claim_registry(tmp_path / "kinds.csv")
    with pytest.raises(AnalysisError, match="no such file"):
        claim_registry(tmp_path / "missing.csv")


def test_an_mcid_override_cannot_give_an_association_a_threshold() -> None:
    data = make_sessions(12, 2, seed=8)
    with pytest.raises(AnalysisError, match="breathing.*state no threshold") as error:
        evaluate_claims(data, mcid_overrides={"breathing": 0.5})
    assert "\n" not in str(error.value)
    table = evaluate_claims(data, groups=[], mcid_overrides={"pain": 1.5})
    pain = table.loc[table["claim_id"] == "pain"].iloc[0]
    assert pain["mcid"] == 1.5 and "set by the user" in pain["threshold_source"]


# --------------------------------------------------------- on a real evaluation ---

@pytest.fixture(scope="module")
def simulated_table(simulated_logs: Path) -> pd.DataFrame:
    """The primary rows of the claims table of the shared simulated logs (300 clients, with
    a control arm); the lasting-relief sensitivity rows are tested in test_missing_followup."""
    from mfr_analysis.claims import primary_rows
    from mfr_analysis.pipeline import load_sessions

    return primary_rows(evaluate_claims(load_sessions([simulated_logs])))


def test_claims_without_a_threshold_reach_association_verdicts_only(
        simulated_table: pd.DataFrame) -> None:
    table = simulated_table
    none = claim_registry().query("threshold_kind == 'none'")["claim_id"]
    unthresholded = table["claim_id"].isin(none) | table["mcid"].isna()
    assert not table.loc[unthresholded, "verdict"].isin(SIZED).any()
    assert not table.loc[table["design"] == "observational", "verdict"].isin(SIZED).any()
    # the data have real session contrasts: they are shown as associations, not 'supported'
    assert (table.loc[unthresholded, "verdict"] == "association_shown").sum() >= 3
    assert (table.loc[~unthresholded, "verdict"].isin(SIZED)).sum() >= 10
    sized = table.loc[table["verdict"].isin(SIZED)]
    assert sized["mcid"].gt(0).all() and sized["threshold_source"].str.len().gt(0).all()


def test_design_is_set_on_every_row_with_a_model(simulated_table: pd.DataFrame) -> None:
    table = simulated_table
    no_model = table["verdict"].isin(["not_measured", "insufficient_data"])
    assert set(table.loc[~no_model, "design"]) <= set(DESIGNS)
    assert (table.loc[no_model, "design"] == "").all()
    assert table.loc[table["estimate"].notna(), "design"].isin(DESIGNS).all()
    kinds = claim_registry().set_index("claim_id")["analysis"]
    observational = table["claim_id"].map(kinds).isin(["contrast", "dose", "adverse"])
    assert (table.loc[observational & ~no_model, "design"] == "observational").all()
    assert set(table.loc[~observational & ~no_model, "design"]) == {"controlled",
                                                                     "uncontrolled"}


def test_notes_word_each_design(simulated_table: pd.DataFrame) -> None:
    table = simulated_table
    controlled = table.loc[table["design"] == "controlled"]
    assert controlled["note"].str.contains("compared with control clients").all()
    for note, n in zip(controlled["note"], controlled["n_control_clients"], strict=True):
        assert f"({n} control clients)" in note  # the phrase privacy.py parses
    assert (controlled["n_control_clients"] >= 10).all()
    assert (table.loc[table["design"] != "controlled", "n_control_clients"] == 0).all()
    uncontrolled = table.loc[table["design"] == "uncontrolled", "note"]
    assert uncontrolled.str.contains("no control group").all()
    assert uncontrolled.str.contains("regression to the mean").all()
    change = table.loc[(table["design"] == "uncontrolled") & (table["claim_id"] == "rom"), "note"]
    assert change.str.contains("from before to after a session").all()
    shown = table.loc[table["verdict"] == "association_shown"]
    breathing = shown.loc[shown["claim_id"] == "breathing", "note"]
    assert len(breathing) and breathing.str.startswith(
        "association: sessions with deep breathing were followed by larger stress drops").all()
    assert breathing.str.contains("this does not show that breathing caused it").all()
    observational = table.loc[table["design"] == "observational"]
    none = observational.loc[observational["verdict"] == "no_association_shown", "note"]
    assert none.str.contains("this does not show that there is none").all()
    trend = table.loc[(table["claim_id"] == "lasting_relief") & (table["outcome"] == "pain_pre")
                      & table["mcid"].notna()]
    for note, mcid in zip(trend["note"], trend["mcid"], strict=True):
        assert f"about {mcid:.2g} points per week" in note and f"{mcid:.3f}" not in note


def test_responder_counts(simulated_table: pd.DataFrame) -> None:
    table = simulated_table
    has = table["responders"].notna()
    threshold = table["mcid"].notna() & ~table["verdict"].isin(
        ["not_measured", "insufficient_data"])
    assert (has == threshold).all()
    rows = table.loc[has]
    assert rows["outcome"].str.startswith("rom:").any()  # ROM measures included
    assert (rows["responders"] <= rows["responder_clients"]).all()
    assert np.allclose(rows["responder_share"], rows["responders"] / rows["responder_clients"])
    assert (rows["responders"] % 1 == 0).all() and (rows["responder_clients"] % 1 == 0).all()
    controlled = rows["design"] == "controlled"
    assert rows.loc[controlled, "responder_clients_control"].gt(0).all()
    assert rows.loc[~controlled, ["responders_control", "responder_clients_control"]
                    ].isna().all().all()
    change = rows.loc[controlled & (rows["claim_id"] == "pain")]
    assert (change["responder_clients_control"] == change["n_control_clients"]).all()
    assert (change["responder_clients"] + change["n_control_clients"]
            == change["n_clients"]).all()
    assert table.loc[table["mcid"].isna(), "threshold_source"].eq("").all()


# ------------------------------------------------------------------ failed fits ---

def test_a_failed_fit_keeps_its_design_and_is_inconclusive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise FitFailed("MixedLM failed: LinAlgError: Singular matrix")

    monkeypatch.setattr(claims.contrast, "fit_contrast_units", fail)
    monkeypatch.setattr(claims.change, "fit_change_units", fail)
    data = make_sessions(60, 3, seed=3, control_share=0.5, effects={"pain": -3.0})
    table = evaluate_claims(data, groups=[]).set_index("claim_id")
    assert table.loc["slow_pace", "design"] == "observational"
    assert table.loc["pain", "design"] == "controlled"
    assert (table.loc[["slow_pace", "pain"], "verdict"] == "inconclusive").all()
    assert "could not be fitted" in table.loc["pain", "note"]
