"""Figures of the report: each function takes tidy frames and returns a matplotlib Figure.

Figures never show a group with fewer clients than the privacy minimum (callers pass frames
already filtered with :func:`mfr_analysis.report.views.reportable_sessions`), nor any point
resting on fewer clients than that, nor a single client's values; counts they print come
from the protected claims table or are counts of at least the minimum that no published
total minus another published count can narrow down.

Colours: one fixed audience group -> colour map (Okabe-Ito, colour-blind safe) and the arm and
design styles live in ``data/palette.csv``; verdict colours in ``data/report_labels.csv``.
Wherever colour carries meaning a second cue carries it too (marker shape, hatch, line style
or a direct label). Legends sit outside the plotted area. Figures are drawn at
:data:`FIGURE_DPI` so that they stay sharp in print and on high-density screens.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cache

import matplotlib

matplotlib.use("Agg")  # reports are rendered headless; no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, PercentFormatter  # noqa: E402

from mfr_analysis.claims import estimate_words  # noqa: E402
from mfr_analysis.config import MIN_REPORTED_CLIENTS  # noqa: E402
from mfr_analysis.report.labels import (  # noqa: E402
    claim_label,
    group_label,
    outcome_suffix,
    verdict_colour,
    verdict_label,
)
from mfr_analysis.tables import load_table  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
# Figure text holds labels that come from data: never read "$...$" in it as mathtext (a label
# could otherwise typeset math or fail to draw), and never hand it to a TeX installation.
matplotlib.rcParams.update({"text.parse_math": False, "text.usetex": False})
FIGURE_DPI = 150  # pixels per inch of the embedded PNG: sharp on 2x screens and in print
INK = "#24292f"  # text and outlines
QUIET = "#57606a"  # confidence intervals, reference lines
THRESHOLD_COLOUR = "#7d4e00"  # MCID lines: dark amber, dashed (never the only cue)
GROUP_ORDER = ("all", "athlete", "senior", "desk_worker", "rehab", "chronic_pain")
# "nice" ratios for a log axis of odds ratios; a subset inside the axis limits is labelled
RATIO_TICKS = (0.05, 0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0,
               5.0, 10.0, 20.0)


# ------------------------------------------------------------------------- styles ---

@cache
def _palette() -> dict[tuple[str, str], dict[str, str]]:
    table = load_table("palette").fillna("")
    return {(k, key): row for k, key, row in zip(
        table["kind"], table["key"], table.to_dict("records"), strict=True)}


def _style(kind: str, key: str, default: str = "other") -> dict[str, str]:
    styles = _palette()
    return styles.get((kind, str(key))) or styles.get((kind, default)) or {
        "colour": "#6e7781", "marker": "o", "hatch": "", "linestyle": "solid", "label": ""}


def group_colour(group: str) -> str:
    """The one colour of an audience group in every figure (Okabe-Ito)."""
    return _style("group", group)["colour"]


def group_marker(group: str) -> str:
    """The marker of an audience group: its cue that does not rely on colour."""
    return _style("group", group)["marker"]


def arm_colour(arm: str) -> str:
    """Colour of an arm (MFR or control)."""
    return _style("arm", arm, "mfr")["colour"]


def design_marker(design: str) -> str:
    """Marker shape saying an estimate's design (controlled, uncontrolled, observational)."""
    return _style("design", design, "")["marker"] or "o"


def design_words(design: str) -> str:
    """The design in a few words for a legend, e.g. 'vs control' (the pages' words)."""
    from mfr_analysis.report.labels import design_label

    return design_label(design)


def format_threshold(value: float) -> str:
    """A threshold rounded as a clinician reads it: 2, 2.5, 0.6, 0.05 (never 0.636)."""
    if not math.isfinite(value):
        return ""
    size = abs(value)
    text = f"{value:.1g}" if 0 < size < 0.1 else f"{round(value, 1):.1f}"
    return text[:-2] if text.endswith(".0") else text


def ratio_label(value: float) -> str:
    """An odds ratio as a ratio: ×1.5, ×0.67 (never '+1.5')."""
    return f"×{value:.3g}"


def _is_ratio(rows: pd.DataFrame, claim_id: str) -> bool:
    unit = _unit(rows).lower()
    return "odds ratio" in unit or (not unit and claim_id == "pressure_safety")


def _unit(rows: pd.DataFrame) -> str:
    if "unit" in rows and rows["unit"].notna().any():
        return str(rows["unit"].dropna().iloc[0])
    return ""


