"""The exact check after the line-based plan: can any 1-10 clients be worked out at all?

:func:`mfr_analysis.privacy.plan_disclosure` reasons line by line (a total and its parts).
A reader can also chain lines across measures: the pain claim's 591 clients minus the flow's
118 control clients with a pain pair gives the 473 MFR clients with a pair, and 476 MFR
clients minus 473 gives 3. This module checks the folder the way a linear attacker would.

* Every published client count is a **set of clients** (:func:`report_members`: a report's
  clients per group, each claims row's clients and arms, the flow's boxes, Table 1's arms,
  the reliable-change classes). A count whose set cannot be rebuilt from the session table
  (or whose rebuilt size differs from the count) is left to the line-based plan.
* **Atoms** are the groups of clients that belong to exactly the same published sets; the
  published counts are ``b = A x`` (``A``: sets x atoms, 0/1; ``x``: atom sizes).
* A set of atoms ``S`` is **disclosed** when its indicator lies in the row space of ``A``
  (then ``|S|`` is a fixed combination of published counts) and ``|S|`` is 1 to
  ``minimum - 1``. Every single atom and every pair of atoms is tested, through the
  orthogonal projector ``P`` onto the row space: ``e_S`` is in it iff ``e_S' P e_S = |S|``
  (as ``P`` is a projector, ``e' P e <= e' e`` with equality only inside the space).
* While some set is disclosed, the smallest published count whose removal takes it out of
  the row space (ties by name) loses its counts (count-only, with every cell that publishes
  the same set), and the check runs again.

Hand-written because no maintained library audits linked frequency tables in Python (sdcMicro
and tau-Argus are R and Java); the linear algebra is numpy/scipy's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg

from mfr_analysis.config import MIN_REPORTED_CLIENTS
from mfr_analysis.privacy import (
    ALL,
    CLIENTS,
    POOLED,
    Cell,
    DisclosurePlan,
    claim_measure,
    is_described,
)

_TOLERANCE = 1e-7


@dataclass(frozen=True)
class Disclosure:
    """A set of clients a reader can work out: its atoms' cells signature and its size."""

    clients: int
    cells: tuple[Cell, ...]  # one published cell of each set the atoms belong to (example)


def _atoms(sets: Sequence[frozenset]) -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 matrix (sets x atoms) and each atom's number of clients."""
    matrix, sizes, _ = _atoms_of(sets)
    return matrix, sizes


def _atoms_of(sets: Sequence[frozenset]) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`_atoms` and the atom (column) of every client in some set."""
    signature: dict[object, list[int]] = {}
    for index, members in enumerate(sets):
        for client in members:
            signature.setdefault(client, []).append(index)
    sizes: dict[tuple[int, ...], int] = {}
    for rows in signature.values():
        key = tuple(rows)
        sizes[key] = sizes.get(key, 0) + 1
    keys = sorted(sizes)
    column = {key: i for i, key in enumerate(keys)}
    matrix = np.zeros((len(sets), len(keys)))
    for i, key in enumerate(keys):
        matrix[list(key), i] = 1.0
    atom_of = {client: column[tuple(rows)] for client, rows in signature.items()}
    return matrix, np.array([sizes[k] for k in keys], dtype=np.int64), atom_of


def _hidden_disclosed(targets: Iterable[frozenset], basis: np.ndarray, sizes: np.ndarray,
                      atom_of: Mapping) -> list[tuple[int, ...]]:
    """Hidden small cells (``targets``: their client sets) a reader can still work out: a
    set that is a union of whole atoms and whose indicator lies in the row space. Atoms and
    pairs (:func:`_disclosed`) miss a hidden cell split into three or more atoms by other
    counts; the cells themselves are what a reader is after."""
    found = []
    for target in targets:
        columns: dict[int, int] = {}
        for client in target:
            if client not in atom_of:
                break  # a client in no published count: the set is not determined
            columns[atom_of[client]] = columns.get(atom_of[client], 0) + 1
        else:
            if any(sizes[c] != n for c, n in columns.items()):
                continue  # cuts an atom: not determined by the counts
            vector = np.zeros(len(sizes))
            vector[list(columns)] = 1.0
            if abs(float(np.sum((basis @ vector) ** 2)) - len(columns)) < 1e-6:
                found.append(tuple(sorted(columns)))
    return found


def _svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Economic SVD and rank (only the row space and the rows' leverage are needed)."""
    if matrix.size == 0:
        return (np.zeros((matrix.shape[0], 0)), np.zeros(0),
                np.zeros((0, matrix.shape[1])), 0)
    u, sigma, vt = linalg.svd(matrix, full_matrices=False, lapack_driver="gesdd")
    rank = int((sigma > _TOLERANCE * max(matrix.shape) * max(float(sigma[0]), 1.0)).sum())
    return u[:, :rank], sigma[:rank], vt[:rank], rank


