"""What the report notebooks show: scorecard, findings, caveats, figures and methods.

Every function takes the tidy claims table (or the session table) and returns an object the
notebook displays; notebooks stay thin and the same objects can be tested here.
"""

from __future__ import annotations

import base64
import hashlib
import platform
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from IPython.display import HTML, Markdown
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.report import wording as w
from mfr_analysis.report.labels import (
    cause_caveat,
    claim_label,
    correction_label,
    design_label,
    design_plain,
    design_rule,
    designs,
    group_label,
    group_plain,
    legend_verdicts,
    measure_label,
    outcome_suffix,
    reading_cue,
    report_text,
    verdict_colour,
    verdict_label,
    verdict_plain,
    verdict_rule,
    verdict_text_colour,
)
from mfr_analysis.report.safe_text import html_text, markdown_code, markdown_text
from mfr_analysis.settings import DEFAULTS, AnalysisSettings
from mfr_analysis.version import package_version

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


def _primary(claims: pd.DataFrame) -> pd.DataFrame:
    """The primary rows of a claims table (not the missing-data sensitivity rows)."""
    from mfr_analysis.claims import primary_rows

    return primary_rows(claims)


def single_group_view(claims: pd.DataFrame) -> pd.DataFrame:
    """Drop the pooled rows when the table holds one audience group only (a slice report)."""
    groups = set(claims["audience_group"]) - {"all"}
    if len(groups) != 1:
        return claims
    return claims.loc[claims["audience_group"] != "all"].reset_index(drop=True)


SCORECARD_NO_ESTIMATE = "—"
DESIGN_BORDER = {"controlled": "solid", "uncontrolled": "dashed", "observational": "dotted"}
POWER_VERDICTS = frozenset({"inconclusive", "no_association_shown"})  # say what was detectable
EFFECT_VERDICTS = frozenset({"supported", "below_threshold", "contradicted",
                             "association_shown", "no_association_shown"})


def design_marker(design: str) -> str:
    """The design of an estimate as a bordered tag in words: it does not rely on colour."""
    if not design:
        return ""
    border = DESIGN_BORDER.get(design, "solid")
    return (f'<span class="mfr-design mfr-design-{html_text(design)}" '
            f'style="border:1px {border} currentColor;border-radius:3px;padding:0 3px;'
            f'white-space:nowrap;font-size:0.85em">{html_text(design_label(design))}</span>')


def verdict_swatch(verdict: str) -> str:
    """A verdict's label on its colour, as the scorecard shows it."""
    return (f'<span class="mfr-swatch" style="background:{verdict_colour(verdict)};'
            f"color:{verdict_text_colour(verdict)};padding:1px 6px;border:1px solid #8c959f;"
            f'white-space:nowrap">{html_text(verdict_label(verdict))}</span>')


def _cell(row: pd.Series, minimum: int = MIN_REPORTED_CLIENTS) -> str:
    """One scorecard cell: verdict, design, estimate, clients; machine-readable attributes."""
    verdict = str(row["verdict"])
    suppressed = verdict == "suppressed"
    design = "" if suppressed else w.text(row, "design")
    parts = [f"<b>{html_text(verdict_label(verdict))}</b>"]
    estimate = "" if suppressed else w.estimate_text(row, with_unit=False)
    if design:
        parts.append(design_marker(design))
    if estimate:
        parts.append(f'<span class="mfr-estimate">{html_text(estimate, None)}</span>')
    clients = "" if suppressed else w.clients_text(row, minimum)
    if clients:
        parts.append(f'<span class="mfr-clients">{html_text(clients, None)}</span>')
    if verdict in POWER_VERDICTS:
        power = w.power_text(row, short=True)
        if power:
            parts.append(f'<span class="mfr-power">{html_text(power, None)}</span>')
    words = "" if suppressed else w.effect_words(row)
    tooltip = f"{verdict_plain(verdict)}" + (f": {words}" if words else "")
    attributes = {
        "data-claim": row["claim_id"], "data-group": row["audience_group"],
        "data-outcome": row["outcome"], "data-design": design, "data-verdict": verdict,
        "data-n-clients": "" if suppressed else w.clients_attribute(row),
    }
    attrs = " ".join(f'{name}="{html_text(value, None)}"' for name, value in attributes.items())
    style = f"background:{verdict_colour(verdict)};color:{verdict_text_colour(verdict)};"
    return (f'<td class="mfr-cell" {attrs} style="{style}" title="{html_text(tooltip, None)}">'
            + "<br>".join(f"<small>{part}</small>" if i else part
                          for i, part in enumerate(parts)) + "</td>")


