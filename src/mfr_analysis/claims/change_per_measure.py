"""Analysis kind ``change_per_measure``: a change analysed apart for each measure it is
recorded in (range of motion: knee flexion in degrees, sit-and-reach in cm...).

Reads the claim's ``outcome`` change (``rom_pre``/``rom_post`` or ``rom_change``) and its
``factor`` (the measure column, ``rom_measure``); each measure is a change series
(:mod:`mfr_analysis.claims.change`: same models, same session limit) whose rows are named
``<outcome>:<measure>`` and judged against that measure's threshold and unit from the
claim's per-measure table (``threshold_key``, e.g. ``rom_bounds``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfr_analysis.claims import change, registry
from mfr_analysis.claims.base import Extracted, Extraction, Job, Kind, not_measured, series_key
from mfr_analysis.claims.inputs import NO_GROUP, Prepared, SeriesData
from mfr_analysis.tables import VOCABULARY_FIELDS, categories


def extract(prep: Prepared, claim: pd.Series, extraction: Extraction) -> Extracted:
    """One change series per measure with a finite change."""
    outcome, factor = str(claim["outcome"]), str(claim["factor"])
    pair, measure_of = prep.change(outcome), prep.labels(factor)
    found = ((f"{outcome}_change",) if pair is not None else ()) + (
        (factor,) if measure_of is not None else ())
    series: dict[str, SeriesData] = {}
    if pair is None or measure_of is None:
        return series, found
    values, pre = pair
    usable = np.isfinite(values)
    for measure in sorted(set(pd.unique(measure_of[usable])) - {NO_GROUP}):
        made = change.change_series(prep, values, pre, measure_of == measure, extraction,
                                    kind=str(claim["analysis"]))
        if made is not None:
            series[series_key(claim, f"{outcome}:{measure}")] = made
    return series, found


def fit(job: Job, claim: pd.Series) -> list[dict]:
    """The claim's rows, measure by measure (the vocabulary's order, then the others)."""
    outcome, factor = str(claim["outcome"]), str(claim["factor"])
    found = job.inputs.found.get(str(claim["claim_id"]), ())
    if f"{outcome}_change" not in found:
        return not_measured(job, claim, outcome, f"no {outcome}_pre/{outcome}_post (or "
                            f"{outcome}_change) values")
    if factor not in found:
        return not_measured(job, claim, outcome, f"{outcome} values without {factor}: the "
                            "unit and the MCID are unknown")
    lead = series_key(claim, f"{outcome}:")
    present = {k[len(lead):] for k in job.inputs.series if k.startswith(lead)}
    known = list(categories(factor)) if factor in VOCABULARY_FIELDS else []
    measures = [m for m in known if m in present] + sorted(present - set(known))
    if not measures:
        return not_measured(job, claim, outcome, f"no {outcome} value has a {factor}")
    table = registry.measure_table(claim)
    rows = []
    for measure in measures:
        unit = str(table.loc[measure, "unit"]) if table is not None and \
            measure in table.index else ""
        rows += change.change_rows(job, claim, f"{outcome}:{measure}", unit=unit)
    return rows


def outcomes(claim: pd.Series) -> tuple[str, ...]:
    """MCID override keys besides the claim id: each measure, and ``<outcome>:<measure>``."""
    table = registry.measure_table(claim)
    measures = [] if table is None else [str(m) for m in table.index]
    return (*measures, *(f"{claim['outcome']}:{m}" for m in measures))


def estimate_words(claim: pd.Series, outcome: str) -> str:
    """What a change estimate measures."""
    return change.estimate_words(claim, outcome)


KIND = Kind("change_per_measure", change.MIXED_MAX_SESSIONS, extract, fit, outcomes,
            estimate_words)
