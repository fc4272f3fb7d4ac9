"""What the benchmarking page shows: sites or clinicians compared fairly, never ranked.

The statistics are :mod:`mfr_analysis.benchmarking`'s; this module picks the outcomes,
protects the unit counts across them, and renders escaped HTML: plain words first, numbers
second. Units are listed by name (alphabetically, the pooled "other" row last), never by
result; there is no rank, no league table and no grade.

Privacy, on top of the package's pooling of small units into "other" (complementary, so the
pool is never 1..minimum-1 clients): a unit's client count differs between outcomes (fewer
clients have a follow-up than a pain pair), and two published counts of one unit would give
the difference by subtraction. Every published count is a set of clients, and the exact
linear audit (:func:`mfr_analysis.privacy_audit.audit_sets`) withholds the counts (and the
funnel points, whose position is the count) that would let 1..minimum-1 clients be worked out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from IPython.display import HTML

from mfr_analysis.benchmarking import Benchmark, benchmark
from mfr_analysis.benchmarking.risk import LEVELS, fit_risk, outcome_spec
from mfr_analysis.benchmarking.units import OTHER
from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.errors import AnalysisError
from mfr_analysis.privacy import POOLED
from mfr_analysis.privacy_audit import audit_sets
from mfr_analysis.report.outcome_views import (
    _figure,
    _para,
    _section,
    count_text,
    interval_text,
    number_text,
    table_html,
)
from mfr_analysis.report.safe_text import html_text
from mfr_analysis.settings import AnalysisSettings
from mfr_analysis.tables import load_table

__all__ = ["BenchmarkPage", "benchmark_outcomes", "benchmark_page",
           "funnel_section", "intro", "methods_section", "units_section"]

MAIN_ROM_MEASURES = 2  # the ROM measures with the most clients are benchmarked
MIN_FOLLOWUP_SHARE = 0.2  # lasting relief is benchmarked when this share of clients has one
UNIT_WORDS = {"site": ("site", "sites"), "clinician": ("clinician", "clinicians")}
WITHHELD = "withheld"
FLAG_WORDS = {"above": "above (better than expected)", "below": "below (worse than expected)",
              "within": "within", "": "not assessed (pooled)"}


@dataclass(frozen=True)
class BenchmarkPage:
    """Every outcome's benchmark of one unit level, and what the page may not show."""

    by: str
    results: dict[str, Benchmark]
    skipped: dict[str, str] = field(default_factory=dict)  # outcome -> why not benchmarked
    withheld: dict[str, frozenset[str]] = field(default_factory=dict)  # outcome -> units


def benchmark_outcomes(sessions: pd.DataFrame) -> list[str]:
    """The outcomes to benchmark: pain change, lasting relief (when enough clients have a
    follow-up) and the ROM measures with the most clients (:data:`MAIN_ROM_MEASURES`)."""
    outcomes = ["pain"]
    clients = sessions["client_id"].nunique()
    if "pain_followup" in sessions.columns and clients:
        with_followup = sessions.loc[sessions["pain_followup"].notna(), "client_id"].nunique()
        if with_followup >= MIN_FOLLOWUP_SHARE * clients:
            outcomes.append("lasting_relief")
    if {"rom_measure", "rom_pre", "rom_post"} <= set(sessions.columns):
        paired = sessions.loc[sessions["rom_pre"].notna() & sessions["rom_post"].notna()]
        counts = paired.groupby(paired["rom_measure"].astype("string"), observed=True)[
            "client_id"].nunique().sort_values(ascending=False, kind="stable")
        outcomes += [f"rom:{m}" for m in counts.index[:MAIN_ROM_MEASURES]]
    return outcomes


