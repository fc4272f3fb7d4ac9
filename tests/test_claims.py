"""The claims engine against known truth: planted effects, coverage, bad inputs, determinism."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfr_analysis import claims
from mfr_analysis.claims import (
    CLAIMS_COLUMNS,
    VERDICTS,
    AnalysisError,
    claim_registry,
    evaluate_claims,
)
from mfr_analysis.errors import AnalysisError as SharedAnalysisError
from mfr_analysis.settings import AnalysisSettings

GROUPS = ("athlete", "senior", "desk_worker", "rehab", "chronic_pain")
MEASURES = ("knee_flexion_deg", "hip_flexion_deg", "sit_and_reach_cm")
NO_EFFECTS: dict[str, float] = {
    "pain": 0.0, "tightness": 0.0, "stress": 0.0, "rom": 0.0, "trend": 0.0, "followup": 0.0,
    "slow": 0.0, "breathing": 0.0, "practitioner": 0.0, "pressure_logodds": 0.0,
    "consistency": 0.0, "placebo": 0.0,
}


def make_sessions(n_clients: int = 150, sessions: int = 5, *, seed: int = 0,
                  effects: Mapping[str, float] | None = None,
                  group_effects: Mapping[str, Mapping[str, float]] | None = None,
                  groups: Sequence[str] = GROUPS, control_share: float = 0.0,
                  noise: float = 1.0, client_sd: float = 0.8) -> pd.DataFrame:
    """A derived session table whose true mean changes are ``effects`` (points, degrees...)."""
    rng = np.random.default_rng(seed)
    eff = {**NO_EFFECTS, **(effects or {})}
    n = n_clients * sessions
    client = np.repeat(np.arange(n_clients), sessions)
    index = np.tile(np.arange(1, sessions + 1), n_clients)
    group = np.array(groups, dtype=object)[np.arange(n_clients) % len(groups)][client]
    control = (rng.random(n_clients) < control_share)[client]
    spw = rng.uniform(1, 4, n_clients)[client]
    weeks = (index - 1) / spw

    def planted(name: str) -> np.ndarray:
        value = np.full(n, eff[name], dtype=float)
        for g, values in (group_effects or {}).items():
            if name in values:
                value[group == g] = values[name]
        placebo = eff["placebo"] if name in ("pain", "tightness", "stress") else 0.0
        return np.where(control, placebo, value)

    def client_noise() -> np.ndarray:
        return rng.normal(0, client_sd, n_clients)[client]

    slow, breathing = rng.random(n) < 0.5, rng.random(n) < 0.5
    practitioner = rng.random(n) < 0.4
    trend = planted("trend") + np.where(control, 0.0, eff["consistency"] * (spw - 2.5))
    pain_pre = 6 + client_noise() + trend * weeks + rng.normal(0, noise, n)
    pain_change = (planted("pain") + client_noise() + rng.normal(0, noise, n)
                   + np.where(control, 0.0,
                              eff["slow"] * slow + eff["practitioner"] * practitioner))
    tight_pre = 6 + client_noise() + rng.normal(0, noise, n)
    tight_change = planted("tightness") + client_noise() + rng.normal(0, noise, n)
    stress_pre = 5 + client_noise() + rng.normal(0, noise, n)
    stress_change = (planted("stress") + client_noise() + rng.normal(0, noise, n)
                     + np.where(control, 0.0, eff["breathing"] * breathing))
    measure = np.array(MEASURES, dtype=object)[np.arange(n_clients) % len(MEASURES)][client]
    rom_pre = 100 + rng.normal(0, 10, n_clients)[client] + rng.normal(0, 3, n)
    rom_change = planted("rom") + rng.normal(0, 2, n_clients)[client] + rng.normal(0, 3, n)
    pressure = rng.uniform(1, 9, n)
    adverse = rng.random(n) < 1 / (1 + np.exp(3 - eff["pressure_logodds"] * (pressure - 5)))
    followup = pain_pre + planted("followup") + rng.normal(0, noise, n)
    return pd.DataFrame({
        "session_id": [f"s{i:07d}" for i in range(n)],
        "client_id": [f"c_{c:016x}" for c in client],
        "audience_group": pd.Categorical(group, categories=list(GROUPS)),
        "arm": pd.Categorical(np.where(control, "control", "mfr"), ["mfr", "control"]),
        "technique": np.where(practitioner, "practitioner", "foam_roller"),
        "delivery": pd.Categorical(np.where(practitioner, "practitioner", "self")),
        "pressure": pressure,
        "pace": pd.Categorical(np.where(slow, "slow", "fast"), ["slow", "fast"]),
        "deep_breathing": pd.array(breathing, dtype="boolean"),
        "pain_pre": pain_pre, "pain_post": pain_pre + pain_change,
        "pain_followup": followup, "followup_hours": 24.0,
        "rom_measure": measure, "rom_pre": rom_pre, "rom_post": rom_pre + rom_change,
        "tightness_pre": tight_pre, "tightness_post": tight_pre + tight_change,
        "stress_pre": stress_pre, "stress_post": stress_pre + stress_change,
        "adverse_event": np.where(adverse, "bruising", "none"),
        "session_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(index * 3, unit="D"),
        "pain_change": pain_change, "rom_change": rom_change,
        "tightness_change": tight_change, "stress_change": stress_change,
        "session_index": pd.array(index, dtype="Int64"), "weeks_since_start": weeks,
        "sessions_per_week": spw,
    })


def row(table: pd.DataFrame, claim_id: str, group: str = "all",
        outcome: str | None = None) -> pd.Series:
    """The single row of one claim, group (and outcome)."""
    pick = (table["claim_id"] == claim_id) & (table["audience_group"] == group)
    if outcome is not None:
        pick &= table["outcome"] == outcome
    found = table.loc[pick]
    assert len(found) == 1, f"{claim_id}/{group}/{outcome}: {len(found)} rows"
    return found.iloc[0]


PLANTED = {"pain": -3.5, "tightness": -0.8, "stress": -0.5, "rom": 7.0, "slow": -1.2,
           "breathing": 1.0, "practitioner": 0.0, "pressure_logodds": 0.5, "followup": -3.0}


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    """A 150-client table with known effects (MixedLM path: every cell is small)."""
    return make_sessions(150, 5, seed=1, effects=PLANTED)


@pytest.fixture(scope="module")
def planted_table(planted: pd.DataFrame) -> pd.DataFrame:
    from mfr_analysis.claims import primary_rows

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may leave the engine
        table = evaluate_claims(planted)
    assert (table["sensitivity"] != "").sum() == 4 * 6  # 4 approaches x (all + 5 groups)
    return primary_rows(table)  # the sensitivity rows: tests/test_missing_followup.py


# ---------------------------------------------------------------------- contract ---

def test_registry_is_the_design_contract() -> None:
    registry = claim_registry()
    assert list(registry["claim_id"]) == [
        "tightness", "circulation", "pain", "stress", "rom", "lasting_relief", "slow_pace",
        "breathing", "consistency", "pressure_safety", "delivery"]
    assert set(registry["direction"]) <= {-1, 1}
    assert VERDICTS == ("supported", "below_threshold", "no_meaningful_effect", "contradicted",
                        "association_shown", "no_association_shown",
                        "inconclusive", "not_measured", "insufficient_data")
    assert issubclass(AnalysisError, ValueError) and AnalysisError is SharedAnalysisError


def test_table_columns_and_rows(planted_table: pd.DataFrame) -> None:
    table = planted_table
    assert tuple(table.columns[:14]) == CLAIMS_COLUMNS
    assert set(table["verdict"]) <= set(VERDICTS)
    keys = table[["claim_id", "audience_group", "outcome"]]
    assert not keys.duplicated().any()
    assert set(table["audience_group"]) == {"all", *GROUPS}
    assert set(table["claim_id"]) == set(claim_registry()["claim_id"])
    rom = table.loc[table["claim_id"] == "rom", "outcome"].unique()
    assert sorted(rom) == sorted(f"rom:{m}" for m in MEASURES)
    assert table["n_clients"].dtype == "int64" and table["estimate"].dtype == "float64"
    fitted = table["p_value"].notna()
    assert (table.loc[fitted, "p_adjusted"] >= table.loc[fitted, "p_value"] - 1e-15).all()
    assert table.loc[~fitted, "p_adjusted"].isna().all()
    assert (table["method"].str.len() > 0).sum() >= fitted.sum()


# ------------------------------------------------------------------ planted truth ---

@pytest.mark.parametrize(("claim_id", "outcome", "verdict"), [
    ("pain", None, "supported"),
    ("tightness", None, "below_threshold"),
    ("stress", None, "no_meaningful_effect"),
    ("rom", "rom:knee_flexion_deg", "supported"),
    ("rom", "rom:sit_and_reach_cm", "supported"),
    ("slow_pace", None, "association_shown"),
    ("breathing", None, "contradicted"),
    ("pressure_safety", None, "association_shown"),
    ("delivery", None, "no_association_shown"),
    ("lasting_relief", "pain_followup", "supported"),
    ("circulation", None, "not_measured"),
])
def test_planted_effects_get_the_right_verdict(planted_table: pd.DataFrame, claim_id: str,
                                               outcome: str | None, verdict: str) -> None:
    assert row(planted_table, claim_id, outcome=outcome)["verdict"] == verdict


def test_estimates_cover_the_planted_values(planted_table: pd.DataFrame) -> None:
    pain = PLANTED["pain"] + 0.5 * PLANTED["slow"]  # half of the sessions are slow
    stress = PLANTED["stress"] + 0.5 * PLANTED["breathing"]
    truth = {("pain", None): pain, ("tightness", None): -0.8, ("stress", None): stress,
             ("rom", "rom:hip_flexion_deg"): 7.0, ("slow_pace", None): -1.2,
             ("breathing", None): 1.0, ("lasting_relief", "pain_followup"): -3.0,
             ("pressure_safety", None): math.exp(0.5)}
    for (claim_id, outcome), value in truth.items():
        r = row(planted_table, claim_id, outcome=outcome)
        assert r["ci_low"] <= value <= r["ci_high"], (claim_id, r["ci_low"], r["ci_high"])


def test_group_rows_and_extras(planted_table: pd.DataFrame) -> None:
    pain = planted_table.loc[planted_table["claim_id"] == "pain"].set_index("audience_group")
    assert (pain["verdict"] == "supported").all()
    assert pain.loc["all", "n_clients"] == 150 and pain.loc["athlete", "n_clients"] == 30
    assert pain.loc["all", "n_sessions"] == 750
    assert 0.8 <= pain.loc["all", "responder_share"] <= 1.0
    assert pain.loc["all", "mde"] < 1.0 and pain.loc["all", "clients_needed"] >= 3
    assert math.isfinite(pain.loc["all", "heterogeneity_p"])
    assert pain.loc["athlete", "heterogeneity_p"] != pain.loc["athlete", "heterogeneity_p"]
    assert "uncontrolled" in pain.loc["all", "note"]
    assert pain.loc["chronic_pain", "literature_smd"] == pytest.approx(-0.37)
    assert "Wu et al. 2021" in pain.loc["chronic_pain", "literature_reference"]
    assert pain.loc["chronic_pain", "literature_effect"] < 0
    odds = row(planted_table, "pressure_safety")
    assert odds["estimate"] > 1 and odds["unit"].startswith("odds ratio")
    assert row(planted_table, "rom", outcome="rom:sit_and_reach_cm")["mcid"] == 3.0
    assert row(planted_table, "rom", outcome="rom:knee_flexion_deg")["mcid"] == 5.0


def test_contradicted_change_and_inconclusive_few_clients() -> None:
    worse = make_sessions(40, 4, seed=2, effects={"rom": -7.0, "pain": -0.4})
    table = evaluate_claims(worse, groups=[])
    assert row(table, "rom", outcome="rom:knee_flexion_deg")["verdict"] == "contradicted"
    assert row(table, "pain")["verdict"] == "no_meaningful_effect"  # CI well inside +-2
    noisy = make_sessions(12, 3, seed=2, effects={"pain": -1.0}, noise=3.0, client_sd=2.0)
    pain = row(evaluate_claims(noisy, groups=[]), "pain")
    assert pain["verdict"] == "inconclusive"
    assert pain["ci_low"] < -2.0 < 0.0 < pain["ci_high"]


def test_too_few_clients_is_insufficient_data() -> None:
    table = evaluate_claims(make_sessions(8, 5, seed=3, effects=PLANTED), groups=[])
    measured = table.loc[table["verdict"] != "not_measured"]
    assert (measured["verdict"] == "insufficient_data").all()
    assert measured["p_value"].isna().all() and (measured["n_clients"] <= 8).all()


def test_controlled_design_uses_ancova_against_control() -> None:
    data = make_sessions(200, 3, seed=4, control_share=0.5,
                         effects={"pain": -2.5, "placebo": -2.0})
    table = evaluate_claims(data, groups=[])
    pain = row(table, "pain")
    assert pain["design"] == "controlled"
    assert pain["ci_low"] <= -0.5 <= pain["ci_high"]
    assert pain["verdict"] in ("below_threshold", "inconclusive")
    assert "ANCOVA" in pain["method"] and "compared with control clients" in pain["note"]
    control = int((data.groupby("client_id")["arm"].first() == "control").sum())
    assert pain["n_control_clients"] == control and f"({control} control clients)" in pain["note"]
    assert pain["responder_clients"] + pain["responder_clients_control"] == pain["n_clients"]
    assert pain["responder_clients_control"] == control


def test_heterogeneity_detects_a_group_specific_effect() -> None:
    data = make_sessions(200, 4, seed=5, effects={"pain": -1.0},
                         group_effects={"athlete": {"pain": -4.0}})
    table = evaluate_claims(data)
    assert row(table, "pain")["heterogeneity_p"] < 1e-6
    assert row(table, "pain", "athlete")["verdict"] == "supported"
    assert row(table, "pain", "senior")["verdict"] == "below_threshold"
    same = evaluate_claims(make_sessions(150, 4, seed=6, effects={"pain": -3.0}))
    assert row(same, "pain")["heterogeneity_p"] > 0.01
    assert "prefer the pooled row" in row(same, "pain", "rehab")["note"]


def lower_limits(monkeypatch: pytest.MonkeyPatch, limit: int, *names: str) -> None:
    """Lower the session limit of the named analysis kinds (all but dose by default)."""
    for name in names or ("change", "change_per_measure", "trajectory", "contrast", "adverse"):
        monkeypatch.setitem(claims.KINDS, name,
                            dataclasses.replace(claims.KINDS[name], session_limit=limit))


def test_client_level_path_for_large_cells(monkeypatch: pytest.MonkeyPatch,
                                           planted: pd.DataFrame) -> None:
    lower_limits(monkeypatch, 100, "change", "change_per_measure", "trajectory", "adverse")
    table = evaluate_claims(planted, groups=["athlete"])
    pain = row(table, "pain")
    assert pain["method"].startswith("client-level")
    assert pain["ci_low"] <= -4.1 <= pain["ci_high"] and pain["verdict"] == "supported"
    assert row(table, "lasting_relief", outcome="pain_pre")["method"].startswith(
        "two-stage")
    assert "logistic regression" in row(table, "pressure_safety")["method"]


def test_options_change_the_verdicts(planted: pd.DataFrame) -> None:
    strict = evaluate_claims(planted, groups=[], mcid_overrides={"pain": 5.0, "rom": 10.0})
    assert row(strict, "pain")["verdict"] == "below_threshold"
    assert row(strict, "pain")["mcid"] == 5.0
    assert row(strict, "rom", outcome="rom:knee_flexion_deg")["verdict"] == "below_threshold"
    bh = evaluate_claims(planted, groups=[], correction="fdr_bh")
    holm = evaluate_claims(planted, groups=[])
    assert (bh["p_adjusted"].fillna(0) <= holm["p_adjusted"].fillna(0) + 1e-12).all()
    only = evaluate_claims(planted, groups=["senior"])
    assert set(only["audience_group"]) == {"all", "senior"}


def test_circulation_is_analysed_when_measured() -> None:
    data = make_sessions(60, 3, seed=7)
    rng = np.random.default_rng(7)
    data = data.assign(circulation_pre=rng.normal(50, 5, len(data)))
    data = data.assign(circulation_post=data["circulation_pre"] + 10 + rng.normal(0, 5, len(data)))
    circulation = row(evaluate_claims(data, groups=[]), "circulation", outcome="circulation")
    # no threshold is stated for a blood-flow measure: a rise is shown, its size not judged
    assert circulation["verdict"] == "association_shown" and circulation["estimate"] > 5
    assert math.isnan(circulation["mcid"]) and circulation["threshold_source"] == ""


# ---------------------------------------------------------------------- coverage ---

def test_client_level_ci_coverage(monkeypatch: pytest.MonkeyPatch) -> None:
    """95% CIs of the client-level path cover the truth 92-98% of the time (1000 fits)."""
    from mfr_analysis.claims import change

    monkeypatch.setattr(change, "power_fields", lambda *a, **k: {})
    setting = AnalysisSettings()
    rng = np.random.default_rng(20240601)
    truth, covered = -1.3, 0
    replicates = 1000
    for _ in range(replicates):
        per_client = rng.integers(1, 8, 40)
        clients = np.repeat(np.arange(40), per_client)
        y = truth + rng.normal(0, 1.0, 40)[clients] + rng.normal(0, 1.5, clients.size)
        fit = change.fit_change_cell(y, np.full(y.size, 5.0), clients,
                                     np.zeros(y.size, dtype=bool), mcid=2.0, direction=-1,
                                     relative=math.nan, settings=setting, limit=0)
        assert fit.method.startswith("client-level")
        covered += fit.ci_low <= truth <= fit.ci_high
    assert 0.92 <= covered / replicates <= 0.98


# -------------------------------------------------------------------- bad inputs ---

def test_bad_inputs_raise_one_line_analysis_errors() -> None:
    good = make_sessions(12, 2, seed=8)
    cases = [
        lambda: evaluate_claims(good.iloc[0:0]),
        lambda: evaluate_claims(good.drop(columns="client_id")),
        lambda: evaluate_claims("sessions.csv"),  # type: ignore[arg-type]
        lambda: evaluate_claims(good, alpha=1.5),
        lambda: evaluate_claims(good, correction="bonferroni"),  # type: ignore[arg-type]
        lambda: evaluate_claims(good, min_clients=1),
        lambda: evaluate_claims(good, mcid_overrides={"pian": 2.0}),
        lambda: evaluate_claims(good, mcid_overrides={"pain": -1.0}),
        lambda: evaluate_claims(good, groups=["athletes"]),
    ]
    for case in cases:
        with pytest.raises(AnalysisError) as error:
            case()
        assert "\n" not in str(error.value) and str(error.value)


def test_single_client_and_one_client_group() -> None:
    one = make_sessions(1, 6, seed=9)
    table = evaluate_claims(one)
    assert set(table["verdict"]) <= {"insufficient_data", "not_measured"}
    data = make_sessions(41, 3, seed=10, effects={"pain": -3.0},
                         groups=("athlete", "senior", "rehab", "desk_worker"))
    lonely = make_sessions(1, 3, seed=11, groups=("chronic_pain",)).assign(
        client_id="c_ffffffffffffffff")
    table = evaluate_claims(pd.concat([data, lonely], ignore_index=True))
    assert row(table, "pain", "chronic_pain")["verdict"] == "insufficient_data"
    assert row(table, "pain", "chronic_pain")["n_clients"] == 1
    assert row(table, "pain")["verdict"] == "supported"


def test_all_pain_equal_is_inconclusive_with_a_reason() -> None:
    data = make_sessions(30, 3, seed=12)
    data = data.assign(pain_pre=5.0, pain_post=5.0, pain_change=0.0, pain_followup=5.0)
    table = evaluate_claims(data, groups=[])
    pain = row(table, "pain")
    assert pain["verdict"] == "inconclusive" and "no variation" in pain["note"]
    assert row(table, "slow_pace")["verdict"] == "inconclusive"
    assert row(table, "lasting_relief", outcome="pain_pre")["verdict"] == "inconclusive"


def test_missing_or_empty_outcomes_are_not_measured() -> None:
    data = make_sessions(30, 3, seed=13, effects={"pain": -3.0})
    data = data.drop(columns=["stress_pre", "stress_post", "stress_change"]).assign(
        tightness_pre=np.nan, tightness_post=np.nan, tightness_change=np.nan,
        adverse_event=pd.NA)
    table = evaluate_claims(data, groups=[])
    for claim_id in ("stress", "tightness", "pressure_safety", "circulation"):
        assert row(table, claim_id)["verdict"] == "not_measured", claim_id
    assert row(table, "pain")["verdict"] == "supported"
    minimal = data[["client_id", "pain_pre", "pain_post"]]
    table = evaluate_claims(minimal)
    assert row(table, "pain")["verdict"] == "supported"
    assert set(table["audience_group"]) == {"all"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_clients=st.integers(1, 14), sessions=st.integers(1, 4),
       missing=st.floats(0.0, 0.9), seed=st.integers(0, 2**16), min_clients=st.integers(2, 5))
def test_random_small_tables_never_crash(n_clients: int, sessions: int, missing: float,
                                         seed: int, min_clients: int) -> None:
    data = make_sessions(n_clients, sessions, seed=seed, effects={"pain": -1.0})
    rng = np.random.default_rng(seed)
    for column in ("pain_pre", "pain_post", "pain_change", "rom_post", "rom_change",
                   "pressure", "weeks_since_start", "tightness_post", "tightness_change"):
        data[column] = data[column].mask(rng.random(len(data)) < missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = evaluate_claims(data, min_clients=min_clients)
    assert set(table["verdict"]) <= set(VERDICTS)
    assert tuple(table.columns[:14]) == CLAIMS_COLUMNS


# ------------------------------------------------------------------ determinism ---

def test_same_input_same_table_and_input_untouched(planted: pd.DataFrame) -> None:
    before = planted.copy(deep=True)
    first = evaluate_claims(planted, groups=["rehab"])
    second = evaluate_claims(planted, groups=["rehab"])
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(planted, before)


# ------------------------------------------------------------- simulator truth ---

def test_confidence_intervals_cover_the_simulators_truth() -> None:
    """End to end on the simulator's clean world: most 95% CIs cover the planted values."""
    from mfr_analysis import derive, simulate

    sessions, truth = simulate.simulate_sessions(1500, 11)
    for step in (derive.add_changes, derive.add_session_index, derive.add_weeks_since_start,
                 derive.add_sessions_per_week):
        sessions = step(sessions)
    table = evaluate_claims(sessions)
    truth = truth.assign(outcome=np.where(truth["claim_id"] == "rom",
                                          "rom:" + truth["rom_measure"].fillna(""),
                                          truth["outcome"]))
    merged = table.merge(truth[["claim_id", "audience_group", "outcome", "planted_change",
                                "planted_effect"]],
                         on=["claim_id", "audience_group", "outcome"], how="inner")
    value = np.where(merged["design"] == "controlled", merged["planted_effect"],
                     merged["planted_change"])
    value = np.where(merged["claim_id"] == "pressure_safety", np.exp(value), value)
    checked = merged["estimate"].notna() & np.isfinite(value)
    covered = (merged["ci_low"] <= value) & (value <= merged["ci_high"])
    assert checked.sum() >= 60
    assert covered[checked].mean() >= 0.85


