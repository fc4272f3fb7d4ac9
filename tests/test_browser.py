"""A generated report opened in headless Chromium: it renders offline, every image loads, every
page names itself, every estimate says its design and clients, the index is balanced, the
scorecard prints on page 1 and stays readable on a phone."""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SLICE_TITLES = {"claims-all": "All clients", "claims-athlete": "Athletes",
                "claims-senior": "Seniors", "claims-desk_worker": "Desk workers",
                "claims-rehab": "Rehabilitation", "claims-chronic_pain": "Chronic pain",
                "data-quality": "Data quality", "index": "index of reports"}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it with apt-get)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module (Debian's, driven by playwright)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: object, path: Path, width: int = 1200) -> object:
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.goto(path.as_uri(), wait_until="load")
    return page


def test_report_renders_offline_in_chromium(browser: object, report_dir: Path,
                                            tmp_path: Path) -> None:
    page_path = report_dir / "claims-all.html"
    requested: list[str] = []
    failed: list[str] = []
    console: list[str] = []  # a Content-Security-Policy violation is logged here
    page = browser.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("console", lambda message: console.append(message.text))
    page.goto(page_path.as_uri(), wait_until="load")
    scripts = page.evaluate("document.scripts.length")
    body_font = page.evaluate("getComputedStyle(document.body).fontFamily")
    broken_images = page.eval_on_selector_all(
        "img", "images => images.filter(i => !(i.complete && i.naturalWidth > 0)).length"
    )
    image_count = page.eval_on_selector_all("img", "images => images.length")
    heading = page.inner_text("h1")
    screenshot = tmp_path / "claims-all.png"
    page.screenshot(path=str(screenshot), full_page=True)
    page.set_viewport_size({"width": 420, "height": 900})  # a phone: no sideways page
    narrow_width = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    outside = [url for url in requested if not url.startswith(("file:", "data:"))]
    assert not failed, failed
    assert not outside, outside
    assert console == [], console
    assert scripts == 0
    assert "system-ui" in body_font  # the inline stylesheet applies under the policy
    assert narrow_width <= 420
    assert image_count >= 5 and broken_images == 0
    assert "Myofascial release claims" in heading
    assert screenshot.stat().st_size > 50_000


def test_every_page_names_report_and_slice(browser: object, report_dir: Path) -> None:
    pages = sorted(report_dir.glob("*.html"))
    assert len(pages) == len(SLICE_TITLES)
    for path in pages:
        page = open_page(browser, path)
        title = page.title()
        viewport = page.eval_on_selector_all(
            'meta[name="viewport"]', "metas => metas.map(m => m.content)")
        page.close()
        assert title.startswith("Myofascial release claims: "), (path.name, title)
        assert SLICE_TITLES[path.stem] in title, (path.name, title)
        assert "Notebook" not in title
        assert viewport and "width=device-width" in viewport[0], path.name


CELLS = """cells => cells.map(c => {
  const tag = c.querySelector('.mfr-design');
  const box = tag ? tag.getBoundingClientRect() : null;
  return {claim: c.dataset.claim, group: c.dataset.group, design: c.dataset.design,
          verdict: c.dataset.verdict, clients: c.dataset.nClients,
          estimate: (c.querySelector('.mfr-estimate') || {innerText: ''}).innerText,
          tag: tag ? tag.innerText : '', tagShown: !!box && box.width > 0 && box.height > 0,
          text: c.innerText};
})"""


def scorecard_cells(browser: object, path: Path) -> list[dict]:
    page = open_page(browser, path)
    cells = page.eval_on_selector_all("table.mfr-scorecard td.mfr-cell", CELLS)
    page.close()
    return cells


def test_every_estimate_states_design_and_clients(browser: object, report_dir: Path) -> None:
    from mfr_analysis.privacy import withheld_label
    from mfr_analysis.report.labels import design_label

    for path in sorted(report_dir.glob("claims-*.html")):
        cells = scorecard_cells(browser, path)
        with_estimate = [c for c in cells if c["estimate"]]
        assert len(with_estimate) >= 10, path.name
        for cell in with_estimate:
            assert cell["design"] in {"controlled", "uncontrolled", "observational"}, cell
            assert cell["tagShown"] and cell["tag"] == design_label(cell["design"]), cell
            if cell["clients"] == "":  # counts withheld as a complement: the estimate stays
                assert withheld_label() in cell["text"], cell
                continue
            assert re.fullmatch(r"\d+", cell["clients"]) and int(cell["clients"]) >= 11, cell
            assert f"{int(cell['clients']):,} clients" in cell["text"], cell
        for cell in cells:
            if cell["verdict"] == "suppressed":
                assert not re.search(r"\d", cell["text"]) and cell["clients"] == "", cell
        designs = {c["design"] for c in with_estimate}
        assert "observational" in designs and designs & {"controlled", "uncontrolled"}


def test_no_supported_cell_without_a_threshold(browser: object, report_dir: Path) -> None:
    from mfr_analysis.claims import claim_registry

    registry = claim_registry()
    without = set(registry.loc[registry["threshold_kind"] == "none", "claim_id"])
    assert {"slow_pace", "breathing", "delivery", "consistency", "pressure_safety"} <= without
    seen: set[str] = set()
    for path in sorted(report_dir.glob("claims-*.html")):
        for cell in scorecard_cells(browser, path):
            seen.add(cell["verdict"])
            if cell["claim"] in without:
                assert cell["verdict"] not in {
                    "supported", "below_threshold", "no_meaningful_effect"}, (path.name, cell)
    assert "association_shown" in seen  # the association verdicts reach the page


def test_index_lists_every_claim_verdict(browser: object, report_dir: Path) -> None:
    from mfr_analysis.claims import primary_rows
    from mfr_analysis.report.labels import verdict_label
    from mfr_analysis.report.run import load_claims

    page = open_page(browser, report_dir / "index.html")
    listed = page.eval_on_selector_all("tr", """rows => rows.map(r => ({
      link: r.querySelector('a') ? r.querySelector('a').getAttribute('href') : '',
      items: Array.from(r.querySelectorAll('ul.verdicts > li')).map(li => ({
        claim: li.dataset.claim,
        chips: Array.from(li.querySelectorAll('.chip')).map(c => c.innerText)}))}))""")
    footer = page.inner_text("body")
    page.close()
    reports = {row["link"]: row["items"] for row in listed if row["link"].startswith("claims-")}
    assert len(reports) == 6
    for link, items in reports.items():
        claims = load_claims(report_dir / link.replace(".html", ".json"))
        claims = primary_rows(claims)  # sensitivity rows are shown in their own section
        pooled = claims.loc[claims["audience_group"] == "all"]
        assert [i["claim"] for i in items] == list(dict.fromkeys(pooled["claim_id"])), link
        shown = sorted(chip for item in items for chip in item["chips"])
        assert shown == sorted(verdict_label(v) for v in pooled["verdict"]), link
        assert verdict_label("not_measured") in shown  # not only the green chips
    assert "5 % significance, Holm correction across all claims, groups under 11 clients " \
           "hidden" in footer


def test_index_shows_inconclusive_and_too_few_clients(browser: object, tmp_path: Path) -> None:
    """The simulated report has no inconclusive pooled row: an index of a made-up report."""
    from mfr_analysis.report.index import write_index
    from mfr_analysis.report.labels import verdict_label
    from mfr_analysis.report.run import ReportOptions, SliceResult

    verdicts = {"tightness": "inconclusive", "pain": "insufficient_data",
                "circulation": "not_measured", "stress": "contradicted"}
    table = pd.DataFrame([{"claim_id": c, "audience_group": "all", "outcome": c,
                           "verdict": v, "design": "controlled", "estimate": math.nan}
                          for c, v in verdicts.items()])
    (tmp_path / "claims-all.json").write_text(table.to_json(orient="records"))
    result = SliceResult("claims-all", "All clients", "claims_report.ipynb", "claims-all.html",
                         str(tmp_path / "claims-all.json"))
    write_index(tmp_path, [result], [], "Myofascial release claims", vars(ReportOptions()))
    page = open_page(browser, tmp_path / "index.html")
    chips = page.eval_on_selector_all("ul.verdicts .chip", "cs => cs.map(c => c.innerText)")
    page.close()
    assert sorted(chips) == sorted(verdict_label(v) for v in verdicts.values())


def test_legend_and_methods_use_the_same_words(browser: object, report_dir: Path) -> None:
    from mfr_analysis.report.labels import design_rule, designs, legend_verdicts, verdict_rule

    page = open_page(browser, report_dir / "claims-all.html")
    legend = " ".join(page.inner_text(".mfr-legend").split())
    body = " ".join(page.inner_text("body").split())
    page.close()
    methods = body.split("Methods", 1)[1]
    for rule in [*map(verdict_rule, legend_verdicts()), *map(design_rule, designs())]:
        assert rule in legend, rule
        assert rule in methods, rule


def pdf_lines(pdf: Path) -> list[list[tuple[str, float]]]:
    """Per printed page: each text line with its top as a share of the page height."""
    layout = subprocess.run([PDFTOTEXT, "-bbox-layout", str(pdf), "-"], check=True,
                            capture_output=True, text=True).stdout
    pages = []
    for page in re.finditer(r'<page width="[\d.]+" height="([\d.]+)">(.*?)</page>', layout,
                            re.S):
        height = float(page[1])
        lines = []
        for line in re.finditer(r'<line xMin="[\d.]+" yMin="([\d.]+)".*?</line>', page[2], re.S):
            words = re.findall(r"<word [^>]*>([^<]*)</word>", line[0])
            lines.append((html.unescape(" ".join(words)), float(line[1]) / height))
        pages.append(lines)
    return pages


@pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext) is not installed "
                                             "(.ci/run installs it with apt-get)")
