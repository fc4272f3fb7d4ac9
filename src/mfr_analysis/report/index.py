"""The index page: every report of a run, with its headline verdicts.

The page is ``templates/index.html.j2``, rendered by Jinja2 with autoescaping: this module
only gathers plain values (labels, verdicts, colours, counts) and never builds markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from mfr_analysis.claims import primary_rows
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
from mfr_analysis.report.results import SliceResult, load_claims
from mfr_analysis.report.safe_text import CSP_META, DISPLAY_LIMIT, plain_text, unsafe_markup
from mfr_analysis.settings import DEFAULTS
from mfr_analysis.version import package_version

LABEL_LIMIT = 120  # characters of a slice name shown in the index
TITLE_LIMIT = 300
TEMPLATE = "index.html.j2"  # in mfr_analysis/templates/
BENCHMARK_NOTE = ("each unit's outcomes against those expected for its clients (risk-adjusted), "
                  "with funnel plots; listed by name, never ranked")


@cache
def _environment() -> jinja2.Environment:
    """Jinja2 environment of the package's templates, escaping every value it shows."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("mfr_analysis", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters["plain"] = lambda value, limit=DISPLAY_LIMIT: plain_text(value, limit)
    return environment


def _verdict(verdict: str) -> dict[str, str]:
    return {"label": verdict_label(verdict), "colour": verdict_colour(verdict),
            "text_colour": verdict_text_colour(verdict)}


def _design(design: str) -> dict[str, str]:
    return {"name": design, "label": design_label(design) if design else ""}


def verdict_tally(verdicts: Sequence[str]) -> str:
    """'3 Supported, 2 Real but small, 4 Inconclusive, …' in the legend's order."""
    counts = {v: list(verdicts).count(v) for v in dict.fromkeys(verdicts)}
    order = [v for v in legend_verdicts() if v in counts] + [
        v for v in counts if v not in legend_verdicts()]
    return ", ".join(f"{counts[v]} {verdict_label(v)}" for v in order)


def report_verdicts(claims_path: str) -> dict | None:
    """Every claim's verdict for all clients of one report, grouped by claim, with designs
    and the tally; None when the report saved no pooled rows."""
    claims = load_claims(claims_path) if claims_path else None
    if claims is None or claims.empty:
        return None
    claims = primary_rows(claims)  # the sensitivity rows are not claims of their own
    pooled = claims.loc[claims["audience_group"] == "all"]
    if pooled.empty:
        return None
    items = []
    for claim_id, rows in pooled.groupby("claim_id", sort=False):
        results = []
        for _, row in rows.iterrows():
            verdict, design = str(row["verdict"]), row.get("design")
            design = "" if verdict == "suppressed" or pd.isna(design) else str(design)
            results.append({"suffix": outcome_suffix(str(row["outcome"]), str(claim_id)),
                            "verdict": _verdict(verdict), "design": _design(design)})
        items.append({"id": str(claim_id), "label": claim_label(str(claim_id)),
                      "results": results})
    return {"tally": verdict_tally([str(v) for v in pooled["verdict"]]), "rows": items}


def quality_headline(cleaning: dict) -> str:
    """Where the input rows went, in one line ('' without a cleaning report)."""
    if not cleaning:
        return ""
    return (f"{cleaning['rows_in']:,} rows read: {cleaning['rows_clean']:,} clean, "
            f"{cleaning['rows_quarantined']:,} quarantined, {cleaning['rows_duplicate']:,} "
            "duplicates")


def legend_items() -> dict[str, list[dict]]:
    """The verdict and design words of the reports, for the index (same table, same words)."""
    return {"verdicts": [{"verdict": _verdict(v), "rule": verdict_rule(v)}
                         for v in legend_verdicts()],
            "designs": [{"design": _design(d), "rule": design_rule(d)} for d in designs()]}


def settings_sentence(settings: dict) -> str:
    """The run's settings in words: significance, correction, privacy rule, overrides."""
    from mfr_analysis.report.views import settings_words

    words = settings_words(float(settings.get("alpha", DEFAULTS.alpha)),
                           str(settings.get("correction", DEFAULTS.correction)),
                           int(settings.get("min_reported_clients", DEFAULTS.min_reported_clients)))
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
    reports = [{"html": result.html, "label": result.label, "slug": result.slug,
                "failed": bool(result.error), "claims_file": bool(result.claims),
                "claims": None if result.error else report_verdicts(result.claims),
                "note": BENCHMARK_NOTE if result.slug.startswith("benchmark-") else ""}
               for result in results]
    page = _environment().get_template(TEMPLATE).render(
        csp_meta=Markup(CSP_META), title=title, title_limit=TITLE_LIMIT,
        label_limit=LABEL_LIMIT, stamp=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=package_version(), reports=reports, withheld=list(withheld),
        quality=quality_headline(cleaning or {}), legend=legend_items(),
        settings=settings_sentence(settings))
    problems = unsafe_markup(page)
    if problems:  # cannot happen with autoescaping; a last guard, never a live page
        raise ReportError(f"index page failed the safety check: {problems[0]}")
    return write_atomic(out / "index.html", lambda p: p.write_text(page, encoding="utf-8"))
