"""The disclosure plan of one report folder: every slice's claims, protected all at once.

Before any notebook runs, the runner computes the claims table of the all-clients report and
of every slice that might get a report, counts the clients and sessions each would publish,
and plans primary and complementary suppression across all of them
(:func:`mfr_analysis.privacy.plan_disclosure`). Each notebook then shows the protected
claims table it is given and leaves out the audience groups the plan withholds, so no
number in the folder, alone or combined with others, reveals 1-10 clients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mfr_analysis.privacy import (
    POOLED,
    DisclosurePlan,
    claim_counts,
    plan_disclosure,
    protect_claims,
    session_counts,
)


@dataclass(frozen=True)
class ProtectedSlice:
    """One report the plan allows: its slice value, label, protected claims, hidden groups."""

    value: str  # POOLED for all clients
    label: str
    claims: pd.DataFrame
    hidden_groups: tuple[str, ...]
    #: the plan's cells of this report only (for describe.protect in its notebook; pass it
    #: as ``plan.to_dict()`` and rebuild with ``DisclosurePlan.from_dict``)
    plan: DisclosurePlan | None = None


@dataclass(frozen=True)
class WithheldSlice:
    """A slice with no report of its own; small ones are never named."""

    value: str
    label: str
    reason: str  # "small" or "complementary"


@dataclass(frozen=True)
class FolderPlan:
    """What one report folder may publish."""

    plan: DisclosurePlan
    slices: tuple[ProtectedSlice, ...]
    withheld: tuple[WithheldSlice, ...]
    #: per slice, the digests (:func:`mfr_analysis.privacy_audit.set_digest`) of the client
    #: sets whose counts its report shows: a benchmarking page shows a unit's count only if
    #: the unit's own page shows the same clients' count
    shown_sets: Mapping[str, frozenset[str]] = field(default_factory=dict)


ClaimsFunction = Callable[[pd.DataFrame], pd.DataFrame]


def slice_values(sessions: pd.DataFrame, by: str | None) -> list[str]:
    """The values of ``by`` that have sessions, in the data's category order."""
    if not by:
        return []
    column = sessions[by]
    present = set(column.dropna().astype("str"))
    categorical = isinstance(column.dtype, pd.CategoricalDtype)
    order = [str(c) for c in column.cat.categories] if categorical else sorted(present)
    return [v for v in order if v in present]


def described_counts(sessions: pd.DataFrame, cleaning_report: dict | None,
                     claims: pd.DataFrame, slice_value: str) -> pd.DataFrame:
    """The cells of every describe table of one report (:data:`DESCRIBED_CELLS`). The
    cleaning report's row counts belong to the all-clients report only."""
    from mfr_analysis.describe import DESCRIBED_CELLS

    report = (cleaning_report or {}) if slice_value == POOLED else {}
    frames = [cells(sessions, report, claims, slice_value) for cells in DESCRIBED_CELLS]
    return pd.concat(frames, ignore_index=True)


def plan_folder(sessions: pd.DataFrame, by: str | None, evaluate: ClaimsFunction, *,
                minimum: int, label: Callable[[str], str] = str,
                progress: Callable[[str], None] | None = None,
                cleaning_report: dict | None = None) -> FolderPlan:
    """Claims of the pooled report and of each slice, protected across the whole folder.

    ``evaluate`` turns a session table into a claims table (the same settings for every
    slice); slices with fewer than ``minimum`` clients are never evaluated. The counts of
    every describe table (flow, baseline, individual results, ...) of each report are
    planned with the claims, before any notebook runs."""
    from mfr_analysis.report.views import slice_sessions

    counts = [session_counts(sessions, POOLED)]
    tables: dict[str, pd.DataFrame] = {}
    parts: dict[str, pd.DataFrame] = {}
    small: list[str] = []
    values = slice_values(sessions, by)
    for value in [POOLED, *values]:
        part = slice_sessions(sessions, by, value) if value != POOLED else sessions
        if value != POOLED:
            counts.append(session_counts(part, value))
        if part["client_id"].nunique() < minimum:
            small.append(value)
            continue
        tables[value], parts[value] = evaluate(part), part
        if progress is not None:
            progress(label(value) if value != POOLED else "all clients")
        counts.append(claim_counts(tables[value], value))
        counts.append(described_counts(part, cleaning_report, tables[value], value))
    counts = pd.concat(counts, ignore_index=True)
    from mfr_analysis.privacy_audit import folder_members, set_digest

    reports = [(v, parts[v], tables[v]) for v in tables]
    members = folder_members(reports, counts)
    plan = audited_plan(counts, by=by, minimum=minimum,
                        withhold=[v for v in small if v != POOLED], reports=reports,
                        members=members)
    shown_sets: dict[str, set[str]] = {}
    for (s, g, m), clients in members.items():
        if not plan.counts_hidden(s, g, m):
            shown_sets.setdefault(s, set()).add(set_digest(clients))
    shown = tuple(
        ProtectedSlice(value, label(value) if value != POOLED else "All clients",
                       protect_claims(table, plan, value), tuple(plan.hidden_groups(value)),
                       plan.for_slice(value))
        for value, table in tables.items() if value == POOLED or not plan.is_withheld(value))
    withheld = tuple(WithheldSlice(value, label(value), reason)
                     for value, reason in plan.withheld.items())
    return FolderPlan(plan, shown, withheld,
                      {s: frozenset(d) for s, d in shown_sets.items()})


