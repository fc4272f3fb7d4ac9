"""Figures a clinician can trust at a glance: designs marked by shape, odds ratios as ratios on
a log axis, rounded thresholds, responders per outcome and arm with Wilson intervals, before
and after by arm with client counts, one colour-blind-safe palette, legends off the data, and
verdict colours that stay apart under colour-vision deficiency.

Assertions are on the figure objects (artists, scales, tick labels, colours, legend boxes),
never on pixels.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure, SubFigure
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from mfr_analysis.report import figures
from mfr_analysis.tables import load_table

MINIMUM = 11


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures made by a test are closed after it."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
GROUPS = ("athlete", "senior", "desk_worker", "rehab", "chronic_pain")


# ------------------------------------------------------------------------ helpers ---

def texts(fig: Figure) -> list[str]:
    """Every text the figure draws: titles, labels, tick labels, legend entries, notes."""
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def marker_of(collection: PathCollection) -> str:
    """Which of the design markers a scatter collection draws."""
    vertices = collection.get_paths()[0].vertices
    for marker in ("o", "^", "s", "D", "v"):
        style = MarkerStyle(marker)
        path = style.get_path().transformed(style.get_transform())
        if path.vertices.shape == vertices.shape and np.allclose(path.vertices, vertices):
            return marker
    raise AssertionError("unknown marker")


def data_points(fig: Figure) -> np.ndarray:
    """Display coordinates of every plotted data point: scatter offsets, line vertices and
    the corners of bars."""
    points = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for collection in ax.collections:
            offsets = collection.get_offsets()
            if len(offsets):
                points.append(collection.get_offset_transform().transform(offsets))
        for line in ax.lines:
            xy = line.get_xydata()
            if len(xy):
                points.append(line.get_transform().transform(xy))
        for patch in ax.patches:
            if isinstance(patch, Rectangle) and patch.get_width() > 0:
                corners = patch.get_bbox().get_points()
                points.append(patch.get_transform().transform(corners))
    stacked = np.vstack(points)
    return stacked[np.isfinite(stacked).all(axis=1)]


def assert_legends_clear_of_data(fig: Figure) -> None:
    """No legend box covers a plotted data point."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, "the figure has a legend"
    points = data_points(fig)
    for legend in legends:
        box = legend.get_window_extent(renderer)
        inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
                  & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))
        assert not inside.any(), f"legend covers {int(inside.sum())} data point(s)"


def legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def claims_frame(**columns: list) -> pd.DataFrame:
    """A protected claims table with the engine's columns (design, counts, responders)."""
    return pd.DataFrame(columns)


def forest_claims() -> pd.DataFrame:
    return claims_frame(
        claim_id=["pain"] * 3,
        audience_group=["all", "athlete", "senior"],
        outcome=["pain"] * 3,
        estimate=[-1.1, -1.4, -0.6],
        ci_low=[-1.3, -1.6, -1.0],
        ci_high=[-0.9, -1.2, -0.2],
        mcid=[2.0] * 3,
        n_clients=[298, 53, 65],
        n_control_clients=[57, 0, 12],
        design=["controlled", "uncontrolled", "controlled"],
        verdict=["below_threshold", "below_threshold", "no_meaningful_effect"],
        unit=["points"] * 3,
    )


# ---------------------------------------------------------------- forest plots ---

def test_forest_points_state_their_design_by_shape_with_legend_words() -> None:
    claims = pd.concat([forest_claims(), claims_frame(
        claim_id=["pain"], audience_group=["rehab"], outcome=["pain"], estimate=[-0.4],
        ci_low=[-0.8], ci_high=[0.0], mcid=[2.0], n_clients=[40], n_control_clients=[0],
        design=["observational"], verdict=["no_association_shown"], unit=["points"])])
    fig = figures.forest_plot(claims, "pain")
    ax = fig.axes[0]
    drawn = {marker_of(c): len(c.get_offsets()) for c in ax.collections
             if isinstance(c, PathCollection) and len(c.get_offsets())}
    assert drawn == {"o": 2, "^": 1, "s": 1}  # circle vs control, triangle, square
    words = legend_texts(fig)
    for expected in ("vs control", "before → after, no control", "association"):
        assert expected in words
    handles = {t.get_text(): h for legend in fig.legends
               for h, t in zip(legend.legend_handles, legend.get_texts(), strict=True)}
    assert handles["vs control"].get_marker() == "o"
    assert handles["before → after, no control"].get_marker() == "^"
    assert handles["association"].get_marker() == "s"
    # the verdict is written beside each row, so colour is never the only cue
    shown = texts(fig)
    assert shown.count("Real but small") == 2 and "No meaningful effect" in shown
    assert_legends_clear_of_data(fig)