def _unit_sets(result: Benchmark, by: str) -> dict[str, frozenset]:
    """The clients behind each published count of one outcome's table (named units and the
    pooled row), keyed by unit."""
    clients = result.fit.clients
    units = result.units
    named = set(units.loc[~units["pooled"], "unit"].astype(str))
    key = clients[by].astype("string").fillna(OTHER).to_numpy(dtype=object)
    key = np.where(np.isin(key, list(named)), key, OTHER)
    ids = clients["client_id"].to_numpy(dtype=object)
    return {unit: frozenset(ids[key == unit]) for unit in np.unique(key)
            if unit in named or (units["pooled"].any() and unit == OTHER)}


def protect_counts(results: Mapping[str, Benchmark], by: str, minimum: int,
                   unit_totals: Mapping[str, frozenset] | None = None, *,
                   everyone: frozenset | None = None,
                   shown: Collection[str] | None = None) -> dict[str, frozenset[str]]:
    """Per outcome, the units whose client count the page withholds so that no 1..minimum-1
    clients can be worked out from the counts it shows and the counts published elsewhere:
    ``everyone`` (the page's own title count), each outcome's total where the all-clients
    page shows it (``shown``: digests of the client sets that page shows, from the runner;
    None: assumed shown), and ``unit_totals`` (each unit's clients, when the folder has a
    page per unit); the first outcome's counts are kept longest (hidden last). The units'
    counts of an outcome add up to its total: all of them shown beside the title count gave
    the clients without a pain pair (593 - 589 = 4) that the all-clients page withholds."""
    from mfr_analysis.privacy_audit import set_digest

    cells: list[tuple[str, str]] = []
    sets: list[frozenset] = []
    for outcome in reversed(list(results)):  # most hideable first: the later outcomes
        for unit, members in sorted(_unit_sets(results[outcome], by).items()):
            cells.append((outcome, unit))
            sets.append(members)
    totals = [frozenset(result.fit.clients["client_id"].astype("str"))
              for result in results.values()]
    shown = None if shown is None else set(shown)
    kept = [total for total in totals  # each outcome's total, where others show it
            if shown is None or set_digest(total) in shown]
    if everyone and len(kept) < len(totals):  # a total that only this page's units give
        kept.append(everyone)  # (with every total shown elsewhere, title minus total is too)
    kept += list((unit_totals or {}).values())  # each unit's clients: its own page shows it
    by_unit: dict[str, list[frozenset]] = {}  # one unit's counts of two outcomes
    for (outcome, unit), members in zip(cells, sets, strict=True):
        if outcome and unit:
            by_unit.setdefault(unit, []).append(members)
    targets = [a - b for counts in by_unit.values() for a in counts for b in counts
               if a is not b]
    hidden = audit_sets([*sets, *kept], minimum, targets, keep=len(kept))
    out: dict[str, set[str]] = {outcome: set() for outcome in results}
    for index in hidden:
        if index < len(cells):  # a count published elsewhere is never this page's to hide
            outcome, unit = cells[index]
            out[outcome].add(unit)
    return {outcome: frozenset(units) for outcome, units in out.items()}


