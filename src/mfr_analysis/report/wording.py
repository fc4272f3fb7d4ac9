"""Numbers and estimates in words: signs, units, ratios, thresholds, counts and power.

Every function takes one row of the protected claims table (a ``pd.Series``) or a number and
returns plain text (not escaped: the caller escapes it for HTML or Markdown). Rounding is
display only. The sentence patterns live in ``data/report_labels.csv``.
"""

from __future__ import annotations

import math
from functools import cache

import pandas as pd

from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.report.labels import (
    association_words,
    comparison_words,
    effect_template,
    measure_label,
    report_label,
    report_text,
)
from mfr_analysis.settings import DEFAULTS

MINUS = "\u2212"  # a real minus sign: a hyphen reads as a dash next to a number
RATIO_MARK = "\u00d7"
POWER_PERCENT = 80  # the power the claims engine's detectable effect and clients needed use
NO_COUNT_VERDICTS = frozenset({"suppressed"})


def number(value: object) -> float:
    """A cell value as a float (NaN for missing, pd.NA or text)."""
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return result


def value(row: pd.Series, column: str) -> float:
    """The row's number in ``column``, NaN when the column is missing or empty."""
    return number(row[column]) if column in row.index else math.nan


def text(row: pd.Series, column: str) -> str:
    """The row's text in ``column``, '' when missing."""
    if column not in row.index:
        return ""
    cell = row[column]
    return "" if cell is None or (not isinstance(cell, str) and pd.isna(cell)) else str(cell)


def signed(x: float, digits: int = 2) -> str:
    """'+0.31' or '−1.20' (a real minus sign)."""
    body = f"{abs(x):.{digits}f}"
    if float(body) == 0:
        return body
    return ("+" if x > 0 else MINUS) + body


def unsigned(x: float, digits: int = 2) -> str:
    """'1.20' for 1.2 or -1.2."""
    return f"{abs(x):.{digits}f}"


def ratio(x: float) -> str:
    """An odds ratio as a ratio: '×1.65'."""
    return f"{RATIO_MARK}{x:.2f}"


def rounded(x: float) -> str:
    """A threshold with sensible rounding: two significant digits, no trailing zeros."""
    if not math.isfinite(x):
        return ""
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2g}" if abs(x) >= 0.01 else f"{x:.1g}"


def count(n: float) -> str:
    """A client count as an integer with thousands separators."""
    return f"{int(round(n)):,}"


def is_ratio(row: pd.Series) -> bool:
    """Whether the row's estimate is an odds ratio (shown as ×, read against 1)."""
    return "odds ratio" in text(row, "unit")


def unit(row: pd.Series) -> str:
    """The unit printed after a number: 'points', 'degrees'; for ratios 'per pressure point'."""
    words = text(row, "unit")
    if words == "measure unit":  # a placeholder: the measure's own unit is not known
        return ""
    if "odds ratio" in words:
        return words.split("odds ratio", 1)[1].strip()
    return words


def estimate_text(row: pd.Series, with_unit: bool = True) -> str:
    """'−1.20 [−1.43, −0.97] points' or '×1.34 [×1.09, ×1.64] per pressure point' (without
    the unit when the table says it once per row)."""
    estimate, low, high = value(row, "estimate"), value(row, "ci_low"), value(row, "ci_high")
    if not math.isfinite(estimate):
        return ""
    if is_ratio(row):
        interval = f" [{ratio(low)}, {ratio(high)}]" if math.isfinite(low) else ""
        body = ratio(estimate) + interval
    else:
        interval = f" [{signed(low)}, {signed(high)}]" if math.isfinite(low) else ""
        body = signed(estimate) + interval
    return f"{body} {unit(row)}".strip() if with_unit else body


def unit_phrase(row: pd.Series) -> str:
    """What the row's numbers are in: 'in points', 'odds ratio per pressure point'."""
    if is_ratio(row):
        return text(row, "unit")
    words = unit(row)
    return f"in {words}" if words else ""


@cache
def _analysis_kinds() -> dict[str, str]:
    from mfr_analysis.claims import claim_registry

    registry = claim_registry()
    return dict(zip(registry["claim_id"], registry["analysis"], strict=True))


def analysis_kind(claim_id: str, outcome: str) -> str:
    """change | trend | followup | contrast | dose | adverse, for the sentence patterns."""
    kind = _analysis_kinds().get(claim_id, "change")
    if kind == "trajectory":
        return "followup" if outcome == "pain_followup" else "trend"
    if kind == "change_per_measure":
        return "change"
    return kind