def test_forest_rows_say_their_client_counts_but_never_a_small_control_count() -> None:
    claims = forest_claims().assign(n_control_clients=[57, 0, 9])  # seniors: 9 control clients
    fig = figures.forest_plot(claims, "pain", MINIMUM)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "All clients\n298 clients (57 control)" in labels
    assert "Athletes\n53 clients" in labels
    assert "Seniors\n65 clients" in labels  # 9 control clients: not printed
    assert not any("9 control" in label for label in labels)


def test_odds_ratios_sit_on_a_log_axis_labelled_as_ratios() -> None:
    claims = claims_frame(
        claim_id=["pressure_safety"] * 2, audience_group=["all", "athlete"],
        outcome=["adverse_event"] * 2, estimate=[1.65, 1.26], ci_low=[1.22, 0.81],
        ci_high=[2.24, 1.95], mcid=[np.nan] * 2, n_clients=[242, 53],
        n_control_clients=[0, 0], design=["observational"] * 2,
        verdict=["association_shown", "no_association_shown"],
        unit=["odds ratio per pressure point"] * 2)
    fig = figures.forest_plot(claims, "pressure_safety")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xscale() == "log"
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "×1" in ticks and len(ticks) >= 3
    assert all(t.startswith("×") for t in ticks), ticks
    assert not any(t.startswith("+") or "1.65" in t and "+" in t for t in texts(fig))
    low, high = ax.get_xlim()
    assert low < 0.81 and high > 2.24  # the whole interval is drawn
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "-"
            and len(set(line.get_xdata())) == 1][0] == 1.0  # no-difference line at ×1
    assert figures.ratio_label(1.65) == "×1.65"


def test_thresholds_are_rounded_and_lasting_relief_panels_are_named_apart() -> None:
    claims = claims_frame(
        claim_id=["lasting_relief"] * 4, audience_group=["all", "athlete"] * 2,
        outcome=["pain_pre", "pain_pre", "pain_followup", "pain_followup"],
        estimate=[-0.1, 0.0, -0.8, -0.8], ci_low=[-0.2, -0.1, -1.1, -1.2],
        ci_high=[0.03, 0.1, -0.5, -0.4], mcid=[0.636, 0.636, 2.0, 2.0],
        n_clients=[299, 53, 216, 38], n_control_clients=[57, 0, 37, 0],
        design=["controlled", "uncontrolled"] * 2, verdict=["no_meaningful_effect"] * 4,
        unit=["points per week", "points per week", "points", "points"])
    fig = figures.forest_plot(claims, "lasting_relief")
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert len(titles) == 2 and titles[0] != titles[1]
    assert "per week" in titles[0] and "follow-up" in titles[1]
    assert "MCID ±0.6 points per week" in titles[0]
    assert "MCID ±2 points" in titles[1]
    assert not any("0.636" in t for t in texts(fig))
    assert [figures.format_threshold(v) for v in (0.636, 2.0, 2.5, 10.0, 0.05)] == [
        "0.6", "2", "2.5", "10", "0.05"]


def test_per_group_thresholds_are_drawn_per_row_and_named_as_a_range() -> None:
    claims = forest_claims().assign(mcid=[0.56, 0.67, 0.5])
    fig = figures.forest_plot(claims, "pain")
    assert "MCID ±0.5 to ±0.7 points, per group" in fig.axes[0].get_title(loc="left")


# ---------------------------------------------------------------------- responders ---

def responder_claims() -> pd.DataFrame:
    return claims_frame(
        claim_id=["pain", "pain", "rom", "lasting_relief", "lasting_relief", "tightness"],
        audience_group=["all", "athlete", "all", "all", "all", "all"],
        outcome=["pain", "pain", "rom:hip_flexion_deg", "pain_pre", "pain_followup",
                 "tightness"],
        design=["controlled", "uncontrolled", "controlled", "controlled", "controlled",
                "controlled"],
        mcid=[2.0, 2.0, 5.0, 0.56, 2.0, 2.0],
        unit=["points", "points", "degrees", "points per week", "points", "points"],
        verdict=["below_threshold"] * 6,
        responder_share=[113 / 241, 31 / 53, 33 / 51, 15 / 230, 36 / 179, np.nan],
        responders=[113, 31, 33, 15, 36, 3],
        responder_clients=[241, 53, 51, 230, 179, 238],
        responders_control=[12, np.nan, 0, 20, 0, 2],
        responder_clients_control=[57, np.nan, 18, 54, 37, 56],
    )


