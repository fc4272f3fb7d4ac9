"""Reports end to end: papermill-run notebooks exported to offline, privacy-safe HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mfr_analysis.report.run import (
    BENCHMARK_NOTEBOOK,
    CLAIMS_NOTEBOOK,
    ReportOptions,
    SliceJob,
    ensure_kernel,
    notebook_dir,
    run_job,
    safe_slug,
)
from mfr_analysis.tables import load_table, normalise_token
from tests.conftest import REPO

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
EXTERNAL_CSS = re.compile(r"""@import|url\(\s*["']?(?:https?:)?//""", re.IGNORECASE)


def planted_identifiers(logs: Path) -> set[str]:
    """Names, e-mails, phones, notes and raw client ids as written in the messy log."""
    raw = pd.read_csv(logs, dtype=str, keep_default_na=False)
    aliases = set(load_table("identifier_columns")["alias"])
    client_aliases = set(load_table("column_aliases").query("canonical == 'client_id'")["alias"])
    values: set[str] = set()
    for column in raw.columns:
        token = normalise_token(column.replace("-", " "))
        if token in aliases or token in client_aliases:
            values |= {v for v in raw[column] if len(v.strip()) >= 5}
    return values


def test_index_links_every_group_report(report_dir: Path) -> None:
    index = (report_dir / "index.html").read_text(encoding="utf-8")
    links = set(re.findall(r'href="([^"]+\.html)"', index))
    assert {"data-quality.html", "claims-all.html"} <= links
    groups = [g for g in ("athlete", "senior", "desk_worker", "rehab", "chronic_pain")
              if f"claims-{g}.html" in links]
    assert len(groups) == 5
    for link in links:
        assert (report_dir / link).is_file()
        assert (report_dir / "notebooks" / link.replace(".html", ".ipynb")).is_file()


def test_claims_report_content(report_dir: Path) -> None:
    for page in report_dir.glob("claims-*.html"):
        text = page.read_text(encoding="utf-8")
        assert 'class="mfr-scorecard"' in text, page.name
        assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) >= 5, page.name
        assert ">Methods<" in text and "fingerprint" in text
        assert "Traceback" not in text
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in text, page.name


def test_html_is_offline(report_dir: Path) -> None:
    for page in report_dir.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not EXTERNAL.search(text), (page.name, EXTERNAL.search(text))
        assert not EXTERNAL_CSS.search(text), page.name
        assert "<script src" not in text


def test_no_identifier_reaches_any_report(report_dir: Path, simulated_logs: Path) -> None:
    identifiers = planted_identifiers(simulated_logs)
    assert len(identifiers) > 100  # the simulator did plant names, e-mails and ids
    outputs = [*report_dir.glob("*.html"), *report_dir.glob("notebooks/*.ipynb"),
               *report_dir.glob("*.json")]
    for output in outputs:
        text = output.read_text(encoding="utf-8")
        leaked = [value for value in identifiers if value in text]
        assert not leaked, (output.name, leaked[:3])


def test_saved_claims_table_is_suppressed_and_tidy(report_dir: Path) -> None:
    claims = pd.DataFrame(json.loads((report_dir / "claims-all.json").read_text()))
    assert list(claims.columns[:14]) == [
        "claim_id", "audience_group", "outcome", "estimate", "ci_low", "ci_high", "p_value",
        "p_adjusted", "mcid", "n_clients", "n_sessions", "method", "verdict", "note"]
    shown = claims["n_clients"].dropna()
    assert not shown.between(1, 10).any()


@pytest.mark.parametrize("name", ["../../x", "Site A/B", "..", "", "Clinique Zoë", "a" * 300])
def test_slugs_stay_inside_the_folder(name: str, tmp_path: Path) -> None:
    slug = safe_slug(name)
    assert slug and "/" not in slug and not slug.startswith(".")
    assert (tmp_path / f"{slug}.html").resolve().parent == tmp_path.resolve()
    assert safe_slug("desk_worker") == "desk_worker"
    assert safe_slug("Site A") != safe_slug("site-a")


