"""Analysis kind ``trajectory``: does the pre-session score fall over the weeks of
treatment, and does the follow-up score stay below the pre-session one (lasting relief)?

Reads ``<outcome>_pre`` and the claim's ``factor`` (weeks since the client's first
session) for the trend, and ``<outcome>_followup`` (with ``followup_hours``) for the
follow-up. The trend: ``<outcome>_pre ~ weeks`` with a random intercept and slope per client
up to :data:`MIXED_SLOPES_MAX_SESSIONS` usable sessions, per-client OLS slopes (two-stage
summary measure) above; with a control arm the arm x weeks interaction. Follow-up minus
pre-session score is a second row set (``outcome = <outcome>_followup``) analysed as a
change (:mod:`mfr_analysis.claims.change`, with the change kind's session limit).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from mfr_analysis.claims import change, registry
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
    codes,
    col,
    from_estimate,
    insufficient,
    mixed_or_ols,
    power_fields,
    responder_fields,
    warned,
)
from mfr_analysis.claims.inputs import (
    Prepared,
    SeriesData,
    finite,
    make_series,
    median_of_counts,
    trend_sums,
    value_tally,
)
from mfr_analysis.models import fit_ols, slopes_from_sums

MIXED_SLOPES_MAX_SESSIONS = 1_000  # session limit of the trend: random slopes up to it
FOLLOWUP_SPAN = "from before a session to its follow-up"
FOLLOWUP_HOURS = "followup_hours"  # hours between a session and its follow-up score


def _names(claim: pd.Series) -> tuple[str, str, str]:
    """(score column, follow-up column, weeks column) of a trajectory claim."""
    outcome = str(claim["outcome"])
    return f"{outcome}_pre", f"{outcome}_followup", str(claim["factor"])


def extract(prep: Prepared, claim: pd.Series, extraction: Extraction) -> Extracted:
    """The trend series (score over weeks) and the follow-up change series."""
    score_name, followup_name, weeks_name = _names(claim)
    score, weeks = prep.values(score_name), prep.values(weeks_name)
    followup = prep.values(followup_name)
    series: dict[str, SeriesData] = {}
    if score is not None and weeks is not None:
        mask = finite(score, weeks)
        series[series_key(claim, score_name)] = make_series(
            "trend", prep.frame(mask, y=score, weeks=weeks), trend_sums,
            extraction.limits[str(claim["analysis"])], keep_all=extraction.keep_all)
    if followup is not None and score is not None:
        difference = followup - score
        hours = prep.values(FOLLOWUP_HOURS)
        tally = None
        if hours is not None:
            tally = value_tally(hours[np.isfinite(difference)])
        made = change.change_series(prep, difference, score, np.ones(prep.n, dtype=bool),
                                    extraction, always=True)
        if made is not None:
            series[series_key(claim, followup_name)] = replace(made, tally=tally)
    return series, ()


def fit_trend_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *,
                    mcid_points: float, direction: int, settings: Options,
                    outcome: str = "pain", limit: int = MIXED_SLOPES_MAX_SESSIONS,
                    large: bool | None = None) -> CellFit:
    """The pre-session score over weeks: random-slope MixedLM on the sessions of a small
    cell, per-client slopes otherwise; the arm x weeks interaction against a control arm."""
    large = sessions is None if large is None else large
    score = f"pre-session {words(outcome)}"
    control = units["control"].to_numpy(dtype=bool)
    n_mfr, n_ctrl = int((~control).sum()), int(control.sum())
    controlled = n_ctrl >= settings.min_clients and n_mfr >= settings.min_clients
    notes: list[str] = []
    if not controlled:
        if n_ctrl:
            notes.append(f"control arm too small for a controlled comparison ({n_ctrl} "
                         "clients): MFR sessions analysed alone")
        units = units.loc[~control]
        if sessions is not None:
            sessions = sessions.loc[~sessions["control"].to_numpy(dtype=bool)]
        notes.append(f"uncontrolled: {score} over the weeks, no control group: the "
                     "trend includes natural recovery and regression to the mean")
    n_clients = int(units["client_id"].nunique())
    n_sessions = int(col(units, "n_sessions").sum())
    ok, slopes = slopes_from_sums(*(col(units, c) for c in (
        "n_sessions", "sum_weeks", "sum_score", "sum_weeks_sq", "sum_weeks_x_score")))
    with_slope = units.loc[ok]
    unit_ctrl = with_slope["control"].to_numpy(dtype=bool)
    n_slopes = int(with_slope["client_id"].nunique())
    if n_clients < settings.min_clients or n_slopes < settings.min_clients:
        why = "" if n_clients < settings.min_clients else (
            f"only {n_slopes} clients have {score} in more than one week "
            f"(minimum {settings.min_clients})")
        return insufficient(n_clients, n_sessions, settings.min_clients, why)
    horizon = float(np.median(col(with_slope, "max_weeks")))
    mcid = mcid_points / horizon if horizon > 0 else math.nan
    if math.isfinite(mcid):
        notes.insert(0, f"estimate in points per week; MCID {mcid_points:g} points over the "
                        f"median span of {horizon:.1f} weeks, about {mcid:.2g} points per week")
    if controlled:
        notes.insert(0, f"controlled: compared with control clients ({n_ctrl} control "
                        "clients), the arm x weeks interaction: estimate = MFR slope minus "
                        "control slope")
    design = "controlled" if controlled else "uncontrolled"
    extra = {"n_clients": n_clients, "design": design, "mcid": mcid,
             "n_control_clients": n_ctrl if controlled else 0,
             **responder_fields(slopes, unit_ctrl if controlled else None, mcid, direction),
             **power_fields(slopes[~unit_ctrl], slopes[unit_ctrl] if controlled else None,
                            mcid, settings)}
    het = HetData(slopes, (~unit_ctrl).astype(float) if controlled else None, None, "hc1",
                  design)
    if float(col(units, "min_score").min()) == float(col(units, "max_score").max()):
        return CellFit("degenerate", n_clients, n_sessions, estimate=0.0, het=None,
                       notes=(*notes, f"{score} never changes: no test possible"),
                       **{k: v for k, v in extra.items() if k != "n_clients"})
    if controlled:
        names, term = ["intercept", "weeks", "mfr", "mfr_x_weeks"], "mfr_x_weeks"
        label = f"{outcome}_pre ~ weeks * arm"
    else:
        names, term, label = ["intercept", "weeks"], "weeks", f"{outcome}_pre ~ weeks"
    if sessions is not None and not large:
        y, w = col(sessions, "y"), col(sessions, "weeks")
        mfr_flag = (~sessions["control"].to_numpy(dtype=bool)).astype(float)
        X = np.column_stack([np.ones(len(y)), w] + ([mfr_flag, mfr_flag * w] if controlled
                                                     else []))
        result, fallback_notes = mixed_or_ols(y, X, codes(sessions["client_id"]), names,
                                              settings, slope=w)
        fit = from_estimate(result, term, notes=(*notes, *fallback_notes), het=het, **extra)
        return replace(fit, method=f"{fit.method}: {label}")
    if controlled:
        Xc = np.column_stack([np.ones(len(slopes)), (~unit_ctrl).astype(float)])
        result = fit_ols(slopes, Xc, names=["intercept", term], cov_type="HC1",
                         alpha=settings.alpha)
    else:
        result = fit_ols(slopes, np.ones((len(slopes), 1)), names=[term], alpha=settings.alpha)
    fit = from_estimate(result, term, notes=(*notes, *warned(result)), het=het, **extra)
    return replace(fit, n_sessions=n_sessions, method=(
        f"two-stage: per-client OLS slopes, then {result.method} on {len(slopes)} client "
        f"slopes (cell above {limit:,} sessions)"))


def fit(job: Job, claim: pd.Series) -> list[dict]:
    """The trend rows (``<outcome>_pre``) and the follow-up rows (``<outcome>_followup``)."""
    outcome = str(claim["outcome"])
    score_name, followup_name, weeks_name = _names(claim)
    rows: list[dict] = []
    mcid_points, source = registry.threshold(claim, str(claim["claim_id"]),
                                             job.settings.mcid_overrides)
    trend = series_key(claim, score_name)
    if trend in job.inputs.series:
        fits = fit_cells(job, trend, fit_trend_units, mcid_points=mcid_points,
                         direction=int(claim["direction"]), outcome=outcome)
        per_week = f"{source}; {mcid_points:g} points spread over the median span of weeks"
        rows += rows_for(job, claim, score_name, fits, unit=str(claim["unit"]),
                         mcid=math.nan, source=per_week if source else "")
    else:
        rows += not_measured(job, claim, score_name, f"needs {score_name} and {weeks_name}")
    followup = series_key(claim, followup_name)
    if followup in job.inputs.series:
        unit = str(claim["unit"]).removesuffix(" per week")
        followup_rows = change.change_rows(job, claim, followup_name, unit=unit,
                                           span=FOLLOWUP_SPAN)
        median = median_of_counts(job.inputs.series[followup].tally)
        if math.isfinite(median):
            said = words(outcome)
            for row in followup_rows:
                row["note"] = "; ".join(filter(None, [
                    f"follow-up {said} minus pre-session {said}, median {median:g} h after "
                    "the session", row["note"]]))
        rows += followup_rows
    return rows


def outcomes(claim: pd.Series) -> tuple[str, ...]:
    """MCID override keys besides the claim id: the follow-up outcome."""
    return (_names(claim)[1],)


def estimate_words(claim: pd.Series, outcome: str) -> str:
    """What a trend or follow-up estimate measures."""
    said = words(str(claim["outcome"]))
    if outcome == _names(claim)[1]:
        return f"{said} at follow-up minus {said} before the session"
    return f"change in {said} before sessions, per week"


KIND = Kind("trajectory", MIXED_SLOPES_MAX_SESSIONS, extract, fit, outcomes, estimate_words)