def bars_by_panel(fig: Figure) -> dict[str, list[Rectangle]]:
    return {ax.get_title(loc="left"): [p for p in ax.patches if isinstance(p, Rectangle)
                                        and p.get_height() > 0 and p.get_width() >= 0]
            for ax in fig.axes if ax.get_visible() and ax.get_title(loc="left")}


def test_responders_one_panel_per_outcome_mfr_and_control_side_by_side() -> None:
    from mfr_analysis.report.views import responder_table

    fig = figures.responder_bars(responder_table(responder_claims()))
    panels = bars_by_panel(fig)
    titles = list(panels)
    # each outcome apart: ROM included, the two lasting-relief rows named apart
    assert any(t.startswith("More range of motion: hip flexion") for t in titles)
    relief = [t for t in titles if t.startswith("Lasting relief")]
    assert len(relief) == 2 and any("follow-up" in t for t in relief) and any(
        "per week" in t for t in relief)
    pain = next(bars for title, bars in panels.items() if title.startswith("Pain relief"))
    mfr, control = to_hex(figures.arm_colour("mfr")), to_hex(figures.arm_colour("control"))
    colours = [to_hex(bar.get_facecolor()) for bar in pain]
    assert colours.count(mfr) == 2 and colours.count(control) == 1  # athletes: no control
    control_bar = next(b for b in pain if to_hex(b.get_facecolor()) == control)
    assert control_bar.get_hatch()  # the control arm differs by pattern, not colour only
    all_mfr = max((b for b in pain if to_hex(b.get_facecolor()) == mfr),
                  key=lambda b: b.get_y())
    assert abs(all_mfr.get_width() - 113 / 241) < 1e-9
    assert abs(control_bar.get_y() + control_bar.get_height() - all_mfr.get_y()) < 0.1
    shown = texts(fig)
    assert f"{113 / 241:.0%}" in shown and f"{12 / 57:.0%}" in shown  # the percentage on a bar
    assert "MFR clients" in legend_texts(fig) and "control clients" in legend_texts(fig)
    assert "95% interval (Wilson)" in legend_texts(fig)
    assert_legends_clear_of_data(fig)


def test_responder_panels_stand_in_one_column_as_wide_as_a_forest_plot() -> None:
    """On a phone the figure is scaled to the screen: a two-column grid was unreadable."""
    from mfr_analysis.report.views import responder_table

    fig = figures.responder_bars(responder_table(responder_claims()))
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title(loc="left")]
    assert len(panels) >= 4
    assert len({round(ax.get_position().x0, 6) for ax in panels}) == 1
    tops = [ax.get_position().y1 for ax in panels]
    assert tops == sorted(tops, reverse=True)  # one under the other, in the table's order
    forest = figures.forest_plot(forest_claims(), "pain")
    assert fig.get_size_inches()[0] == figures.figure_of(forest).get_size_inches()[0]


def test_responder_intervals_are_wilson_intervals_of_the_tables_counts() -> None:
    from statsmodels.stats.proportion import proportion_confint

    from mfr_analysis.report.views import responder_table

    fig = figures.responder_bars(responder_table(responder_claims().iloc[:1]))
    ax = next(ax for ax in fig.axes if ax.get_visible() and ax.get_title(loc="left"))
    spans = sorted(tuple(np.round(segment[:, 0], 9)) for collection in ax.collections
                   for segment in collection.get_segments() if segment[0, 1] == segment[1, 1])
    expected = sorted(tuple(np.round(proportion_confint(k, n, method="wilson"), 9))
                      for k, n in ((113, 241), (12, 57)))
    assert spans == expected


def test_responder_bars_draw_nothing_that_would_give_away_a_few_clients() -> None:
    from mfr_analysis.report.views import responder_table

    claims = responder_claims()
    claims.loc[0, "responders_control"] = 5  # all clients' pain: 5 control responders
    claims.loc[2, ["responders_control", "responder_clients_control"]] = np.nan  # hidden
    fig = figures.responder_bars(responder_table(claims), MINIMUM)
    panels = bars_by_panel(fig)
    # tightness: 3 MFR responders, 2 control responders: nothing to draw, outcome left out
    assert not any(title.startswith("Less tight") for title in panels)
    assert "1 group row(s) with no bar to show are left out" in legend_texts(fig)
    control = to_hex(figures.arm_colour("control"))
    pain = next(bars for title, bars in panels.items() if title.startswith("Pain relief"))
    hip = next(bars for title, bars in panels.items() if "hip flexion" in title)
    assert not any(to_hex(b.get_facecolor()) == control for b in pain + hip)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert notes.count("control: withheld") == 2  # small (pain) and hidden (hip flexion)
    assert "no control arm" in notes  # athletes' pain: an uncontrolled comparison
    assert f"{5 / 57:.0%}" not in notes and f"{3 / 238:.0%}" not in notes
    assert any(text.startswith("withheld: fewer than 11") for text in legend_texts(fig))
    # a row the protection suppressed draws nothing at all
    assert responder_table(claims.assign(verdict="suppressed")).empty


