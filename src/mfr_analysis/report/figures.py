"""Figures of the report: each function takes tidy frames and draws one figure.

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

Using them in a notebook, as with seaborn:

* Importing this module changes no global state: no backend switch, no theme, no rcParams.
  Each function applies the report's look (seaborn's whitegrid style and notebook context,
  no mathtext in data labels) only while it draws, and makes its own figures with
  :class:`matplotlib.figure.Figure`, outside pyplot, so they need no display.
* ``ax=``: one-panel figures (:func:`row_flow`, :func:`reason_bars`,
  :func:`missingness_heatmap`, :func:`pain_trajectories`, :func:`flow_diagram`,
  :func:`change_ecdf`) draw into the caller's Axes and
  return it; their legend then sits beside that Axes. Multi-panel figures
  (:func:`forest_plot`, :func:`paired_before_after`, :func:`responder_bars`,
  :func:`rating_bars`, :func:`jacobson_truax_plot`) fill the caller's Axes' place in its
  figure with a :class:`~matplotlib.figure.SubFigure` holding their panels (the Axes is
  removed) and return that SubFigure. Without ``ax`` every function returns the new Figure it made.
* ``palette=``: a mapping key -> colour, or a seaborn palette name or list of colours (given
  to :func:`seaborn.color_palette`); the keys are audience groups, arms (``mfr``,
  ``control``), verdicts or row outcomes, as each function says. The default is the fixed
  colour-blind-safe map. A mapping must name every key drawn (as in seaborn).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import cache, wraps
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    MaxNLocator,
    NullLocator,
    PercentFormatter,
)

from mfr_analysis.claims import estimate_words, primary_rows
from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.report.labels import (
    claim_label,
    group_label,
    outcome_suffix,
    verdict_colour,
    verdict_label,
)
from mfr_analysis.tables import load_table

Palette = Mapping[str, Any] | str | Sequence[Any] | None
FigureLike = Figure | SubFigure
FIGURE_DPI = 150  # pixels per inch of the embedded PNG: sharp on 2x screens and in print
COLUMN_INCHES = 7.5  # width of the one-column figures: the same text size side by side
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


def figure_of(drawing: Figure | SubFigure | Axes) -> Figure:
    """The whole Figure a figure function drew (it returns a Figure, a SubFigure or an Axes)."""
    figure = drawing
    while not isinstance(figure, Figure):
        figure = figure.figure
    return figure


TIGHT_PAD_INCHES = 0.1  # savefig's default pad_inches around a tight crop


def _drawn_pixels(fig: Figure) -> Any:
    """The figure drawn once and cropped to what it draws (plus savefig's padding), as an RGB
    image. A drawing that reaches past the figure's edge (a legend wider than the figure) is
    drawn once more, on a canvas around it (:func:`_redrawn_around`).

    Hand-written because savefig's tight crop always draws twice and encodes a PNG that the
    palette step then decodes: drawing once and cropping the pixels halves a page's figure
    time, and matplotlib has no call that crops the canvas it already drew."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if hasattr(fig.canvas, "buffer_rgba") else FigureCanvasAgg(fig)
    _wrap_at_the_edge(fig)
    canvas.draw()
    box = fig.get_tightbbox(canvas.get_renderer())
    width, height = fig.get_size_inches()
    dpi = fig.get_dpi()
    edge = 1 / dpi  # a drawing ending on the edge may pass it by a rounding error
    if box.x0 < -edge or box.y0 < -edge or box.x1 > width + edge or box.y1 > height + edge:
        return _redrawn_around(fig, box)
    pixels = np.asarray(canvas.buffer_rgba())
    rows, columns = pixels.shape[:2]
    # the padded box in pixels, from the top left; the padding beyond the figure's edge
    # (constrained layout draws up to it) is added as white, as savefig's crop has it
    left = int(np.floor((box.x0 - TIGHT_PAD_INCHES) * dpi))
    right = int(np.ceil((box.x1 + TIGHT_PAD_INCHES) * dpi))
    top = rows - int(np.ceil((box.y1 + TIGHT_PAD_INCHES) * dpi))
    bottom = rows - int(np.floor((box.y0 - TIGHT_PAD_INCHES) * dpi))
    image = Image.new("RGB", (right - left, bottom - top), "white")
    inside = Image.fromarray(pixels[max(top, 0):min(bottom, rows),
                                    max(left, 0):min(right, columns)]).convert("RGB")
    image.paste(inside, (max(-left, 0), max(-top, 0)))
    return image


def _wrap_at_the_edge(artist: Artist) -> None:
    """Titles, axis labels and notes break into lines at the figure's edge (matplotlib's
    text wrap, measured where each text ends up) instead of reaching past it: a long
    outcome name, threshold or group label would otherwise widen the picture, which a
    narrow screen then shrinks. Tick labels (short, remade at each draw) and legends (laid
    out by their own box) are left as they are."""
    from matplotlib.axis import Tick
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    for child in artist.get_children():
        if isinstance(child, (Tick, Legend)):
            continue
        if isinstance(child, Text):
            child.set_wrap(True)
        _wrap_at_the_edge(child)


def _redrawn_around(fig: Figure, box: Any) -> Any:
    """The figure drawn on a canvas around ``box`` (what it draws, in inches) plus savefig's
    padding, as an RGB image: savefig's tight crop without the layout draw it makes first
    (the layout engine is off for this drawing, so the layout just drawn stays)."""
    import io

    from PIL import Image

    engine = fig.get_layout_engine()
    buffer = io.BytesIO()
    fig.set_layout_engine("none")
    try:
        fig.savefig(buffer, format="png", dpi=fig.get_dpi(),
                    bbox_inches=box.padded(TIGHT_PAD_INCHES),
                    pil_kwargs={"compress_level": 1})  # decoded at once: no time on zlib
    finally:
        fig.set_layout_engine(engine)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def png_bytes(drawing: Figure | SubFigure | Axes) -> tuple[bytes, int]:
    """The figure as a PNG at its dpi (cropped to what it draws), reduced to a 256-colour
    palette (about 4x smaller, no visible change for flat-colour charts), and the width in
    CSS pixels to lay it out at; a pyplot figure is closed (ours are not pyplot's)."""
    import io

    from matplotlib import pyplot as plt
    from PIL import Image

    fig = figure_of(drawing)
    dpi = fig.get_dpi()
    image = _drawn_pixels(fig)
    plt.close(fig)
    # maximum coverage keeps white white and every colour within a few levels (fast
    # octree shifted white to 254 and lines by up to 40 levels)
    palette = image.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE,
                             dither=Image.Dither.NONE)
    out = io.BytesIO()
    # zlib's default level: level 9 (optimize=True) made the PNGs 10 % smaller for 7x the
    # time (1.4 s against 0.2 s for a claims page's 19 figures)
    palette.save(out, format="PNG", compress_level=6, dpi=(dpi, dpi))
    return out.getvalue(), round(image.width * CSS_PIXELS_PER_INCH / dpi)