def _pooled(rows: pd.DataFrame) -> pd.Series | None:
    pooled = rows.loc[rows["audience_group"] == "all"]
    return pooled.iloc[0] if len(pooled) else None


def mixed_designs(rows: pd.DataFrame) -> bool:
    """Whether the shown cells of one claim row mix controlled and before/after estimates."""
    shown = rows.loc[rows["verdict"] != "suppressed"]
    designs = {str(d) for d in shown.get("design", pd.Series(dtype="str")).dropna()}
    return {"controlled", "uncontrolled"} <= designs


def _row_threshold(rows: pd.DataFrame, with_source: bool = False) -> str:
    """The threshold of a claim row in words (with its source), or that it has none."""
    if "mcid" not in rows:
        return report_text("no_threshold")
    with_mcid = rows.loc[pd.to_numeric(rows["mcid"], errors="coerce").notna()]
    if with_mcid.empty:
        return report_text("no_threshold")
    row = with_mcid.iloc[0]
    source = w.threshold_source(row) if with_source else ""
    return f"threshold {w.threshold_text(row)}" + (f" ({source})" if source else "")


def heterogeneity_note(rows: pd.DataFrame, alpha: float = DEFAULTS.alpha,
                       short: bool = False) -> str:
    """'Do groups differ? …' for a claim row shown for several groups, else ''."""
    pooled = _pooled(rows)
    if pooled is None or rows["audience_group"].nunique() < 3:  # pooled + at least two groups
        return ""
    answer = w.heterogeneity_text(w.value(pooled, "heterogeneity_p"), alpha, short)
    return f"{report_text('groups_question')} {answer}" if answer else ""


def _row_header(claim_id: str, outcome: str, rows: pd.DataFrame, alpha: float) -> str:
    name = claim_label(claim_id)
    suffix = outcome_suffix(outcome, claim_id)
    first = rows.iloc[0]
    cue = "; ".join(p for p in (w.unit_phrase(first), reading_cue(claim_id, outcome)) if p)
    notes = [cue, _row_threshold(rows), heterogeneity_note(rows, alpha, short=True)]
    if mixed_designs(rows):
        notes.append("⚠ " + report_text("mixed_design"))
    label = f'<span class="mfr-claim-name">{html_text(name)}</span>'
    if suffix:
        label += f' <span class="mfr-claim-outcome">({html_text(suffix)})</span>'
    details = "".join(f'<br><small class="mfr-row-note">{html_text(n, None)}</small>'
                      for n in notes if n)
    return (f'<th scope="row" class="mfr-claim" data-claim="{html_text(claim_id)}">'
            f"{label}{details}</th>")


def legend() -> str:
    """What the verdicts, colours and design tags mean: the same words as the methods."""
    verdicts = "".join(f"<li>{verdict_swatch(v)} {html_text(verdict_rule(v), None)}</li>"
                       for v in legend_verdicts())
    design_items = "".join(f"<li>{design_marker(d)} {html_text(design_rule(d), None)}</li>"
                           for d in designs())
    return (
        '<div class="mfr-legend"><p><b>How to read a cell.</b> The verdict, the design of the '
        "comparison, the estimate with its 95 % confidence interval (the line under each "
        "claim gives the unit and which sign is better; intervals are not corrected for "
        "multiple testing, verdicts are) and the clients analysed (control "
        "clients in brackets). Inconclusive and no-association cells add the smallest effect "
        "these clients could detect (≥, in the row's unit), and the clients a study would "
        "need.</p>"
        f'<p><b>Verdicts</b></p><ul class="mfr-legend-verdicts">{verdicts}</ul>'
        f'<p><b>Designs</b></p><ul class="mfr-legend-designs">{design_items}</ul></div>'
    )


