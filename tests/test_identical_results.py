"""Speed work changes no result (issue 15): the clean table, the quarantine and the whole
claims table of the shipped sample are the same bytes as the committed fixtures; and the
primary rows still match the fixture of issue 12 (refactors change no number).

The fixtures are canonical CSV renderings (floats to 10 significant digits, ``\\n`` line ends)
rather than the parquet bytes, whose metadata names the writing library's version. They were
written with the test key before the performance work of issue 15. Regenerate them only for a
change meant to change results (``python -m tests.test_identical_results``) and say so in
the commit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.claims import evaluate_claims, primary_rows
from mfr_analysis.pipeline import load_sessions, run_clean
from tests.conftest import TEST_KEY

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "logs"
FIXTURES = REPO / "tests" / "fixtures"
CLEAN_FIXTURE = FIXTURES / "sample_clean_sessions.csv"
QUARANTINE_FIXTURE = FIXTURES / "sample_quarantine.csv"
CLAIMS_FIXTURE = FIXTURES / "sample_claims_full.csv"


def canonical(frame: pd.DataFrame) -> bytes:
    """One byte string per table: what the comparison reads."""
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode()


def tables(folder: Path) -> dict[Path, pd.DataFrame]:
    """The sample's clean table, quarantine and claims table, cleaned into ``folder``."""
    run_clean([SAMPLE], folder, progress=False, key=TEST_KEY.encode())
    sessions = pd.read_parquet(folder / "sessions.parquet")
    quarantine = pd.read_csv(folder / "quarantine.csv", dtype="str", keep_default_na=False)
    claims = evaluate_claims(load_sessions([folder]))
    return {CLEAN_FIXTURE: sessions, QUARANTINE_FIXTURE: quarantine, CLAIMS_FIXTURE: claims}


@pytest.fixture(scope="module")
def sample_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, pd.DataFrame]:
    return tables(tmp_path_factory.mktemp("identical") / "clean")


@pytest.fixture(scope="module")
def rendered(sample_tables: dict[Path, pd.DataFrame]) -> dict[Path, bytes]:
    return {path: canonical(table) for path, table in sample_tables.items()}


@pytest.mark.parametrize("fixture", [CLEAN_FIXTURE, QUARANTINE_FIXTURE, CLAIMS_FIXTURE],
                         ids=lambda p: p.stem)
def test_the_sample_gives_the_same_bytes(rendered: dict[Path, bytes], fixture: Path) -> None:
    got, expected = rendered[fixture], fixture.read_bytes()
    if got == expected:
        return
    different = [i for i, (a, b) in enumerate(zip(got.decode().splitlines(),
                                                  expected.decode().splitlines(), strict=False))
                 if a != b]
    imputed = _imputed_rows_agree(got, expected) if fixture == CLAIMS_FIXTURE else []
    unexplained = [i for i in different if i not in imputed]
    if unexplained or got.count(b"\n") != expected.count(b"\n"):  # say where, not only that
        pytest.fail(f"{fixture.name} differs (lengths {len(got)} vs {len(expected)}; first "
                    f"different line {unexplained[0] if unexplained else len(different)})")


IMPUTED = "multiple imputation"  # the method of the rows drawn by random imputation
IMPUTATION_RTOL = 0.1  # their Monte Carlo error with 20 imputations, across library versions


def _imputed_rows_agree(got: bytes, expected: bytes) -> list[int]:
    """Lines (0 = header) of the multiple-imputation rows whose words are the same and
    whose numbers agree within :data:`IMPUTATION_RTOL`.

    Their draws come from statsmodels' MICE under a fixed seed: the same bits on one
    installation, a few 1e-4 apart between numpy / statsmodels releases (a fresh machine
    installs the newest), so they cannot be byte-for-byte fixtures. Every other row is."""
    import io

    frames = [pd.read_csv(io.BytesIO(raw), dtype="str", keep_default_na=False)
              for raw in (got, expected)]
    if list(frames[0].columns) != list(frames[1].columns) or len(frames[0]) != len(frames[1]):
        return []
    agreeing = []
    for index in frames[0].index[frames[0]["method"].str.contains(IMPUTED)]:
        mine, theirs = frames[0].loc[index], frames[1].loc[index]
        numbers = [pd.to_numeric(row, errors="coerce") for row in (mine, theirs)]
        words = numbers[0].isna() & numbers[1].isna()
        if (mine[words] == theirs[words]).all() and np.allclose(
                numbers[0][~words].astype(float), numbers[1][~words].astype(float),
                rtol=IMPUTATION_RTOL, atol=1e-3, equal_nan=True):
            agreeing.append(int(index) + 1)
    return agreeing