def _free(u: np.ndarray) -> np.ndarray:
    """How far each row is from being needed by every solution: the norm of its part in the
    left null space, sqrt(1 - its leverage)."""
    leverage = (u * u).sum(axis=1) if u.size else np.zeros(u.shape[0])
    return np.sqrt(np.clip(1.0 - leverage, 0.0, None))


def row_space_projector(matrix: np.ndarray) -> np.ndarray:
    """The orthogonal projector onto the row space of ``matrix`` (columns x columns)."""
    _, _, vt, _ = _svd(matrix)
    return vt.T @ vt


def disclosed_sets(matrix: np.ndarray, sizes: np.ndarray, minimum: int
                   ) -> list[tuple[int, ...]]:
    """Every atom and pair of atoms of 1..minimum-1 clients whose indicator lies in the row
    space of ``matrix`` (smallest first, then by atom)."""
    return _disclosed(_svd(matrix)[2], sizes, minimum)


def _disclosed(basis: np.ndarray, sizes: np.ndarray, minimum: int
               ) -> list[tuple[int, ...]]:
    """``basis``: orthonormal rows spanning the row space (rank x atoms)."""
    candidates = np.flatnonzero(sizes < minimum)
    if not len(candidates):
        return []
    local = basis[:, candidates]
    diagonal = (local * local).sum(axis=0)
    alone = np.abs(diagonal - 1.0) < 1e-6
    found = [(int(sizes[i]), (int(i),)) for i in candidates[alone]]
    pick = ~alone & (sizes[candidates] < minimum - 1)
    small = candidates[pick]
    if len(small) > 1:
        sub = local[:, pick].T @ local[:, pick]
        norm = diagonal[pick][:, None] + diagonal[pick][None, :] + 2 * sub
        both = (np.abs(norm - 2.0) < 1e-6) & (
            sizes[small][:, None] + sizes[small][None, :] < minimum)
        for a, b in zip(*np.nonzero(np.triu(both, 1)), strict=True):
            found.append((int(sizes[small[a]] + sizes[small[b]]),
                          (int(small[a]), int(small[b]))))
    return [atoms for _, atoms in sorted(found)]


def essential_rows(matrix: np.ndarray, atoms: tuple[int, ...]) -> list[int]:
    """The rows without which the indicator of ``atoms`` leaves the row space: every
    solution ``y`` of ``A' y = e_S`` gives them the same non-zero weight (their unit vector
    is orthogonal to the null space of ``A'``, and the minimum-norm solution uses them)."""
    u, sigma, vt, _ = _svd(matrix)
    indicator = np.zeros(matrix.shape[1])
    indicator[list(atoms)] = 1.0
    weights = u @ ((vt @ indicator) / sigma)
    return [int(i) for i in np.flatnonzero((_free(u) < 1e-6) & (np.abs(weights) > 1e-6))]


