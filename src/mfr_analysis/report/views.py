"""What the report notebooks show: scorecard, findings, caveats, figures and methods.

Every function takes the tidy claims table (or the session table) and returns an object the
notebook displays; notebooks stay thin and the same objects can be tested here.
"""

from __future__ import annotations

import base64
import hashlib
import html
import platform
from collections.abc import Iterable

import pandas as pd
from IPython.display import HTML, Markdown
from matplotlib.figure import Figure

from mfr_analysis import __version__
from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.report.labels import (
    claim_label,
    group_label,
    group_plain,
    outcome_suffix,
    verdict_colour,
    verdict_label,
    verdict_plain,
    verdict_text_colour,
)
from mfr_analysis.report.safe_text import html_text, markdown_code, markdown_text

TITLE_LIMIT = 300  # characters of a report title shown (a title holds a site name for a slice)
GROUP_ORDER = ("all", "athlete", "senior", "desk_worker", "rehab", "chronic_pain")


def protect_claims(claims: pd.DataFrame, sessions: pd.DataFrame,
                   minimum: int = MIN_REPORTED_CLIENTS) -> tuple[pd.DataFrame, list[str]]:
    """Disclosure control for a report run on its own (the report runner plans the whole
    folder at once instead): the claims rows it may show and the groups it must leave out.

    Every number of a cell of 1..minimum-1 clients is hidden, and so is the smallest other
    cell wherever a pooled total minus the shown groups would reveal a hidden one."""
    from mfr_analysis.privacy import protect_report

    return protect_report(claims, sessions, minimum)


def load_protected_claims(path: str) -> pd.DataFrame:
    """A claims table the report runner already computed and protected for this report."""
    import json
    from pathlib import Path

    from mfr_analysis.claims import CLAIMS_COLUMNS

    records = json.loads(Path(path).read_text(encoding="utf-8"))
    claims = pd.DataFrame.from_records(records)
    if claims.empty:
        return pd.DataFrame(columns=list(CLAIMS_COLUMNS))
    return claims


def single_group_view(claims: pd.DataFrame) -> pd.DataFrame:
    """Drop the pooled rows when the table holds one audience group only (a slice report)."""
    groups = set(claims["audience_group"]) - {"all"}
    if len(groups) != 1:
        return claims
    return claims.loc[claims["audience_group"] != "all"].reset_index(drop=True)


def _cell(row: pd.Series) -> str:
    verdict = str(row["verdict"])
    text = f"<b>{html.escape(verdict_label(verdict))}</b>"
    if pd.notna(row.get("estimate")) and verdict != "suppressed":
        text += (f"<br><small>{row['estimate']:+.2f} "
                 f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]</small>")
    style = f"background:{verdict_colour(verdict)};color:{verdict_text_colour(verdict)};"
    return f'<td style="{style}" title="{html.escape(verdict_plain(verdict))}">{text}</td>'


def scorecard(claims: pd.DataFrame) -> HTML:
    """One-screen table of verdicts per claim (rows) and audience group (columns)."""
    groups = [g for g in GROUP_ORDER if g in set(claims["audience_group"])]
    groups += sorted(set(claims["audience_group"]) - set(groups))
    keys = claims[["claim_id", "outcome"]].drop_duplicates()
    header = "".join(f"<th>{html_text(group_label(g))}</th>" for g in groups)
    body = []
    by_key = claims.set_index(["claim_id", "outcome", "audience_group"])
    for claim_id, outcome in keys.itertuples(index=False):
        name = claim_label(claim_id)
        suffix = outcome_suffix(outcome, claim_id)
        cells = []
        for group in groups:
            key = (claim_id, outcome, group)
            cells.append(_cell(by_key.loc[key]) if key in by_key.index else "<td>—</td>")
        label = html_text(name) + (f" <small>({html_text(suffix)})</small>" if suffix else "")
        body.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
    legend = " ".join(
        f'<span style="background:{verdict_colour(v)};padding:1px 6px;border:1px solid #d0d7de">'
        f"{html.escape(verdict_label(v))}</span> {html.escape(verdict_plain(v))}.<br>"
        for v in ("supported", "below_threshold", "no_meaningful_effect", "contradicted",
                  "inconclusive", "insufficient_data", "not_measured", "suppressed")
    )
    return HTML(
        '<table class="mfr-scorecard"><thead><tr><th>Claim</th>'
        f"{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        "<p><small>Each cell: verdict, then the estimated change with its 95% confidence "
        f"interval in the outcome's unit.</small></p><p><small>{legend}</small></p>"
    )


