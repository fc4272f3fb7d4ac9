"""Analysis kind ``adverse``: do adverse events become more likely as an exposure (pressure)
rises?

Reads the claim's ``outcome`` (an event column such as ``adverse_event``: any value other
than ``none``, read through its vocabulary, is an event) and its ``factor`` (the exposure)
on MFR sessions. The estimate is the odds ratio per unit of exposure: logistic GEE
(exchangeable, by client) on the sessions of a cell of at most :data:`GEE_MAX_SESSIONS`
usable sessions, logistic regression with cluster-robust errors on per-client counts by
exposure above (a refit of such a cell fits that logistic regression on its sessions: the
same numbers). Observational: the exposure is chosen, not randomised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache

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
    codes,
    col,
    fit_with_fallback,
    from_estimate,
    insufficient,
    warned,
)
from mfr_analysis.claims.inputs import Prepared, SeriesData, aggregate, finite, make_series
from mfr_analysis.models import fit_gee, fit_logit, fit_logit_counts
from mfr_analysis.tables import VOCABULARY_FIELDS, normalise_token, synonym_map

GEE_MAX_SESSIONS = 20_000  # session limit: GEE on sessions up to it, counts above
NO_EVENT = "none"  # the canonical value of an event column that is not an event


@cache
def _event_code(field_name: str) -> Callable[[str], float]:
    """1 for any event, 0 for none, NaN when missing (synonyms via the field's vocabulary)."""
    synonyms = synonym_map(field_name) if field_name in VOCABULARY_FIELDS else {}

    def code(value: str) -> float:
        token = normalise_token(value)
        if token in ("", "nan", "<na>"):
            return np.nan
        return float(synonyms.get(token, token) != NO_EVENT)
    return code


def adverse_sums(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-client counts by exposure (columns ``events``: 0 or 1, ``exposure``)."""
    return aggregate(frame, ("group", "client_id", "exposure"),
                      {"n_sessions": ("events", "size"), "n_event_sessions": ("events", "sum")})


def extract(prep: Prepared, claim: pd.Series, extraction: Extraction) -> Extracted:
    """The adverse series: MFR sessions with an event value and an exposure."""
    outcome = str(claim["outcome"])
    events = prep.coded(outcome, _event_code(outcome))
    exposure = prep.values(str(claim["factor"]))
    if events is None or exposure is None:
        return {}, ()
    mask = finite(events, exposure) & ~prep.control
    series: dict[str, SeriesData] = {series_key(claim, outcome): make_series(
        "adverse", prep.frame(mask, events=events, exposure=exposure), adverse_sums,
        extraction.limits[str(claim["analysis"])], keep_all=extraction.keep_all)}
    return series, ()


def fit_adverse_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *,
                      settings: Options, outcome: str = "adverse_event",
                      factor: str = "pressure", limit: int = GEE_MAX_SESSIONS,
                      large: bool | None = None) -> CellFit:
    """Odds ratio of any event per unit of exposure: logistic GEE on the sessions of a small
    cell, logistic regression on per-client counts by exposure otherwise (on the sessions
    of a large cell when a refit hands them)."""
    large = sessions is None if large is None else large
    event, exposure = words(outcome), words(factor)
    trials, events = col(units, "n_sessions"), col(units, "n_event_sessions")
    n_clients, n_sessions = int(units["client_id"].nunique()), int(trials.sum())
    if n_clients < settings.min_clients:
        return insufficient(n_clients, n_sessions, settings.min_clients)
    notes = [f"odds ratio of any {event} per extra {exposure} point; observational"]
    n_events = int(events.sum())
    level = col(units, "exposure")
    if n_events == 0 or n_events == n_sessions or np.ptp(level) == 0:
        why = (f"{n_events} {event}s in {n_sessions} sessions" if np.ptp(level) > 0
               else f"{exposure} does not vary")
        return CellFit("degenerate", n_clients, n_sessions, design="observational",
                       log_scale=True, notes=(*notes, f"{why}: no test possible"))
    het = HetData(np.zeros(0), None, None, "logit", "observational")
    names = ["intercept", factor]
    if sessions is not None:
        y, x = col(sessions, "events"), col(sessions, "exposure")
        X, clients = np.column_stack([np.ones(len(y)), x]), codes(sessions["client_id"])
        if large:  # a refit of a large cell: the counts' model, on its sessions
            result = fit_logit(y, X, clients, names=names, alpha=settings.alpha)
            fallback_notes = warned(result, "logistic regression")
        else:
            result, fallback_notes = fit_with_fallback(
                "GEE",
                lambda: fit_gee(y, X, clients, names=names, family="binomial",
                                alpha=settings.alpha),
                lambda: fit_logit(y, X, clients, names=names, alpha=settings.alpha))
        method = result.method
    else:
        X = np.column_stack([np.ones(len(units)), level])
        result = fit_logit_counts(events, trials, X, codes(units["client_id"]), names=names,
                                  alpha=settings.alpha)
        fallback_notes = warned(result, "logistic regression")
        method = (f"{result.method}, from per-client counts by {exposure} (cell above "
                  f"{limit:,} sessions)")
    fit = from_estimate(result, factor, n_clients=n_clients, design="observational",
                        log_scale=True, het=het,
                        notes=(*notes, f"{n_events} {event}s", *fallback_notes))
    return replace(fit, method=f"{method}: any {event} ~ {exposure}")


def fit(job: Job, claim: pd.Series) -> list[dict]:
    """The claim's rows in every cell."""
    outcome, factor = str(claim["outcome"]), str(claim["factor"])
    key = series_key(claim, outcome)
    if key not in job.inputs.series:
        return not_measured(job, claim, outcome, f"needs {outcome} and {factor}")
    fits = fit_cells(job, key, fit_adverse_units, outcome=outcome, factor=factor)
    mcid, source = registry.threshold(claim, str(claim["claim_id"]),
                                      job.settings.mcid_overrides)
    return rows_for(job, claim, outcome, fits, unit=str(claim["unit"]), mcid=mcid,
                    source=source)


def outcomes(claim: pd.Series) -> tuple[str, ...]:
    """An adverse odds ratio's threshold is looked up by its claim id only."""
    return ()


def estimate_words(claim: pd.Series, outcome: str) -> str:
    """What an adverse estimate measures, e.g. 'odds of an adverse event per extra
    pressure point'."""
    return (f"odds of any {words(str(claim['outcome']))} per extra "
            f"{words(str(claim['factor']))} point")


KIND = Kind("adverse", GEE_MAX_SESSIONS, extract, fit, outcomes, estimate_words)
