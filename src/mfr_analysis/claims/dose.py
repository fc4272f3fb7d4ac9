"""Analysis kind ``dose``: do clients who practise more (a dose factor such as sessions per
week) see their pre-session score fall faster over the weeks?

Reads ``<outcome>_pre``, ``weeks_since_start`` and the claim's ``factor`` (the dose) of MFR
sessions. Each client's slope of the score over weeks is regressed on the client's mean
dose (client-level OLS, HC1 errors), always from per-client sums (session limit -1).
Observational: clients choose their dose.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from mfr_analysis.claims import registry
from mfr_analysis.claims.base import (
    Extracted,
    Extraction,
    Job,
    Kind,
    fit_cells,
    not_measured,
    rows_for,
    series_key,
    words,
)
from mfr_analysis.claims.fits import (
    CellFit,
    HetData,
    Options,
    centre,
    col,
    from_estimate,
    insufficient,
    se_mde,
    warned,
)
from mfr_analysis.claims.inputs import Prepared, SeriesData, finite, make_series, trend_sums
from mfr_analysis.models import fit_ols, slopes_from_sums

WEEKS = "weeks_since_start"  # the time axis of the score's slope
ALWAYS_SUMS = -1  # session limit: every cell is fitted on per-client sums
# how a dose factor reads in the notes: (what clients choose, one unit more, short form)
_DOSE_WORDS = {"sessions_per_week": ("their frequency", "session per week", "sessions/week")}


def _dose_words(factor: str) -> tuple[str, str, str]:
    said = words(factor)
    return _DOSE_WORDS.get(factor, (f"their {said}", f"unit of {said}", said))


def extract(prep: Prepared, claim: pd.Series, extraction: Extraction) -> Extracted:
    """The dose series: MFR sessions with the score, the weeks and the dose."""
    score_name = f"{claim['outcome']}_pre"
    score, weeks = prep.values(score_name), prep.values(WEEKS)
    dose = prep.values(str(claim["factor"]))
    if score is None or weeks is None or dose is None:
        return {}, ()
    mask = finite(score, weeks, dose) & ~prep.control
    frame = prep.frame(mask, y=score, weeks=weeks, dose=dose)
    series: dict[str, SeriesData] = {series_key(claim, score_name): make_series(
        "dose", frame, lambda f: trend_sums(f, ("group", "client_id")),
        extraction.limits[str(claim["analysis"])], keep_all=extraction.keep_all)}
    return series, ()


def fit_dose_units(units: pd.DataFrame, sessions: pd.DataFrame | None = None, *,
                   settings: Options, outcome: str = "pain", factor: str = "sessions_per_week",
                   limit: int = ALWAYS_SUMS, large: bool | None = None) -> CellFit:
    """Client-level OLS of each client's score slope over weeks on the client's mean dose
    (the sessions are never needed: ``limit`` and ``large`` are accepted for the interface)."""
    del limit, large
    said, dose_said = words(outcome), words(factor)
    choose, per, short = _dose_words(factor)
    n = col(units, "n_sessions")
    n_clients, n_sessions = int(units["client_id"].nunique()), int(n.sum())
    ok, slopes = slopes_from_sums(n, *(col(units, c) for c in (
        "sum_weeks", "sum_score", "sum_weeks_sq", "sum_weeks_x_score")))
    if slopes.size < settings.min_clients:
        why = (f"only {slopes.size} clients have pre-session {said} in more than one week "
               f"(minimum {settings.min_clients})")
        return insufficient(n_clients, n_sessions, settings.min_clients, why)
    dose = col(units, "sum_dose")[ok] / n[ok]
    notes = [f"client-level: each client's pre-session {said} slope (points/week) regressed "
             f"on {dose_said}; observational, clients choose {choose}",
             f"estimate = change in weekly {said} slope per extra {per}"]
    het = HetData(slopes, centre(dose), None, "hc1", "observational")
    if np.ptp(dose) == 0 or np.ptp(slopes) == 0:
        return CellFit("degenerate", n_clients, n_sessions, design="observational",
                       notes=(*notes, f"{dose_said} or the {said} slopes do not vary: "
                              "no test possible"))
    X = np.column_stack([np.ones(slopes.size), dose])
    result = fit_ols(slopes, X, names=["intercept", factor], cov_type="HC1",
                     alpha=settings.alpha)
    fit = from_estimate(result, factor, n_clients=int(slopes.size),
                        design="observational", notes=(*notes, *warned(result)), het=het)
    return replace(fit, n_sessions=n_sessions,
                   method=f"client-level {result.method}: client {said} slope ~ {short}",
                   mde=se_mde(fit.se, fit.df, settings.alpha))


def fit(job: Job, claim: pd.Series) -> list[dict]:
    """The claim's rows in every cell."""
    outcome, factor = str(claim["outcome"]), str(claim["factor"])
    score_name = f"{outcome}_pre"
    key = series_key(claim, score_name)
    if key not in job.inputs.series:
        return not_measured(job, claim, score_name,
                            f"needs {score_name}, {WEEKS} and {factor}")
    fits = fit_cells(job, key, fit_dose_units, outcome=outcome, factor=factor)
    mcid, source = registry.threshold(claim, str(claim["claim_id"]),
                                      job.settings.mcid_overrides)
    return rows_for(job, claim, score_name, fits, unit=str(claim["unit"]), mcid=mcid,
                    source=source)


def outcomes(claim: pd.Series) -> tuple[str, ...]:
    """A dose slope's threshold is looked up by its claim id only."""
    return ()


def estimate_words(claim: pd.Series, outcome: str) -> str:
    """What a dose estimate measures, e.g. 'weekly pain trend per extra session per week'."""
    return (f"weekly {words(str(claim['outcome']))} trend per extra "
            f"{_dose_words(str(claim['factor']))[1]}")


KIND = Kind("dose", ALWAYS_SUMS, extract, fit, outcomes, estimate_words)
