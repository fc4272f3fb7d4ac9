"""Figures of the report: each function takes tidy frames and returns a matplotlib Figure.

Figures never show a group with fewer clients than the privacy minimum (callers pass frames
already filtered with :func:`mfr_analysis.report.views.reportable_sessions`), nor any point
resting on fewer clients than that, nor a single client's values.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")  # reports are rendered headless; no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mfr_analysis.claims import claim_registry  # noqa: E402
from mfr_analysis.config import MIN_REPORTED_CLIENTS  # noqa: E402
from mfr_analysis.report.labels import (  # noqa: E402
    claim_label,
    group_label,
    outcome_suffix,
    verdict_colour,
)

sns.set_theme(style="whitegrid", context="notebook")
# Figure text holds labels that come from data: never read "$...$" in it as mathtext (a label
# could otherwise typeset math or fail to draw), and never hand it to a TeX installation.
matplotlib.rcParams.update({"text.parse_math": False, "text.usetex": False})
FIGURE_DPI = 90


def _new(width: float, height: float) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    return fig, ax


def forest_plot(claims: pd.DataFrame, claim_id: str) -> Figure:
    """Estimate and 95% CI per group for one claim, one panel per outcome (each its own unit).

    Each panel carries 0, the outcome's MCID (when it has one) and the published effect.
    """
    rows = claims.loc[(claims["claim_id"] == claim_id) & claims["estimate"].notna()]
    outcomes = list(dict.fromkeys(rows["outcome"]))
    heights = [0.42 * (rows["outcome"] == o).sum() + 1.0 for o in outcomes]
    fig, axes = plt.subplots(len(outcomes), 1, figsize=(7.5, sum(heights) + 0.4),
                             dpi=FIGURE_DPI, layout="constrained", squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    null = 1.0 if claim_id == "pressure_safety" else 0.0  # odds ratios sit around 1
    for ax, outcome in zip(axes[:, 0], outcomes, strict=True):
        panel = rows.loc[rows["outcome"] == outcome]
        positions = np.arange(len(panel))[::-1]
        ax.hlines(positions, panel["ci_low"], panel["ci_high"], color="#57606a", linewidth=2)
        ax.scatter(panel["estimate"], positions, c=[verdict_colour(v) for v in panel["verdict"]],
                   edgecolors="#24292f", s=70, zorder=3, label="your data (95% CI)")
        ax.axvline(null, color="#24292f", linewidth=1)
        mcid = panel["mcid"].dropna()
        if not mcid.empty and claim_id != "pressure_safety":
            for sign in (-1, 1):
                ax.axvline(sign * mcid.iloc[0], color="#bf8700", linestyle="--", linewidth=1)
            ax.plot([], [], color="#bf8700", linestyle="--", label=f"MCID ±{mcid.iloc[0]:.3g}")
        if "literature_effect" in panel and panel["literature_effect"].notna().any():
            ax.scatter(panel["literature_effect"], positions, marker="D", color="#8250df",
                       s=35, zorder=4, label="published effect")
        ax.set_yticks(positions, [group_label(g) for g in panel["audience_group"]])
        suffix = outcome_suffix(str(outcome), claim_id)
        ax.set_title(claim_label(claim_id) + (f": {suffix}" if suffix else ""))
        unit = _unit(panel)
        ax.set_xlabel(f"{_axis_words(claim_id)} ({unit})" if unit else _axis_words(claim_id))
        ax.legend(loc="best", fontsize="small", frameon=True)
    return fig


def _unit(rows: pd.DataFrame) -> str:
    if "unit" in rows and rows["unit"].notna().any():
        return str(rows["unit"].dropna().iloc[0])
    return ""


def _axis_words(claim_id: str) -> str:
    registry = claim_registry().set_index("claim_id")
    if claim_id in registry.index and registry.loc[claim_id, "analysis"] in {"change",
                                                                              "change_per_measure"}:
        return "change after a session"
    return str(registry.loc[claim_id, "test"]) if claim_id in registry.index else "estimate"


def paired_before_after(sessions: pd.DataFrame, outcome: str,
                        minimum: int = MIN_REPORTED_CLIENTS) -> Figure:
    """Mean of the client means before and after a session, with its 95% CI and the middle
    half of clients, one panel per audience group (no single client is drawn)."""
    pre, post = f"{outcome}_pre", f"{outcome}_post"
    per_client = (
        sessions.dropna(subset=[pre, post])
        .groupby(["audience_group", "client_id"], observed=True)[[pre, post]]
        .mean()
        .reset_index()
    )
    sizes = per_client.groupby("audience_group", observed=True)["client_id"].size()
    groups = [g for g in per_client["audience_group"].drop_duplicates() if sizes[g] >= minimum]
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(2.2 * max(len(groups), 1) + 1, 3.4),
                             dpi=FIGURE_DPI, sharey=True, layout="constrained", squeeze=False)
    for ax, group in zip(axes[0], groups, strict=False):
        clients = per_client.loc[per_client["audience_group"] == group, [pre, post]]
        means = clients.mean().to_numpy()
        half_width = 1.96 * clients.std(ddof=1).to_numpy() / np.sqrt(len(clients))
        low, high = clients.quantile(0.25).to_numpy(), clients.quantile(0.75).to_numpy()
        ax.fill_between([0, 1], low, high, color="#8c959f", alpha=0.25, linewidth=0,
                        label="middle half of clients")
        ax.errorbar([0, 1], means, yerr=half_width, color="#0969da", linewidth=3, marker="o",
                    capsize=4, label="mean (95% CI)")
        ax.set_xticks([0, 1], ["before", "after"])
        ax.set_xlim(-0.25, 1.25)
        ax.set_title(group_label(group), fontsize="medium")
    axes[0][0].set_ylabel(f"{outcome} (0-10)" if outcome != "rom" else outcome)
    axes[0][0].legend(fontsize="x-small", loc="best")
    fig.suptitle(f"{outcome.capitalize()} before and after a session (client means)")
    return fig


def pain_trajectories(sessions: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> Figure:
    """Mean pre-session pain by week since the client's first session, per audience group;
    a week of a group with fewer than ``minimum`` clients is not drawn."""
    frame = sessions.dropna(subset=["pain_pre"]).assign(
        week=lambda d: np.floor(d["weeks_since_start"]).clip(upper=16)
    )
    clients = frame.groupby(["audience_group", "week"], observed=True)["client_id"].transform(
        "nunique")
    frame = frame.loc[clients >= minimum]
    fig, ax = _new(7.5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # seaborn 0.13 on pandas 3 internals
        sns.lineplot(data=frame, x="week", y="pain_pre", hue="audience_group",
                     errorbar=("ci", 95), n_boot=200, seed=0, ax=ax, marker="o")
    ax.set_xlabel("weeks since first session (16 = 16 or more)")
    ax.set_ylabel("pain before the session (0-10)")
    ax.set_title(f"Does pain fall over the weeks? (weeks with {minimum}+ clients)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, [group_label(label) for label in labels], fontsize="small")
    return fig


def responder_bars(responders: pd.DataFrame) -> Figure:
    """Share of clients whose average change passes the MCID, per claim and group."""
    fig, ax = _new(7.5, 3.8)
    frame = responders.assign(
        group=lambda d: d["audience_group"].map(group_label),
        claim=[claim_label(c) + (f" ({suffix})" if (suffix := outcome_suffix(o, c)) else "")
               for c, o in zip(responders["claim_id"], responders["outcome"], strict=True)],
    )
    sns.barplot(data=frame, x="responder_share", y="claim", hue="group", ax=ax, orient="h")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of clients whose average change reaches the MCID")
    ax.set_ylabel("")
    ax.set_title("Responders")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def row_flow(report: dict) -> Figure:
    """Where every input row went: clean, quarantined or duplicate."""
    counts = pd.Series(
        {"clean": report["rows_clean"], "quarantined": report["rows_quarantined"],
         "duplicate": report["rows_duplicate"]}
    )
    fig, ax = _new(7, 2.2)
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color=["#8c959f", "#cf222e", "#1a7f37"])
    for y, value in enumerate(counts.to_numpy()[::-1]):
        ax.text(value, y, f" {value:,}", va="center")
    ax.set_xlabel(f"rows (of {report['rows_in']:,} read)")
    ax.set_title("Where the input rows went")
    return fig


def reason_bars(reasons: pd.Series) -> Figure:
    """Rows per quarantine reason code."""
    fig, ax = _new(7, 0.35 * max(len(reasons), 2) + 1.2)
    ordered = reasons.sort_values()
    ax.barh(ordered.index, ordered.to_numpy(), color="#cf222e")
    ax.set_xlabel("rows (a row can have several reasons)")
    ax.set_title("Why rows were quarantined")
    return fig


def missingness_heatmap(sessions: pd.DataFrame, columns: list[str]) -> Figure:
    """Share of missing values per column and audience group."""
    share = sessions[columns].isna().groupby(sessions["audience_group"], observed=True).mean()
    share.index = [group_label(g) for g in share.index]
    fig, ax = _new(8, 0.4 * len(share) + 2.2)
    sns.heatmap(share, vmin=0, vmax=1, cmap="Greys", annot=len(columns) <= 14, fmt=".0%",
                cbar_kws={"label": "share missing"}, ax=ax)
    ax.set_title("Missing values by audience group")
    return fig


def distributions_by_group(sessions: pd.DataFrame, columns: list[str]) -> Figure:
    """Distribution of a few key measures per audience group."""
    long = sessions.melt(id_vars=["audience_group"], value_vars=columns).dropna()
    long = long.assign(group=lambda d: d["audience_group"].map(group_label))
    grid = sns.displot(long, x="value", col="variable", hue="group", kind="kde",
                       common_norm=False, facet_kws={"sharex": False, "sharey": False},
                       height=2.6, aspect=1.1, warn_singular=False)
    grid.figure.set_dpi(FIGURE_DPI)
    grid.figure.suptitle("Distributions by audience group", y=1.03)
    return grid.figure