CHANGE_DIRECTION = {"pain": -1, "tightness": -1, "stress": -1, "rom": 1}


def as_derived(simulated: pd.DataFrame) -> pd.DataFrame:
    """The simulator's clean world as a validated derived table (ids in the clean shape)."""
    from mfr_analysis import derive

    codes = pd.factorize(simulated["client_id"])[0]
    return derive.derive(simulated.assign(
        session_id=[f"s_{i:016x}" for i in range(len(simulated))],
        client_id=[f"c_{code:016x}" for code in codes],
        source_file="sim.csv", source_line=np.arange(2, len(simulated) + 2)))


@pytest.fixture(scope="module")
def simulated_verdicts() -> pd.DataFrame:
    """Claims tables of two seeds of 2,000 simulated clients, joined to the planted truth."""
    from mfr_analysis import simulate

    tables = []
    for seed in (3, 4):
        sessions, truth = simulate.simulate_sessions(2000, seed)
        sessions = as_derived(sessions)
        table = evaluate_claims(sessions)
        truth = truth.assign(outcome=np.where(truth["claim_id"] == "rom",
                                              "rom:" + truth["rom_measure"].fillna(""),
                                              truth["outcome"]))
        tables.append(table.merge(truth[["claim_id", "audience_group", "outcome",
                                         "planted_change", "planted_effect"]],
                                  on=["claim_id", "audience_group", "outcome"]).assign(seed=seed))
    merged = pd.concat(tables, ignore_index=True)
    merged = merged.loc[merged["claim_id"].isin(list(CHANGE_DIRECTION))
                        & (merged["audience_group"] != "all") & (merged["n_clients"] >= 40)]
    effect = np.where(merged["design"] == "controlled", merged["planted_effect"],
                      merged["planted_change"])
    return merged.assign(benefit=effect * merged["claim_id"].map(CHANGE_DIRECTION))