def benchmark_page(sessions: pd.DataFrame, by: str, settings: AnalysisSettings | None = None,
                   outcomes: Sequence[str] | None = None, *, unit_pages: bool = False,
                   shown_sets: Mapping[str, Collection[str]] | None = None) -> BenchmarkPage:
    """Benchmark every outcome of the page by ``by`` (site or clinician), protected;
    ``unit_pages``: the folder also has a claims page per unit (``report --by site``), whose
    client counts the protection then takes into account. ``shown_sets`` (from the runner):
    per page (``""``: the all-clients page, else a unit with a page), the digests of the
    client sets whose counts that page shows. An outcome's total counts as published only
    if the all-clients page shows it; a unit's count is shown here only if its own page shows
    the same clients' count, so this page adds no count to the unit's own (a count its page
    withholds, the clients with a follow-up pain rating, gave a withheld 3 back with the
    page's other counts)."""
    settings = settings or AnalysisSettings()
    if by not in LEVELS:  # before any fit: benchmark() would say it once per outcome
        raise AnalysisError(f"benchmark by {by!r}: expected site or clinician")
    results: dict[str, Benchmark] = {}
    skipped: dict[str, str] = {}
    for outcome in outcomes or benchmark_outcomes(sessions):
        try:
            fit = fit_risk(sessions, outcome, settings)
            results[outcome] = benchmark(sessions, by, outcome, settings, fit=fit)
        except AnalysisError as error:
            skipped[outcome] = str(error)
    totals = None
    if unit_pages:
        units = sessions[by].astype("string")
        totals = {str(unit): frozenset(sessions.loc[units == unit, "client_id"])
                  for unit in units.dropna().unique()}
    withheld = protect_counts(
        results, by, settings.min_reported_clients, totals,
        everyone=frozenset(sessions["client_id"].astype("str")),
        shown=None if shown_sets is None else shown_sets.get(POOLED, ()))
    if unit_pages and shown_sets is not None:
        withheld = {outcome: units | _not_on_own_page(results[outcome], by, shown_sets)
                    for outcome, units in withheld.items()}
    return BenchmarkPage(by, results, skipped, withheld)


def _not_on_own_page(result: Benchmark, by: str, shown_sets: Mapping[str, Collection[str]]
                     ) -> frozenset[str]:
    """The named units with a page of their own that does not show this count's clients."""
    from mfr_analysis.privacy_audit import set_digest

    pages = {unit: set(digests) for unit, digests in shown_sets.items() if unit != POOLED}
    return frozenset(unit for unit, members in _unit_sets(result, by).items()
                     if unit in pages and set_digest(members) not in pages[unit])


# ------------------------------------------------------------------------ words ---

def outcome_title(outcome: str) -> str:
    """'Pain change in a session', 'Lasting relief', 'Range of motion: knee flexion deg'."""
    spec = outcome_spec(outcome)
    if spec.measure:
        return "Range of motion: " + spec.measure.replace("_", " ")
    return {"pain": "Pain change in a session",
            "lasting_relief": "Lasting relief (pain at follow-up)"}.get(outcome, outcome)


def _unit_words(by: str, plural: bool = False) -> str:
    return UNIT_WORDS[by][1 if plural else 0]


def intro(page: BenchmarkPage, minimum: int) -> HTML:
    """What the page answers and how to read it, in plain words."""
    one, many = _unit_words(page.by), _unit_words(page.by, True)
    parts = [
        f"Which {many} get the results the claims promise? Each client's change is compared "
        "with the change expected for a client like them (baseline value, audience group, "
        "age band, sex, how long the symptoms have lasted, technique and delivery), so a "
        f"{one} whose clients are older or more chronic is not blamed for it.",
        f"For each {one}: observed minus expected, with its 95 % interval, and the share of "
        "clients reaching the clinically important difference, raw and risk-adjusted. The "
        "funnel plots show every unit against its number of clients; the limits widen for "
        "small units because their averages are noisier. A unit outside the 95 % limits is "
        "labelled; inside them, differences are compatible with chance.",
        f"{many.capitalize()} are listed by name, never ranked: ranks mostly reflect noise. "
        f"A {one} with fewer than {minimum} clients is not named; its clients are pooled "
        "as 'other' (with more units when needed so that no small number can be worked out)."
        + (" Clinicians appear only by pseudonym." if page.by == "clinician" else ""),
    ]
    return HTML("".join(_para(p) for p in parts))


def _flag_text(value: object) -> str:
    text = "" if value is None or pd.isna(value) else str(value)
    return FLAG_WORDS.get(text, text)