def test_the_primary_rows_match_the_issue_12_fixture(
        sample_tables: dict[Path, pd.DataFrame]) -> None:
    # written by evaluate_claims before the refactor of issue 12; issue 13 added columns
    expected = pd.read_json(FIXTURES / "sample_claims.json", orient="records")
    table = primary_rows(sample_tables[CLAIMS_FIXTURE]).reset_index(drop=True)
    assert list(table.columns[:len(expected.columns)]) == list(expected.columns)
    for column in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            pd.testing.assert_series_equal(
                table[column].astype("float64"), expected[column].astype("float64"),
                check_names=False, rtol=1e-9, atol=1e-12, obj=column)
        else:
            got = table[column].fillna("").astype("str").tolist()
            assert got == expected[column].fillna("").astype("str").tolist(), column


def test_claim_inputs_are_the_same_when_the_prepared_cache_keeps_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrays dropped from the prepared table's cache are made again exactly."""
    from mfr_analysis.claims import claim_inputs
    from mfr_analysis.claims import inputs as inputs_module

    run_clean([SAMPLE], tmp_path, progress=False, key=TEST_KEY.encode())
    sessions = load_sessions([tmp_path])
    made = []
    change = inputs_module._change
    monkeypatch.setattr(inputs_module, "_change", lambda *a: made.append(a[2]) or change(*a))
    kept = claim_inputs(sessions)
    made_once, made[:] = list(made), []
    monkeypatch.setattr(inputs_module, "PREPARED_CACHE_BYTES", 0)
    remade = claim_inputs(sessions)
    assert len(made) > len(made_once)  # dropped changes were really made again
    assert kept.series.keys() == remade.series.keys() and len(kept.series) > 10
    for key, series in kept.series.items():
        pd.testing.assert_frame_equal(series.units, remade.series[key].units)
        pd.testing.assert_frame_equal(series.rows, remade.series[key].rows)
        assert series.counts == remade.series[key].counts


def test_the_clean_table_built_and_written_in_slices_is_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 97 rows: the source ids hashed, the table built, validated and written
    slice by slice give the fixture's bytes; the file has one row group per slice."""
    import pyarrow.parquet as pq

    from mfr_analysis import clean

    monkeypatch.setattr(clean, "ROWS_PER_SLICE", 97)
    run_clean([SAMPLE], tmp_path, progress=False, key=TEST_KEY.encode())
    sessions = pd.read_parquet(tmp_path / "sessions.parquet")
    assert canonical(sessions) == CLEAN_FIXTURE.read_bytes()
    quarantine = pd.read_csv(tmp_path / "quarantine.csv", dtype="str", keep_default_na=False)
    assert canonical(quarantine) == QUARANTINE_FIXTURE.read_bytes()
    groups = pq.ParquetFile(tmp_path / "sessions.parquet").metadata.num_row_groups
    assert len(sessions) > 97 * 20 and groups == -(-len(sessions) // 97)


def test_the_rendering_sees_a_change_in_the_tenth_digit() -> None:
    table = pd.DataFrame({"estimate": [1.234567891]})
    assert canonical(table) != canonical(table.assign(estimate=1.234567892))


if __name__ == "__main__":  # rewrite the fixtures: only for a change meant to change results
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for path, table in tables(Path(tmp) / "clean").items():
            path.write_bytes(data := canonical(table))
            print(f"wrote {path.relative_to(REPO)} ({len(data):,} bytes)")