def _published_sets(members: Mapping[Cell, Collection], plan: DisclosurePlan
                    ) -> dict[frozenset, list[Cell]]:
    """Each distinct client set the plan publishes, with the cells (sorted) that publish it."""
    by_set: dict[frozenset, list[Cell]] = {}
    for cell, clients in members.items():
        if clients and not plan.counts_hidden(*cell):
            by_set.setdefault(frozenset(clients), []).append(cell)
    for cells in by_set.values():
        cells.sort()
    return by_set


def _small_hidden(members: Mapping[Cell, Collection], plan: DisclosurePlan, minimum: int
                  ) -> list[frozenset]:
    """The client sets of the cells the plan hides for being small (1..minimum-1 clients)."""
    return sorted({frozenset(clients) for cell, clients in members.items()
                   if 0 < len(clients) < minimum and plan.counts_hidden(*cell)},
                  key=lambda s: (len(s), sorted(map(str, s))))


def _small_differences(sets: Iterable[frozenset], minimum: int) -> list[frozenset]:
    """The clients of one published set that are not in another published set inside it,
    when they number 1..minimum-1 (any follow-up rating, 345, minus the clients analysed for
    lasting relief, 339: 6 clients with a follow-up but no pain before it).

    Such a difference is a combination of published counts by definition, but spans as many
    atoms as other counts cut it into: the atom and pair tests miss it from three on, so
    it is a target of its own (:func:`_hidden_disclosed`)."""
    import bisect

    ordered = sorted(set(sets), key=len)
    sizes = [len(s) for s in ordered]
    out: set[frozenset] = set()
    for whole in ordered:
        low = bisect.bisect_left(sizes, len(whole) - minimum + 1)
        high = bisect.bisect_left(sizes, len(whole))
        out.update(whole - part for part in ordered[low:high] if part and part <= whole)
    return sorted(out, key=lambda d: (len(d), sorted(map(str, d))))


def _last_to_hide(cells: Sequence[Cell]) -> tuple[bool, bool, bool, bool]:
    """Sort key of a count to hide, by what hiding it costs a reader: a report's title count
    last, a group's clients next, then a claims row's clients (its standard error and
    p-values go with them), then a part of a claims row (an arm size, responders: the
    responder share goes); a describe table's count (a flow box, a Table 1 level) first."""
    return (any(m == CLIENTS and g == ALL for _, g, m in cells),
            any(m == CLIENTS for _, _, m in cells),
            any(_is_claims_row(m) for _, _, m in cells),
            any(not is_described(m) and m != CLIENTS for _, _, m in cells))


def _is_claims_row(measure: str) -> bool:
    return measure != CLIENTS and not is_described(measure) and "#" not in measure


def _resolve(rows: Sequence[frozenset], minimum: int, targets: Sequence[frozenset] = ()
             ) -> tuple[set[int], list[tuple[int, np.ndarray]]]:
    """One audit round over published ``rows`` (most hideable first): the rows to hide, and
    for each disclosed set (its clients, the rows it is worked out from); nothing when
    nothing is disclosed. Disclosed sets are small atoms, pairs of them and the hidden small
    cells ``targets``. A disclosed set already resolved by a row chosen this round is left
    for the next round."""
    matrix, sizes, atom_of = _atoms_of(rows)
    u, sigma, vt, _ = _svd(matrix)
    disclosed = _disclosed(vt, sizes, minimum)
    disclosed += [atoms for atoms in _hidden_disclosed(targets, vt, sizes, atom_of)
                  if atoms not in disclosed]
    chosen: set[int] = set()
    found: list[tuple[int, np.ndarray]] = []
    if not disclosed:
        return chosen, found
    free = _free(u)
    for atoms in disclosed:
        indicator = np.zeros(matrix.shape[1])
        indicator[list(atoms)] = 1.0
        weights = u @ ((vt @ indicator) / sigma)
        used = np.flatnonzero(np.abs(weights) > 1e-6)
        essential = {int(i) for i in used if free[i] < 1e-6}
        if chosen & essential:
            continue  # a count this set needs already goes this round
        found.append((int(sizes[list(atoms)].sum()), used))
        chosen.add(min(essential) if essential else int(used.min()))
    return chosen, found


