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


def claim_plain(claim_id: str) -> str:
    """What the claim says, in plain words."""
    return _get("claim", claim_id, "plain")


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
    """Text colour readable on the verdict's background."""
    return "#ffffff" if verdict in {"supported", "contradicted"} else "#24292f"


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
