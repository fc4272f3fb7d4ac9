"""Missing follow-up (issue 13): Rubin's rules, IPW and LOCF on hand cases, and the key test:
on simulated data with informative drop-out, complete case is biased and MI / IPW with the
earlier response as auxiliary variable move the estimate back toward the planted truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.claims import claim_registry, primary_rows
from mfr_analysis.claims.sensitivity import (
    APPROACHES,
    followup_clients,
    ipw_estimate,
    ipw_weights,
    pool_rubin,
    robustness_sentence,
    sensitivity_rows,
)
from mfr_analysis.describe.followup import followup_cells
from mfr_analysis.settings import AnalysisSettings
from tests.test_claims import as_derived


def test_rubin_pooling_matches_a_hand_computation() -> None:
    # 3 imputations: q = 1.0, 1.2, 1.4; U = 0.04, 0.05, 0.06. By hand (Rubin 1987):
    # qbar = 1.2; W = 0.05; B = (0.2^2 + 0 + 0.2^2) / 2 = 0.04; T = W + (1 + 1/3) B = 0.103333
    # lambda = (4/3 * 0.04) / T = 0.516129; df_Rubin = (m - 1) / lambda^2 = 7.5078
    q, total, df = pool_rubin([1.0, 1.2, 1.4], [0.04, 0.05, 0.06])
    assert q == pytest.approx(1.2)
    assert total == pytest.approx(0.05 + 4 / 3 * 0.04)
    assert df == pytest.approx(2 / (0.0533333 / 0.1033333) ** 2, rel=1e-4)
    assert df == pytest.approx(7.5078, abs=1e-3)
    # Barnard-Rubin (1999) with complete-data df 10: df_obs = 11/13 * 10 * (1 - lambda)
    # = 4.0943; df = 1 / (1/7.5078 + 1/4.0943) = 2.6494
    _, _, df_br = pool_rubin([1.0, 1.2, 1.4], [0.04, 0.05, 0.06], df_complete=10)
    assert df_br == pytest.approx(2.6494, abs=1e-3)
    with pytest.raises(ValueError):
        pool_rubin([1.0], [0.1])


def test_ipw_weights_and_estimate_on_a_hand_case() -> None:
    # x = 0: 4 clients, 2 followed up; x = 1: 4 clients, 3 followed up. The logistic model
    # on x is saturated: P(obs | x=0) = 0.5, P(obs | x=1) = 0.75; P(obs) = 5/8, so the
    # stabilised weights are 0.625/0.5 = 1.25 and 0.625/0.75 = 0.8333.
    x = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    observed = np.array([1, 1, 0, 0, 1, 1, 1, 0], dtype=bool)
    y = np.array([-2.0, -1.0, np.nan, np.nan, -3.0, -4.0, -5.0, np.nan])
    covariates = pd.DataFrame({"x": x})
    weights = ipw_weights(observed, covariates)
    np.testing.assert_allclose(weights, [1.25, 1.25, 5 / 6, 5 / 6, 5 / 6], rtol=1e-3)
    # weighted mean: (1.25 * (-3) + 0.8333 * (-12)) / (2.5 + 2.5) = -2.75 (plain mean -3)
    estimate, se, _ = ipw_estimate(y, observed, covariates, np.ones((8, 1)), False)
    assert estimate == pytest.approx(-2.75, abs=1e-3)
    assert se > 0


def test_locf_carries_the_post_session_score_forward() -> None:
    sessions = pd.DataFrame({
        "client_id": ["a", "a", "b"], "audience_group": ["senior"] * 3,
        "arm": ["mfr"] * 3, "pain_pre": [6.0, 5.0, 7.0], "pain_post": [4.0, 3.0, 5.0],
        "pain_followup": [np.nan, 4.0, np.nan], "weeks_since_start": [0.0, 1.0, 0.0]})
    clients = followup_clients(sessions).set_index("client_id")
    # a: complete case uses the one follow-up, 4 - 5 = -1; LOCF (4 - 6, 4 - 5) = -1.5
    assert clients.loc["a", "y"] == -1.0
    assert clients.loc["a", "y_locf"] == -1.5
    assert clients.loc["a", "response"] == -2.0
    # b has no follow-up: missing for complete case, 5 - 7 = -2 carried forward
    assert math.isnan(clients.loc["b", "y"])
    assert clients.loc["b", "y_locf"] == -2.0


@pytest.fixture(scope="module")
def dropout_rows() -> tuple[pd.DataFrame, float]:
    """Sensitivity rows of 800 simulated MFR clients with planted informative drop-out."""
    from mfr_analysis import simulate

    clean, truth = simulate.simulate_sessions(800, 5, control_share=0.0)
    planted = simulate.planted_followup(truth).set_index("audience_group")
    lasting = claim_registry().set_index("claim_id", drop=False).loc["lasting_relief"]
    rows = sensitivity_rows(as_derived(clean), lasting, [], settings=AnalysisSettings())
    return rows.set_index("sensitivity"), float(planted.loc["all", "planted_change"])


def test_mi_and_ipw_undo_the_bias_of_complete_cases(dropout_rows) -> None:
    rows, truth = dropout_rows
    assert list(rows.index) == list(APPROACHES)
    cc = rows.loc["complete_case", "estimate"]
    bias = cc - truth
    # poor responders miss follow-up: complete cases look like more relief than planted
    assert bias < -0.15, (cc, truth)
    for approach in ("multiple_imputation", "inverse_probability_weighting"):
        estimate = rows.loc[approach, "estimate"]
        assert bias < estimate - truth < 0.6 * abs(bias) + 0.05, (approach, estimate, truth)
        assert (truth - estimate) / (truth - cc) < 0.6, (approach, estimate, cc, truth)
    # MI and LOCF use every client; IPW and complete case the followed-up ones
    assert rows.loc["multiple_imputation", "n_clients"] > rows.loc["complete_case", "n_clients"]
    assert rows.loc["last_observation_carried_forward", "n_clients"] == rows.loc[
        "multiple_imputation", "n_clients"]
    assert rows.loc["inverse_probability_weighting", "n_clients"] == rows.loc[
        "complete_case", "n_clients"]
    assert (rows["design"] == "uncontrolled").all()
    assert rows["p_adjusted"].isna().all()
    assert rows["note"].str.contains("outside the multiplicity correction").all()


def test_sensitivity_rows_follow_the_primary_rows_and_change_none() -> None:
    from mfr_analysis import simulate
    from mfr_analysis.claims import evaluate_claims

    clean, _ = simulate.simulate_sessions(150, 2)
    sessions = as_derived(clean)
    table = evaluate_claims(sessions, groups=["senior"])
    primary = primary_rows(table)
    extra = table.loc[table["sensitivity"] != ""]
    assert (primary["sensitivity"] == "").all()
    assert set(extra["sensitivity"]) == set(APPROACHES)
    assert (extra["claim_id"] == "lasting_relief").all()
    assert (extra["outcome"] == "pain_followup").all()
    assert sorted(set(extra["audience_group"])) == ["all", "senior"]
    assert table.index[: len(primary)].tolist() == list(range(len(primary)))
    sentence = robustness_sentence(table, "all")
    assert sentence.startswith(("The verdict at follow-up", "Too few clients"))


def test_robustness_sentence_says_when_the_verdict_changes() -> None:
    def table(mi: str) -> pd.DataFrame:
        return pd.DataFrame({
            "claim_id": "lasting_relief", "outcome": "pain_followup", "audience_group": "all",
            "sensitivity": list(APPROACHES),
            "verdict": ["supported", mi, "supported", "supported"]})

    same = robustness_sentence(table("supported"))
    assert "is the same under multiple imputation and inverse probability weighting" in same
    changed = robustness_sentence(table("below_threshold"))
    assert "changes under multiple imputation" in changed
    assert "read the main result with care" in changed
    assert "inverse probability weighting" not in changed.split("(")[0]


def test_followup_tables_on_a_hand_case() -> None:
    from mfr_analysis.describe.followup import (
        followup_cells,
        followup_comparison,
        followup_completeness,
    )

    sessions = pd.DataFrame({
        "client_id": ["a", "a", "b", "c", "d"],
        "audience_group": ["senior", "senior", "senior", "rehab", "rehab"],
        "arm": ["mfr", "mfr", "control", "mfr", "mfr"],
        "pain_pre": [6.0, 5.0, 7.0, 4.0, 8.0], "pain_post": [4.0, 3.0, 7.0, 3.0, 5.0],
        "pain_followup": [np.nan, 4.0, np.nan, 3.0, np.nan],
        "weeks_since_start": [0.0, 2.0, 0.0, 0.0, 0.0]})
    table = followup_completeness(sessions).set_index(["audience_group", "arm"])
    assert table.loc[("all", "all"), ["clients", "clients_with_followup", "sessions",
                                      "sessions_with_followup"]].tolist() == [4, 2, 5, 2]
    assert table.loc[("all", "all"), "share_clients_with_followup"] == 0.5
    assert table.loc[("senior", "control"), "clients_with_followup"] == 0
    assert table.loc[("rehab", "mfr"), "share_sessions_with_followup"] == 0.5
    compared = followup_comparison(sessions).set_index(["audience_group", "variable"])
    row = compared.loc[("all", "response")]
    # with: a (-2), c (-1): mean -1.5, sd 0.7071; without: b (0), d (-3): mean -1.5
    assert row["mean_with"] == -1.5 and row["mean_without"] == -1.5
    assert row["std_difference"] == 0.0
    pre = compared.loc[("all", "pain_pre")]
    # with: a 5.5, c 4 (mean 4.75, sd 1.0607); without: b 7, d 8 (mean 7.5, sd 0.7071)
    assert pre["std_difference"] == pytest.approx(-2.75 / math.sqrt((1.125 + 0.5) / 2))
    cells = followup_cells(sessions, {}, None, "").drop_duplicates(
        ["group", "measure"]).set_index(["group", "measure"])["clients"]
    assert cells[("all", "followup:clients")] == 4
    assert cells[("all", "followup:clients#with")] + cells[
        ("all", "followup:clients#without")] == 4
    assert cells[("senior", "followup:control#without")] == 1
    # each margin of the arm x follow-up table is a family: total = sum of parts
    for group in ("all", "senior"):
        for total, parts in (("clients", ("with", "without")), ("arms", ("mfr", "control")),
                             ("with", ("mfr", "control")), ("mfr", ("with", "without"))):
            present = [cells.get((group, f"followup:{total}#{p}"), 0) for p in parts]
            assert sum(present) == cells[(group, f"followup:{total}")], (group, total)
    # the follow-up tables name the cell of each count, so the plan can hide it
    assert set(table["with_measure"]) >= {"followup:clients#with", "followup:mfr#with"}


def test_sensitivity_rows_are_distinct_disclosure_cells_tied_to_the_followed_up() -> None:
    from mfr_analysis.privacy import claim_counts

    base = {"claim_id": "lasting_relief", "outcome": "pain_followup", "audience_group": "all",
            "design": "uncontrolled", "note": ""}
    claims = pd.DataFrame([
        {**base, "sensitivity": "", "n_clients": 40, "n_sessions": 90},
        {**base, "sensitivity": "complete_case", "n_clients": 40, "n_sessions": 90},
        {**base, "sensitivity": "multiple_imputation", "n_clients": 45, "n_sessions": 100},
        {**base, "sensitivity": "inverse_probability_weighting", "n_clients": 40,
         "n_sessions": 90},
        {**base, "sensitivity": "last_observation_carried_forward", "n_clients": 45,
         "n_sessions": 100}])
    cells = claim_counts(claims)
    measures = set(cells["measure"])
    assert {"lasting_relief|pain_followup",
            "lasting_relief|pain_followup@multiple_imputation"} <= measures
    family = cells.loc[cells["measure"].str.startswith("lasting_relief|pain_followup@followup")]
    by = family.drop_duplicates("measure").set_index("measure")["clients"]
    assert by["lasting_relief|pain_followup@followup#without"] == 5  # 45 - 40: a part
    assert by["lasting_relief|pain_followup@followup"] == 45
    twins = set(family["twin"])
    assert "lasting_relief|pain_followup@complete_case" in twins


def test_a_few_clients_without_follow_up_hide_the_followed_up_rows_counts() -> None:
    """Multiple imputation counts every client, complete case the followed-up ones: their
    difference (5 clients without follow-up) must not be worked out by subtraction."""
    from mfr_analysis.privacy import claim_measure, plan_disclosure

    family = "lasting_relief|pain_followup@followup"
    complete = claim_measure("lasting_relief", "pain_followup", "complete_case")
    counts = pd.DataFrame([
        {"slice": "", "group": "all", "measure": family, "clients": 100, "sessions": 400,
         "twin": ""},
        {"slice": "", "group": "all", "measure": f"{family}#with", "clients": 95,
         "sessions": 380, "twin": complete},
        {"slice": "", "group": "all", "measure": f"{family}#without", "clients": 5,
         "sessions": 20, "twin": ""},
        {"slice": "", "group": "all", "measure": complete, "clients": 95, "sessions": 380,
         "twin": ""},
    ])
    plan = plan_disclosure(counts)
    hidden = plan.hidden | plan.count_hidden  # the complements lose their counts only
    assert {("", "all", f"{family}#without"), ("", "all", f"{family}#with"),
            ("", "all", complete)} <= hidden
    assert ("", "all", family) not in hidden


def test_a_few_control_clients_without_follow_up_are_not_derivable_from_any_margin() -> None:
    """Arm x follow-up is a two-way table: 3 control clients without follow-up must not come
    out of the arm totals, the with/without totals or the other arm's cells."""
    from mfr_analysis.describe.followup import followup_cells
    from mfr_analysis.privacy import plan_disclosure, session_counts

    rows = [("m", i, "mfr", True) for i in range(40)] + [
        ("m", 100 + i, "mfr", False) for i in range(25)] + [
        ("c", 200 + i, "control", True) for i in range(30)] + [
        ("c", 300 + i, "control", False) for i in range(3)]
    sessions = pd.DataFrame({
        "client_id": [f"client{i}" for _, i, _, _ in rows],
        "audience_group": pd.Categorical(["athlete"] * len(rows)),
        "arm": pd.Categorical([arm for _, _, arm, _ in rows]),
        "pain_pre": 6.0, "pain_post": 4.0,
        "pain_followup": [4.5 if has else math.nan for *_, has in rows],
        "weeks_since_start": 0.0, "session_date": pd.Timestamp("2024-01-01")})
    counts = pd.concat([session_counts(sessions), followup_cells(sessions, {}, None, "")],
                       ignore_index=True)
    plan = plan_disclosure(counts)
    values = counts.drop_duplicates(["group", "measure"]).set_index(["group", "measure"])[
        "clients"]
    assert plan.counts_hidden("", "all", "followup:control#without")
    assert plan.counts_hidden("", "all", "followup:without#control")
    # every published family line leaves its hidden parts adding up to 0 or at least 11
    for group, measure in values.index:
        if "#" in measure or not measure.startswith("followup:"):
            continue
        parts = [(g, m) for g, m in values.index if g == group and m.startswith(f"{measure}#")]
        if not parts or plan.counts_hidden("", group, measure):
            continue
        hidden = sum(values[p] for p in parts if plan.counts_hidden("", *p))
        assert hidden == 0 or hidden >= 11, (group, measure, hidden)


