"""The index page: every report of a run, with its headline verdicts."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mfr_analysis.errors import ReportError
from mfr_analysis.io import write_atomic
from mfr_analysis.report.labels import (
    claim_label,
    design_label,
    design_rule,
    designs,
    legend_verdicts,
    outcome_suffix,
    verdict_colour,
    verdict_label,
    verdict_rule,
    verdict_text_colour,
)
from mfr_analysis.report.safe_text import CSP_META, html_text, unsafe_markup
from mfr_analysis.version import package_version

if TYPE_CHECKING:
    from mfr_analysis.report.run import SliceResult

LABEL_LIMIT = 120  # characters of a slice name shown in the index
TITLE_LIMIT = 300


def _chip(verdict: str) -> str:
    return (f'<span class="chip" style="background:{verdict_colour(verdict)};'
            f'color:{verdict_text_colour(verdict)}">{html_text(verdict_label(verdict))}</span>')


def _design_tag(design: str) -> str:
    if not design:
        return ""
    return (f' <span class="design design-{html_text(design)}">'
            f"{html_text(design_label(design))}</span>")


def verdict_tally(verdicts: Sequence[str]) -> str:
    """'3 Supported, 2 Real but small, 4 Inconclusive, …' in the legend's order."""
    counts = {v: list(verdicts).count(v) for v in dict.fromkeys(verdicts)}
    order = [v for v in legend_verdicts() if v in counts] + [
        v for v in counts if v not in legend_verdicts()]
    return ", ".join(f"{counts[v]} {verdict_label(v)}" for v in order)


def verdict_list(claims_path: str) -> str:
    """Every claim's verdict for all clients of one report, grouped by claim, design marked."""
    from mfr_analysis.report.run import load_claims

    claims = load_claims(claims_path) if claims_path else None
    if claims is None or claims.empty:
        return ""
    pooled = claims.loc[claims["audience_group"] == "all"]
    if pooled.empty:
        return ""
    items = []
    for claim_id, rows in pooled.groupby("claim_id", sort=False):
        results = []
        for _, row in rows.iterrows():
            suffix = outcome_suffix(str(row["outcome"]), str(claim_id))
            verdict = str(row["verdict"])
            design = "" if verdict == "suppressed" else str(row.get("design") or "")
            results.append((f"{html_text(suffix)}: " if suffix else "") + _chip(verdict)
                           + _design_tag(design))
        items.append(f'<li data-claim="{html_text(claim_id)}"><b>'
                     f"{html_text(claim_label(str(claim_id)))}</b>: {'; '.join(results)}</li>")
    tally = verdict_tally([str(v) for v in pooled["verdict"]])
    return (f'<p class="tally"><small>{html_text(tally, None)}</small></p>'
            f'<ul class="verdicts">{"".join(items)}</ul>')


def quality_headline(cleaning: dict) -> str:
    """Where the input rows went, in one line."""
    if not cleaning:
        return ""
    return (f"<small>{cleaning['rows_in']:,} rows read: {cleaning['rows_clean']:,} clean, "
            f"{cleaning['rows_quarantined']:,} quarantined, {cleaning['rows_duplicate']:,} "
            "duplicates</small>")


def index_legend() -> str:
    """The verdict and design words of the reports, for the index (same table, same words)."""
    verdicts = "".join(f"<li>{_chip(v)} {html_text(verdict_rule(v), None)}</li>"
                       for v in legend_verdicts())
    tags = "".join(f"<li>{_design_tag(d).strip()} {html_text(design_rule(d), None)}</li>"
                   for d in designs())
    return ('<div class="legend"><p><b>What the verdicts and designs mean</b></p>'
            f'<ul style="list-style:none;padding-left:0">{verdicts}{tags}</ul></div>')