def _estimate_phrase(row: pd.Series) -> str:
    if pd.isna(row.get("estimate")):
        return ""
    unit = str(row["unit"]) if "unit" in row and pd.notna(row["unit"]) else ""
    return f" (about {row['estimate']:+.1f}{(' ' + markdown_text(unit)) if unit else ''})"


def findings(claims: pd.DataFrame) -> Markdown:
    """Plain-language findings: one line per claim, groups gathered by verdict."""
    lines = []
    for claim_id, rows in claims.groupby("claim_id", sort=False):
        parts = []
        for outcome, outcome_rows in rows.groupby("outcome", sort=False):
            suffix = outcome_suffix(str(outcome), str(claim_id))
            by_verdict: dict[str, list[str]] = {}
            for _, row in outcome_rows.loc[outcome_rows["verdict"] != "suppressed"].iterrows():
                who = ("all clients" if row["audience_group"] == "all"
                       else markdown_text(group_plain(row["audience_group"])))
                phrase = who + (_estimate_phrase(row) if row["verdict"] in
                                {"supported", "below_threshold", "contradicted"} else "")
                by_verdict.setdefault(str(row["verdict"]), []).append(phrase)
            if not by_verdict:
                continue
            sentence = "; ".join(f"{verdict_plain(v)} for {', '.join(whos)}"
                                 for v, whos in by_verdict.items())
            parts.append((f"{markdown_text(suffix)}: " if suffix else "") + sentence)
        if parts:
            lines.append(f"- **{markdown_text(claim_label(str(claim_id)))}**: "
                         + " — ".join(parts) + ".")
    lines.append("\nGroups withheld for privacy (too few clients, or needed to protect a smaller "
                 "group) are not described.")
    return Markdown("\n".join(lines))


def design_caveat(sessions: pd.DataFrame, minimum_control_clients: int = 10) -> HTML | None:
    """The uncontrolled-design warning, or None when a usable control arm exists."""
    control = sessions.loc[sessions["arm"] == "control", "client_id"].nunique()
    if control >= minimum_control_clients:
        return None
    return HTML(
        '<div class="mfr-caveat"><b>No control group.</b> These logs have no usable control '
        "(sham or untreated) clients, so every before/after change here also contains placebo, "
        "expectation and regression to the mean: people tend to come in on bad days and feel "
        "better anyway. Treat the estimates as an upper bound of what the treatment itself "
        "does.</div>"
    )


def show_figure(fig: Figure, alt: str, caption: str = "") -> HTML:
    """Embed a figure as an inline PNG with alt text (offline, accessible) and close it.

    The PNG holds FIGURE_DPI pixels per inch but is laid out at the figure's size in CSS
    pixels (96 per inch): sharp on high-density screens and in print, text at its size."""
    from mfr_analysis.report.figures import png_bytes

    png, width = png_bytes(fig)
    data = base64.b64encode(png).decode("ascii")
    figcaption = f"<figcaption>{html_text(caption, None)}</figcaption>" if caption else ""
    return HTML(
        f'<figure class="mfr-figure"><img src="data:image/png;base64,{data}" width="{width}" '
        f'alt="{html_text(alt, None)}">{figcaption}</figure>'
    )


def data_fingerprint(sessions: pd.DataFrame) -> str:
    """A short SHA-256 of the analysed table's content, for reproducibility."""
    hashes = pd.util.hash_pandas_object(sessions, index=False).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()[:16]


def counts_table(sessions: pd.DataFrame, hidden_groups: Iterable[str] = (),
                 by: str = "audience_group") -> pd.DataFrame:
    """Clients and sessions per group; groups withheld by the disclosure plan say so."""
    from mfr_analysis.privacy import shown_counts

    shown = shown_counts(sessions, list(hidden_groups), by)
    shown.index = [group_label(str(g)) if by == "audience_group" else str(g) for g in shown.index]
    return shown


