"""Descriptive tables of issue 13 (points 1, 2, 4): flow, Table 1, reliable change, and their
disclosure cells. Hand-made session frames: every expected number is worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.describe import (
    baseline_cells,
    baseline_table,
    client_flow,
    flow_cells,
    individual_cells,
    individual_change,
    individual_summary,
    protect,
)
from mfr_analysis.describe.baseline import smd_binary, smd_categorical, smd_continuous
from mfr_analysis.describe.individual import classify, reliable_change, s_diff
from mfr_analysis.privacy import ALL, POOLED, plan_disclosure, session_counts

MINIMUM = 11


def _sessions(spec: list[tuple[str, str, int, float, float]]) -> pd.DataFrame:
    """Two sessions per client: (group, arm, clients, pain_pre, pain_post) of the first."""
    rows = []
    for group, arm, n, pre, post in spec:
        for i in range(n):
            client = f"{group}-{arm}-{pre}-{post}-{i}"
            for k, day in enumerate((1, 8)):
                rows.append({
                    "client_id": client, "audience_group": group, "arm": arm,
                    "session_date": pd.Timestamp(2024, 1, day), "session_index": k + 1,
                    "weeks_since_start": k * 1.0, "pain_pre": pre, "pain_post": post,
                    "tightness_pre": 5.0, "tightness_post": 4.0, "stress_pre": 4.0,
                    "stress_post": 3.0, "pain_followup": pre - 1 if i % 2 else np.nan,
                    "technique": "foam_roller" if i % 3 else "practitioner",
                    "delivery": "self" if i % 3 else "practitioner",
                    "rom_measure": "hip_flexion_deg", "rom_pre": 90.0 + i, "rom_post": 95.0})
    frame = pd.DataFrame(rows)
    return frame.assign(audience_group=frame["audience_group"].astype("category"),
                        arm=frame["arm"].astype("category"))


# --- point 2: standardized differences against hand calculations ------------------------------


def test_smd_continuous_and_binary_by_hand() -> None:
    # (5.0 - 4.0) / sqrt((2^2 + 1^2) / 2) = 1 / sqrt(2.5) = 0.63246
    assert smd_continuous(5.0, 2.0, 4.0, 1.0) == pytest.approx(0.632456, abs=1e-6)
    # (0.6 - 0.4) / sqrt((0.24 + 0.24) / 2) = 0.2 / 0.489898 = 0.408248
    assert smd_binary(0.6, 0.4) == pytest.approx(0.408248, abs=1e-6)
    # two levels through the categorical form give the binary answer (|d|)
    assert smd_categorical(np.array([0.6, 0.4]), np.array([0.4, 0.6])) == pytest.approx(
        0.408248, abs=1e-6)


def test_smd_categorical_by_hand() -> None:
    # Yang & Dalton 2012, three levels: T = (.5, .3, .2), C = (.3, .3, .4); drop the last.
    # d = (.2, 0); S = ((.25 .15 / .15 .21) + (.21 .09 / .09 .21)) / 2 with off-diagonals
    # -p_k p_l: S = [[.23, -.12], [-.12, .21]]; d' S^-1 d = .04 * .21 / (.23*.21 - .0144)
    expected = math.sqrt(0.04 * 0.21 / (0.23 * 0.21 - 0.12 ** 2))
    assert smd_categorical(np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])) == (
        pytest.approx(expected, rel=1e-9))


def test_baseline_table_means_shares_and_flag() -> None:
    sessions = _sessions([("athlete", "mfr", 12, 6.0, 3.0), ("athlete", "mfr", 12, 4.0, 3.0),
                          ("athlete", "control", 12, 5.0, 4.0)])
    table = baseline_table(sessions)
    pain = table[(table["audience_group"] == ALL) & (table["variable"] == "pain_pre")]
    mfr = pain[pain["arm"] == "mfr"].iloc[0]
    assert mfr["clients"] == 24 and mfr["mean"] == pytest.approx(5.0)
    sd = np.std([6.0] * 12 + [4.0] * 12, ddof=1)
    assert mfr["sd"] == pytest.approx(sd)
    # control SD is 0: SMD = 0 / sqrt(sd^2 / 2) = 0, not flagged
    assert mfr["smd"] == pytest.approx(0.0) and not mfr["smd_flag"]
    technique = table[(table["audience_group"] == ALL) & (table["variable"] == "technique")
                      & (table["arm"] == "mfr") & (table["level"] == "practitioner")].iloc[0]
    assert technique["clients"] == 8 and technique["share"] == pytest.approx(8 / 24)
    clients = table[(table["variable"] == "clients") & (table["audience_group"] == ALL)]
    assert clients.set_index("arm")["clients"].to_dict() == {"mfr": 24, "control": 12}


# --- point 4: reliable change ---------------------------------------------------------------


def test_reliable_change_follows_jacobson_truax() -> None:
    # Jacobson & Truax 1991 (J Consult Clin Psychol 59:12-19, p. 14): RC = (x2 - x1) / S_diff,
    # S_diff = sqrt(2 SE^2), SE = s1 sqrt(1 - r_xx); |RC| > 1.96 is reliable. With s1 = 7.5
    # and r_xx = .88: SE = 7.5 * sqrt(.12) = 2.598, S_diff = 3.674; a fall of 10 points gives
    # RC = -2.72 (reliable), a fall of 7 gives -1.91 (not reliable).
    assert s_diff(7.5, 0.88) == pytest.approx(math.sqrt(2) * 7.5 * math.sqrt(0.12))
    rc = reliable_change(np.array([60.0, 60.0]), np.array([50.0, 53.0]), 7.5, 0.88)
    assert rc == pytest.approx([-10 / 3.6742, -7 / 3.6742], abs=1e-3)
    # pain: lower is better
    assert classify(rc).tolist() == ["improved", "unchanged"]
    assert classify(np.array([2.5])).tolist() == ["deteriorated"]


# Jacobson & Truax 1991, Table 2: the Dyadic Adjustment Scale of 30 couples before and after
# behavioural marital therapy (higher is better), the paper's own worked data set.
JT_1991_DAS_PRE = [90.5, 74, 97, 73.5, 61, 66.5, 68.5, 86.5, 88.5, 68.5, 98, 80.5, 89.5, 91.5,
                   83.5, 60.5, 83, 88, 98.5, 78.5, 99.5, 79.5, 84.5, 92.5, 93, 85, 64, 61, 80,
                   82.5]
JT_1991_DAS_POST = [97, 124, 97.5, 88, 96.5, 62.5, 112.5, 103.5, 90, 82.5, 105, 99.5, 112.5,
                    101, 99.5, 79.5, 88, 100.5, 119, 116, 116, 129, 113, 118, 92, 114, 68, 52,
                    60.5, 104.5]


def test_reliable_change_on_jacobson_truax_table_2() -> None:
    # By hand: the 30 pretest scores sum to 2447.5 (mean 81.583) and their squared deviations
    # to 4055.54, so SD_pre = sqrt(4055.54 / 29) = 11.826 (JT use the pretreatment SD). With
    # the DAS's published reliability .96 (Spanier 1976, J Marriage Fam 38:15-28):
    # SE = 11.826 * sqrt(.04) = 2.365, S_diff = sqrt(2) * 2.365 = 3.345; a change is reliable
    # beyond 1.96 * 3.345 = 6.56 points. Couple 2 (74 -> 124): RC = 50 / 3.345 = 14.95;
    # couple 29 (80 -> 60.5): RC = -19.5 / 3.345 = -5.83; couple 27 (64 -> 68): RC = 1.20.
    pre, post = np.array(JT_1991_DAS_PRE), np.array(JT_1991_DAS_POST)
    assert pre.sum() == 2447.5 and ((pre - pre.mean()) ** 2).sum() == pytest.approx(4055.54,
                                                                                    abs=0.01)
    sd_pre = float(np.std(pre, ddof=1))
    assert s_diff(sd_pre, 0.96) == pytest.approx(3.345, abs=5e-4)
    rc = reliable_change(pre, post, sd_pre, 0.96)
    assert rc[[1, 28, 26]] == pytest.approx([14.95, -5.83, 1.20], abs=0.01)
    classes = classify(rc, direction=1)  # higher is better on the DAS
    # changes of 7 points or more (21 couples) are reliable improvements; the falls of 9
    # (couple 28) and 19.5 (couple 29) reliable deteriorations; -4 to 6.5 (7 couples) not
    assert (classes == "deteriorated").nonzero()[0].tolist() == [27, 28]
    assert (classes == "improved").sum() == 21 and (classes == "unchanged").sum() == 7
    assert set((post - pre)[classes == "unchanged"]) == {-4, -1, 0.5, 1.5, 4, 5, 6.5}


def test_no_spread_before_gives_no_class() -> None:
    # every client starts at 6: SD_pre = 0 leaves no measurement error to scale a change by
    sessions = _sessions([("athlete", "mfr", 12, 6.0, 2.0), ("athlete", "mfr", 12, 6.0, 6.0)])
    change = individual_change(sessions)
    assert change["rci"].isna().all()
    assert set(change["rci_class"]) == {"not_classifiable"}
    summary = individual_summary(change)
    row = summary[(summary["audience_group"] == ALL) & (summary["rci_class"]
                                                        == "not_classifiable")].iloc[0]
    assert (row["clients"], row["total"]) == (24, 24)
    assert "not_classifiable" not in set(individual_summary(individual_change(_sessions(
        [("athlete", "mfr", 12, 7.0, 2.0), ("athlete", "mfr", 12, 2.0, 2.0)])))["rci_class"])


def test_individual_change_by_hand() -> None:
    # pre 7 or 2 (12 clients each); SD of pre = sqrt(24/23 * 6.25); r = 0.95
    sessions = _sessions([("athlete", "mfr", 12, 7.0, 2.0), ("athlete", "mfr", 12, 2.0, 2.0)])
    change = individual_change(sessions)
    sd = np.std([7.0] * 12 + [2.0] * 12, ddof=1)
    expected = -5.0 / (math.sqrt(2) * sd * math.sqrt(0.05))
    row = change[change["pre"] == 7.0].iloc[0]
    assert row["rci"] == pytest.approx(expected) and row["rci_class"] == "improved"
    assert bool(row["recovered"])  # 7 -> 2 crosses the mild cut-off (3) reliably
    assert change.loc[change["pre"] == 2.0, "recovered"].isna().all()  # already mild


def test_summary_wilson_intervals() -> None:
    from statsmodels.stats.proportion import proportion_confint

    sessions = _sessions([("athlete", "mfr", 16, 7.0, 2.0), ("athlete", "mfr", 14, 5.0, 5.0)])
    summary = individual_summary(individual_change(sessions))
    improved = summary[(summary["audience_group"] == ALL) & (summary["rci_class"] == "improved")
                       ].iloc[0]
    assert (improved["clients"], improved["total"]) == (16, 30)
    low, high = proportion_confint(16, 30, method="wilson")
    assert (improved["ci_low"], improved["ci_high"]) == pytest.approx((low, high))
    # hand check of Wilson's formula (z = 1.959964)
    z, p, n = 1.959964, 16 / 30, 30
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert low == pytest.approx(centre - half, abs=1e-5)


# --- point 1: the flow adds up ----------------------------------------------------------------


def test_flow_conserves_rows_and_clients() -> None:
    sessions = _sessions([("athlete", "mfr", 20, 6.0, 3.0), ("senior", "control", 15, 5.0, 4.0)])
    sessions.loc[sessions["client_id"].str.endswith("-3"), ["pain_post"]] = np.nan
    report = {"rows_in": len(sessions) + 9, "rows_clean": len(sessions),
              "rows_quarantined": 7, "rows_duplicate": 2,
              "reasons": {"missing_date": 5, "out_of_range": 4}}
    flow = client_flow(sessions, report, None).set_index("stage")
    rows = flow["rows"]
    assert rows["raw"] == rows["clean"] + rows["quarantined"] + rows["duplicate"]
    reasons = rows[[s for s in flow.index if s.startswith("reason:")]]
    # a row can have several reasons: each reason <= quarantined <= their sum
    assert reasons.max() <= rows["quarantined"] <= reasons.sum()
    assert flow.at["reason:missing_date", "label"] == "no session date"
    arms = flow[flow.index.str.startswith("arm:")]
    assert arms["clients"].sum() == flow.at["clean", "clients"] == 35
    assert arms["rows"].sum() == rows["clean"]
    for arm in ("mfr", "control"):
        assert (flow.at[f"pair:pain:{arm}", "clients"] + flow.at[f"no_pair:pain:{arm}",
                                                                  "clients"]
                == flow.at[f"arm:{arm}", "clients"])
        assert (flow.at[f"followup:{arm}", "clients"] + flow.at[f"no_followup:{arm}",
                                                                 "clients"]
                == flow.at[f"pair:pain:{arm}", "clients"])
    assert flow.at["no_pair:pain:mfr", "clients"] == 1  # client 3 of the mfr arm
    # from a clean table without its cleaning report: the row boxes are "not available"
    bare = client_flow(sessions, {}, None).set_index("stage")
    assert not bare.at["raw", "available"] and pd.isna(bare.at["raw", "rows"])
    assert bare.at["clean", "clients"] == 35


# --- disclosure: a planted small class is hidden and not derivable ----------------------------


def _leaks(counts: pd.DataFrame, plan) -> list[str]:
    """Every published family total minus its published parts of 1..10 (the attacker)."""
    shown = counts[[not plan.counts_hidden(s, g, m) for s, g, m in counts[
        ["slice", "group", "measure"]].itertuples(index=False)]]
    value = {(s, g, m): c for s, g, m, c in shown[["slice", "group", "measure", "clients"]]
             .itertuples(index=False)}
    leaks = [f"{k} shows {v}" for k, v in value.items() if 1 <= v < MINIMUM]
    for (s, g, m), v in value.items():
        base = m.rpartition("#")[0]
        if base and (s, g, base) in value:
            continue
        if "#" not in m:
            parts = [c for (s2, g2, m2), c in value.items()
                     if (s2, g2) == (s, g) and m2.rpartition("#")[0] == m]
            rest = v - sum(parts)
            all_parts = counts[(counts["slice"] == s) & (counts["group"] == g) & counts[
                "measure"].str.startswith(f"{m}#")]
            if len(all_parts) and 1 <= rest < MINIMUM:
                leaks.append(f"{(s, g, m)} minus parts = {rest}")
        if g == ALL:  # the all-groups row minus the group rows
            groups = [c for (s2, g2, m2), c in value.items() if s2 == s and m2 == m and g2 != ALL]
            hidden_groups = counts[(counts["slice"] == s) & (counts["measure"] == m)
                                   & (counts["group"] != ALL)]
            if len(hidden_groups) and 1 <= v - sum(groups) < MINIMUM:
                leaks.append(f"{(s, m)} all minus groups = {v - sum(groups)}")
    return leaks


def test_a_planted_small_class_is_hidden_and_not_derivable() -> None:
    # athletes: 30 MFR clients, 4 of them deteriorate (pain 4 -> 8); seniors: 40 MFR clients
    sessions = _sessions([("athlete", "mfr", 26, 7.0, 2.0), ("athlete", "mfr", 4, 4.0, 8.0),
                          ("senior", "mfr", 40, 6.0, 2.0), ("senior", "control", 20, 6.0, 6.0)])
    summary = individual_summary(individual_change(sessions))
    base = summary[(summary["audience_group"] == "athlete")
                   & (summary["rci_class"] == "deteriorated")].iloc[0]
    assert base["clients"] == 4  # planted
    counts = pd.concat([session_counts(sessions), individual_cells(summary, POOLED),
                        baseline_cells(baseline_table(sessions), POOLED),
                        flow_cells(client_flow(sessions, {}, None), POOLED)],
                       ignore_index=True)
    plan = plan_disclosure(counts, minimum=MINIMUM)
    measure = "individual:reliable_change_mfr#deteriorated"
    assert plan.is_hidden(POOLED, "athlete", measure)
    # hidden alone it would be 30 - 26 - 0: its complement in the family goes too (its
    # count only: a complement is not a small cell) ...
    assert plan.is_count_only(POOLED, "athlete", "individual:reliable_change_mfr#improved")
    # ... and the all-groups count (4) is hidden as well (4 - 0 from the seniors)
    assert plan.is_hidden(POOLED, ALL, measure)
    assert _leaks(counts, plan) == []
    shown = protect(summary, plan, POOLED)
    row = shown[(shown["audience_group"] == "athlete") & (shown["rci_class"] == "deteriorated")
                & (shown["kind"] == "reliable_change")].iloc[0]
    assert row["clients"] == "fewer than 11" and pd.isna(row["share"])
    assert pd.isna(row["ci_low"]) and row["privacy"]
    improved = shown[(shown["audience_group"] == "athlete")
                     & (shown["rci_class"] == "improved")].iloc[0]
    assert improved["clients"] == "withheld" and pd.isna(improved["share"])
    # nothing of 1-10 left in any published count of the protected table
    numbers = pd.to_numeric(shown["clients"], errors="coerce")
    assert not numbers.between(1, MINIMUM - 1).any()


def test_a_small_arm_is_hidden_in_table_one_with_its_numbers() -> None:
    sessions = _sessions([("athlete", "mfr", 30, 6.0, 3.0), ("athlete", "control", 5, 6.0, 5.0),
                          ("senior", "mfr", 20, 5.0, 3.0), ("senior", "control", 20, 5.0, 4.0)])
    table = baseline_table(sessions)
    counts = pd.concat([session_counts(sessions), baseline_cells(table, POOLED)],
                       ignore_index=True)
    plan = plan_disclosure(counts, minimum=MINIMUM)
    shown = protect(table, plan, POOLED)
    athletes = shown[shown["audience_group"] == "athlete"]
    control = athletes[(athletes["arm"] == "control") & (athletes["variable"] == "pain_pre")]
    assert control["clients"].tolist() == ["fewer than 11"]
    assert control["mean"].isna().all() and control["sd"].isna().all()
    # 35 athletes minus 30 in MFR would give the 5: the MFR count is hidden too, and the SMD
    mfr = athletes[(athletes["arm"] == "mfr") & (athletes["variable"] == "clients")]
    assert mfr["clients"].tolist() == ["withheld"]  # a complement: its count only
    mfr_pain = athletes[(athletes["arm"] == "mfr") & (athletes["variable"] == "pain_pre")]
    assert mfr_pain["mean"].tolist() == [6.0]  # a mean over 30 clients reveals no count
    assert athletes.loc[athletes["variable"] == "pain_pre", "smd"].isna().all()
    assert _leaks(counts, plan) == []
    # across groups: all control clients (25) minus the seniors' (20) would give the 5, so
    # the seniors' control count goes as a complement; their MFR count stays
    seniors = shown[(shown["audience_group"] == "senior") & (shown["variable"] == "clients")]
    assert seniors["clients"].tolist() == [20, "withheld"]


def test_shares_go_when_a_count_of_their_family_is_hidden() -> None:
    """Shares beside their counts give the family's sum away (44 at 37 % means about 119,
    several such rows pin it): with one level withheld, that sum minus the shown levels is
    the withheld count. So the whole family's shares go, and the SMD built from them."""
    from mfr_analysis.privacy import DisclosurePlan

    levels = {"mfr": {"practitioner": 196, "foam roller": 129, "other": 30},
              "control": {"practitioner": 44, "foam roller": 28, "other": 13}}
    rows = [{"audience_group": ALL, "arm": arm, "variable": "technique", "level": level,
             "statistic": "share", "clients": n, "share": n / sum(counts.values()),
             "missing": 0, "smd": 0.2, "smd_flag": True,
             "measure": f"baseline:technique_{arm}#{level}",
             "missing_measure": f"baseline:technique_{arm}#missing"}
            for arm, counts in levels.items() for level, n in counts.items()]
    table = pd.DataFrame(rows)
    plan = DisclosurePlan(minimum=MINIMUM, by=None, hidden=frozenset(), count_hidden=frozenset(
        {(POOLED, ALL, "baseline:technique_control#other")}))
    shown = protect(table, plan, POOLED)
    control, mfr = shown[shown["arm"] == "control"], shown[shown["arm"] == "mfr"]
    assert control["clients"].tolist() == [44, 28, "withheld"]
    assert control["share"].isna().all() and control["privacy"].ne("").all()
    assert mfr["share"].notna().all() and mfr["privacy"].eq("").all()
    assert shown["smd"].isna().all()  # MFR's shares and the SMD would give control's back
    # nothing hidden: every share stays
    untouched = protect(table, DisclosurePlan(minimum=MINIMUM, by=None, hidden=frozenset()),
                        POOLED)
    assert untouched["share"].notna().all()