def _percent(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if not np.isfinite(number) else f"{100 * number:.0f} %"


def _percent_interval(estimate: object, low: object, high: object, signed: bool = False
                      ) -> str:
    def fmt(v: object) -> str:
        number = float(v)  # type: ignore[arg-type]
        return f"{100 * number:+.0f}" if signed else f"{100 * number:.0f}"

    try:
        if not np.isfinite(float(estimate)):  # type: ignore[arg-type]
            return ""
        return f"{fmt(estimate)} % [{fmt(low)} to {fmt(high)}]"
    except (TypeError, ValueError):
        return ""


UNIT_HEADERS = {
    "unit": "Unit", "clients": "Clients", "observed": "Observed mean change",
    "unadjusted": "Unadjusted: minus the network's mean [95 % CI]",
    "expected": "Expected", "o_minus_e": "Observed minus expected [95 % CI]",
    "shrunken": "Shrunken estimate", "responders": "Reached the MCID [95 % CI]",
    "responders_expected": "Expected to reach it",
    "responders_o_minus_e": "Observed minus expected share [95 % CI]",
    "flag_unadjusted": "Unadjusted funnel", "flag_adjusted": "Risk-adjusted funnel",
}


def share_withheld(units: pd.DataFrame, withheld: frozenset[str], minimum: int) -> pd.Series:
    """Per unit, whether its share reaching the MCID must not be shown.

    A share with its Wilson interval gives its client count back (the interval's width is
    set by the count alone), so it goes wherever that count is withheld; and a share times
    a shown count is the responders, so it goes where the responders or the non-responders
    number 1 to ``minimum - 1`` (as on the claims pages)."""
    clients = pd.to_numeric(units["n_clients"], errors="coerce").astype("float64")
    responders = (pd.to_numeric(units["responders_observed"], errors="coerce")
                  .astype("float64") * clients).round()

    def small(count: pd.Series) -> pd.Series:
        return (count >= 1) & (count < minimum)

    return (units["unit"].astype("str").isin(list(withheld)) | small(responders)
            | small(clients - responders)).astype("bool")


def unit_rows(result: Benchmark, withheld: frozenset[str], minimum: int) -> pd.DataFrame:
    """The unit table as the page shows it: formatted cells, units by name, 'other' last."""
    units = result.units.assign(
        is_pooled=result.units["pooled"].astype(bool),
        share_hidden=share_withheld(result.units, withheld, minimum).to_numpy())
    units = units.sort_values(["is_pooled", "unit"], kind="stable")
    rows = []
    for row in units.itertuples():
        unit = str(row.unit)
        shown = unit not in withheld
        rows.append({
            "unit": ("other (pooled for privacy)" if row.is_pooled else unit),
            "unit_value": unit, "pooled": bool(row.is_pooled),
            "n_clients": int(row.n_clients) if shown else None,
            "clients": count_text(row.n_clients, minimum) if shown else WITHHELD,
            "observed": number_text(row.observed, 2),
            "unadjusted": interval_text(row.unadjusted_o_minus_e, row.unadjusted_ci_low,
                                        row.unadjusted_ci_high),
            "expected": number_text(row.expected, 2),
            "o_minus_e": interval_text(row.o_minus_e, row.ci_low, row.ci_high),
            "shrunken": "" if row.is_pooled else number_text(row.shrunken, 2),
            "responders": WITHHELD if row.share_hidden else _percent_interval(
                row.responders_observed, row.responders_ci_low, row.responders_ci_high),
            "responders_expected": _percent(row.responders_expected),
            "responders_o_minus_e": WITHHELD if row.share_hidden else _percent_interval(
                row.responders_o_minus_e, row.responders_o_minus_e_ci_low,
                row.responders_o_minus_e_ci_high, signed=True),
            "flag_unadjusted": "" if row.is_pooled else str(row.flag_unadjusted),
            "flag_adjusted": "" if row.is_pooled else str(row.flag_adjusted),
        })
    return pd.DataFrame(rows)


def units_table_html(rows: pd.DataFrame, caption: str) -> str:
    """The unit table; each row carries ``data-unit``, ``data-n-clients`` and
    ``data-flag-unadjusted`` / ``data-flag-adjusted`` (above, below, within; the pooled row
    has ``data-pooled`` and no flags)."""
    columns = list(UNIT_HEADERS)
    head = "".join(f'<th scope="col">{html_text(UNIT_HEADERS[c])}</th>' for c in columns)
    body = []
    for row in rows.itertuples():
        attributes = {"data-unit": row.unit_value,
                      "data-n-clients": "" if pd.isna(row.n_clients)
                      else str(int(row.n_clients))}  # NaN, not None, beside shown counts
        if row.pooled:
            attributes["data-pooled"] = "true"
        else:
            attributes["data-flag-unadjusted"] = row.flag_unadjusted
            attributes["data-flag-adjusted"] = row.flag_adjusted
        attrs = " ".join(f'{k}="{html_text(v, None)}"' for k, v in attributes.items())
        cells = []
        for i, column in enumerate(columns):
            value = getattr(row, column)
            if column.startswith("flag_"):
                value = _flag_text(value) if not row.pooled else FLAG_WORDS[""]
            tag = "th" if i == 0 else "td"
            scope = ' scope="row"' if i == 0 else ""
            cells.append(f"<{tag}{scope}>{html_text(value, None)}</{tag}>")
        body.append(f'<tr class="mfr-unit" {attrs}>{"".join(cells)}</tr>')
    cap = (f'<tr><th colspan="{len(columns)}" scope="colgroup" class="mfr-table-caption">'
           f"{html_text(caption, None)}</th></tr>")
    return ('<div class="mfr-scroll" style="overflow-x:auto"><table class="mfr-table '
            f'mfr-benchmark"><thead>{cap}<tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _flagged_sentence(result: Benchmark, by: str) -> str:
    named = result.units.loc[~result.units["pooled"].astype(bool)]
    parts = []
    for column, words in (("flag_unadjusted", "without adjustment"),
                          ("flag_adjusted", "after risk adjustment")):
        above = sorted(named.loc[named[column] == "above", "unit"].astype(str))
        below = sorted(named.loc[named[column] == "below", "unit"].astype(str))
        if not above and not below:
            parts.append(f"{words.capitalize()}, every named {_unit_words(by)} lies within "
                         "the 95 % limits.")
            continue
        found = []
        if above:
            found.append("better than expected: " + ", ".join(above))
        if below:
            found.append("worse than expected: " + ", ".join(below))
        parts.append(f"{words.capitalize()}, outside the 95 % limits: " + "; ".join(found)
                     + ".")
    return " ".join(parts)


def units_section(page: BenchmarkPage, outcome: str, minimum: int) -> HTML:
    """One outcome: what was found in words, then the unit table."""
    result = page.results[outcome]
    anchor = "benchmark-" + outcome.replace(":", "-").replace("_", "-")
    meaning = str(load_table("benchmark_outcomes").set_index("outcome").at[
        outcome.partition(":")[0], "meaning"])
    parts = [_para(f"Change: each client's average {meaning}. The clinically important "
                   f"difference (MCID) is {result.fit.mcid:g}. Unadjusted compares a unit with "
                   "the network's mean; risk-adjusted with what its own clients were expected "
                   "to show."),
             _para(_flagged_sentence(result, page.by)),
             _para(result.sentence)]
    if page.withheld.get(outcome):
        parts.append(_para(f"{len(page.withheld[outcome])} of this table's client counts are "
                           "withheld: with the other tables they would reveal a small number "
                           "of clients by subtraction."))
    rows = unit_rows(result, page.withheld.get(outcome, frozenset()), minimum)
    hidden_shares = int((rows["responders"] == WITHHELD).sum())
    if hidden_shares:
        parts.append(_para(f"{hidden_shares} share(s) reaching the MCID are withheld: with "
                           "its interval a share gives its unit's count back, and with the "
                           f"count the number of responders, never shown below {minimum}."))
    parts.append(units_table_html(rows, f"{outcome_title(outcome)} per "
                                  f"{_unit_words(page.by)} (listed by name, not ranked)"))
    return _section(anchor, outcome_title(outcome), parts)


def drawable_units(page: BenchmarkPage, outcome: str) -> pd.DataFrame:
    """The units a funnel plot may draw: named, with their count shown."""
    units = page.results[outcome].units
    withheld = page.withheld.get(outcome, frozenset())
    return units.loc[~units["pooled"].astype(bool) & ~units["unit"].isin(list(withheld))]


def funnel_section(page: BenchmarkPage, outcome: str,
                   minimum: int = MIN_REPORTED_CLIENTS) -> HTML:
    """The funnel plots of one outcome: observed minus expected, and the responder share
    (of the units whose share the table shows: :func:`share_withheld`)."""
    from mfr_analysis.report import figures

    result = page.results[outcome]
    units = drawable_units(page, outcome)
    shares = units.loc[~share_withheld(units, page.withheld.get(outcome, frozenset()),
                                       minimum).to_numpy()]
    title = outcome_title(outcome)
    change = figures.funnel_plot(units, result.limits, "o_minus_e",
                                 y_label="change",
                                 better=result.fit.direction)
    share = figures.funnel_plot(shares, result.limits, "responders_o_minus_e",
                                y_label="share reaching MCID",
                                better=1)
    words = _unit_words(page.by, True)
    return HTML(
        _figure(change, f"Funnel plots of observed minus expected {title.lower()} against "
                f"clients, for {words}, unadjusted and risk-adjusted",
                f"{title}: each point a {_unit_words(page.by)}; dashed 95 % and dotted 99.8 % "
                "limits (overdispersion applied where found).")
        + _figure(share, f"Funnel plots of the share of clients reaching the MCID, observed "
                  f"minus expected, against clients, for {words}",
                  f"{title}: share reaching the MCID, observed minus expected."))


def _dispersion_words(result: Benchmark) -> str:
    found = result.dispersion.get(("o_minus_e", "adjusted"))
    if found is None:
        return ""
    if found.applied:
        return (f"Overdispersion was found (p = {found.p_value:.3f}) and applied as "
                f"{found.method} random effects (tau² = {found.tau2:.3g}), widening the "
                "limits (Spiegelhalter 2005).")
    return (f"No overdispersion beyond chance was found (p = {found.p_value:.3f}): the limits "
            "are the plain binomial/normal ones (Spiegelhalter 2005).")


def methods_section(page: BenchmarkPage) -> HTML:
    """The risk models: coefficients, how much variance sites and clinicians explain, the
    overdispersion applied, and what was not adjusted for."""
    parts = []
    for outcome, result in page.results.items():
        fit = result.fit
        icc = ", ".join(f"{level}s {fit.icc(level):.1%}" for level in fit.levels)
        lines = [f"{outcome_title(outcome)}: {fit.method}, one row per client; random effects "
                 f"for {' and '.join(fit.levels) or 'no unit'}. Share of the variance between "
                 f"units (ICC): {icc or 'not estimated'}.", _dispersion_words(result)]
        if fit.dropped:
            lines.append("Not adjusted for: " + "; ".join(
                f"{name} ({why})" for name, why in fit.dropped.items()) + ".")
        parts.append(_para(" ".join(line for line in lines if line)))
        fixed = result.model.loc[result.model["section"] == "fixed"]
        shown = pd.DataFrame({
            "term": fixed["term"].astype(str).str.replace("_", " "),
            "estimate": [interval_text(e, lo, hi) for e, lo, hi in
                         zip(fixed["estimate"], fixed["ci_low"], fixed["ci_high"],
                             strict=True)]})
        parts.append(table_html(shown, {"term": "Term", "estimate": "Coefficient [95 % CI]"},
                                caption=f"Risk model: {outcome_title(outcome)}"))
    for outcome, why in page.skipped.items():
        parts.append(_para(f"{outcome_title(outcome)}: not benchmarked ({why})."))
    return _section("benchmark-methods", "Methods: the risk-adjustment models", parts)
