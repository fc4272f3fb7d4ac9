"""The outcome-reporting sections (issue 13) on hand-made frames that follow the contract:
the flow diagram's boxes never overlap and stay readable at 420 px, the Jacobson-Truax plot
and the eCDF draw nothing resting on fewer than 11 clients, hidden counts read as words, every
section carries its anchor through nbconvert, and every anchor the checklist links exists."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.report import figures
from mfr_analysis.report import outcome_views as ov

MINIMUM = 11


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def flow_table(reasons: int = 12) -> pd.DataFrame:
    """A flow with ``reasons`` quarantine reasons (one hidden), two arms, follow-up, claims."""
    rows = [("raw", "", "Rows read", 2400, np.nan, ""),
            ("quarantined", "raw", "Quarantined", 300, np.nan, ""),
            ("duplicates", "raw", "Duplicates", 40, np.nan, ""),
            ("clean", "raw", "Clean sessions", 2060, 310, "")]
    rows += [(f"reason{i}", "quarantined", f"reason {i}: a value outside its range", 100 - 7 * i
              if i != 5 else "suppressed", np.nan, "") for i in range(reasons)]
    rows += [("mfr", "clean", "MFR arm", 1500, 220, "mfr"),
             ("control", "clean", "Control arm", 560, 90, "control"),
             ("mfr_pair", "mfr", "With a pain pair", 1400, "suppressed", "mfr"),
             ("control_pair", "control", "With a pain pair", 500, 80, "control"),
             ("mfr_followup", "mfr_pair", "With follow-up", np.nan, 150, "mfr"),
             ("mfr_none", "mfr_pair", "No follow-up", np.nan, 70, "mfr"),
             ("control_followup", "control_pair", "With follow-up", np.nan, 60, "control"),
             ("mfr_pain", "mfr_followup", "Analysed: pain", np.nan, 150, "mfr"),
             ("control_pain", "control_followup", "Analysed: pain", np.nan, 60, "control")]
    return pd.DataFrame(rows, columns=["stage", "parent", "label", "sessions", "clients",
                                       "arm"]).astype({"sessions": object, "clients": object})


def individual(n_mfr: int = 140, n_control: int = 60, seed: int = 1) -> pd.DataFrame:
    """Clients with pre/post pain on the 0-10 grid; S_diff = 1.2 (band 2.352)."""
    rng = np.random.default_rng(seed)
    arm = np.array(["mfr"] * n_mfr + ["control"] * n_control)
    pre = np.clip(np.round(rng.normal(6, 1.5, len(arm))), 0, 10)
    post = np.clip(np.round(pre - np.where(arm == "mfr", 2, 1) + rng.normal(0, 1.2, len(arm))),
                   0, 10)
    change = post - pre
    return pd.DataFrame({"client": range(len(arm)), "audience_group": "all", "arm": arm,
                         "pre": pre, "post": post, "change": change, "rci": change / 1.2})


def box_extents(fig) -> list:
    from matplotlib.patches import FancyBboxPatch

    fig.canvas.draw()
    return [(p.get_gid(), p.get_window_extent()) for p in fig.axes[0].patches
            if isinstance(p, FancyBboxPatch)]


# ------------------------------------------------------------------------- flow ---

@pytest.mark.parametrize("reasons", [3, 12, 25])
def test_flow_boxes_never_overlap_and_hold_their_text(reasons: int) -> None:
    fig = figures.flow_diagram(flow_table(reasons))
    boxes = box_extents(fig)
    for (a, first), (b, second) in itertools.combinations(boxes, 2):
        assert not first.overlaps(second), (a, b)
    renderer = fig.canvas.get_renderer()
    frames = [extent for _, extent in boxes]
    for text in fig.axes[0].texts:
        if text.get_text():
            box = text.get_window_extent(renderer)
            assert any(f.x0 - 1 <= box.x0 and box.x1 <= f.x1 + 1 and f.y0 - 1 <= box.y0
                       and box.y1 <= f.y1 + 1 for f in frames), text.get_text()


def test_flow_lists_the_largest_reasons_and_counts_the_others_without_a_sum() -> None:
    fig = figures.flow_diagram(flow_table(12))
    words = [t.get_text() for t in fig.axes[0].texts]
    joined = " ".join(words)
    # 12 reasons: the five largest listed, the seven others (one hidden) counted, not summed
    # (a quarantined row can carry several reasons, so their sum means nothing)
    assert "reason 0: a value outside" in joined and "reason 11" not in joined
    assert "7 more in the table below" in joined
    assert str(sum(100 - 7 * i for i in range(5, 12))) not in joined
    assert "clients: suppressed" in joined


def test_flow_text_is_readable_on_a_420_px_screen() -> None:
    """The PNG is laid out at its CSS width and scaled to the screen: the smallest text must
    still be at least 9 CSS pixels high at 420 px."""
    from matplotlib.text import Text

    fig = figures.flow_diagram(flow_table(12))
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
    _png, css_width = figures.png_bytes(fig)
    scale = min(1.0, 420 / css_width)
    assert min(sizes) * 96 / 72 * scale >= 9, (min(sizes), css_width)


def test_flow_rows_list_every_reason_and_hide_small_counts() -> None:
    rows = ov.flow_rows(flow_table(12).assign(clients=lambda d: d["clients"].where(
        d["stage"] != "control_pain", 4)))
    assert len(rows) == len(flow_table(12))
    assert rows["label"].str.contains("reason 11").any()
    assert "fewer than 11" in set(rows["clients"]) and "4" not in set(rows["clients"])
    assert "suppressed" in set(rows["sessions"])


# ----------------------------------------------------------------- each client ---

def test_jacobson_truax_draws_only_squares_of_eleven_or_more() -> None:
    from matplotlib.collections import QuadMesh

    data = individual()
    fig = figures.jacobson_truax_plot(data, mcid=2)
    panels = [ax for ax in fig.axes if ax.get_xlabel().startswith("pain before")]
    assert [ax.get_title(loc="left") for ax in panels] == ["MFR clients", "control clients"]
    for ax, arm in zip(panels, ("mfr", "control"), strict=True):
        mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
        drawn = mesh.get_array()
        # the hand count: clients per 1- or 2-point square, those under 11 masked
        edges = np.arange(-1.0, 12.0, 2.0) if drawn.shape == (6, 6) else np.arange(-0.5, 11, 1)
        rows = data[data["arm"] == arm]
        counts, _, _ = np.histogram2d(rows["pre"], rows["post"], bins=[edges, edges])
        expected = np.ma.masked_less(counts.T, MINIMUM)
        assert np.array_equal(np.ma.getmaskarray(drawn), np.ma.getmaskarray(expected))
        assert np.ma.compressed(drawn).min() >= MINIMUM
        assert np.array_equal(np.ma.compressed(drawn), np.ma.compressed(expected))
    # no scatter of clients anywhere
    assert not [c for ax in fig.axes for c in ax.collections
                if len(getattr(c, "get_offsets", lambda: [])()) > 3]


def test_jacobson_truax_band_from_the_rci() -> None:
    # rci = change / S_diff with S_diff 1.2: the band is 1.96 x 1.2 = 2.352
    assert figures.rci_band(individual()) == pytest.approx(2.352)
    assert figures.rci_band(individual(), band=3.0) == 3.0


def test_jacobson_truax_leaves_out_a_small_arm() -> None:
    fig = figures.jacobson_truax_plot(individual(n_mfr=120, n_control=8), mcid=2)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert "MFR clients" in titles and "control clients" not in titles


def test_ecdf_points_rest_on_eleven_clients_each_side() -> None:
    change = pd.Series(np.arange(100, dtype=float))  # quantile p of 0..99 is 99p
    quantiles = figures.change_quantiles(change, MINIMUM)
    assert quantiles.index.min() == pytest.approx(0.15)  # 0.10 x 100 = 10 < 11
    assert quantiles.index.max() == pytest.approx(0.85)
    assert quantiles.loc[0.5] == pytest.approx(49.5)
    assert figures.change_quantiles(change.head(21), MINIMUM).empty  # 21 < 2 x 11


def test_ecdf_never_draws_a_clients_extreme_and_marks_the_mcid() -> None:
    data = individual()
    fig = figures.change_ecdf(data, mcid=2)
    ax = fig.axes[0]
    lines = [line for line in ax.lines if len(line.get_xdata()) > 2]
    assert len(lines) == 2  # one per arm
    for line, arm in zip(lines, ("mfr", "control"), strict=True):
        values = data.loc[data["arm"] == arm, "change"]
        shares = np.asarray(line.get_ydata())
        n = len(values)
        assert (shares * n >= MINIMUM - 1e-9).all() and ((1 - shares) * n >= MINIMUM - 1e-9).all()
    assert any(np.allclose(line.get_xdata(), -2) for line in ax.lines)


# --------------------------------------------------------------------- sections ---

def claims_rows() -> pd.DataFrame:
    base = {"claim_id": "lasting_relief", "outcome": "pain_followup", "mcid": 2.0,
            "design": "controlled", "p_value": 0.01}
    rows = [dict(base, audience_group="all", sensitivity="", method="ANCOVA",
                 estimate=-1.2, ci_low=-1.9, ci_high=-0.5, n_clients=210, verdict="below_threshold",
                 estimate_unadjusted=-1.6, ci_low_unadjusted=-2.4, ci_high_unadjusted=-0.8,
                 covariates="pain before the session", e_value=1.9, e_value_ci=1.4)]
    for approach, estimate, verdict in (("complete_case", -1.2, "below_threshold"),
                                        ("multiple_imputation", -0.9, "below_threshold"),
                                        ("inverse_probability_weighting", -1.0, "below_threshold"),
                                        ("last_observation_carried_forward", -0.3,
                                         "inconclusive")):
        rows.append(dict(base, audience_group="all", sensitivity=approach,
                         method=approach.replace("_", " "), estimate=estimate,
                         ci_low=estimate - 0.6, ci_high=estimate + 0.6, n_clients=210,
                         verdict=verdict))
    rows.append(dict(base, audience_group="senior", sensitivity="complete_case",
                     method="complete case", estimate=np.nan, ci_low=np.nan, ci_high=np.nan,
                     n_clients=np.nan, verdict="suppressed"))
    return pd.DataFrame(rows)


def test_sensitivity_rows_say_robust_and_ignore_locf() -> None:
    rows = ov.sensitivity_rows(claims_rows())
    sentence = ov.robustness_sentence(rows[rows["audience_group"] == "all"])
    assert sentence.startswith("Robust")  # LOCF disagrees, but it never decides
    flipped = rows.assign(verdict=lambda d: d["verdict"].where(
        d["sensitivity"] != "multiple_imputation", "inconclusive"))
    assert ov.robustness_sentence(flipped[flipped["audience_group"] == "all"]).startswith(
        "Not robust")
    table = ov.sensitivity_table(rows[rows["audience_group"] == "senior"])
    assert list(table["clients"]) == ["suppressed"] and not re.search(r"\d", table.iloc[0, 1])


def test_robustness_puts_adjusted_next_to_unadjusted_with_e_values() -> None:
    shown = ov.robustness_display(claims_rows())
    assert len(shown) == 1  # primary controlled rows only, not the sensitivity rows
    row = shown.iloc[0]
    assert row["adjusted"] == "-1.20 [-1.90 to -0.50]"
    assert row["unadjusted"] == "-1.60 [-2.40 to -0.80]"
    assert row["covariates"] == "pain before the session"
    assert row["e_value"] == "1.90 / 1.40" and "1.90" in row["meaning"]
    assert "already includes no difference" in ov.e_value_sentence({"e_value": 1.3,
                                                                    "e_value_ci": 1.0})


def test_baseline_flag_is_words_and_mark_and_small_counts_are_hidden() -> None:
    table = pd.DataFrame({
        "audience_group": ["all"] * 4, "variable": ["pain before", "pain before", "clients",
                                                    "clients"],
        "arm": ["mfr", "control", "mfr", "control"], "mean": [6.1, 5.4, np.nan, np.nan],
        "sd": [1.5, 1.6, np.nan, np.nan], "clients": [np.nan, np.nan, 220, 7],
        "smd": [0.45, 0.45, np.nan, np.nan]})
    shown = ov.baseline_display(table)
    pain = shown.loc[shown["variable"] == "pain before"].iloc[0]
    assert pain["MFR clients"] == "6.1 (1.5)" and pain["smd"] == "0.45 ⚠ imbalanced"
    clients = shown.loc[shown["variable"] == "clients"].iloc[0]
    assert clients["control clients"] == "fewer than 11" and clients["MFR clients"] == "220"
    assert ov.smd_words(0.05) == "0.05 balanced"


def test_a_withheld_mean_reads_withheld_never_its_count_and_missing_is_per_arm() -> None:
    """A protected Table 1 row whose mean went (its arm's missing count is small) shows
    'withheld', not the count of clients it was over (that count beside a derivable arm
    total gives the small count away); each arm's missing count is shown, in arm order."""
    table = pd.DataFrame({
        "audience_group": "all", "variable": "pain_pre", "arm": ["mfr", "control"],
        "statistic": "mean_sd", "mean": [5.1, np.nan], "sd": [1.3, np.nan],
        "clients": [456, 112], "missing": [20, "fewer than 11"],
        "privacy": ["", "withheld for privacy"]})
    shown = ov.baseline_display(table)
    row = shown.iloc[0]
    assert row["MFR clients"] == "5.1 (1.3)" and row["control clients"] == "withheld"
    assert row["missing"] == "20 / fewer than 11"
    assert "112" not in shown.to_string()
    html = ov.baseline_section(table).data
    assert "Missing (MFR / control)" in html and "112" not in html


def test_individual_counts_by_class_with_wilson_intervals() -> None:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(40, 140, method="wilson")
    summary = pd.DataFrame({"audience_group": "all", "arm": ["mfr", "mfr", "control"],
                            "rci_class": ["improved", "unchanged", "improved"],
                            "clients": [40, 100, "suppressed"], "share": [40 / 140, 100 / 140,
                                                                           np.nan],
                            "ci_low": [low, 0.6, np.nan], "ci_high": [high, 0.8, np.nan]})
    shown = ov.individual_display(summary)
    improved = shown.loc[shown["class"] == "improved"].iloc[0]
    assert improved["MFR clients"] == f"40 (29%, 95% CI {low:.0%} to {high:.0%})"
    assert improved["control clients"] == "suppressed"


def sections() -> list:
    summary = pd.DataFrame({"audience_group": "all", "arm": ["mfr", "control"],
                            "rci_class": ["improved", "improved"], "clients": [40, 20],
                            "share": [0.29, 0.33], "ci_low": [0.22, 0.22],
                            "ci_high": [0.37, 0.46]})
    baseline = pd.DataFrame({"audience_group": "all", "variable": ["pain", "pain"],
                             "arm": ["mfr", "control"], "mean": [6.1, 5.4], "sd": [1.5, 1.6],
                             "smd": [0.45, 0.45]})
    completeness = pd.DataFrame({"audience_group": ["all", "all"], "arm": ["mfr", "control"],
                                 "clients": [220, 90], "with_followup": [150, 60],
                                 "share": [0.68, 0.67]})
    return [ov.flow_section(flow_table()), ov.baseline_section(baseline),
            ov.missing_data_section(claims_rows(), completeness),
            ov.individual_section(summary, individual(), 2.0,
                                  {"value": 0.87, "source": "a published source"}),
            ov.robustness_section(claims_rows()), ov.checklist_section()]


def render(path: Path, outputs: list) -> str:
    """The sections through the report's own nbconvert export (anchors must survive it)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    from mfr_analysis.report.run import export_html

    notebook = new_notebook()
    notebook.cells = [new_markdown_cell(f"## {title}") for title in (
        "Scorecard", "Estimates against the clinical threshold", "Responders", "Data quality",
        "Methods")]
    notebook.cells += [new_code_cell("", outputs=[new_output("display_data",
                                                             data={"text/html": o.data})])
                       for o in outputs]
    nbformat.write(notebook, path.with_suffix(".ipynb"))
    assert export_html(path.with_suffix(".ipynb"), path) == []  # the page passes the audit
    return path.read_text(encoding="utf-8")


def test_every_section_anchor_and_checklist_link_survives_nbconvert(tmp_path: Path) -> None:
    from tests.test_report_safety import assert_inert

    page = render(tmp_path / "sections.html", sections())
    assert_inert(page, "sections.html")  # only the pages' allowed tags, no live markup
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    assert set(ov.ANCHORS) <= ids
    assert set(ov.checklist_anchors()) <= ids
    links = set(re.findall(r'href="#([^"]+)"', page))
    assert set(ov.checklist_anchors()) <= links


def test_sections_escape_data_text(tmp_path: Path) -> None:
    hostile = flow_table(3).assign(label=lambda d: d["label"].where(
        d["stage"] != "reason0", '<img src=x onerror=alert(1)>'))
    html = ov.flow_section(hostile).data
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_checklist_covers_each_standard_and_says_why_not() -> None:
    checklist = ov.reporting_checklist()
    assert {"CONSORT", "CONSORT-PRO", "RECORD", "STROBE", "SAMPL"} <= set(checklist["standard"])
    assert checklist["item_id"].is_unique
    missing = checklist.loc[checklist["anchor"] == ""]
    assert len(missing) and missing["reason"].str.startswith("not available in these logs").all()
    assert set(ov.ANCHORS) - {"checklist"} <= set(checklist["anchor"])


def test_followup_tables_show_whole_counts_and_hide_small_ones() -> None:
    completeness = pd.DataFrame({"audience_group": ["all", "senior"], "arm": ["mfr", "mfr"],
                                 "with_followup": [150, 7], "share": [0.68, 0.5],
                                 "mean_pain_pre": [6.25, 5.0]})
    html = ov.missing_data_section(claims_rows(), completeness).data
    assert ">150<" in html and ">fewer than 11<" in html and ">7<" not in html
    assert ">68%<" in html and ">6.25<" in html and "Seniors" in html


def test_claim_mcid_reads_the_pooled_pain_row() -> None:
    claims = pd.DataFrame({"claim_id": ["pain", "pain", "stress"],
                           "outcome": ["pain", "pain", "stress"],
                           "audience_group": ["senior", "all", "all"],
                           "mcid": [2.5, 1.5, 2.0]})
    assert ov.claim_mcid(claims) == 1.5
    assert ov.claim_mcid(claims, "rom") is None


def test_robustness_section_says_each_e_value_in_a_sentence() -> None:
    html = ov.robustness_section(claims_rows()).data
    assert 'id="robustness"' in html and "What the E-values mean" in html
    assert "by a factor of 1.90 each" in html and "by 1.40 to move its interval" in html
    assert "-1.60 [-2.40 to -0.80]" in html and "pain before the session" in html


def test_reliability_from_a_data_table_row_with_its_source() -> None:
    row = pd.Series({"outcome": "pain", "measure": "test-retest reliability", "value": 0.87,
                     "source": "Author et al. 2000"})
    summary = pd.DataFrame({"arm": ["mfr"], "rci_class": ["improved"], "clients": [40]})
    html = ov.individual_section(summary, individual(), 2.0, row).data
    assert "r = 0.87" in html and "Source: Author et al. 2000." in html
    assert "more than 2.4 points" in html  # 1.96 x S_diff 1.2 = 2.35


def test_flow_rows_follow_the_tree_depth_first() -> None:
    rows = ov.flow_rows(flow_table(3))
    labels = list(rows["label"])
    mfr = labels.index("MFR arm")
    assert labels[mfr + 1:mfr + 4] == ["With a pain pair (MFR arm)",
                                       "With follow-up (MFR arm)", "Analysed: pain (MFR arm)"]
    assert labels.index("reason 0: a value outside its range") == labels.index("Quarantined") + 1
    assert list(rows["depth"])[:2] == [0, 1]


def test_a_notebook_given_protected_claims_needs_their_plan() -> None:
    """Without the folder's plan, the describe tables would be shown unprotected."""
    from mfr_analysis.errors import InputError
    from mfr_analysis.privacy import DisclosurePlan
    from mfr_analysis.report.disclosure import report_plan

    plan = DisclosurePlan(11, "site", frozenset({("a", "all", "flow:arms#control")}),
                          count_hidden=frozenset({("a", "all", "flow:arms#mfr")}))
    assert report_plan(plan.to_dict()) == plan
    with pytest.raises(InputError, match="disclosure_plan"):
        report_plan({})