# -------------------------------------------------------------- before and after ---

def arm_sessions(controls: dict[str, int]) -> pd.DataFrame:
    """Per group: 30 MFR clients and ``controls[group]`` control clients, 2 sessions each."""
    rng = np.random.default_rng(5)
    rows = []
    for group, n_control in controls.items():
        for arm, n in (("mfr", 30), ("control", n_control)):
            for i in range(n):
                for _ in range(2):
                    rows.append({"client_id": f"{group}-{arm}-{i}", "audience_group": group,
                                 "arm": arm, "pain_pre": rng.uniform(3, 8),
                                 "pain_post": rng.uniform(1, 7)})
    frame = pd.DataFrame(rows)
    return frame.assign(audience_group=frame["audience_group"].astype("category"),
                        arm=frame["arm"].astype("category"))


def pain_rows(**columns: list) -> pd.DataFrame:
    """Protected rows of the pain claim for athletes and seniors."""
    base = {"claim_id": ["pain", "pain"], "outcome": ["pain", "pain"],
            "audience_group": ["athlete", "senior"], "verdict": ["below_threshold"] * 2,
            "design": ["controlled", "uncontrolled"], "n_clients": [50, 30],
            "n_control_clients": [20, 0]}
    return claims_frame(**{**base, **columns})


def test_before_after_is_split_by_arm_and_says_how_many_clients_each_mean_rests_on() -> None:
    sessions = arm_sessions({"athlete": 20, "senior": 5})
    fig = figures.paired_before_after(sessions, "pain", MINIMUM, claims=pain_rows())
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    assert list(axes) == ["Athletes", "Seniors"]
    colours = {name: {to_hex(line.get_color()) for line in ax.lines if len(line.get_xdata())}
               for name, ax in axes.items()}
    mfr, control = to_hex(figures.arm_colour("mfr")), to_hex(figures.arm_colour("control"))
    assert {mfr, control} <= colours["Athletes"]
    assert control not in colours["Seniors"]  # 5 control clients: not drawn
    assert axes["Athletes"].get_xlabel() == "means of 30 MFR\nand 20 control clients"
    seniors = axes["Seniors"].get_xlabel()
    assert seniors == "means of 30 MFR\nclients\n(control arm under 11 clients: not drawn)"
    # the drawn means are the means of the arm's client means
    per_client = sessions.groupby(["audience_group", "arm", "client_id"], observed=True)[
        ["pain_pre", "pain_post"]].mean()
    expected = per_client.loc[("athlete", "control")].mean().to_numpy()
    drawn = [line.get_ydata() for line in axes["Athletes"].lines
             if to_hex(line.get_color()) == control and len(line.get_xdata()) == 2]
    assert any(np.allclose(ys, expected) for ys in drawn)
    assert_legends_clear_of_data(fig)


def test_before_after_prints_only_counts_the_protected_table_shows() -> None:
    sessions = arm_sessions({"athlete": 20, "senior": 12})
    hidden = pain_rows(verdict=["suppressed", "below_threshold"], n_clients=[np.nan, 42],
                       design=["controlled", "controlled"], n_control_clients=[np.nan, np.nan])
    fig = figures.paired_before_after(sessions, "pain", MINIMUM, claims=hidden)
    labels = {ax.get_title(): ax.get_xlabel() for ax in fig.axes if ax.get_title()}
    # athletes: the row is suppressed (complementary); seniors: the control count is hidden
    assert labels == {"Athletes": "means of MFR and control\nclients",
                      "Seniors": "means of MFR and control\nclients"}
    unmatched = pain_rows(design=["controlled", "controlled"], n_clients=[51, 42],
                          n_control_clients=[20, 12])  # athletes: 31 MFR in the table
    fig = figures.paired_before_after(sessions, "pain", MINIMUM, claims=unmatched)
    labels = {ax.get_title(): ax.get_xlabel() for ax in fig.axes if ax.get_title()}
    assert labels["Athletes"] == "means of MFR and control\nclients"
    assert labels["Seniors"] == "means of 30 MFR\nand 12 control clients"
    alone = figures.paired_before_after(sessions, "pain", MINIMUM)  # no table: no numbers
    assert not any(ch.isdigit() for ax in alone.axes for ch in ax.get_xlabel())


