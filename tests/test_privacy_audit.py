"""Count-only complementary suppression, implicit remainders and the exact linear audit.

The attacker here is linear algebra: every published count of clients is a set of clients,
and a group of 1-10 clients is disclosed when its indicator is a combination of published
sets. The checks below use numpy's least squares directly (independent of the audit's own
SVD), on hand-made cases whose answer is worked out by hand, and on a whole report folder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.privacy import (
    ALL,
    CLIENTS,
    POOLED,
    claim_counts,
    claim_measure,
    plan_disclosure,
    protect_claims,
    session_counts,
)

MINIMUM = 11


def _sessions(groups: dict[str, int]) -> pd.DataFrame:
    rows = [{"client_id": f"{g}-{i}", "audience_group": g} for g, n in groups.items()
            for i in range(n)]
    return pd.DataFrame(rows)


def _claims(n_clients: list[int], groups: list[str]) -> pd.DataFrame:
    k = len(groups)
    return pd.DataFrame({
        "claim_id": ["pain"] * k, "audience_group": groups, "outcome": ["pain"] * k,
        "estimate": [-1.5] * k, "ci_low": [-2.0] * k, "ci_high": [-1.0] * k, "mcid": [2.0] * k,
        "n_clients": n_clients, "n_sessions": [4 * n for n in n_clients], "note": [""] * k,
        "method": ["on clients"] * k, "design": ["uncontrolled"] * k,
        "verdict": ["below_threshold"] * k})


def _in_row_space(sets: list[set], target: set) -> bool:
    """Independent attacker: is the indicator of ``target`` a combination of the sets?"""
    people = sorted(set().union(*sets) | target)
    index = {p: i for i, p in enumerate(people)}
    matrix = np.zeros((len(sets), len(people)))
    for row, members in enumerate(sets):
        matrix[row, [index[p] for p in members]] = 1.0
    goal = np.zeros(len(people))
    goal[[index[p] for p in target]] = 1.0
    weights, *_ = np.linalg.lstsq(matrix.T, goal, rcond=None)
    return bool(np.allclose(matrix.T @ weights, goal, atol=1e-8))


# --- gap 1: the report's clients minus a row's clients ------------------------------------


def test_the_title_count_minus_a_rows_clients_is_planned() -> None:
    # 90 clients (40 athletes, 50 seniors); the pain claim has data for 87 of them: 3 seniors
    # have no pain pair. 90 - 87 = 3 and 50 - 47 = 3 would reveal them: both row counts go,
    # count-only (the estimates over 87 and 47 clients stay); the athletes' 40 stays.
    sessions = _sessions({"athlete": 40, "senior": 50})
    claims = _claims([87, 40, 47], [ALL, "athlete", "senior"])
    counts = pd.concat([session_counts(sessions), claim_counts(claims)], ignore_index=True)
    plan = plan_disclosure(counts, minimum=MINIMUM)
    assert plan.is_count_only(POOLED, ALL, "pain|pain")
    assert plan.is_count_only(POOLED, "senior", "pain|pain")
    assert not plan.counts_hidden(POOLED, "athlete", "pain|pain")
    protected = protect_claims(claims, plan)
    assert protected["n_clients"].isna().tolist() == [True, False, True]
    assert protected["estimate"].tolist() == [-1.5] * 3
    assert protected["verdict"].tolist() == ["below_threshold"] * 3
    # the attacker: every shown title or group count minus every shown row count of it
    shown = protected.set_index("audience_group")["n_clients"].dropna()
    title = {ALL: 90, "athlete": 40, "senior": 50}
    assert not [g for g, n in shown.items() if 1 <= title[g] - n < MINIMUM]


def test_words_for_a_count_withheld_as_a_complement() -> None:
    from mfr_analysis.report.wording import clients_text

    row = pd.Series({"verdict": "below_threshold", "n_clients": np.nan, "estimate": -1.5,
                     "design": "uncontrolled"})
    assert clients_text(row, MINIMUM) == "clients: withheld"
    assert clients_text(row.assign(verdict="suppressed") if False else pd.Series(
        {**row.to_dict(), "verdict": "suppressed"}), MINIMUM) == ""


# --- the audit's rank test on a hand-made matrix ------------------------------------------


def test_a_pair_of_atoms_is_found_when_neither_atom_alone_is() -> None:
    from mfr_analysis.privacy_audit import disclosed_sets, essential_rows

    # atoms a (2 clients), b (3), c (20), d (20); published: T = abcd, U = cd, V = ac,
    # W = bd. V + W = T, so the rank is 3; the null space is (-1, 1, 1, -1): neither e_a nor
    # e_b is orthogonal to it, e_a + e_b is: a and b together = T - U = 5 clients.
    matrix = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=float)
    sizes = np.array([2, 3, 20, 20])
    assert disclosed_sets(matrix, sizes, MINIMUM) == [(0, 1)]
    # T can be replaced by V + W, so only U is essential to it
    assert essential_rows(matrix, (0, 1)) == [1]
    # with a (2) and b (12): the pair holds 14 clients, nothing small is disclosed
    assert disclosed_sets(matrix, np.array([2, 12, 20, 20]), MINIMUM) == []
    # a single atom: T minus U minus W = a (2 clients) once W is b alone
    alone = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0]], dtype=float)
    assert disclosed_sets(alone, np.array([2, 30, 20, 20]), MINIMUM) == [(0,)]


def test_the_audit_hides_the_count_that_resolves_a_pair() -> None:
    from mfr_analysis.privacy_audit import audit_disclosure

    people = {k: {f"{k}{i}" for i in range(n)} for k, n in
              {"a": 2, "b": 3, "c": 20, "d": 20}.items()}
    sets = {"T": "abcd", "U": "cd", "V": "ac", "W": "bd"}
    members = {(POOLED, ALL, f"x:{name}"): set().union(*(people[k] for k in atoms))
               for name, atoms in sets.items()}
    counts = pd.DataFrame([{"slice": s, "group": g, "measure": m, "clients": len(c),
                            "sessions": 0} for (s, g, m), c in members.items()])
    plan = plan_disclosure(counts, minimum=MINIMUM)
    assert not plan.hidden and not plan.count_hidden  # no line sees T - U
    extra, found = audit_disclosure(members, plan)
    assert extra == {(POOLED, ALL, "x:U")} and found[0].clients == 5
    shown = [c for cell, c in members.items() if cell not in extra]
    assert not _in_row_space(shown, people["a"] | people["b"])


def test_the_audit_hides_a_describe_count_before_a_claims_rows_clients() -> None:
    """The pain row's 50 clients and the flow's 55 MFR clients with a pain pair give 5
    clients; either count closes it. The row's would take its standard error and p-values
    with it, so the flow box goes, although it is the larger count."""
    from mfr_analysis.privacy_audit import audit_disclosure

    everyone = {f"c{i}" for i in range(100)}
    row, box = {f"c{i}" for i in range(50)}, {f"c{i}" for i in range(55)}
    members = {(POOLED, ALL, CLIENTS): everyone, (POOLED, ALL, "pain|pain"): row,
               (POOLED, ALL, "flow:pair_pain_mfr#with"): box}
    counts = pd.DataFrame([{"slice": s, "group": g, "measure": m, "clients": len(c),
                            "sessions": 0} for (s, g, m), c in members.items()])
    plan = plan_disclosure(counts, minimum=MINIMUM)
    assert not plan.count_hidden  # no line relates the row and the box
    extra, found = audit_disclosure(members, plan)
    assert found and found[0].clients == 5
    assert extra == {(POOLED, ALL, "flow:pair_pain_mfr#with")}
    assert not _in_row_space([everyone, row], box - row)


# --- gap 2: a complement recomputed through another table ---------------------------------


def _chain() -> tuple[dict, pd.DataFrame]:
    """MFR arm 60 clients, 3 of them without a pain pair; control arm 45, 15 without. The
    pain claim (all clients with a pair: 57 + 30 = 87) minus the control clients with a pair
    (30) gives the MFR clients with a pair (57), hidden in the flow as the complement of the
    3; 60 - 57 = 3."""
    mfr = [f"m{i}" for i in range(60)]
    control = [f"c{i}" for i in range(45)]
    pair_mfr, pair_control = set(mfr[:57]), set(control[:30])
    members = {
        (POOLED, ALL, CLIENTS): set(mfr) | set(control),
        (POOLED, ALL, "flow:arm#mfr"): set(mfr), (POOLED, ALL, "flow:arm#control"): set(control),
        (POOLED, ALL, "flow:pair_pain_mfr#with"): pair_mfr,
        (POOLED, ALL, "flow:pair_pain_mfr#without"): set(mfr) - pair_mfr,
        (POOLED, ALL, "flow:pair_pain_control#with"): pair_control,
        (POOLED, ALL, "flow:pair_pain_control#without"): set(control) - pair_control,
        (POOLED, ALL, "pain|pain"): pair_mfr | pair_control,
    }
    twins = {"flow:arm": CLIENTS, "flow:pair_pain_mfr": "flow:arm#mfr",
             "flow:pair_pain_control": "flow:arm#control"}
    records = [{"slice": s, "group": g, "measure": m, "clients": len(c), "sessions": 0,
                "twin": ""} for (s, g, m), c in members.items()]
    records += [{"slice": POOLED, "group": ALL, "measure": base, "sessions": 0, "twin": twin,
                 "clients": len(members[(POOLED, ALL, twin)])} for base, twin in twins.items()]
    return members, pd.DataFrame(records)


def test_a_complement_recomputed_through_another_table_is_found_and_hidden() -> None:
    from mfr_analysis.privacy_audit import audit_disclosure

    members, counts = _chain()
    three = members[(POOLED, ALL, "flow:pair_pain_mfr#without")]
    plan = plan_disclosure(counts, minimum=MINIMUM)
    assert plan.is_hidden(POOLED, ALL, "flow:pair_pain_mfr#without")  # primary
    assert plan.is_count_only(POOLED, ALL, "flow:pair_pain_mfr#with")  # its complement
    published = [c for cell, c in members.items() if not plan.counts_hidden(*cell)]
    assert _in_row_space(published, three)  # the lines alone leave the chain open
    extra, found = audit_disclosure(members, plan)
    assert found and found[0].clients == 3
    final = plan_disclosure(counts, minimum=MINIMUM, count_hide=extra)
    published = [c for cell, c in members.items() if not final.counts_hidden(*cell)]
    assert not _in_row_space(published, three)
    assert audit_disclosure(members, final)[0] == frozenset()
    # the claim keeps its estimate: only counts were hidden
    assert not final.is_hidden(POOLED, ALL, "pain|pain")


# --- a whole folder, sliced by audience group ---------------------------------------------


@pytest.fixture(scope="module")
def group_folder(simulated_logs, tmp_path_factory: pytest.TempPathFactory):
    """The simulated clean table, its folder plan by audience group, and every report."""
    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.pipeline import load_sessions, run_clean
    from mfr_analysis.report.disclosure import plan_folder, slice_values
    from mfr_analysis.report.views import slice_sessions

    clean = tmp_path_factory.mktemp("audit-clean")
    run_clean([simulated_logs], clean, progress=False)
    sessions = load_sessions([clean / "sessions.parquet"])
    tables: dict[str, pd.DataFrame] = {}

    def evaluate(part: pd.DataFrame) -> pd.DataFrame:
        value = "" if len(part) == len(sessions) else str(part["audience_group"].iloc[0])
        tables[value] = evaluate_claims(part)
        return tables[value]

    folder = plan_folder(sessions, "audience_group", evaluate, minimum=MINIMUM)
    reports = [(v, slice_sessions(sessions, "audience_group", v) if v else sessions,
                tables[v]) for v in ["", *slice_values(sessions, "audience_group")]
               if v in tables]
    return folder, reports


def test_no_linear_combination_of_a_folders_counts_reveals_1_to_10_clients(group_folder
                                                                             ) -> None:
    from mfr_analysis.privacy_audit import _atoms, report_members

    folder, reports = group_folder
    plan = folder.plan
    members: dict = {}
    for value, sessions, claims in reports:
        members.update(report_members(sessions, claims, value))
    # what the folder publishes: the protected claims rows' counts, the describe and title
    # counts the plan leaves shown (sizes as published)
    published: dict[frozenset, tuple] = {}
    for item in folder.slices:
        shown = item.claims.dropna(subset=["n_clients"])
        for row in shown.itertuples(index=False):
            cell = (item.value, str(row.audience_group), f"{row.claim_id}|{row.outcome}")
            if cell in members and len(members[cell]) == int(row.n_clients):
                published[frozenset(members[cell])] = cell
    for cell, clients in members.items():
        if "|" not in cell[2] and not plan.counts_hidden(*cell) and not plan.is_withheld(
                cell[0]):
            published[frozenset(clients)] = cell
    sets = [s for s in published if s]
    assert len(sets) > 40  # distinct sets: titles, claims rows and describe boxes
    matrix, sizes = _atoms(sets)
    # the attacker: every atom and pair of atoms of 1-10 clients, by least squares
    small = np.flatnonzero(sizes < MINIMUM)
    rank = np.linalg.matrix_rank(matrix)
    leaks = []
    for i in small:
        probe = np.vstack([matrix, np.eye(matrix.shape[1])[i]])
        if np.linalg.matrix_rank(probe) == rank:
            leaks.append((int(sizes[i]), [published[sets[r]] for r in np.flatnonzero(
                matrix[:, i])][:3]))
    assert leaks == []
    pairs = [(i, j) for i in small for j in small if i < j and sizes[i] + sizes[j] < MINIMUM]
    basis = np.linalg.svd(matrix)[2][:rank]
    for i, j in pairs:
        e = np.zeros(matrix.shape[1])
        e[[i, j]] = 1.0
        assert not np.isclose(np.linalg.norm(basis @ e) ** 2, 2.0), (i, j)


def test_the_folder_plan_keeps_estimates_of_complements(group_folder) -> None:
    folder, _ = group_folder
    plan = folder.plan
    assert plan.count_hidden  # complements exist on the simulated data ...
    pooled = folder.slices[0].claims
    count_only = [plan.is_count_only(POOLED, str(g), claim_measure(c, o, s))
                  for c, g, o, s in zip(pooled["claim_id"], pooled["audience_group"],
                                        pooled["outcome"], pooled["sensitivity"], strict=True)]
    rows = pooled[count_only]
    # ... and a count-only row keeps its verdict and estimate but shows no count
    assert rows["n_clients"].isna().all() and rows["n_sessions"].isna().all()
    assert (rows["verdict"] != "suppressed").all()
    measured = rows[rows["verdict"] != "not_measured"]
    assert measured["estimate"].notna().all()


# --- large folders: the audit block by block ----------------------------------------------


def _sites() -> tuple[dict, dict]:
    """Three sites of a folder by site. Site B has atoms a (2 clients), b (3), c (20), d (20)
    and publishes U = cd, V = ac, W = bd but not its own total; the pooled total minus the
    totals of sites A and C gives abcd, and abcd - U = a and b together (5 clients)."""
    people = {k: {f"B-{k}{i}" for i in range(n)} for k, n in
              {"a": 2, "b": 3, "c": 20, "d": 20}.items()}
    site_a, site_c = {f"A-{i}" for i in range(40)}, {f"C-{i}" for i in range(30)}
    members = {("B", ALL, f"x:{name}"): set().union(*(people[k] for k in atoms))
               for name, atoms in {"U": "cd", "V": "ac", "W": "bd"}.items()}
    members |= {("A", ALL, CLIENTS): site_a, ("A", ALL, "x:U"): set(sorted(site_a)[:25]),
                ("C", ALL, CLIENTS): site_c, ("C", ALL, "x:V"): set(sorted(site_c)[:15]),
                (POOLED, ALL, CLIENTS): site_a | site_c | set().union(*people.values()),
                (POOLED, ALL, "x:U"): set(sorted(site_a)[:25]) | members[("B", ALL, "x:U")]}
    return members, people


def test_a_disclosure_inside_one_site_is_found_block_by_block() -> None:
    from mfr_analysis.privacy_audit import audit_blocks, audit_disclosure, client_blocks

    members, people = _sites()
    counts = pd.DataFrame([{"slice": s, "group": g, "measure": m, "clients": len(c),
                            "sessions": 0} for (s, g, m), c in members.items()])
    plan = plan_disclosure(counts, minimum=MINIMUM)
    blocks = client_blocks(members, plan)
    assert sorted(len(b) for b in blocks) == [30, 40, 45]  # the sites, never cut
    assert _in_row_space([c for cell, c in members.items() if not plan.counts_hidden(*cell)],
                         people["a"] | people["b"])
    extra, found = audit_blocks(members, plan)
    assert found and found[0].clients == 5
    # B's U and the pooled U cut to site B are the same row: both go, count-only
    assert extra == {("B", ALL, "x:U"), (POOLED, ALL, "x:U")}
    final = plan_disclosure(counts, minimum=MINIMUM, count_hide=extra)
    shown = [c for cell, c in members.items() if not final.counts_hidden(*cell)]
    assert not _in_row_space(shown, people["a"] | people["b"])
    # the whole-folder audit agrees: nothing is left
    assert audit_disclosure(members, final)[0] == frozenset()
    assert audit_disclosure(members, plan)[0]  # which the whole audit also sees


def test_the_budget_chooses_blocks_and_they_leave_nothing_to_the_whole_audit(
        group_folder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    from mfr_analysis import privacy_audit
    from mfr_analysis.report import disclosure

    folder, reports = group_folder
    tables = {value: claims for value, _, claims in reports}
    sessions = reports[0][1]

    def evaluate(part: pd.DataFrame) -> pd.DataFrame:
        return tables["" if len(part) == len(sessions) else str(part["audience_group"].iloc[0])]

    calls: dict[str, list] = {"audit_blocks": [], "audit_disclosure": []}
    for name in calls:
        original = getattr(privacy_audit, name)

        def spy(members, plan, *args, _name=name, _original=original, **kwargs):
            calls[_name].append(members)
            return _original(members, plan, *args, **kwargs)
        monkeypatch.setattr(privacy_audit, name, spy)
    # as shipped, the sample by audience group is under the budget: audited as a whole,
    # with the same plan as before
    same = disclosure.plan_folder(sessions, "audience_group", evaluate, minimum=MINIMUM)
    assert calls["audit_disclosure"] and not calls["audit_blocks"]
    assert same.plan == folder.plan
    members = calls["audit_disclosure"][0]
    # over the budget: block by block, and the whole audit finds nothing left
    calls["audit_disclosure"].clear()
    monkeypatch.setattr(disclosure, "AUDIT_BUDGET", 100_000)
    blocked = disclosure.plan_folder(sessions, "audience_group", evaluate, minimum=MINIMUM)
    assert calls["audit_blocks"] and not calls["audit_disclosure"]
    found, _ = privacy_audit.audit_disclosure(members, blocked.plan)
    assert found == frozenset()
    # a budget no block fits: skipped with a warning, the folder planned line by line only
    calls["audit_blocks"].clear()
    monkeypatch.setattr(disclosure, "AUDIT_BUDGET", 10)
    with caplog.at_level("WARNING"):
        disclosure.plan_folder(sessions, "audience_group", evaluate, minimum=MINIMUM)
    assert not calls["audit_blocks"]
    assert "even block by block" in caplog.text


def test_a_hidden_cell_split_into_three_atoms_is_still_found() -> None:
    """Seen in a rendered report: 5 control clients without follow-up were hidden, yet all
    clients minus those with follow-up minus the MFR clients without it gave them. Other
    counts split the 5 into three atoms, so neither an atom nor a pair is determined: the
    audit also checks every hidden small cell itself."""
    from mfr_analysis.privacy import DisclosurePlan
    from mfr_analysis.privacy_audit import audit_blocks, audit_disclosure

    followed = [f"f{i}" for i in range(35)]
    hidden = ["t1", "t2", "t3", "t4", "t5"]
    members = {
        ("", ALL, "everyone"): frozenset(followed + hidden),
        ("", ALL, "followed"): frozenset(followed),
        ("", ALL, "c1"): frozenset(followed[:12] + ["t1"]),
        ("", ALL, "c2"): frozenset(followed[12:24] + ["t2", "t3"]),
        ("", ALL, "without"): frozenset(hidden),
    }
    plan = DisclosurePlan(MINIMUM, None, frozenset({("", ALL, "without")}))
    for audit in (audit_disclosure, audit_blocks):
        extra, found = audit(members, plan)
        assert found and found[0].clients == 5, audit.__name__
        assert extra & {("", ALL, "everyone"), ("", ALL, "followed"), ("", ALL, "c1"),
                        ("", ALL, "c2")}, audit.__name__


def test_a_small_difference_of_two_counts_split_into_three_atoms_is_found() -> None:
    """Clients with any follow-up (50) minus those analysed for lasting relief (44, all of
    them among the 50) are 6 clients, a combination of two published counts; three other
    counts cut the 6 into three atoms of 2, so the atom and pair tests alone miss it."""
    from mfr_analysis.privacy import DisclosurePlan
    from mfr_analysis.privacy_audit import _small_differences, audit_disclosure

    followup, analysed = frozenset(range(50)), frozenset(range(44))
    cuts = [frozenset({44 + 2 * i, 45 + 2 * i}) | frozenset(range(10 * i, 10 * i + 10))
            for i in range(3)]
    assert _small_differences([followup, analysed, *cuts], 11) == [followup - analysed]
    members = {("", "all", name): clients for name, clients in
               [("followup", followup), ("lasting_relief", analysed),
                *((f"cut{i}", c) for i, c in enumerate(cuts))]}
    plan = DisclosurePlan(minimum=11, by=None, hidden=frozenset())
    extra, found = audit_disclosure(members, plan)
    assert 6 in [disclosure.clients for disclosure in found]
    assert extra & {("", "all", "followup"), ("", "all", "lasting_relief")}