CSS_PIXELS_PER_INCH = 96


def png_bytes(fig: Figure) -> tuple[bytes, int]:
    """The figure as a PNG at its dpi (cropped to what it draws), reduced to a 256-colour
    palette (about 4x smaller, no visible change for flat-colour charts), and the width in
    CSS pixels to lay it out at; the figure is closed."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.get_dpi(), bbox_inches="tight")
    dpi = fig.get_dpi()
    plt.close(fig)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    # maximum coverage keeps white white and every colour within a few levels (fast
    # octree shifted white to 254 and lines by up to 40 levels)
    palette = image.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE,
                             dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True, dpi=(dpi, dpi))
    return out.getvalue(), round(image.width * CSS_PIXELS_PER_INCH / dpi)


def _new(width: float, height: float) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    return fig, ax


def _ordered(groups: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(str(g) for g in groups))
    return [g for g in GROUP_ORDER if g in values] + sorted(set(values) - set(GROUP_ORDER))


def _outside_legend(fig: Figure, handles: Sequence[Artist], labels: Sequence[str],
                    ncols: int = 2) -> None:
    """One legend below every panel, outside the plotted area (constrained layout keeps
    room for it), so it never covers data."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)),
                   fontsize="small", frameon=False)


def _unique(pairs: list[tuple[Artist, str]]) -> tuple[list[Artist], list[str]]:
    seen: dict[str, Artist] = {}
    for handle, label in pairs:
        if label and not label.startswith("_") and label not in seen:
            seen[label] = handle
    return list(seen.values()), list(seen)


# -------------------------------------------------------------------- forest plot ---

def _small(count: object, minimum: int) -> bool:
    """A count of 1..minimum-1 clients (none is not small)."""
    return count is not None and pd.notna(count) and 0 < float(count) < minimum


def _row_label(row: pd.Series, minimum: int) -> str:
    """Group, client count and (when controlled) control-client count, as the protected
    table holds them; a control count is printed only when neither arm is small."""
    label = group_label(str(row["audience_group"]))
    n = row.get("n_clients")
    if n is None or pd.isna(n) or _small(n, minimum):
        return label
    control = row.get("n_control_clients")
    if (row.get("design") == "controlled" and control is not None and pd.notna(control)
            and not _small(control, minimum) and not _small(n - control, minimum)):
        return f"{label}\n{int(n):,} clients ({int(control):,} control)"
    return f"{label}\n{int(n):,} clients"


def _ratio_axis(ax: plt.Axes, low: float, high: float) -> None:
    """Log x axis labelled in ratios (×0.8, ×1, ×1.5), limits padded around ``low..high``."""
    low, high = min(low, 1.0), max(high, 1.0)
    span = math.log(high / low) if high > low else math.log(2.0)
    pad = math.exp(0.08 * span)
    ax.set_xscale("log")
    ax.set_xlim(low / pad, high * pad)
    lo, hi = ax.get_xlim()
    ticks = [t for t in RATIO_TICKS if lo <= t <= hi]
    if len(ticks) < 3:  # a narrow range: add its ends, rounded
        ticks = sorted({*ticks, float(f"{lo * 1.02:.2g}"), float(f"{hi / 1.02:.2g}")})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: ratio_label(v)))
    ax.xaxis.set_minor_locator(NullLocator())


def _threshold_lines(ax: plt.Axes, panel: pd.DataFrame, positions: np.ndarray,
                     unit: str) -> str:
    """Dashed MCID lines (one pair when every row shares it, short ticks per row otherwise);
    returns the threshold in words for the panel title ('MCID ±2 points'), rounded."""
    mcid = panel["mcid"].astype("float64") if "mcid" in panel else pd.Series(dtype="float64")
    known = mcid.notna().to_numpy()
    if not known.any():
        return ""
    shown = sorted({format_threshold(m) for m in mcid[known]}, key=float)
    unit_words = f" {unit}" if unit else ""
    if len(shown) == 1:
        value = float(mcid[known].iloc[0])
        for sign in (-1, 1):
            ax.axvline(sign * value, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.2)
        return f"MCID ±{shown[0]}{unit_words}"
    for y, value in zip(positions[known], mcid[known], strict=True):
        for sign in (-1, 1):
            ax.plot([sign * value] * 2, [y - 0.35, y + 0.35], color=THRESHOLD_COLOUR,
                    linestyle="--", linewidth=1.2)
    return f"MCID ±{shown[0]} to ±{shown[-1]}{unit_words}, per group"


