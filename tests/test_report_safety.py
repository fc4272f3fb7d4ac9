"""What a report hands over is safe: inert pages, unique names, one published set, refused
options, failed slices that say so without a traceback, and workers that die with their run.

The pages are checked by parsing them (html.parser), never by searching for one string.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mfr_analysis.report.run import (
    CLAIMS_NOTEBOOK,
    RESERVED_STEMS,
    ReportOptions,
    SliceJob,
    ensure_kernel,
    notebook_dir,
    plan_jobs,
    run_job,
    run_reports,
    slice_slugs,
)
from mfr_analysis.report.safe_text import (
    CONTENT_SECURITY_POLICY,
    html_text,
    markdown_text,
    plain_text,
)
from mfr_analysis.tables import categories, load_table, normalise_token
from tests.conftest import TEST_KEY

# Hostile site names: each gets its own slice report (every site has >= 11 clients).
SITES = [
    "<img src=x onerror=alert(1)><svg onload=alert(2)>[x](javascript:alert(3))",
    "\" onmouseover=\"alert(4)\" '</title><script>alert(5)</script><a href='javascript:x'>",
    "$\\frac{1}{0}$ **b** ![i](logs.csv) &lt;b&gt; &#x3C;script&#x3E; `c` <!-- x -->",
    # (a site with control characters never reaches a page: cleaning quarantines its rows,
    # tests/test_hostile_inputs.py; escaping of control characters is tested below)
    "\u202eevil\u202c bel[31mred " + "L" * 300,
    "all",
]
TITLE = "<script>alert('t')</script> [t](javascript:alert(1)) \" onmouseover=\"x\" $x^2$"
GROUP_PAYLOAD = "<img src=x onerror=alert(7)>"
TECHNIQUE_PAYLOAD = "[t](javascript:alert(8))"

# Every element a report page may hold; anything else (script, svg, iframe, object, form,
# link, base, ...) is a failure.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "div", "h1", "h2", "h3", "h4",
    "p", "ul", "ol", "li", "b", "strong", "em", "i", "small", "br", "code", "pre", "span",
    "table", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "img", "a", "hr",
}


class PageAudit(HTMLParser):
    """Every element, attribute and heading text of a page, as a browser would parse it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.policies: list[str] = []
        self.h1: list[str] = []
        self.text: list[str] = []
        self._in_h1 = False
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
        values = dict(attrs)
        if tag == "meta" and (values.get("http-equiv") or "").lower() == \
                "content-security-policy":
            self.policies.append(values.get("content") or "")
        self._in_h1 = self._in_h1 or tag == "h1"
        self._in_style = tag == "style"
        if tag == "h1":
            self.h1.append("")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        self._in_h1 = self._in_h1 and tag != "h1"
        self._in_style = self._in_style and tag != "style"

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1[-1] += data
        if not self._in_style:
            self.text.append(data)


def audit(page: str) -> PageAudit:
    parser = PageAudit()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str, name: str, *, whole_page: bool = True) -> PageAudit:
    """No live element, handler or script URL; with ``whole_page``, our CSP before anything."""
    found = audit(page)
    assert set(found.tags) <= ALLOWED_TAGS, (name, set(found.tags) - ALLOWED_TAGS)
    for tag, attribute, value in found.attributes:
        squeezed = re.sub(r"[\s\x00-\x1f]+", "", value).lower()
        assert not attribute.startswith("on"), (name, tag, attribute, value)
        if attribute not in {"title", "alt"}:  # plain text for a browser, never a URL
            assert "javascript:" not in squeezed, (name, tag, attribute, value)
        assert attribute not in {"srcdoc", "formaction", "action"}, (name, tag, attribute)
        if attribute == "src":
            assert tag == "img" and squeezed.startswith("data:image/png;base64,"), (name, value)
        if attribute == "href":
            assert tag == "a" and re.fullmatch(r"#[^\s]*|[a-z0-9_.-]+\.html|data/quarantine\.csv",
                                               value), (name, value)
        if tag == "meta" and attribute == "http-equiv":
            assert squeezed == "content-security-policy", (name, value)
    if whole_page:
        assert found.policies == [CONTENT_SECURITY_POLICY], (name, found.policies)
        assert found.tags.index("meta") < found.tags.index("style"), name
        assert "script-src" not in found.policies[0] and "'none'" in found.policies[0]
    return found


