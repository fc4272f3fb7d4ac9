"""Contracts of the clean session table, as pandera models.

The model's field names double as the canonical column names used across the package.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from mfr_analysis.tables import VOCABULARY_FIELDS, categories, load_table


def _bounds(field: str) -> dict[str, float | bool]:
    row = load_table("field_bounds").set_index("field").loc[field]
    return {"min_value": float(row["low"]), "max_value": float(row["high"]),
            "include_min": bool(row["low_inclusive"]), "include_max": bool(row["high_inclusive"])}


def _category(field: str) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(categories=list(categories(field)), ordered=False)


CATEGORY_DTYPES: dict[str, pd.CategoricalDtype] = {
    field: _category(field) for field in VOCABULARY_FIELDS}
CATEGORY_DTYPES["delivery"] = pd.CategoricalDtype(["practitioner", "self"])
AudienceGroupDtype = CATEGORY_DTYPES["audience_group"]
ArmDtype = CATEGORY_DTYPES["arm"]
TechniqueDtype = CATEGORY_DTYPES["technique"]
DeliveryDtype = CATEGORY_DTYPES["delivery"]
BodyRegionDtype = CATEGORY_DTYPES["body_region"]
PaceDtype = CATEGORY_DTYPES["pace"]
AdverseEventDtype = CATEGORY_DTYPES["adverse_event"]
RomMeasureDtype = CATEGORY_DTYPES["rom_measure"]
SexDtype = CATEGORY_DTYPES["sex"]


def _bands(table: str) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(list(load_table(table)["band"]), ordered=True)


AgeBandDtype = _bands("age_bands")
SymptomDurationBandDtype = _bands("symptom_duration_bands")
INTAKE_COLUMNS: tuple[str, ...] = ("clinician", "age", "sex", "symptom_duration_weeks")
"""Optional intake factors: always written by cleaning (NA when the log lacks them), and
allowed to be absent from a clean table of an earlier version."""



class CleanSessions(pa.DataFrameModel):
    """One row per session, after cleaning: the canonical table of design.md."""

    session_id: Series[pd.StringDtype] = pa.Field(unique=True, nullable=False)
    client_id: Series[pd.StringDtype] = pa.Field(nullable=False, str_matches=r"^c_[0-9a-f]{16}$")
    site: Series[pd.CategoricalDtype] = pa.Field(nullable=True)
    session_date: Series[pa.DateTime] = pa.Field(nullable=False)
    audience_group: Series[AudienceGroupDtype] = pa.Field(nullable=False)
    arm: Series[ArmDtype] = pa.Field(nullable=False)
    technique: Series[TechniqueDtype] = pa.Field(nullable=True)
    delivery: Series[DeliveryDtype] = pa.Field(nullable=True)
    body_region: Series[BodyRegionDtype] = pa.Field(nullable=True)
    duration_min: Series[float] = pa.Field(nullable=True, in_range=_bounds("duration_min"))
    pressure: Series[float] = pa.Field(nullable=True, in_range=_bounds("pressure"))
    pace: Series[PaceDtype] = pa.Field(nullable=True)
    deep_breathing: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    pain_pre: Series[float] = pa.Field(nullable=True, in_range=_bounds("pain_pre"))
    pain_post: Series[float] = pa.Field(nullable=True, in_range=_bounds("pain_post"))
    pain_followup: Series[float] = pa.Field(nullable=True, in_range=_bounds("pain_followup"))
    followup_hours: Series[float] = pa.Field(nullable=True, in_range=_bounds("followup_hours"))
    rom_measure: Series[RomMeasureDtype] = pa.Field(nullable=True)
    rom_pre: Series[float] = pa.Field(nullable=True)
    rom_post: Series[float] = pa.Field(nullable=True)
    tightness_pre: Series[float] = pa.Field(nullable=True, in_range=_bounds("tightness_pre"))
    tightness_post: Series[float] = pa.Field(nullable=True, in_range=_bounds("tightness_post"))
    stress_pre: Series[float] = pa.Field(nullable=True, in_range=_bounds("stress_pre"))
    stress_post: Series[float] = pa.Field(nullable=True, in_range=_bounds("stress_post"))
    adverse_event: Series[AdverseEventDtype] = pa.Field(nullable=True)
    source_file: Series[pd.StringDtype] = pa.Field(nullable=False)
    source_line: Series[pd.Int64Dtype] = pa.Field(nullable=False, ge=1)
    clinician: Series[pd.StringDtype] = pa.Field(nullable=True, required=False,
                                                 str_matches=r"^t_[0-9a-f]{16}$")
    age: Series[float] = pa.Field(nullable=True, required=False, in_range=_bounds("age"))
    sex: Series[SexDtype] = pa.Field(nullable=True, required=False)
    symptom_duration_weeks: Series[float] = pa.Field(
        nullable=True, required=False, in_range=_bounds("symptom_duration_weeks"))

    class Config:
        strict = "filter"  # unknown columns never survive validation
        coerce = True
        ordered = False

    @pa.dataframe_check(error="session_date in the future")
    @classmethod
    def no_future_dates(cls, df: pd.DataFrame) -> pd.Series:
        return df["session_date"] <= pd.Timestamp.now().normalize()

    @pa.dataframe_check(error="session_date before 1990")
    @classmethod
    def not_before_1990(cls, df: pd.DataFrame) -> pd.Series:
        return df["session_date"] >= pd.Timestamp("1990-01-01")




class DerivedSessions(CleanSessions):
    """Clean sessions plus the derived columns of design.md."""

    pain_change: Series[float] = pa.Field(nullable=True, ge=-10, le=10)
    rom_change: Series[float] = pa.Field(nullable=True)
    tightness_change: Series[float] = pa.Field(nullable=True, ge=-10, le=10)
    stress_change: Series[float] = pa.Field(nullable=True, ge=-10, le=10)
    session_index: Series[pd.Int64Dtype] = pa.Field(nullable=False, ge=1)
    weeks_since_start: Series[float] = pa.Field(nullable=False, ge=0)
    sessions_per_week: Series[float] = pa.Field(nullable=False, gt=0)
    age_band: Series[AgeBandDtype] = pa.Field(nullable=True)
    symptom_duration_band: Series[SymptomDurationBandDtype] = pa.Field(nullable=True)


CLEAN_COLUMNS: tuple[str, ...] = tuple(CleanSessions.to_schema().columns)
DERIVED_COLUMNS: tuple[str, ...] = tuple(DerivedSessions.to_schema().columns)