def test_strong_planted_effects_are_supported(simulated_verdicts: pd.DataFrame) -> None:
    strong = simulated_verdicts.loc[simulated_verdicts["benefit"]
                                    >= 1.3 * simulated_verdicts["mcid"]]
    assert len(strong) >= 4
    assert (strong["verdict"] == "supported").all(), strong[["claim_id", "outcome", "verdict"]]


def test_absent_effects_show_no_meaningful_effect(simulated_verdicts: pd.DataFrame) -> None:
    absent = simulated_verdicts.loc[simulated_verdicts["benefit"] == 0]
    assert len(absent) >= 10
    assert (absent["verdict"] == "no_meaningful_effect").all()


def test_small_real_effects_are_below_threshold(simulated_verdicts: pd.DataFrame) -> None:
    small = simulated_verdicts.loc[(simulated_verdicts["benefit"] > 0)
                                   & (simulated_verdicts["benefit"]
                                      <= 0.6 * simulated_verdicts["mcid"])]
    assert len(small) >= 6
    assert small["verdict"].isin(["below_threshold", "no_meaningful_effect",
                                  "inconclusive"]).all()
    assert (small["verdict"] == "below_threshold").mean() >= 0.6
    assert not small["verdict"].isin(["supported", "contradicted"]).any()