# --------------------------------------------------------------- look and canvas ---

@cache
def _theme() -> dict[str, Any]:
    """The report's look as rcParams: seaborn's whitegrid style, notebook context and colour
    cycle, and figure text (it holds labels from data) never read as mathtext nor handed to
    TeX. Applied only while a figure function draws (:func:`_themed`)."""
    from cycler import cycler

    return {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"),
            "axes.prop_cycle": cycler(color=sns.color_palette("deep")),
            "text.parse_math": False, "text.usetex": False}


Drawn = TypeVar("Drawn", bound=Callable[..., Any])


def _themed(function: Drawn) -> Drawn:
    """Run a figure function inside the report's look (:func:`_theme`), restored after:
    what it creates (axes, text, lines) takes that look."""
    @wraps(function)
    def themed(*args: Any, **kwargs: Any) -> Any:
        with mpl.rc_context(_theme()):
            return function(*args, **kwargs)

    return themed  # type: ignore[return-value]


class ReportFigure(Figure):
    """A Figure that is also drawn in the report's look, wherever and whenever it is drawn
    (saved, shown inline by Jupyter, ``canvas.draw()``): matplotlib reads some settings only
    then (e.g. how many ticks fit, from the tick label size). rcParams are restored after."""

    def draw(self, renderer: Any) -> None:
        """Draw the figure within the report's look."""
        with mpl.rc_context(_theme()):
            super().draw(renderer)

    def get_tightbbox(self, renderer: Any = None, *args: Any, **kwargs: Any) -> Any:
        """The tight bounding box as drawn (within the report's look)."""
        with mpl.rc_context(_theme()):
            return super().get_tightbbox(renderer, *args, **kwargs)

    def _repr_png_(self) -> tuple[bytes, dict[str, int]]:
        """The figure as a notebook shows a returned figure (outside pyplot, no backend
        needed), laid out at its size in CSS pixels as in the report."""
        import io

        buffer = io.BytesIO()
        _wrap_at_the_edge(self)  # as in the report (:func:`png_bytes`)
        self.savefig(buffer, format="png", dpi=self.get_dpi(), bbox_inches="tight")
        width = int.from_bytes(buffer.getvalue()[16:20], "big")  # the PNG header's width
        return buffer.getvalue(), {"width": round(width * CSS_PIXELS_PER_INCH / self.get_dpi())}


def _new_figure(width: float, height: float) -> Figure:
    """A Figure outside pyplot, on its own Agg canvas: drawn headless, no backend switched,
    never shown twice by a notebook, and ``fig.canvas.draw()`` works as on any figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ReportFigure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _one_panel(ax: Axes | None, width: float, height: float) -> tuple[FigureLike, Axes]:
    """The Axes a one-panel figure draws into: the caller's, or that of a new Figure (made
    outside pyplot, so it needs no display and leaves pyplot's figures alone)."""
    if ax is not None:
        return ax.figure, ax
    fig = _new_figure(width, height)
    return fig, fig.add_subplot()


def _panel_area(ax: Axes | None, width: float, height: float) -> FigureLike:
    """Where a multi-panel figure draws: a new Figure, or a SubFigure taking the place of
    the caller's Axes in its grid (the Axes is removed)."""
    if ax is None:
        return _new_figure(width, height)
    spec = ax.get_subplotspec()
    if spec is None:
        raise ValueError("ax: a multi-panel figure takes the place of an Axes laid out on a "
                         "grid (plt.subplots, add_subplot); this one has a fixed position")
    parent = ax.figure
    ax.remove()
    return parent.add_subfigure(spec)


def _colours(palette: Palette, keys: Sequence[str], default: Callable[[str], Any],
             drawn: Sequence[str] | None = None) -> dict[str, Any]:
    """A colour per key: the fixed default map, the caller's mapping (it must name every key
    drawn, as in seaborn), or a seaborn palette (name or list) taken in the keys' order."""
    keys = list(dict.fromkeys(str(k) for k in keys))
    if palette is None:
        return {k: default(k) for k in keys}
    if isinstance(palette, Mapping):
        missing = [k for k in (keys if drawn is None else drawn) if k not in palette]
        if missing:
            raise ValueError(f"palette: no colour for {', '.join(map(repr, missing))}")
        return {k: palette[k] if k in palette else default(k) for k in keys}
    return dict(zip(keys, sns.color_palette(palette, n_colors=max(len(keys), 1)), strict=False))


def _outside_legend(fig: FigureLike, handles: Sequence[Artist], labels: Sequence[str],
                    ncols: int = 2, ax: Axes | None = None) -> None:
    """One legend below every panel, outside the plotted area (constrained layout keeps
    room for it), so it never covers data; beside the caller's Axes when drawing into one."""
    if not handles:
        return
    if ax is not None:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize="small", frameon=False)
        return
    fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)),
               fontsize="small", frameon=False)


def _ordered(groups: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(str(g) for g in groups))
    return [g for g in GROUP_ORDER if g in values] + sorted(set(values) - set(GROUP_ORDER))


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


def _ratio_axis(ax: Axes, low: float, high: float) -> None:
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


def _threshold_lines(ax: Axes, panel: pd.DataFrame, positions: np.ndarray,
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


@_themed
def forest_plot(claims: pd.DataFrame, claim_id: str, minimum: int = MIN_REPORTED_CLIENTS, *,
                ax: Axes | None = None, palette: Palette = None) -> FigureLike:
    """Estimate and 95% CI per group for one claim, one panel per outcome (each its own unit).

    Each point's shape says its design (circle: vs control; triangle: before -> after, no
    control; square: association) and its fill the verdict, which is also written at the
    right of its row. Each panel carries the no-difference line, the outcome's MCID (rounded;
    per group when groups differ) and the published effect. Odds ratios sit on a log axis
    labelled as ratios (×1.5). Each panel is titled with its outcome, so the two rows of
    lasting relief (change per week; follow-up) are named apart.

    Multi-panel: ``ax`` is replaced by a SubFigure holding the panels, which is returned
    (without ``ax``, the new Figure). ``palette``: verdict -> colour of the points (default
    the verdict colours of the scorecard), or a seaborn palette.
    """
    claims = primary_rows(claims)  # sensitivity rows have a section of their own
    rows = claims.loc[(claims["claim_id"] == claim_id) & claims["estimate"].notna()]
    if "verdict" in rows:
        rows = rows.loc[rows["verdict"] != "suppressed"]
    outcomes = list(dict.fromkeys(rows["outcome"]))
    counts = [int((rows["outcome"] == o).sum()) for o in outcomes]
    heights = [0.55 * n + 1.1 for n in counts]
    verdicts = [str(v) for v in rows["verdict"]] if "verdict" in rows else ["inconclusive"]
    colours = _colours(palette, verdicts, verdict_colour)
    fig = _panel_area(ax, COLUMN_INCHES, sum(heights) + 0.9)
    axes = fig.subplots(max(len(outcomes), 1), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights or [1]})
    legend: list[tuple[Artist, str]] = []
    for panel_ax, outcome in zip(axes[:, 0], outcomes, strict=False):
        panel = rows.loc[rows["outcome"] == outcome]
        legend += _forest_panel(panel_ax, panel, claim_id, str(outcome), minimum, colours)
    _outside_legend(fig, *_unique(legend))
    return fig


