"""The index page: every report of a run, with its headline verdicts."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mfr_analysis import __version__
from mfr_analysis.errors import ReportError
from mfr_analysis.io import write_atomic
from mfr_analysis.report.labels import (
    claim_label,
    outcome_suffix,
    verdict_colour,
    verdict_label,
    verdict_text_colour,
)
from mfr_analysis.report.safe_text import CSP_META, html_text, unsafe_markup

if TYPE_CHECKING:
    from mfr_analysis.report.run import SliceResult

HEADLINE_VERDICTS = ("supported", "below_threshold", "contradicted")
LABEL_LIMIT = 120  # characters of a slice name shown in the index
TITLE_LIMIT = 300


def headline(claims_path: str) -> str:
    """Short HTML list of the pooled row's notable verdicts of one claims report."""
    from mfr_analysis.report.run import load_claims

    claims = load_claims(claims_path) if claims_path else None
    if claims is None or claims.empty:
        return ""
    pooled = claims.loc[claims["audience_group"] == "all"]
    notable = pooled.loc[pooled["verdict"].isin(HEADLINE_VERDICTS)]
    if notable.empty:
        return "<small>No claim supported for all clients.</small>"
    items = []
    for _, row in notable.iterrows():
        suffix = outcome_suffix(str(row["outcome"]), str(row["claim_id"]))
        name = claim_label(str(row["claim_id"])) + (f" ({suffix})" if suffix else "")
        verdict = str(row["verdict"])
        items.append(
            f'<span class="chip" style="background:{verdict_colour(verdict)};'
            f'color:{verdict_text_colour(verdict)}">'
            f"{html_text(name)}: {html_text(verdict_label(verdict))}</span>"
        )
    return " ".join(items)


def quality_headline(cleaning: dict) -> str:
    """Where the input rows went, in one line."""
    if not cleaning:
        return ""
    return (f"<small>{cleaning['rows_in']:,} rows read: {cleaning['rows_clean']:,} clean, "
            f"{cleaning['rows_quarantined']:,} quarantined, {cleaning['rows_duplicate']:,} "
            "duplicates</small>")


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
            status = headline(result.claims)
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
<title>{html_text(title, TITLE_LIMIT)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  max-width: 960px; margin: 2rem auto; padding: 0 1rem; color: #24292f;
  overflow-wrap: break-word; }}
table {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
th:first-child {{ width: 35%; }}
td, th {{ border-bottom: 1px solid #d0d7de; padding: 6px 8px; text-align: left; }}
.chip {{ display: inline-block; padding: 1px 6px; margin: 1px; border: 1px solid #d0d7de;
  border-radius: 4px; font-size: 0.85rem; }}
.failed {{ color: #cf222e; }}
</style></head><body>
<h1>{html_text(title, TITLE_LIMIT)}</h1>
<p>Reports generated {stamp} by mfr-analysis {html.escape(__version__)}. Open any report
below; each works offline. Groups or sites with too few clients have no report of their own,
and are not named.</p>
<table><thead><tr><th>Report</th><th>Headline (all clients of the slice)</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p><small>Settings: {html_text(', '.join(f'{k}={v}' for k, v in settings.items()
                                          if k != 'mapping'), None)}</small></p>
<p><small>To share: the pages and the <code>claims-*.json</code> files. The <code>data/</code>
and <code>notebooks/</code> folders are the analyst's record of the run (row-level,
pseudonymised data and the executed notebooks): keep them within the clinic.</small></p>
</body></html>
"""
    problems = unsafe_markup(page)
    if problems:  # cannot happen with the escaping above; a last guard, never a live page
        raise ReportError(f"index page failed the safety check: {problems[0]}")
    return write_atomic(out / "index.html", lambda p: p.write_text(page, encoding="utf-8"))
