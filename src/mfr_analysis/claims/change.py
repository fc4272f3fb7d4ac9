"""Analysis kind ``change``: an outcome from before to after a session (pain, tightness...).

Reads ``<outcome>_pre``/``<outcome>_post`` (or ``<outcome>_change``) of the claim's
``outcome``; a claim with ``outcome_prefixes`` (circulation) analyses every such pair whose
name starts with one of them, one row set per measure. A cell of at most
:data:`MIXED_MAX_SESSIONS` usable sessions gets a MixedLM (REML) ``change ~ 1`` with a
random intercept per client; a larger one is reduced to one mean change per client and
analysed with OLS on client means (a one-sample t-test: a valid client-level analysis, and
the mixed model's fixed effect when clients are balanced). With a control arm of at least
``min_clients`` clients the model is an ANCOVA, ``change ~ arm + pre`` (same coefficient as
``post ~ pre + arm``), estimate = MFR minus control.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    session_frame,
    text,
)
from mfr_analysis.claims.evalue import pooled_sd, pooled_sd_from_sums
from mfr_analysis.claims.fits import (
    Adjustment,
    CellFit,
    HetData,
    Options,
    centre,
    codes,
    col,
    from_estimate,
    insufficient,
    mixed_or_ols,
    power_fields,
    responder_fields,
    sd,
    warned,
)
from mfr_analysis.claims.inputs import Prepared, SeriesData, change_sums, make_series
from mfr_analysis.models import FitFailed, ModelResult, fit_ols, recorded_warnings

MIXED_MAX_SESSIONS = 5_000  # session limit: MixedLM on sessions up to it, client means above
UNCONTROLLED_NOTE = ("uncontrolled: {span}, no control group: the change includes placebo, "
                     "expectation and regression to the mean")
SESSION_SPAN = "from before to after a session"


def change_series(prep: Prepared, y: np.ndarray, pre: np.ndarray, base: np.ndarray,
                  extraction: Extraction, *, kind: str = "change",
                  always: bool = False) -> SeriesData | None:
    """The change series of the sessions in ``base`` with a finite change (None when there
    are none, unless ``always``), with the session limit of the analysis kind ``kind``."""
    mask = base & np.isfinite(y)
    if not (always or mask.any()):
        return None
    return make_series("change", prep.frame(mask, y=y, pre=pre), change_sums,
                       extraction.limits[kind], keep_all=extraction.keep_all)


def prefixes(claim: pd.Series) -> tuple[str, ...]:
    """The measure-name prefixes of a claim on a family of measures (none: one outcome)."""
    return tuple(p.strip() for p in text(claim, "outcome_prefixes").split(";") if p.strip())


def extract(prep: Prepared, claim: pd.Series, extraction: Extraction) -> Extracted:
    """The change series of the claim's outcome, or of each measure of its family."""
    everyone = np.ones(prep.n, dtype=bool)
    family = prefixes(claim)
    series: dict[str, SeriesData] = {}
    if not family:
        outcome = str(claim["outcome"])
        pair = prep.change(outcome)
        if pair is None:
            return series, ()
        found = change_series(prep, *pair, everyone, extraction)
        if found is not None:
            series[series_key(claim, outcome)] = found
        return series, (f"{outcome}_change",)
    columns = prep.columns_starting(family)
    for measure in sorted({c.rsplit("_", 1)[0] for c in columns}):
        pair = prep.change(measure)
        if pair is not None:
            found = change_series(prep, *pair, everyone, extraction)
            if found is not None:
                series[series_key(claim, measure)] = found
    return series, columns