def audit_sets(sets: Sequence[frozenset], minimum: int = MIN_REPORTED_CLIENTS,
               targets: Sequence[frozenset] = (), max_rounds: int = 200,
               keep: int = 0) -> set[int]:
    """Positions of the published client sets whose counts must be withheld so that no
    1..minimum-1 clients can be worked out from the rest; ``sets`` in the order to hide
    them (most hideable first). The same audit as :func:`audit_disclosure`, on bare sets;
    ``targets``: further small sets a reader is after (e.g. the difference of two counts of
    one unit), checked whole as well as atoms and pairs of atoms, like the small differences
    of nested sets (:func:`_small_differences`, always). The last ``keep`` sets are
    published elsewhere and are never chosen: a disclosure that needs one of them loses its
    first other count instead (one by one, until nothing is disclosed)."""
    fixed = len(sets) - keep
    hidden: set[int] = set()
    small = [t for t in [*targets, *_small_differences(sets, minimum)] if 0 < len(t) < minimum]
    for _ in range(max_rounds):
        live = [i for i in range(len(sets)) if sets[i] and i not in hidden]
        if not live:
            break
        chosen, found = _resolve([sets[i] for i in live], minimum, small)
        chosen_rows = {live[i] for i in chosen}
        picks: set[int] = set()
        for _, used in found:
            rows = sorted(live[i] for i in used)
            if picks & set(rows):
                continue
            hideable = [r for r in rows if r < fixed]
            mine = [r for r in hideable if r in chosen_rows]
            if mine or hideable:
                picks.add((mine or hideable)[0])
        if not picks:
            break  # nothing left that this page may hide
        hidden.update(picks)
    return hidden


def audit_disclosure(members: Mapping[Cell, Collection], plan: DisclosurePlan,
                     minimum: int | None = None, max_rounds: int = 200
                     ) -> tuple[frozenset[Cell], list[Disclosure]]:
    """Cells whose counts must also be hidden so that no 1..minimum-1 clients can be worked
    out from the counts the plan publishes, and the disclosures found on the way.

    ``members`` maps each published cell whose clients are known to the set of its client
    ids (:func:`folder_members`); cells the plan hides (whole or count-only) are ignored.
    Each round hides, for every disclosed set not yet resolved in that round, its smallest
    essential count (a report's clients per group last: hiding them drops the group from
    counts and figures, and a title count withholds a report)."""
    minimum = plan.minimum if minimum is None else minimum
    by_set = _published_sets(members, plan)
    targets = _small_hidden(members, plan, minimum) + _small_differences(by_set, minimum)
    order = sorted(by_set, key=lambda s: (*_last_to_hide(by_set[s]), len(s), by_set[s][0]))
    extra: set[Cell] = set()
    found: list[Disclosure] = []
    for _ in range(max_rounds):
        chosen, disclosures = _resolve(order, minimum, targets)
        if not chosen:
            break
        found += [Disclosure(size, tuple(by_set[order[i]][0] for i in used))
                  for size, used in disclosures]
        for index in sorted(chosen, reverse=True):
            extra.update(by_set[order[index]])
            del order[index]
    return frozenset(extra), found



# ---------------------------------------------------------------------------------------------
# large folders: the same audit, block by block