@pytest.mark.parametrize("paper", ["A4", "Letter"])
def test_printed_report_starts_with_the_scorecard(browser: object, report_dir: Path,
                                                  tmp_path: Path, paper: str) -> None:
    from mfr_analysis.report.labels import (
        claim_label,
        design_rule,
        designs,
        legend_verdicts,
        verdict_rule,
    )

    page = open_page(browser, report_dir / "claims-all.html")
    headings = page.eval_on_selector_all("h1, h2, h3", "hs => hs.map(h => h.innerText.trim())")
    pdf = tmp_path / "claims-all.pdf"
    page.pdf(path=str(pdf), format=paper, print_background=True)
    page.emulate_media(media="print")
    figures = page.eval_on_selector_all("figure.mfr-figure", """fs => fs.map(f =>
        getComputedStyle(f).breakInside)""")
    tallest = page.eval_on_selector_all("figure.mfr-figure", """fs => Math.max(...fs.map(f =>
        f.getBoundingClientRect().height))""")
    page.close()
    pages = pdf_lines(pdf)
    first = " ".join(text for text, _top in pages[0])
    # page 1: the scorecard itself, not only its heading
    assert "Scorecard" in first and "All clients" in first and "Claim" in first
    assert claim_label("tightness") in first and claim_label("pain") in first
    assert "vs control" in first
    # no heading is stranded: on its page, some text follows it (each has an intro line)
    for number, lines in enumerate(pages, start=1):
        if lines and lines[-1][0] in headings:
            raise AssertionError((paper, number, lines[-1]))
    # the legend is on one page
    texts = [" ".join(" ".join(text for text, _top in lines).split()) for lines in pages]
    legend_parts = ["How to read a cell", verdict_rule(legend_verdicts()[-1])[:40],
                    design_rule(designs()[-1])[:40]]
    on = [[i for i, text in enumerate(texts) if part in text] for part in legend_parts]
    assert all(on) and len({found[0] for found in on}) == 1, on  # the methods repeat them
    # figures are never cut across pages: kept whole, and none taller than the page's
    # printable height (12 mm margins), which no "avoid" could keep whole
    assert figures and set(figures) == {"avoid"}
    printable_mm = {"A4": 297, "Letter": 279.4}[paper] - 2 * 12
    assert tallest <= printable_mm / 25.4 * 96, (paper, tallest)