def fit_change_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *, mcid: float,
                     direction: int, relative: float, settings: Options,
                     span: str = SESSION_SPAN, limit: int = MIXED_MAX_SESSIONS,
                     large: bool | None = None) -> CellFit:
    """Within-session change in one cell: MixedLM on the sessions of a small cell, OLS on
    client means otherwise; ANCOVA against a control arm when there is one.

    ``large`` (default: no sessions given) says the cell is above its session ``limit``."""
    large = sessions is None if large is None else large
    control = units["control"].to_numpy(dtype=bool)
    n_mfr, n_ctrl = int((~control).sum()), int(control.sum())
    controlled = n_ctrl >= settings.min_clients and n_mfr >= settings.min_clients
    notes: list[str] = []
    with_pre = False
    if controlled and units["n_sessions_with_pre"].sum() > 0:  # sessions with a pre value
        with_pre = True
        units = units.loc[units["n_sessions_with_pre"] > 0]
        if sessions is not None:
            sessions = sessions.loc[np.isfinite(col(sessions, "pre"))]
        control = units["control"].to_numpy(dtype=bool)
        n_mfr, n_ctrl = int((~control).sum()), int(control.sum())
        controlled = n_ctrl >= settings.min_clients and n_mfr >= settings.min_clients
    if not controlled:
        if n_ctrl:
            notes.append(f"control arm too small for a controlled comparison "
                         f"({n_ctrl} clients): MFR sessions analysed alone")
        units = units.loc[~units["control"].to_numpy(dtype=bool)]
        if sessions is not None:
            sessions = sessions.loc[~sessions["control"].to_numpy(dtype=bool)]
        notes.append(UNCONTROLLED_NOTE.format(span=span))
    suffix = "_with_pre" if with_pre else ""
    counts = col(units, f"n_sessions{suffix}")
    n_sessions = int(counts.sum())
    n_clients = int(units["client_id"].nunique())
    if n_clients < settings.min_clients:
        return insufficient(n_clients, n_sessions, settings.min_clients)
    unit_y = col(units, f"sum_change{suffix}") / counts
    with_pre_counts = col(units, "n_sessions_with_pre")
    has_pre = n_sessions > 0 and int(with_pre_counts.sum()) == n_sessions
    unit_pre = None
    if with_pre_counts.sum() > 0:
        with np.errstate(invalid="ignore", divide="ignore"):
            unit_pre = np.where(with_pre_counts > 0,
                                col(units, "sum_pre") / np.maximum(with_pre_counts, 1), np.nan)
    unit_ctrl = units["control"].to_numpy(dtype=bool)
    baseline_sd = sd(unit_pre[np.isfinite(unit_pre)]) if unit_pre is not None else math.nan
    responders = responder_fields(unit_y, unit_ctrl if controlled else None, mcid, direction,
                                  unit_pre, relative)
    power = power_fields(unit_y[~unit_ctrl], unit_y[unit_ctrl] if controlled else None,
                         mcid, settings)
    design = "controlled" if controlled else "uncontrolled"
    if controlled:
        notes.insert(0, f"controlled: compared with control clients ({n_ctrl} control "
                        "clients); estimate = MFR minus control" + (
                            ", adjusted for the pre-session value (ANCOVA)" if has_pre else ""))
    elif unit_pre is not None and math.isfinite(relative):
        mean_pre = float(np.nanmean(unit_pre[~unit_ctrl]))
        if mean_pre > 0:
            share = float(np.mean(unit_y[~unit_ctrl])) / mean_pre
            notes.append(f"mean change is {share:+.0%} of the mean pre-session value "
                         f"(relative MCID {relative:.0%})")
    extra = {"n_clients": n_clients, "design": design, "sd_baseline": baseline_sd,
             "n_control_clients": n_ctrl if controlled else 0, **responders, **power}
    het_cov = centre(unit_pre) if (controlled and has_pre) else None
    het = HetData(unit_y, (~unit_ctrl).astype(float) if controlled else None, het_cov,
                  "hc1", design)
    low = float(col(units, f"min_change{suffix}").min())
    high = float(col(units, f"max_change{suffix}").max())
    if low == high:
        return CellFit("degenerate", n_clients, n_sessions, estimate=0.0 if controlled else low,
                       notes=(*notes, f"every change equals {low:g}: no variation, "
                              "so no test is possible (were post values recorded?)"),
                       **{k: v for k, v in extra.items() if k != "n_clients"})
    if controlled:
        names = ["intercept", "mfr_vs_control"] + (["pre"] if has_pre else [])
        term = "mfr_vs_control"
        label = "ANCOVA change ~ arm + pre" if has_pre else "change ~ arm"
    else:
        names, term, label = ["intercept"], "intercept", "change ~ 1"
    if sessions is not None and not large:
        y, pre = col(sessions, "y"), col(sessions, "pre")
        mfr_flag = (~sessions["control"].to_numpy(dtype=bool)).astype(float)
        columns = [np.ones(len(y))] + ([mfr_flag] if controlled else []) + (
            [centre(pre)] if controlled and has_pre else [])
        clients = codes(sessions["client_id"])
        result, fallback_notes = mixed_or_ols(y, np.column_stack(columns), clients, names,
                                              settings)
        fit = from_estimate(result, term, notes=(*notes, *fallback_notes), het=het, **extra)
        if controlled:
            fit = replace(fit, adjustment=_adjustment(
                (lambda: _unadjusted_on_sessions(y, mfr_flag, clients, result, settings))
                if has_pre else None, units, suffix, unit_pre, unit_ctrl))
        return replace(fit, method=f"{fit.method}: {label}")
    # large cell: one row per client (and arm), OLS on client means
    if controlled:
        Xc = np.column_stack([np.ones(len(unit_y)), (~unit_ctrl).astype(float)]
                             + ([centre(unit_pre)] if has_pre else []))
        result = fit_ols(unit_y, Xc, names=names, cov_type="HC1", alpha=settings.alpha)
    else:
        result = fit_ols(unit_y, np.ones((len(unit_y), 1)), names=names,
                         alpha=settings.alpha)
    fit = from_estimate(result, term, notes=(*notes, *warned(result)), het=het, **extra)
    if controlled:
        fit = replace(fit, adjustment=_adjustment(
            (lambda: fit_ols(unit_y, Xc[:, :2], names=names[:2], cov_type="HC1",
                             alpha=settings.alpha)) if has_pre else None,
            units, suffix, unit_pre, unit_ctrl))
    return replace(fit, n_sessions=n_sessions, method=(
        f"client-level {result.method} on per-client means: {label} "
        f"(cell above {limit:,} sessions)"))


