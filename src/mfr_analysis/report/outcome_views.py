"""The outcome-reporting sections of the claims report, as escaped HTML with stable anchors.

One function per section, each returning an :class:`~IPython.display.HTML` that starts with
its heading carrying the anchor the reporting checklist links to: ``flow``, ``baseline``,
``missing-data``, ``individual``, ``robustness``, ``checklist`` (:data:`ANCHORS`). The heading
is written in the output (not a Markdown cell) so the id is exactly the anchor; nbconvert
keeps it as it is.

The functions only render: they take the tidy tables the describe and claims packages make
(already protected: a hidden count is the string 'suppressed' or 'fewer than 11') and never
compute a count of their own that the disclosure plan has not seen. A number of 1 to
``minimum``-1 clients that reaches them anyway is shown as 'fewer than 11' (defence in depth).
Plain words come first, numbers second. Every string from the data is escaped
(:func:`~mfr_analysis.report.safe_text.html_text`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML

from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.describe.baseline import SUMMARY_STATISTICS
from mfr_analysis.privacy import withheld_label
from mfr_analysis.report.labels import group_label, verdict_label
from mfr_analysis.report.safe_text import html_text
from mfr_analysis.tables import load_table

ANCHORS = ("flow", "baseline", "missing-data", "individual", "robustness", "checklist")
SUPPRESSED = "suppressed"
NOT_AVAILABLE = "not available"
SMD_FLAG = 0.1  # |SMD| above which arms are called imbalanced (Austin 2009, Stat Med 28:3083)
ARM_WORDS = {"mfr": "MFR", "control": "control"}
APPROACH_ORDER = ("complete_case", "multiple_imputation", "inverse_probability_weighting",
                  "last_observation_carried_forward")
APPROACH_WORDS = {
    "complete_case": "complete case (clients with a follow-up rating only)",
    "multiple_imputation": "multiple imputation by chained equations (Rubin's rules)",
    "inverse_probability_weighting": "inverse probability of follow-up weighting",
    "last_observation_carried_forward": "last observation carried forward (sensitivity only, "
                                        "never the main result)",
}


# ------------------------------------------------------------------------- pieces ---

def _missing(value: object) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def count_text(value: object, minimum: int = MIN_REPORTED_CLIENTS) -> str:
    """A count as a page shows it: '1,234'; 'suppressed' or 'fewer than 11' as the protected
    table says; 'not available' when missing; a count of 1 to minimum-1 never as a number."""
    if _missing(value):
        return NOT_AVAILABLE
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text  # 'suppressed', 'fewer than 11': the protected table's words
    if 0 < number < minimum:
        return f"fewer than {minimum}"
    return f"{int(round(number)):,}"


def number_text(value: object, digits: int = 1) -> str:
    """A number rounded for reading ('2.3'); words from the table pass through; '' if missing."""
    if _missing(value):
        return ""
    try:
        return f"{float(value):.{digits}f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def interval_text(estimate: object, low: object, high: object, digits: int = 2) -> str:
    """'-1.20 [-1.90 to -0.50]'; '' when the estimate is missing."""
    if _missing(estimate):
        return ""
    text = number_text(estimate, digits)
    if not (_missing(low) or _missing(high)):
        text += f" [{number_text(low, digits)} to {number_text(high, digits)}]"
    return text


def heading(anchor: str, title: str, level: int = 2) -> str:
    """The section heading carrying its stable anchor (the checklist links to it)."""
    return f'<h{level} id="{html_text(anchor)}">{html_text(title)}</h{level}>'


def table_html(frame: pd.DataFrame, headers: Mapping[str, str] | None = None,
               caption: str = "", row_header: bool = True,
               indent: Sequence[int] | None = None) -> str:
    """A table of already-formatted cells, every cell and header escaped; the first column
    is the row header, indented by ``indent`` levels per row (a tree such as the flow).
    Wrapped to scroll sideways on a phone."""
    headers = dict(headers or {c: str(c) for c in frame.columns})
    columns = [c for c in headers if c in frame.columns]
    head = "".join(f'<th scope="col">{html_text(headers[c])}</th>' for c in columns)
    body = []
    for position, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for i, column in enumerate(columns):
            value = row[column]
            text = "" if _missing(value) else html_text(value, None)
            tag = "th" if i == 0 and row_header else "td"
            scope = ' scope="row"' if tag == "th" else ""
            if i == 0 and indent is not None and indent[position]:
                scope += f' style="padding-left:{0.5 + 1.2 * int(indent[position]):.1f}em"'
            cells.append(f"<{tag}{scope}>{text}</{tag}>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    # the caption is the first header row (the pages' tag allowlist has no <caption>): it
    # stays with its table in print, repeated on each page the table runs over
    cap = (f'<tr><th colspan="{len(columns)}" scope="colgroup" class="mfr-table-caption">'
           f"{html_text(caption, None)}</th></tr>" if caption else "")
    return ('<div class="mfr-scroll" style="overflow-x:auto"><table class="mfr-table">'
            f"<thead>{cap}<tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _figure(drawing: Any, alt: str, caption: str = "") -> str:
    from mfr_analysis.report.views import show_figure

    return show_figure(drawing, alt, caption).data


def _para(text: str) -> str:
    return f"<p>{html_text(text, None)}</p>"


def _section(anchor: str, title: str, parts: Sequence[str]) -> HTML:
    return HTML(f'<div class="mfr-section mfr-{html_text(anchor)}">{heading(anchor, title)}'
                + "".join(p for p in parts if p) + "</div>")


def _words(value: object) -> str:
    """A code from the data as words: 'pain_pre' -> 'pain pre' (labels come from tables)."""
    return "" if _missing(value) else str(value).replace("_", " ")


def _group(value: object) -> str:
    return "" if _missing(value) else group_label(str(value))


def _arm(value: object) -> str:
    return "" if _missing(value) or str(value) == "" else ARM_WORDS.get(str(value), str(value))


# --------------------------------------------------------------------------- flow ---

FLOW_HEADERS = {"label": "Step", "sessions": "Rows (input) or sessions (clean)",
                "clients": "Clients"}


def flow_rows(flow_table: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> pd.DataFrame:
    """The flow table as the page lists it: every box, indented under its parent, with the
    arm in words; the counts' columns end with 'clients' (never 'clients, sessions': the
    disclosure test reads that pair as a group table)."""
    flow_table = _tree_order(flow_table)
    parents = dict(zip(flow_table["stage"].astype(str), flow_table["parent"].fillna("").astype(
        str), strict=True))

    def depth(stage: str) -> int:
        seen = 0
        while parents.get(stage) and seen < 50:
            stage, seen = parents[stage], seen + 1
        return seen

    labels = []
    for _, row in flow_table.iterrows():
        arm = _arm(row.get("arm"))
        labels.append(str(row["label"]) + (f" ({arm} arm)" if arm and arm.lower() not in str(
            row["label"]).lower() else ""))
    return pd.DataFrame({
        "depth": [depth(str(s)) for s in flow_table["stage"]],
        "label": labels,
        "sessions": [count_text(v, 0) for v in flow_table["sessions"]],
        "clients": [count_text(v, minimum) for v in flow_table["clients"]],
    })


def _tree_order(flow_table: pd.DataFrame) -> pd.DataFrame:
    """The boxes depth first (each box followed by its own steps), siblings in table order."""
    stages = flow_table["stage"].astype(str).tolist()
    parents = flow_table["parent"].fillna("").astype(str).tolist()
    children: dict[str, list[int]] = {}
    roots = []
    for i, parent in enumerate(parents):
        if parent and parent in stages and parent != stages[i]:
            children.setdefault(parent, []).append(i)
        else:
            roots.append(i)
    order: list[int] = []
    stack = list(reversed(roots))
    while stack:
        i = stack.pop()
        if i in order:
            continue
        order.append(i)
        stack.extend(reversed(children.get(stages[i], [])))
    order += [i for i in range(len(stages)) if i not in order]  # a cycle: kept, at the end
    return flow_table.iloc[order].reset_index(drop=True)


def flow_section(flow_table: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> HTML:
    """``id="flow"``: how rows became sessions, clients, arms and the clients analysed, as a
    CONSORT-style diagram and as a table listing every box (every quarantine reason)."""
    from mfr_analysis.report.figures import flow_diagram

    intro = ("Every row read from the logs is accounted for: rows set aside (quarantined, "
             "with the reason) or dropped as duplicates, the clean sessions, the clients in "
             "each arm, those with a usable before/after pair and a follow-up rating, and the "
             "clients each claim analysed. Boxes to the right leave the main line at that "
             f"step. A count of fewer than {minimum} clients reads 'suppressed'.")
    rows = flow_rows(flow_table, minimum)
    table = table_html(rows, FLOW_HEADERS, indent=list(rows["depth"]),
                       caption="Every step of the flow, with every quarantine reason")
    figure = _figure(flow_diagram(flow_table),
                     alt="Flow diagram: rows read, set aside, clean sessions, clients by arm, "
                         "clients analysed")
    return _section("flow", "Flow of clients and sessions", [_para(intro), figure, table])


# ----------------------------------------------------------------------- baseline ---

def smd_words(smd: object, flag: object = None, threshold: float = SMD_FLAG) -> str:
    """The standardized mean difference with its flag as words and a mark: '0.25 ⚠
    imbalanced' or '0.04 balanced' (never colour alone)."""
    if _missing(smd):
        return ""
    try:
        size = abs(float(smd))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(smd)
    flagged = bool(flag) if not _missing(flag) else size > threshold
    return f"{float(smd):.2f} " + ("⚠ imbalanced" if flagged else "balanced")


