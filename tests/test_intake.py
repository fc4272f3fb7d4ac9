"""Intake factors (issue 14, point 1): clinician, age (or a birth date), sex, symptom duration.

Headers and values as clinics write them, quarantine of what cannot be read, the birth date
used for the age and then dropped, the clinician pseudonymised like the client, bands by
hand, and the clinic-network simulator's planted structure (recovered by a plain regression
on the covariates the truth names)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.clean import (
    clean_sessions,
    completed_years,
    parse_age,
    parse_category,
    parse_symptom_duration,
)
from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.derive import band_codes, derive
from mfr_analysis.pipeline import run_clean
from mfr_analysis.pseudonymise import client_pseudonym, clinician_pseudonym
from mfr_analysis.read import BIRTH_DATE_COLUMN, plan_headers, read_logs
from mfr_analysis.schema import CleanSessions, DerivedSessions
from tests.conftest import TEST_KEY

KEY = TEST_KEY.encode("utf-8")  # what load_key makes of MFR_PSEUDONYM_KEY
TODAY = dt.date(2026, 1, 1)


# --------------------------------------------------------------------------- headers ---
@pytest.mark.parametrize(("header", "canonical"), [
    ("Therapist", "clinician"), ("Provider", "clinician"), ("Practitioner Name", "clinician"),
    ("Clinician", "clinician"), ("Treating therapist", "clinician"), ("TREATED_BY", "clinician"),
    ("Gender", "sex"), ("Sex", "sex"), ("Age", "age"), ("Age (years)", "age"),
    ("age_in_years", "age"), ("Symptom duration", "symptom_duration_weeks"),
    ("Weeks since onset", "symptom_duration_weeks"),
    ("Duration of complaint", "symptom_duration_weeks"),
    ("Duration", "duration_min"),  # still the session length
])
def test_header_spellings_are_recognised(header: str, canonical: str) -> None:
    assert plan_headers([header, "Client ID", "Date"]).targets[0] == canonical


def test_a_birth_date_header_is_an_identifier_read_only_for_the_age() -> None:
    plan = plan_headers(["Client ID", "Date", "Date of Birth", "DOB"])
    assert plan.identifiers == {"birth_date": ["Date of Birth", "DOB"]}
    assert plan.targets == ("client_id", "session_date", BIRTH_DATE_COLUMN, None)
    assert plan.dropped == []  # the second birth date is listed as an identifier only


# ---------------------------------------------------------------------------- values ---
@pytest.mark.parametrize(("text", "years"), [
    ("42", 42.0), ("42 years", 42.0), ("42y", 42.0), ("42 yrs", 42.0), ("42 y/o", 42.0),
    ("40-45", 42.5), ("seven", 7.0), ("", math.nan), ("n/a", math.nan),
])
def test_age_spellings(text: str, years: float) -> None:
    value, reason = parse_age(text)
    assert reason is None
    assert (math.isnan(value) and math.isnan(years)) or value == years


@pytest.mark.parametrize(("text", "weeks"), [
    ("3", 3.0), ("3 weeks", 3.0), ("3 wks", 3.0), ("14 days", 2.0),
    ("2 months", 2 * 365.25 / 12 / 7), ("1 year", 365.25 / 7), ("3-4 weeks", 3.5),
    ("> 3 months", 3 * 365.25 / 12 / 7), ("more than 2 years", 2 * 365.25 / 7),
    ("three weeks", 3.0), ("Acute", 3.0), ("sub-acute", 9.0), ("CHRONIC", 26.0),
    ("long-standing", 26.0), ("", math.nan), ("unknown", math.nan),
])
def test_symptom_duration_spellings(text: str, weeks: float) -> None:
    value, reason = parse_symptom_duration(text)
    assert reason is None
    assert (math.isnan(value) and math.isnan(weeks)) or value == pytest.approx(weeks, abs=1e-12)


@pytest.mark.parametrize("text", ["soon", "< 6 weeks", "3 fortnights", "ages"])
def test_unreadable_symptom_durations_are_a_reason(text: str) -> None:
    assert parse_symptom_duration(text) == (pytest.approx(math.nan, nan_ok=True),
                                            "unparseable_number")


@pytest.mark.parametrize(("text", "sex"), [
    ("F", "female"), ("female", "female"), ("w", "female"), ("Woman", "female"),
    ("weiblich", "female"), ("M", "male"), ("Male", "male"), ("männlich", "male"),
    ("d", "other"), ("diverse", "other"), ("non-binary", "other"), ("Nonbinary", "other"),
    ("X", "other"), ("prefer not to say", None), ("", None),
])
def test_sex_spellings(text: str, sex: str | None) -> None:
    assert parse_category("sex", text) == (sex, None)


def test_an_unknown_sex_spelling_is_a_reason() -> None:
    assert parse_category("sex", "alien") == (None, "unknown_sex")


# ------------------------------------------------------------------------ cleaning ---
LOG = ("Patient ID,Date,Group,Therapist,Gender,Age (years),Symptom duration,DOB,Pain before,"
       "Pain after\n") + """P1,05/03/2024,athlete,Dr Jane Smith,F,42,3 weeks,,5,3