def test_a_coarser_variable_goes_when_a_level_it_sums_is_hidden() -> None:
    """Delivery is derived from technique ("self" = foam roller + lacrosse ball + other...):
    with control's "other" technique withheld, control's delivery counts would give it back
    (74 self minus 28 + 19 + 14 shown = 13), and with it the arm's total. So the arm's
    delivery counts are withheld too; the MFR arm, with nothing hidden, keeps them."""
    from mfr_analysis.privacy import DisclosurePlan

    levels = {"technique": {"practitioner": (196, 44), "foam_roller": (129, 28),
                            "lacrosse_ball": (71, 19), "other": (30, 13)},
              "delivery": {"practitioner": (196, 44), "self": (230, 60)}}
    rows = [{"audience_group": ALL, "arm": arm, "variable": variable, "level": level,
             "statistic": "share", "clients": n[i], "share": 0.1, "missing": 0,
             "measure": f"baseline:{variable}_{arm}#{level}",
             "missing_measure": f"baseline:{variable}_{arm}#missing"}
            for variable, counts in levels.items() for level, n in counts.items()
            for i, arm in enumerate(("mfr", "control"))]
    table = pd.DataFrame(rows)
    plan = DisclosurePlan(minimum=MINIMUM, by=None, hidden=frozenset(), count_hidden=frozenset(
        {(POOLED, ALL, "baseline:technique_control#other")}))
    shown = protect(table, plan, POOLED)
    delivery = shown[shown["variable"] == "delivery"]
    assert delivery.loc[delivery["arm"] == "control", "clients"].tolist() == ["withheld"] * 2
    assert delivery.loc[delivery["arm"] == "mfr", "clients"].tolist() == [196, 230]
    technique = shown[(shown["variable"] == "technique") & (shown["arm"] == "control")]
    assert technique["clients"].tolist() == [44, 28, 19, "withheld"]
    untouched = protect(table, DisclosurePlan(minimum=MINIMUM, by=None, hidden=frozenset()),
                        POOLED)
    assert untouched["clients"].tolist() == table["clients"].tolist()