def effect_words(row: pd.Series) -> str:
    """The estimate as a sentence fragment that says its direction and what it compares,
    e.g. 'pain fell 1.20 points more than in control clients'; '' without an estimate."""
    estimate = value(row, "estimate")
    design = text(row, "design")
    if not math.isfinite(estimate) or not design:
        return ""
    claim_id, outcome = text(row, "claim_id"), text(row, "outcome")
    pattern = effect_template(analysis_kind(claim_id, outcome), design)
    if not pattern:
        return ""
    size = f"{unsigned(estimate)} {unit(row)}".strip()
    return pattern.format(
        what=measure_label(outcome), verb="fell" if estimate < 0 else "rose", size=size,
        number=unsigned(estimate), ratio=ratio(estimate),
        comparison=comparison_words(claim_id))


def threshold_text(row: pd.Series) -> str:
    """'2 points' (rounded sensibly), or '' when the claim states no threshold."""
    mcid = value(row, "mcid")
    if not math.isfinite(mcid):
        return ""
    return f"{rounded(mcid)} {unit(row)}".strip()


def threshold_source(row: pd.Series) -> str:
    """Where the row's threshold comes from (the registry's reference), or ''."""
    return text(row, "threshold_source")


def clients_text(row: pd.Series, minimum: int = MIN_REPORTED_CLIENTS) -> str:
    """'299 clients (66 control)'; '(arm sizes withheld)' when the privacy rule hid them.

    The protected table already holds no small count; an arm of 1..minimum-1 clients (or a
    treated arm that small, by subtraction) is still never printed, whatever the table says."""
    n = value(row, "n_clients")
    if text(row, "verdict") in NO_COUNT_VERDICTS | {"not_measured"}:
        return ""
    if not math.isfinite(n):  # hidden by the privacy plan as a complement: say so
        from mfr_analysis.privacy import withheld_label

        return f"clients: {withheld_label()}" if math.isfinite(value(row, "estimate")) else ""
    words = f"{count(n)} client{'s' if round(n) != 1 else ''}"
    if text(row, "design") == "controlled":
        control = value(row, "n_control_clients")
        small = [x for x in (control, n - control) if math.isfinite(x) and 0 < x < minimum]
        words += f" ({count(control)} control)" if math.isfinite(control) and not small else \
            " (arm sizes withheld)"
    return words


def association_sentence(row: pd.Series) -> str:
    """For an observational row: what went with what, from ``data/associations.csv``
    ('' without an estimate)."""
    estimate = value(row, "estimate")
    if not math.isfinite(estimate):
        return ""
    if text(row, "verdict") == "no_association_shown":
        return association_words(text(row, "claim_id"), "none")
    null = 1.0 if is_ratio(row) else 0.0
    return association_words(text(row, "claim_id"), "lower" if estimate < null else "higher")


def size_text(row: pd.Series) -> str:
    """The estimate's size without its interval: 'by 0.84 points', 'odds ratio ×1.34'."""
    estimate = value(row, "estimate")
    if not math.isfinite(estimate):
        return ""
    if is_ratio(row):
        return f"odds ratio {ratio(estimate)} {unit(row)}".strip()
    return f"by {unsigned(estimate)} {unit(row)}".strip()


def clients_attribute(row: pd.Series) -> str:
    """The row's client count for a ``data-n-clients`` attribute ('' when withheld)."""
    n = value(row, "n_clients")
    if text(row, "verdict") in NO_COUNT_VERDICTS or not math.isfinite(n):
        return ""
    return str(int(round(n)))


def power_text(row: pd.Series, short: bool = False) -> str:
    """For an inconclusive (or no-association) row: the smallest effect its clients could
    detect and the clients a study would need to detect the threshold, in plain words ('' when
    not computed)."""
    mde, needed = value(row, "mde"), value(row, "clients_needed")
    n = value(row, "n_clients")
    parts = []
    if math.isfinite(mde) and not is_ratio(row):  # an odds ratio's scale is not a unit
        size = f"{rounded(mde)} {unit(row)}".strip()
        parts.append(f"detectable: ≥ {rounded(mde)}" if short else
                     f"with these clients only an effect of {size} or more could reliably be "
                     f"detected ({POWER_PERCENT} % power)")
    # a study size, not a count of clients seen; still never one a reader could take for a
    # small cell (it is only given above the clients this cell already has)
    if math.isfinite(needed) and math.isfinite(n) and needed > max(n, MIN_REPORTED_CLIENTS - 1):
        threshold = threshold_text(row)
        parts.append(f"about {count(needed)} clients needed" if short else
                     f"about {count(needed)} clients would be needed to detect the threshold of "
                     f"{threshold}")
    return "; ".join(parts)


def p_text(p: float) -> str:
    """'p = 0.68', 'p = 0.004', 'p < 0.001'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2f}" if p >= 0.01 else f"p = {p:.3f}"


def heterogeneity_text(p: float, alpha: float = DEFAULTS.alpha, short: bool = False) -> str:
    """'Do groups differ?' answered in words with its p-value, or '' when not tested."""
    if not math.isfinite(p):
        return ""
    key = "groups_differ" if p < alpha else "groups_alike"
    words = report_label(key) if short else report_text(key)
    return f"{words} ({p_text(p)})"