def _baseline_value(row: pd.Series, minimum: int) -> str:
    """One cell of Table 1 from whatever the baseline table gives: a formatted ``value``,
    ``mean``/``sd``, or ``clients``/``share`` (the adapter to the describe table)."""
    if "value" in row and not _missing(row["value"]):
        return str(row["value"])
    if "mean" in row and not _missing(row["mean"]):
        sd = f" ({number_text(row['sd'])})" if "sd" in row and not _missing(row["sd"]) else ""
        return number_text(row["mean"]) + sd
    if str(row.get("statistic", "")) in SUMMARY_STATISTICS:  # never its count in its place
        return withheld_label() if str(row.get("privacy", "") or "") else NOT_AVAILABLE
    if "clients" in row:
        text = count_text(row["clients"], minimum)
        if "share" in row and not _missing(row["share"]) and text[:1].isdigit():
            text += f" ({float(row['share']):.0%})"
        return text
    return ""


def baseline_display(table: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> pd.DataFrame:
    """Table 1 in display form: one row per audience group and variable, one column per arm
    and the SMD in words. Reads a tidy baseline table with columns ``audience_group``,
    ``variable`` (or ``label``), ``arm`` and a value (``value``, or ``mean``/``sd``, or
    ``clients``/``share``), plus ``smd`` (and ``smd_flag``) and ``missing`` where given."""
    label = "label" if "label" in table else "variable"
    frame = table.assign(_cell=[_baseline_value(r, minimum) for _, r in table.iterrows()],
                         _arm=[_arm(a) or "all" for a in table.get("arm", ["all"] * len(table))])
    values = ["_cell"]
    if "missing" in frame:  # each arm's own count, pivoted beside its cell
        frame["_missing"] = [count_text(m, minimum) if not _missing(m) else ""
                             for m in frame["missing"]]
        values.append("_missing")
    keys = [c for c in ("audience_group", label) if c in frame]
    pivot = frame.pivot_table(index=keys, columns="_arm", values=values, aggfunc="first",
                              sort=False)
    wide = pivot["_cell"]
    wide.columns = [f"{a} clients" if a != "all" else "all clients" for a in wide.columns]
    firsts = {c: (c, "first") for c in ("smd", "smd_flag") if c in frame}
    extras = (frame.groupby(keys, sort=False).agg(**firsts) if firsts
              else pd.DataFrame(index=wide.index))
    if "_missing" in frame:  # in the order of the arm columns
        extras = extras.join(pivot["_missing"].apply(
            lambda row: " / ".join(str(v) if isinstance(v, str) else "" for v in row),
            axis=1).rename("missing"))
    out = wide.join(extras).reset_index()
    if "smd" in out:
        out["smd"] = [smd_words(s, out["smd_flag"].iloc[i] if "smd_flag" in out else None)
                      for i, s in enumerate(out["smd"])]
    out = out.drop(columns=[c for c in ("smd_flag",) if c in out])
    return out.rename(columns={label: "variable"})


def baseline_section(table: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> HTML:
    """``id="baseline"``: Table 1 per audience group and arm, the standardized mean
    difference between the arms with its flag above 0.1 in words and a mark."""
    intro = ("Who the clients were when they started, in each arm: the clients, their "
             "sessions and weeks in treatment, their first ratings (mean and SD), range of "
             "motion per measure, and how they were treated. The standardized mean difference "
             f"(SMD) compares the arms; above {SMD_FLAG} the arms differ at the start "
             "(⚠ imbalanced), which the adjusted estimates take into account only for what "
             "was measured.")
    shown = baseline_display(table, minimum)
    parts = [_para(intro)]
    if shown.empty:
        return _section("baseline", "Who the clients were at the start (Table 1)",
                        [*parts, _para("No baseline values to show.")])
    groups = shown["audience_group"] if "audience_group" in shown else pd.Series(
        ["all"] * len(shown))
    for group in dict.fromkeys(groups.astype(str)):
        rows = shown.loc[groups.astype(str).to_numpy() == group].drop(
            columns=["audience_group"], errors="ignore")
        arms = [c.removesuffix(" clients") for c in rows.columns if c.endswith(" clients")]
        missing = f"Missing ({' / '.join(arms)})" if len(arms) > 1 else "Missing"
        headers = {c: ("Baseline" if c == "variable" else "SMD (MFR vs control)" if c == "smd"
                       else missing if c == "missing" else c[:1].upper() + c[1:])
                   for c in rows.columns}
        parts.append(table_html(rows.astype(object), headers, caption=_group(group)))
    return _section("baseline", "Who the clients were at the start (Table 1)", parts)


# ------------------------------------------------------------------ missing data ---

def sensitivity_rows(claims: pd.DataFrame) -> pd.DataFrame:
    """The lasting-relief sensitivity rows of the claims table (``sensitivity`` not '')."""
    if "sensitivity" not in claims:
        return claims.iloc[0:0]
    return claims.loc[claims["sensitivity"].fillna("").astype(str) != ""]


def robustness_sentence(rows: pd.DataFrame) -> str:
    """Whether the verdict of one group holds under every missing-data approach, in words
    (last observation carried forward does not count: it is shown, never decisive)."""
    decisive = rows.loc[rows["sensitivity"] != "last_observation_carried_forward"]
    verdicts = {str(v) for v in decisive["verdict"] if str(v) != SUPPRESSED}
    if not verdicts:
        return "Too few clients to compare the approaches."
    if len(verdicts) == 1:
        return (f"Robust: every approach gives the same verdict "
                f"({verdict_label(verdicts.pop()).lower()}), so how the missing follow-up is "
                "handled does not change the conclusion.")
    said = ", ".join(f"{APPROACH_WORDS.get(str(a), _words(a)).split(' (')[0]}: "
                     f"{verdict_label(str(v)).lower()}"
                     for a, v in zip(decisive["sensitivity"], decisive["verdict"], strict=True))
    return ("Not robust: the verdict depends on how the missing follow-up is handled ("
            f"{said}); read the lasting-relief result with caution.")


def sensitivity_table(rows: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> pd.DataFrame:
    """Approach, estimate [95% CI], clients and verdict of one group's sensitivity rows."""
    order = {a: i for i, a in enumerate(APPROACH_ORDER)}
    rows = rows.assign(_order=[order.get(str(a), 99) for a in rows["sensitivity"]]).sort_values(
        "_order")
    suppressed = rows["verdict"].astype(str) == SUPPRESSED
    return pd.DataFrame({
        "approach": [APPROACH_WORDS.get(str(a), str(m) if not _missing(m) else _words(a))
                     for a, m in zip(rows["sensitivity"], rows.get("method", rows["sensitivity"]),
                                     strict=True)],
        "estimate": ["" if s else interval_text(e, lo, hi) for s, e, lo, hi in zip(
            suppressed, rows["estimate"], rows["ci_low"], rows["ci_high"], strict=True)],
        "clients": [SUPPRESSED if s else withheld_label() if _missing(n)  # count-only
                    else count_text(n, minimum)
                    for s, n in zip(suppressed, rows["n_clients"], strict=True)],
        "verdict": [verdict_label(str(v)) for v in rows["verdict"]],
    })


SENSITIVITY_HEADERS = {"approach": "Approach", "estimate": "Estimate [95% CI], points",
                       "clients": "Clients", "verdict": "Verdict"}


def _tidy_table(frame: pd.DataFrame | None, minimum: int, caption: str) -> str:
    """A describe table (follow-up completeness or comparison) shown as it is: groups and arms
    in words, counts protected, numbers rounded, headers from the column names."""
    if frame is None or frame.empty:
        return ""
    shown = pd.DataFrame(index=frame.index)
    withheld = (frame["privacy"].fillna("").astype("str") != "").to_numpy() if (
        "privacy" in frame) else np.zeros(len(frame), dtype=bool)
    internal = [c for c in frame.columns if str(c).endswith("measure") or c == "privacy"
                or (c == "variable" and "label" in frame)]  # plan keys, not for readers
    for column in frame.columns.drop(internal):
        values = frame[column]
        if "share" in str(column) or "percent" in str(column):
            shown[column] = [f"{float(v):.0%}" if isinstance(v, int | float) and not _missing(v)
                             else ("" if _missing(v) else str(v)) for v in values]
        elif column == "audience_group":
            shown[column] = [_group(v) for v in values]
        elif column == "arm":
            shown[column] = [_arm(v) for v in values]
        elif "client" in str(column) or str(column) in {"n", "count", "sessions"} or (
                pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
                and "share" not in str(column) and values.dropna().mod(1).eq(0).all()):
            # a count (a whole number): protected like every count of clients
            shown[column] = [count_text(v, minimum) for v in values]
        elif pd.api.types.is_numeric_dtype(values):
            shown[column] = [number_text(v, 2) for v in values]
        else:
            shown[column] = [_words(v) for v in values]
    # a number the plan blanked on a row it protects reads 'withheld', not 'not available'
    for column in shown.columns:
        blank = withheld & frame[column].isna().to_numpy()
        if blank.any():
            shown.loc[blank, column] = withheld_label()
    headers = {c: (str(c).replace("_", " ")[:1].upper() + str(c).replace("_", " ")[1:])
               for c in shown.columns}
    return table_html(shown, headers, caption=caption)


def missing_data_section(claims: pd.DataFrame, completeness: pd.DataFrame | None = None,
                         comparison: pd.DataFrame | None = None,
                         minimum: int = MIN_REPORTED_CLIENTS) -> HTML:
    """``id="missing-data"``: who gave a follow-up rating, how those with and without one
    differed at the start, and the lasting-relief estimate under each missing-data approach
    with a sentence per group on whether the verdict is robust."""
    parts = [_para(
        "Not every client rated their pain again hours after a session. If those who did "
        "not differ from those who did (for example, clients who responded poorly dropping "
        "out), an estimate from the complete cases alone can be biased. The lasting-relief "
        "claim is therefore also estimated by multiple imputation and by weighting clients "
        "by their chance of giving a follow-up rating; carrying the last rating forward is "
        "shown as a sensitivity row only.")]
    parts.append(_tidy_table(completeness, minimum, "Follow-up completeness by arm and group"))
    parts.append(_tidy_table(comparison, minimum,
                             "Clients with and without follow-up: their values at the start"))
    rows = sensitivity_rows(claims)
    if rows.empty:
        parts.append(_para("The claims table has no missing-data sensitivity rows (no "
                           "follow-up ratings, or too few clients)."))
    for group, group_rows in rows.groupby("audience_group", sort=False):
        # heading and sentence kept together: a printed page never ends on the heading
        parts.append(f'<div class="mfr-keep"><h3>{html_text(_group(group))}</h3>'
                     f"{_para(robustness_sentence(group_rows))}</div>")
        parts.append(table_html(sensitivity_table(group_rows, minimum), SENSITIVITY_HEADERS))
    return _section("missing-data", "Missing follow-up and drop-out", parts)


# ------------------------------------------------------------------- individuals ---

def _share_text(clients: object, share: object, low: object, high: object,
                minimum: int) -> str:
    text = count_text(clients, minimum)
    if not text[:1].isdigit() or _missing(share):
        return text
    interval = "" if _missing(low) or _missing(high) else \
        f", 95% CI {float(low):.0%} to {float(high):.0%}"
    return f"{text} ({float(share):.0%}{interval})"


def individual_display(summary: pd.DataFrame,
                       minimum: int = MIN_REPORTED_CLIENTS) -> pd.DataFrame:
    """Counts by class per arm with Wilson intervals, one row per group and class: reads
    ``audience_group``, ``arm``, ``rci_class``, ``clients`` and ``share``, ``ci_low``,
    ``ci_high`` where given (a hidden count is the table's word)."""
    frame = summary.assign(
        _cell=[_share_text(r.get("clients"), r.get("share"), r.get("ci_low"), r.get("ci_high"),
                           minimum) for _, r in summary.iterrows()],
        _arm=[f"{_arm(a) or 'all'} clients" for a in summary.get("arm", ["all"] * len(summary))],
        _class=[_words(c) for c in summary["rci_class"]])
    keys = [c for c in ("audience_group", "_class") if c in frame]
    wide = frame.pivot_table(index=keys, columns="_arm", values="_cell", aggfunc="first",
                             sort=False).reset_index()
    if "audience_group" in wide:
        wide["audience_group"] = [_group(g) for g in wide["audience_group"]]
    return wide.rename(columns={"_class": "class", "audience_group": "group"})


def individual_section(summary: pd.DataFrame, individual: pd.DataFrame | None = None,
                       mcid: float | None = None, reliability: Mapping[str, Any] | None = None,
                       minimum: int = MIN_REPORTED_CLIENTS, band: float | None = None) -> HTML:
    """``id="individual"``: each client's own result, apart from the group averages: how many
    clients improved, stayed the same or got worse by more than measurement error (reliable
    change index, Jacobson-Truax), with Wilson intervals; the Jacobson-Truax plot and the
    distribution of change with the MCID; the reliability used with its source.

    ``individual`` (one row per client) feeds only the figures, which draw no single client;
    ``reliability``: ``value`` (and ``measure``) and ``source`` of the reliability used."""
    from mfr_analysis.report.figures import change_ecdf, jacobson_truax_plot, rci_band

    parts = [_para(
        "A group average can hide clients who got much better and others who got worse. "
        "Here each client's own change in pain is compared with the measurement error of a "
        "0-10 rating: a change beyond it is a reliable change (improved or deteriorated); "
        "inside it, the client is counted as unchanged. Recovered means the client also ended "
        "below the functional cut-off, where one exists. This is not the same question as "
        "whether the average change reaches the MCID.")]
    if reliability is not None and len(reliability):  # a mapping or a row of a data table
        value = reliability.get("value", reliability.get("reliability"))
        measure = reliability.get("measure", "test-retest reliability")
        source = reliability.get("source", "")
        words = f"Reliability used: {_words(measure)} r = {number_text(value, 2)}"
        if individual is not None and not individual.empty:
            with contextlib.suppress(ValueError, KeyError):
                words += (f"; a change of more than {number_text(rci_band(individual, band))}"
                          " points is a reliable change (1.96 × the standard error of a "
                          "difference)")
        parts.append(_para(words + (f". Source: {source}." if source else ".")))
    shown = individual_display(summary, minimum) if not summary.empty else summary
    if shown.empty:
        parts.append(_para("No client has both a before and an after pain rating."))
    else:
        headers = {c: c[:1].upper() + c[1:] for c in shown.columns}
        parts.append(table_html(shown.astype(object), headers,
                                caption="Clients by reliable-change class and arm "
                                        "(share, Wilson 95% interval)"))
    if individual is not None and not individual.empty:
        parts.append(_figure(
            jacobson_truax_plot(individual, mcid, band, minimum),
            alt="Jacobson-Truax plot: pain before against after, counts of clients per square",
            caption=f"Squares with fewer than {minimum} clients are left blank (privacy); "
                    "below the dotted band a client improved reliably, above it got worse."))
        parts.append(_figure(
            change_ecdf(individual, mcid, minimum),
            alt="Cumulative share of clients by change in pain, per arm, with the MCID",
            caption="Read at the MCID line: the share of clients whose pain fell by at least "
                    "the MCID. Drawn every 5 % of clients, where at least "
                    f"{minimum} clients lie on each side."))
    return _section("individual", "Each client's own result", parts)


# -------------------------------------------------------------------- robustness ---

def e_value_sentence(row: Mapping[str, Any]) -> str:
    """One sentence on what the E-values of a controlled estimate mean."""
    point, limit = row.get("e_value"), row.get("e_value_ci")
    if _missing(point):
        return ""
    text = (f"An unmeasured factor would have to raise both the chance of being in the MFR "
            f"arm and the outcome by a factor of {number_text(point, 2)} each to explain this "
            "estimate away")
    if _missing(limit):
        return text + "."
    if float(limit) <= 1.0:
        return text + "; the interval already includes no difference."
    return text + (f", and by {number_text(limit, 2)} to move its interval to include no "
                   "difference.")


ROBUSTNESS_HEADERS = {"claim": "Claim", "group": "Group", "adjusted": "Adjusted [95% CI]",
                      "unadjusted": "Unadjusted [95% CI]", "covariates": "Adjusted for",
                      "e_value": "E-value (estimate / CI)", "meaning": "What it means"}


def robustness_display(claims: pd.DataFrame) -> pd.DataFrame:
    """Controlled primary rows: adjusted next to unadjusted, covariates in words, E-values
    with one sentence each; a suppressed row shows no number."""
    from mfr_analysis.report.labels import claim_label, outcome_suffix

    rows = claims
    if "sensitivity" in rows:
        rows = rows.loc[rows["sensitivity"].fillna("").astype(str) == ""]
    if "design" not in rows:
        return pd.DataFrame(columns=list(ROBUSTNESS_HEADERS))
    rows = rows.loc[(rows["design"] == "controlled") & (rows["verdict"] != SUPPRESSED)]

    def column(row: pd.Series, name: str) -> object:
        return row.get(name, None)

    records = []
    for _, row in rows.iterrows():
        suffix = outcome_suffix(str(row["outcome"]), str(row["claim_id"]))
        evalue = "" if _missing(column(row, "e_value")) else (
            number_text(row["e_value"], 2)
            + ("" if _missing(column(row, "e_value_ci")) else
               f" / {number_text(row['e_value_ci'], 2)}"))
        records.append({
            "claim": claim_label(str(row["claim_id"])) + (f": {suffix}" if suffix else ""),
            "group": _group(row["audience_group"]),
            "adjusted": interval_text(row["estimate"], row["ci_low"], row["ci_high"]),
            "unadjusted": interval_text(column(row, "estimate_unadjusted"),
                                        column(row, "ci_low_unadjusted"),
                                        column(row, "ci_high_unadjusted")) or NOT_AVAILABLE,
            "covariates": str(column(row, "covariates") or "") or NOT_AVAILABLE,
            "e_value": evalue or NOT_AVAILABLE,
            "meaning": e_value_sentence(row),
        })
    return pd.DataFrame.from_records(records, columns=list(ROBUSTNESS_HEADERS))


def robustness_section(claims: pd.DataFrame) -> HTML:
    """``id="robustness"``: for controlled claims the unadjusted MFR-minus-control difference
    next to the adjusted (ANCOVA) one, the covariates and why, and the E-values
    (VanderWeele & Ding 2017) with one sentence each."""
    parts = [_para(
        "In clinic logs the arm is rarely assigned at random, so MFR and control clients can "
        "differ in ways that also affect the outcome. The adjusted estimate compares clients "
        "with the same rating before the session (clients who start worse tend to improve "
        "more, whatever the treatment: regression to the mean; Vickers & Altman 2001); the "
        "unadjusted one is the plain difference. The E-value (VanderWeele & Ding 2017) says "
        "how strong an unmeasured factor would have to be to explain the estimate away: the "
        "larger, the more robust; near 1, a weak confounder would do.")]
    shown = robustness_display(claims)
    if shown.empty:
        parts.append(_para("No claim has a control arm large enough for a controlled estimate: "
                           "every estimate is before → after or an association."))
    else:
        table_headers = {k: v for k, v in ROBUSTNESS_HEADERS.items() if k != "meaning"}
        parts.append(table_html(shown, table_headers,
                                caption="Controlled estimates, adjusted and unadjusted"))
        said = [f"<li><b>{html_text(r['claim'])}, {html_text(r['group'])}</b>: "
                f"{html_text(r['meaning'], None)}</li>" for _, r in shown.iterrows()
                if r["meaning"]]
        if said:  # one sentence per E-value, under the table (narrow enough for a phone)
            parts.append(f'<p><b>What the E-values mean</b></p><ul class="mfr-evalues">'
                         f"{''.join(said)}</ul>")
    return _section("robustness", "Adjusted estimates and unmeasured confounding", parts)


# --------------------------------------------------------------------- checklist ---

def reporting_checklist() -> pd.DataFrame:
    """The reporting checklist (``data/reporting_checklist.csv``): item, standard, words,
    the anchor of the report answering it or '' with the reason it cannot."""
    return load_table("reporting_checklist").fillna({"anchor": "", "reason": ""})


def checklist_anchors(checklist: pd.DataFrame | None = None) -> list[str]:
    """Every anchor the checklist links to."""
    table = reporting_checklist() if checklist is None else checklist
    return sorted({str(a) for a in table["anchor"] if str(a)})


def _where(anchor: str, reason: str, titles: Mapping[str, str]) -> str:
    if not anchor:
        return html_text(reason[:1].upper() + reason[1:], None)
    name = titles.get(anchor, anchor.replace("-", " "))
    return (f'<a href="#{html_text(anchor)}">{html_text(name)}</a>'
            + (f" <small>({html_text(reason, None)})</small>" if reason else ""))


SECTION_TITLES = {"flow": "Flow of clients and sessions", "baseline": "Table 1",
                  "missing-data": "Missing follow-up", "individual": "Each client's result",
                  "robustness": "Adjusted estimates", "Scorecard": "Scorecard",
                  "Methods": "Methods", "Data-quality": "Data quality",
                  "Responders": "Responders",
                  "Estimates-against-the-clinical-threshold": "Estimates"}


def checklist_section(checklist: pd.DataFrame | None = None,
                      titles: Callable[[], Mapping[str, str]] | None = None) -> HTML:
    """``id="checklist"``: the CONSORT, CONSORT-PRO, RECORD, STROBE and SAMPL items that apply
    to session logs, each linked to the section answering it or marked 'not available in
    these logs' with the reason."""
    table = reporting_checklist() if checklist is None else checklist
    names = dict(SECTION_TITLES, **(titles() if titles else {}))
    body = []
    for _, row in table.iterrows():
        where = _where(str(row["anchor"]), str(row["reason"]), names)
        available = "" if str(row["anchor"]) else ' class="mfr-not-available"'
        body.append(f"<tr{available}><th scope=\"row\">{html_text(row['item_id'])}</th>"
                    f"<td class=\"mfr-wide-only\">{html_text(row['standard'])}</td>"
                    f"<td>{html_text(row['item'], None)}</td><td>{where}</td></tr>")
    intro = _para("Reviewers judge an outcome report against reporting standards: CONSORT and "
                  "its patient-reported-outcome extension, STROBE and its extension for "
                  "routinely collected data (RECORD), and SAMPL for statistics. Each item that "
                  "applies to session logs links to where this report answers it; items these "
                  "logs cannot answer say why.")
    table_html_ = ('<div class="mfr-scroll" style="overflow-x:auto"><table class="mfr-table">'
                   "<thead><tr><th scope=\"col\">Item</th>"
                   "<th scope=\"col\" class=\"mfr-wide-only\">Standard</th>"
                   "<th scope=\"col\">What it asks</th><th scope=\"col\">Where</th></tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table></div>")
    return _section("checklist", "Reporting checklist", [intro, table_html_])



def claim_mcid(claims: pd.DataFrame, claim_id: str = "pain") -> float | None:
    """The MCID the claims table used for a claim (its pooled row first; overrides
    included), for the individual-level figures; None when it states none."""
    if "mcid" not in claims:
        return None
    rows = claims.loc[(claims["claim_id"] == claim_id) & (claims["outcome"] == claim_id)]
    rows = rows.sort_values("audience_group", key=lambda g: g != "all")
    values = pd.to_numeric(rows["mcid"], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else None


# ------------------------------------------------------------- one report's tables ---

@dataclass(frozen=True)
class OutcomeTables:
    """The describe tables of one report as its disclosure plan lets it publish them."""

    flow: pd.DataFrame
    baseline: pd.DataFrame
    individual_summary: pd.DataFrame
    individual: pd.DataFrame  # one row per client: feeds the binned figures only, never shown
    completeness: pd.DataFrame
    comparison: pd.DataFrame
    reliability: Mapping[str, Any]


def _with_level(baseline: pd.DataFrame) -> pd.DataFrame:
    """Table 1 rows named with their level (a technique, a ROM measure) so that each shows."""
    if "level" not in baseline or "label" not in baseline:
        return baseline
    level = baseline["level"].astype("object")
    named = [f"{lab}: {_words(lev)}" if isinstance(lev, str) and lev else lab
             for lab, lev in zip(baseline["label"], level, strict=True)]
    return baseline.assign(label=named)


def _shown_individuals(individual: pd.DataFrame, hidden_groups: Sequence[str]) -> pd.DataFrame:
    """The clients the figures may bin: none of a hidden group. The figures print no count:
    they bin clients into squares and quantiles that each hold at least the minimum, and
    leave out an arm under it, so a class count the table withholds is not given away."""
    return individual.loc[~individual["audience_group"].astype("str").isin(hidden_groups)]


def outcome_tables(sessions: pd.DataFrame, claims: pd.DataFrame, plan: Any, slice_value: str,
                   cleaning_report: Mapping | None = None,
                   hidden_groups: Sequence[str] = ()) -> OutcomeTables:
    """Flow, Table 1, each client's result and follow-up of one report, computed exactly as
    the disclosure plan counted them (the report's sessions; the cleaning report's rows in
    the all-clients report only) and protected by it (``describe.protect``)."""
    from mfr_analysis import describe as d

    report = dict(cleaning_report or {}) if slice_value == "" else {}
    individual = d.individual_change(sessions)
    summary = d.protect(d.individual_summary(individual), plan, slice_value)
    row = load_table("reliability").set_index("measure").loc["pain"]
    return OutcomeTables(
        flow=d.protect(d.client_flow(sessions, report, claims), plan, slice_value).rename(
            columns={"rows": "sessions"}),  # input rows before cleaning, sessions after
        baseline=_with_level(d.protect(d.baseline_table(sessions), plan, slice_value)),
        individual_summary=summary,
        individual=_shown_individuals(individual, hidden_groups),
        completeness=d.protect(d.followup_completeness(sessions), plan, slice_value),
        comparison=d.protect(d.followup_comparison(sessions), plan, slice_value),
        reliability={"measure": "test-retest reliability of the 0-10 pain rating",
                     "value": float(row["reliability"]),
                     "source": str(row["reliability_source"])})