def _forest_panel(ax: Axes, panel: pd.DataFrame, claim_id: str, outcome: str,
                  minimum: int, colours: Mapping[str, Any]) -> list[tuple[Artist, str]]:
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
                   c=[colours[str(v)] for v in sub.get("verdict", ["inconclusive"] * len(sub))],
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


@_themed
def paired_before_after(sessions: pd.DataFrame, outcome: str,
                        minimum: int = MIN_REPORTED_CLIENTS,
                        claims: pd.DataFrame | None = None, *, ax: Axes | None = None,
                        palette: Palette = None) -> FigureLike:
    """Mean of the client means before and after a session with its 95% CI and the middle
    half of clients, MFR and control apart, one panel per audience group.

    No single client is drawn; an arm (or a group) of fewer than ``minimum`` clients is left
    out. Each panel says how many clients each mean rests on, with the numbers of the
    protected claims table (``claims``, the outcome's change claim) when it shows them and
    they are the drawn clients; without ``claims`` no number is printed.

    Multi-panel: ``ax`` is replaced by a SubFigure holding the panels, which is returned
    (without ``ax``, the new Figure). ``palette``: arm (``mfr``, ``control``) -> colour, or a
    seaborn palette; hatch and line style still tell the arms apart.
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
    colours = _colours(palette, ["mfr", "control"], arm_colour,
                       drawn=sorted({arm for _, drawn, _ in panels for arm in drawn}))
    fig = _panel_area(ax, 2.5 * ncols + 1.0, 3.3 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    legend: list[tuple[Artist, str]] = []
    for panel_ax in axes.flat[len(panels):]:
        panel_ax.set_visible(False)
    for ax, (group, drawn, counts) in zip(axes.flat, panels, strict=False):  # noqa: B020
        for offset, arm in zip((-0.06, 0.06), drawn, strict=False):
            style = {**_style("arm", arm, "mfr"), "colour": colours[arm]}
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

@_themed
def pain_trajectories(sessions: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS, *,
                      ax: Axes | None = None, palette: Palette = None) -> Figure | Axes:
    """Mean pre-session pain by week since the client's first session, per audience group
    (fixed group colours, each with its own marker and line style); a week of a group with
    fewer than ``minimum`` clients is not drawn.

    One panel: drawn into ``ax`` (returned, the legend beside it) or a new Figure (returned).
    ``palette``: audience group -> colour, or a seaborn palette."""
    frame = sessions.dropna(subset=["pain_pre"]).assign(
        week=lambda d: np.floor(d["weeks_since_start"]).clip(upper=16)
    )
    clients = frame.groupby(["audience_group", "week"], observed=True)["client_id"].transform(
        "nunique")
    frame = frame.loc[clients >= minimum]
    frame = frame.assign(audience_group=frame["audience_group"].astype(str))
    groups = _ordered(frame["audience_group"])
    colours = _colours(palette, groups, group_colour)
    given = ax
    fig, ax = _one_panel(ax, COLUMN_INCHES, 4.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # seaborn 0.13 on pandas 3 internals
        sns.lineplot(data=frame, x="week", y="pain_pre", hue="audience_group",
                     hue_order=groups, style="audience_group", style_order=groups,
                     palette=colours,
                     markers={g: group_marker(g) for g in groups},
                     dashes={g: _dash(g) for g in groups},
                     errorbar=("ci", 95), n_boot=200, seed=0, ax=ax, legend=False)
    ax.set_xlabel("weeks since first session (16 = 16 or more)")
    ax.set_ylabel("pain before the session (0-10)")
    ax.set_title(f"Does pain fall over the weeks? (weeks with {minimum}+ clients)")
    handles = [Line2D([], [], color=colours[g], marker=group_marker(g),
                      linestyle=_style("group", g)["linestyle"] or "solid") for g in groups]
    _outside_legend(fig, handles, [group_label(g) for g in groups], ncols=3, ax=given)
    return fig if given is None else ax


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


@_themed
def responder_bars(responders: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS, *,
                   ax: Axes | None = None, palette: Palette = None) -> FigureLike:
    """Share of clients whose own average change reaches the MCID: one panel per outcome
    (each ROM measure and both lasting-relief rows apart), a row per audience group with the
    MFR and control bars side by side, the percentage printed on each bar and Wilson 95%
    intervals.

    Only numbers the protected claims table holds are drawn, and no bar whose responders or
    non-responders number 1 to ``minimum``-1: such an arm reads 'withheld'; a group (or an
    outcome) with no bar at all is left out and counted in a note under the legend.

    Multi-panel: ``ax`` is replaced by a SubFigure holding the panels, which is returned
    (without ``ax``, the new Figure). ``palette``: arm (``mfr``, ``control``) -> colour, or a
    seaborn palette; the control bars keep their hatch.
    """
    colours = _colours(palette, ["mfr", "control"], arm_colour)
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
    # one column: a grid of two columns shrank to unreadable text on a phone (a 420 px
    # screen showed it at 40 % of its size)
    heights = [0.5 * len(bars) + 0.9 for _, bars in panels]
    fig = _panel_area(ax, COLUMN_INCHES, sum(heights) + 1.3)
    legend: list[tuple[Artist, str]] = []
    if panels:
        axes = fig.subplots(len(panels), 1, squeeze=False,
                            gridspec_kw={"height_ratios": heights})[:, 0]
        for panel_ax, panel in zip(axes, panels, strict=True):
            legend += _responder_panel(panel_ax, *panel, minimum, colours)
        axes[-1].set_xlabel("clients whose own average change reaches the MCID",
                            fontsize="small")
    handles, labels = _unique(legend)
    order = [labels.index(x) for x in ("MFR clients", "control clients", "95% interval (Wilson)")
             if x in labels]
    notes = [f"{WITHHELD_WORDS}: fewer than {minimum} responders or non-responders,\n"
             "or hidden to protect a smaller count (privacy)"]
    if left_out:
        notes.append(f"{left_out} group row(s) with no bar to show are left out")
    blank = Line2D([], [], linestyle="", marker="")
    _outside_legend(fig, [handles[i] for i in order] + [blank] * len(notes),
                    [labels[i] for i in order] + notes, ncols=2)
    return fig


def _responder_unit(rows: pd.DataFrame) -> str:
    unit = _unit(rows)
    return f" {unit}" if unit and "odds" not in unit else ""


def _responder_panel(ax: Axes, words: str,
                     bars: dict[str, dict[str, tuple[float, float, float]]],
                     minimum: int = MIN_REPORTED_CLIENTS,
                     colours: Mapping[str, Any] | None = None) -> list[tuple[Artist, str]]:
    legend: list[tuple[Artist, str]] = []
    width = 0.38
    positions = np.arange(len(bars), dtype=float)[::-1]
    for y, arms in zip(positions, bars.values(), strict=True):
        for offset, arm in ((width / 2, "mfr"), (-width / 2, "control")):
            share, low, high = arms[arm]
            style = _style("arm", arm, "mfr")
            style = {**style, "colour": (colours or {}).get(arm, style["colour"])}
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

ROW_FLOW_COLOURS = {"clean": "#0b6e4f", "quarantined": "#b5520b", "duplicate": "#8c8c8c"}
REASON_COLOUR = "#b5520b"


@_themed
def row_flow(report: dict, *, ax: Axes | None = None,
             palette: Palette = None) -> Figure | Axes:
    """Where every input row went: clean, quarantined or duplicate (labelled bars).

    One panel: drawn into ``ax`` (returned) or a new Figure (returned). ``palette``: 'clean',
    'quarantined', 'duplicate' -> colour, or a seaborn palette."""
    counts = pd.Series(
        {"clean": report["rows_clean"], "quarantined": report["rows_quarantined"],
         "duplicate": report["rows_duplicate"]}
    )
    colours = _colours(palette, list(counts.index), ROW_FLOW_COLOURS.__getitem__)
    given = ax
    fig, ax = _one_panel(ax, 7, 2.2)
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1],
            color=[colours[k] for k in counts.index[::-1]])
    for y, value in enumerate(counts.to_numpy()[::-1]):
        ax.text(value, y, f" {value:,}", va="center")
    ax.set_xlim(0, max(counts.max(), 1) * 1.15)
    ax.set_xlabel(f"rows (of {report['rows_in']:,} read)")
    ax.set_title("Where the input rows went")
    return fig if given is None else ax


@_themed
def reason_bars(reasons: pd.Series, *, ax: Axes | None = None,
                palette: Palette = None) -> Figure | Axes:
    """Rows per quarantine reason (the index holds the words, e.g. 'pain before: outside
    0-10'), the count printed at each bar.

    One panel: drawn into ``ax`` (returned) or a new Figure (returned). ``palette``: reason
    -> colour, or a seaborn palette (default one colour for every bar)."""
    ordered = reasons.sort_values()
    colours = _colours(palette, [str(r) for r in ordered.index], lambda _reason: REASON_COLOUR)
    given = ax
    fig, ax = _one_panel(ax, COLUMN_INCHES, 0.3 * max(len(ordered), 2) + 1.2)
    ax.barh(list(ordered.index), ordered.to_numpy(),
            color=[colours[str(r)] for r in ordered.index] or REASON_COLOUR)
    for y, value in enumerate(ordered.to_numpy()):
        ax.text(value, y, f" {value:,}", va="center", fontsize="small")
    ax.set_xlim(0, max(ordered.max() if len(ordered) else 1, 1) * 1.15)
    ax.set_xlabel("rows (a row can have several reasons)")
    ax.set_title("Why rows were quarantined")
    ax.grid(axis="y", visible=False)
    return fig if given is None else ax


@_themed
def missingness_heatmap(sessions: pd.DataFrame, columns: list[str],
                        names: dict[str, str] | None = None, *, ax: Axes | None = None,
                        palette: Palette = None) -> Figure | Axes:
    """Percent of missing values per measure (rows) and audience group (columns), printed in
    every cell; tall rather than wide, so it stays readable on a phone.

    One panel: drawn into ``ax`` (returned; its colour bar takes room from it) or a new
    Figure (returned). ``palette``: the colour map of the shares, as seaborn's heatmap takes
    it (a name, a list of colours or a Colormap), default 'Greys'."""
    if isinstance(palette, Mapping):
        raise ValueError("palette: a heatmap takes a colour map (a name such as 'Greys', a "
                         "list of colours or a Colormap), not a mapping")
    share = sessions[columns].isna().groupby(sessions["audience_group"], observed=True).mean()
    share = share.loc[[g for g in _ordered(share.index.astype(str)) if g in share.index]]
    share.index = [group_label(g) for g in share.index]
    share.columns = [(names or {}).get(c, c) for c in share.columns]
    share = share.T
    given = ax
    fig, ax = _one_panel(ax, max(1.2 * share.shape[1] + 3.2, 5.5), 0.34 * len(share) + 1.6)
    sns.heatmap(share, vmin=0, vmax=1, cmap="Greys" if palette is None else palette,
                annot=True, fmt=".0%",
                annot_kws={"fontsize": "small"}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "share missing", "format": PercentFormatter(1.0, 0),
                          "shrink": 0.6}, ax=ax)
    ax.xaxis.tick_top()
    ax.set_xticklabels(ax.get_xticklabels(), rotation=0, fontsize="small")
    ax.tick_params(axis="both", length=0)
    ax.set_ylabel("")
    ax.set_title("Missing values by audience group (percent of sessions)", pad=24)
    return fig if given is None else ax


@_themed
def rating_bars(shares: pd.DataFrame, names: dict[str, str] | None = None, *,
                ax: Axes | None = None, palette: Palette = None) -> FigureLike:
    """Bar charts of 0-10 ratings: share of a group's sessions at each value (values held by
    few clients pooled with their neighbours into one wider bar), one row of panels per
    audience group, one column per measure. Bars never extend below 0 or above 10.

    Multi-panel: ``ax`` is replaced by a SubFigure holding the panels, which is returned
    (without ``ax``, the new Figure). ``palette``: audience group -> colour, or a seaborn
    palette; each row of panels is labelled with its group."""
    fields = list(dict.fromkeys(shares["field"]))
    groups = _ordered(shares["audience_group"].astype(str))
    colours = _colours(palette, groups, group_colour)
    fig = _panel_area(ax, 1.9 * max(len(fields), 1) + 1.2, 1.35 * max(len(groups), 1) + 1.2)
    axes = fig.subplots(max(len(groups), 1), max(len(fields), 1), squeeze=False,
                        sharex=True, sharey=True)
    for i, group in enumerate(groups):
        for j, field in enumerate(fields):
            ax = axes[i][j]
            cell = shares.loc[(shares["audience_group"].astype(str) == group)
                              & (shares["field"] == field)]
            ax.bar(cell["low"] - 0.45, cell["share"], width=cell["high"] - cell["low"] + 0.9,
                   align="edge", color=colours[group], edgecolor="white")
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


# ------------------------------------------------------------------------ client flow ---

FLOW_COLUMN = 2.9  # inches per column of boxes: two columns fit a 420 px screen readably
FLOW_BOX = 2.65  # inches of a box's width
FLOW_TITLE_PT = 10.5  # text sizes of the flow diagram: at 420 px they stay >= 9 CSS px
FLOW_TEXT_PT = 9.5
FLOW_LIST_LINES = 6  # lines a box lists (quarantine reasons, claims); the rest are summed
FLOW_GAP = 0.28  # inches between boxes
SUPPRESSED = "suppressed"


def _flow_number(value: object, noun: str) -> str:
    """One count of a flow box in words: '1,234 sessions', 'clients: suppressed', or ''
    when the table has no count (not available)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return ""
    text = str(value).strip()
    if text == SUPPRESSED or text.startswith("fewer than"):
        return f"{noun}: {text}"
    try:
        return f"{int(round(float(text))):,} {noun}"
    except ValueError:
        return f"{noun}: {text}"


