"""The index page: every report of a run, with its headline verdicts."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mfr_analysis import __version__
from mfr_analysis.io import write_atomic
from mfr_analysis.report.labels import (
    claim_label,
    outcome_suffix,
    verdict_colour,
    verdict_label,
    verdict_text_colour,
)

if TYPE_CHECKING:
    from mfr_analysis.report.run import SliceResult

HEADLINE_VERDICTS = ("supported", "below_threshold", "contradicted")


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
            f"{html.escape(name)}: {html.escape(verdict_label(verdict))}</span>"
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
        link = (f'<a href="{html.escape(result.html)}">{html.escape(result.label)}</a>'
                if result.html else html.escape(result.label))
        if result.error:
            status = f'<span class="failed">failed: {html.escape(result.error)}</span>'
        elif result.claims:
            status = headline(result.claims)
        else:
            status = quality_headline(cleaning or {})
        rows.append(f"<tr><td>{link}</td><td>{status}</td></tr>")
    for line in withheld:
        rows.append(f'<tr><td colspan="2"><small>{html.escape(line)} (privacy rule)</small>'
                    "</td></tr>")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  max-width: 960px; margin: 2rem auto; padding: 0 1rem; color: #24292f; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #d0d7de; padding: 6px 8px; text-align: left; }}
.chip {{ display: inline-block; padding: 1px 6px; margin: 1px; border: 1px solid #d0d7de;
  border-radius: 4px; font-size: 0.85rem; }}
.failed {{ color: #cf222e; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Reports generated {stamp} by mfr-analysis {html.escape(__version__)}. Open any report
below; each works offline. Groups with too few clients have no report of their own.</p>
<table><thead><tr><th>Report</th><th>Headline (all clients of the slice)</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p><small>Settings: {html.escape(', '.join(f'{k}={v}' for k, v in settings.items()
                                              if k != 'mapping'))}</small></p>
</body></html>
"""
    return write_atomic(out / "index.html", lambda p: p.write_text(page, encoding="utf-8"))
