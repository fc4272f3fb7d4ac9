"""The data-quality page: quarantine reasons in words that name the field (from the cleaning
report's per-field breakdown), a link to the quarantine for the analyst, missing values with
numbers and what missing follow-up means, and 0-10 ratings as bars that rest on enough
clients."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mfr_analysis.report import figures, quality  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
MINIMUM = 11


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures made by a test are closed after it."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def cleaned():
    from mfr_analysis.clean import clean_sessions
    from mfr_analysis.read import read_logs

    raw = read_logs([FIXTURES / "messy_sessions.csv"])
    return clean_sessions(raw.frame, key=b"test-key-not-secret", today=dt.date(2025, 1, 1))


def test_the_cleaning_report_counts_rows_per_reason_and_field(cleaned) -> None:
    expected: dict[str, int] = {}
    for detail in cleaned.quarantine["reason_detail"]:
        for item in {i.split(" (")[0] for i in str(detail).split(";") if i}:
            expected[item] = expected.get(item, 0) + 1
    by_field = cleaned.report["reasons_by_field"]
    assert by_field == expected
    assert by_field["out_of_range:pain_pre"] >= 1
    totals: dict[str, int] = {}
    for key, rows in by_field.items():
        totals[key.split(":")[0]] = totals.get(key.split(":")[0], 0) + rows
    for reason, rows in cleaned.report["reasons"].items():
        assert totals[reason] >= rows  # a row can have one reason in two fields


def test_reasons_are_worded_with_the_field_they_concern(cleaned) -> None:
    assert quality.reason_words("out_of_range", "pain_pre") == "pain before: outside 0-10"
    assert quality.reason_words("out_of_range", "duration_min") == (
        "session length: outside 0-120 minutes (above 0)")
    assert quality.reason_words("unparseable_date", "session_date") == (
        "session date: could not be read as a date")
    lines = quality.reason_lines(cleaned.report)
    assert "pain before: outside 0-10" in lines.index
    assert lines.is_monotonic_decreasing
    assert lines.sum() == sum(cleaned.report["reasons_by_field"].values())
    assert not any("_" in words for words in lines.index)  # no code left unworded
    table = quality.reason_table(cleaned.report)
    assert table.index.name == "field: what was wrong"
    assert table.loc["pain before: outside 0-10", "quarantined"] == (
        f"{lines['pain before: outside 0-10']} row" + (
            "s" if lines["pain before: outside 0-10"] != 1 else ""))


def test_every_reason_code_and_report_field_has_words() -> None:
    from mfr_analysis.clean import reason_codes
    from mfr_analysis.read import INPUT_COLUMNS
    from mfr_analysis.tables import load_table

    assert set(load_table("reason_phrases")["reason"]) == set(reason_codes())
    assert set(INPUT_COLUMNS) | {"row"} <= set(load_table("field_words")["field"])


def test_summary_names_fields_and_older_reports_still_read(tmp_path: Path) -> None:
    import json

    report = {"rows_in": 30, "rows_clean": 20, "rows_quarantined": 9, "rows_duplicate": 1,
              "reasons": {"out_of_range": 9},
              "reasons_by_field": {"out_of_range:pain_pre": 6, "out_of_range:stress_post": 3}}
    path = tmp_path / "cleaning_report.json"
    path.write_text(json.dumps(report))
    summary = quality.quality_summary(str(path)).data
    assert "pain before\\: outside 0\\-10 (6)" in summary  # Markdown-escaped words
    del report["reasons_by_field"]  # a report written before the per-field breakdown
    older = quality.reason_lines(report)
    assert list(older.index) == ["a numeric field lies outside its plausible bounds"]


def test_the_page_links_to_the_quarantine_for_the_analyst() -> None:
    from mfr_analysis.report.safe_text import CSP_META, unsafe_markup

    link = quality.quarantine_link({"rows_quarantined": 22}).data
    assert 'href="data/quarantine.csv"' in link
    assert "row-level data" in link and "analyst" in link and "not for sharing" in link
    page = f"<html><head>{CSP_META}<style></style></head><body>{link}</body></html>"
    assert unsafe_markup(page) == []
    other = page.replace("data/quarantine.csv", "data/sessions.parquet")
    assert unsafe_markup(other) != []  # only the quarantine file may be linked


def test_missing_follow_up_is_explained() -> None:
    note = quality.missing_followup_note().data
    assert "hours after the session" in note and "not random" in note


def test_views_still_offer_the_moved_functions() -> None:
    from mfr_analysis.report import views

    assert views.quality_summary is quality.quality_summary
    assert views.load_cleaning_report is quality.load_cleaning_report
    assert views.reason_counts is quality.reason_counts


def rating_sessions() -> pd.DataFrame:
    """Athletes: 40 clients rating 3-7, 4 clients at 0 and 5 at 10; seniors: 8 clients."""
    rng = np.random.default_rng(1)
    rows = [{"client_id": f"a{i}", "audience_group": "athlete",
             "pain_pre": float(rng.integers(3, 8))} for i in range(40) for _ in range(2)]
    rows += [{"client_id": f"z{i}", "audience_group": "athlete", "pain_pre": 0.0}
             for i in range(4)]
    rows += [{"client_id": f"t{i}", "audience_group": "athlete", "pain_pre": 9.6}
             for i in range(5)]
    rows += [{"client_id": f"s{i}", "audience_group": "senior", "pain_pre": 5.0}
             for i in range(8)]
    frame = pd.DataFrame(rows)
    return frame.assign(audience_group=frame["audience_group"].astype("category"))


def test_rating_bars_rest_on_enough_clients_and_stay_inside_0_10() -> None:
    sessions = rating_sessions()
    shares = quality.rating_shares(sessions, ["pain_pre"], MINIMUM)
    assert set(shares["audience_group"]) == {"athlete"}  # seniors: 8 clients, left out
    assert shares["share"].sum() == pytest.approx(1.0)
    values = np.floor(sessions["pain_pre"] + 0.5)
    for row in shares.itertuples():
        inside = (sessions["audience_group"] == row.audience_group) & values.between(
            row.low, row.high)
        assert sessions.loc[inside, "client_id"].nunique() >= MINIMUM
    assert shares["low"].min() >= 0 and shares["high"].max() <= 10
    assert (shares["high"] > shares["low"]).any()  # the few at 0 and at 10 were pooled
    fig = figures.rating_bars(shares)
    bars = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert bars and all(b.get_x() >= -0.5 and b.get_x() + b.get_width() <= 10.5 for b in bars)
    assert not any(isinstance(c, PolyCollection) for ax in fig.axes for c in ax.collections)
    assert not any(len(line.get_xdata()) > 2 for ax in fig.axes for line in ax.lines)  # no KDE


def test_missing_values_are_printed_in_every_cell() -> None:
    sessions = rating_sessions().assign(pain_post=np.nan, stress_pre=1.0)
    columns = ["pain_pre", "pain_post", "stress_pre", *quality.MISSING_COLUMNS[3:]]
    present = [c for c in columns if c in sessions] + ["rom_pre"]
    sessions = sessions.assign(rom_pre=np.nan)
    fig = figures.missingness_heatmap(sessions, present, quality.missing_names(present))
    ax = fig.axes[0]
    annotations = [t.get_text() for t in ax.texts]
    assert len(annotations) == 2 * len(present)  # every cell, even with many columns
    assert annotations.count("100%") == 4 and "0%" in annotations
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["pain before", "pain after"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Athletes", "Seniors"]