P2,06/03/2024,senior,dr jane  smith,w,,2 months,15/06/1950,6,4
P3,07/03/2024,senior,Bob Brown,diverse,,chronic,29/02/1952,6,4
P4,28/02/2025,senior,Bob Brown,m,,,29/02/1952,6,4
P5,07/03/2024,senior,Bob Brown,alien,,1 year,,6,4
P6,07/03/2024,senior,Bob Brown,m,130,,,6,4
P7,07/03/2024,senior,,m,,soon,31/02/1950,6,4
P8,07/03/2024,senior,jane@clinic.example,male,,> 3 months,01/01/2030,6,4
"""


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("intake")
    (folder / "log.csv").write_text(LOG, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MFR_PSEUDONYM_KEY", TEST_KEY)
        report = run_clean([folder / "log.csv"], folder / "out", progress=False)
    return folder / "out", report


@pytest.fixture(scope="module")
def frames(cleaned: tuple[Path, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The hand log cleaned in memory: sessions and quarantine by source line."""
    result = clean_sessions(read_logs([cleaned[0].parent / "log.csv"]).frame, key=KEY,
                            today=TODAY)
    return result.sessions.set_index("source_line"), result.quarantine.set_index("source_line")


def test_values_read_and_age_derived_from_the_birth_date(frames) -> None:
    sessions, _ = frames
    assert sessions.loc[2, "age"] == 42.0  # given
    assert sessions.loc[3, "age"] == 73.0  # 15/06/1950 -> 06/03/2024: birthday not yet reached
    assert sessions.loc[4, "age"] == 72.0  # born 29 February 1952, on 07/03/2024
    assert sessions.loc[5, "age"] == 72.0  # 28/02/2025: a 29-February birthday is 1 March
    assert sessions.loc[2, "sex"] == "female" and sessions.loc[4, "sex"] == "other"
    assert sessions.loc[5, "sex"] == "male"
    assert sessions.loc[2, "symptom_duration_weeks"] == 3.0
    assert sessions.loc[3, "symptom_duration_weeks"] == pytest.approx(2 * 365.25 / 12 / 7)
    assert sessions.loc[4, "symptom_duration_weeks"] == 26.0
    assert pd.isna(sessions.loc[5, "symptom_duration_weeks"])
    CleanSessions.validate(sessions.reset_index())


def test_clinician_is_a_keyed_pseudonym_spelling_insensitive(frames) -> None:
    sessions, quarantine = frames
    expected = "t_" + hmac.new(KEY, b"clinician\x00dr jane smith",
                               hashlib.sha256).hexdigest()[:16]
    assert sessions.loc[2, "clinician"] == sessions.loc[3, "clinician"] == expected
    assert clinician_pseudonym("Dr Jane Smith", KEY) == expected
    # domain-separated: a client and a clinician spelt alike share no hash
    assert clinician_pseudonym("Bob Brown", KEY)[2:] != client_pseudonym("Bob Brown", KEY)[2:]
    assert clinician_pseudonym("Dr Jane Smith", b"another key of 32 bytes.........") != expected
    # the quarantine shows the pseudonym too, never the name (an e-mail as a name included)
    assert quarantine.loc[6, "clinician"] == clinician_pseudonym("Bob Brown", KEY)
    assert quarantine.loc[9, "clinician"] == clinician_pseudonym("jane@clinic.example", KEY)
    assert quarantine.loc[8, "clinician"] == ""


def test_bad_intake_values_are_quarantined_with_their_reason(frames) -> None:
    _, quarantine = frames
    assert quarantine.loc[6, "reason_detail"] == "unknown_sex:sex"
    assert quarantine.loc[7, "reason_detail"] == "out_of_range:age"
    assert quarantine.loc[8, "reason_detail"] == (
        "unparseable_number:symptom_duration_weeks;unparseable_birth_date:birth_date")
    assert quarantine.loc[9, "reason_detail"] == "out_of_range:age"  # born after the session
    assert set(quarantine.index) == {6, 7, 8, 9}
    assert BIRTH_DATE_COLUMN not in quarantine.columns