def test_a_failed_slice_is_reported_and_rendered(tmp_path: Path) -> None:
    job = SliceJob(CLAIMS_NOTEBOOK, "broken", "Broken", {
        "sessions_path": str(tmp_path / "missing.parquet"), "cleaning_report_path": "",
        "claims_path": "", **{k: v for k, v in vars(ReportOptions()).items()
                             if k in {"title", "alpha"}}})
    result = run_job(job, str(notebook_dir()), str(tmp_path), ensure_kernel())
    assert result.error
    assert (tmp_path / "broken.html").is_file()


def test_explore_notebook_runs_on_the_clean_table(report_dir: Path, tmp_path: Path) -> None:
    job = SliceJob("explore.ipynb", "explore", "Explore", {
        "sessions_path": str(report_dir / "data" / "sessions.parquet"),
        "cleaning_report_path": str(report_dir / "data" / "cleaning_report.json")})
    result = run_job(job, str(REPO / "notebooks"), str(tmp_path), ensure_kernel())
    assert result.error == ""
    executed = json.loads((tmp_path / "notebooks" / "explore.ipynb").read_text())
    shown = "".join(
        "".join(output.get("data", {}).get("text/plain", ""))
        for cell in executed["cells"] for output in cell.get("outputs", []))
    assert "verdict" in shown and "chronic_pain" in shown


def test_notebooks_are_committed_clean() -> None:
    notebooks = [*notebook_dir().glob("*.ipynb"), *(REPO / "notebooks").glob("*.ipynb")]
    assert {p.name for p in notebooks} == {CLAIMS_NOTEBOOK, "data_quality.ipynb",
                                            BENCHMARK_NOTEBOOK, "explore.ipynb"}
    for path in notebooks:
        notebook = json.loads(path.read_text())
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), path.name
        assert all(not cell.get("outputs") and cell.get("execution_count") is None
                   for cell in code), path.name


def test_site_slices_stay_inside_and_small_sites_are_withheld(tmp_path: Path) -> None:
    from mfr_analysis.claims import CLAIMS_COLUMNS
    from mfr_analysis.report.disclosure import plan_folder
    from mfr_analysis.report.run import plan_jobs

    sites = ["../../x"] * 12 + ["Clinique Zoë"] * 12 + ["Big"] * 40 + ["tiny"] * 3
    sessions = pd.DataFrame({"client_id": [f"c{i}" for i in range(len(sites))], "site": sites,
                             "audience_group": "athlete"})

    def no_claims(_part: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(columns=list(CLAIMS_COLUMNS))

    folder = plan_folder(sessions, "site", no_claims, minimum=11)
    out = tmp_path / "out"
    jobs, withheld = plan_jobs(tmp_path / "sessions.parquet", None, out, "site",
                               ReportOptions(), folder)
    sliced = [job for job in jobs if job.parameters["slice_column"] == "site"]
    # tiny (3) is withheld, and the smallest other site with it, so 3 cannot be derived
    assert sorted(job.parameters["slice_value"] for job in sliced) == ["Big", "Clinique Zoë"]
    for job in sliced:
        target = (out / f"{job.slug}.html").resolve()
        assert target.parent == out.resolve()
        assert Path(job.parameters["claims_path"]).resolve().parent == out.resolve()
    assert len(withheld) == 2 and not any("tiny" in line for line in withheld)
    assert any(line.startswith("../../x: no report") for line in withheld)


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_index_page_and_the_runner_do_not_import_each_other() -> None:
    """The runner writes the index; the index reads the results from report/results.py."""
    report = REPO / "src" / "mfr_analysis" / "report"
    assert "mfr_analysis.report.index" in imported_modules(report / "run.py")
    for module in ("index.py", "results.py"):
        assert "mfr_analysis.report.run" not in imported_modules(report / module), module


def test_the_index_page_is_a_template_rendered_with_autoescape(tmp_path: Path) -> None:
    from mfr_analysis.report.index import TEMPLATE, _environment, write_index
    from mfr_analysis.report.results import SliceResult

    assert _environment().autoescape is True
    assert (REPO / "src" / "mfr_analysis" / "templates" / TEMPLATE).is_file()
    page = write_index(tmp_path, [SliceResult("claims-x", "<b>x</b>", CLAIMS_NOTEBOOK,
                                              "claims-x.html", "")], ["{{ 7 * 7 }}"],
                       "T & <i>", {}).read_text(encoding="utf-8")
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<h1>T &amp; &lt;i&gt;</h1>" in page
    assert "{{ 7 * 7 }} (privacy rule)" in page  # data is never read as template code