def test_phone_scorecard_scrolls_with_the_claim_column_kept(browser: object,
                                                            report_dir: Path) -> None:
    page = open_page(browser, report_dir / "claims-all.html", width=420)
    before = page.evaluate("""() => {
      const box = document.querySelector('.mfr-scroll');
      box.scrollLeft = box.scrollWidth;
      return {scrolls: box.scrollWidth > box.clientWidth + 100,
              left: box.getBoundingClientRect().left};
    }""")
    after = page.evaluate("""() => {
      const box = document.querySelector('.mfr-scroll');
      const claim = document.querySelector('table.mfr-scorecard tbody th');
      const cells = document.querySelectorAll('table.mfr-scorecard tbody tr:first-child td');
      const last = cells[cells.length - 1].getBoundingClientRect();
      const rect = claim.getBoundingClientRect();
      return {scrolled: box.scrollLeft, claimLeft: rect.left, claimRight: rect.right,
              background: getComputedStyle(claim).backgroundColor,
              lastLeft: last.left, lastRight: last.right,
              page: document.documentElement.scrollWidth};
    }""")
    page.close()
    assert before["scrolls"]
    assert after["scrolled"] > 100
    assert abs(after["claimLeft"] - before["left"]) < 2  # the claim column stayed in view
    assert after["background"] not in {"rgba(0, 0, 0, 0)", "transparent"}  # cells pass under
    assert after["lastLeft"] >= after["claimRight"] - 1 and after["lastRight"] <= 421
    assert after["page"] <= 420  # the page itself never scrolls sideways