def test_few_clients_never_give_a_verdict_of_effect() -> None:
    from mfr_analysis import simulate

    sessions, _ = simulate.simulate_sessions(40, 5)
    sessions = as_derived(sessions)
    table = evaluate_claims(sessions)
    groups = table.loc[table["audience_group"] != "all"]
    assert set(groups["verdict"]) <= {"insufficient_data", "not_measured"}


# ------------------------------------------------- reduced inputs (claims at scale) ---

def test_inputs_of_client_partitions_combine_into_the_whole_table() -> None:
    """Per-client sums of three partitions of whole clients give the in-memory table,
    with large cells on client sums and small ones on sessions (limits lowered)."""
    from mfr_analysis.claims import combine_inputs

    data = make_sessions(240, 5, seed=11, control_share=0.3,
                         effects={"pain": -1.5, "rom": 4.0, "slow": -0.5,
                                  "pressure_logodds": 0.4})
    with pytest.MonkeyPatch.context() as patch:
        lower_limits(patch, 400)
        whole = claims.primary_rows(claims.evaluate_claims(data))
        part = pd.factorize(data["client_id"])[0] % 3
        pieces = [claims.claim_inputs(data[part == k]) for k in range(3)]
        combined = claims.evaluate_inputs(combine_inputs(pieces[::-1]))
    pd.testing.assert_frame_equal(combined, whole, rtol=1e-9)
    methods = " ".join(whole["method"])
    assert "per-client means" in methods and "MixedLM" in methods
    assert "from per-client sums" in methods and "from per-client counts" in methods