def test_an_arm_worked_out_from_the_other_gives_no_measure_count_back() -> None:
    """Table 1's Missing column beside an arm's size gives the clients with the measure:
    with the control arm's count withheld it is still the group's clients minus the MFR
    arm's, and 20 control athletes minus 17 without a hip measure give the 3 who have one
    (found in a published sample report). The exact audit sees that chain only through
    Table 1's client sets (:func:`baseline_members`), which match Table 1's counts."""
    from mfr_analysis.describe.baseline import baseline_members
    from mfr_analysis.privacy import DisclosurePlan
    from mfr_analysis.privacy_audit import audit_disclosure, folder_members

    sessions = _sessions([("athlete", "mfr", 30, 6.0, 3.0), ("athlete", "control", 20, 6.0, 5.0),
                          ("senior", "mfr", 40, 5.0, 3.0)])
    control_athletes = sessions["client_id"].str.startswith("athlete-control")
    without_hip = control_athletes & (sessions["client_id"].str.rsplit("-", n=1).str[-1]
                                      .astype(int) >= 3)
    sessions = sessions.assign(rom_pre=sessions["rom_pre"].mask(without_hip))
    cells = baseline_cells(baseline_table(sessions), POOLED)
    counts = pd.concat([session_counts(sessions), cells], ignore_index=True)
    # every Table 1 count of a level, a value or its absence has its clients, same size
    sets = baseline_members(sessions, POOLED)
    sizes = {(s, g, m): c for s, g, m, c in cells[["slice", "group", "measure", "clients"]]
             .itertuples(index=False) if "#" in m and not m.startswith("baseline:clients")}
    assert {cell: len(sets.get(cell, ())) for cell in sizes} == sizes
    hip = "baseline:rom_pre_hip_flexion_deg_control"
    assert len(sets[(POOLED, "athlete", f"{hip}#observed")]) == 3
    # a plan that withholds the control arm and the 3 but shows the 17 without a measure
    plan = DisclosurePlan(minimum=MINIMUM, by=None, hidden=frozenset(
        {(POOLED, g, f"{hip}#observed") for g in (ALL, "athlete")}), count_hidden=frozenset(
        {(POOLED, g, m) for g in (ALL, "athlete")
         for m in ("baseline:clients#control", hip)}))
    members = folder_members([(POOLED, sessions, None)], counts)
    _, found = audit_disclosure(members, plan)
    assert 3 in [disclosure.clients for disclosure in found]
    blind = {cell: clients for cell, clients in members.items() if cell not in sets}
    _, found = audit_disclosure(blind, plan)  # without Table 1's sets the chain is unseen
    assert 3 not in [disclosure.clients for disclosure in found]
