"""Analysis kind ``contrast``: is the change larger in one kind of MFR session than in
another (slow vs fast pace, with vs without deep breathing, practitioner vs self)?

Reads the claim's ``outcome`` change and its ``factor`` column, coded 1 at ``level`` and 0 at
``reference_level`` (values read through the field's vocabulary; other values are left
out; ``delivery`` is derived from ``technique`` when absent). The model is OLS
``change ~ level (+ centred pre)`` on MFR sessions with cluster-robust errors by client: on
the sessions of a cell of at most :data:`CLUSTER_OLS_MAX_SESSIONS` usable sessions, from
per-client cross-products above (the same numbers). Observational: sessions differ in a
factor the client or clinic chose.
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
    codes,
    col,
    from_estimate,
    insufficient,
    se_mde,
    warned,
)
from mfr_analysis.claims.inputs import (
    Prepared,
    SeriesData,
    aggregate,
    finite,
    make_series,
    with_arrays,
)
from mfr_analysis.models import fit_ols, fit_ols_cluster_sums

CLUSTER_OLS_MAX_SESSIONS = 20_000  # session limit: OLS on sessions up to it, sums above
# a unit's columns over all its sessions -> the same over its sessions with a pre value
WITH_PRE = {c: f"{c}_with_pre" for c in ("n_sessions", "n_level_sessions", "sum_change",
                                         "sum_level_x_change", "min_change", "max_change")}


def contrast_sums(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-client sums of a contrast (columns ``y``: the change, ``level``, ``pre``)."""
    y = frame["y"].to_numpy(dtype=float)
    level = frame["level"].to_numpy(dtype=float)
    pre = frame["pre"].to_numpy(dtype=float)
    fp = np.isfinite(pre)
    p = np.where(fp, pre, 0.0)
    yb = np.where(fp, y, np.nan)
    work = with_arrays(
        frame, ("group", "client_id"), y=y, ly=level * y, lv=level, fp=fp.astype(np.int64),
        lb=np.where(fp, level, 0.0),
        yb=np.where(fp, y, 0.0), ymb=yb, lyb=np.where(fp, level * y, 0.0), p=p, lp=level * p,
        pp=p * p, py=p * np.where(fp, y, 0.0))
    return aggregate(work, ("group", "client_id"), {
        "n_sessions": ("y", "size"), "n_level_sessions": ("lv", "sum"),
        "sum_change": ("y", "sum"), "sum_level_x_change": ("ly", "sum"),
        "min_change": ("y", "min"), "max_change": ("y", "max"),
        "n_sessions_with_pre": ("fp", "sum"), "n_level_sessions_with_pre": ("lb", "sum"),
        "sum_change_with_pre": ("yb", "sum"), "sum_level_x_change_with_pre": ("lyb", "sum"),
        "sum_pre": ("p", "sum"), "sum_level_x_pre": ("lp", "sum"),
        "sum_pre_sq": ("pp", "sum"), "sum_pre_x_change": ("py", "sum"),
        "min_change_with_pre": ("ymb", "min"), "max_change_with_pre": ("ymb", "max")})


def extract(prep: Prepared, claim: pd.Series, extraction: Extraction) -> Extracted:
    """The contrast series: MFR sessions with a change and one of the two levels."""
    outcome = str(claim["outcome"])
    pair = prep.change(outcome)
    level = prep.levels(str(claim["factor"]), str(claim["level"]),
                        str(claim["reference_level"]))
    found = (f"{outcome}_change",) if pair is not None else ()
    if pair is None or level is None:
        return {}, found
    y, pre = pair
    mask = finite(y, level) & ~prep.control
    series: dict[str, SeriesData] = {series_key(claim, outcome): make_series(
        "contrast", prep.frame(mask, y=y, level=level, pre=pre), contrast_sums,
        extraction.limits[str(claim["analysis"])], keep_all=extraction.keep_all)}
    return series, found