def test_the_exact_audit_sees_the_follow_up_table() -> None:
    """Seen in a rendered report: with/without follow-up of all arms (90) minus the MFR arm's
    (69) gives the control arm's 21, and its 26 clients minus 21 reveal 5 without follow-up.
    Each family line alone is fine, so only the exact audit can stop this chain."""
    from mfr_analysis.privacy import plan_disclosure, session_counts
    from mfr_analysis.privacy_audit import audit_disclosure, folder_members
    from mfr_analysis.report.disclosure import audited_plan

    rows = ([("mfr", True)] * 69 + [("mfr", False)] * 30 + [("control", True)] * 21
            + [("control", False)] * 5)
    sessions = pd.DataFrame({
        "client_id": [f"client{i}" for i in range(len(rows))],
        "audience_group": pd.Categorical(["athlete"] * len(rows)),
        "arm": pd.Categorical([arm for arm, _ in rows]),
        "pain_pre": 6.0, "pain_post": 4.0,
        "pain_followup": [4.5 if has else math.nan for _, has in rows],
        "weeks_since_start": 0.0, "session_date": pd.Timestamp("2024-01-01")})
    counts = pd.concat([session_counts(sessions), followup_cells(sessions, {}, None, "")],
                       ignore_index=True)
    members = folder_members([("", sessions, None)], counts)
    assert members[("", "athlete", "followup:without#control")] == {
        f"client{i}" for i in range(120, 125)}
    lines_only = plan_disclosure(counts)
    found, _ = audit_disclosure(members, lines_only)
    assert found  # the chain the line plan leaves open ...
    audited = audited_plan(counts, by=None, minimum=11, withhold=[],
                           reports=[("", sessions, None)])
    assert audit_disclosure(members, audited)[0] == frozenset()  # ... is closed