def outcome_anchors() -> list[str]:
    """The outcome sections' anchors a claims report must carry. Flow, Table 1 and each
    client's result need the describe tables (issue 13, helper "describe"): they are
    required as soon as ``mfr_analysis.describe`` exists."""
    from importlib.util import find_spec

    from mfr_analysis.report.outcome_views import ANCHORS

    needs_describe = {"flow", "baseline", "individual"}
    if find_spec("mfr_analysis.describe") is None:
        return [a for a in ANCHORS if a not in needs_describe]
    return list(ANCHORS)


ANCHOR_BOXES = """anchors => anchors.map(id => {
  const el = document.getElementById(id);
  if (!el) return {id, found: false};
  const box = el.getBoundingClientRect();
  const section = el.closest('div.mfr-section') || el.parentElement;
  const wide = section ? section.scrollWidth : 0;
  return {id, found: true, shown: box.width > 0 && box.height > 0, text: el.innerText,
          sectionWidth: wide};
})"""


@pytest.mark.parametrize("width", [1200, 420])
def test_outcome_sections_render_offline_with_their_anchors(browser: object, report_dir: Path,
                                                            width: int) -> None:
    """Every outcome section is on the page under its anchor, at desktop width and on a
    420 px phone, the checklist's links all land on an element of the page, and nothing is
    fetched from outside it."""
    from mfr_analysis.report.outcome_views import ANCHORS, checklist_anchors

    requested: list[str] = []
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.on("request", lambda request: requested.append(request.url))
    page.goto((report_dir / "claims-all.html").as_uri(), wait_until="load")
    anchors = outcome_anchors()
    boxes = page.evaluate(ANCHOR_BOXES, anchors)
    links = page.eval_on_selector_all(
        "div.mfr-checklist a[href^='#']",
        "links => links.map(a => a.getAttribute('href').slice(1))")
    landing = page.evaluate("ids => ids.filter(id => !document.getElementById(id))",
                            sorted(set(links)))
    page_width = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    assert all(b["found"] and b["shown"] for b in boxes), boxes
    assert set(checklist_anchors()) & set(anchors) <= set(links)
    not_yet = set(ANCHORS) - set(anchors)  # sections waiting for the describe tables
    assert set(landing) <= not_yet, landing  # every checklist link lands on the page
    assert not [u for u in requested if not u.startswith(("file:", "data:"))]
    assert page_width <= width
