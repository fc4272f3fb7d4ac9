"""Disclosure control for everything a report folder publishes (CMS cell-size rule by default).

A count of 1 to ``minimum - 1`` clients (10 under the CMS rule) must never be shown, nor be
derivable by adding or subtracting numbers published anywhere in one report folder: the
pooled report, the slice reports (one per site or audience group), their claims JSON and the
data-quality page. Hiding the small cells alone is not enough: the pooled report's 399
clients minus the sites' 396 reveals a hidden site of 3. So the rule is applied to the
whole folder at once, as statistical agencies do for linked tables:

* **Cells.** Every published count is a cell ``(slice, group, measure)``: ``slice`` is the
  report (``POOLED`` for all clients, else a site or audience group value), ``group`` an
  audience group or ``ALL``, ``measure`` either :data:`CLIENTS` (clients and sessions with
  any session in the cell: titles, counts tables, figures) or one claims row
  (``claim_id|outcome``: its ``n_clients`` and ``n_sessions``).
* **Lines.** A published total and its published parts: in every report, the pooled row and
  the group rows of each measure; every family ``<table>:<what>#<part>`` of a describe
  table (:mod:`mfr_analysis.describe`: arms, classes, levels, reasons), whose total is the
  sum of its parts (a hidden family total hides its parts); across reports sliced by site,
  the pooled report's cell and the sites' cells of the same group and measure; sliced by
  audience group, the pooled total and the group reports.
* **Primary suppression.** A cell of 1 to ``minimum - 1`` clients is hidden.
* **Implicit remainders.** Every count of a report's clients (a claims row, an arm of it, a
  describe box) is a subset of that report's clients of the group (its ``CLIENTS`` cell),
  and every count of one arm a subset of the arm's clients (Table 1, flow): the clients
  left out are never published but are the total minus the part (a title of 594 clients
  and a pain row of 591 give 3 clients without pain data). These are lines too (not exact:
  the parts need not add up to the total).
* **Complementary suppression.** While some line's total minus its published parts (clients
  or sessions) lies in 1 to ``minimum - 1`` (in absolute value: overlaps count too), or an
  exact line's total is hidden while all its parts are shown (their sum), the smallest
  published part of that line is hidden as well. Hidden cells only ever add up to 0 or to
  at least ``minimum`` clients in every line, so subtraction reveals nothing smaller.
* **Whole or count-only.** A small cell is hidden whole (``DisclosurePlan.hidden``: its
  estimate, interval and verdict go with its counts). A complement loses only its counts
  (``DisclosurePlan.count_hidden``: clients, sessions, arm sizes, responder counts and the
  counts of its note, and its standard error, p-values and power figures, which with the
  interval give the t distribution's degrees of freedom): a mean and its interval over 591
  clients reveal no count. A report's title count is
  always hidden whole (the report is withheld), and a group's clients hidden either way
  leave that group out of counts tables and figures.
* **Consequences.** A wholly hidden ``CLIENTS`` cell hides every claims row of that cell; a
  hidden slice total withholds the whole slice report; sliced by audience group, a group
  hidden in the pooled report has no report of its own and the other way round.
* **Exact audit.** Lines cannot see chains across measures (a claim's clients minus the
  flow's control clients with a pair gives the hidden MFR clients with a pair):
  :func:`mfr_analysis.privacy_audit.audit_disclosure` then checks every count whose clients
  are known by linear algebra, and :func:`mfr_analysis.report.disclosure.plan_folder` plans
  again with what it hides until it finds nothing.

The same plan also decides the small things a total would not show: a count of 1-10 in a
note ("control arm too small (3 clients)", "7 adverse events") becomes "fewer than 11", a
responder share that implies 1-10 responders (or non-responders) is withheld, and figures
drop points resting on fewer than ``minimum`` clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from mfr_analysis.config import MIN_REPORTED_CLIENTS

ALL = "all"  # the pooled audience-group row of a claims table
POOLED = ""  # the slice of the all-clients report (no site or group value is empty)
CLIENTS = "clients"  # the measure of titles, counts tables and figures
SUPPRESSED = "suppressed"
WITHHELD_NOTE = ("withheld for privacy: fewer than {minimum} clients, or a cell that would "
                 "let a smaller one be worked out by subtraction")

Cell = tuple[str, str, str]  # (slice, group, measure)


def _small(value: float, minimum: int) -> bool:
    return 1 <= abs(value) < minimum


# ---------------------------------------------------------------------------------------------
# the counts a report folder would publish


def session_counts(sessions: pd.DataFrame, slice_value: str = POOLED,
                   group_column: str = "audience_group") -> pd.DataFrame:
    """Clients and sessions of one report (``slice_value``), pooled and per audience group.

    One row per ``(slice, group, measure=CLIENTS)``; the pooled row has ``group=ALL``."""
    grouped = sessions.groupby(group_column, observed=True).agg(
        clients=("client_id", "nunique"), sessions=("client_id", "size"))
    rows = pd.DataFrame({"slice": slice_value, "group": grouped.index.astype("str"),
                         "measure": CLIENTS, "clients": grouped["clients"].to_numpy(),
                         "sessions": grouped["sessions"].to_numpy()})
    pooled = pd.DataFrame({"slice": [slice_value], "group": [ALL], "measure": [CLIENTS],
                           "clients": [sessions["client_id"].nunique()],
                           "sessions": [len(sessions)]})
    return pd.concat([pooled, rows], ignore_index=True)


def claim_measure(claim_id: str, outcome: str, sensitivity: str = "") -> str:
    """The measure name of one claims row: ``claim_id|outcome``, and for a missing-data
    sensitivity row ``claim_id|outcome@sensitivity`` (a distinct cell)."""
    return f"{claim_id}|{outcome}" + (f"@{sensitivity}" if sensitivity else "")


def _measures(claims: pd.DataFrame) -> list[str]:
    """The measure of every claims row (sensitivity rows apart from the primary ones)."""
    sensitivity = (claims["sensitivity"].fillna("").astype("str") if "sensitivity" in claims
                   else pd.Series("", index=claims.index))
    return [claim_measure(c, o, v) for c, o, v in zip(
        claims["claim_id"], claims["outcome"], sensitivity, strict=True)]


#: The sensitivity rows that analyse every client (imputed or carried forward) and those that
#: analyse the clients with follow-up: their difference is the clients without follow-up, so
#: they are tied to a family ``<claim>|<outcome>@followup`` (total) with parts ``#with`` and
#: ``#without`` that a plan treats as a line.
_EVERY_CLIENT = ("multiple_imputation", "last_observation_carried_forward")
_FOLLOWED = ("complete_case", "inverse_probability_weighting")
_FOLLOWUP_FAMILY = "@followup"  # a family line too: every client = with + without follow-up


def _sensitivity_family(claims: pd.DataFrame, slice_value: str) -> pd.DataFrame:
    """Cells that tie the sensitivity rows of each group to the clients with and without
    follow-up (twins: the rows counting the same people)."""
    if "sensitivity" not in claims:
        return pd.DataFrame()
    rows = []
    keyed = claims.assign(_s=claims["sensitivity"].fillna("").astype("str"))
    keyed = keyed.loc[keyed["_s"] != ""]
    for (claim_id, outcome, group), cell in keyed.groupby(
            ["claim_id", "outcome", "audience_group"], sort=False):
        by = cell.set_index("_s")
        if not ({*_EVERY_CLIENT, *_FOLLOWED} <= set(by.index)):
            continue
        base = f"{claim_id}|{outcome}{_FOLLOWUP_FAMILY}"
        every = by.loc[_EVERY_CLIENT[0]]
        followed = by.loc[_FOLLOWED[0]]
        clients = (int(every["n_clients"]), int(followed["n_clients"]))
        sessions = (int(every["n_sessions"]), int(followed["n_sessions"]))
        for measure, n, m, twins in (
                (base, clients[0], sessions[0], _EVERY_CLIENT),
                (f"{base}#with", clients[1], sessions[1], _FOLLOWED),
                (f"{base}#without", clients[0] - clients[1], sessions[0] - sessions[1], ("",))):
            for twin in twins:
                rows.append({"slice": slice_value, "group": str(group), "measure": measure,
                             "clients": n, "sessions": m, "twin": claim_measure(
                                 claim_id, outcome, twin) if twin else ""})
        # the followed-up rows count the primary follow-up row's clients again: hidden with it
        for approach in _FOLLOWED:
            rows.append({"slice": slice_value, "group": str(group),
                         "measure": claim_measure(claim_id, outcome, approach),
                         "clients": clients[1], "sessions": sessions[1],
                         "twin": claim_measure(claim_id, outcome)})
    return pd.DataFrame(rows)


#: Counts inside a claims row that a reader could also combine across rows: each is a measure
#: of its own (``claim_id|outcome#part``), planned like the row's clients, and hidden alone
#: (the row keeps its estimate). ``treated`` is the row's clients minus its control clients.
PARTS: tuple[str, ...] = ("control", "treated", "responders", "nonresponders",
                          "responders_control", "nonresponders_control")
#: Columns a hidden part empties (arm sizes also give away the responder denominators).
PART_COLUMNS: dict[str, tuple[str, ...]] = {
    "control": ("n_control_clients",),
    "treated": ("n_control_clients",),
    "responders": ("responders", "responder_clients", "responder_share"),
    "nonresponders": ("responders", "responder_clients", "responder_share"),
    "responders_control": ("responders_control", "responder_clients_control"),
    "nonresponders_control": ("responders_control", "responder_clients_control"),
}
_ARM_PARTS = ("control", "treated")
#: Statistics that give a row's client count back with its interval: a t interval's half
#: width is t(df) x se, so se and the interval name df (clients - 1 or clients - k), and a
#: p-value, a power figure or the clients needed do the same with the estimate and interval.
#: A row whose counts are withheld publishes none of them (its estimate, interval and
#: verdict alone leave the standard error, and so the degrees of freedom, unknown).
COUNT_REVEALING: tuple[str, ...] = ("se", "p_value", "p_adjusted", "tost_p", "mde",
                                    "clients_needed")


def _number_column(claims: pd.DataFrame, column: str) -> pd.Series:
    if column not in claims:
        return pd.Series(np.nan, index=claims.index, dtype="float64")
    return pd.to_numeric(claims[column], errors="coerce").astype("float64")


def control_counts(claims: pd.DataFrame) -> pd.Series:
    """Control-arm clients of each row: the column, else the count its note states."""
    counts = _number_column(claims, "n_control_clients")
    from_notes = claims["note"].fillna("").astype("str").map(control_clients)
    return counts.fillna(pd.to_numeric(from_notes, errors="coerce").astype("float64"))


def part_counts(claims: pd.DataFrame) -> pd.DataFrame:
    """The clients of every part of every claims row (NaN where the row has no such part).

    Responder counts come from their columns, else from the share of the row's MFR
    clients (all clients of an uncontrolled row, clients minus control clients otherwise)."""
    n_clients = _number_column(claims, "n_clients")
    control = control_counts(claims)
    design = (claims["design"].astype("str") if "design" in claims
              else pd.Series("", index=claims.index))
    # the MFR clients: all clients of an uncontrolled row, the rest of a controlled one
    treated = (n_clients - control.fillna(0)).where(design == "controlled",
                                                    n_clients.where(design == "uncontrolled"))
    responders = _number_column(claims, "responders")
    denominator = _number_column(claims, "responder_clients")
    share = _number_column(claims, "responder_share")
    mfr = treated.where(design == "controlled", n_clients)
    denominator = denominator.fillna(mfr.where(share.notna()))
    responders = responders.fillna((share * denominator).round())
    responders_control = _number_column(claims, "responders_control")
    denominator_control = _number_column(claims, "responder_clients_control")
    return pd.DataFrame({
        "control": control.where(design == "controlled"),
        "treated": treated,
        "responders": responders, "nonresponders": denominator - responders,
        "responders_control": responders_control,
        "nonresponders_control": denominator_control - responders_control,
    }, index=claims.index)


def claim_counts(claims: pd.DataFrame, slice_value: str = POOLED) -> pd.DataFrame:
    """The counts of every claims row of one report, as cells: ``n_clients`` and
    ``n_sessions`` of the row, and the clients of each of its :data:`PARTS`."""
    clients = pd.to_numeric(claims["n_clients"], errors="coerce").fillna(0)
    sessions = pd.to_numeric(claims["n_sessions"], errors="coerce").fillna(0)
    measures = _measures(claims)
    groups = claims["audience_group"].astype("str").to_numpy()
    frames = [pd.DataFrame({"slice": slice_value, "group": groups, "measure": measures,
                            "clients": clients.to_numpy(dtype=np.int64),
                            "sessions": sessions.to_numpy(dtype=np.int64)})]
    parts = part_counts(claims)
    uncontrolled = (claims["design"].astype("str") == "uncontrolled").to_numpy() if (
        "design" in claims) else np.zeros(len(claims), dtype=bool)
    for part in PARTS:
        values = parts[part]
        present = values.notna().to_numpy()
        kept = [m for m, keep in zip(measures, present, strict=True) if keep]
        frames.append(pd.DataFrame({
            "slice": slice_value, "group": groups[present],
            "measure": [f"{m}#{part}" for m in kept],
            "clients": values[present].round().to_numpy(dtype=np.int64), "sessions": 0,
            # an uncontrolled row's MFR clients are its clients: hidden together
            "twin": [m if part == "treated" and u else "" for m, u in zip(
                kept, uncontrolled[present], strict=True)]}))
    family = _sensitivity_family(claims, slice_value)
    if not family.empty:
        frames.append(family)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class Line:
    """A published total and the published parts it is the sum of (``exact``), or, when not
    exact, parts that are subsets of the total with an unpublished remainder (the clients of
    a report who have no data for a claims row: the title count minus the row's clients)."""

    total: Cell
    parts: tuple[Cell, ...]
    exact: bool = True


@dataclass(frozen=True)
class DisclosurePlan:
    """Which cells of a report folder are hidden, and which slice reports are withheld.

    ``hidden`` cells are withheld whole (primary suppression and what follows from it: the
    row's estimate, interval and verdict go too); ``count_hidden`` cells lose only their
    counts (complementary suppression: a mean over 591 clients reveals no count)."""

    minimum: int
    by: str | None
    hidden: frozenset[Cell]
    withheld: Mapping[str, str] = field(default_factory=dict)  # slice -> small | complementary
    count_hidden: frozenset[Cell] = frozenset()

    def is_hidden(self, slice_value: str, group: str, measure: str) -> bool:
        """True when the whole cell must not be published (counts and results)."""
        return (slice_value, group, measure) in self.hidden

    def counts_hidden(self, slice_value: str, group: str, measure: str) -> bool:
        """True when the cell's counts must not be published (whole or count-only)."""
        cell = (slice_value, group, measure)
        return cell in self.hidden or cell in self.count_hidden

    def is_count_only(self, slice_value: str, group: str, measure: str) -> bool:
        """True when only the cell's counts are hidden (its results may be shown)."""
        cell = (slice_value, group, measure)
        return cell in self.count_hidden and cell not in self.hidden

    def hidden_groups(self, slice_value: str = POOLED) -> list[str]:
        """Audience groups whose counts and figures a report must not show (their claims
        rows follow :meth:`is_hidden` and :meth:`counts_hidden`)."""
        return sorted({g for s, g, m in self.hidden | self.count_hidden
                       if s == slice_value and m == CLIENTS and g != ALL})

    def is_withheld(self, slice_value: str) -> bool:
        """True when the slice gets no report of its own."""
        return slice_value in self.withheld

    def for_slice(self, slice_value: str) -> DisclosurePlan:
        """The plan of one report: its hidden cells only, no other slice named."""
        return DisclosurePlan(
            self.minimum, self.by, frozenset(c for c in self.hidden if c[0] == slice_value),
            count_hidden=frozenset(c for c in self.count_hidden if c[0] == slice_value))

    def to_dict(self) -> dict:
        """JSON-ready form (e.g. a notebook parameter): minimum, by and hidden cells."""
        return {"minimum": self.minimum, "by": self.by or "",
                "hidden": [list(c) for c in sorted(self.hidden)],
                "count_hidden": [list(c) for c in sorted(self.count_hidden)],
                "withheld": dict(self.withheld)}

    @classmethod
    def from_dict(cls, data: Mapping) -> DisclosurePlan:
        """The plan :meth:`to_dict` wrote."""
        def cells(key: str) -> frozenset[Cell]:
            return frozenset(tuple(str(x) for x in c) for c in data.get(key, ()))

        return cls(int(data["minimum"]), data.get("by") or None, cells("hidden"),
                   dict(data.get("withheld", {})), cells("count_hidden"))


def is_described(measure: str) -> bool:
    """True for a measure of a describe table (``<table>:<what>`` or ``<table>:<what>#<part>``),
    False for ``clients`` and claims rows (``claim_id|outcome``, whose outcome may hold ':')."""
    head, colon, _ = measure.partition(":")
    return bool(colon) and "|" not in head


def _families(cells: Iterable[Cell]) -> list[Line]:
    """Every describe family ``base#part`` of one report and group, and the follow-up family
    of the sensitivity rows: total = sum of parts (the arms of a count, the classes of a
    reliable-change table, the levels and missing of a baseline variable, clients with and
    without follow-up), so a hidden part cannot be worked out from its total and the rest."""
    parts: dict[Cell, list[Cell]] = {}
    for s, g, m in cells:
        base, hash_, _ = m.rpartition("#")
        if hash_ and (is_described(base) or base.endswith(_FOLLOWUP_FAMILY)):
            parts.setdefault((s, g, base), []).append((s, g, m))
    return [Line(total, tuple(sorted(members))) for total, members in sorted(parts.items())]


_ARM_OF_PART = {"control": "control", "treated": "mfr"}  # claims-row part -> its arm


def _arm_of(measure: str) -> str:
    """The arm whose clients a measure counts a subset of ('' when none)."""
    base, hash_, part = measure.rpartition("#")
    if not hash_:
        return ""
    if not is_described(base):
        return _ARM_OF_PART.get(part, "")
    if base in ("baseline:clients", "flow:arm"):  # the arm totals themselves
        return ""
    if part in _ARM_OF_PART.values():  # e.g. individual:pair#mfr
        return part
    tail = base.rsplit("_", 1)[-1]
    return tail if tail in _ARM_OF_PART.values() else ""


#: A claims row's responder parts and the counts they are a subset of (the row, its arm):
#: the clients without a client-level value (one session only) are the rest.
_RESPONDER_PARTS = {("responders", "nonresponders"): ("", "treated"),
                    ("responders_control", "nonresponders_control"): ("control",)}


def _remainders(cells: set[Cell]) -> list[Line]:
    """Implicit remainders: every count of a report's clients (a claims row, a part of it, a
    describe box) is a subset of the report's clients of that group (its CLIENTS cell), and
    every count of one arm a subset of that arm's clients; the clients left out are never
    published but would be the total minus the part. So are a claims row's responders and
    non-responders of its row and arm (the row's 198 clients minus 190 with a responder
    status are 8 clients with one session)."""
    lines = []
    for s, g, m in sorted(cells):
        if m == CLIENTS:
            continue
        if not is_described(m) and "#" not in m:
            for parts, totals in _RESPONDER_PARTS.items():
                present = tuple((s, g, f"{m}#{part}") for part in parts
                                if (s, g, f"{m}#{part}") in cells)
                lines += [Line(total, present, exact=False) for total in (
                    (s, g, f"{m}#{t}" if t else m) for t in totals) if present and total in cells]
        if (s, g, CLIENTS) in cells:
            lines.append(Line((s, g, CLIENTS), ((s, g, m),), exact=False))
        arm = _arm_of(m)
        if arm:
            for total in ((s, g, f"baseline:clients#{arm}"), (s, g, f"flow:arm#{arm}")):
                if total in cells and total != (s, g, m):
                    lines.append(Line(total, ((s, g, m),), exact=False))
    return lines


def _lines(cells: Iterable[Cell], by: str | None) -> list[Line]:
    """Every (total, parts) relation a reader can use within and across the reports."""
    cells = set(cells)
    slices = sorted({s for s, _, _ in cells})
    groups = sorted({g for _, g, _ in cells} - {ALL})
    measures = sorted({m for _, _, m in cells})
    lines = [Line((s, ALL, m), tuple((s, g, m) for g in groups)) for s in slices
             for m in measures]
    lines += _families(cells)
    others = [s for s in slices if s != POOLED]
    if by and others:
        across = [ALL] if by == "audience_group" else [ALL, *groups]
        lines += [Line((POOLED, g, m), tuple((s, g, m) for s in others)) for g in across
                  for m in measures]
    return lines + _remainders(cells)


def _twins(cells: Iterable[Cell], by: str | None) -> dict[Cell, set[Cell]]:
    """Cells that publish the same people (must be hidden together): sliced by audience group,
    the group's own report repeats the pooled report's column of that group."""
    twins: dict[Cell, set[Cell]] = {}
    if by != "audience_group":
        return twins
    for s, _, m in cells:
        if s == POOLED:
            continue
        same = {(POOLED, s, m), (s, ALL, m), (s, s, m)}
        for cell in same:
            twins.setdefault(cell, set()).update(same - {cell})
    return twins


def plan_disclosure(counts: pd.DataFrame, *, by: str | None = None,
                    minimum: int = MIN_REPORTED_CLIENTS,
                    withhold: Iterable[str] = (),
                    count_hide: Iterable[Cell] = ()) -> DisclosurePlan:
    """Primary and complementary suppression over every cell a report folder publishes.

    ``counts`` has columns ``slice, group, measure, clients, sessions``
    (:func:`session_counts`, :func:`claim_counts`); ``by`` is the slicing column
    (``None`` for the pooled report alone); ``withhold`` names slices already decided to get
    no report; ``count_hide`` cells whose counts must go (e.g. found by
    :func:`mfr_analysis.privacy_audit.audit_disclosure`). A small cell is hidden whole
    (primary suppression); a cell hidden because of a line loses only its counts
    (``count_hidden``), except a report's title count, which withholds the report.
    Deterministic: ties are broken by the cell's name."""
    if minimum < 1:
        raise ValueError(f"minimum must be at least 1, not {minimum!r}")
    values: dict[Cell, tuple[int, int]] = {
        (str(s), str(g), str(m)): (int(c), int(n)) for s, g, m, c, n in counts[
            ["slice", "group", "measure", "clients", "sessions"]].itertuples(index=False)}
    cells = set(values)
    measures = sorted({m for _, _, m in cells})
    twins = _twins(cells, by)
    if "twin" in counts:  # cells that count the same people as another measure's cell
        for s, g, m, twin in counts[["slice", "group", "measure", "twin"]].itertuples(
                index=False):
            if isinstance(twin, str) and twin:
                one, other = (str(s), str(g), str(m)), (str(s), str(g), twin)
                twins.setdefault(one, set()).add(other)
                twins.setdefault(other, set()).add(one)
    lines = _lines(cells, by)
    family_parts = {line.total: line.parts for line in _families(cells)}
    slices = {s for s, _, _ in cells}
    hidden: set[Cell] = set()  # whole: counts and results
    count_only: set[Cell] = set()  # counts only
    withheld: dict[str, str] = {}

    def hide(cell: Cell, whole: bool = True) -> None:
        todo = [(cell, whole)]
        while todo:
            current, entire = todo.pop()
            s, g, m = current
            if m == CLIENTS and g == ALL:  # a report's title count: the report goes
                entire = True
            if current in hidden or (not entire and current in count_only):
                continue
            (hidden if entire else count_only).add(current)
            todo.extend((t, entire) for t in twins.get(current, ()))
            if is_described(m):  # a hidden family total: its parts would add up to it
                if entire:
                    todo.extend((p, True) for p in family_parts.get(current, ()))
            elif m != CLIENTS and "#" not in m:  # a hidden claims row hides all its parts
                todo.extend(((s, g, f"{m}#{part}"), entire) for part in PARTS)
            elif m.rsplit("#", 1)[-1] in _ARM_PARTS:  # arm sizes give away the denominators
                base = m.rsplit("#", 1)[0]
                todo.extend(((s, g, f"{base}#{part}"), entire) for part in PARTS)
            if m == CLIENTS and entire:  # the people are hidden: so is every row about them
                todo.extend(((s, g, other), True) for other in measures)
                if g == ALL and s != POOLED:  # a hidden slice total: no report at all
                    withheld.setdefault(s, "complementary")
                    todo.extend((c, True) for c in cells if c[0] == s)

    def shown(cell: Cell) -> bool:
        return cell not in hidden and cell not in count_only

    for s in withhold:
        if s in slices:
            withheld[s] = "small" if _small(values.get((s, ALL, CLIENTS), (0, 0))[0],
                                            minimum) else "complementary"
            hide((s, ALL, CLIENTS))
    for cell, (clients, _) in sorted(values.items()):
        if _small(clients, minimum):
            if cell[1] == ALL and cell[2] == CLIENTS and cell[0] != POOLED:
                withheld[cell[0]] = "small"
            hide(cell)
    for cell in sorted(set(count_hide) & cells):  # e.g. decided by the exact audit
        hide(cell, whole=False)

    changed = True
    while changed:
        changed = False
        for line in lines:
            if line.total not in values:
                continue
            present = [p for p in line.parts if p in values]
            visible = [p for p in present if shown(p)]
            if not shown(line.total):
                # a hidden total whose parts are all shown is their sum
                if not (line.exact and present and len(visible) == len(present)
                        and any(values[p][0] > 0 for p in visible)):
                    continue
            else:
                total = values[line.total]
                rest = [total[i] - sum(values[p][i] for p in visible) for i in (0, 1)]
                if not any(_small(r, minimum) for r in rest):
                    continue
            candidates = [p for p in visible if values[p][0] > 0]
            hide(min(candidates, key=lambda p: (values[p], p)) if candidates else line.total,
                 whole=False)
            changed = True
    return DisclosurePlan(minimum, by, frozenset(hidden), dict(sorted(withheld.items())),
                          frozenset(count_only - hidden))


# ---------------------------------------------------------------------------------------------
# applying the plan to what a report shows

_NUMERIC_KEPT = ("mcid",)  # a setting, not a result
_COUNT_PHRASE = re.compile(
    r"(?<![\w.,])(?P<n>\d[\d,]*)(?P<gap>\s+)(?P<what>control clients|clients?|client slopes|"
    r"adverse events?|sessions?|events?)\b")
_CONTROL_PHRASE = re.compile(r"\((?P<n>\d[\d,]*) control clients\)")


def scrub_counts(text: str, minimum: int) -> str:
    """Replace every count of 1..minimum-1 clients, sessions or events in a note."""
    def replace(match: re.Match[str]) -> str:
        n = int(match["n"].replace(",", ""))
        if 1 <= n < minimum:
            return f"fewer than {minimum}{match['gap']}{match['what']}"
        return match[0]

    return _COUNT_PHRASE.sub(replace, text)


@cache
def _withheld_words() -> tuple[str, str]:
    """(label, phrase) for a count hidden only because of a line (``data/report_labels.csv``:
    'withheld' and 'a withheld number of')."""
    from mfr_analysis.tables import load_table

    table = load_table("report_labels").fillna("").set_index(["kind", "key"])
    return (str(table.at[("text", "count_withheld"), "label"]),
            str(table.at[("text", "count_withheld_phrase"), "label"]))


def withheld_label() -> str:
    """The word a report shows for a count hidden only because of a line: 'withheld'."""
    return _withheld_words()[0]


def withhold_counts(text: str) -> str:
    """Replace every count of clients, sessions or events in a note, whatever its size
    ('554 client slopes' -> 'a withheld number of client slopes')."""
    phrase = _withheld_words()[1]
    return _COUNT_PHRASE.sub(lambda m: f"{phrase}{m['gap']}{m['what']}", text)


def control_clients(note: str) -> int | None:
    """The control-arm client count a controlled row's note states, if any."""
    found = _CONTROL_PHRASE.search(note or "")
    return int(found["n"].replace(",", "")) if found else None


def protect_claims(claims: pd.DataFrame, plan: DisclosurePlan,
                   slice_value: str = POOLED) -> pd.DataFrame:
    """The claims table as a report may publish it: hidden rows keep only their labels.

    A hidden row gets verdict ``suppressed``, no number but its MCID, and a note saying why;
    a row whose counts only are hidden (complementary suppression) keeps its estimate,
    interval and verdict but loses ``n_clients``, ``n_sessions``, its parts, every count
    of its note and method, and the statistics that would give its count back
    (:data:`COUNT_REVEALING`); a shown row loses the parts the plan hides (arm sizes, responder
    counts and shares, see :data:`PARTS`) and every count of 1..minimum-1 from its note and
    method."""
    minimum = plan.minimum
    measures = _measures(claims)
    groups = claims["audience_group"].astype("str").tolist()
    hidden = np.array([plan.is_hidden(slice_value, g, m) for g, m in zip(groups, measures,
                                                                          strict=True)],
                      dtype=bool)
    counts_gone = np.array([plan.counts_hidden(slice_value, g, m)
                            for g, m in zip(groups, measures, strict=True)], dtype=bool)
    protected = claims.copy()
    numeric = [c for c in claims.select_dtypes("number").columns if c not in _NUMERIC_KEPT]
    for column in numeric:
        protected[column] = protected[column].astype("Float64").where(~hidden)
    emptied: dict[str, np.ndarray] = {"n_clients": counts_gone, "n_sessions": counts_gone,
                                      **dict.fromkeys(COUNT_REVEALING, counts_gone)}
    for part, columns in PART_COLUMNS.items():
        gone = np.array([plan.counts_hidden(slice_value, g, f"{m}#{part}")
                         for g, m in zip(groups, measures, strict=True)], dtype=bool)
        for column in columns:
            emptied[column] = emptied.get(column, np.zeros(len(claims), bool)) | gone
    for column, gone in emptied.items():
        if column in protected:
            protected[column] = protected[column].astype("Float64").where(~(gone | hidden))
    if "responder_share" in protected:  # a share whose counts are unknown is not published
        unknown = (_number_column(claims, "responder_share").notna()
                   & part_counts(claims)["responders"].isna()).to_numpy()
        protected["responder_share"] = protected["responder_share"].where(~unknown)
    arms_hidden = emptied["n_control_clients"]

    def words(text: str, arms: bool, counts: bool) -> str:
        text = _CONTROL_PHRASE.sub("(arm sizes withheld for privacy)", text) if arms else text
        return withhold_counts(text) if counts else scrub_counts(text, minimum)

    notes = claims["note"].fillna("").astype("str")
    protected["note"] = [
        WITHHELD_NOTE.format(minimum=minimum) if hide else words(note, arms, counts)
        for hide, arms, counts, note in zip(hidden, arms_hidden, counts_gone, notes,
                                            strict=True)]
    if "method" in claims:
        protected["method"] = [
            "" if hide else words(str(m), False, counts)
            for hide, counts, m in zip(hidden, counts_gone, claims["method"].fillna(""),
                                       strict=True)]
    if "design" in claims:
        protected["design"] = claims["design"].where(~hidden, "")
    protected["verdict"] = claims["verdict"].where(~hidden, SUPPRESSED)
    return protected


def protect_report(claims: pd.DataFrame, sessions: pd.DataFrame,
                   minimum: int = MIN_REPORTED_CLIENTS) -> tuple[pd.DataFrame, list[str]]:
    """Disclosure control for one report on its own: the claims it may publish and the
    audience groups its counts and figures must leave out."""
    counts = pd.concat([session_counts(sessions), claim_counts(claims)], ignore_index=True)
    plan = plan_disclosure(counts, minimum=minimum)
    return protect_claims(claims, plan), plan.hidden_groups()


def shown_counts(sessions: pd.DataFrame, hidden_groups: Sequence[str],
                 group_column: str = "audience_group") -> pd.DataFrame:
    """Clients and sessions per group as a report prints them (hidden groups: 'suppressed')."""
    grouped = sessions.groupby(group_column, observed=True).agg(
        clients=("client_id", "nunique"), sessions=("client_id", "size"))
    hide = grouped.index.astype("str").isin(list(hidden_groups))
    return pd.DataFrame({
        "clients": grouped["clients"].map(lambda n: f"{int(n):,}").where(~hide, SUPPRESSED),
        "sessions": grouped["sessions"].map(lambda n: f"{int(n):,}").where(~hide, SUPPRESSED),
    }, index=grouped.index)


def reportable_groups(
    sessions: pd.DataFrame, column: str = "audience_group", minimum: int = MIN_REPORTED_CLIENTS
) -> list[str]:
    """Values of ``column`` with at least ``minimum`` distinct clients."""
    clients = sessions.groupby(column, observed=True)["client_id"].nunique()
    return [str(value) for value in clients.index[clients >= minimum]]