def test_before_after_without_an_arm_column_is_all_mfr() -> None:
    sessions = arm_sessions({"athlete": 0}).drop(columns="arm")
    fig = figures.paired_before_after(sessions, "pain", MINIMUM,
                                      claims=pain_rows(design=["uncontrolled"] * 2,
                                                       n_clients=[30, 30]))
    ax = next(ax for ax in fig.axes if ax.get_title() == "Athletes")
    assert ax.get_xlabel() == "means of 30 MFR\nclients (no control clients)"


# ---------------------------------------------------------- palette, dpi, legends ---

def weekly_sessions() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = [{"client_id": f"{g}{i}", "audience_group": g, "weeks_since_start": w + 0.5,
             "pain_pre": rng.uniform(2, 8)}
            for g in GROUPS for i in range(15) for w in range(4)]
    frame = pd.DataFrame(rows)
    return frame.assign(audience_group=frame["audience_group"].astype("category"))


def test_every_figure_uses_the_one_group_colour_map_with_a_second_cue() -> None:
    from mfr_analysis.report.quality import rating_shares

    palette = load_table("palette").query("kind == 'group'").set_index("key")
    trajectories = figures.pain_trajectories(weekly_sessions(), MINIMUM)
    drawn = {to_hex(line.get_color()): line.get_marker() for line in trajectories.axes[0].lines
             if len(line.get_xdata())}
    for group in GROUPS:
        assert drawn[to_hex(palette.loc[group, "colour"])] == palette.loc[group, "marker"]
    assert len(set(palette.loc[list(GROUPS), "marker"])) == len(GROUPS)
    assert_legends_clear_of_data(trajectories)
    shares = rating_shares(weekly_sessions(), ["pain_pre"], MINIMUM)
    ratings = figures.rating_bars(shares)
    for ax in ratings.axes:
        group = {v.lower(): k for k, v in palette["colour"].items()}[
            to_hex(next(p for p in ax.patches if isinstance(p, Rectangle)).get_facecolor())]
        assert ax.get_ylabel() == figures.group_label(group)  # direct label beside the colour


def test_figures_are_drawn_for_print_and_high_density_screens() -> None:
    assert figures.FIGURE_DPI >= 150
    made = [figures.forest_plot(forest_claims(), "pain"),
            figures.pain_trajectories(weekly_sessions(), MINIMUM),
            figures.paired_before_after(arm_sessions({"athlete": 20}), "pain", MINIMUM,
                                        claims=pain_rows()),
            figures.responder_bars(responder_claims())]
    assert all(fig.get_dpi() >= 150 for fig in made)


def test_embedded_figures_are_sharp_small_and_laid_out_at_their_size() -> None:
    import base64
    import io
    import re

    from PIL import Image

    from mfr_analysis.report.views import show_figure

    html = show_figure(figures.forest_plot(forest_claims(), "pain"), alt="pain").data
    width = int(re.search(r'width="(\d+)"', html).group(1))
    png = base64.b64decode(re.search(r"base64,([^\"]+)", html).group(1))
    image = Image.open(io.BytesIO(png))
    assert image.width / width == pytest.approx(figures.FIGURE_DPI / 96, rel=0.01)
    assert image.mode == "P"  # a 256-colour palette: small enough to embed
    assert len(png) < 120_000


def test_group_colours_stay_apart_under_colour_vision_deficiency() -> None:
    """Group colours carry a marker too; still, no two may look alike (Okabe-Ito)."""
    palette = load_table("palette").query("kind == 'group'")
    colours = dict(zip(palette["key"], palette["colour"], strict=True))
    assert min_distance(colours) >= GROUP_MINIMUM_DELTA_E