def raw_column(frame: pd.DataFrame, canonical: str) -> str:
    """The column of a messy simulated log that the cleaner maps to ``canonical``."""
    aliases = set(load_table("column_aliases").query("canonical == @canonical")["alias"])
    return next(c for c in frame.columns if normalise_token(c.replace("-", " ")) in aliases)


@pytest.fixture(scope="module")
def hostile_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated log whose sites are script payloads, with hostile group and technique
    spellings in a few rows."""
    from mfr_analysis.simulate import write_simulation

    out = tmp_path_factory.mktemp("hostile") / "logs.csv"
    write_simulation(165, 11, out)
    raw = pd.read_csv(out, dtype=str, keep_default_na=False)
    site, client = raw_column(raw, "site"), raw_column(raw, "client_id")
    order = {c: i % len(SITES) for i, c in enumerate(sorted(set(raw[client])))}
    raw[site] = [SITES[order[c]] for c in raw[client]]
    raw.loc[raw.index[:3], raw_column(raw, "audience_group")] = GROUP_PAYLOAD
    raw.loc[raw.index[3:6], raw_column(raw, "technique")] = TECHNIQUE_PAYLOAD
    raw.to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def hostile_report(hostile_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report by site of the hostile log, with a hostile title, into a folder that holds an
    older report's pages and a file of the user's."""
    out = tmp_path_factory.mktemp("hostile-report")
    (out / "notebooks").mkdir()
    (out / "claims-old-site.html").write_text("<p>an older report</p>", encoding="utf-8")
    (out / "claims-old-site.json").write_text("[]", encoding="utf-8")
    (out / "notebooks" / "claims-old-site.ipynb").write_text("{}", encoding="utf-8")
    (out / "my-notes.txt").write_text("mine", encoding="utf-8")
    run_reports([hostile_logs], out, by="site", workers=2, progress=False,
                options=ReportOptions(title=TITLE))
    return out


