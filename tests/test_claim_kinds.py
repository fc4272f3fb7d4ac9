"""Claims as a package of analysis kinds (issue 12): a new claim on a known kind is one
registry row; the registry drives figures and views; per-client sums have readable names;
a claims row hands back the statsmodels results of its model."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis import claims
from mfr_analysis.claims import (
    KINDS,
    REGISTRY_ENV,
    AnalysisError,
    claim_inputs,
    claim_registry,
    evaluate_claims,
    refit,
)
from mfr_analysis.settings import AnalysisSettings
from tests.test_claims import make_sessions, row

NEW_ROWS = [
    {"claim_id": "foam_roller", "claim": "a foam roller works as well as a practitioner",
     "test": "pain change foam roller vs practitioner", "analysis": "contrast",
     "outcome": "pain", "factor": "technique", "level": "foam_roller",
     "reference_level": "practitioner", "direction": -1, "threshold_kind": "none",
     "threshold_rationale": "no threshold: two kinds of session compared, observational",
     "unit": "points", "hypothesis": "pain falls as much after foam rolling"},
    {"claim_id": "fatigue", "claim": "eases fatigue", "test": "fatigue post vs pre",
     "analysis": "change", "outcome": "fatigue", "direction": -1, "threshold_key": "stress",
     "threshold_kind": "within_person",
     "threshold_rationale": "a change a person feels: 2 points on a 0-10 self-rating",
     "unit": "points", "hypothesis": "fatigue falls after a session"},
]


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped registry plus two rows on known kinds, as a file of its own."""
    table = pd.concat([claim_registry(), pd.DataFrame(NEW_ROWS)], ignore_index=True)
    path = tmp_path_factory.mktemp("registry") / "claims.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def with_fatigue() -> pd.DataFrame:
    """Sessions with a fatigue measure falling by 3 points, and practitioner sessions with
    1 point more pain relief than foam rolling."""
    data = make_sessions(120, 4, seed=21, effects={"pain": -2.0, "practitioner": -1.0})
    rng = np.random.default_rng(21)
    before = rng.normal(6, 1, len(data))
    return data.assign(fatigue_pre=before, fatigue_post=before - 3 + rng.normal(0, 1, len(data)))


@pytest.fixture(scope="module")
def extended_table(with_fatigue: pd.DataFrame, registry_file: Path) -> pd.DataFrame:
    return evaluate_claims(with_fatigue, registry=registry_file, groups=["athlete"])


def test_a_new_claim_row_on_a_known_kind_gets_its_claims_rows(
        extended_table: pd.DataFrame, with_fatigue: pd.DataFrame) -> None:
    table = extended_table
    assert list(dict.fromkeys(table["claim_id"]))[-2:] == ["foam_roller", "fatigue"]
    foam = row(table, "foam_roller")
    delivery = row(table, "delivery")
    # foam rolling minus practitioner is practitioner minus self, the other way round
    assert foam["estimate"] == pytest.approx(-delivery["estimate"], rel=1e-9)
    assert foam["ci_low"] <= 1.0 <= foam["ci_high"]
    assert foam["design"] == "observational" and "technique = foam_roller" in foam["note"]
    fatigue = row(table, "fatigue")
    assert fatigue["estimate"] == pytest.approx(-3.0, abs=0.3)
    assert fatigue["ci_high"] - fatigue["ci_low"] < 0.5
    assert fatigue["mcid"] == 2.0 and fatigue["verdict"] == "supported"
    assert row(table, "fatigue", "athlete")["n_clients"] == 24
    # the shipped claims' fits are untouched by the extra rows (only the correction for
    # multiplicity counts them)
    shipped = evaluate_claims(with_fatigue, groups=["athlete"])
    same = ["claim_id", "audience_group", "outcome", "estimate", "ci_low", "ci_high",
            "p_value", "n_clients", "n_sessions", "method"]
    pd.testing.assert_frame_equal(
        table.loc[table["claim_id"].isin(shipped["claim_id"]), same].reset_index(drop=True),
        shipped[same])