def forest_plot(claims: pd.DataFrame, claim_id: str,
                minimum: int = MIN_REPORTED_CLIENTS) -> Figure:
    """Estimate and 95% CI per group for one claim, one panel per outcome (each its own unit).

    Each point's shape says its design (circle: vs control; triangle: before -> after, no
    control; square: association) and its fill the verdict, which is also written at the
    right of its row. Each panel carries the no-difference line, the outcome's MCID (rounded;
    per group when groups differ) and the published effect. Odds ratios sit on a log axis
    labelled as ratios (×1.5). Each panel is titled with its outcome, so the two rows of
    lasting relief (change per week; follow-up) are named apart.
    """
    rows = claims.loc[(claims["claim_id"] == claim_id) & claims["estimate"].notna()]
    if "verdict" in rows:
        rows = rows.loc[rows["verdict"] != "suppressed"]
    outcomes = list(dict.fromkeys(rows["outcome"]))
    counts = [int((rows["outcome"] == o).sum()) for o in outcomes]
    heights = [0.55 * n + 1.1 for n in counts]
    fig, axes = plt.subplots(max(len(outcomes), 1), 1, figsize=(7.5, sum(heights) + 0.9),
                             dpi=FIGURE_DPI, layout="constrained", squeeze=False,
                             gridspec_kw={"height_ratios": heights or [1]})
    legend: list[tuple[Artist, str]] = []
    for ax, outcome in zip(axes[:, 0], outcomes, strict=False):
        panel = rows.loc[rows["outcome"] == outcome]
        legend += _forest_panel(ax, panel, claim_id, str(outcome), minimum)
    _outside_legend(fig, *_unique(legend))
    return fig