def _unadjusted_on_sessions(y: np.ndarray, mfr_flag: np.ndarray, clients: np.ndarray,
                            adjusted: ModelResult, settings: Options) -> ModelResult:
    """``change ~ arm`` on a small cell's sessions, in the adjusted row's model family (a
    MixedLM with the same checks and fallback, or cluster-robust OLS)."""
    X = np.column_stack([np.ones(len(y)), mfr_flag])
    names = ["intercept", "mfr_vs_control"]
    if adjusted.method.startswith("MixedLM"):
        return mixed_or_ols(y, X, clients, names, settings)[0]
    return fit_ols(y, X, names=names, clients=clients, cov_type="cluster",
                   alpha=settings.alpha)


def _adjustment(unadjusted: Callable[[], ModelResult] | None, units: pd.DataFrame,
                suffix: str, unit_pre: np.ndarray | None, unit_ctrl: np.ndarray) -> Adjustment:
    """What a controlled cell's model adjusted for, from its per-client sums on either route:
    the pre-session value (when ``unadjusted`` fits the model without it), the arms'
    client-mean baselines, the analysed sessions' pooled within-arm SD of the change, and
    the unadjusted difference. A failed unadjusted fit leaves the difference NaN and never
    touches the adjusted row (its warnings are not the row's)."""
    spread = pooled_sd_from_sums(col(units, f"n_sessions{suffix}"),
                                 col(units, f"sum_change{suffix}"),
                                 col(units, f"sum_change_sq{suffix}"), unit_ctrl)
    if unadjusted is None or unit_pre is None:
        return Adjustment(outcome_sd=spread)
    finite = np.isfinite(unit_pre)
    baseline = {"baseline_mfr": float(np.mean(unit_pre[finite & ~unit_ctrl])),
                "baseline_control": float(np.mean(unit_pre[finite & unit_ctrl])),
                "baseline_sd": pooled_sd(unit_pre, unit_ctrl), "outcome_sd": spread}
    try:
        with recorded_warnings():
            est = unadjusted().term("mfr_vs_control")
    except (FitFailed, np.linalg.LinAlgError, ValueError, ZeroDivisionError,
            FloatingPointError):
        return Adjustment(covariates=("pre",), **baseline)
    return Adjustment(est.estimate, est.ci_low, est.ci_high, ("pre",), **baseline)


def fit_change_cell(y: np.ndarray, pre: np.ndarray, clients: np.ndarray,
                    control: np.ndarray, *, mcid: float, direction: int, relative: float,
                    settings: Options, limit: int = MIXED_MAX_SESSIONS) -> CellFit:
    """:func:`fit_change_units` on session arrays of one cell (clients as integer codes)."""
    frame = session_frame(clients, control, y=y, pre=pre)
    units = change_sums(frame).drop(columns="group")
    large = len(frame) > limit
    return fit_change_units(units, None if large else frame, mcid=mcid, direction=direction,
                            relative=relative, settings=settings, limit=limit, large=large)


def change_rows(job: Job, claim: pd.Series, outcome: str, *, unit: str,
                span: str = SESSION_SPAN) -> list[dict]:
    """The rows of one change series of a claim (its outcome, a measure, a follow-up)."""
    mcid, source = registry.threshold(claim, outcome, job.settings.mcid_overrides)
    relative = registry.mcid_relative(claim) if outcome == claim["outcome"] else math.nan
    fits = fit_cells(job, series_key(claim, outcome), fit_change_units, mcid=mcid,
                     direction=int(claim["direction"]), relative=relative, span=span)
    return rows_for(job, claim, outcome, fits, unit=unit, mcid=mcid, source=source)


def fit(job: Job, claim: pd.Series) -> list[dict]:
    """The claim's rows: its outcome, or each measure of its family, in every cell."""
    outcome, unit = str(claim["outcome"]), str(claim["unit"])
    family = prefixes(claim)
    if not family:
        if series_key(claim, outcome) not in job.inputs.series:
            return not_measured(job, claim, outcome, f"no {outcome}_pre/{outcome}_post (or "
                                f"{outcome}_change) values")
        return change_rows(job, claim, outcome, unit=unit)
    lead = series_key(claim, "")
    measures = sorted(k[len(lead):] for k in job.inputs.series if k.startswith(lead))
    if not measures:
        found = job.inputs.found.get(str(claim["claim_id"]), ())
        named = " or ".join(p.replace("_", "-") for p in family)
        why = (f"no {named} measure in the logs" if not found else
               f"column(s) {', '.join(found)} found but no *_pre/*_post pair to compare")
        return not_measured(job, claim, outcome, why)
    rows = []
    for measure in measures:
        rows += change_rows(job, claim, measure, unit=unit)
    return rows


def outcomes(claim: pd.Series) -> tuple[str, ...]:
    """MCID override keys of a change claim besides its id: its outcome."""
    return () if prefixes(claim) else (str(claim["outcome"]),)


def estimate_words(claim: pd.Series, outcome: str) -> str:
    """What a change estimate measures."""
    return "change after a session"


KIND = Kind("change", MIXED_MAX_SESSIONS, extract, fit, outcomes, estimate_words,
            before_after=True)
