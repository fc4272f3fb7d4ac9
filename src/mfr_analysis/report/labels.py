"""Human labels for claims, groups and verdicts, read from ``data/report_labels.csv``."""

from __future__ import annotations

from functools import cache

from mfr_analysis.tables import load_table


@cache
def _labels() -> dict[tuple[str, str], dict[str, str]]:
    table = load_table("report_labels").fillna("")
    return {(k, key): row for k, key, row in zip(
        table["kind"], table["key"], table.to_dict("records"), strict=True)}


def _get(kind: str, key: str, field: str) -> str:
    row = _labels().get((kind, str(key)))
    return row[field] if row and row[field] else str(key).replace("_", " ")


def claim_label(claim_id: str) -> str:
    """Short title of a claim, e.g. 'Pain relief'."""
    return _get("claim", claim_id, "label")


def group_label(group: str) -> str:
    """Title of an audience group, e.g. 'Desk workers'."""
    return _get("group", group, "label")


def group_plain(group: str) -> str:
    """Audience group in running text, e.g. 'chronic-pain clients'."""
    return _get("group", group, "plain")


def verdict_label(verdict: str) -> str:
    """Short verdict wording for the scorecard."""
    return _get("verdict", verdict, "label")


def verdict_plain(verdict: str) -> str:
    """Verdict in running text."""
    return _get("verdict", verdict, "plain")


def verdict_text_colour(verdict: str) -> str:
    """Text colour readable on the verdict's background (white on dark, dark on light)."""
    return readable_text_colour(verdict_colour(verdict))


def readable_text_colour(background: str) -> str:
    """'#ffffff' or '#24292f', whichever contrasts more with a '#rrggbb' background (WCAG)."""
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    hexes = background.lstrip("#")
    if len(hexes) != 6:
        return "#24292f"
    red, green, blue = (linear(int(hexes[i:i + 2], 16)) for i in (0, 2, 4))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    dark = 0.0242  # relative luminance of #24292f
    # contrast against white (1.0) vs against the dark text colour
    return "#ffffff" if (1.05 / (luminance + 0.05)) > ((luminance + 0.05) / (dark + 0.05)) \
        else "#24292f"


def verdict_colour(verdict: str) -> str:
    """Scorecard colour of a verdict (hex)."""
    row = _labels().get(("verdict", str(verdict)))
    return row["colour"] if row and row["colour"] else "#ffffff"


def outcome_label(outcome: str) -> str:
    """Words for a secondary outcome of a claim, e.g. 'pain at follow-up'."""
    return _get("outcome", outcome, "label")


def outcome_suffix(outcome: str, claim_id: str = "") -> str:
    """What distinguishes rows of one claim: the ROM measure, or a second outcome."""
    if ":" in outcome:
        return outcome.split(":", 1)[1].replace("_deg", "").replace("_cm", "").replace("_", " ")
    return outcome_label(outcome) if outcome not in {claim_id, ""} else ""


def _rows(kind: str) -> list[str]:
    """Keys of one kind, in the order the table lists them."""
    return [key for (k, key) in _labels() if k == kind]


def verdict_rule(verdict: str) -> str:
    """The rule that gives a verdict, in words (legend and methods read the same text)."""
    return _get("verdict_rule", verdict, "plain")


def legend_verdicts() -> list[str]:
    """Every verdict the legend explains, in the order of ``verdict_rule`` rows."""
    return _rows("verdict_rule")


def designs() -> list[str]:
    """Every design of an estimate (controlled, uncontrolled, observational)."""
    return _rows("design")


def design_label(design: str) -> str:
    """Short marker words of a design, e.g. 'vs control' (empty for no design)."""
    return _get("design", design, "label") if design else ""


def design_plain(design: str) -> str:
    """A design in running text, e.g. 'compared with control clients'."""
    return _get("design", design, "plain") if design else ""


def design_rule(design: str) -> str:
    """What a design compares and what it cannot show, in one or two sentences."""
    return _get("design_rule", design, "plain") if design else ""


def measure_label(outcome: str) -> str:
    """What a row measures in running text, e.g. 'pain', 'knee flexion'."""
    if outcome.startswith("rom:"):
        return outcome_suffix(outcome)
    return _get("measure", outcome, "label")


def comparison_words(claim_id: str) -> str:
    """The two kinds of session a contrast compares, e.g. 'in slow sessions than in fast ones'."""
    return _get("comparison", claim_id, "plain")


@cache
def _associations() -> dict[str, dict[str, str]]:
    table = load_table("associations").fillna("")
    return {row["claim_id"]: row for row in table.to_dict("records")}


def association_words(claim_id: str, side: str) -> str:
    """What went with what for an observational claim: side 'lower', 'higher' (the estimate
    below or above no difference), 'none' (no association shown) or 'caveat' (why it does
    not show cause); '' for a claim without such words (``data/associations.csv``)."""
    return _associations().get(claim_id, {}).get(side, "")


def cause_caveat(claim_id: str) -> str:
    """Why an association of this claim does not show cause, in one sentence."""
    return association_words(claim_id, "caveat")


def reading_cue(claim_id: str, outcome: str) -> str:
    """Which sign of the estimate means what, e.g. 'below 0: pain fell (better)'."""
    for key in (f"{claim_id}:{outcome}", claim_id):
        if ("cue", key) in _labels():
            return _get("cue", key, "plain")
    return ""


def effect_template(kind: str, design: str) -> str:
    """The sentence pattern of an estimate of one analysis kind and design, or ''."""
    key = f"{kind}:{design}"
    return _get("effect", key, "plain") if ("effect", key) in _labels() else ""


def correction_label(correction: str) -> str:
    """A multiplicity correction in words, e.g. 'Holm correction'."""
    return _get("correction", correction, "label")


def report_text(key: str) -> str:
    """A fixed sentence of the report (kind ``text``)."""
    return _get("text", key, "plain")


def report_label(key: str) -> str:
    """The short form of a fixed sentence of the report (kind ``text``, column ``label``)."""
    return _get("text", key, "label")