def period(sessions: pd.DataFrame) -> str:
    """The months the sessions span (whole months: a first or last date is one client's)."""
    first, last = sessions["session_date"].min(), sessions["session_date"].max()
    if pd.isna(first):
        return "no dated sessions"
    return f"{first:%B %Y} to {last:%B %Y}" if (first.year, first.month) != (
        last.year, last.month) else f"{first:%B %Y}"


def privacy_rule(minimum: int = MIN_REPORTED_CLIENTS) -> str:
    """The disclosure-control rule in words, for the methods appendix."""
    return (f"No count below {minimum} clients (other than none) is shown (CMS cell-size "
            "rule), nor can one be worked out by adding or subtracting numbers published "
            "anywhere in this report folder: where a total minus its shown parts would reveal a "
            "small cell, the next smallest cell is withheld too (complementary suppression), "
            "across the all-clients report, every slice report and their claims files. Withheld "
            f"cells read *suppressed*; notes give small counts as 'fewer than {minimum}'; "
            f"figures leave out points resting on fewer than {minimum} clients and never draw "
            "one client's values; dates are shown as months.")


def _size(sessions: pd.DataFrame, minimum: int) -> str:
    clients = sessions["client_id"].nunique()
    if clients < minimum:
        return f"fewer than {minimum} clients"
    return f"{clients:,} clients, {len(sessions):,} sessions"


def key_fingerprint(sessions_path: str) -> str:
    """The pseudonym-key fingerprint of the clean table a report read (never the key)."""
    from mfr_analysis.pipeline import key_fingerprint_of

    try:
        return key_fingerprint_of(sessions_path) or ""
    except (OSError, ValueError):
        return ""


def methods(claims: pd.DataFrame, sessions: pd.DataFrame, parameters: dict,
            minimum: int = MIN_REPORTED_CLIENTS, fingerprint: str = "") -> Markdown:
    """Methods appendix: models used per claim, sample sizes, versions, data fingerprint."""
    import statsmodels

    used = (
        claims.loc[claims["method"].notna() & (claims["method"] != ""), ["claim_id", "method"]]
        .drop_duplicates()
        .groupby("claim_id", sort=False)["method"]
        .agg(lambda m: "; ".join(sorted(set(m))))
    )
    model_lines = "\n".join(f"- {markdown_text(claim_label(c))}: {markdown_text(m, None)}"
                            for c, m in used.items())
    settings = "\n".join(f"- {markdown_code(k)} = {markdown_code(v)}"
                         for k, v in parameters.items())
    return Markdown(f"""
**Unit of analysis.** Clients, not sessions: repeated sessions of one client are not
independent, so every model has a per-client random effect or cluster-robust standard errors.

**Models used.**
{model_lines}

**Multiplicity.** P-values are adjusted across the whole claims table; a claim is
*supported* only when the adjusted p-value is below alpha and the estimate passes the
minimal clinically important difference (MCID). *No meaningful effect* means equivalence
within ±MCID was shown (two one-sided tests, 90% CI inside the margin).

**Data.** {_size(sessions, minimum)}, {period(sessions)}; fingerprint
`{data_fingerprint(sessions)}`. Client ids are keyed pseudonyms; pseudonym key fingerprint
`{fingerprint or 'not recorded'}` (a keyed hash of a constant, never the key: two reports with the
same fingerprint pseudonymised their clients alike).

**Privacy.** {privacy_rule(minimum)}

**Settings.**
{settings}

**Software.** mfr-analysis {__version__}, pandas {pd.__version__},
statsmodels {statsmodels.__version__}, Python {platform.python_version()}.
""")


def ordered_groups(values: Iterable[str]) -> list[str]:
    """Audience groups in the report's standard order, unknown ones last."""
    values = list(dict.fromkeys(values))
    return [g for g in GROUP_ORDER if g in values] + sorted(set(values) - set(GROUP_ORDER))


