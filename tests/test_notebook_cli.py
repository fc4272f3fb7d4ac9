"""The report notebooks run by the ``papermill`` command line behave like ``mfr-analysis report``:
a misspelt ``-p`` stops the run naming it, a slice is named by its value or its label, a wrong
one lists the valid values, raw logs are never called an already clean table, and a missing
path is named whole. Each test runs the real papermill CLI in a subprocess on a small input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mfr_analysis.report.run import CLAIMS_NOTEBOOK, DATA_QUALITY_NOTEBOOK, notebook_dir

CLIENTS = 120


@pytest.fixture(scope="module")
def small_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small messy simulated log (raw)."""
    from mfr_analysis.simulate import write_simulation

    out = tmp_path_factory.mktemp("small") / "logs.csv"
    write_simulation(CLIENTS, 11, out)
    return out


@pytest.fixture(scope="module")
def small_clean(small_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small log cleaned: a folder with sessions.parquet and cleaning_report.json."""
    from mfr_analysis.pipeline import run_clean
    from tests.conftest import TEST_KEY

    with pytest.MonkeyPatch.context() as patch:  # module scope: set the key by hand
        patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
        out = tmp_path_factory.mktemp("clean")
        run_clean([small_logs], out, progress=False)
    return out


def papermill(notebook: str, out: Path, cwd: Path, *parameters: str) -> subprocess.CompletedProcess:
    """``papermill NOTEBOOK OUT -p NAME VALUE ...`` from ``cwd``, as an analyst types it."""
    from mfr_analysis.report.run import ensure_kernel

    pairs = [arg for pair in zip(parameters[::2], parameters[1::2], strict=True)
             for arg in ("-p", *pair)]
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(notebook_dir() / notebook), str(out),
         "-k", ensure_kernel(), *pairs],
        cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def shown(executed: Path) -> str:
    """Every text and HTML output of an executed notebook."""
    notebook = json.loads(executed.read_text(encoding="utf-8"))
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            parts += ["".join(data.get(kind, "")) for kind in ("text/html", "text/markdown",
                                                               "text/plain")]
            parts.append("".join(output.get("text", "")))
    return "\n".join(parts)


def test_a_misspelt_parameter_stops_the_run_naming_it(small_clean: Path,
                                                      tmp_path: Path) -> None:
    run = papermill(CLAIMS_NOTEBOOK, tmp_path / "out.ipynb", tmp_path,
                    "sessions_path", str(small_clean / "sessions.parquet"),
                    "slice_valu", "athlete")
    assert run.returncode != 0
    assert "unknown parameter slice_valu (did you mean slice_value?)" in run.stderr
    executed = json.loads((tmp_path / "out.ipynb").read_text(encoding="utf-8"))
    reached = [cell for cell in executed["cells"] if cell["cell_type"] == "code"
               and cell.get("execution_count")]
    assert len(reached) == 3  # parameters, papermill's injected cell, the check: no report


def test_a_slice_is_named_by_its_label_too(small_clean: Path, tmp_path: Path) -> None:
    """'Chronic pain' as the reports write it (the runner passes the value, chronic_pain)."""
    out = tmp_path / "out.ipynb"
    run = papermill(DATA_QUALITY_NOTEBOOK, out, tmp_path,
                    "sessions_path", str(small_clean / "sessions.parquet"),
                    "slice_column", "audience_group", "slice_value", "Chronic pain")
    assert run.returncode == 0, run.stderr[-2000:]
    text = shown(out)
    assert "Chronic pain" in text and "Athletes" not in text


def test_slice_values_by_code_or_label_in_any_case() -> None:
    import pandas as pd

    from mfr_analysis.errors import InputError
    from mfr_analysis.report.views import slice_code

    groups = pd.Series(["athlete", "chronic_pain", "desk_worker"], dtype="string")
    for value in ("chronic_pain", "Chronic pain", "chronic pain", "CHRONIC_PAIN"):
        assert slice_code(groups, "audience_group", value) == "chronic_pain"
    assert slice_code(groups, "audience_group", "Desk workers") == "desk_worker"
    sites = pd.Series(["Site A", "site a", "North"], dtype="string")
    assert slice_code(sites, "site", "site a") == "site a"  # the exact value first
    assert slice_code(sites, "site", "north") == "North"
    with pytest.raises(InputError, match="matches several values"):
        slice_code(sites, "site", "SITE A")


def test_a_wrong_slice_value_lists_the_valid_ones(small_clean: Path, tmp_path: Path) -> None:
    run = papermill(DATA_QUALITY_NOTEBOOK, tmp_path / "out.ipynb", tmp_path,
                    "sessions_path", str(small_clean / "sessions.parquet"),
                    "slice_column", "audience_group", "slice_value", "chronic pian")
    assert run.returncode != 0
    assert "slice_value 'chronic pian' is not a audience_group of these sessions" in run.stderr
    assert "chronic_pain (Chronic pain)" in run.stderr and "athlete (Athletes)" in run.stderr


def test_raw_logs_are_never_called_an_already_clean_table(small_logs: Path, small_clean: Path,
                                                          tmp_path: Path) -> None:
    raw = tmp_path / "raw.ipynb"
    run = papermill(DATA_QUALITY_NOTEBOOK, raw, tmp_path, "sessions_path", str(small_logs))
    assert run.returncode == 0, run.stderr[-2000:]
    text = shown(raw)
    assert "already clean table" not in text
    assert "raw logs, cleaned in memory" in text


def test_a_clean_tables_own_cleaning_report_is_found(small_logs: Path, small_clean: Path) -> None:
    from mfr_analysis.report.quality import cleaning_report_for, quality_summary

    table = str(small_clean / "sessions.parquet")
    found = cleaning_report_for(table)
    assert found == str(small_clean / "cleaning_report.json")
    report = json.loads(Path(found).read_text(encoding="utf-8"))
    assert f"{report['rows_in']:,} rows read" in quality_summary(found, table).data
    assert cleaning_report_for(str(small_logs)) == ""  # raw logs: cleaned in memory, no report
    assert "already clean table" not in quality_summary("", str(small_logs)).data


def test_a_missing_path_is_named_whole(small_clean: Path, tmp_path: Path) -> None:
    run = papermill(DATA_QUALITY_NOTEBOOK, tmp_path / "out.ipynb", tmp_path,
                    "sessions_path", "../elsewhere/data/sessions.parquet")
    assert run.returncode != 0
    whole = (tmp_path / ".." / "elsewhere" / "data" / "sessions.parquet").resolve()
    assert f"sessions_path {whole}: no such file or folder" in run.stderr


def test_a_missing_cleaning_report_is_named_whole(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mfr_analysis.errors import InputError
    from mfr_analysis.report.quality import load_cleaning_report

    monkeypatch.chdir(tmp_path)
    whole = tmp_path.resolve() / "gone" / "cleaning_report.json"
    with pytest.raises(InputError, match=f"cleaning_report_path {whole}: no such file"):
        load_cleaning_report("gone/cleaning_report.json")