def pages(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.html"))


# ------------------------------------------------------------------------ 1. injection ---

def test_every_page_is_inert_and_carries_the_policy(hostile_report: Path) -> None:
    found = pages(hostile_report)
    assert len(found) == 2 + len(SITES) + 1  # data quality, all clients, each site, index
    for page in found:
        assert_inert(page.read_text(encoding="utf-8"), page.name)


def test_hostile_names_are_shown_as_text(hostile_report: Path) -> None:
    """The payloads are not dropped: each page heading shows them literally, as text."""
    headings = {}
    for page in pages(hostile_report):
        headings[page.name] = audit(page.read_text(encoding="utf-8")).h1
    assert headings["index.html"] == [TITLE]
    assert headings["claims-all.html"] == [TITLE]
    shown = {h[0] for name, h in headings.items() if name.startswith("claims-")}
    for site in SITES:
        expected = plain_text(f"{TITLE}: {site}", 300)
        assert expected in shown, expected
    index = audit((hostile_report / "index.html").read_text(encoding="utf-8"))
    text = " ".join(index.text)
    for site in SITES:
        assert plain_text(site, 120) in text
    assert "\u202e" not in text and "\x1b" not in text and "\x07" not in text


def test_hostile_vocabulary_spellings_never_reach_a_page(hostile_report: Path) -> None:
    sessions = pd.read_parquet(hostile_report / "data" / "sessions.parquet",
                               columns=["audience_group", "technique"])
    vocabulary = {field: set(categories(field)) for field in ("audience_group", "technique")}
    for field, allowed in vocabulary.items():
        assert set(sessions[field].dropna().astype(str)) <= allowed, field
    for page in pages(hostile_report):
        text = " ".join(audit(page.read_text(encoding="utf-8")).text)
        assert GROUP_PAYLOAD not in text and TECHNIQUE_PAYLOAD not in text, page.name


PAYLOADS = [*SITES, TITLE, "a` <b onclick=x>`", "``x``", "\x00nul", "x" * 5000,
            "[x](javascript:alert(1))", "<javascript:alert(1)>", "![i](/etc/passwd)",
            "www.example.com", "line\n# h1", "a\\`b", "<https://example.com>"]


def exported_page(tmp_path: Path, outputs: list) -> str:
    """IPython display objects as a report page shows them: one executed notebook holding
    them, exported by the report's own exporter (template, image embedding, checks)."""
    import nbformat
    from IPython.display import HTML, Markdown

    from mfr_analysis.report.run import export_html

    cell = nbformat.v4.new_code_cell("")
    for shown in outputs:
        mimetype = "text/markdown" if isinstance(shown, Markdown) else "text/html"
        assert isinstance(shown, Markdown | HTML)
        cell.outputs.append(nbformat.v4.new_output(
            "display_data", data={mimetype: shown.data, "text/plain": ""}))
    notebook = nbformat.v4.new_notebook(cells=[cell])
    nbformat.write(notebook, tmp_path / "shown.ipynb")
    problems = export_html(tmp_path / "shown.ipynb", tmp_path / "shown.html", title="T")
    assert problems == [], problems
    page = (tmp_path / "shown.html").read_text(encoding="utf-8")
    assert_inert(page, "exported")
    return page


class ListItems(HTMLParser):
    """The text of each <li>, and the tags inside list items."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[str] = []
        self.inner: set[str] = set()
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "li":
            self.items.append("")
            self._depth += 1
        elif self._depth:
            self.inner.add(tag)

    def handle_endtag(self, tag: str) -> None:
        self._depth -= tag == "li"

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.items[-1] += data


def test_markdown_and_html_text_render_as_plain_text(tmp_path: Path) -> None:
    """Each payload, escaped for Markdown text, a Markdown code span and HTML, comes out of
    the exporter as exactly its text: no element, link, image, math or handler."""
    from IPython.display import HTML, Markdown

    from mfr_analysis.report.safe_text import markdown_code

    shown = [Markdown("\n".join(f"- {markdown_text(p)}" for p in PAYLOADS)),
             Markdown("\n".join(f"- {markdown_code(p)}" for p in PAYLOADS)),
             HTML("<ul>" + "".join(f'<li title="{html_text(p)}">{html_text(p)}</li>'
                                   for p in PAYLOADS) + "</ul>")]
    page = exported_page(tmp_path, shown)
    items = ListItems()
    items.feed(page)
    expected = [plain_text(p) for p in PAYLOADS]
    assert items.items == expected * 3
    assert items.inner == {"code"}  # from the code spans; nothing else inside an item
    titles = [value for tag, name, value in audit(page).attributes if name == "title"]
    assert titles == expected


def test_views_render_data_text_inert(tmp_path: Path) -> None:
    """title_block, findings and methods with hostile text, through the report's exporter."""
    from mfr_analysis.report import views

    sessions = pd.DataFrame({"client_id": ["a", "b"], "session_id": ["1", "2"],
                             "session_date": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    claims = pd.DataFrame({"claim_id": ["pain"], "audience_group": [GROUP_PAYLOAD],
                           "outcome": ["pain"], "estimate": [-1.0], "ci_low": [-2.0],
                           "ci_high": [0.0], "verdict": ["supported"], "unit": [SITES[1]],
                           "method": [SITES[2]]})
    shown = [views.title_block(SITES[0], sessions, 11), views.findings(claims)]
    shown += [views.methods(claims, sessions, {"slice": f"site={value}", "title": value})
              for value in ("a` <img src=x onerror=alert(1)> `", *SITES)]
    page = exported_page(tmp_path, shown)
    assert audit(page).h1 == [plain_text(SITES[0])]
    text = " ".join(audit(page).text)
    assert plain_text("site=a` <img src=x onerror=alert(1)> `") in text
    for site in SITES:
        assert plain_text(f"site={site}") in text


def test_figure_text_is_never_parsed_as_math() -> None:
    from mfr_analysis.report import figures

    claims = pd.DataFrame({
        "claim_id": ["pain", "pain"], "audience_group": ["$\\frac{1}{$", "a$^{x}$b"],
        "outcome": ["pain", "pain"], "estimate": [-1.0, -2.0], "ci_low": [-2.0, -3.0],
        "ci_high": [0.0, -1.0], "mcid": [2.0, 2.0], "verdict": ["inconclusive"] * 2})
    figure = figures.forest_plot(claims, "pain")
    figure.savefig(io.BytesIO(), format="png")  # malformed mathtext would raise here
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert set(labels) == {"$\\frac{1}{$", "a$^{x}$b"}


def test_index_and_a_failed_page_are_inert(tmp_path: Path) -> None:
    from mfr_analysis.report.index import write_index
    from mfr_analysis.report.run import SliceResult

    results = [SliceResult("claims-x", SITES[1], CLAIMS_NOTEBOOK, "claims-x.html", "",
                           error=f"Traceback: {tmp_path}/secret.py line 3")]
    index = write_index(tmp_path, results, [{"label": SITES[0], "reason": SITES[2]}],
                        TITLE, {"title": TITLE}, {})
    page = index.read_text(encoding="utf-8")
    assert_inert(page, "index")
    assert "Traceback" not in page and str(tmp_path) not in page


# ----------------------------------------------------------- 5. names and stale pages ---

NAMES = ["A/B", "a-b", "A B", "all", "data-quality", "index", "../x", "CON", "", "...", "///",
         "claims-all", "notebooks", "x" * 300, "x" * 301, "Clinique Zoë", "desk_worker",
         "claims-a-b", "a-b-fea4c5ce"]


def test_slice_names_are_distinct_safe_and_never_a_fixed_page(tmp_path: Path) -> None:
    stems = slice_slugs(NAMES)
    assert set(stems) == set(NAMES)
    assert len(set(stems.values())) == len(NAMES)
    for name, stem in stems.items():
        assert re.fullmatch(r"claims-[a-z0-9_-]{1,80}", stem), (name, stem)
        assert stem not in RESERVED_STEMS
        assert (tmp_path / f"{stem}.html").resolve().parent == tmp_path.resolve()
    assert slice_slugs(reversed(NAMES)) == stems  # the same values, the same names
    assert stems["desk_worker"] == "claims-desk_worker"


def test_a_site_named_all_never_replaces_the_pooled_report(tmp_path: Path) -> None:
    from mfr_analysis.claims import CLAIMS_COLUMNS
    from mfr_analysis.report.disclosure import plan_folder

    sites = ["all"] * 12 + ["All"] * 12 + ["data-quality"] * 12
    sessions = pd.DataFrame({"client_id": [f"c{i}" for i in range(len(sites))], "site": sites,
                             "audience_group": "athlete"})
    folder = plan_folder(sessions, "site", lambda _: pd.DataFrame(columns=list(CLAIMS_COLUMNS)),
                         minimum=11)
    jobs, _ = plan_jobs(tmp_path / "sessions.parquet", None, tmp_path, "site", ReportOptions(),
                        folder)
    stems = [job.slug for job in jobs]
    assert len(set(stems)) == len(stems) == 5
    claims_files = [job.parameters.get("claims_path") for job in jobs
                    if job.parameters.get("claims_path")]
    assert len(set(claims_files)) == len(claims_files) == 4


def test_index_links_all_clients_to_the_pooled_report(hostile_report: Path) -> None:
    index = audit((hostile_report / "index.html").read_text(encoding="utf-8"))
    links = [value for tag, attribute, value in index.attributes if attribute == "href"]
    assert len(links) == len(set(links)) == 2 + len(SITES)
    assert "claims-all.html" in links
    pooled = audit((hostile_report / "claims-all.html").read_text(encoding="utf-8"))
    assert pooled.h1 == [TITLE]  # not the site named 'all'


def test_an_older_reports_pages_are_removed_and_the_users_files_kept(
        hostile_report: Path) -> None:
    from mfr_analysis.io import verify_output_set

    assert not (hostile_report / "claims-old-site.html").exists()
    assert not (hostile_report / "claims-old-site.json").exists()
    assert not (hostile_report / "notebooks" / "claims-old-site.ipynb").exists()
    assert (hostile_report / "my-notes.txt").read_text(encoding="utf-8") == "mine"
    manifest = verify_output_set(hostile_report, "report", deep=True)
    listed = set(manifest["files"])
    assert {p.name for p in pages(hostile_report)} <= listed
    assert {f"notebooks/{p.stem}.ipynb" for p in pages(hostile_report)
            if p.name != "index.html"} <= listed
    assert "data/sessions.parquet" in listed
    assert not list(hostile_report.glob(".mfr-*"))


def test_executed_notebooks_name_paths_inside_the_published_folder(
        hostile_report: Path) -> None:
    notebook = json.loads((hostile_report / "notebooks" / "claims-all.ipynb").read_text())
    parameters = notebook["metadata"]["papermill"]["parameters"]
    assert parameters["sessions_path"] == "data/sessions.parquet"
    assert parameters["claims_path"] == "claims-all.json"
    assert (hostile_report / parameters["sessions_path"]).is_file()


# ------------------------------------------------------------- 7. options and failures ---

@pytest.mark.parametrize("arguments", [
    ["--mcid", "pain=-5"], ["--mcid", "pain=0"], ["--mcid", "pain=inf"], ["--mcid", "pain=nan"],
    ["--mcid", "pian=2"], ["--mcid", "pain"], ["--alpha", "0"], ["--alpha", "0.9"],
    ["--min-clients", "1"], ["--min-reported-clients", "0"], ["--workers", "0"],
    ["--workers", "100000"], ["--title", ""], ["--title", "a\nb"], ["--title", "x" * 121],
    ["--title", "\u202eevil"],
])
def test_invalid_options_are_refused_before_any_work(arguments: list[str],
                                                     tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mfr_analysis.cli import app

    logs = tmp_path / "logs.csv"
    logs.write_text("client,pain_pre,pain_post\n1,5,3\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", str(logs), "--out", str(out), *arguments],
                                env={"MFR_PSEUDONYM_KEY": TEST_KEY})
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mfr-analysis: error: "), result.stderr
    assert not out.exists()


def invoke_report(*arguments: str):
    from typer.testing import CliRunner

    from mfr_analysis.cli import app

    return CliRunner().invoke(app, ["report", *arguments, "--no-progress"],
                              env={"MFR_PSEUDONYM_KEY": TEST_KEY})


def assert_one_line_refusal(result, *words: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mfr-analysis: error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_a_report_over_its_own_input_is_refused(hostile_report: Path) -> None:
    before = snapshot(hostile_report)
    result = invoke_report(str(hostile_report / "data" / "sessions.parquet"),
                           "--out", str(hostile_report))
    assert_one_line_refusal(result, "input")
    assert snapshot(hostile_report) == before


def test_a_second_report_on_the_same_folder_is_refused(hostile_logs: Path,
                                                        tmp_path: Path) -> None:
    from mfr_analysis.io import lock_output

    with lock_output(tmp_path / "out"):  # as a running report holds it
        result = invoke_report(str(hostile_logs), "--out", str(tmp_path / "out"))
    assert_one_line_refusal(result, "another mfr-analysis run")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def assert_plain_failure_page(page: str, slug: str, *forbidden: str) -> None:
    """A failed report's page: the plain sentence, and no traceback, error name, path or ANSI."""
    found = assert_inert(page, slug)
    text = " ".join(found.text)
    assert "This report is incomplete" in text
    assert f"notebooks/{slug}.ipynb" in text
    shown = text + " ".join(value for _, _, value in found.attributes)  # not the stylesheet
    for word in ("Traceback", "Error", "Exception", "site-packages", ".py", "\x1b", "[0;31m",
                 "papermill", *forbidden):
        assert word not in shown, word


def test_a_notebook_failing_midway_shows_one_plain_sentence(hostile_report: Path,
                                                             tmp_path: Path) -> None:
    broken = tmp_path / "claims-broken.json"  # settings are checked up front: a bad claims
    broken.write_text("{not json", encoding="utf-8")  # file fails the run midway instead
    job = SliceJob(CLAIMS_NOTEBOOK, "claims-broken", "Broken", {
        "sessions_path": str(hostile_report / "data" / "sessions.parquet"),
        "cleaning_report_path": "", "claims_path": str(broken), "title": "Broken"})
    result = run_job(job, str(notebook_dir()), str(tmp_path), ensure_kernel())
    assert result.error.startswith("JSONDecodeError")
    page = (tmp_path / "claims-broken.html").read_text(encoding="utf-8")
    assert_plain_failure_page(page, "claims-broken", str(hostile_report), str(tmp_path))
    assert audit(page).h1 == ["Broken"]  # what ran before the failure is still shown
    assert "“Scorecard”" in page


def test_a_kept_kernel_forgets_the_page_before(tmp_path: Path) -> None:
    """A pool worker runs its pages on one kernel: before the next page its variables,
    imports and working folder are gone (only imported modules stay), on the same kernel."""
    from mfr_analysis.report import run as run_module

    kernel = ensure_kernel()
    try:
        assert run_module.warm_kernel(kernel, str(tmp_path))
        manager = run_module._RUNNING["manager"]
        assert run_module._run_code(manager, "secret = 42\nimport os\nos.chdir('/')", 60)
        run_module._RUNNING["used"] = True  # as after a page
        assert run_module._kept_kernel(kernel, tmp_path) is manager
        assert run_module._run_code(
            manager, "assert 'secret' not in dir() and 'os' not in dir()\nimport os, sys\n"
            f"assert os.getcwd() == {str(tmp_path)!r}\n"
            "assert 'mfr_analysis.report.figures' in sys.modules", 60)
        assert not run_module._run_code(manager, "assert 'secret' in dir()", 60)  # can fail
    finally:
        run_module._close_kernel()
    assert "manager" not in run_module._RUNNING


def test_a_failed_slice_exits_1_and_the_index_lists_it(
        hostile_report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice whose notebook raises: exit 1 with one line naming it, listed in the index."""
    from typer.testing import CliRunner

    import mfr_analysis.report.run as run
    from mfr_analysis.cli import app

    planned = run.plan_jobs

    def one_broken(*args: object, **kwargs: object) -> tuple[list[SliceJob], list[str]]:
        jobs, suppressed = planned(*args, **kwargs)
        jobs = [job if job.slug != "claims-all" else
                SliceJob(job.notebook, job.slug, job.label,
                         {**job.parameters, "min_clients": 1, "claims_path": ""})
                for job in jobs]
        return jobs, suppressed

    monkeypatch.setattr(run, "plan_jobs", one_broken)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", str(hostile_report / "data" / "sessions.parquet"),
                                      "--out", str(out), "--no-progress"],
                                env={"MFR_PSEUDONYM_KEY": TEST_KEY})
    assert result.exit_code == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("mfr-analysis:")]
    assert len(errors) == 1 and "claims-all" in errors[0] and "1 of 2" in errors[0]
    assert "Traceback" not in result.stderr
    index = (out / "index.html").read_text(encoding="utf-8")
    assert_inert(index, "index")
    assert "failed" in " ".join(audit(index).text)
    assert_plain_failure_page((out / "claims-all.html").read_text(encoding="utf-8"),
                              "claims-all", str(hostile_report))
    assert (out / "data-quality.html").is_file()


# --------------------------------------------------------------- 7. signals of report ---

def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file of a published report (the tool's own dot-files left out)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".mfr-")
                                       for part in p.relative_to(folder).parts)}


@contextmanager
def _ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """SIGINT handled as an interactive Python handles it, for the block: a test suite started
    in the background by a shell without job control (``make test &``, some CI runners)
    inherits SIGINT ignored, and a process that starts ignoring it rightly keeps ignoring it
    (``nohup``), so a Ctrl-C test would test nothing there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def report_process(hostile_logs: Path, tmp_path: Path) -> Iterator:
    """Start `mfr-analysis report` in its own process group; yield a helper that waits for a
    running kernel and returns every process of the run. Survivors are killed at the end."""
    psutil = pytest.importorskip("psutil")
    started: list = []
    tracked: dict[int, object] = {}

    def start(out: Path) -> tuple[subprocess.Popen, list]:
        stdout = open(tmp_path / "stdout", "w")  # noqa: SIM115 - closed below
        stderr = open(tmp_path / "stderr", "w")  # noqa: SIM115 - files: orphans cannot block
        with _ctrl_c_as_in_a_terminal():  # the run inherits a Ctrl-C it can receive
            process = subprocess.Popen(
                [sys.executable, "-m", "mfr_analysis.cli", "report", str(hostile_logs),
                 "--out", str(out), "--workers", "2", "--no-progress"],
                stdout=stdout, stderr=stderr, start_new_session=True,
                env={**os.environ, "MFR_PSEUDONYM_KEY": TEST_KEY})
        stdout.close()
        stderr.close()
        started.append(process)
        parent = psutil.Process(process.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            with _quiet(psutil):
                for child in parent.children(recursive=True):
                    tracked.setdefault(child.pid, child)
            if any(_is_kernel(p, psutil) for p in tracked.values()):
                break
            time.sleep(0.1)
        assert any(_is_kernel(p, psutil) for p in tracked.values()), "no kernel started"
        return process, list(tracked.values())

    yield start
    for process in [*tracked.values()]:
        with _quiet(psutil):
            process.kill()
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


class _quiet:
    """Ignore processes that ended while we looked at them."""

    def __init__(self, psutil: object) -> None:
        self.errors = (psutil.Error, OSError)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self.errors)


def _is_kernel(process: object, psutil: object) -> bool:
    with _quiet(psutil):
        return "ipykernel" in " ".join(process.cmdline())
    return False


def survivors(processes: list, seconds: float = 30) -> list:
    """Processes still alive (not zombies) after waiting up to ``seconds`` for them to end."""
    import psutil

    deadline = time.monotonic() + seconds
    alive = processes
    while time.monotonic() < deadline:
        alive = []
        for process in processes:
            with _quiet(psutil):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        if not alive:
            break
        time.sleep(0.2)
    return alive


def signal_state(pid: int) -> str:
    """A process's blocked, ignored and caught signal masks (``/proc``), or why not known."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
    except OSError as error:
        return f"not readable ({error.strerror})"
    return " ".join(line.replace("\t", "") for line in lines
                    if line.startswith(("State", "SigBlk", "SigIgn", "SigCgt")))


def group_members(pgid: int) -> list:
    """Live (not zombie) processes of a process group."""
    import psutil

    members = []
    for candidate in psutil.process_iter():
        with _quiet(psutil):
            if os.getpgid(candidate.pid) == pgid and \
                    candidate.status() != psutil.STATUS_ZOMBIE:
                members.append(candidate)
    return members


def test_kill_9_of_report_leaves_no_worker_or_kernel(report_process,
                                                     hostile_report: Path) -> None:
    before = snapshot(hostile_report)
    process, children = report_process(hostile_report)
    assert len(children) >= 3  # at least two workers and a kernel
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert survivors(children) == []
    assert group_members(process.pid) == []  # nothing left in the run's process group
    assert snapshot(hostile_report) == before  # the previous report, untouched


def _ctrl_c_state() -> tuple[bool, bool]:
    """In a pool worker: is SIGINT ignored, and is it blocked?"""
    return (signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
            signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_a_ctrl_c_while_workers_start_is_raised_after_not_lost() -> None:
    import threading
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from mfr_analysis.report import run as run_module

    reached = False
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                               initializer=run_module._worker_init, initargs=(os.getpid(),))
    try:
        with _ctrl_c_as_in_a_terminal():
            with pytest.raises(KeyboardInterrupt), run_module._workers_born_ignoring_ctrl_c():
                future = pool.submit(_ctrl_c_state)  # spawns the worker
                # a Ctrl-C as it starts, to the main thread: a process-directed one may be
                # handed to another of the test worker's threads, which do not hold it
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                reached = True
            assert reached  # held during the spawning, raised as it ended
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        # the worker ignores Ctrl-C but does not block it (its kernels would inherit that)
        assert future.result(timeout=120) == (True, False)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_report_stops_cleanly_and_keeps_the_previous_one(
        how: str, report_process, hostile_report: Path, tmp_path: Path) -> None:
    before = snapshot(hostile_report)
    process, children = report_process(hostile_report)
    state = signal_state(process.pid)  # said if the run does not stop: why it did not
    sent = time.monotonic()
    if how == "ctrl-c":  # a terminal sends SIGINT to the whole foreground process group
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGTERM)
    code = process.wait(timeout=60)
    assert code == 130, (f"exit {code} {time.monotonic() - sent:.1f} s after the signal; "
                         f"the run's signal state just before it: {state}")
    assert survivors(children) == []
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    assert [line for line in stderr.splitlines() if line.strip()] == [
        "mfr-analysis: error: interrupted"], stderr
    assert snapshot(hostile_report) == before
    assert not list(hostile_report.glob(".mfr-staging-*"))


# ------------------------------------------------------------------ in a real browser ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_hostile_pages_run_nothing_in_chromium(hostile_report: Path) -> None:
    """Each page opened in headless Chromium: no dialog, no request beyond the file and its
    data: images, no console message (a CSP violation would be one), every image shown."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    from tests.test_browser import CHROMIUM_FLAGS

    events: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 420, "height": 900})
            page.on("dialog", lambda dialog: (events.append(f"dialog {dialog.message}"),
                                              dialog.dismiss()))
            page.on("console", lambda message: events.append(f"console {message.text}"))
            page.on("pageerror", lambda error: events.append(f"error {error}"))
            page.on("request", lambda request: None if request.url.startswith(
                ("file:", "data:")) else events.append(f"request {request.url}"))
            for path in pages(hostile_report):
                page.goto(path.as_uri(), wait_until="load")
                page.mouse.move(10, 10)
                for selector in ("h1", "td", "a"):  # hover what holds the payloads
                    for element in page.query_selector_all(selector)[:8]:
                        if element.is_visible():
                            element.hover()
                broken = page.eval_on_selector_all(
                    "img", "images => images.filter(i => !(i.complete && i.naturalWidth > 0))"
                           ".length")
                assert broken == 0, path.name
                assert page.evaluate("document.scripts.length") == 0, path.name
        finally:
            browser.close()
    assert events == []
