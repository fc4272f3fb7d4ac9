"""Disclosure control across a report folder: no count of 1-10 clients is shown, nor derivable
by adding or subtracting numbers published anywhere in the folder (issue 10, point 2).

The attack is automated the way a curious reader would do it: every count published in the
HTML pages and claims JSON files of one folder is collected, and every published total minus
its published parts is computed, within each report and across reports.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.privacy import (
    ALL,
    CLIENTS,
    POOLED,
    claim_counts,
    plan_disclosure,
    protect_claims,
    scrub_counts,
    session_counts,
)

MINIMUM = 11
SMALL_COUNT_TEXT = re.compile(
    r"(?<![\d.,])(?:[1-9]|10)\s+(?:control\s+)?(?:clients?|client slopes|adverse events?|"
    r"sessions?|events?)\b")


# ---------------------------------------------------------------------------------------------
# the attacker: collect every published count of a folder, try every subtraction


class _Tables(HTMLParser):
    """Rows of the HTML tables whose header names clients and sessions, and all text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _number(text: object) -> float:
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return np.nan


def _parts(row: dict) -> dict[str, float]:
    """Client counts a reader can read or derive inside one claims row."""
    value = {k: _number(row.get(k)) for k in (
        "n_clients", "n_control_clients", "responders", "responder_clients",
        "responders_control", "responder_clients_control")}
    return {"control": value["n_control_clients"],
            "treated": value["n_clients"] - value["n_control_clients"],
            "responders": value["responders"],
            "nonresponders": value["responder_clients"] - value["responders"],
            "responder_clients": value["responder_clients"],
            "responders_control": value["responders_control"],
            "nonresponders_control": value["responder_clients_control"]
            - value["responders_control"],
            "responder_clients_control": value["responder_clients_control"]}


def published_counts(folder: Path) -> pd.DataFrame:
    """Every client/session count the folder publishes: report, measure, group, values."""
    records = []
    for path in sorted(folder.glob("claims-*.json")):  # manifest.json holds no counts
        report = "pooled" if path.stem == "claims-all" else path.stem
        for row in json.loads(path.read_text(encoding="utf-8")):
            measure = f"{row['claim_id']}|{row['outcome']}"
            if row.get("sensitivity"):  # a missing-data sensitivity row: a cell of its own
                measure = f"{measure}@{row['sensitivity']}"
            records.append({"report": report, "file": path.name, "measure": measure,
                            "group": row["audience_group"],
                            "clients": _number(row.get("n_clients")),
                            "sessions": _number(row.get("n_sessions"))})
            for part, clients in _parts(row).items():  # counts inside the row
                records.append({"report": report, "file": path.name,
                                "measure": f"{measure}#{part}", "group": row["audience_group"],
                                "clients": clients, "sessions": np.nan})
    for path in sorted(folder.glob("*.html")):
        if path.name == "index.html":
            continue
        report = "pooled" if path.stem in ("claims-all", "data-quality") else path.stem
        parser = _Tables()
        parser.feed(path.read_text(encoding="utf-8"))
        text = " ".join("".join(parser.text).split())
        for clients, sessions in re.findall(r"([\d,]+) clients, ([\d,]+) sessions", text):
            records.append({"report": report, "file": path.name, "measure": CLIENTS,
                            "group": ALL, "clients": _number(clients),
                            "sessions": _number(sessions)})
        for table in parser.tables:
            if not table or [c.lower() for c in table[0][-2:]] != ["clients", "sessions"]:
                continue
            for row in table[1:]:
                records.append({"report": report, "file": path.name, "measure": CLIENTS,
                                "group": row[0], "clients": _number(row[-2]),
                                "sessions": _number(row[-1])})
    frame = pd.DataFrame.from_records(records)
    return frame.drop_duplicates(["report", "measure", "group", "clients", "sessions"])