def test_no_birth_date_or_clinician_name_in_any_output(cleaned: tuple[Path, dict]) -> None:
    out, report = cleaned
    text = "".join(p.read_text(encoding="utf-8") for p in
                   (out / QUARANTINE_FILE, out / CLEANING_REPORT_FILE))
    sessions = pd.read_parquet(out / SESSIONS_FILE)
    text += sessions.to_csv()
    for value in ("15/06/1950", "29/02/1952", "31/02/1950", "01/01/2030", "1950", "1952",
                  "Jane Smith", "jane smith", "Bob Brown", "jane@clinic.example"):
        assert value.lower() not in text.lower(), value
    assert report["identifier_columns_dropped"] == {"birth_date": ["DOB"]}
    assert report["columns_ignored"] == []
    assert set(sessions["clinician"].dropna()).issubset(
        {clinician_pseudonym(n, KEY) for n in ("Dr Jane Smith", "Bob Brown")})


# --------------------------------------------------------------------------- bands ---
@pytest.mark.parametrize(("age", "band"), [
    (0, "<30"), (29, "<30"), (29.99, "<30"), (30, "30-44"), (44.9, "30-44"), (45, "45-59"),
    (59, "45-59"), (60, "60-74"), (74, "60-74"), (75, "75+"), (120, "75+"),
])
def test_age_bands_by_hand(age: float, band: str) -> None:
    table = ["<30", "30-44", "45-59", "60-74", "75+"]
    assert table[band_codes(np.array([age]), "age_bands")[0]] == band


@pytest.mark.parametrize(("weeks", "band"), [
    (0, "acute"), (5.9, "acute"), (6, "subacute"), (12, "subacute"), (12.01, "chronic"),
    (520, "chronic"),
])
def test_symptom_duration_bands_by_hand(weeks: float, band: str) -> None:
    table = ["acute", "subacute", "chronic"]
    assert table[band_codes(np.array([weeks]), "symptom_duration_bands")[0]] == band


def test_derived_bands_and_an_older_table_without_intake_columns(frames) -> None:
    sessions, _ = frames
    derived = derive(sessions.reset_index()).set_index("source_line")
    assert derived.loc[2, "age_band"] == "30-44" and derived.loc[3, "age_band"] == "60-74"
    assert derived.loc[4, "symptom_duration_band"] == "chronic"
    assert derived.loc[3, "symptom_duration_band"] == "subacute"  # 8.7 weeks
    assert pd.isna(derived.loc[5, "symptom_duration_band"])
    older = derive(sessions.reset_index().drop(columns=["clinician", "age", "sex",
                                                        "symptom_duration_weeks"]))
    DerivedSessions.validate(older)
    assert older["age_band"].isna().all() and older["clinician"].isna().all()


def test_completed_years_by_hand() -> None:
    birth = np.array(["2000-03-01", "2000-03-01", "1999-12-31", "1960-02-29"], "datetime64[D]")
    on = np.array(["2024-02-29", "2024-03-01", "2024-12-30", "2023-02-28"], "datetime64[D]")
    assert completed_years(birth, on).tolist() == [23, 24, 24, 62]


# ----------------------------------------------------------------------- simulator ---
def test_default_simulation_has_age_from_the_birth_date_and_no_other_intake() -> None:
    from mfr_analysis.simulate import simulate_sessions

    clean, _ = simulate_sessions(30, 5)
    expected = completed_years(clean["client_dob"].to_numpy("datetime64[D]"),
                               clean["session_date"].to_numpy("datetime64[D]"))
    assert clean["age"].tolist() == expected.astype(float).tolist()
    assert clean[["clinician", "sex", "symptom_duration_weeks"]].isna().all().all()


@pytest.fixture(scope="module")
def network() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """A 4,000-client network, cleaned and derived, with one row per client."""
    from mfr_analysis.simulate import pseudonymise_truth, simulate_network

    log, truth = simulate_network(4000, seed=11)
    plan = plan_headers(list(log.columns))
    raw = pd.DataFrame({t: log.iloc[:, i] for i, t in enumerate(plan.targets) if t})
    sessions = derive(clean_sessions(raw, key=KEY, today=TODAY).sessions)
    named = pseudonymise_truth(truth, KEY)
    clients = sessions.groupby("client_id", observed=True).agg(
        change=("pain_change", "mean"), group=("audience_group", "first"),
        clinician=("clinician", "first"), site=("site", "first"), age=("age", "min"),
        age_band=("age_band", "first"), duration=("symptom_duration_band", "first"),
        practitioner=("delivery", lambda d: (d == "practitioner").mean()))
    return sessions, named, clients.dropna()