def test_a_new_claim_row_gets_its_forest_panel(extended_table: pd.DataFrame,
                                              registry_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mfr_analysis.report import figures, views

    monkeypatch.setenv(REGISTRY_ENV, str(registry_file))
    assert {"foam_roller", "fatigue"} <= set(views.plotted_claims(extended_table))
    for claim_id, words in (("foam_roller", "technique foam roller minus practitioner"),
                            ("fatigue", "change after a session")):
        fig = figures.forest_plot(extended_table, claim_id)  # not pyplot's: nothing to close
        assert len(fig.axes[0].get_yticklabels()) == 2  # all clients, athletes
        assert words in fig.axes[0].get_xlabel()


def test_the_registry_can_come_from_the_environment(registry_file: Path,
                                                    with_fatigue: pd.DataFrame,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from mfr_analysis.report import views

    monkeypatch.setenv(REGISTRY_ENV, str(registry_file))
    assert list(claim_registry()["claim_id"])[-2:] == ["foam_roller", "fatigue"]
    assert "fatigue" in views.paired_outcomes(with_fatigue)
    settings = AnalysisSettings(mcid_overrides={"fatigue": 4.0})  # a key of that registry
    table = evaluate_claims(with_fatigue, settings=settings, groups=[])
    assert row(table, "fatigue")["mcid"] == 4.0
    assert row(table, "fatigue")["verdict"] == "below_threshold"
    monkeypatch.delenv(REGISTRY_ENV)
    with pytest.raises(ValueError, match="fatigue"):
        AnalysisSettings(mcid_overrides={"fatigue": 4.0})


def test_every_registered_kind_is_a_kind_and_the_registry_only_names_them() -> None:
    assert set(claim_registry()["analysis"]) <= set(KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert isinstance(kind.session_limit, int)
        for part in (kind.extract, kind.fit, kind.outcomes, kind.estimate_words):
            assert callable(part)


def test_per_client_sums_have_readable_names() -> None:
    rule = re.compile(r"(group|client_id|control|exposure|n_sessions|n_[a-z]+_sessions"
                      r"|sum_[a-z]+(_sq|_x_[a-z]+)?|min_[a-z]+|max_[a-z]+)(_with_pre)?")
    inputs = claim_inputs(make_sessions(30, 3, seed=2))
    shapes = {}
    for key, series in inputs.series.items():
        bad = [c for c in series.units.columns if not rule.fullmatch(c)]
        assert not bad, (key, bad)
        shapes[series.shape] = set(series.units.columns)
    assert {"n_sessions_with_pre", "sum_change_with_pre", "sum_pre"} <= shapes["change"]
    assert {"sum_weeks_x_score", "sum_weeks_sq", "max_weeks"} <= shapes["trend"]
    assert "sum_dose" in shapes["dose"]
    assert {"n_level_sessions", "sum_pre_x_change"} <= shapes["contrast"]
    assert {"exposure", "n_event_sessions"} <= shapes["adverse"]


def test_evaluate_claims_takes_one_settings_object() -> None:
    data = make_sessions(40, 3, seed=4, effects={"pain": -2.5})
    settings = AnalysisSettings(alpha=0.01, correction="fdr_bh", min_clients=5,
                                mcid_overrides={"pain": 1.5})
    with_settings = evaluate_claims(data, settings=settings, groups=[])
    with_words = evaluate_claims(data, alpha=0.01, correction="fdr_bh", min_clients=5,
                                 mcid_overrides={"pain": 1.5}, groups=[])
    pd.testing.assert_frame_equal(with_settings, with_words)
    # a keyword replaces that field of the settings
    stricter = evaluate_claims(data, settings=settings, mcid_overrides={"pain": 9.0}, groups=[])
    assert row(stricter, "pain")["mcid"] == 9.0
    with pytest.raises(AnalysisError, match="alpha"):
        evaluate_claims(data, settings=settings, alpha=0.7)


# ------------------------------------------------------------------------------ refit ---

@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return make_sessions(150, 4, seed=8, control_share=0.3,
                         effects={"pain": -3.0, "placebo": -1.0, "slow": -1.0,
                                  "pressure_logodds": 0.5})


def test_refit_hands_back_the_mixed_model_of_a_row(planted: pd.DataFrame) -> None:
    table = evaluate_claims(planted, groups=["senior"])
    for group in ("all", "senior"):
        found = row(table, "pain", group)
        results = refit(planted, "pain", group)
        assert "MixedLM" in found["method"] and type(results).__name__.startswith("MixedLM")
        term = "mfr_vs_control" if found["design"] == "controlled" else "intercept"
        assert results.fe_params[term] == pytest.approx(found["estimate"], rel=1e-4)
        assert results.bse_fe[term] == pytest.approx(found["se"], rel=1e-3)
        assert term in str(results.summary())
    assert row(table, "pain")["design"] == "controlled"
    with pytest.raises(AnalysisError, match="several outcomes"):
        refit(planted, "rom")
    rom = refit(planted, "rom", outcome="rom:knee_flexion_deg")
    assert row(table, "rom", outcome="rom:knee_flexion_deg")["estimate"] == pytest.approx(
        rom.params.iloc[1], rel=1e-4)


@pytest.mark.parametrize(("claim_id", "outcome"), [
    ("pain", None), ("slow_pace", None), ("pressure_safety", None),
    ("lasting_relief", "pain_pre"), ("consistency", None)])
def test_refit_of_cells_fitted_from_client_sums(planted: pd.DataFrame, claim_id: str,
                                                outcome: str | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Large cells: client-level OLS is handed back as it ran; a contrast from per-client
    sums and adverse events from counts are refitted on their sessions, same numbers."""
    for name in ("change", "trajectory", "contrast", "adverse"):
        monkeypatch.setitem(KINDS, name, dataclasses.replace(KINDS[name], session_limit=50))
    table = evaluate_claims(planted, groups=[])
    found = row(table, claim_id, outcome=outcome)
    results = refit(planted, claim_id, outcome=outcome)
    controlled = found["design"] == "controlled"
    term = {"pain": "mfr_vs_control" if controlled else "intercept", "slow_pace": "level",
            "pressure_safety": "pressure", "consistency": "sessions_per_week",
            "lasting_relief": "mfr_x_weeks" if controlled else "weeks"}[claim_id]
    estimate = float(results.params[term])
    if claim_id == "pressure_safety":
        assert "counts" in found["method"] and type(results).__name__.startswith("Binary")
        estimate = math.exp(estimate)
    if claim_id == "slow_pace":
        assert "per-client sums" in found["method"]
        assert results.cov_type == "cluster"
    assert estimate == pytest.approx(found["estimate"], rel=1e-6)
    assert str(results.summary())


def test_refit_refuses_rows_without_a_model(planted: pd.DataFrame) -> None:
    with pytest.raises(AnalysisError, match="unknown claim 'pian'"):
        refit(planted, "pian")
    with pytest.raises(AnalysisError, match="no model was fitted"):
        refit(planted, "circulation")
    with pytest.raises(AnalysisError, match="audience group 'athletes'"):
        refit(planted, "pain", "athletes")
    with pytest.raises(AnalysisError, match="no model was fitted.*insufficient_data"):
        refit(planted.loc[planted["client_id"].isin(planted["client_id"].unique()[:5])],
              "pain")


# ---------------------------------------------------------------------- views ---

def test_design_caveat_follows_min_clients() -> None:
    from mfr_analysis.report import views

    data = make_sessions(60, 2, seed=3, control_share=0.12)
    control = data.loc[data["arm"] == "control", "client_id"].nunique()
    assert 2 <= control < 10
    assert views.design_caveat(data) is not None  # the default minimum is 10
    assert views.design_caveat(data, AnalysisSettings(min_clients=control)) is None


def test_plotted_claims_drop_no_claim_with_an_estimate() -> None:
    from mfr_analysis.report import views

    data = make_sessions(60, 3, seed=7)
    rng = np.random.default_rng(7)
    data = data.assign(circulation_pre=rng.normal(50, 5, len(data)))
    data = data.assign(circulation_post=data["circulation_pre"] + 10)
    table = evaluate_claims(data, groups=[])
    plotted = views.plotted_claims(table)
    assert "circulation" in plotted
    assert plotted == [c for c in claim_registry()["claim_id"]
                       if table.loc[table["claim_id"] == c, "estimate"].notna().any()]


def test_claims_package_keeps_the_shared_names() -> None:
    for name in ("evaluate_claims", "claim_inputs", "evaluate_inputs", "claim_registry",
                 "decide_verdict", "CLAIMS_COLUMNS", "EXTRA_COLUMNS", "VERDICTS",
                 "combine_inputs", "extract_inputs", "refit"):
        assert hasattr(claims, name), name


@pytest.mark.parametrize("keys", [("group", "client_id", "control"), ("group", "client_id"),
                                  ("group", "client_id", "exposure")])
def test_per_unit_sums_equal_pandas_grouping_by_the_keys(keys: tuple[str, ...]) -> None:
    """The one-integer unit codes give pandas' own multi-key group-by: the same units, in the
    same order (categories by their codes, unobserved ones left out), the same dtypes and
    the same sums bit for bit."""
    from mfr_analysis.claims.inputs import aggregate

    rng = np.random.default_rng(3)
    n = 5_000
    clients = pd.Index([f"c{i:04d}" for i in range(900)], dtype="str")
    frame = pd.DataFrame({
        "group": pd.Categorical.from_codes(rng.integers(0, 3, n), dtype=pd.CategoricalDtype(
            pd.Index(["senior", "athlete", "rehab", "unused"], dtype="str"))),
        "client_id": pd.Categorical.from_codes(rng.integers(0, 800, n),
                                               dtype=pd.CategoricalDtype(clients)),
        "control": rng.random(n) < 0.4,
        "exposure": rng.integers(1, 6, n).astype(float),
        "y": rng.normal(size=n)})
    spec = {"n_sessions": ("y", "size"), "sum_y": ("y", "sum"), "min_y": ("y", "min"),
            "max_y": ("y", "max")}
    work = frame[[*keys, "y"]]
    expected = work.groupby(list(keys), sort=True, observed=True).agg(**spec).reset_index()
    got = aggregate(work, keys, spec)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(got) > 1_000