def test_predictors_built_once_give_statsmodels_own_imputations() -> None:
    """The sensitivity rows' MICE builds the complete predictors' matrices once; the draws,
    imputations and estimates are bit for bit those of statsmodels' MICE rebuilding them."""
    from mfr_analysis.claims.sensitivity import _imputed_fits

    rng = np.random.default_rng(7)
    n = 300
    frame = pd.DataFrame({"pre": rng.normal(6, 1.5, n), "response": rng.normal(-1, 1, n),
                          "weeks": rng.integers(1, 12, n).astype(float)})
    frame["y"] = -1 + 0.3 * frame["response"] + rng.normal(0, 1, n)
    frame.loc[rng.random(n) < 0.35, "y"] = np.nan  # a third without follow-up
    frame["mfr_"] = (rng.random(n) < 0.7).astype(float)
    frame["pre_c_"] = frame["pre"] - frame["pre"].mean()
    names, predictors = ["mfr_", "pre_c_"], ["pre", "response", "weeks"]
    fast = _imputed_fits(frame, names, predictors, True, fixed=True)
    plain = _imputed_fits(frame, names, predictors, True, fixed=False)
    assert len(fast) == len(plain) == 20
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(np.asarray(a.params), np.asarray(b.params))
        # the covariance comes from the same numbers laid out differently in memory
        np.testing.assert_allclose(np.asarray(a.cov_params()), np.asarray(b.cov_params()),
                                   rtol=1e-12, atol=0)