#: Largest (published counts x clients) one exact audit runs on: its SVDs grow with the cube
#: of the smaller side. The shipped sample by audience group is about 0.5M and audits in a
#: few seconds as a whole; a 20-site folder of 4,000 clients is about 40M, so it is audited
#: site by site (:func:`mfr_analysis.privacy_audit.audit_blocks`), each block well under this.
AUDIT_BUDGET = 2_000_000


def audited_plan(counts: pd.DataFrame, *, by: str | None, minimum: int,
                 withhold: Sequence[str],
                 reports: Sequence[tuple[str, pd.DataFrame, pd.DataFrame | None]],
                 members: Mapping | None = None) -> DisclosurePlan:
    """The line-based plan, then the exact linear audit over every count whose clients are
    known; what the audit hides is planned again (its twins and lines follow) until the
    audit finds nothing.

    Folders up to :data:`AUDIT_BUDGET` are audited as a whole
    (:func:`mfr_analysis.privacy_audit.audit_disclosure`); larger ones block by block, one
    block per slice (and one for the clients of withheld slices), with the pooled counts cut
    by the blocks (:func:`mfr_analysis.privacy_audit.audit_blocks`, sound: it finds at least
    what the whole audit would). Only when one block alone is over the budget is the audit
    skipped, with a warning, and the folder protected line by line."""
    from mfr_analysis.privacy_audit import (
        audit_blocks,
        audit_disclosure,
        block_cost,
        folder_members,
    )

    members = folder_members(reports, counts) if members is None else members
    people = len(set().union(*members.values())) if members else 0
    audit = audit_disclosure
    if len(members) * people > AUDIT_BUDGET:
        first = plan_disclosure(counts, by=by, minimum=minimum, withhold=withhold)
        cost = block_cost(members, first)
        if cost > AUDIT_BUDGET:
            logging.getLogger(__name__).warning(
                "privacy: %s published counts over %s clients are too many for the exact "
                "subtraction audit, even block by block (largest block %s); the folder is "
                "protected line by line (totals, parts and remainders) only",
                f"{len(members):,}", f"{people:,}", f"{cost:,}")
            return first
        audit = audit_blocks
    extra: set = set()
    while True:
        plan = plan_disclosure(counts, by=by, minimum=minimum, withhold=withhold,
                               count_hide=extra)
        found, _ = audit(members, plan)
        if not found - extra:
            return plan
        extra |= found


def withheld_summary(withheld: Sequence[WithheldSlice], noun: str, minimum: int) -> list[str]:
    """Lines for the index: small slices counted, never named; complementary ones named."""
    lines = []
    small = [w for w in withheld if w.reason == "small"]
    if small:
        lines.append(f"{len(small)} {noun}{'s' if len(small) > 1 else ''} with fewer than "
                     f"{minimum} clients: no report of {'their' if len(small) > 1 else 'its'} "
                     "own (included in All clients)")
    for item in withheld:
        if item.reason != "small":
            lines.append(f"{item.label}: no report of its own, so that a smaller {noun}'s "
                         "numbers cannot be worked out by subtraction (included in All clients)")
    return lines


def write_claims(claims: pd.DataFrame, path: Path) -> None:
    """Save one protected claims table as JSON records (for the index and for reuse)."""
    from mfr_analysis.io import write_table

    write_table(claims, path, "json")


def plan_report(sessions: pd.DataFrame, claims: pd.DataFrame, *, minimum: int,
                cleaning_report: dict | None = None) -> ProtectedSlice:
    """Disclosure control for one report run on its own (a notebook opened without the
    runner): its claims and every describe table planned together, as one folder of one
    report. A report under the minimum shows no claims row at all."""
    folder = plan_folder(sessions, None, lambda _: claims, minimum=minimum,
                         cleaning_report=cleaning_report)
    if folder.slices:
        return folder.slices[0]
    return ProtectedSlice(POOLED, "All clients", protect_claims(claims, folder.plan, POOLED),
                          tuple(folder.plan.hidden_groups(POOLED)),
                          folder.plan.for_slice(POOLED))


def report_plan(disclosure_plan: Mapping | None) -> DisclosurePlan:
    """The plan the runner gave a notebook with its protected claims (``disclosure_plan``
    parameter). A protected claims table without its plan is refused: the describe tables
    would then be shown unprotected."""
    from mfr_analysis.errors import InputError

    if disclosure_plan:
        return DisclosurePlan.from_dict(disclosure_plan)
    raise InputError("claims_path is given without disclosure_plan: run the report with "
                     "mfr-analysis report, or leave claims_path empty to plan here")
