"""Benchmarking of sites and clinicians (issue 14 points 2-5): the funnel limits and
overdispersion against a hand-computed example, the risk model against statsmodels, planted
better / worse / case-mix units on small simulated networks, and the false-flag rate of
average units over repeated seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from mfr_analysis.benchmarking import benchmark, benchmark_units, fit_risk, risk_model
from mfr_analysis.benchmarking.funnel import (
    estimate_dispersion,
    flags,
    half_width,
    limit_grid,
    z_for,
)
from mfr_analysis.benchmarking.risk import nested_variance_components
from mfr_analysis.benchmarking.units import UNIT_COLUMNS
from mfr_analysis.settings import AnalysisSettings

AGE_BANDS = ("<30", "30-44", "45-59", "60-74", "75+")
DURATIONS = ("acute", "subacute", "chronic")


def network(seed: int, *, sites: int = 10, clinicians_per_site: int = 4,
            clients_per_clinician: int = 30, site_sd: float = 0.0, clinician_sd: float = 0.0,
            clinician_effects: dict[str, float] | None = None, casemix_site: str | None = None,
            small_clinicians: int = 0, sessions_per_client: int = 3) -> pd.DataFrame:
    """A small session table with planted unit effects and case mix (this test's own).

    Pain change per client: -1.5 - 0.3 (pre - 5.5) + 0.8 if aged 60+ + 1.0 if chronic
    (+0.4 subacute) + site effect + clinician effect + noise (SD 1.2), and session noise (SD
    0.8). The case-mix site's clients are aged 60+ with chronic pain; its care is average.
    ``small_clinicians`` extra clinicians at site s00 see 4 clients each."""
    rng = np.random.default_rng(seed)
    clinician_effects = clinician_effects or {}
    site_effect = rng.normal(0, site_sd, sites) if site_sd else np.zeros(sites)
    staff = [(s, f"k{s:02d}{c}", clients_per_clinician)
             for s in range(sites) for c in range(clinicians_per_site)]
    staff += [(0, f"small{c}", 4) for c in range(small_clinicians)]
    site = np.repeat([s for s, _, _ in staff], [n for *_, n in staff])
    clinician = np.repeat([k for _, k, _ in staff], [n for *_, n in staff])
    effect = site_effect[site] + np.repeat(
        [clinician_effects.get(k, rng.normal(0, clinician_sd) if clinician_sd else 0.0)
         for _, k, _ in staff], [n for *_, n in staff])
    n = site.size
    casemix = np.array([f"s{s:02d}" == casemix_site for s in site])
    age = np.where(casemix, rng.choice(AGE_BANDS[3:], n),
                   rng.choice(AGE_BANDS, n, p=[0.25, 0.3, 0.25, 0.15, 0.05]))
    duration = np.where(casemix, rng.choice(DURATIONS, n, p=[0.05, 0.15, 0.8]),
                        rng.choice(DURATIONS, n, p=[0.45, 0.3, 0.25]))
    pre = np.clip(rng.normal(5.5, 1.5, n), 0, 10)
    mean_change = (-1.5 - 0.3 * (pre - 5.5) + 0.8 * np.isin(age, AGE_BANDS[3:])
                   + 1.0 * (duration == "chronic") + 0.4 * (duration == "subacute")
                   + effect + rng.normal(0, 1.2, n))
    clients = pd.DataFrame({
        "client_id": [f"c{i:05d}" for i in range(n)], "site": [f"s{s:02d}" for s in site],
        "clinician": clinician, "arm": "mfr",
        "audience_group": rng.choice(["athlete", "desk_worker", "chronic_pain"], n),
        "age_band": age, "sex": rng.choice(["female", "male"], n),
        "symptom_duration_band": duration, "technique": "practitioner", "pain_pre": pre,
        "mean_change": mean_change})
    sessions = clients.loc[clients.index.repeat(sessions_per_client)].reset_index(drop=True)
    change = sessions["mean_change"] + rng.normal(0, 0.8, len(sessions))
    return sessions.drop(columns="mean_change").assign(
        pain_post=sessions["pain_pre"] + change,
        pain_followup=sessions["pain_pre"] + change + rng.normal(0.5, 0.8, len(sessions)))


# -- funnel limits and overdispersion: a hand-computed example -----------------------------

# Ten units with z-scores -3, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 4 (standard errors 1 for the
# first five, 2 for the rest). Spiegelhalter 2005 (Stat Med 24:1185; QSHC 14:347): winsorise
# at 10 % (numpy linear percentiles: 10th = -3 + 0.9 x 2 = -1.2, 90th = 2.5 + 0.1 x 1.5 =
# 2.65), phi = mean z_w^2 = (1.44 + 1 + 0.25 + 0 + 0.25 + 1 + 2.25 + 4 + 6.25 + 7.0225) / 10
# = 2.34625. DerSimonian-Laird: w = 1/s^2 = 1 (x5), 0.25 (x5); sum w = 6.25,
# sum w^2 / sum w = 5.3125 / 6.25 = 0.85; tau^2 = (10 x 2.34625 - 9) / (6.25 - 0.85)
# = 14.4625 / 5.4 = 2.6782407.
Z = np.array([-3, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 4.0])
SE = np.array([1.0] * 5 + [2.0] * 5)


def test_overdispersion_matches_spiegelhalters_formulas_by_hand() -> None:
    multiplicative = estimate_dispersion(Z * SE, SE, "multiplicative")
    additive = estimate_dispersion(Z * SE, SE, "additive")
    assert multiplicative.phi == pytest.approx(2.34625)
    assert multiplicative.applied and multiplicative.tau2 == 0
    assert additive.phi == pytest.approx(2.34625)
    assert additive.tau2 == pytest.approx(14.4625 / 5.4)
    # limits: 95 % z = 1.959964, 99.8 % z = 3.090232
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_for(0.998) == pytest.approx(3.090232, abs=1e-6)
    # multiplicative, s = 2: 1.959964 x sqrt(2.34625) x 2 = 6.004339
    assert half_width(2.0, z_for(0.95), multiplicative) == pytest.approx(6.004339, abs=1e-5)
    # additive, s = 1: 1.959964 x sqrt(1 + 2.6782407) = 3.758964
    assert half_width(1.0, z_for(0.95), additive) == pytest.approx(3.758964, abs=1e-5)
    # no overdispersion: phi <= 1 leaves the multiplicative limits alone, tau^2 is 0
    calm = estimate_dispersion(np.array([-1, -0.5, 0, 0.5, 1.0]), np.ones(5), "multiplicative")
    assert calm.phi == pytest.approx((0.64 + 0.25 + 0 + 0.25 + 0.64) / 5)  # winsorised at +-0.8
    assert not calm.applied
    assert half_width(1.0, 1.96, calm) == pytest.approx(1.96)
    assert estimate_dispersion(np.array([-1, -0.5, 0, 0.5, 1.0]), np.ones(5)).tau2 == 0


def test_flags_mind_the_sign_pain_falls() -> None:
    """Pain (direction -1): a larger fall than expected is `above` (better)."""
    out = flags(np.array([-1.0, 1.0, 0.1, math.nan]), np.array([0.2, 0.2, 0.2, 0.2]), -1, None)
    assert list(out[:3]) == ["above", "below", "within"] and out[3] is None
    rom = flags(np.array([3.0, -3.0]), np.array([1.0, 1.0]), 1, None)
    assert list(rom) == ["above", "below"]


def test_limit_grid_is_symmetric_and_narrows_with_clients() -> None:
    grid = limit_grid(11, 400, 1.5, None)
    g95 = grid.loc[grid["level"] == 0.95]
    assert g95["n_clients"].min() == 11 and g95["n_clients"].max() == 400
    assert np.allclose(g95["upper"], -g95["lower"])
    assert np.allclose(g95["upper"], 1.959964 * 1.5 / np.sqrt(g95["n_clients"]), atol=1e-5)
    assert g95["upper"].is_monotonic_decreasing


# -- the risk model against statsmodels ------------------------------------------------------

def test_nested_moments_equal_reml_on_a_balanced_design() -> None:
    """Balanced nested data: the ANOVA estimators equal REML (when positive)."""
    rng = np.random.default_rng(1)
    site = np.repeat(np.arange(12), 40)
    clinician = np.repeat(np.arange(48), 10)
    y = (rng.normal(0, 0.6, 12)[site] + rng.normal(0, 0.5, 48)[clinician]
         + rng.normal(0, 1, site.size))
    s2s, s2c, s2e = nested_variance_components(site, clinician, y - y.mean())
    data = pd.DataFrame({"y": y, "site": site, "clinician": clinician})
    reml = smf.mixedlm("y ~ 1", data, groups="site", re_formula="1",
                       vc_formula={"clinician": "0 + C(clinician)"}).fit(reml=True)
    assert s2s == pytest.approx(float(reml.cov_re.iloc[0, 0]), rel=1e-3)
    assert s2c == pytest.approx(float(reml.vcomp[0]), rel=1e-3)
    assert s2e == pytest.approx(float(reml.scale), rel=1e-3)


def test_mixed_model_is_statsmodels_mixedlm_on_client_means() -> None:
    sessions = network(3, sites=8, clinicians_per_site=3, clients_per_clinician=15,
                       site_sd=0.5, clinician_sd=0.4)
    fit = fit_risk(sessions, "pain", method="mixed")
    assert fit.method == "MixedLM (REML)"
    clients = (sessions.assign(change=sessions["pain_post"] - sessions["pain_pre"])
               .groupby("client_id").agg(y=("change", "mean"), baseline=("pain_pre", "mean"),
                                         site=("site", "first"), clinician=("clinician", "first"),
                                         group=("audience_group", "first"),
                                         age=("age_band", "first"), sex=("sex", "first"),
                                         duration=("symptom_duration_band", "first"))
               .reset_index())
    direct = smf.mixedlm("y ~ baseline + C(group) + C(age) + C(sex) + C(duration)", clients,
                         groups="site", re_formula="1",
                         vc_formula={"clinician": "0 + C(clinician)"}).fit(reml=True)
    assert fit.covariates == ("audience_group", "age_band", "sex", "symptom_duration_band")
    coefficients = fit.coefficients.set_index("term")
    assert coefficients.at["baseline", "estimate"] == pytest.approx(
        direct.fe_params["baseline"], abs=1e-4)
    assert coefficients.at["baseline", "std_error"] == pytest.approx(
        direct.bse_fe["baseline"], rel=1e-3)
    assert fit.variances["site"] == pytest.approx(float(direct.cov_re.iloc[0, 0]), rel=1e-2,
                                                  abs=1e-4)
    assert fit.variances["clinician"] == pytest.approx(float(direct.vcomp[0]), rel=1e-2,
                                                       abs=1e-4)
    # expected = the fixed part (independent of the reference levels chosen)
    merged = fit.clients.set_index("client_id").loc[clients["client_id"]]
    assert np.allclose(merged["expected"], direct.predict(clients), atol=1e-4)
    table = risk_model(sessions, "pain", method="mixed")
    assert set(table["section"]) == {"fixed", "variance", "icc"}
    icc = table.loc[table["section"] == "icc"].set_index("term")["estimate"]
    total = fit.variances["site"] + fit.variances["clinician"] + fit.variances["residual"]
    assert icc["site"] == pytest.approx(fit.variances["site"] / total)


def test_fast_path_agrees_with_mixedlm() -> None:
    """The moments path (OLS + nested ANOVA) against MixedLM on a network with real unit
    variance: same baseline slope, similar variance components and ICCs, and nearly the same
    per-unit O-E."""
    sessions = network(5, sites=15, clinicians_per_site=4, clients_per_clinician=20,
                       site_sd=0.5, clinician_sd=0.5)
    exact = fit_risk(sessions, "pain", method="mixed")
    fast = fit_risk(sessions, "pain", method="moments")
    assert exact.method == "MixedLM (REML)" and not exact.notes
    slope = {f.method: f.coefficients.set_index("term").at["baseline", "estimate"]
             for f in (exact, fast)}
    assert abs(slope[exact.method] - slope[fast.method]) < 0.02
    for level in ("site", "clinician"):
        assert fast.icc(level) == pytest.approx(exact.icc(level), abs=0.04)
    assert fast.variances["residual"] == pytest.approx(exact.variances["residual"], rel=0.05)
    a = benchmark(sessions, "clinician", fit=exact).units.set_index("unit")["o_minus_e"]
    b = benchmark(sessions, "clinician", fit=fast).units.set_index("unit")["o_minus_e"]
    assert np.abs(a - b.loc[a.index]).max() < 0.1


# -- planted units ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return network(11, clinician_effects={"k021": -1.5, "k072": 1.5}, casemix_site="s04",
                   small_clinicians=2)


def test_planted_better_and_worse_clinicians_are_flagged(planted: pd.DataFrame) -> None:
    units = benchmark_units(planted, by="clinician", method="moments")
    assert list(units.columns) == list(UNIT_COLUMNS)
    flag = units.set_index("unit")["flag_adjusted"]
    assert flag["k021"] == "above"  # pain falls 1.5 points more than expected: better
    assert flag["k072"] == "below"
    average = flag.drop(["k021", "k072", "other"])
    assert (average == "within").mean() >= 0.85
    # the O-E interval covers the planted effect
    row = units.set_index("unit").loc["k021"]
    assert row["ci_low"] < -1.5 < row["ci_high"]
    assert row["responders_o_minus_e"] > 0  # more responders than expected
    assert abs(row["shrunken"]) <= abs(row["o_minus_e"])


def test_small_units_are_pooled_as_other_and_never_named(planted: pd.DataFrame) -> None:
    units = benchmark_units(planted, by="clinician", method="moments")
    assert not units["unit"].str.startswith("small").any()
    assert "k001" in set(units["unit"])
    other = units.set_index("unit").loc["other"]
    # the small units hold 8 clients: alone, the pool would be a count of 1-10 that the
    # total minus the named units gives away, so the smallest named unit joins it
    sizes = planted.groupby("clinician")["client_id"].nunique()
    smallest = sizes[sizes >= 11].sort_index().sort_values(kind="stable").index[0]
    assert other["pooled"] and other["n_clients"] == 8 + sizes[smallest]
    assert smallest not in set(units["unit"])
    assert pd.isna(other["flag_adjusted"]) and pd.isna(other["flag_unadjusted"])
    assert (units.loc[~units["pooled"], "n_clients"] >= 11).all()
    # listed by name, not ranked by performance
    named = units.loc[~units["pooled"], "unit"]
    assert list(named) == sorted(named)


def test_case_mix_site_is_flagged_unadjusted_but_not_adjusted(planted: pd.DataFrame) -> None:
    run = benchmark(planted, by="site", method="moments")
    row = run.units.set_index("unit").loc["s04"]
    assert row["flag_unadjusted"] == "below"  # older, chronic clients improve less
    assert row["flag_adjusted"] == "within"  # their care is average
    assert row["expected"] > run.units["expected"].median()
    assert "s04 (below without adjustment, within after)" in run.sentence
    assert run.sentence.startswith("Risk adjustment changes which units")
    limits = run.limits
    assert set(limits["indicator"]) == {"o_minus_e", "responders_o_minus_e"}
    assert set(limits["adjustment"]) == {"adjusted", "unadjusted"}
    assert set(limits["level"]) == {0.95, 0.998}
    assert limits["n_clients"].min() == AnalysisSettings().min_reported_clients


def test_works_with_only_the_columns_present() -> None:
    """No intake factors, no clinician: the model uses baseline and audience group, and the
    sites are still benchmarked."""
    sessions = network(2, sites=12, clinicians_per_site=1, clients_per_clinician=25).drop(
        columns=["age_band", "sex", "symptom_duration_band", "clinician", "technique"])
    fit = fit_risk(sessions, "pain")
    assert fit.covariates == ("audience_group",)
    assert "not in the table" in fit.dropped["age_band"]
    assert fit.levels == ("site",) and fit.variances["clinician"] == 0
    units = benchmark_units(sessions, by="site")
    assert len(units) == 12 and set(units["flag_adjusted"]) <= {"above", "below", "within"}
    lasting = benchmark_units(sessions, by="site", outcome="lasting_relief")
    assert lasting["mcid"].iloc[0] == 2.0


# -- false flags of average units ------------------------------------------------------------

def test_false_flag_rate_of_average_units_stays_near_the_nominal_level() -> None:
    """20 seeds of 40 average clinicians (case mix at one site, no unit effect): the share
    flagged at the 95 % limits is 5 % within sampling error without overdispersion, and no
    more with it (800 unit tests: 2.58 standard errors = 2 points)."""
    plain, additive = [], []
    for seed in range(20):
        sessions = network(100 + seed, sites=10, clinicians_per_site=4,
                           clients_per_clinician=20, casemix_site="s03", sessions_per_client=2)
        fit = fit_risk(sessions, "pain", method="moments")
        for collect, how in ((plain, "none"), (additive, "additive")):
            units = benchmark(sessions, "clinician", fit=fit, overdispersion=how).units
            collect.extend(units.loc[~units["pooled"], "flag_adjusted"] != "within")
    bound = 2.58 * math.sqrt(0.05 * 0.95 / len(plain))
    assert abs(np.mean(plain) - 0.05) < bound
    assert np.mean(additive) <= 0.05 + bound