def test_client_sum_routes_equal_the_session_fits_of_statsmodels() -> None:
    """Cluster-robust OLS from per-client cross-products and logistic regression on counts
    reproduce statsmodels on the sessions (estimates, SEs, p-values)."""
    from mfr_analysis.models import fit_logit, fit_logit_counts, fit_ols, fit_ols_cluster_sums

    rng = np.random.default_rng(5)
    clients = np.repeat(np.arange(120), rng.integers(1, 9, 120))
    n = clients.size
    level = rng.integers(0, 2, n).astype(float)
    pre = rng.normal(5, 2, n)
    y = -0.5 * level + 0.3 * pre + rng.normal(0, 1, 120)[clients] + rng.normal(0, 1, n)
    X = np.column_stack([np.ones(n), level, pre - pre.mean()])
    xtx, xty = np.zeros((120, 3, 3)), np.zeros((120, 3))
    np.add.at(xtx, clients, X[:, :, None] * X[:, None, :])
    np.add.at(xty, clients, X * y[:, None])
    names = ["intercept", "level", "pre"]
    on_sessions = fit_ols(y, X, names=names, clients=clients, cov_type="cluster")
    from_sums = fit_ols_cluster_sums(xtx, xty, n, names=names)
    pd.testing.assert_frame_equal(from_sums.coefficients, on_sessions.coefficients, rtol=1e-9)
    assert from_sums.df == on_sessions.df == 119

    pressure = rng.integers(1, 11, n).astype(float)
    events = (rng.random(n) < 1 / (1 + np.exp(3 - 0.3 * pressure))).astype(float)
    table = pd.DataFrame({"c": clients, "p": pressure, "e": events}).groupby(
        ["c", "p"]).agg(trials=("e", "size"), events=("e", "sum")).reset_index()
    on_sessions = fit_logit(events, np.column_stack([np.ones(n), pressure]), clients,
                            names=["intercept", "pressure"])
    from_counts = fit_logit_counts(
        table["events"].to_numpy(float), table["trials"].to_numpy(float),
        np.column_stack([np.ones(len(table)), table["p"].to_numpy(float)]),
        table["c"].to_numpy(), names=["intercept", "pressure"])
    pd.testing.assert_frame_equal(from_counts.coefficients, on_sessions.coefficients,
                                  rtol=1e-6)
    assert from_counts.n_obs == n
