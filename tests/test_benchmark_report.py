"""The benchmarking page (``report --benchmark site|clinician``): sites and clinicians
compared on a simulated clinic network, offline, machine-readable and safe to hand over.

Truth: the network's raw clinician names (never shown), the clean table's unit sizes (units
under the privacy minimum are never named), hand-made cases of the complementary pooling and
of the subtraction audit."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mfr_analysis.benchmarking.units import pooled_units
from mfr_analysis.privacy_audit import audit_sets

MINIMUM = 11
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = {"above", "below", "within"}


class Rows(HTMLParser):
    """The attributes of every ``tr`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append({k: v or "" for k, v in attrs})


def unit_rows(page: str) -> list[dict[str, str]]:
    parser = Rows()
    parser.feed(page)
    return [row for row in parser.rows if "data-unit" in row]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small clinic network's messy log, its truth, and its report folder with both
    benchmarking pages."""
    from mfr_analysis.pipeline import load_sessions
    from mfr_analysis.report.run import run_reports
    from mfr_analysis.simulate import write_network

    folder = tmp_path_factory.mktemp("network")
    paths = write_network(folder / "network.csv", clients=900, sites=6, clinicians=24, seed=5)
    out = folder / "reports"
    run_reports([paths["log"]], out, benchmark=["site", "clinician"], workers=2,
                progress=False)
    sessions = load_sessions([out / "data" / "sessions.parquet"])
    return {"out": out, "truth": json.loads(Path(paths["truth_json"]).read_text()),
            "sessions": sessions}


def test_pooling_is_complementary_by_hand() -> None:
    counts = pd.Series({"a": 5, "b": 12, "c": 30, "d": 13})
    # a alone (5) would be 1-10 clients: the smallest named unit (b, 12) joins it
    assert sorted(counts.index[pooled_units(counts, MINIMUM)]) == ["a", "b"]
    assert not pooled_units(pd.Series({"a": 11, "b": 40}), MINIMUM).any()
    # a pool already at the minimum takes nobody else
    pooled = pooled_units(pd.Series({"a": 6, "b": 5, "c": 12}), MINIMUM)
    assert sorted(pooled[pooled].index) == ["a", "b"]


def test_the_audit_withholds_a_count_that_gives_a_small_difference() -> None:
    everyone = frozenset(range(20))
    followed = frozenset(range(11))  # 20 - 11 = 9 clients without follow-up
    hidden = audit_sets([followed, everyone], MINIMUM)
    assert hidden == {0}
    # split the 9 into three atoms by other counts: atoms and pairs miss it, the target not
    split = [frozenset(range(11, 14)) | frozenset(range(5)),
             frozenset(range(14, 17)) | frozenset(range(5, 11)),
             frozenset(range(17, 20)) | frozenset(range(3))]
    sets = [followed, *split, everyone]
    assert 0 in audit_sets(sets, MINIMUM, targets=[everyone - followed])
    # a count published elsewhere (kept) is never the one withheld
    assert audit_sets([everyone, followed], MINIMUM, keep=1) == {0}


def test_the_index_links_both_pages(network: dict) -> None:
    index = (network["out"] / "index.html").read_text(encoding="utf-8")
    for page in ("benchmark-site.html", "benchmark-clinician.html"):
        assert f'href="{page}"' in index
        assert (network["out"] / page).is_file()
    assert index.count("never ranked") == 2  # what the page is, not the data-quality line


@pytest.mark.parametrize("by", ["site", "clinician"])
def test_each_unit_row_is_machine_readable(network: dict, by: str) -> None:
    page = (network["out"] / f"benchmark-{by}.html").read_text(encoding="utf-8")
    rows = unit_rows(page)
    named = [row for row in rows if "data-pooled" not in row]
    assert named, "no named unit"
    assert all(row["data-flag-unadjusted"] in FLAGS and row["data-flag-adjusted"] in FLAGS
               for row in named)
    units = {row["data-unit"] for row in named}
    if by == "clinician":
        assert all(re.fullmatch(r"t_[0-9a-f]{16}", unit) for unit in units)
    else:
        assert units <= {site["site"] for site in network["truth"]["units"]["site"]}
    for anchor in ("benchmark-pain", "benchmark-methods"):
        assert f'id="{anchor}"' in page


@pytest.mark.parametrize("by", ["site", "clinician"])
def test_the_page_names_no_small_unit_and_shows_no_small_count(network: dict, by: str) -> None:
    page = (network["out"] / f"benchmark-{by}.html").read_text(encoding="utf-8")
    sessions = network["sessions"]
    pairs = sessions.loc[sessions["pain_pre"].notna() & sessions["pain_post"].notna()]
    sizes = pairs.groupby(pairs[by].astype("string"))["client_id"].nunique()
    assert (sizes < MINIMUM).any(), "the network should have small units to protect"
    for row in unit_rows(page):
        if row["data-n-clients"]:
            assert int(row["data-n-clients"]) >= MINIMUM, row
    named = {row["data-unit"] for row in unit_rows(page) if "data-pooled" not in row}
    assert not named & set(sizes[sizes < MINIMUM].index)
    text = re.sub(r"<[^>]+>", " ", page)
    assert not re.search(r"(?<![\d.,])([1-9]|10) clients?\b", text)


def test_no_identifier_reaches_the_pages(network: dict) -> None:
    raw_names = {unit["clinician"] for unit in network["truth"]["units"]["clinician"]}
    clients = set(network["sessions"]["client_id"].astype(str))
    for by in ("site", "clinician"):
        page = (network["out"] / f"benchmark-{by}.html").read_text(encoding="utf-8")
        lowered = page.lower()
        assert not [name for name in raw_names if name.lower() in lowered]
        assert not set(re.findall(r"c_[0-9a-f]{16}", page)) & clients
        assert "<script" not in lowered


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


def test_the_page_renders_offline_in_chromium(browser: object, network: dict) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto((network["out"] / "benchmark-clinician.html").as_uri(), wait_until="load")
    images = page.eval_on_selector_all("img", "i => i.length")
    broken = page.eval_on_selector_all(
        "img", "i => i.filter(x => !(x.complete && x.naturalWidth > 0)).length")
    rows = page.eval_on_selector_all("tr[data-unit]", "r => r.length")
    page.set_viewport_size({"width": 420, "height": 900})
    narrow = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    assert not [url for url in requested if not url.startswith(("file:", "data:"))]
    assert images >= 2 and broken == 0  # a funnel plot of change and of responders at least
    assert rows > 0
    assert narrow <= 420


def test_with_a_page_per_site_no_site_total_gives_a_small_difference(network: dict) -> None:
    """``report --by site --benchmark site``: each site's own page shows its clients; a
    benchmark count that differs from it by 1-10 clients is withheld."""
    from mfr_analysis.report.benchmark_views import benchmark_page

    sessions = network["sessions"]
    alone = benchmark_page(sessions, "site", outcomes=["pain"])
    paged = benchmark_page(sessions, "site", outcomes=["pain"], unit_pages=True)
    pain = alone.results["pain"].fit.clients
    sites = sessions["site"].astype("string")
    small = [site for site in sites.dropna().unique()
             if 0 < sessions.loc[sites == site, "client_id"].nunique()
             - int((pain["site"] == site).sum()) < MINIMUM
             and site in set(alone.results["pain"].units["unit"])]
    assert small, "the network should have sites with a few clients without a pain pair"
    assert not alone.withheld["pain"] & set(small)
    assert set(small) <= paged.withheld["pain"]


def test_a_responder_share_is_shown_only_where_it_gives_no_small_count() -> None:
    """A share with its Wilson interval gives the unit's count back, and a share times a
    shown count the responders: 4 of 12, 45 of 50 (5 non-responders) and a withheld unit's
    share go; 20 of 40 and none of 30 stay."""
    from mfr_analysis.report.benchmark_views import share_withheld

    units = pd.DataFrame({"unit": ["a", "b", "c", "d", "e"],
                          "n_clients": [12, 40, 60, 50, 30],
                          "responders_observed": [4 / 12, 0.5, 0.5, 0.9, 0.0]})
    assert share_withheld(units, frozenset({"c"}), MINIMUM).tolist() == [
        True, False, True, True, False]


def _cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>",
                                                                 row)]


@pytest.mark.parametrize("by", ["site", "clinician"])
def test_no_share_gives_a_small_number_of_responders(network: dict, by: str) -> None:
    """The attacker: a shown share (whole percent) times the shown count of its unit."""
    from mfr_analysis.report.benchmark_views import UNIT_HEADERS

    page = (network["out"] / f"benchmark-{by}.html").read_text(encoding="utf-8")
    column = list(UNIT_HEADERS).index("responders")
    shares = withheld = 0
    for row in re.findall(r'<tr class="mfr-unit"[^>]*>.*?</tr>', page):
        cell = _cells(row)[column]
        found = re.search(r'data-n-clients="(\d*)"', row)
        n = found.group(1) if found else ""
        share = re.match(r"(\d+) % \[", cell)
        if share is None:
            withheld += cell == "withheld"
            continue
        shares += 1
        assert n, f"a share beside a withheld count gives it back: {row[:120]}"
        responders = round(int(share.group(1)) / 100 * int(n))
        for count in (responders, int(n) - responders):
            assert not 1 <= count < MINIMUM, f"{count} of {n}: {row[:120]}"
    assert shares and withheld  # the network has both


def test_with_a_page_per_unit_a_count_shows_only_clients_that_page_counts(network: dict
                                                                          ) -> None:
    """With ``--by site`` the benchmarking page shows a site's count only if the site's own
    page shows the same clients' count (a count the site page withholds, shown here, gave a
    withheld 3 back with that page's other counts). The runner passes the digests of the
    client sets each page shows; a unit whose page does not show this set is withheld."""
    from mfr_analysis.privacy_audit import set_digest
    from mfr_analysis.report.benchmark_views import (
        _not_on_own_page,
        _unit_sets,
        benchmark_page,
    )

    page = benchmark_page(network["sessions"], "site", outcomes=["pain"])
    result = page.results["pain"]
    sets = {u: c for u, c in _unit_sets(result, "site").items() if u != "other"}
    first, *rest = sorted(sets)
    assert rest
    shown = {unit: [set_digest(sets[unit]), "0" * 16] for unit in rest}
    shown[first] = [set_digest(sets[first] - {next(iter(sets[first]))})]  # one client fewer
    assert _not_on_own_page(result, "site", shown) == {first}
    assert _not_on_own_page(result, "site", {}) == frozenset()  # units without a page


def test_the_units_of_an_outcome_do_not_add_up_to_a_total_the_claims_page_withholds(
        ) -> None:
    """Every unit's pain count adds up to the clients with a pain pair (90); beside the
    page's own title count (94) that gives the 4 clients without one, a count the
    all-clients page withholds (a review found 593 - 589 = 4 on a clinician page). Told by
    the runner's digests that the all-clients page does not show the total, the page
    withholds a unit's count; assuming it shown, as before, it withheld none."""
    from types import SimpleNamespace

    from mfr_analysis.report.benchmark_views import protect_counts

    clients = pd.DataFrame({"client_id": [f"c{i}" for i in range(90)],
                            "site": ["a"] * 40 + ["b"] * 50})
    result = SimpleNamespace(units=pd.DataFrame({"unit": ["a", "b"], "pooled": [False, False]}),
                             fit=SimpleNamespace(clients=clients))
    everyone = frozenset(clients["client_id"]) | {f"c{i}" for i in range(90, 94)}
    assert protect_counts({"pain": result}, "site", MINIMUM) == {"pain": frozenset()}
    told = protect_counts({"pain": result}, "site", MINIMUM, everyone=everyone, shown=[])
    assert len(told["pain"]) == 1