#: flow stages that count input rows (before cleaning), not sessions
FLOW_ROW_STAGES = ("raw", "quarantined", "duplicate", "reason:")


def _flow_counts(row: Mapping[str, Any]) -> str:
    rows = str(row.get("stage", "")).startswith(FLOW_ROW_STAGES)
    parts = [_flow_number(row.get("sessions"), "rows" if rows else "sessions"),
             _flow_number(row.get("clients"), "clients")]
    return " · ".join(p for p in parts if p)


def _numeric(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def _flow_list(children: list[dict[str, Any]]) -> list[str]:
    """Lines listing leaf boxes inside their parent's box, largest first; beyond
    :data:`FLOW_LIST_LINES` the smallest are counted on one line (the flow table lists them
    all), never summed."""
    size = [max(_numeric(c.get("sessions")), _numeric(c.get("clients")), -1.0)
            if not (math.isnan(_numeric(c.get("sessions")))
                    and math.isnan(_numeric(c.get("clients")))) else -1.0 for c in children]
    order = sorted(range(len(children)), key=lambda i: -size[i])
    shown = order if len(order) <= FLOW_LIST_LINES else order[:FLOW_LIST_LINES - 1]
    lines = []
    for i in shown:
        counts = _flow_counts(children[i])
        lines.append(f"{children[i]['label']}" + (f": {counts}" if counts else ""))
    rest = order[len(shown):]
    if rest:  # not summed: reasons overlap (a row has several) and claims share clients
        lines.append(f"{len(rest)} more in the table below")
    return lines


def _wrap(text: str, points: float, width: float = FLOW_BOX - 0.2) -> list[str]:
    import textwrap

    characters = max(int(width * 72 / (0.55 * points)), 12)
    return textwrap.wrap(text, characters) or [""]


def _line_height(points: float) -> float:
    return points * 1.35 / 72


class _FlowBox:
    """One box of the flow diagram: its text lines, place (inches) and style."""

    def __init__(self, row: Mapping[str, Any], side: bool, listed: list[str]) -> None:
        self.stage = str(row["stage"])
        self.arm = str(row.get("arm") or "")
        self.side = side
        self.title = _wrap(str(row.get("label") or row["stage"]), FLOW_TITLE_PT)
        counts = _flow_counts(row)
        self.counts = _wrap(counts, FLOW_TEXT_PT) if counts else ["not available"]
        self.listed = [w for line in listed for w in _wrap("• " + line, FLOW_TEXT_PT)]
        self.height = (len(self.title) * _line_height(FLOW_TITLE_PT)
                       + len(self.counts) * _line_height(FLOW_TEXT_PT)
                       + len(self.listed) * _line_height(FLOW_TEXT_PT) + 0.22)
        self.x = 0.0  # centre
        self.y = 0.0  # top


def _flow_size(row: Mapping[str, Any]) -> tuple[float, float]:
    """Sort key of a box: its sessions, then its clients (hidden or missing counts last)."""
    values = [_numeric(row.get(c)) for c in ("sessions", "clients")]
    return tuple(-1.0 if math.isnan(v) else v for v in values)  # type: ignore[return-value]


def _flow_layout(flow: pd.DataFrame) -> tuple[list[_FlowBox], list[tuple[_FlowBox, _FlowBox]],
                                               float, float]:
    """Boxes, arrows (parent, child) and the size in inches of a CONSORT-style diagram.

    At each step the main line continues through the largest child that has children of its
    own; the other children leave it and sit in boxes to its right, each listing its own
    children (the quarantine reasons) inside itself. Children that name different arms split
    the line into one column per arm; within a column what leaves a step is listed inside
    the step's box. A box whose children are all leaves (the claims analysed) lists them."""
    rows = [dict(r) for r in flow.to_dict("records")]
    stages = {str(r["stage"]) for r in rows}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for row in rows:
        parent = str(row.get("parent") or "")
        if parent and parent in stages and parent != str(row["stage"]):
            children.setdefault(parent, []).append(row)
        else:
            roots.append(row)

    def kids(row: dict[str, Any]) -> list[dict[str, Any]]:
        return children.get(str(row["stage"]), [])

    def arm_of(row: dict[str, Any]) -> str:
        value = row.get("arm")
        return "" if value is None or pd.isna(value) else str(value)

    def split(row: dict[str, Any]) -> list[dict[str, Any]]:
        """The children that split the line into arms (empty when it does not split)."""
        arms = [c for c in kids(row) if arm_of(c) and arm_of(c) != arm_of(row)]
        return arms if len({arm_of(c) for c in arms}) > 1 else []

    def main(row: dict[str, Any]) -> dict[str, Any] | None:
        going = [c for c in kids(row) if kids(c)]
        return max(going, key=_flow_size) if going else None

    def width(row: dict[str, Any], in_split: bool) -> int:
        arms = split(row)
        if arms:
            return sum(width(a, True) for a in arms)
        following = main(row)
        aside = any(c is not following for c in kids(row)) and following is not None
        own = 2 if aside and not in_split else 1
        return max(own, width(following, in_split)) if following is not None else own

    boxes: list[_FlowBox] = []
    arrows: list[tuple[_FlowBox, _FlowBox]] = []

    def place(row: dict[str, Any], left: int, span: int, top: float,
              in_split: bool) -> tuple[_FlowBox, float]:
        arms = split(row)
        following = None if arms else main(row)
        others = [c for c in kids(row) if c is not following and not any(c is a for a in arms)]
        listed = others if (in_split or following is None) else []
        box = _FlowBox(row, False, _flow_list(listed) if listed else [])
        box.x = (left + (span / 2 if in_split or span == 1 else 0.5)) * FLOW_COLUMN
        box.y = top
        boxes.append(box)
        bottom = top + box.height + FLOW_GAP
        if following is not None and not in_split:
            for other in others:  # what leaves the main line here: boxes to its right
                aside = _FlowBox(other, True, _flow_list(kids(other)))
                aside.x, aside.y = (left + 1.5) * FLOW_COLUMN, bottom
                boxes.append(aside)
                arrows.append((box, aside))
                bottom += aside.height + FLOW_GAP * 0.7
        ends = [bottom]
        if following is not None:
            child, end = place(following, left, span, bottom, in_split)
            arrows.append((box, child))
            ends.append(end)
        column = left
        for arm in arms:
            w_ = width(arm, True)
            child, end = place(arm, column, w_, bottom, True)
            arrows.append((box, child))
            ends.append(end)
            column += w_
        return box, max(ends)

    columns = max([width(r, False) for r in roots] + [1])
    top = 0.1
    for root in roots:
        _, top = place(root, 0, columns, top, False)
    return boxes, arrows, columns * FLOW_COLUMN, top


def flow_diagram_size(flow_table: pd.DataFrame) -> tuple[float, float]:
    """Width and height in inches the flow diagram needs (to make an Axes for ``ax=``)."""
    _, _, width, height = _flow_layout(flow_table)
    return width, height


@_themed
def flow_diagram(flow_table: pd.DataFrame, *, ax: Axes | None = None,
                 palette: Palette = None) -> Figure | Axes:
    """CONSORT-style diagram of the flow of rows, sessions and clients, one box per row of
    the flow table (``stage, parent, label, sessions, clients, arm``; ``parent`` '' for the
    root; a count NaN when not available, or the marker 'suppressed' for a hidden one).

    The main line runs down the left; what leaves it at a step (quarantined, duplicates)
    sits in boxes to its right; a split (the arms) gives each branch its own column; a box
    whose children are all leaves (the quarantine reasons, the claims analysed) lists them
    inside itself, the largest first, the smallest beyond six summed on one line (the flow
    table lists every one). Boxes never overlap: each takes its own rows and column.

    One panel: drawn into ``ax`` (returned; size it with :func:`flow_diagram_size`, since text
    keeps its point size) or a new Figure of that size (returned). ``palette``: arm
    (``mfr``, ``control``) -> edge colour of arm boxes, or a seaborn palette; the control
    arm's boxes are dashed and every box names its arm in words.
    """
    from matplotlib.patches import FancyBboxPatch

    missing = {"stage", "parent", "label", "sessions", "clients"} - set(flow_table)
    if missing:
        raise ValueError(f"flow_table: missing column(s) {', '.join(sorted(missing))}")
    boxes, arrows, width, height = _flow_layout(flow_table)
    arms = sorted({b.arm for b in boxes if b.arm})
    colours = _colours(palette, ["mfr", "control"], arm_colour, drawn=arms)
    given = ax
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig: FigureLike = ReportFigure(figsize=(width, height + 0.1), dpi=FIGURE_DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.figure
    ax.set_xlim(0, width)
    ax.set_ylim(height + 0.1, 0)
    ax.set_axis_off()
    for box in boxes:
        left = box.x - FLOW_BOX / 2
        edge = colours.get(box.arm, INK) if box.arm else INK
        dashed = _style("arm", box.arm, "mfr")["linestyle"] == "dashed" if box.arm else False
        ax.add_patch(FancyBboxPatch(
            (left, box.y), FLOW_BOX, box.height, boxstyle="round,pad=0,rounding_size=0.06",
            facecolor="#f6f8fa" if box.side else "white", edgecolor=edge,
            linewidth=1.6 if box.arm else 1.0, linestyle="--" if dashed else "-",
            gid=f"flow-box:{box.stage}"))
        y = box.y + 0.1
        for line in box.title:
            ax.text(box.x, y, line, ha="center", va="top", fontsize=FLOW_TITLE_PT,
                    fontweight="bold", color=INK)
            y += _line_height(FLOW_TITLE_PT)
        for line in box.counts:
            ax.text(box.x, y, line, ha="center", va="top", fontsize=FLOW_TEXT_PT, color=INK)
            y += _line_height(FLOW_TEXT_PT)
        for line in box.listed:
            ax.text(left + 0.1, y, line, ha="left", va="top", fontsize=FLOW_TEXT_PT,
                    color=INK)
            y += _line_height(FLOW_TEXT_PT)
    for parent, child in arrows:
        style = {"arrowstyle": "-|>", "color": QUIET, "linewidth": 1.0,
                 "shrinkA": 0, "shrinkB": 0}
        if child.side:  # from the main line, across to the box on its right
            start = (parent.x, child.y + child.height / 2)
            end = (child.x - FLOW_BOX / 2, child.y + child.height / 2)
            ax.annotate("", xy=end, xytext=start, arrowprops=style)
        else:
            elbow = "angle,angleA=-90,angleB=180,rad=0" if child.x != parent.x else "arc3"
            ax.annotate("", xy=(child.x, child.y), xytext=(parent.x, parent.y + parent.height),
                        arrowprops={**style, "connectionstyle": elbow})
    return fig if given is None else ax


# ------------------------------------------------------------ each client's own result ---

RCI_BIN_WIDTHS = (1.0, 2.0)  # pain points per square of the Jacobson-Truax heat map
RCI_SHOWN_SHARE = 0.5  # the finest squares showing at least this share of clients are used
ARM_ORDER = ("mfr", "control")


def rci_band(individual: pd.DataFrame, band: float | None = None) -> float:
    """1.96 x S_diff, the reliable-change band in points: ``band`` when given, else the
    column ``rci_band``, else from the RCI itself (rci = change / S_diff, so S_diff =
    change / rci on any client with rci != 0)."""
    if band is not None:
        return float(band)
    if "rci_band" in individual and individual["rci_band"].notna().any():
        return float(individual["rci_band"].dropna().iloc[0])
    usable = individual.loc[individual["rci"].astype(float).abs() > 1e-9]
    if usable.empty:
        raise ValueError("rci band: give band= (1.96 x S_diff) or a column rci_band")
    return 1.96 * float((usable["change"] / usable["rci"]).abs().median())


def _arms_drawn(individual: pd.DataFrame, minimum: int) -> list[str]:
    arms = individual["arm"].astype("string").fillna("mfr")
    counts = arms.value_counts()
    present = [a for a in ARM_ORDER if a in counts] + sorted(set(counts.index) - set(ARM_ORDER))
    return [a for a in present if counts[a] >= minimum]


def _squares(values: pd.DataFrame, width: float, minimum: int) -> tuple[np.ndarray, Any]:
    """Bin edges on the 0-10 scale and the client counts per square, squares with fewer
    than ``minimum`` clients masked (never drawn)."""
    edges = np.arange(-width / 2, 10 + width, width)
    counts, _, _ = np.histogram2d(values["pre"].astype(float), values["post"].astype(float),
                                  bins=[edges, edges])
    return edges, np.ma.masked_less(counts.T, minimum)


def _bin_width(individual: pd.DataFrame, arms: list[str], minimum: int) -> float:
    for width in RCI_BIN_WIDTHS:
        shares = []
        for arm in arms:
            values = individual.loc[individual["arm"].astype("string").fillna("mfr") == arm]
            _, counts = _squares(values, width, minimum)
            shares.append(counts.sum() / max(len(values), 1) if counts.count() else 0.0)
        if shares and min(shares) >= RCI_SHOWN_SHARE:
            return width
    return RCI_BIN_WIDTHS[-1]


@_themed
def jacobson_truax_plot(individual: pd.DataFrame, mcid: float | None = None,
                        band: float | None = None, minimum: int = MIN_REPORTED_CLIENTS, *,
                        bin_width: float | None = None, ax: Axes | None = None,
                        palette: Palette = None) -> FigureLike:
    """Jacobson-Truax plot: pain before (x) against after (y) per client, the no-change line,
    the reliable-change band (no-change ± 1.96 S_diff) and the MCID line (``mcid`` points
    below no change), one panel per arm (columns ``pre, post, arm`` plus ``rci`` and
    ``change``, or ``band`` / a column ``rci_band``: see :func:`rci_band`).

    Privacy: clients are not drawn one by one. Each panel is a heat map of how many clients
    fall in each square of the 0-10 grid; a square with fewer than ``minimum`` clients is
    left blank (not marked, so no rare combination of values is shown), and an arm of fewer
    than ``minimum`` clients gets no panel. The squares are 1 point wide when that shows at
    least half of every drawn arm's clients, else 2 points (``bin_width`` fixes it). The
    counts of the classes are in the table beside the figure, not read off the squares.

    Multi-panel (one per arm, stacked so that each stays readable on a phone): ``ax`` is
    replaced by a SubFigure holding the panels, which is returned (without ``ax``, the new
    Figure). ``palette``: arm -> colour of its squares, or a seaborn palette.
    """
    from matplotlib.colors import LinearSegmentedColormap

    frame = individual.dropna(subset=["pre", "post"])
    arms = _arms_drawn(frame, minimum)
    colours = _colours(palette, [*ARM_ORDER, *arms], arm_colour, drawn=arms)
    width = bin_width or (_bin_width(frame, arms, minimum) if arms else RCI_BIN_WIDTHS[0])
    reliable = rci_band(frame, band) if arms else math.nan
    fig = _panel_area(ax, 4.8, 4.3 * max(len(arms), 1) + 0.9)
    axes = fig.subplots(max(len(arms), 1), 1, squeeze=False)[:, 0]
    legend: list[tuple[Artist, str]] = []
    if not arms:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, f"no arm with {minimum} or more clients: not drawn (privacy)",
                     ha="center", va="center", transform=axes[0].transAxes, color=QUIET)
        return fig
    grid = np.array([-0.5, 10.5])
    for panel, arm in zip(axes, arms, strict=True):
        values = frame.loc[frame["arm"].astype("string").fillna("mfr") == arm]
        edges, counts = _squares(values, width, minimum)
        cmap = LinearSegmentedColormap.from_list(
            f"rci-{arm}", ["#f2f2f2", colours[arm]]).with_extremes(bad=(0, 0, 0, 0))
        mesh = panel.pcolormesh(edges, edges, counts, cmap=cmap, vmin=minimum,
                                vmax=max(float(counts.max() or minimum), minimum + 1))
        bar = fig.colorbar(mesh, ax=panel, shrink=0.7, pad=0.02)
        bar.locator = MaxNLocator(nbins=5, integer=True)
        bar.update_ticks()
        bar.set_label(f"clients in the square ({minimum} or more)", fontsize="small")
        line = panel.plot(grid, grid, color=INK, linewidth=1.2)[0]
        legend.append((line, "no change (after = before)"))
        for sign in (-1, 1):
            dotted = panel.plot(grid, grid + sign * reliable, color=QUIET, linestyle=":",
                                linewidth=1.5)[0]
        legend.append((dotted, f"reliable-change band (±{format_threshold(reliable)} points)"))
        if mcid is not None and math.isfinite(float(mcid)):
            threshold = panel.plot(grid, grid - float(mcid), color=THRESHOLD_COLOUR,
                                   linestyle="--", linewidth=1.2)[0]
            legend.append((threshold, f"MCID: {format_threshold(float(mcid))} points less pain"))
        panel.text(9.8, 0.2, "reliably\nimproved", ha="right", va="bottom", fontsize="small",
                   color=INK)
        panel.text(0.2, 9.8, "reliably\nworse", ha="left", va="top", fontsize="small",
                   color=INK)
        panel.set_xlim(-0.5, 10.5)
        panel.set_ylim(-0.5, 10.5)
        panel.set_aspect("equal")
        panel.set_xticks(range(0, 11, 2))
        panel.set_yticks(range(0, 11, 2))
        panel.set_xlabel("pain before (0-10, first session with both ratings)")
        panel.set_ylabel("pain after (0-10, same session)")
        panel.set_title(_style("arm", arm, "mfr")["label"] or arm, loc="left")
    _outside_legend(fig, *_unique(legend), ncols=1)
    fig.suptitle(f"Each client's pain before and after (squares of {format_threshold(width)} "
                 f"point{'s' if width != 1 else ''}; blank: fewer than {minimum} clients)",
                 fontsize="medium")
    return fig


ECDF_STEP = 0.05  # the eCDF is drawn at every 5 % of clients, not at every client


def change_quantiles(change: pd.Series, minimum: int = MIN_REPORTED_CLIENTS,
                     step: float = ECDF_STEP) -> pd.Series:
    """Quantiles of change at every ``step`` of clients (index: the share), keeping only the
    shares with at least ``minimum`` clients at or below and at or above: no drawn point
    rests on fewer clients (the extremes, single clients' values, are never drawn)."""
    values = change.dropna().astype(float)
    n = len(values)
    shares = np.round(np.arange(step, 1.0, step), 10)
    shares = shares[(shares * n >= minimum) & ((1 - shares) * n >= minimum)]
    if n == 0 or len(shares) == 0:
        return pd.Series(dtype="float64")
    return pd.Series(np.quantile(values, shares), index=shares)


@_themed
def change_ecdf(individual: pd.DataFrame, mcid: float | None,
                minimum: int = MIN_REPORTED_CLIENTS, *, step: float = ECDF_STEP,
                ax: Axes | None = None, palette: Palette = None) -> Figure | Axes:
    """Cumulative distribution of each client's change in pain (after minus before), one line
    per arm, with the MCID (``mcid`` points less pain) and no change marked: the share of
    clients whose change is at most a value (read at the MCID: the share improved by it).

    Privacy: seaborn's ``ecdfplot`` steps at every client's value, so the curve is drawn at
    quantiles instead: every ``step`` (5 %) of clients, only where at least ``minimum``
    clients lie on each side (:func:`change_quantiles`), so the extremes are never drawn; an
    arm too small for any such quantile gets no line.

    One panel: drawn into ``ax`` (returned) or a new Figure (returned). ``palette``: arm ->
    colour, or a seaborn palette; the control line is also dashed with square markers.
    """
    frame = individual.dropna(subset=["change"])
    arms = [a for a in _arms_drawn(frame, minimum)
            if len(change_quantiles(frame.loc[frame["arm"].astype("string").fillna("mfr") == a,
                                              "change"], minimum, step))]
    colours = _colours(palette, [*ARM_ORDER, *arms], arm_colour, drawn=arms)
    given = ax
    fig, ax = _one_panel(ax, 6.0, 4.2)
    legend: list[tuple[Artist, str]] = []
    for arm in arms:
        style = _style("arm", arm, "mfr")
        quantiles = change_quantiles(
            frame.loc[frame["arm"].astype("string").fillna("mfr") == arm, "change"],
            minimum, step)
        line = ax.plot(quantiles.to_numpy(), quantiles.index.to_numpy(), drawstyle="steps-post",
                       color=colours[arm], linestyle=style["linestyle"] or "solid",
                       marker=style["marker"], markersize=4, linewidth=2)[0]
        legend.append((line, style["label"] or arm))
    zero = ax.axvline(0, color=INK, linewidth=1)
    legend.append((zero, "no change"))
    if mcid is not None and math.isfinite(float(mcid)):
        threshold = ax.axvline(-float(mcid), color=THRESHOLD_COLOUR, linestyle="--",
                               linewidth=1.2)
        legend.append((threshold, f"MCID: {format_threshold(float(mcid))} points less pain"))
    if not arms:
        ax.text(0.5, 0.5, f"no arm with enough clients to draw (at least {minimum} on each "
                "side of every point)", ha="center", va="center", transform=ax.transAxes,
                color=QUIET, wrap=True)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("change in pain, after minus before (points; below 0 = less pain)")
    ax.set_ylabel("clients with this change or less")
    ax.set_title(f"How much each client's pain changed (every {step:.0%} of clients)",
                 fontsize="medium")
    _outside_legend(fig, legend and [h for h, _ in legend], [w_ for _, w_ in legend], ncols=2,
                    ax=given)
    return fig if given is None else ax


# ---------------------------------------------------------------- funnel plots ---

FLAG_STYLE = {  # the flag of a unit: colour and marker (the marker is the cue without colour)
    "above": ("#0b6e4f", "^", "above the 95 % limits (better than expected)"),
    "below": ("#b5520b", "v", "below the 95 % limits (worse than expected)"),
    "within": ("#8c959f", "o", "within the limits"),
}
FUNNEL_COLUMNS = {  # (indicator, adjustment) -> (estimate column, flag column)
    ("o_minus_e", "unadjusted"): ("unadjusted_o_minus_e", "flag_unadjusted"),
    ("o_minus_e", "adjusted"): ("o_minus_e", "flag_adjusted"),
    ("responders_o_minus_e", "unadjusted"): ("responders_unadjusted_o_minus_e",
                                             "flag_responders_unadjusted"),
    ("responders_o_minus_e", "adjusted"): ("responders_o_minus_e",
                                           "flag_responders_adjusted"),
}
ADJUSTMENT_TITLES = {"unadjusted": "Unadjusted: against the network's mean",
                     "adjusted": "Risk-adjusted: against each client's expected change"}


@_themed
def funnel_plot(units: pd.DataFrame, limits: pd.DataFrame, indicator: str = "o_minus_e", *,
                y_label: str = "", better: int = 1, ax: Axes | None = None) -> FigureLike:
    """Funnel plot of one indicator of the benchmarking table against clients: one panel
    unadjusted, one risk-adjusted (stacked, readable on a phone), each unit a point, the
    95 % (dashed) and 99.8 % (dotted) limits around 0 with the overdispersion the limits
    table applies, and every unit outside the 95 % limits labelled. No rank, no order.

    ``units``: rows of :func:`mfr_analysis.benchmarking.benchmark` that may be drawn (named,
    not pooled, count shown); ``limits``: its ``limits``; ``y_label``: the quantity ("change",
    completed per panel). ``better``: the sign of a better
    result on this indicator (-1 when a fall is better, as for pain). Multi-panel: ``ax`` is
    replaced by a SubFigure holding the panels, which is returned."""
    fig = _panel_area(ax, 6.4, 8.6)
    axes = fig.subplots(2, 1, squeeze=False)[:, 0]
    legend: list[tuple[Artist, str]] = []
    named = units.loc[~units["pooled"].astype(bool)] if "pooled" in units else units
    for panel, adjustment in zip(axes, ("unadjusted", "adjusted"), strict=True):
        estimate, flag = FUNNEL_COLUMNS[indicator, adjustment]
        grid = limits.loc[(limits["indicator"] == indicator)
                          & (limits["adjustment"] == adjustment)]
        for level, style in ((0.95, "--"), (0.998, ":")):
            line = grid.loc[np.isclose(grid["level"], level)].sort_values("n_clients")
            if line.empty:
                continue
            for column in ("lower", "upper"):
                drawn = panel.plot(line["n_clients"], line[column], color=QUIET,
                                   linestyle=style, linewidth=1.1)[0]
            legend.append((drawn, f"{level:.1%} limits".replace(".0%", "%")))
        zero = panel.axhline(0, color=INK, linewidth=1)
        legend.append((zero, "as expected (0)"))
        for key, (colour, marker, words) in FLAG_STYLE.items():
            rows = named.loc[named[flag].astype("string").fillna("within") == key]
            if rows.empty:
                continue
            points = panel.scatter(rows["n_clients"], rows[estimate], color=colour,
                                   marker=marker, s=34, edgecolors=INK, linewidths=0.4,
                                   zorder=3)
            legend.append((points, words))
            if key != "within":
                for row in rows.itertuples():
                    panel.annotate(str(row.unit), (row.n_clients,
                                                   getattr(row, estimate)),
                                   xytext=(4, 4), textcoords="offset points",
                                   fontsize="x-small", color=INK)
        panel.set_title(ADJUSTMENT_TITLES[adjustment], fontsize="medium")
        panel.set_xlabel("clients of the unit")
        versus = "minus network mean" if adjustment == "unadjusted" else "obs. minus exp."
        panel.set_ylabel(f"{y_label or indicator.replace('_', ' ')}: {versus}")
        panel.text(0.99, 0.98 if better > 0 else 0.02,
                   "better than expected" + (" ↑" if better > 0 else " ↓"),
                   transform=panel.transAxes, ha="right",
                   va="top" if better > 0 else "bottom", fontsize="x-small", color=QUIET)
        if named.empty:
            panel.text(0.5, 0.5, "no unit to show (too small, or withheld for privacy)",
                       ha="center", va="center", transform=panel.transAxes, color=QUIET)
    handles, labels = _unique(legend)
    _outside_legend(fig, handles, labels, ncols=3)
    return fig