def subtraction_leaks(counts: pd.DataFrame, minimum: int = MINIMUM) -> list[str]:
    """Every published count, or total minus published parts, of 1..minimum-1 clients/sessions."""
    leaks = []
    shown = counts.dropna(subset=["clients"])
    for row in shown.itertuples():
        if 1 <= row.clients < minimum:
            leaks.append(f"{row.file}: {row.measure} {row.group} shows {row.clients:g} clients")

    def check(where: str, total: pd.DataFrame, parts: pd.DataFrame) -> None:
        for column in ("clients", "sessions"):
            values = total[column].dropna()
            if values.empty:
                continue
            for value in values.unique():
                rest = value - parts[column].sum(min_count=0)
                if 1 <= abs(rest) < minimum:
                    leaks.append(f"{where}: {column} total {value:g} minus parts = {rest:g}")

    for (report, measure), rows in shown.groupby(["report", "measure"]):
        check(f"{report} {measure}", rows[rows["group"] == ALL], rows[rows["group"] != ALL])
    pooled = shown[shown["report"] == "pooled"]
    slices = shown[shown["report"] != "pooled"]
    if not slices.empty:
        for (measure, group), rows in pooled.groupby(["measure", "group"]):
            parts = slices[(slices["measure"] == measure) & (slices["group"] == group)]
            if group != ALL and parts.empty:
                continue
            check(f"across reports {measure} {group}", rows, parts)
    return leaks


def small_counts_in_text(folder: Path) -> list[str]:
    """Counts of 1-10 clients, sessions or events written in words anywhere in the folder."""
    found = []
    for path in [*folder.glob("*.html"), *folder.glob("claims-*.json")]:
        if path.suffix == ".html":
            parser = _Tables()
            parser.feed(path.read_text(encoding="utf-8"))
            text = " ".join("".join(parser.text).split())
        else:
            text = " ".join(str(r.get("note", "")) + " " + str(r.get("method", ""))
                            for r in json.loads(path.read_text(encoding="utf-8")))
        found += [f"{path.name}: {m}" for m in SMALL_COUNT_TEXT.findall(text)]
    return found


# ---------------------------------------------------------------------------------------------
# the plan on hand-made counts