def _forest_panel(ax: plt.Axes, panel: pd.DataFrame, claim_id: str, outcome: str,
                  minimum: int) -> list[tuple[Artist, str]]:
    ratio = _is_ratio(panel, claim_id)
    positions = np.arange(len(panel), dtype=float)[::-1]
    legend: list[tuple[Artist, str]] = []
    lines = ax.hlines(positions, panel["ci_low"], panel["ci_high"], color=QUIET, linewidth=2)
    legend.append((lines, "95% confidence interval"))
    designs = (panel["design"].fillna("").astype(str) if "design" in panel
               else pd.Series("", index=panel.index))
    for design in dict.fromkeys(designs):
        chosen = (designs == design).to_numpy()
        sub = panel.loc[chosen]
        ax.scatter(sub["estimate"], positions[chosen], marker=design_marker(design),
                   c=[verdict_colour(v) for v in sub.get("verdict", ["inconclusive"] * len(sub))],
                   edgecolors=INK, linewidths=1.2, s=80, zorder=3)
        words = design_words(design) or "estimate"
        legend.append((Line2D([], [], marker=design_marker(design), linestyle="",
                              markerfacecolor="white", markeredgecolor=INK, markersize=8),
                       words))
    null = 1.0 if ratio else 0.0
    ax.axvline(null, color=INK, linewidth=1)
    legend.append((Line2D([], [], color=INK, linewidth=1),
                   "no difference (×1)" if ratio else "no change (0)" if set(designs) <= {
                       "uncontrolled"} else "no difference (0)"))
    unit = _unit(panel)
    threshold = "" if ratio else _threshold_lines(ax, panel, positions, unit)
    if threshold:
        legend.append((Line2D([], [], color=THRESHOLD_COLOUR, linestyle="--"),
                       "smallest change patients notice (MCID, value in the panel title)"))
    if "literature_effect" in panel and panel["literature_effect"].notna().any():
        ax.scatter(panel["literature_effect"], positions, marker="D", color="#8250df", s=35,
                   zorder=4)
        legend.append((Line2D([], [], marker="D", color="#8250df", linestyle=""),
                       "published effect"))
    ax.set_yticks(positions, [_row_label(row, minimum) for _, row in panel.iterrows()])
    ax.set_ylim(positions.min() - 0.7, positions.max() + 0.7)
    if ratio:
        values = panel[["estimate", "ci_low", "ci_high"]].to_numpy(dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        _ratio_axis(ax, float(values.min()), float(values.max()))
    if "verdict" in panel:  # the verdict in words at the right: colour is never the only cue
        right = ax.secondary_yaxis("right")
        right.set_yticks(positions, [verdict_label(str(v)) for v in panel["verdict"]])
        right.tick_params(length=0)
    ax.set_title(_outcome_words(claim_id, outcome) + (f"  ·  {threshold}" if threshold else ""),
                 loc="left")
    words = _axis_words(claim_id, outcome)
    if ratio:
        ax.set_xlabel(f"{words}: {unit or 'odds ratio'} (log scale; ×1 = no difference)")
    else:
        ax.set_xlabel(f"{words} ({unit})" if unit else words)
    ax.grid(axis="y", visible=False)
    return legend


def _axis_words(claim_id: str, outcome: str = "") -> str:
    """x-axis words of a claim's estimate: ``data/palette.csv`` (kind 'axis') where it has
    words for the claim, else its analysis kind's words for the registry row."""
    styles = _palette()
    for key in (f"{claim_id}:{outcome}", claim_id):
        if ("axis", key) in styles:
            return styles[("axis", key)]["label"]
    return estimate_words(claim_id, outcome) or "estimate"


# ---------------------------------------------------------------- before and after ---

def _arm_of(sessions: pd.DataFrame) -> pd.Series:
    if "arm" not in sessions:
        return pd.Series("mfr", index=sessions.index)
    return sessions["arm"].astype("string").fillna("mfr").where(
        lambda a: a == "control", "mfr")


def _table_counts(claims: pd.DataFrame | None, outcome: str,
                  group: str) -> dict[str, int] | None:
    """Client counts per arm of the outcome's change claim for one group, as the protected
    claims table shows them; None when the table withholds any of them."""
    if claims is None or "n_clients" not in claims:
        return None
    rows = claims.loc[(claims["claim_id"] == outcome) & (claims["outcome"] == outcome)
                      & (claims["audience_group"].astype(str) == group)]
    if len(rows) != 1:
        return None
    row = rows.iloc[0]
    if row.get("verdict") == "suppressed" or pd.isna(row["n_clients"]):
        return None
    if row.get("design") == "controlled":
        control = row.get("n_control_clients")
        if control is None or pd.isna(control):
            return None
        return {"mfr": int(row["n_clients"]) - int(control), "control": int(control)}
    return {"mfr": int(row["n_clients"])}  # an uncontrolled row counts MFR clients only


def _counts_words(sizes: dict[str, int], drawn: list[str], minimum: int,
                  shown: dict[str, int] | None) -> str:
    """How many clients each drawn mean rests on, e.g. 'means of 120 MFR and 40 control
    clients'. The numbers are those the protected claims table shows (``shown``), printed
    only when they are the drawn clients; otherwise the arms are named without numbers (a
    count the table withholds, e.g. by complementary suppression, is never printed)."""
    names = {"mfr": "MFR", "control": "control"}
    small = [arm for arm in ("mfr", "control") if 0 < sizes.get(arm, 0) < minimum]
    known = shown is not None and all(shown.get(arm) == sizes[arm] for arm in drawn)
    if known:
        numbers = " and ".join(f"{sizes[arm]:,} {names[arm]}" for arm in drawn)
        text = f"means of {numbers}\nclients" if len(drawn) == 1 else (
            f"means of {sizes['mfr']:,} MFR\nand {sizes['control']:,} control clients")
    else:
        text = f"means of {' and '.join(names[arm] for arm in drawn)}\nclients"
    if small:
        return text + f"\n({names[small[0]]} arm under {minimum} clients: not drawn)"
    missing = [names[arm] for arm in ("mfr", "control") if sizes.get(arm, 0) == 0]
    return text + (f" (no {missing[0]} clients)" if missing else "")


def paired_before_after(sessions: pd.DataFrame, outcome: str,
                        minimum: int = MIN_REPORTED_CLIENTS,
                        claims: pd.DataFrame | None = None) -> Figure:
    """Mean of the client means before and after a session with its 95% CI and the middle
    half of clients, MFR and control apart, one panel per audience group.

    No single client is drawn; an arm (or a group) of fewer than ``minimum`` clients is left
    out. Each panel says how many clients each mean rests on, with the numbers of the
    protected claims table (``claims``, the outcome's change claim) when it shows them and
    they are the drawn clients; without ``claims`` no number is printed.
    """
    pre, post = f"{outcome}_pre", f"{outcome}_post"
    paired = sessions.dropna(subset=[pre, post])
    per_client = (
        paired.assign(_arm=_arm_of(paired))
        .groupby(["audience_group", "_arm", "client_id"], observed=True)[[pre, post]]
        .mean()
        .reset_index()
    )
    sizes = per_client.groupby(["audience_group", "_arm"], observed=True)["client_id"].size()
    panels: list[tuple[str, list[str], dict[str, int]]] = []
    for group in _ordered(per_client["audience_group"].astype(str)):
        counts = {arm: int(sizes.get((group, arm), 0)) for arm in ("mfr", "control")}
        drawn = [arm for arm in ("mfr", "control") if counts[arm] >= minimum]
        if drawn:
            panels.append((group, drawn, counts))
    ncols = min(max(len(panels), 1), 3)
    nrows = max(math.ceil(len(panels) / ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.5 * ncols + 1.0, 3.3 * nrows + 0.9),
                             dpi=FIGURE_DPI, sharey=True, layout="constrained", squeeze=False)
    legend: list[tuple[Artist, str]] = []
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (group, drawn, counts) in zip(axes.flat, panels, strict=False):
        for offset, arm in zip((-0.06, 0.06), drawn, strict=False):
            style = _style("arm", arm, "mfr")
            clients = per_client.loc[(per_client["audience_group"] == group)
                                     & (per_client["_arm"] == arm), [pre, post]]
            means = clients.mean().to_numpy()
            half = 1.96 * clients.std(ddof=1).to_numpy() / np.sqrt(len(clients))
            low, high = clients.quantile(0.25).to_numpy(), clients.quantile(0.75).to_numpy()
            x = np.array([0.0, 1.0]) + offset
            band = ax.fill_between(x, low, high, color=style["colour"], alpha=0.15,
                                   hatch=style["hatch"] or None, linewidth=0)
            line = ax.errorbar(x, means, yerr=half, color=style["colour"], linewidth=2.5,
                               linestyle=style["linestyle"], marker=style["marker"],
                               markersize=7, capsize=4)
            legend += [(line, f"{style['label']}: mean (95% CI)"),
                       (band, f"{style['label']}: middle half")]
        ax.set_xticks([0, 1], ["before", "after"])
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(group_label(group), fontsize="medium")
        ax.set_xlabel(_counts_words(counts, drawn, minimum,
                                    _table_counts(claims, outcome, group)), fontsize="small")
    words = {"pain": "pain", "tightness": "tightness", "stress": "stress"}.get(outcome, outcome)
    for row in axes:
        row[0].set_ylabel(f"{words} (0-10)" if outcome in words else outcome)
    fig.suptitle(f"{words.capitalize()} before and after a session (client means)")
    _outside_legend(fig, *_unique(legend), ncols=2)
    return fig


# ------------------------------------------------------------------------ trajectory ---

def pain_trajectories(sessions: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> Figure:
    """Mean pre-session pain by week since the client's first session, per audience group
    (fixed group colours, each with its own marker and line style); a week of a group with
    fewer than ``minimum`` clients is not drawn."""
    frame = sessions.dropna(subset=["pain_pre"]).assign(
        week=lambda d: np.floor(d["weeks_since_start"]).clip(upper=16)
    )
    clients = frame.groupby(["audience_group", "week"], observed=True)["client_id"].transform(
        "nunique")
    frame = frame.loc[clients >= minimum]
    frame = frame.assign(audience_group=frame["audience_group"].astype(str))
    groups = _ordered(frame["audience_group"])
    fig, ax = _new(7.5, 4.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # seaborn 0.13 on pandas 3 internals
        sns.lineplot(data=frame, x="week", y="pain_pre", hue="audience_group",
                     hue_order=groups, style="audience_group", style_order=groups,
                     palette={g: group_colour(g) for g in groups},
                     markers={g: group_marker(g) for g in groups},
                     dashes={g: _dash(g) for g in groups},
                     errorbar=("ci", 95), n_boot=200, seed=0, ax=ax, legend=False)
    ax.set_xlabel("weeks since first session (16 = 16 or more)")
    ax.set_ylabel("pain before the session (0-10)")
    ax.set_title(f"Does pain fall over the weeks? (weeks with {minimum}+ clients)")
    handles = [Line2D([], [], color=group_colour(g), marker=group_marker(g),
                      linestyle=_style("group", g)["linestyle"] or "solid") for g in groups]
    _outside_legend(fig, handles, [group_label(g) for g in groups], ncols=3)
    return fig


def _dash(group: str) -> tuple | str:
    return {"solid": "", "dashed": (4, 2), "dashdot": (4, 1.5, 1, 1.5),
            "dotted": (1, 1.5)}.get(_style("group", group)["linestyle"], "")


# ------------------------------------------------------------------------ responders ---

def wilson_interval(responders: float, clients: float) -> tuple[float, float]:
    """Wilson 95% interval of a share (statsmodels), NaN when the counts are not shown."""
    from statsmodels.stats.proportion import proportion_confint

    if not (pd.notna(responders) and pd.notna(clients) and clients > 0):
        return math.nan, math.nan
    low, high = proportion_confint(int(responders), int(clients), alpha=0.05, method="wilson")
    return float(low), float(high)


def _outcome_words(claim_id: str, outcome: str) -> str:
    """Claim and outcome in words, e.g. 'Lasting relief: pain at follow-up': the two
    lasting-relief rows and each ROM measure are named apart."""
    suffix = outcome_suffix(outcome, claim_id)
    return claim_label(claim_id) + (f": {suffix}" if suffix else "")


WITHHELD = (-1.0, math.nan, math.nan)  # an arm whose share the report may not show
NO_ARM = (-2.0, math.nan, math.nan)  # a comparison without a control arm
WITHHELD_WORDS = "withheld"
NO_ARM_WORDS = "no control arm"


def _arm_share(row: pd.Series, arm: str, minimum: int) -> tuple[float, float, float]:
    """(share, CI low, CI high) of one arm from the protected row's numbers.

    :data:`WITHHELD` when the table hides the arm's counts, or when its responders or
    non-responders are 1 to minimum-1 clients (their share would give the number away);
    :data:`NO_ARM` for the control arm of a comparison that has none."""
    suffix = "" if arm == "mfr" else "_control"
    responders = row.get(f"responders{suffix}", math.nan)
    clients = row.get(f"responder_clients{suffix}", math.nan)
    if pd.notna(responders) and pd.notna(clients) and clients > 0:
        if _small(responders, minimum) or _small(clients - responders, minimum):
            return WITHHELD
        return (float(responders) / float(clients), *wilson_interval(responders, clients))
    if arm == "mfr" and pd.notna(row.get("responder_share", math.nan)):
        return float(row["responder_share"]), math.nan, math.nan
    if arm == "control" and row.get("design") != "controlled":
        return NO_ARM
    return WITHHELD


def responder_bars(responders: pd.DataFrame,
                   minimum: int = MIN_REPORTED_CLIENTS) -> Figure:
    """Share of clients whose own average change reaches the MCID: one panel per outcome
    (each ROM measure and both lasting-relief rows apart), a row per audience group with the
    MFR and control bars side by side, the percentage printed on each bar and Wilson 95%
    intervals.

    Only numbers the protected claims table holds are drawn, and no bar whose responders or
    non-responders number 1 to ``minimum``-1: such an arm reads 'withheld'; a group (or an
    outcome) with no bar at all is left out and counted in a note under the legend.
    """
    frame = responders.assign(_words=[_outcome_words(str(c), str(o)) for c, o in zip(
        responders["claim_id"], responders["outcome"], strict=True)])
    panels = []
    left_out = 0
    for words, rows in frame.groupby("_words", sort=False):
        bars = {}
        for _, row in rows.iterrows():
            arms = {arm: _arm_share(row, arm, minimum) for arm in ("mfr", "control")}
            if any(share >= 0 for share, _, _ in arms.values()):
                bars[str(row["audience_group"])] = arms
            else:
                left_out += 1
        if bars:
            title = str(words)
            if "mcid" in rows and rows["mcid"].notna().any():
                values = sorted({format_threshold(m) for m in rows["mcid"].dropna()}, key=float)
                unit = _responder_unit(rows)
                title += f"  ·  MCID {values[0]}" + (
                    f" to {values[-1]}" if len(values) > 1 else "") + unit
            panels.append((title, {g: bars[g] for g in _ordered(list(bars))}))
    columns = 1 if len(panels) <= 2 else 2
    heights = [0.5 * len(bars) + 0.9 for _, bars in panels]
    split = _balanced(heights, columns)
    total = max((sum(heights[i] for i in part) for part in split), default=1.0)
    fig = plt.figure(figsize=(7.5 if columns == 1 else 10.0, total + 1.1), dpi=FIGURE_DPI,
                     layout="constrained")
    subfigs = fig.subfigures(1, columns, squeeze=False)[0]
    legend: list[tuple[Artist, str]] = []
    for subfig, part in zip(subfigs, split, strict=True):
        if not part:
            continue
        part_heights = [heights[i] for i in part]
        filler = total - sum(part_heights)
        ratios = part_heights + ([filler] if filler > 0.05 else [])
        axes = subfig.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios},
                               squeeze=False)[:, 0]
        for ax, i in zip(axes, part, strict=False):
            legend += _responder_panel(ax, *panels[i], minimum)
        for ax in axes[len(part):]:
            ax.set_visible(False)
        axes[len(part) - 1].set_xlabel("clients whose own average change reaches the MCID",
                                       fontsize="small")
    handles, labels = _unique(legend)
    order = [labels.index(x) for x in ("MFR clients", "control clients", "95% interval (Wilson)")
             if x in labels]
    notes = [f"{WITHHELD_WORDS}: fewer than {minimum} responders or non-responders, or hidden "
             "to protect a smaller count (privacy)"]
    if left_out:
        notes.append(f"{left_out} group row(s) with no bar to show are left out")
    blank = Line2D([], [], linestyle="", marker="")
    _outside_legend(fig, [handles[i] for i in order] + [blank] * len(notes),
                    [labels[i] for i in order] + notes, ncols=3)
    return fig


def _responder_unit(rows: pd.DataFrame) -> str:
    unit = _unit(rows)
    return f" {unit}" if unit and "odds" not in unit else ""


def _balanced(heights: list[float], columns: int) -> list[list[int]]:
    """Panels split into ``columns`` runs of about equal height, in order."""
    if columns == 1:
        return [list(range(len(heights)))]
    total, running = sum(heights), 0.0
    for i, h in enumerate(heights):
        if running + h / 2 > total / 2:
            return [list(range(i)), list(range(i, len(heights)))]
        running += h
    return [list(range(len(heights))), []]


def _responder_panel(ax: plt.Axes, words: str,
                     bars: dict[str, dict[str, tuple[float, float, float]]],
                     minimum: int = MIN_REPORTED_CLIENTS) -> list[tuple[Artist, str]]:
    legend: list[tuple[Artist, str]] = []
    width = 0.38
    positions = np.arange(len(bars), dtype=float)[::-1]
    for y, arms in zip(positions, bars.values(), strict=True):
        for offset, arm in ((width / 2, "mfr"), (-width / 2, "control")):
            share, low, high = arms[arm]
            style = _style("arm", arm, "mfr")
            if share < 0:
                note = NO_ARM_WORDS if share == NO_ARM[0] else (
                    f"{style['label'].split()[0]}: {WITHHELD_WORDS}")
                ax.text(0.01, y + offset, note, va="center", ha="left", fontsize="x-small",
                        color=QUIET, style="italic")
                continue
            handle = ax.barh(y + offset, share, height=width * 0.92, color=style["colour"],
                             hatch=style["hatch"] or None, edgecolor="white", linewidth=0.5)
            legend.append((handle, style["label"]))
            if math.isfinite(low):
                spread = [[max(share - low, 0.0)], [max(high - share, 0.0)]]
                errors = ax.errorbar(share, y + offset, xerr=spread, color=INK, capsize=2.5,
                                     linewidth=1)
                legend.append((errors, "95% interval (Wilson)"))
            end = high if math.isfinite(high) else share
            inside = end > 0.86
            text = f"{share:.0%}" if share > 0 else f"0% of {style['label']}"
            ax.text(share - 0.012 if inside else end + 0.015, y + offset, text,
                    va="center", ha="right" if inside else "left", fontsize="x-small",
                    color="white" if inside else INK, fontweight="bold")
    ax.set_yticks(positions, [group_label(g) for g in bars], fontsize="small")
    ax.set_ylim(-0.6, len(bars) - 0.4)
    ax.set_xlim(0, 1.1)
    ax.xaxis.set_major_locator(FixedLocator([0, 0.25, 0.5, 0.75, 1.0]))
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.tick_params(axis="x", labelsize="small")
    ax.grid(axis="y", visible=False)
    ax.set_title(words, fontsize="small", loc="left")
    return legend


# ---------------------------------------------------------------------- data quality ---

def row_flow(report: dict) -> Figure:
    """Where every input row went: clean, quarantined or duplicate (labelled bars)."""
    counts = pd.Series(
        {"clean": report["rows_clean"], "quarantined": report["rows_quarantined"],
         "duplicate": report["rows_duplicate"]}
    )
    fig, ax = _new(7, 2.2)
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color=["#8c8c8c", "#b5520b", "#0b6e4f"])
    for y, value in enumerate(counts.to_numpy()[::-1]):
        ax.text(value, y, f" {value:,}", va="center")
    ax.set_xlim(0, max(counts.max(), 1) * 1.15)
    ax.set_xlabel(f"rows (of {report['rows_in']:,} read)")
    ax.set_title("Where the input rows went")
    return fig