# ---------------------------------------------------- colour-vision deficiency test ---
# Machado, Oliveira & Fernandes (2009), "A physiologically-based model for simulation of
# color vision deficiency", IEEE TVCG 15(6):1291-1298, Table: severity 1.0 (dichromacy),
# applied to linear RGB.
CVD_MATRICES = {
    "normal vision": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779],
                            [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
# A verdict colour must differ from every other by at least this CIEDE2000 difference, for
# every vision above. ~2.3 is just noticeable side by side; 12 is an obvious difference
# between two scorecard cells seen apart.
VERDICT_MINIMUM_DELTA_E = 12.0
GROUP_MINIMUM_DELTA_E = 8.0
# Verdicts that carry no estimate share one near-white family on purpose (their words
# differ); each must still stand apart from every verdict that has one.
NO_RESULT = ("not_measured", "insufficient_data", "suppressed")
# sRGB (D65) -> XYZ, IEC 61966-2-1
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def linear_rgb(colour: str) -> np.ndarray:
    c = np.asarray(to_rgb(colour))
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def lab(linear: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of a linear-RGB colour."""
    xyz = SRGB_TO_XYZ @ np.clip(linear, 0, 1) / (SRGB_TO_XYZ @ np.ones(3))
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005, Color Res Appl 30:21)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = l2 - l1, c2p - c1p
    dh = h2p - h1p
    if c1p * c2p == 0:
        dh = 0.0
    elif dh > 180:
        dh -= 360
    elif dh < -180:
        dh += 360
    dh_big = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_mean = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_mean = (h1p + h2p) / 2
    else:
        h_mean = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    d_theta = 30 * np.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(cp_mean ** 7 / (cp_mean ** 7 + 25 ** 7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return float(np.sqrt((dl / s_l) ** 2 + (dc / s_c) ** 2 + (dh_big / s_h) ** 2
                         + r_t * (dc / s_c) * (dh_big / s_h)))


def seen(colour: str, vision: str) -> np.ndarray:
    return lab(CVD_MATRICES[vision] @ linear_rgb(colour))


def min_distance(colours: dict[str, str], apart: set[frozenset[str]] | None = None) -> float:
    """The smallest CIEDE2000 difference between two colours a reader must tell apart,
    over every vision simulated."""
    pairs = [(a, b) for a, b in itertools.combinations(colours, 2)
             if apart is None or frozenset((a, b)) in apart]
    return min(ciede2000(seen(colours[a], vision), seen(colours[b], vision))
               for vision in CVD_MATRICES for a, b in pairs)


@pytest.mark.parametrize(("lab1", "lab2", "expected"), [  # Sharma et al. 2005, Table 1
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
])
def test_the_colour_difference_is_ciede2000(lab1, lab2, expected) -> None:
    assert ciede2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)


def test_the_simulation_keeps_greys_grey_and_merges_red_with_green() -> None:
    """Sanity of the matrices: neutral colours are unchanged; a red and a green that normal
    vision tells apart easily look far more alike to a deuteranope."""
    for vision in CVD_MATRICES:
        assert np.allclose(CVD_MATRICES[vision] @ np.ones(3), 1, atol=1e-3)
    red, green = "#cf222e", "#1a7f37"
    normal = ciede2000(seen(red, "normal vision"), seen(green, "normal vision"))
    assert ciede2000(seen(red, "deuteranopia"), seen(green, "deuteranopia")) < normal / 4


def verdict_colours() -> dict[str, str]:
    table = load_table("report_labels").query("kind == 'verdict'")
    return dict(zip(table["key"], table["colour"], strict=True))


def test_verdict_colours_stay_apart_under_protanopia_and_deuteranopia() -> None:
    from mfr_analysis.claims import VERDICTS

    colours = verdict_colours()
    assert set(VERDICTS) | {"suppressed"} <= set(colours)
    # every pair a reader must tell apart: any two verdicts, except two that carry no estimate
    apart = {frozenset(p) for p in itertools.combinations(colours, 2)
             if not set(p) <= set(NO_RESULT)}
    worst = {vision: min(ciede2000(seen(colours[a], vision), seen(colours[b], vision))
                         for a, b in map(tuple, apart))
             for vision in CVD_MATRICES}
    assert min(worst.values()) >= VERDICT_MINIMUM_DELTA_E, worst


# ------------------------------------------------ an analyst's notebook (seaborn-like) ---

KERNEL_CHECK = """
import json, matplotlib
backend = matplotlib.get_backend()
before = {key: repr(value) for key, value in matplotlib.rcParams.items()}
from mfr_analysis.report import figures
imported = {key: repr(value) for key, value in matplotlib.rcParams.items()}
figures.row_flow({"rows_in": 10, "rows_clean": 8, "rows_quarantined": 1, "rows_duplicate": 1})
import matplotlib.pyplot as plt
drawn = {key: repr(value) for key, value in matplotlib.rcParams.items()}
print(json.dumps({
    "backend": [backend, matplotlib.get_backend()],
    "changed_by_import": sorted(k for k in before if imported.get(k) != before[k]),
    "changed_by_drawing": sorted(k for k in before if drawn.get(k) != before[k]),
    "pyplot_figures": plt.get_fignums()}))
plt.plot([1, 2], [2, 1])
"""


SHOWN_WHEN_RETURNED = """
from mfr_analysis.report import figures
figures.row_flow({"rows_in": 10, "rows_clean": 8, "rows_quarantined": 1, "rows_duplicate": 1})
"""


def run_in_kernel(*cells: str) -> list[list[dict]]:
    """Run cells in a fresh Jupyter kernel of this environment; each one's output messages."""
    from jupyter_client.manager import start_new_kernel

    from mfr_analysis.report.run import ensure_kernel

    manager, client = start_new_kernel(kernel_name=ensure_kernel())
    outputs: list[list[dict]] = []
    try:
        for code in cells:
            outputs.append([])
            reply = client.execute_interactive(code, timeout=120,
                                               output_hook=outputs[-1].append)
            assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return outputs


def images(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["msg_type"] == kind and "image/png" in m["content"]["data"]]


def test_importing_the_figures_changes_no_global_state_in_a_jupyter_kernel() -> None:
    """The analyst's own inline plots keep showing: no backend switch, no theme, no rcParams
    changed by importing the module or by drawing a report figure, no pyplot figure made."""
    [messages] = run_in_kernel(KERNEL_CHECK)
    printed = "".join(m["content"]["text"] for m in messages
                      if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
    state = json.loads(printed)
    before, after = state["backend"]
    assert after == before and "inline" in before
    assert state["changed_by_import"] == []
    assert state["changed_by_drawing"] == []
    assert state["pyplot_figures"] == []  # the report's figure is not pyplot's
    assert len(images(messages, "display_data")) == 1  # the analyst's plt.plot, inline


def test_a_returned_figure_shows_itself_in_a_notebook_without_pyplot() -> None:
    [messages] = run_in_kernel(SHOWN_WHEN_RETURNED)
    import base64
    import io

    from PIL import Image

    [shown] = images(messages, "execute_result")
    image = Image.open(io.BytesIO(base64.b64decode(shown["content"]["data"]["image/png"])))
    width = shown["content"]["metadata"]["image/png"]["width"]  # CSS pixels, as in a report
    assert width == round(image.width * 96 / figures.FIGURE_DPI)


def outcome_claims() -> pd.DataFrame:
    rows = forest_claims()
    return pd.concat([rows, rows.assign(outcome="pain_followup", claim_id="pain")],
                     ignore_index=True)


def test_one_panel_figures_draw_into_the_callers_axes_and_return_it() -> None:
    fig = Figure(layout="constrained")
    left, right = fig.subplots(1, 2)
    report = {"rows_in": 10, "rows_clean": 7, "rows_quarantined": 2, "rows_duplicate": 1}
    assert figures.row_flow(report, ax=left) is left
    assert [int(p.get_width()) for p in left.patches] == [1, 2, 7]
    drawn = figures.pain_trajectories(weekly_sessions(), MINIMUM, ax=right)
    assert drawn is right and right.get_legend() is not None and not fig.legends
    assert fig.axes[:2] == [left, right]
    assert isinstance(figures.row_flow(report), Figure)  # without ax: a new Figure


def test_multi_panel_figures_take_the_place_of_the_callers_axes() -> None:
    fig = Figure(layout="constrained")
    mine, theirs = fig.subplots(1, 2)
    area = figures.forest_plot(outcome_claims(), "pain", ax=theirs)
    assert isinstance(area, SubFigure) and area in fig.subfigs
    assert theirs not in fig.axes and mine in fig.axes
    assert len(area.axes) == 2  # one panel per outcome, inside the caller's figure
    fixed = Figure().add_axes((0.1, 0.1, 0.8, 0.8))
    with pytest.raises(ValueError, match="grid"):
        figures.rating_bars(pd.DataFrame({"audience_group": ["athlete"], "field": ["pain_pre"],
                                          "low": [0], "high": [10], "share": [1.0]}), ax=fixed)


def test_palette_is_a_mapping_or_a_seaborn_palette_name() -> None:
    import seaborn as sns

    sessions = weekly_sessions()
    mine = {g: "#000000" if g == "athlete" else "#ff0000" for g in GROUPS}
    fig = figures.pain_trajectories(sessions, MINIMUM, palette=mine)
    colours = {to_hex(line.get_color()) for line in fig.axes[0].lines if len(line.get_xdata())}
    assert colours == {"#000000", "#ff0000"}
    named = figures.pain_trajectories(sessions, MINIMUM, palette="viridis")
    colours = {to_hex(line.get_color()) for line in named.axes[0].lines
               if len(line.get_xdata())}
    assert colours == {to_hex(c) for c in sns.color_palette("viridis", len(GROUPS))}
    with pytest.raises(ValueError, match="no colour for 'senior'"):
        figures.pain_trajectories(sessions, MINIMUM, palette={"athlete": "red"})
    arms = figures.paired_before_after(arm_sessions({"athlete": 20}), "pain", MINIMUM,
                                       palette={"mfr": "#123456", "control": "#654321"})
    lines = {to_hex(line.get_color()) for ax in arms.axes for line in ax.lines}
    assert {"#123456", "#654321"} <= lines


def test_the_report_look_is_applied_when_drawn_not_left_behind() -> None:
    """Ticks are laid out when a figure is drawn, in the report's look (seaborn's notebook
    context), whatever rcParams say then; rcParams are as they were."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    report = {"rows_in": 10, "rows_clean": 7, "rows_quarantined": 2, "rows_duplicate": 1}
    with matplotlib.rc_context({"font.size": 4.0, "xtick.labelsize": 4.0}):
        fig = figures.row_flow(report)
        fig.canvas.draw()
    sizes = {t.get_fontsize() for t in fig.axes[0].get_xticklabels()}
    assert sizes == {11.0}  # seaborn notebook context, not the 4 pt in force
    assert dict(matplotlib.rcParams) == before


def test_show_figure_takes_what_a_figure_function_returns() -> None:
    from mfr_analysis.report.views import show_figure

    fig = Figure(layout="constrained")
    ax = fig.subplots()
    report = {"rows_in": 10, "rows_clean": 7, "rows_quarantined": 2, "rows_duplicate": 1}
    assert "data:image/png;base64," in show_figure(figures.row_flow(report, ax=ax),
                                                   alt="rows").data



def test_png_crop_keeps_a_legend_beyond_the_figure_and_trims_white() -> None:
    """Drawn once and cropped when the drawing fits the figure; a legend placed past the
    figure's right edge is still in the picture (savefig's tight crop takes it in)."""
    import io

    from PIL import Image

    from mfr_analysis.report.figures import CSS_PIXELS_PER_INCH, png_bytes

    def figure(outside: bool) -> Figure:
        fig = Figure(figsize=(4, 3), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], label="a rather long legend entry for this line")
        if outside:
            ax.legend(loc="center left", bbox_to_anchor=(1.05, 0.5))
        return fig

    inside_png, inside_width = png_bytes(figure(False))
    outside_png, outside_width = png_bytes(figure(True))
    # within the figure: cropped to the drawing plus 0.1 in, never wider than the figure
    assert inside_width <= 4 * CSS_PIXELS_PER_INCH + 0.2 * CSS_PIXELS_PER_INCH
    image = np.asarray(Image.open(io.BytesIO(inside_png)).convert("RGB"))
    assert (image[:, :5] == 255).all() and not (image[:, 15:40] == 255).all()  # white pad
    # the legend lies past the right edge: the picture is wider than the figure
    assert outside_width > 4 * CSS_PIXELS_PER_INCH


def test_long_titles_and_labels_break_into_lines_at_the_figure_edge() -> None:
    """A title or axis label longer than the figure is wide (an outcome name, a threshold, a
    group from the data) wraps instead of widening the picture a phone then shrinks."""
    from mfr_analysis.report.figures import CSS_PIXELS_PER_INCH, png_bytes

    def figure(words: int) -> Figure:
        fig = Figure(figsize=(4, 3), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        ax.set_title(" ".join(["threshold"] * words), loc="left")
        ax.set_xlabel(" ".join(["change"] * words))
        fig.suptitle(" ".join(["pain"] * 3 * words))
        return fig

    short, long = figure(2), figure(12)
    _, short_width = png_bytes(short)
    _, long_width = png_bytes(long)
    assert short_width <= long_width <= 4.2 * CSS_PIXELS_PER_INCH  # the figure and 0.1 in pad
    # the lines the texts broke into took their room from the plot, inside the figure
    assert long.axes[0].get_position().height < short.axes[0].get_position().height - 0.15


def test_a_figure_shown_in_jupyterlab_wraps_its_long_texts_as_the_report_does() -> None:
    from mfr_analysis.report.figures import COLUMN_INCHES, CSS_PIXELS_PER_INCH

    long_unit = "points on the clinic's own eleven-point numeric rating scale of pain today"
    fig = figures.figure_of(figures.forest_plot(forest_claims().assign(unit=long_unit), "pain"))
    _, shown = fig._repr_png_()
    assert shown["width"] <= (COLUMN_INCHES + 0.2) * CSS_PIXELS_PER_INCH