def _cross_products(units: pd.DataFrame, has_pre: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-client X'X and X'y of ``change ~ level (+ centred pre)`` from the unit sums."""
    n, sl, sy, sly = (col(units, c) for c in ("n_sessions", "n_level_sessions", "sum_change",
                                               "sum_level_x_change"))
    if not has_pre:
        xtx = np.stack([np.stack([n, sl], -1), np.stack([sl, sl], -1)], -2)
        return xtx, np.stack([sy, sly], -1)
    sp, slp, spp, spy = (col(units, c) for c in ("sum_pre", "sum_level_x_pre", "sum_pre_sq",
                                                  "sum_pre_x_change"))
    c = sp.sum() / n.sum()  # the cell's mean pre value, as centre() does on sessions
    p, lp, pp = sp - n * c, slp - c * sl, spp - 2 * c * sp + n * c * c
    xtx = np.stack([np.stack([n, sl, p], -1), np.stack([sl, sl, lp], -1),
                    np.stack([p, lp, pp], -1)], -2)
    return xtx, np.stack([sy, sly, spy - c * sy], -1)


def fit_contrast_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *, adjust: bool,
                       names: tuple[str, str], factor: str, settings: Options,
                       limit: int = CLUSTER_OLS_MAX_SESSIONS,
                       large: bool | None = None) -> CellFit:
    """Difference in change between two levels of a session factor, cluster-robust OLS (on
    the sessions of a small cell, from per-client cross-products of a large one; a refit
    gets the sessions of a large cell too, and fits the same model on them)."""
    if adjust:
        units = units.loc[units["n_sessions_with_pre"] > 0].drop(columns=list(WITH_PRE))
        units = units.rename(columns={v: k for k, v in WITH_PRE.items()})
        if sessions is not None:
            sessions = sessions.loc[np.isfinite(col(sessions, "pre"))]
    n, sl = col(units, "n_sessions"), col(units, "n_level_sessions")
    n_clients, n_sessions = len(units), int(n.sum())
    n_level, n_ref = int((sl > 0).sum()), int((n - sl > 0).sum())
    if min(n_level, n_ref) < settings.min_clients:
        why = (f"{n_level} clients with {names[0]} sessions and {n_ref} with {names[1]} "
               f"sessions; each needs at least {settings.min_clients}")
        return insufficient(n_clients, n_sessions, settings.min_clients, why)
    has_pre = adjust and n_sessions > 0
    notes = [f"observational comparison of MFR sessions ({factor} = {names[0]} minus "
             f"{factor} = {names[1]})" + (", adjusted for the pre-session value" if has_pre
                                          else "") + "; not randomised"]
    # the heterogeneity of session-level contrasts compares the group estimates (Q test)
    het = HetData(np.zeros(0), None, None, "cluster", "observational")
    if float(col(units, "min_change").min()) == float(col(units, "max_change").max()):
        return CellFit("degenerate", n_clients, n_sessions, estimate=0.0, design="observational",
                       notes=(*notes, "every change is the same: no test possible"))
    labels = ["intercept", "level"] + (["pre"] if has_pre else [])
    label = f"change ~ {factor} + pre" if has_pre else f"change ~ {factor}"
    if sessions is not None:
        y, level = col(sessions, "y"), col(sessions, "level")
        X = np.column_stack([np.ones(len(y)), level]
                            + ([centre(col(sessions, "pre"))] if has_pre else []))
        result = fit_ols(y, X, names=labels, clients=codes(sessions["client_id"]),
                         cov_type="cluster", alpha=settings.alpha)
        method = result.method
    else:
        xtx, xty = _cross_products(units, has_pre)
        result = fit_ols_cluster_sums(xtx, xty, n_sessions, names=labels, alpha=settings.alpha)
        method = f"{result.method}, from per-client sums (cell above {limit:,} sessions)"
    fit = from_estimate(result, "level", n_clients=n_clients, design="observational",
                        notes=(*notes, *warned(result)), het=het)
    return replace(fit, method=f"{method}: {label}", mde=se_mde(fit.se, fit.df, settings.alpha))


def fit(job: Job, claim: pd.Series) -> list[dict]:
    """The claim's rows in every cell."""
    outcome, factor = str(claim["outcome"]), str(claim["factor"])
    key = series_key(claim, outcome)
    if f"{outcome}_change" not in job.inputs.found.get(str(claim["claim_id"]), ()):
        return not_measured(job, claim, outcome, f"no {outcome} change values")
    if key not in job.inputs.series:
        return not_measured(job, claim, outcome, f"no {factor} values")
    adjust = bool(job.inputs.series[key].units["n_sessions_with_pre"].sum() > 0)
    names = (str(claim["level"]), str(claim["reference_level"]))
    fits = fit_cells(job, key, fit_contrast_units, adjust=adjust, names=names, factor=factor)
    mcid, source = registry.threshold(claim, str(claim["claim_id"]),
                                      job.settings.mcid_overrides)
    return rows_for(job, claim, outcome, fits, unit=str(claim["unit"]), mcid=mcid,
                    source=source)


def outcomes(claim: pd.Series) -> tuple[str, ...]:
    """A contrast's threshold is looked up by its claim id only."""
    return ()


def estimate_words(claim: pd.Series, outcome: str) -> str:
    """What a contrast estimate measures, e.g. 'change after a session, pace slow minus
    fast'."""
    return (f"change after a session, {words(str(claim['factor']))} "
            f"{words(str(claim['level']))} minus {words(str(claim['reference_level']))}")


KIND = Kind("contrast", CLUSTER_OLS_MAX_SESSIONS, extract, fit, outcomes, estimate_words)