def reason_bars(reasons: pd.Series) -> Figure:
    """Rows per quarantine reason (the index holds the words, e.g. 'pain before: outside
    0-10'), the count printed at each bar."""
    ordered = reasons.sort_values()
    fig, ax = _new(7.5, 0.3 * max(len(ordered), 2) + 1.2)
    ax.barh(list(ordered.index), ordered.to_numpy(), color="#b5520b")
    for y, value in enumerate(ordered.to_numpy()):
        ax.text(value, y, f" {value:,}", va="center", fontsize="small")
    ax.set_xlim(0, max(ordered.max() if len(ordered) else 1, 1) * 1.15)
    ax.set_xlabel("rows (a row can have several reasons)")
    ax.set_title("Why rows were quarantined")
    ax.grid(axis="y", visible=False)
    return fig


def missingness_heatmap(sessions: pd.DataFrame, columns: list[str],
                        names: dict[str, str] | None = None) -> Figure:
    """Percent of missing values per measure (rows) and audience group (columns), printed in
    every cell; tall rather than wide, so it stays readable on a phone."""
    share = sessions[columns].isna().groupby(sessions["audience_group"], observed=True).mean()
    share = share.loc[[g for g in _ordered(share.index.astype(str)) if g in share.index]]
    share.index = [group_label(g) for g in share.index]
    share.columns = [(names or {}).get(c, c) for c in share.columns]
    share = share.T
    fig, ax = _new(max(1.2 * share.shape[1] + 3.2, 5.5), 0.34 * len(share) + 1.6)
    sns.heatmap(share, vmin=0, vmax=1, cmap="Greys", annot=True, fmt=".0%",
                annot_kws={"fontsize": "small"}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "share missing", "format": PercentFormatter(1.0, 0),
                          "shrink": 0.6}, ax=ax)
    ax.xaxis.tick_top()
    ax.set_xticklabels(ax.get_xticklabels(), rotation=0, fontsize="small")
    ax.tick_params(axis="both", length=0)
    ax.set_ylabel("")
    ax.set_title("Missing values by audience group (percent of sessions)", pad=24)
    return fig