def scorecard(claims: pd.DataFrame, alpha: float = DEFAULTS.alpha,
              minimum: int = MIN_REPORTED_CLIENTS) -> HTML:
    """One-screen table of verdicts per claim (rows) and audience group (columns)."""
    claims = _primary(claims)  # sensitivity rows: their own section
    groups = ordered_groups(claims["audience_group"].astype(str))
    header = "".join(f'<th scope="col">{html_text(group_label(g))}</th>' for g in groups)
    body = []
    for (claim_id, outcome), rows in claims.groupby(["claim_id", "outcome"], sort=False):
        by_group = {str(r["audience_group"]): r for _, r in rows.iterrows()}
        cells = [_cell(by_group[g], minimum) if g in by_group
                 else f"<td>{SCORECARD_NO_ESTIMATE}</td>" for g in groups]
        body.append(f"<tr>{_row_header(str(claim_id), str(outcome), rows, alpha)}"
                    f"{''.join(cells)}</tr>")
    return HTML(
        '<div class="mfr-scroll" style="overflow-x:auto"><table class="mfr-scorecard">'
        f'<thead><tr><th scope="col" class="mfr-claim">Claim</th>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{legend()}"
    )


def _who(row: pd.Series) -> str:
    return ("all clients" if row["audience_group"] == "all"
            else group_plain(str(row["audience_group"])))


def _finding_phrase(row: pd.Series) -> str:
    """'seniors (pain fell 0.84 points more than in control clients)' for one row."""
    verdict = str(row["verdict"])
    extra = ""
    if verdict in EFFECT_VERDICTS:
        extra = w.effect_words(row)
    elif verdict == "inconclusive":
        extra = w.power_text(row)
    return _who(row) + (f" ({extra})" if extra else "")


def _association_sentence(rows: pd.DataFrame) -> str:
    """Observational rows of one claim row: for whom (by how much) what went with what."""
    said: dict[tuple[str, str], list[str]] = {}
    for _, row in rows.iterrows():
        verdict = str(row["verdict"])
        sentence = w.association_sentence(row)
        if not sentence:
            said.setdefault((verdict_plain(verdict), ""), []).append(_finding_phrase(row))
            continue
        sized = verdict in {"association_shown", "contradicted"}
        who = f"{_who(row)} ({w.size_text(row)})" if sized else _who(row)
        said.setdefault((verdict_label(verdict), sentence), []).append(who)
    return "; ".join(f"{verdict} for {', '.join(whos)}" + (f": {sentence}" if sentence else "")
                     for (verdict, sentence), whos in said.items())


def _design_sentence(design: str, rows: pd.DataFrame) -> str:
    prefix = design_plain(design)
    prefix = f"{prefix[:1].upper()}{prefix[1:]}: " if prefix else ""
    if design == "observational":
        return prefix + _association_sentence(rows)
    by_verdict: dict[str, list[str]] = {}
    for _, row in rows.iterrows():
        by_verdict.setdefault(str(row["verdict"]), []).append(_finding_phrase(row))
    return prefix + "; ".join(f"{verdict_plain(v)} for {', '.join(whos)}"
                              for v, whos in by_verdict.items())


def _outcome_findings(claim_id: str, outcome: str, rows: pd.DataFrame, alpha: float) -> str:
    """The findings of one claim row, one sentence per design, '' when all are withheld."""
    shown = rows.loc[rows["verdict"] != "suppressed"]
    if shown.empty:
        return ""
    design = shown["design"].fillna("").astype(str) if "design" in shown else \
        pd.Series("", index=shown.index)
    sentences = [_design_sentence(str(d), part) for d, part in shown.groupby(design, sort=False)]
    if mixed_designs(rows):
        sentences.append(report_text("mixed_design").rstrip("."))
    differ = heterogeneity_note(rows, alpha)
    if differ:
        sentences.append(differ)
    suffix = outcome_suffix(outcome, claim_id)
    return (f"{suffix[:1].upper()}{suffix[1:]}: " if suffix else "") + ". ".join(sentences) + "."