def settings_sentence(settings: dict) -> str:
    """The run's settings in words: significance, correction, privacy rule, overrides."""
    from mfr_analysis.report.views import settings_words

    words = settings_words(float(settings.get("alpha", 0.05)),
                           str(settings.get("correction", "holm")),
                           int(settings.get("min_reported_clients", 11)))
    # worded so that no count of clients is read into it ("at least 10 clients")
    extra = [f"fewest clients for a model: {settings['min_clients']}"
             if "min_clients" in settings else ""]
    overrides = settings.get("mcid_overrides") or {}
    if overrides:
        extra.append("thresholds changed for this run: " + ", ".join(
            f"{k} {v:g}" for k, v in overrides.items()))
    if settings.get("date_order"):
        extra.append("dates read " + ("day first" if settings["date_order"] == "dmy"
                                      else "month first"))
    return ", ".join([words, *[e for e in extra if e]])


def write_index(out: Path, results: Sequence[SliceResult], withheld: Sequence[str],
                title: str, settings: dict, cleaning: dict | None = None) -> Path:
    """Write ``out/index.html`` linking every report; failed runs are listed, not hidden."""
    rows = []
    for result in results:
        label = html_text(result.label, LABEL_LIMIT)
        link = f'<a href="{html.escape(result.html)}">{label}</a>' if result.html else label
        if result.error:  # the reason is in the run log; a clinician's page shows no error text
            status = (f'<span class="failed">failed: this report is incomplete; the analyst '
                      f"should look at the run log or notebooks/{html.escape(result.slug)}.ipynb"
                      "</span>")
        elif result.claims:
            status = verdict_list(result.claims)
        else:
            status = quality_headline(cleaning or {})
        rows.append(f"<tr><td>{link}</td><td>{status}</td></tr>")
    for line in withheld:
        rows.append(f'<tr><td colspan="2"><small>{html_text(line)} (privacy rule)</small>'
                    "</td></tr>")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{CSP_META}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html_text(title, TITLE_LIMIT)}: index of reports</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  max-width: 960px; margin: 2rem auto; padding: 0 1rem; color: #24292f;
  overflow-wrap: break-word; }}
table {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
th:first-child {{ width: 35%; }}
td, th {{ border-bottom: 1px solid #d0d7de; padding: 6px 8px; text-align: left;
  vertical-align: top; }}
.chip {{ display: inline-block; padding: 0 6px; margin: 1px; border: 1px solid #8c959f;
  border-radius: 4px; font-size: 0.85rem; }}
.design {{ font-size: 0.8rem; border: 1px solid #57606a; border-radius: 3px; padding: 0 3px;
  white-space: nowrap; }}
.design-uncontrolled {{ border-style: dashed; }}
.design-observational {{ border-style: dotted; }}
ul.verdicts {{ margin: 0.2rem 0; padding-left: 1rem; font-size: 0.9rem; }}
ul.verdicts li {{ margin: 2px 0; }}
.tally {{ margin: 0; color: #57606a; }}
.legend li {{ margin: 2px 0; font-size: 0.85rem; }}
.failed {{ color: #cf222e; }}
@media (max-width: 600px) {{ body {{ margin: 1rem auto; padding: 0 0.5rem; }}
  th:first-child {{ width: 28%; }} }}
@media print {{ tr, li, .legend {{ break-inside: avoid; }} h1, h2 {{ break-after: avoid; }}
  * {{ -webkit-print-color-adjust: exact; print-color-adjust: exact; }} }}
</style></head><body>
<h1>{html_text(title, TITLE_LIMIT)}</h1>
<p>Reports generated {stamp} by mfr-analysis {html.escape(package_version())}. Open any report
below; each works offline. Groups or sites with too few clients have no report of their own,
and are not named.</p>
<table><thead><tr><th>Report</th><th>Every claim's verdict for all clients of the report
</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{index_legend()}
<p><small>Settings: {html_text(settings_sentence(settings), None)}.</small></p>
<p><small>To share: the pages and the <code>claims-*.json</code> files. The <code>data/</code>
and <code>notebooks/</code> folders are the analyst's record of the run (row-level,
pseudonymised data and the executed notebooks): keep them within the clinic.</small></p>
</body></html>
"""
    problems = unsafe_markup(page)
    if problems:  # cannot happen with the escaping above; a last guard, never a live page
        raise ReportError(f"index page failed the safety check: {problems[0]}")
    return write_atomic(out / "index.html", lambda p: p.write_text(page, encoding="utf-8"))