def test_network_units_and_case_mix(network) -> None:
    sessions, truth, clients = network
    assert truth["sites"] == 20 and truth["clinicians"] == 80
    units = pd.DataFrame(truth["units"]["clinician"]).set_index("clinician")
    assert units.loc[truth["better_clinician"], "clients"] >= 50
    assert units.loc[truth["worse_clinician"], "clients"] >= 50
    assert (units["clients"].between(1, 10)).sum() >= 5  # some units with few clients
    assert (units["effect"] != 0).sum() == 2
    sites = pd.DataFrame(truth["units"]["site"]).set_index("site")
    assert (sites["clients"] < 40).sum() >= 3 and sites["clients"].sum() == 4000
    # the clean table agrees with the truth's unit sizes (pseudonyms from the same key)
    seen = sessions.groupby("clinician", observed=True)["client_id"].nunique()
    for name in (truth["better_clinician"], truth["worse_clinician"]):
        assert units.loc[name, "clients"] - 10 <= seen[name] <= units.loc[name, "clients"]
    mix = clients.assign(case_mix=clients["site"] == truth["case_mix_site"],
                         chronic=clients["duration"] == "chronic")
    by = mix.groupby("case_mix")[["age", "chronic"]].mean()
    assert by.loc[True, "age"] - by.loc[False, "age"] > 10  # older
    assert by.loc[True, "chronic"] - by.loc[False, "chronic"] > 0.3  # longer-standing pain


def test_network_effects_recovered_by_a_plain_regression(network) -> None:
    import statsmodels.formula.api as smf

    _, truth, clients = network
    data = clients.assign(
        better=(clients["clinician"] == truth["better_clinician"]).astype(float),
        worse=(clients["clinician"] == truth["worse_clinician"]).astype(float),
        case_mix=(clients["site"] == truth["case_mix_site"]).astype(float))
    raw = smf.ols("change ~ case_mix", data).fit()
    assert raw.params["case_mix"] > 0.5  # worse raw change: the case mix
    fit = smf.ols("change ~ C(group) + C(age_band, Treatment('30-44'))"
                  " + C(duration, Treatment('subacute')) + practitioner + better + worse"
                  " + case_mix", data).fit()
    assert abs(fit.params["case_mix"]) < 3 * fit.bse["case_mix"] + 0.05  # care is average
    assert fit.params["better"] == pytest.approx(-1.0, abs=0.3)
    assert fit.params["worse"] == pytest.approx(1.0, abs=0.3)
    model = truth["outcome_model"]
    assert fit.params["C(age_band, Treatment('30-44'))[T.75+]"] == pytest.approx(
        model["age_band"]["75+"], abs=0.3)
    assert fit.params["C(duration, Treatment('subacute'))[T.chronic]"] == pytest.approx(
        model["symptom_duration_band"]["chronic"], abs=0.2)


def test_network_is_deterministic_and_written_with_its_truth(tmp_path: Path) -> None:
    from mfr_analysis.simulate import simulate_network, write_network

    a, truth_a = simulate_network(120, sites=4, clinicians=9, seed=3)
    b, truth_b = simulate_network(120, sites=4, clinicians=9, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert truth_a == truth_b
    paths = write_network(tmp_path / "net.csv", 120, 4, 9, seed=3)
    saved = json.loads(paths["truth_json"].read_text(encoding="utf-8"))
    assert saved["case_mix_site"] == truth_a["case_mix_site"]
    assert {"clinician", "age", "sex", "symptom_duration_weeks"} <= set(
        saved["log"]["columns"].values())


def test_reports_never_read_the_raw_age_column() -> None:
    """Reports show age bands only: no code that builds a page (report/, describe/, claims/,
    the report notebooks) names the ``age`` column (``age_band`` is fine)."""
    import re

    root = Path(__file__).resolve().parents[1]
    sources = [*(root / "src" / "mfr_analysis").glob("report/**/*.py"),
               *(root / "src" / "mfr_analysis").glob("describe/**/*.py"),
               *(root / "src" / "mfr_analysis").glob("claims/**/*.py"),
               *(root / "notebooks" / "reports").glob("*.ipynb")]
    assert len(sources) > 10
    raw_age = re.compile(r"""["']age["']""")
    for path in sources:
        assert not raw_age.search(path.read_text(encoding="utf-8")), path.name