def findings(claims: pd.DataFrame, alpha: float = DEFAULTS.alpha) -> Markdown:
    """Plain-language findings: per claim and design, groups gathered by verdict, each
    estimate in words ('compared with control clients', 'from before to after a session',
    associations said not to show cause)."""
    claims = _primary(claims)  # sensitivity rows: their own section
    lines = []
    for claim_id, rows in claims.groupby("claim_id", sort=False):
        claim_id = str(claim_id)
        parts = [part for outcome, outcome_rows in rows.groupby("outcome", sort=False)
                 if (part := _outcome_findings(claim_id, str(outcome), outcome_rows, alpha))]
        if not parts:
            continue
        observational = "design" in rows and (rows["design"] == "observational").any()
        caveat = cause_caveat(claim_id) if observational else ""
        if caveat:
            parts[-1] += f" {caveat[:1].upper()}{caveat[1:].rstrip('.')}."
        name = f"- **{markdown_text(claim_label(claim_id))}**"
        if len(parts) == 1:
            lines.append(f"{name}: {markdown_text(parts[0], None)}")
        else:
            lines.append(name)
            lines += [f"    - {markdown_text(part, None)}" for part in parts]
    lines.append("\nGroups withheld for privacy (too few clients, or needed to protect a smaller "
                 "group) are not described.")
    return Markdown("\n".join(lines))


def design_caveat(sessions: pd.DataFrame,
                  settings: AnalysisSettings | None = None) -> HTML | None:
    """The uncontrolled-design warning, or None when a usable control arm exists (at least
    ``settings.min_clients`` control clients, the engine's rule for a controlled model)."""
    minimum = (settings or DEFAULTS).min_clients
    control = sessions.loc[sessions["arm"] == "control", "client_id"].nunique()
    if control >= minimum:
        return None
    return HTML(
        '<div class="mfr-caveat"><b>No control group.</b> These logs have no usable control '
        "(sham or untreated) clients, so every before/after change here also contains placebo, "
        "expectation and regression to the mean: people tend to come in on bad days and feel "
        "better anyway. Treat the estimates as an upper bound of what the treatment itself "
        "does.</div>"
    )