def client_blocks(members: Mapping[Cell, Collection], plan: DisclosurePlan
                  ) -> list[frozenset]:
    """Clients grouped so that no published count of a slice report crosses two groups.

    Clients joined by a published (not hidden) set of a slice report (not the pooled one)
    are in the same block (union-find: slices sharing clients end up in one block); every
    client no slice report publishes (those of withheld slices, or of the pooled report
    only) is in one last block. Largest first."""
    parent: dict[object, object] = {}

    def find(x: object) -> object:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    everyone: set = set()
    for cell, clients in members.items():
        if not clients or plan.counts_hidden(*cell):
            continue
        everyone.update(clients)
        if cell[0] == POOLED:
            continue
        it = iter(clients)
        first = next(it)
        root = find(parent.setdefault(first, first))
        for client in it:
            other = find(parent.setdefault(client, client))
            if other != root:
                parent[other] = root
    blocks: dict[object, set] = {}
    for client in parent:
        blocks.setdefault(find(client), set()).add(client)
    rest = everyone - set(parent)
    out = [frozenset(b) for b in blocks.values()] + ([frozenset(rest)] if rest else [])
    return sorted(out, key=lambda b: (-len(b), min(map(str, b))))


def block_cost(members: Mapping[Cell, Collection], plan: DisclosurePlan) -> int:
    """The largest (published sets touching a block x its clients) of :func:`client_blocks`,
    the size :data:`~mfr_analysis.report.disclosure.AUDIT_BUDGET` is compared with."""
    sets = {frozenset(c) for cell, c in members.items() if c and not plan.counts_hidden(*cell)}
    cost = 0
    for block in client_blocks(members, plan):
        cost = max(cost, sum(1 for s in sets if not s.isdisjoint(block)) * len(block))
    return cost


def audit_blocks(members: Mapping[Cell, Collection], plan: DisclosurePlan,
                 minimum: int | None = None, max_rounds: int = 200
                 ) -> tuple[frozenset[Cell], list[Disclosure]]:
    """:func:`audit_disclosure` for folders too large for one SVD: each block of
    :func:`client_blocks` is audited alone, with every published set restricted to it.

    Sound (it finds every disclosure the whole-folder audit would, maybe more):

    * a published set ``S`` is the sum of its restrictions ``S & B`` over the blocks, so the
      row space of the restricted sets contains the row space of the published ones: a
      reader of the real folder knows no more than the block audit assumes;
    * the restricted matrix is block-diagonal, so an indicator ``e_T`` lies in its row space
      iff every ``e_{T & B}`` lies in the row space of block ``B``'s rows; the atoms of a
      block are the folder's atoms cut by the block (membership of ``S & B`` is membership
      of ``S`` inside ``B``). So if an atom or pair of 1..minimum-1 clients is disclosed in
      the folder, some non-empty part of it, itself an atom or pair of at most as many
      clients, is disclosed in a block, and is reported here;
    * a block disclosure is resolved by hiding a real published count: a restricted row is
      taken away by hiding every published set with that restriction (a slice report's
      count is its own restriction; a pooled count whose restriction is essential goes
      count-only), and the check repeats until no block discloses anything.

    Blocks follow the slices, so slice counts are never cut; only the pooled counts are, and
    hiding a pooled count is the price of not solving one system over the whole folder."""
    minimum = plan.minimum if minimum is None else minimum
    by_set = _published_sets(members, plan)
    targets = _small_hidden(members, plan, minimum) + _small_differences(by_set, minimum)
    blocks = client_blocks({cells[0]: s for s, cells in by_set.items()}, plan)
    block_of = {client: index for index, block in enumerate(blocks) for client in block}
    pieces: list[dict[frozenset, list[frozenset]]] = [{} for _ in blocks]
    for s in by_set:  # each set cut by the blocks, once
        split: dict[int, list] = {}
        for client in s:
            split.setdefault(block_of[client], []).append(client)
        for index, part in split.items():
            pieces[index].setdefault(frozenset(part), []).append(s)
    extra: set[Cell] = set()
    found: list[Disclosure] = []
    alive = set(by_set)
    for index in range(len(blocks)):
        # a hidden cell's part in this block is determined if the cell is (soundness above)
        inside = [t & blocks[index] for t in targets if t & blocks[index]]
        for _ in range(max_rounds):
            rows = {part: [s for s in sets if s in alive]
                    for part, sets in pieces[index].items()}
            rows = {part: sets for part, sets in rows.items() if sets}

            def rank_key(part: frozenset, rows: dict = rows) -> tuple:
                cells = [c for s in rows[part] for c in by_set[s]]
                return (*_last_to_hide(cells), len(rows[part]),
                        min(len(s) for s in rows[part]), min(cells))

            order = sorted(rows, key=rank_key)
            chosen, disclosures = _resolve(order, minimum, inside)
            if not chosen:
                break
            found += [Disclosure(size, tuple(by_set[rows[order[i]][0]][0] for i in used))
                      for size, used in disclosures]
            for row in chosen:
                for s in rows[order[row]]:
                    extra.update(by_set[s])
                    alive.discard(s)
    return frozenset(extra), found

