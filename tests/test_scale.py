"""The Dask engine gives the pandas engine's answers, whatever the partitioning."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.dask_clean import run_clean_dask
from mfr_analysis.pipeline import load_sessions, run_clean
from mfr_analysis.schema import CleanSessions
from tests.conftest import TEST_KEY

COUNTS = ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "reasons",
          "reasons_by_field", "per_source", "session_ids", "columns_absent", "dropped_columns",
          "identifier_columns_dropped", "rows_per_source_read")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four simulated files; the third repeats rows of the first (duplicates across files);
    the fourth is a small clinic network's log with the intake factors (clinician, age or a
    date of birth, sex, symptom duration)."""
    from mfr_analysis.simulate import write_network, write_simulation

    folder = tmp_path_factory.mktemp("scale")
    write_simulation(80, 3, folder / "a.csv")
    write_simulation(60, 4, folder / "b.csv")
    write_network(folder / "d.csv", clients=40, sites=3, clinicians=6, seed=5)
    lines = (folder / "a.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "c.csv").write_text("".join(lines[:1] + lines[40:90]), encoding="utf-8")
    for truth in folder.glob("*.truth.*"):
        truth.unlink()
    return folder


def _outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    sessions = pd.read_parquet(out / SESSIONS_FILE)
    sessions = sessions.sort_values("session_id").reset_index(drop=True)
    quarantine = pd.read_csv(out / QUARANTINE_FILE, dtype=str, keep_default_na=False)
    quarantine = quarantine.sort_values(["source_file", "source_line"]).reset_index(drop=True)
    report = json.loads((out / CLEANING_REPORT_FILE).read_text())
    return sessions, quarantine, report


def _assert_same(left: Path, right: Path) -> None:
    s1, q1, r1 = _outputs(left)
    s2, q2, r2 = _outputs(right)
    pd.testing.assert_frame_equal(s1, s2)
    pd.testing.assert_frame_equal(q1, q2)
    assert {k: r1[k] for k in COUNTS} == {k: r2[k] for k in COUNTS}


@pytest.fixture(scope="module")
def pandas_out(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pandas-engine")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse key is not set yet
        patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
        run_clean([logs], out, progress=False)
    return out


def test_dask_engine_equals_pandas_engine(logs: Path, pandas_out: Path, cluster: str,
                                          tmp_path: Path) -> None:
    report = run_clean_dask([logs], tmp_path, scheduler=cluster, progress=False)
    assert report["engine"]["partitions"] == 4  # small files: one partition each
    assert report["rows_in"] == (report["rows_clean"] + report["rows_quarantined"]
                                 + report["rows_duplicate"])
    assert report["engine"]["duplicates_across_partitions"] > 0  # c.csv repeats a.csv
    assert (tmp_path / SESSIONS_FILE).is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE, "manifest.json"])  # no staging
    _assert_same(tmp_path, pandas_out)
    sessions = pd.read_parquet(tmp_path / SESSIONS_FILE)
    CleanSessions.validate(sessions)
    network = sessions[sessions["source_file"] == "d.csv"]  # intake factors, both engines
    assert len(network) > 100
    assert network[["clinician", "age", "sex", "symptom_duration_weeks"]].notna().all().all()
    assert network["clinician"].str.match(r"^t_[0-9a-f]{16}$").all()
    # the quarantine file is byte-identical (input order is partition order)
    assert (tmp_path / QUARANTINE_FILE).read_bytes() == (pandas_out / QUARANTINE_FILE).read_bytes()


def test_two_partitionings_give_the_same_answers(logs: Path, pandas_out: Path, cluster: str,
                                                 tmp_path: Path) -> None:
    small = run_clean_dask([logs], tmp_path / "small", scheduler=cluster, progress=False,
                           blocksize=12_000)
    other = run_clean_dask([logs], tmp_path / "other", scheduler=cluster, progress=False,
                           blocksize=31_000)
    assert small["engine"]["partitions"] > other["engine"]["partitions"] > 3  # byte ranges
    _assert_same(tmp_path / "small", tmp_path / "other")
    _assert_same(tmp_path / "small", pandas_out)