def show_figure(fig: Figure | SubFigure | Axes, alt: str, caption: str = "") -> HTML:
    """Embed a figure as an inline PNG with alt text (offline, accessible) and close it.

    Takes what a figure function returns: its Figure, or the Axes or SubFigure it drew into
    (the whole figure holding it is embedded).

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
            "anywhere in this report folder. A cell of fewer clients is hidden whole and reads "
            "*suppressed*. Where a total minus its shown parts, or a combination of the "
            "folder's published client counts (checked by linear algebra), would reveal a "
            "small group, a further count is withheld (complementary suppression): it reads "
            "*withheld*, while its estimate, interval and verdict stay (its standard error, "
            "p-values and power figures go: with the interval they would give the count "
            "back). This holds across the all-clients report, every slice "
            f"report and their claims files. Notes give small counts as 'fewer than {minimum}'; "
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


def threshold_lines(claims: pd.DataFrame) -> list[str]:
    """Markdown list: per claim why it has the threshold it has (the registry's rationale),
    then each row's threshold with its source."""
    claims = _primary(claims)  # sensitivity rows: their own section
    from mfr_analysis.claims import claim_registry

    registry = claim_registry().set_index("claim_id")
    lines = []
    for claim_id, claim_rows in claims.groupby("claim_id", sort=False):
        claim_id = str(claim_id)
        why = (str(registry.loc[claim_id, "threshold_rationale"])
               if "threshold_rationale" in registry and claim_id in registry.index else "")
        lines.append(f"- *{markdown_text(claim_label(claim_id))}*"
                     + (f": {markdown_text(why, None)}" if why and why != "nan" else ""))
        for outcome, rows in claim_rows.groupby("outcome", sort=False):
            if "mcid" in rows and pd.to_numeric(rows["mcid"], errors="coerce").notna().any():
                suffix = outcome_suffix(str(outcome), claim_id) or measure_label(str(outcome))
                lines.append(f"    - {markdown_text(suffix)}: "
                             f"{markdown_text(_row_threshold(rows, with_source=True), None)}")
    return lines


def settings_words(alpha: float, correction: str, minimum: int) -> str:
    """The analysis settings in words, e.g. '5 % significance, Holm correction across all
    claims, groups under 11 clients hidden'."""
    return (f"{alpha * 100:g} % significance, {correction_label(correction)} across all "
            f"claims, groups under {minimum} clients hidden")


def verdict_methods(claims: pd.DataFrame, parameters: dict) -> str:
    """The verdict rules, designs, thresholds, power and heterogeneity, as Markdown: the
    same words as the scorecard legend (``data/report_labels.csv``)."""
    alpha = float(parameters.get("alpha", DEFAULTS.alpha))
    correction = str(parameters.get("correction", DEFAULTS.correction))
    verdicts = "\n".join(f"- *{markdown_text(verdict_label(v))}*: "
                         f"{markdown_text(verdict_rule(v), None)}" for v in legend_verdicts())
    design_lines = "\n".join(f"- *{markdown_text(design_label(d))}*: "
                             f"{markdown_text(design_rule(d), None)}" for d in designs())
    thresholds = "\n".join(threshold_lines(claims))
    return f"""**Verdicts.** P-values are adjusted across the whole claims table
({markdown_text(correction_label(correction))}); statistically clear means an adjusted p-value
below {alpha:g}. The 95 % confidence intervals shown are not adjusted: an interval that
excludes 0 can still belong to a cell that is not statistically clear after the correction.

{verdicts}

**Designs.**

{design_lines}

**Thresholds.** A claim is *supported* only against a threshold it states, with its source;
claims without one can show an association at most.

{thresholds}

**Power.** For inconclusive cells the report gives the smallest effect the cell's clients
would detect {w.POWER_PERCENT} % of the time at the {alpha:g} level (before the multiplicity
correction), and the clients a study would need to detect the threshold.

**Do groups differ?** A Wald test that the audience groups' estimates are equal (on the
all-clients row); below {alpha:g} the groups differ more than chance would explain."""


def methods(claims: pd.DataFrame, sessions: pd.DataFrame, parameters: dict,
            minimum: int = MIN_REPORTED_CLIENTS, fingerprint: str = "") -> Markdown:
    """Methods appendix: models used per claim, sample sizes, versions, data fingerprint."""
    claims = _primary(claims)  # sensitivity rows: their own section
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

{verdict_methods(claims, parameters)}

**Data.** {_size(sessions, minimum)}, {period(sessions)}; fingerprint
`{data_fingerprint(sessions)}`. Client ids are keyed pseudonyms; pseudonym key fingerprint
`{fingerprint or 'not recorded'}` (a keyed hash of a constant, never the key: two reports with the
same fingerprint pseudonymised their clients alike).

**Privacy.** {privacy_rule(minimum)}

**Settings.**
{settings}

**Software.** mfr-analysis {package_version()}, pandas {pd.__version__},
statsmodels {statsmodels.__version__}, Python {platform.python_version()}.
""")


def ordered_groups(values: Iterable[str]) -> list[str]:
    """Audience groups in the report's standard order, unknown ones last."""
    values = list(dict.fromkeys(values))
    return [g for g in GROUP_ORDER if g in values] + sorted(set(values) - set(GROUP_ORDER))


def slice_sessions(sessions: pd.DataFrame, column: str = "", value: str = "") -> pd.DataFrame:
    """The sessions of one slice (``column == value``), unused categories dropped.

    ``value`` is a value of the column or, for audience groups, its label as the reports show
    it (``chronic_pain`` or 'Chronic pain', in any case); a value matching none of the data's
    raises :class:`InputError` listing the valid ones."""
    from mfr_analysis.errors import InputError

    if not column:
        return sessions
    if column not in sessions:
        raise InputError(f"slice_column {column!r}: no such column; use audience_group or "
                         "site, or leave it empty for all clients")
    values = sessions[column].astype("string")
    code = slice_code(values, column, value)
    sliced = sessions.loc[values == code]
    return sliced.assign(**{
        c: sliced[c].cat.remove_unused_categories()
        for c in sliced.select_dtypes("category").columns
    })


def slice_key(sessions: pd.DataFrame, column: str = "") -> str:
    """A report's slice as the disclosure plan names it: '' for all clients, else the data's
    value of ``column`` that every session of the (already sliced) table shares."""
    if not column:
        return ""
    values = sessions[column].dropna().astype("str").unique()
    return str(values[0]) if len(values) == 1 else ""


def slice_code(values: pd.Series, column: str, value: str) -> str:
    """The data's value a slice parameter names: itself, or the value whose code or label
    (audience groups) it is, ignoring case, spaces and underscores; InputError listing the
    valid values when there is none or more than one."""
    from mfr_analysis.errors import InputError
    from mfr_analysis.tables import normalise_token

    present = sorted(set(values.dropna()))
    if value in present:
        return str(value)
    label = group_label if column == "audience_group" else str
    wanted = normalise_token(str(value))
    matches = [v for v in present if wanted in {normalise_token(v), normalise_token(label(v))}]
    if len(matches) == 1:
        return matches[0]
    valid = ", ".join(f"{v} ({label(v)})" if label(v) != v else v for v in present)
    why = "matches several values" if matches else f"is not a {column} of these sessions"
    raise InputError(f"slice_value {value!r} {why}; valid values: {valid or 'none'}")


def load_slice(sessions_path: str, column: str = "", value: str = "") -> pd.DataFrame:
    """The derived session table, restricted to one slice when ``column`` is given.

    ``sessions_path`` is a clean ``sessions.parquet`` (or its folder) or raw logs (cleaned in
    memory); a path that does not exist raises :class:`InputError` naming it whole, as read
    from the working folder (a notebook's runs from where papermill or JupyterLab started
    it)."""
    from mfr_analysis.errors import InputError
    from mfr_analysis.pipeline import load_sessions

    path = Path(str(sessions_path)).expanduser()
    if not str(sessions_path).strip():
        raise InputError("sessions_path: empty; give a clean sessions.parquet or raw logs")
    if not path.exists():
        raise InputError(f"sessions_path {path.resolve()}: no such file or folder"
                         + ("" if path.is_absolute() else f" (read from {Path.cwd()})"))
    return slice_sessions(load_sessions([path]), column, value)


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


def plotted_claims(claims: pd.DataFrame) -> list[str]:
    """Every claim with at least one estimate to draw, in the table's (the registry's) order."""
    claims = _primary(claims)  # sensitivity rows: their own section
    return list(dict.fromkeys(claims.loc[claims["estimate"].notna(), "claim_id"].astype(str)))


def reportable_sessions(sessions: pd.DataFrame, minimum: int = MIN_REPORTED_CLIENTS,
                        hidden_groups: Iterable[str] = ()) -> pd.DataFrame:
    """Sessions of the audience groups a report may show: enough clients, not withheld."""
    from mfr_analysis.privacy import reportable_groups

    keep = set(reportable_groups(sessions, "audience_group", minimum)) - set(hidden_groups)
    shown = sessions.loc[sessions["audience_group"].astype("string").isin(keep)]
    return shown.assign(audience_group=shown["audience_group"].cat.remove_unused_categories())


def paired_outcomes(sessions: pd.DataFrame) -> list[str]:
    """Outcomes of the registry's before/after claims with paired values in the data."""
    from mfr_analysis.claims import before_after_outcomes

    return [o for o in before_after_outcomes() if {f"{o}_pre", f"{o}_post"} <= set(sessions)
            and sessions[[f"{o}_pre", f"{o}_post"]].notna().all(axis=1).any()]


RESPONDER_COLUMNS = ("claim_id", "outcome", "audience_group", "design", "mcid", "unit",
                     "responder_share", "responders", "responder_clients", "responders_control",
                     "responder_clients_control")


def responders_withheld(minimum: int = MIN_REPORTED_CLIENTS) -> HTML:
    """What the responders section says when no share can be shown, rather than nothing."""
    return HTML(f"<p>No share can be shown in this report: each would rest on fewer than "
                f"{minimum} responders or non-responders, or would let a withheld count "
                "(such as the clients with a single session, who have no responder status) "
                "be worked out.</p>")


def responder_table(claims: pd.DataFrame) -> pd.DataFrame:
    """Responder numbers per claim, outcome (each ROM measure and lasting-relief row apart)
    and group, as the protected claims table holds them, for the responder figure."""
    claims = _primary(claims)  # sensitivity rows: their own section
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