# ---------------------------------------------------------------------------------------------
# the client sets of what one report publishes


def _groups(sessions: pd.DataFrame) -> dict[str, frozenset]:
    out = {ALL: frozenset(sessions["client_id"].astype("str"))}
    if "audience_group" in sessions:
        grouped = sessions.dropna(subset=["audience_group"]).groupby(
            sessions["audience_group"].dropna().astype("str"), observed=True)["client_id"]
        out.update({str(g): frozenset(c.astype("str")) for g, c in grouped})
    return out


def _claims_members(sessions: pd.DataFrame, claims: pd.DataFrame, slice_value: str
                    ) -> dict[Cell, frozenset]:
    """Clients of every claims row (and its arms), from the claims engine's per-client
    units; rows whose rebuilt size differs from their ``n_clients`` are left out."""
    from mfr_analysis.claims.engine import claim_inputs
    from mfr_analysis.privacy import part_counts

    series = claim_inputs(sessions).series
    parts = part_counts(claims)
    out: dict[Cell, frozenset] = {}
    for index, row in claims.iterrows():
        measure = claim_measure(str(row["claim_id"]), str(row["outcome"]))
        data = series.get(measure)
        if data is None or data.units.empty:
            continue
        units = data.units
        group = str(row["audience_group"])
        if group != ALL:
            units = units[units["group"].astype("str") == group]
        every = frozenset(units["client_id"].astype("str"))
        control = (frozenset(units.loc[units["control"].astype(bool), "client_id"].astype("str"))
                   if "control" in units else frozenset())
        n = pd.to_numeric(pd.Series([row["n_clients"]]), errors="coerce").iloc[0]
        treated = every - control
        if len(every) == n:
            out[(slice_value, group, measure)] = every
            if row.get("design") == "controlled":
                if len(control) == parts.at[index, "control"]:
                    out[(slice_value, group, f"{measure}#control")] = control
                if len(treated) == parts.at[index, "treated"]:
                    out[(slice_value, group, f"{measure}#treated")] = treated
        elif len(treated) == n:  # an uncontrolled row of the MFR clients only
            out[(slice_value, group, measure)] = treated
    return out