def test_same_row_in_two_files_is_counted_once(cluster: str, tmp_path: Path) -> None:
    source = Path(__file__).parent / "fixtures" / "messy_sessions.csv"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(source, folder / "one.csv")
    shutil.copy(source, folder / "two.csv")
    alone = run_clean([source], tmp_path / "alone", progress=False)
    report = run_clean_dask([folder], tmp_path / "out", scheduler=cluster, progress=False)
    assert report["rows_in"] == 2 * alone["rows_in"]
    assert report["rows_clean"] == alone["rows_clean"]
    assert report["rows_duplicate"] == alone["rows_duplicate"] * 2 + alone["rows_clean"]
    assert report["per_source"]["two.csv"]["rows_clean"] == 0
    sessions = pd.read_parquet(tmp_path / "out" / SESSIONS_FILE)
    assert sessions["session_id"].is_unique
    assert set(sessions["source_file"]) == {"one.csv"}


class _Text(HTMLParser):
    """The text a reader sees on a page (script and style left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.parts.append(" ".join(data.split()))


def _published(report: Path) -> dict[str, object]:
    """What a report folder hands over: each page's text (the index's time of generation
    left out) and each claims file's contents."""
    published: dict[str, object] = {}
    for page in sorted(report.glob("*.html")):
        text = _Text()
        text.feed(page.read_text(encoding="utf-8"))
        published[page.name] = [re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC",
                                       "generated (time)", part) for part in text.parts]
    for claims in sorted(report.glob("claims-*.json")):
        published[claims.name] = json.loads(claims.read_text(encoding="utf-8"))
    return published


def test_dask_output_feeds_claims_and_reports(logs: Path, pandas_out: Path, cluster: str,
                                              tmp_path: Path) -> None:
    """The Dask engine's folder of parts gives the pandas engine's claims table, and a report
    from it (its slices run as tasks on a Dask cluster) publishes the same pages."""
    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.dask_clean import local_cluster
    from mfr_analysis.report.run import run_reports

    clean = tmp_path / "clean"
    report = run_clean_dask([logs], clean, scheduler=cluster, progress=False, blocksize=30_000)
    assert report["engine"]["partitions"] > 3
    derived = load_sessions([clean])
    assert len(derived) == report["rows_clean"]
    claims = evaluate_claims(derived)
    pd.testing.assert_frame_equal(claims, evaluate_claims(load_sessions([pandas_out])),
                                  rtol=1e-9)
    assert claims["verdict"].isin(["supported", "below_threshold"]).sum() >= 5

    # worker processes: each notebook's kernel client lives and dies in a worker
    with local_cluster(2) as workers:
        run_reports([clean], tmp_path / "from-dask", scheduler=workers.scheduler_address,
                    progress=False)
    run_reports([pandas_out], tmp_path / "from-pandas", workers=2, progress=False)
    published = _published(tmp_path / "from-dask")
    assert {"index.html", "claims-all.html", "claims-all.json"} <= set(published)
    assert len([name for name in published if name.endswith(".html")]) >= 3
    assert published == _published(tmp_path / "from-pandas")