def slice_sessions(sessions: pd.DataFrame, column: str = "", value: str = "") -> pd.DataFrame:
    """The sessions of one slice (``column == value``), unused categories dropped."""
    from mfr_analysis.errors import ReportError

    if not column:
        return sessions
    if column not in sessions:
        raise ReportError(f"cannot slice by {column!r}: no such column")
    sliced = sessions.loc[sessions[column].astype("string") == value]
    if sliced.empty:
        raise ReportError(f"no sessions with {column} = the requested value")
    return sliced.assign(**{
        c: sliced[c].cat.remove_unused_categories()
        for c in sliced.select_dtypes("category").columns
    })


def load_slice(sessions_path: str, column: str = "", value: str = "") -> pd.DataFrame:
    """The derived session table, restricted to one slice when ``column`` is given."""
    from mfr_analysis.pipeline import load_sessions

    return slice_sessions(load_sessions([sessions_path]), column, value)


def withheld_groups(sessions: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS) -> list[str]:
    """Audience groups a report on its own must leave out of its counts and figures."""
    from mfr_analysis.privacy import plan_disclosure, session_counts

    return plan_disclosure(session_counts(sessions), minimum=minimum).hidden_groups()


def title_block(title: str, sessions: pd.DataFrame, minimum: int) -> HTML:
    """Report heading with the period (in months) and its size (hidden when small).

    HTML, not Markdown: the title holds option and data text (a site name), shown escaped.
    """
    return HTML(f"<h1>{html_text(title, TITLE_LIMIT)}</h1>\n"
                f"<p>{_size(sessions, minimum)}, {period(sessions)}.</p>")


MEASURE_COLUMNS = [
    "pain_pre", "pain_post", "pain_followup", "tightness_pre", "tightness_post", "stress_pre",
    "stress_post", "rom_pre", "rom_post", "duration_min", "pressure", "pace", "deep_breathing",
    "technique", "body_region", "adverse_event",
]
FOREST_CLAIMS = ("pain", "tightness", "stress", "rom", "lasting_relief", "slow_pace",
                 "breathing", "delivery", "consistency", "pressure_safety")


def plotted_claims(claims: pd.DataFrame) -> list[str]:
    """Claims with at least one estimate to draw, in the report's order."""
    present = set(claims.loc[claims["estimate"].notna(), "claim_id"])
    return [c for c in FOREST_CLAIMS if c in present]


def reportable_sessions(sessions: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS,
                        hidden_groups: Iterable[str] = ()) -> pd.DataFrame:
    """Sessions of the audience groups a report may show: enough clients, not withheld."""
    from mfr_analysis.privacy import reportable_groups

    keep = set(reportable_groups(sessions, "audience_group", minimum)) - set(hidden_groups)
    shown = sessions.loc[sessions["audience_group"].astype("string").isin(keep)]
    return shown.assign(audience_group=shown["audience_group"].cat.remove_unused_categories())


def paired_outcomes(sessions: pd.DataFrame) -> list[str]:
    """Self-rated outcomes with paired before/after values in the data."""
    return [o for o in ("pain", "tightness", "stress")
            if sessions[[f"{o}_pre", f"{o}_post"]].notna().all(axis=1).any()]


RESPONDER_COLUMNS = ("claim_id", "outcome", "audience_group", "design", "mcid", "unit",
                     "responder_share", "responders", "responder_clients", "responders_control",
                     "responder_clients_control")


def responder_table(claims: pd.DataFrame) -> pd.DataFrame:
    """Responder numbers per claim, outcome (each ROM measure and lasting-relief row apart)
    and group, as the protected claims table holds them, for the responder figure."""
    columns = [c for c in RESPONDER_COLUMNS if c in claims]
    numbers = [c for c in ("responder_share", "responders", "responders_control") if c in claims]
    if not numbers:
        return pd.DataFrame(columns=list(RESPONDER_COLUMNS))
    shown = claims["verdict"] != "suppressed" if "verdict" in claims else True
    rows = claims.loc[claims[numbers].notna().any(axis=1) & shown]
    return rows[columns].reset_index(drop=True)


# The data-quality views moved to mfr_analysis.report.quality; kept here for the claims
# notebook and the report runner, which read them from views.
from mfr_analysis.report.quality import (  # noqa: E402, F401
    load_cleaning_report,
    quality_summary,
    reason_counts,
)