def _described_members(sessions: pd.DataFrame, claims: pd.DataFrame, slice_value: str,
                       rows: Mapping[Cell, frozenset]) -> dict[Cell, frozenset]:
    """Clients of the flow's boxes, Table 1's arms and counts (with and without each value,
    each level), the follow-up table and the reliable-change classes."""
    from mfr_analysis.describe._common import client_arms
    from mfr_analysis.describe.baseline import baseline_members
    from mfr_analysis.describe.flow import PAIRS
    from mfr_analysis.describe.followup import followup_members
    from mfr_analysis.describe.individual import individual_change

    out: dict[Cell, frozenset] = {}
    arms = client_arms(sessions)
    arms.index = arms.index.astype("str")
    ids = sessions["client_id"].astype("str")

    def having(before: str, after: str) -> frozenset:
        if before not in sessions or after not in sessions:
            return frozenset()
        return frozenset(ids[sessions[before].notna() & sessions[after].notna()])

    for arm in sorted(set(arms)):
        in_arm = frozenset(arms.index[arms == arm])
        out[(slice_value, ALL, f"flow:arm#{arm}")] = in_arm
        for outcome, (before, after, _) in PAIRS.items():
            pair = in_arm & having(before, after)
            out[(slice_value, ALL, f"flow:pair_{outcome}_{arm}#with")] = pair
            out[(slice_value, ALL, f"flow:pair_{outcome}_{arm}#without")] = in_arm - pair
        pain = in_arm & having("pain_pre", "pain_post")
        follow = pain & having("pain_pre", "pain_followup")
        out[(slice_value, ALL, f"flow:followup_{arm}#with")] = follow
        out[(slice_value, ALL, f"flow:followup_{arm}#without")] = pain - follow
    for (s, g, m), clients in rows.items():
        if g == ALL and "#" not in m:
            out[(s, ALL, f"flow:analysed[{m}]")] = clients
    for group, clients in _groups(sessions).items():
        for arm in sorted(set(arms)):
            out[(slice_value, group, f"baseline:clients#{arm}")] = clients & frozenset(
                arms.index[arms == arm])
    out.update(baseline_members(sessions, slice_value))
    out.update(followup_members(sessions, slice_value))
    change = individual_change(sessions)
    change = change.assign(client_id=change["client_id"].astype("str"))
    for group, rows_of in [(ALL, change), *change.groupby("audience_group", sort=True)]:
        for arm, of_arm in rows_of.groupby("arm", sort=True):
            out[(slice_value, str(group), f"individual:pair#{arm}")] = frozenset(
                of_arm["client_id"])
            for level, of_class in of_arm.groupby("rci_class", sort=True):
                out[(slice_value, str(group),
                     f"individual:reliable_change_{arm}#{level}")] = frozenset(
                    of_class["client_id"])
    return out


def report_members(sessions: pd.DataFrame, claims: pd.DataFrame | None,
                   slice_value: str) -> dict[Cell, frozenset]:
    """The client set of every count one report publishes that can be rebuilt from its
    session table: its clients per group, claims rows and arms, flow boxes, Table 1 arms
    and reliable-change classes (keys are disclosure cells)."""
    out = {(slice_value, g, CLIENTS): c for g, c in _groups(sessions).items()}
    rows = _claims_members(sessions, claims, slice_value) if claims is not None else {}
    out.update(rows)
    out.update(_described_members(sessions, claims, slice_value, rows))
    return out


def set_digest(clients: Iterable[object]) -> str:
    """A short SHA-256 of a set of clients (sorted ids): lets a page ask whether another page
    publishes exactly these clients without being given their ids."""
    import hashlib

    text = "\n".join(sorted(str(client) for client in clients))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def verified(members: Mapping[Cell, Collection], counts: pd.DataFrame
             ) -> dict[Cell, Collection]:
    """The members whose size is the count the plan has for their cell (the others, and
    cells the plan does not know, are left to the line-based plan)."""
    known = {(str(s), str(g), str(m)): int(c) for s, g, m, c in counts[
        ["slice", "group", "measure", "clients"]].itertuples(index=False)}
    return {cell: clients for cell, clients in members.items()
            if known.get(cell) == len(clients)}


def folder_members(reports: Iterable[tuple[str, pd.DataFrame, pd.DataFrame | None]],
                   counts: pd.DataFrame) -> dict[Cell, Collection]:
    """Verified client sets of every report ``(slice_value, sessions, claims)`` of a
    folder (see :func:`report_members` and :func:`verified`)."""
    members: dict[Cell, Collection] = {}
    for slice_value, sessions, claims in reports:
        members.update(report_members(sessions, claims, slice_value))
    return verified(members, counts)


__all__ = ["Disclosure", "MIN_REPORTED_CLIENTS", "audit_blocks", "audit_disclosure", "audit_sets",
           "block_cost", "client_blocks", "disclosed_sets", "essential_rows", "folder_members",
           "report_members", "row_space_projector", "set_digest", "verified"]