def test_quoted_line_break_makes_the_file_read_whole(cluster: str, tmp_path: Path) -> None:
    rows = 300
    frame = pd.DataFrame({
        "client": [f"P{i % 37}" for i in range(rows)],
        "date": [f"2024-03-{1 + i % 28:02d}" for i in range(rows)],
        "group": ["athlete", "senior", "office worker"] * (rows // 3),
        "clinic": ["North\nClinic" if i == 150 else "South" for i in range(rows)],
        "pain before": [str(3 + i % 6) for i in range(rows)],
        "pain after": [f"{2 + i % 5}/10" for i in range(rows)],
    })
    frame.to_csv(tmp_path / "quoted.csv", index=False)
    pandas_report = run_clean([tmp_path / "quoted.csv"], tmp_path / "p", progress=False)
    report = run_clean_dask([tmp_path / "quoted.csv"], tmp_path / "d", scheduler=cluster,
                            progress=False, blocksize=1500)
    assert report["engine"]["partitions"] == 1
    assert {k: report[k] for k in COUNTS} == {k: pandas_report[k] for k in COUNTS}
    _assert_same(tmp_path / "d", tmp_path / "p")


def test_cli_dask_engine_on_a_local_cluster(logs: Path, pandas_out: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mfr_analysis.cli import app

    result = CliRunner().invoke(app, ["clean", str(logs), "--out", str(tmp_path),
                                      "--engine", "dask", "--no-progress"])
    assert result.exit_code == 0, result.output
    _assert_same(tmp_path, pandas_out)


def test_cli_scheduler_needs_the_dask_engine(logs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mfr_analysis.cli import app

    result = CliRunner().invoke(app, ["clean", str(logs), "--out", str(tmp_path),
                                      "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code != 0
    assert "--engine dask" in result.output


@pytest.mark.parametrize("keys_per_bucket", [None, 40], ids=["one-bucket", "many-buckets"])
def test_repeats_across_byte_ranges_of_one_file(cluster: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                keys_per_bucket: int | None) -> None:
    """A repeated source session id, an exact duplicate and two spellings of a site, each
    split over two byte ranges, get the pandas engine's answers (the keys searched for
    repeats in one task, or in hash buckets of 40 rows' keys each)."""
    from mfr_analysis import dask_clean

    if keys_per_bucket is not None:
        monkeypatch.setattr(dask_clean, "_KEYS_PER_BUCKET", keys_per_bucket)
    rows = 300
    frame = pd.DataFrame({
        "session id": [f"S{i}" for i in range(rows)],
        "client": [f"P{i % 41}" for i in range(rows)],
        "date": [f"2024-03-{1 + i % 28:02d}" for i in range(rows)],
        "group": ["athlete", "senior", "office worker"] * (rows // 3),
        "clinic": ["north clinic" if i % 7 == 0 else "North Clinic" for i in range(rows)],
        "pain before": [str(3 + i % 6) for i in range(rows)],
        "pain after": [f"{2 + i % 5}/10" for i in range(rows)],
    })
    frame.loc[250, ["session id", "client"]] = ["S10", "P10"]  # same id, other content
    frame.loc[260] = frame.loc[20]  # an exact duplicate, far away
    frame.to_csv(tmp_path / "one.csv", index=False)
    pandas_report = run_clean([tmp_path / "one.csv"], tmp_path / "p", progress=False)
    report = run_clean_dask([tmp_path / "one.csv"], tmp_path / "d", scheduler=cluster,
                            progress=False, blocksize=2000)
    assert report["engine"]["partitions"] > 3
    assert report["engine"]["duplicates_across_partitions"] == 1
    assert pandas_report["session_ids"]["repeated_source_ids"] == 1
    assert {k: report[k] for k in COUNTS} == {k: pandas_report[k] for k in COUNTS}
    _assert_same(tmp_path / "d", tmp_path / "p")


@pytest.mark.parametrize("limit", [None, 150], ids=["default-limits", "large-cells"])
def test_claims_reduced_on_dask_equal_the_full_path(logs: Path, cluster: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    limit: int | None) -> None:
    """Shuffled by client into several partitions, derived and reduced to per-client sums on
    the cluster: the claims table equals the in-memory one, whichever route each cell takes."""
    from mfr_analysis import claims, dask_claims
    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.dask_claims import evaluate_claims_at_scale

    monkeypatch.setattr(dask_claims, "SESSIONS_PER_SHUFFLE_PARTITION", 120)
    if limit is not None:  # the pooled cells go the client-sum routes, groups stay small
        for name, kind in claims.KINDS.items():
            if kind.session_limit >= 0:  # dose is always on client sums
                monkeypatch.setitem(claims.KINDS, name, replace(kind, session_limit=limit))
    run_clean_dask([logs], tmp_path, scheduler=cluster, progress=False, blocksize=30_000)
    full = claims.primary_rows(evaluate_claims(load_sessions([tmp_path])))
    reduced = evaluate_claims_at_scale(tmp_path, scheduler=cluster, in_memory_max=0)
    stated = reduced["note"].str.extract(r"(reduced on a Dask cluster to per-client sums "
                                         r"\(([\d,]+) sessions in (\d+) partitions.*)$")
    assert stated[0].notna().all()
    assert int(stated[1].iloc[0].replace(",", "")) == len(load_sessions([tmp_path]))
    assert int(stated[2].iloc[0]) >= 4
    reduced["note"] = [n[: -len(s)].removesuffix("; ") for n, s in zip(
        reduced["note"], stated[0], strict=True)]
    pd.testing.assert_frame_equal(reduced, full, rtol=1e-9)
    assert full["verdict"].isin(["supported", "below_threshold"]).sum() >= 5
    # the adjusted/unadjusted pairs and E-values (issue 13) are in the compared frames
    controlled = full.loc[(full["design"] == "controlled") & full["se"].notna()]
    assert len(controlled) >= 3
    for column in ("estimate_unadjusted", "ci_low_unadjusted", "e_value", "e_value_ci"):
        assert controlled[column].notna().all(), column
    assert (controlled["estimate_unadjusted"] != controlled["estimate"]).any()
    if limit is not None:
        methods = " ".join(full["method"])
        for route in ("on per-client means", "client slopes", "from per-client sums",
                      "from per-client counts", "MixedLM"):
            assert route in methods


def test_claims_over_the_in_memory_limit_use_the_cluster(logs: Path, cluster: str,
                                                          tmp_path: Path) -> None:
    from mfr_analysis.dask_claims import claim_inputs_at_scale

    run_clean_dask([logs], tmp_path, scheduler=cluster, progress=False)
    n = len(load_sessions([tmp_path]))
    _, note = claim_inputs_at_scale(tmp_path, scheduler=cluster, in_memory_max=n)
    assert note == ""  # read whole
    inputs, note = claim_inputs_at_scale(tmp_path, scheduler=cluster, in_memory_max=n - 1)
    assert "per-client sums" in note and inputs.n_sessions == n


def test_claims_at_scale_read_one_series_at_a_time_from_a_scratch_folder(
        logs: Path, cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers write each partition's per-client sums to the scratch folder, one file per
    series; the driver reads one series when asked (kept until the next), in the in-memory
    engine's order, and the folder goes when the block ends."""
    from mfr_analysis import dask_claims
    from mfr_analysis.claims import claim_inputs

    monkeypatch.setattr(dask_claims, "SESSIONS_PER_SHUFFLE_PARTITION", 120)
    run_clean_dask([logs], tmp_path / "clean", scheduler=cluster, progress=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    whole = claim_inputs(load_sessions([tmp_path / "clean"]))
    with dask_claims.reduced_inputs(tmp_path / "clean", scheduler=cluster, in_memory_max=0,
                                    scratch=scratch) as (inputs, note):
        assert isinstance(inputs.series, dask_claims.SeriesOnDisk) and "per-client" in note
        written = list(scratch.rglob("part-*.arrow"))
        assert len({f.parent for f in written}) == len(whole.series)  # a folder per series
        assert len(written) >= 2 * len(whole.series)  # several partitions each
        key = "pain|pain"
        first = inputs.series[key]
        assert inputs.series[key] is first  # kept while the claim asks again
        expected = whole.series[key].units
        assert len(first.units) == len(expected)
        assert first.units["client_id"].dtype == "int64"
        for column in expected.columns.drop(["group", "client_id"]):
            assert first.units[column].equals(expected[column]), column  # same order, bits
        assert (first.units["group"].astype(str) == expected["group"].astype(str)).all()
        assert first.counts == whole.series[key].counts
    assert list(scratch.iterdir()) == []


def test_claims_at_scale_say_when_the_scratch_folder_cannot_be_made(
        logs: Path, tmp_path: Path) -> None:
    from mfr_analysis.dask_claims import evaluate_claims_at_scale
    from mfr_analysis.errors import InputError

    run_clean([logs], tmp_path / "clean", progress=False)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(InputError, match="scratch folder for the per-client sums") as error:
        evaluate_claims_at_scale(tmp_path / "clean", in_memory_max=0, scratch=not_a_folder)
    assert "\n" not in str(error.value)


def test_a_file_without_session_ids_gets_derived_ids_beside_one_with_them(
        logs: Path, tmp_path: Path) -> None:
    """Regression (pandas engine): stacking a file without a session id column under one with
    it used to give every row of the former the same 'source' id."""
    both = run_clean([logs / "a.csv", logs / "b.csv"], tmp_path / "both", progress=False)
    alone = run_clean([logs / "b.csv"], tmp_path / "alone", progress=False)
    assert alone["session_ids"]["from_source"] == 0
    assert both["session_ids"]["repeated_source_ids"] == 0
    assert both["session_ids"]["derived"] == alone["session_ids"]["derived"]
    ids = pd.read_parquet(tmp_path / "both" / SESSIONS_FILE).set_index("source_line")
    ids_alone = pd.read_parquet(tmp_path / "alone" / SESSIONS_FILE).set_index("source_line")
    b_rows = ids[ids["source_file"] == "b.csv"]["session_id"].sort_index()
    assert b_rows.equals(ids_alone["session_id"].sort_index())


def test_claims_at_scale_say_when_the_scratch_disk_is_full(
        logs: Path, cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that cannot write its per-client sums (a full disk) gives one line naming the
    folder and the way out, and the scratch folder is removed."""
    import errno

    from mfr_analysis import dask_claims
    from mfr_analysis.errors import InputError

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    run_clean_dask([logs], tmp_path / "clean", scheduler=cluster, progress=False)
    monkeypatch.setattr(dask_claims.feather, "write_feather", full)  # in-process workers
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(InputError, match="No space left on device.*--scratch") as error:
        dask_claims.evaluate_claims_at_scale(tmp_path / "clean", scheduler=cluster,
                                             in_memory_max=0, scratch=scratch)
    assert "\n" not in str(error.value) and str(scratch) in str(error.value)
    assert list(scratch.iterdir()) == []