def _clients(spec: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Sessions (one per client) of site -> {group: clients}."""
    rows = [{"client_id": f"{site}-{group}-{i}", "site": site, "audience_group": group}
            for site, groups in spec.items() for group, n in groups.items() for i in range(n)]
    return pd.DataFrame(rows)


def _site_counts(sessions: pd.DataFrame) -> pd.DataFrame:
    parts = [session_counts(sessions)]
    parts += [session_counts(rows, site) for site, rows in sessions.groupby("site")]
    return pd.concat(parts, ignore_index=True)


def test_a_small_site_and_its_complement_are_withheld() -> None:
    sessions = _clients({"A": {"athlete": 34, "senior": 54}, "B": {"athlete": 47, "senior": 50},
                         "T": {"athlete": 2, "senior": 1}})
    plan = plan_disclosure(_site_counts(sessions), by="site", minimum=MINIMUM)
    assert plan.withheld == {"A": "complementary", "T": "small"}  # A (88) is smaller than B (97)
    assert not plan.is_hidden(POOLED, ALL, CLIENTS)
    assert plan.is_hidden("A", "athlete", CLIENTS) and plan.is_hidden("T", ALL, CLIENTS)
    assert not plan.is_hidden("B", ALL, CLIENTS)


def test_no_complement_when_the_hidden_cells_already_add_up_to_the_minimum() -> None:
    sessions = _clients({"A": {"athlete": 34}, "B": {"athlete": 47}, "T": {"athlete": 6},
                         "U": {"athlete": 7}})
    plan = plan_disclosure(_site_counts(sessions), by="site", minimum=MINIMUM)
    assert plan.withheld == {"T": "small", "U": "small"}  # 13 hidden clients: safe together


def test_a_small_group_inside_a_report_gets_a_complement_in_its_line_and_column() -> None:
    # site A: chronic_pain 3 clients; hiding it alone would leave A's total minus its groups
    # = 3, so the smallest other group of A (athlete, 20) goes too; the athlete column then
    # has one hidden cell (A) of 20 clients: the pooled athletes minus B's athletes = 20, safe
    sessions = _clients({"A": {"athlete": 20, "senior": 30, "chronic_pain": 3},
                         "B": {"athlete": 40, "senior": 30, "chronic_pain": 25}})
    plan = plan_disclosure(_site_counts(sessions), by="site", minimum=MINIMUM)
    assert plan.hidden_groups("A") == ["athlete", "chronic_pain"]
    # pooled chronic_pain (28) minus B's (25) would show A's 3: B's chronic_pain goes too
    assert "chronic_pain" in plan.hidden_groups("B")
    published = [(s, g) for s, g, m in {(s, g, CLIENTS) for s in ("", "A", "B")
                 for g in ("athlete", "senior", "chronic_pain")} if not plan.is_hidden(s, g, m)]
    assert ("B", "senior") in published and ("", "chronic_pain") in published


def test_clients_in_two_groups_count_as_an_overlap_to_protect() -> None:
    # 4 clients appear in both groups: the total minus the groups is -4, which reveals them
    rows = _clients({"A": {"athlete": 30, "senior": 30}})
    both = rows.iloc[:4].assign(audience_group="senior")
    plan = plan_disclosure(session_counts(pd.concat([rows, both])), minimum=MINIMUM)
    assert plan.hidden_groups() == ["athlete"]


def test_sliced_by_group_a_hidden_group_has_no_report_and_a_complement() -> None:
    sessions = _clients({"A": {"athlete": 40, "senior": 30, "rehab": 4}})
    counts = [session_counts(sessions)]
    counts += [session_counts(rows, g) for g, rows in sessions.groupby("audience_group")]
    plan = plan_disclosure(pd.concat(counts, ignore_index=True), by="audience_group",
                           minimum=MINIMUM)
    assert plan.withheld == {"rehab": "small", "senior": "complementary"}
    assert plan.hidden_groups() == ["rehab", "senior"]


def test_claims_rows_follow_their_people_and_notes_lose_small_counts() -> None:
    claims = pd.DataFrame({
        "claim_id": ["pain"] * 3, "audience_group": [ALL, "athlete", "senior"],
        "outcome": ["pain"] * 3, "estimate": [-1.0, -3.0, -0.5], "ci_low": [-2.0, -5.0, -1.0],
        "ci_high": [0.0, -1.0, 0.0], "p_value": [0.01, 0.02, 0.2],
        "p_adjusted": [0.02, 0.02, 0.2], "mcid": [2.0] * 3, "n_clients": [60, 7, 53],
        "n_sessions": [200, 30, 170], "method": ["m"] * 3,
        "verdict": ["below_threshold", "supported", "inconclusive"],
        "note": ["controlled: compared with the control arm (50 control clients)",
                 "6 clients with data", "control arm too small (4 clients); 3 adverse events"],
        "design": ["controlled", "uncontrolled", "uncontrolled"],
        "responder_share": [0.5, 0.9, 0.1],
    })
    sessions = _clients({"A": {"athlete": 7, "senior": 53}})
    counts = pd.concat([session_counts(sessions), claim_counts(claims)], ignore_index=True)
    plan = plan_disclosure(counts, minimum=MINIMUM)
    protected = protect_claims(claims, plan)
    # athlete is small: hidden whole; senior is its complement (60 - 53 = 7): only its
    # counts go (a mean over 53 clients reveals no count), its estimate and verdict stay
    assert protected["verdict"].tolist() == ["below_threshold", "suppressed", "inconclusive"]
    assert protected.loc[1, ["estimate", "n_clients", "n_sessions"]].isna().all()
    assert protected.loc[2, ["n_clients", "n_sessions"]].isna().all()
    assert protected.loc[2, "estimate"] == -0.5 and protected.loc[2, "ci_low"] == -1.0
    assert plan.is_count_only(POOLED, "senior", "pain|pain")
    assert protected.loc[1:, "mcid"].tolist() == [2.0, 2.0]
    assert "6 clients" not in " ".join(protected["note"])
    # every count of the count-only row's note is withheld, not only the small ones
    assert protected.loc[2, "note"] == ("control arm too small (a withheld number of clients); "
                                        "a withheld number of adverse events")
    # pooled: 60 clients, 50 control -> 10 MFR clients: the arm sizes are withheld ...
    assert "50 control" not in protected.loc[0, "note"]
    # ... and so is a responder share of 10 MFR clients (5 responders)
    assert pd.isna(protected.loc[0, "responder_share"])


def _degrees_of_freedom(half_width: float, se: float) -> list[int]:
    """The attacker of a t interval: the degrees of freedom whose 97.5 % quantile is the
    interval's half width over its standard error."""
    from scipy import stats

    if pd.isna(half_width) or pd.isna(se):
        return []
    return [df for df in range(1, 2000)
            if abs(stats.t.ppf(0.975, df) - half_width / se) < 1e-9]


def test_a_row_whose_counts_are_withheld_keeps_no_statistic_that_gives_them_back() -> None:
    """A before -> after row of 53 clients: its interval is the estimate +- t(52) x se, so
    its standard error (or its p-value, power figures, clients needed) with the interval
    gives 52 degrees of freedom and the 53 clients, and the report's 60 clients minus 53
    the 7 a complement withholds the count to protect. Published count-only, the row keeps
    its estimate, interval and verdict and nothing that names the degrees of freedom."""
    from scipy import stats

    from mfr_analysis.privacy import COUNT_REVEALING

    estimate, se = -0.5, 0.21
    half = float(stats.t.ppf(0.975, 52)) * se
    claims = pd.DataFrame({
        "claim_id": ["pain"] * 3, "audience_group": [ALL, "athlete", "senior"],
        "outcome": ["pain"] * 3, "estimate": [-1.0, -3.0, estimate],
        "ci_low": [-2.0, -5.0, estimate - half], "ci_high": [0.0, -1.0, estimate + half],
        "se": [0.5, 1.0, se], "p_value": [0.01, 0.02, 0.021], "p_adjusted": [0.02, 0.02, 0.04],
        "tost_p": [0.3, 0.4, 0.5], "mde": [1.1, 2.0, 0.6], "clients_needed": [80, 90, 70],
        "mcid": [2.0] * 3, "n_clients": [60, 7, 53], "n_sessions": [200, 30, 170],
        "method": ["m"] * 3, "verdict": ["below_threshold", "supported", "inconclusive"],
        "note": [""] * 3, "design": ["uncontrolled"] * 3,
    })
    assert _degrees_of_freedom(half, se) == [52]  # the attack works on the full row
    counts = pd.concat([session_counts(_clients({"A": {"athlete": 7, "senior": 53}})),
                        claim_counts(claims)], ignore_index=True)
    plan = plan_disclosure(counts, minimum=MINIMUM)
    protected = protect_claims(claims, plan)
    senior = protected.loc[2]
    assert plan.is_count_only(POOLED, "senior", "pain|pain")
    assert senior["verdict"] == "inconclusive" and senior["estimate"] == estimate
    assert senior["ci_high"] - senior["estimate"] == pytest.approx(half)
    assert senior[list(COUNT_REVEALING)].isna().all()
    assert _degrees_of_freedom(senior["ci_high"] - senior["estimate"], senior["se"]) == []
    # the pooled row's counts are shown: so are its statistics
    assert protected.loc[0, list(COUNT_REVEALING)].notna().all()


def test_scrub_counts_keeps_large_counts_and_other_numbers() -> None:
    text = ("control arm too small (3 clients); 7 adverse events; on 554 client slopes; "
            "median 24 h; 1 session; MCID 2 points; ICC 0.000; 10 clients; 11 clients")
    assert scrub_counts(text, 11) == (
        "control arm too small (fewer than 11 clients); fewer than 11 adverse events; on 554 "
        "client slopes; median 24 h; fewer than 11 session; MCID 2 points; ICC 0.000; fewer "
        "than 11 clients; 11 clients")


# ---------------------------------------------------------------------------------------------
# the attacker on real report folders


@pytest.fixture(scope="module")
def hostile_sessions(simulated_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated clean table with a 3-client site and, in one site, a 3-client group."""
    from mfr_analysis.pipeline import run_clean

    clean = tmp_path_factory.mktemp("clean")
    run_clean([simulated_logs], clean, progress=False)
    sessions = pd.read_parquet(clean / "sessions.parquet")
    sites = sessions["site"].astype("str")
    first, second = sorted(sites.dropna().unique())[:2]
    tiny = sessions.loc[sites == first, "client_id"].drop_duplicates().head(3)
    sessions["site"] = pd.Categorical(sites.where(~sessions["client_id"].isin(tiny),
                                                  "Tiny Clinic"))
    chronic = sessions.loc[(sites == second) & (sessions["audience_group"] == "chronic_pain"),
                           "client_id"].drop_duplicates()
    moved = sessions["client_id"].isin(chronic.iloc[3:])
    sessions["audience_group"] = sessions["audience_group"].where(~moved, "rehab")
    out = tmp_path_factory.mktemp("hostile") / "sessions.parquet"
    sessions.to_parquet(out, index=False)
    return out


@pytest.fixture(scope="module")
def site_reports(hostile_sessions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfr_analysis.report.run import run_reports

    out = tmp_path_factory.mktemp("site-reports")
    run_reports([hostile_sessions], out, by="site", workers=2, progress=False)
    return out


def test_no_subtraction_reveals_a_small_cell_across_site_reports(site_reports: Path) -> None:
    counts = published_counts(site_reports)
    assert len(counts["report"].unique()) >= 3  # the pooled report and at least two sites
    assert (counts["measure"] == CLIENTS).sum() >= 10  # titles and counts tables were read
    assert subtraction_leaks(counts) == []
    assert small_counts_in_text(site_reports) == []


def test_the_small_site_is_named_nowhere(site_reports: Path) -> None:
    for path in [*site_reports.glob("*.html"), *site_reports.glob("*.json"),
                 *site_reports.glob("notebooks/*.ipynb")]:
        assert "Tiny Clinic" not in path.read_text(encoding="utf-8"), path.name
    index = (site_reports / "index.html").read_text(encoding="utf-8")
    assert "1 site with fewer than 11 clients" in index


def test_the_attack_finds_leaks_in_a_naively_suppressed_folder(
        site_reports: Path, hostile_sessions: Path, tmp_path: Path) -> None:
    # the attacker is real: undo the complementary suppression of one claims file (show the
    # counts of every row of 11+ clients again) and it reports the small cell it reveals
    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.pipeline import load_sessions

    naive = tmp_path / "naive"
    naive.mkdir()
    for path in site_reports.glob("claims-*.json"):
        (naive / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    pooled = json.loads((naive / "claims-all.json").read_text(encoding="utf-8"))
    claims = evaluate_claims(load_sessions([hostile_sessions]))
    raw = {(r["claim_id"], r["audience_group"], r["outcome"], r["sensitivity"]): r
           for r in claims.to_dict("records")}
    for row in pooled:
        full = raw[(row["claim_id"], row["audience_group"], row["outcome"],
                    row.get("sensitivity", ""))]
        if full["n_clients"] >= MINIMUM:
            row["n_clients"], row["n_sessions"] = full["n_clients"], full["n_sessions"]
    (naive / "claims-all.json").write_text(json.dumps(pooled), encoding="utf-8")
    assert subtraction_leaks(published_counts(naive))


def test_no_subtraction_reveals_a_small_cell_across_group_reports(report_dir: Path) -> None:
    counts = published_counts(report_dir)
    assert len(counts["report"].unique()) >= 5
    assert subtraction_leaks(counts) == []
    assert small_counts_in_text(report_dir) == []


def test_reportable_groups_counts_clients_not_sessions() -> None:
    from mfr_analysis.privacy import reportable_groups

    sessions = pd.DataFrame({
        "client_id": [f"c{i}" for i in range(11)] + ["x"] * 50,
        "audience_group": ["athlete"] * 11 + ["senior"] * 50,
    })
    assert reportable_groups(sessions) == ["athlete"]


def _weekly_sessions() -> pd.DataFrame:
    """Athletes: 30 clients in weeks 0-2 and 4 of them in week 3; seniors: 12 clients in 0-1."""
    rng = np.random.default_rng(3)
    rows = []
    for group, clients, weeks in (("athlete", 30, (0, 1, 2)), ("senior", 12, (0, 1))):
        for i in range(clients):
            for week in (*weeks, *((3,) if group == "athlete" and i < 4 else ())):
                rows.append({"client_id": f"{group}{i}", "audience_group": group,
                             "weeks_since_start": week + 0.5, "pain_pre": rng.uniform(2, 8),
                             "pain_post": rng.uniform(1, 7)})
    frame = pd.DataFrame(rows)
    return frame.assign(audience_group=frame["audience_group"].astype("category"))


def test_pain_over_weeks_draws_no_point_of_fewer_than_the_minimum() -> None:
    from mfr_analysis.report.figures import pain_trajectories

    figure = pain_trajectories(_weekly_sessions(), MINIMUM)
    drawn = {tuple(np.asarray(line.get_xdata(), dtype=float)) for line in figure.axes[0].lines
             if len(line.get_xdata())}
    assert (0.0, 1.0, 2.0) in drawn  # athletes, without week 3 (4 clients)
    assert (0.0, 1.0) in drawn  # seniors: 12 clients
    assert not any(3.0 in xs for xs in drawn)


def test_before_after_draws_no_single_client() -> None:
    from mfr_analysis.report.figures import paired_before_after

    sessions = _weekly_sessions()
    figure = paired_before_after(sessions, "pain", MINIMUM)
    per_client = sessions.groupby("client_id")[["pain_pre", "pain_post"]].mean()
    client_points = {tuple(np.round(v, 9)) for v in per_client.to_numpy()}
    for ax in figure.axes:
        for line in ax.lines:
            ys = tuple(np.round(np.asarray(line.get_ydata(), dtype=float), 9))
            assert ys not in client_points
    assert len([ax for ax in figure.axes if ax.get_title()]) == 2
    smaller = paired_before_after(sessions, "pain", 13)  # seniors (12) fall under 13
    assert [ax.get_title() for ax in smaller.axes if ax.get_title()] == ["Athletes"]


def test_arm_sizes_and_responder_counts_are_planned_like_clients() -> None:
    # athletes have 5 control clients: hidden, and the seniors' 25 with them (30 - 25 = 5);
    # the rows keep their estimates; a hidden arm size also hides the responder counts
    claims = pd.DataFrame({
        "claim_id": ["pain"] * 3, "audience_group": [ALL, "athlete", "senior"],
        "outcome": ["pain"] * 3, "estimate": [-1.0, -1.2, -0.8], "mcid": [2.0] * 3,
        "n_clients": [100, 50, 50], "n_sessions": [400, 200, 200], "note": [""] * 3,
        "design": ["controlled"] * 3, "verdict": ["below_threshold"] * 3,
        "n_control_clients": [30, 5, 25],
        "responders": [30, 20, 10], "responder_clients": [70, 45, 25],
        "responder_share": [30 / 70, 20 / 45, 10 / 25],
        "responders_control": [12, 2, 10], "responder_clients_control": [30, 5, 25],
    })
    sessions = _clients({"A": {"athlete": 50, "senior": 50}})
    counts = pd.concat([session_counts(sessions), claim_counts(claims)], ignore_index=True)
    protected = protect_claims(claims, plan_disclosure(counts, minimum=MINIMUM))
    assert protected["verdict"].tolist() == ["below_threshold"] * 3
    assert protected["estimate"].notna().all()
    assert protected["n_control_clients"].tolist()[0] == 30
    assert protected.loc[1:, "n_control_clients"].isna().all()
    assert protected.loc[1:, ["responders", "responder_clients", "responder_share",
                              "responders_control"]].isna().all().all()
    # the pooled row: 30 of 70 MFR clients respond (both 11+), but 12 of 30 control clients
    # leave 18 non-responders and 12 responders: shown; nothing small remains
    assert protected.loc[0, "responders"] == 30 and protected.loc[0, "responders_control"] == 12
    counts = pd.concat([session_counts(sessions), claim_counts(protected)], ignore_index=True)
    shown = counts.loc[counts["clients"].between(1, MINIMUM - 1)]
    assert shown.empty, shown


def test_clients_without_a_responder_status_are_a_remainder_too() -> None:
    """A row's clients minus those with a responder status (responders + non-responders)
    are its clients with one session only: 198 - 190 = 8 must not be worked out, so the
    responder counts and share go; a row whose every client has a status keeps them."""
    claims = pd.DataFrame({
        "claim_id": ["lasting_relief", "pain"], "audience_group": [ALL, ALL],
        "outcome": ["pain_pre", "pain"], "estimate": [-0.4, -1.0], "ci_low": [-0.6, -1.5],
        "ci_high": [-0.2, -0.5], "mcid": [2.0, 2.0], "n_clients": [198, 198],
        "n_sessions": [900, 900], "method": ["m", "m"], "verdict": ["inconclusive"] * 2,
        "note": ["", ""], "design": ["uncontrolled"] * 2, "responder_share": [0.5, 0.5],
        "responders": [95, 99], "responder_clients": [190, 198],
    })
    counts = pd.concat([session_counts(_clients({"A": {ALL: 198}}).assign(
        audience_group=None)), claim_counts(claims)], ignore_index=True)
    protected = protect_claims(claims, plan_disclosure(counts, minimum=MINIMUM))
    gone = protected.loc[0, ["responders", "responder_clients", "responder_share"]]
    assert gone.isna().all()
    assert protected.loc[1, ["responders", "responder_clients"]].tolist() == [99, 198]
    assert protected.loc[0, "n_clients"] == 198  # the row's own count stays