def rating_bars(shares: pd.DataFrame, names: dict[str, str] | None = None) -> Figure:
    """Bar charts of 0-10 ratings: share of a group's sessions at each value (values held by
    few clients pooled with their neighbours into one wider bar), one row of panels per
    audience group, one column per measure. Bars never extend below 0 or above 10."""
    fields = list(dict.fromkeys(shares["field"]))
    groups = _ordered(shares["audience_group"].astype(str))
    fig, axes = plt.subplots(max(len(groups), 1), max(len(fields), 1),
                             figsize=(1.9 * max(len(fields), 1) + 1.2,
                                      1.35 * max(len(groups), 1) + 1.2),
                             dpi=FIGURE_DPI, layout="constrained", squeeze=False,
                             sharex=True, sharey=True)
    for i, group in enumerate(groups):
        for j, field in enumerate(fields):
            ax = axes[i][j]
            cell = shares.loc[(shares["audience_group"].astype(str) == group)
                              & (shares["field"] == field)]
            ax.bar(cell["low"] - 0.45, cell["share"], width=cell["high"] - cell["low"] + 0.9,
                   align="edge", color=group_colour(group), edgecolor="white")
            ax.set_xlim(-0.7, 10.7)
            ax.set_xticks([0, 5, 10])
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.grid(axis="x", visible=False)
            if i == 0:
                ax.set_title((names or {}).get(field, field), fontsize="small")
            if j == 0:
                ax.set_ylabel(group_label(group), fontsize="small")
    fig.supxlabel("rating (0-10)", fontsize="small")
    fig.suptitle("How the 0-10 ratings are spread (share of each group's sessions)")
    return fig
