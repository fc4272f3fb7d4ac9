"""Missing follow-up: the lasting-relief follow-up estimate under four ways of handling the
clients whose follow-up pain is missing, beside the primary row.

Follow-up pain is asked hours after a session and is often missing, and not at random: in
session logs the clients who felt little relief in their sessions answer less often. When the
chance of a missing follow-up depends on something observed but outside the primary model
(the client's earlier response: their mean within-session pain change), the complete-case
estimate is biased; multiple imputation and inverse probability weighting that use the
earlier response move it back (they assume the follow-up is *missing at random* given what
they use). Every row is at the client level (clients are the unit of analysis):

* ``complete_case``: clients with a follow-up score, the client mean of follow-up minus
  pre-session pain; the same design as the primary row: an ANCOVA on the client's mean
  pre-session pain (estimate = MFR minus control) when both arms have ``min_clients``
  complete cases, else the mean within-client change of MFR clients (OLS ``y ~ 1``).
* ``multiple_imputation``: chained equations (statsmodels :class:`~statsmodels.imputation.
  mice.MICEData`, predictive mean matching) impute the missing client means from pre-session
  pain, the earlier response, sessions attended, weeks in treatment, the arm and (pooled
  row) the audience group; :data:`N_IMPUTATIONS` imputations, the analysis model fitted to
  each (:class:`~statsmodels.imputation.mice.MICE`) and pooled by Rubin's rules
  (:func:`pool_rubin`, with Barnard-Rubin degrees of freedom).
* ``inverse_probability_weighting``: a logistic model of having any follow-up on the same
  observed covariates; complete cases weighted by the stabilised weight
  P(follow-up) / P(follow-up | covariates); weighted least squares with robust (HC1) errors.
* ``last_observation_carried_forward``: a missing follow-up takes the last pain observed
  in that session (the post-session score): a sensitivity row only, never the main result
  (it assumes the relief at the end of a session simply lasts).

Sensitivity rows are not in the multiplicity family of the primary rows and never change
them: their p-values are judged unadjusted at ``alpha`` (``p_adjusted`` is empty), so the
four rows can be compared with each other; :func:`robustness_sentence` says whether the
verdict holds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.imputation.mice import MICE, MICEData
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from mfr_analysis.claims import registry
from mfr_analysis.claims.base import ALL
from mfr_analysis.claims.verdicts import decide_verdict
from mfr_analysis.models import tost_p
from mfr_analysis.settings import AnalysisSettings

__all__ = [
    "APPROACHES",
    "N_IMPUTATIONS",
    "followup_clients",
    "ipw_estimate",
    "pool_rubin",
    "robustness_sentence",
    "sensitivity_rows",
]

CLAIM_ID = "lasting_relief"
OUTCOME = "pain_followup"
N_IMPUTATIONS = 20  # the usual number (White, Royston & Wood 2011: about the % incomplete)
SEED = 20_250_613  # imputations are random: a fixed seed makes a re-run identical
APPROACHES: dict[str, str] = {
    "complete_case": "complete case: clients with a follow-up score only",
    "multiple_imputation": (
        f"multiple imputation by chained equations (statsmodels MICE, {N_IMPUTATIONS} "
        "imputations, predictive mean matching on pre-session pain, the earlier response, "
        "sessions, weeks, arm and group), pooled by Rubin's rules with Barnard-Rubin "
        "degrees of freedom"),
    "inverse_probability_weighting": (
        "inverse probability weighting: a logistic model of having follow-up on pre-session "
        "pain, the earlier response, sessions, weeks, arm and group; stabilised weights, "
        "weighted least squares with robust (HC1) errors"),
    "last_observation_carried_forward": (
        "last observation carried forward: a missing follow-up takes the post-session pain "
        "of that session (a sensitivity row only, never the main result)"),
}
SENSITIVITY_NOTE = ("sensitivity analysis for missing follow-up, outside the multiplicity "
                    "correction of the primary rows: its p-value is judged unadjusted at "
                    "alpha = {alpha:g}")
_AUXILIARY = ("pre", "response", "log_sessions", "weeks")


# ------------------------------------------------------------------------------ data ---

def followup_clients(sessions: pd.DataFrame, group: str = ALL) -> pd.DataFrame:
    """One row per client of a cell (``group`` or all clients) with a pre-session pain score
    and an earlier response: ``y`` (client mean of follow-up minus pre-session pain, NaN when
    the client has no follow-up), ``y_locf`` (the same with a missing follow-up replaced by
    the session's post-session pain), ``pre`` (mean pre-session pain), ``response`` (mean
    within-session pain change), ``sessions``, ``weeks`` (last week in treatment),
    ``control`` and ``group``. The input frame is not changed."""
    if group == ALL:
        frame = sessions
    else:  # compared as categories, not as a million strings
        in_cell = (sessions["audience_group"] == group).fillna(False)
        frame = sessions.loc[in_cell.to_numpy(dtype=bool)]
    pre = frame["pain_pre"].to_numpy(dtype=float)
    post = frame["pain_post"].to_numpy(dtype=float)
    followup = (frame["pain_followup"].to_numpy(dtype=float) if "pain_followup" in frame
                else np.full(len(frame), np.nan))
    weeks = (frame["weeks_since_start"].to_numpy(dtype=float)
             if "weeks_since_start" in frame else np.zeros(len(frame)))
    carried = np.where(np.isfinite(followup), followup, post)
    # grouped by integer codes of the sorted ids: the same order as grouping the text
    codes, labels = pd.factorize(frame["client_id"].astype("str"), sort=True)
    per_session = pd.DataFrame({
        "client_id": codes,
        "group": frame["audience_group"].astype("str").to_numpy(),
        "control": (frame["arm"] == "control").fillna(False).to_numpy(dtype=bool),
        "y": followup - pre, "y_locf": carried - pre, "pre": pre, "response": post - pre,
        "weeks": weeks,
    })
    clients = per_session.groupby("client_id", sort=True).agg(
        y=("y", "mean"), y_locf=("y_locf", "mean"), pre=("pre", "mean"),
        response=("response", "mean"), sessions=("pre", "size"), weeks=("weeks", "max"),
        control=("control", "first"), group=("group", "first"))
    clients.index = pd.Index(labels, name="client_id")  # codes 0..n-1, each with rows
    keep = np.isfinite(clients["pre"]) & np.isfinite(clients["response"])
    return (clients.loc[keep].reset_index()
            .assign(log_sessions=lambda d: np.log(d["sessions"].astype(float)),
                    weeks=lambda d: d["weeks"].fillna(0.0)))


def _design_matrix(data: pd.DataFrame, controlled: bool) -> tuple[np.ndarray, str]:
    """Columns of the analysis model (intercept[, mfr, centred pre]) and the tested term."""
    ones = np.ones(len(data))
    if not controlled:
        return ones[:, None], "const"
    mfr = (~data["control"].to_numpy(dtype=bool)).astype(float)
    pre = data["pre"].to_numpy(dtype=float)
    return np.column_stack([ones, mfr, pre - pre.mean()]), "mfr"


def _covariates(data: pd.DataFrame, controlled: bool, pooled: bool) -> pd.DataFrame:
    """The observed covariates of the imputation and weighting models (no constant ones)."""
    out = data[list(_AUXILIARY)].astype(float)
    if controlled:
        out = out.assign(mfr=(~data["control"].to_numpy(dtype=bool)).astype(float))
    if pooled:
        dummies = pd.get_dummies(data["group"].astype("str"), prefix="g", drop_first=True,
                                 dtype=float)
        out = pd.concat([out, dummies.set_axis(data.index)], axis=1)
    return out.loc[:, out.std(ddof=0).fillna(0) > 0]


# ----------------------------------------------------------------------- estimators ---

def _ols(y: np.ndarray, X: np.ndarray, controlled: bool, weights: np.ndarray | None = None,
         ) -> tuple[float, float, float]:
    """(estimate, SE, residual df) of the tested term: OLS (HC1 when controlled) or WLS
    with HC1 errors when weighted."""
    if weights is None:
        model = sm.OLS(y, X)
        result = model.fit(cov_type="HC1") if controlled else model.fit()
    else:
        result = sm.WLS(y, X, weights=weights).fit(cov_type="HC1")
    k = 1 if controlled else 0
    return float(result.params[k]), float(result.bse[k]), float(result.df_resid)


def pool_rubin(estimates: Sequence[float], variances: Sequence[float],
               df_complete: float = math.inf) -> tuple[float, float, float]:
    """Rubin's rules for one parameter over ``m`` imputations: (pooled estimate, total
    variance, degrees of freedom).

    Pooled estimate ``q = mean(q_i)``, within variance ``W = mean(U_i)``, between variance
    ``B = var(q_i)`` (ddof 1), total ``T = W + (1 + 1/m) B`` (Rubin 1987). Degrees of
    freedom: Rubin's (1987) ``(m - 1) / lambda^2`` with ``lambda = (1 + 1/m) B / T``, and,
    when the complete-data ``df_complete`` is finite, the Barnard-Rubin (1999)
    small-sample version ``1 / (1 / df_old + 1 / df_obs)``, ``df_obs = (df_complete + 1) /
    (df_complete + 3) * df_complete * (1 - lambda)``. Hand-written because statsmodels'
    ``MICE.combine`` pools estimate and variance only (a normal reference, no df).

    >>> q, t, df = pool_rubin([1.0, 1.2, 1.4], [0.04, 0.05, 0.06])
    >>> round(q, 6), round(t, 6), round(df, 2)
    (1.2, 0.103333, 7.51)
    """
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = len(q)
    if m < 2:
        raise ValueError("Rubin's rules need at least two imputations")
    within, between = float(u.mean()), float(q.var(ddof=1))
    total = within + (1 + 1 / m) * between
    lam = (1 + 1 / m) * between / total if total > 0 else 0.0
    df_old = (m - 1) / lam**2 if lam > 0 else math.inf
    if math.isfinite(df_complete):
        df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
        df = 1 / (1 / df_old + 1 / df_obs) if math.isfinite(df_old) else df_obs
    else:
        df = df_old
    return float(q.mean()), float(total), float(df)


def ipw_weights(observed: np.ndarray, covariates: pd.DataFrame) -> np.ndarray:
    """Stabilised inverse-probability weights of the complete cases: P(observed) divided by
    the fitted P(observed | covariates) of a logistic model (statsmodels Logit)."""
    X = sm.add_constant(covariates.to_numpy(dtype=float), has_constant="add")
    fitted = sm.Logit(observed.astype(float), X).fit(disp=0, method="bfgs", maxiter=200)
    p = np.clip(fitted.predict(X), 1e-6, 1.0)
    return observed.mean() / p[observed]


def ipw_estimate(y: np.ndarray, observed: np.ndarray, covariates: pd.DataFrame,
                 X: np.ndarray, controlled: bool) -> tuple[float, float, float]:
    """(estimate, robust SE, df) of the tested term, complete cases weighted by
    :func:`ipw_weights` (the SE treats the weights as known, as is usual)."""
    weights = ipw_weights(observed, covariates)
    return _ols(y[observed], X[observed], controlled, weights)


class _FixedPredictorsMICEData(MICEData):
    """:class:`MICEData` for a table whose only incomplete column is ``y``: the predictors
    of ``y`` never change between cycles, so their design matrices are built once.

    Hand-written because statsmodels rebuilds them with patsy on every cycle (90 % of the
    time of the sensitivity rows); the draws and the imputations are the same."""

    def __init__(self, data: pd.DataFrame, **kwargs: object) -> None:
        self._built: dict[tuple[str, str], tuple] = {}
        super().__init__(data, **kwargs)

    def _once(self, kind: str, vname: str, build: Callable[[str], tuple]) -> tuple:
        if (kind, vname) not in self._built:
            self._built[kind, vname] = build(vname)
        return tuple(v.copy(order="K") if isinstance(v, np.ndarray) else dict(v)
                     if isinstance(v, dict) else v
                     for v in self._built[kind, vname])

    def get_split_data(self, vname: str) -> tuple:  # noqa: D102 (statsmodels' own)
        return self._once("split", vname, super().get_split_data)

    def get_fitting_data(self, vname: str) -> tuple:  # noqa: D102
        return self._once("fit", vname, super().get_fitting_data)


def _imputed_fits(frame: pd.DataFrame, names: list[str], predictors: list[str],
                  controlled: bool, fixed: bool | None = None) -> list:
    """The analysis model's OLS results on each of :data:`N_IMPUTATIONS` imputed data sets
    (one MICE cycle each: only y is missing, so one cycle is a fresh draw). ``fixed``: build
    the predictors' matrices once (default: when y is the only incomplete column), else
    statsmodels' MICE as it is."""
    fit_kwds = {"cov_type": "HC1"} if controlled else {}
    if fixed is None:
        fixed = bool(frame.drop(columns="y").notna().all().all())
    if fixed:
        imputed = _FixedPredictorsMICEData(frame, rng=np.random.default_rng(SEED))
        # y from the observed covariates (the analysis columns would repeat them)
        imputed.set_imputer("y", formula=" + ".join(predictors))
        design = np.column_stack([np.ones(len(frame)), *(frame[n] for n in names)])
        fits = []
        for _ in range(N_IMPUTATIONS):
            imputed.update_all(1)
            fits.append(sm.OLS(imputed.data["y"].to_numpy(dtype=float), design)
                        .fit(**fit_kwds))
        return fits
    imputed = MICEData(frame, rng=np.random.default_rng(SEED))
    imputed.set_imputer("y", formula=" + ".join(predictors))
    formula = "y ~ " + (" + ".join(names) if names else "1")
    mice = MICE(formula, sm.OLS, imputed, n_skip=0, fit_kwds=fit_kwds)
    return [mice.next_sample() for _ in range(N_IMPUTATIONS)]


def _mi_estimate(data: pd.DataFrame, covariates: pd.DataFrame, controlled: bool,
                 ) -> tuple[float, float, float]:
    """(estimate, total SE, Barnard-Rubin df) by MICE with :data:`N_IMPUTATIONS`."""
    frame = covariates.assign(y=data["y"].to_numpy(dtype=float)).reset_index(drop=True)
    X, _ = _design_matrix(data, controlled)
    names = ["mfr_", "pre_c_"] if controlled else []
    for i, name in enumerate(names, start=1):
        frame[name] = X[:, i]
    # MICE.fit's own pooling (MICE.combine) fails on a one-parameter model and gives no df
    with warnings.catch_warnings():
        # a covariate constant in a slice (one site whose clients are all of one group) makes
        # the imputation model rank-deficient: OLS solves it through the pseudo-inverse, and
        # its fitted values, all predictive mean matching uses, are unique all the same
        warnings.simplefilter("ignore", SingularMatrixWarning)
        results = _imputed_fits(frame, names, list(covariates.columns), controlled)
    k = 1 if controlled else 0
    estimates = [float(np.asarray(r.params)[k]) for r in results]
    variances = [float(np.asarray(r.cov_params())[k, k]) for r in results]
    df_complete = float(results[0].df_resid)
    q, total, df = pool_rubin(estimates, variances, df_complete)
    return q, math.sqrt(total), df


# ----------------------------------------------------------------------------- rows ---

def _row(group: str, approach: str, estimate: float, se: float, df: float, n_clients: int,
         n_sessions: int, *, design: str, n_control: int, mcid: float, source: str,
         direction: int, alpha: float, notes: Sequence[str], status: str = "fit") -> dict:
    """One sensitivity row of the claims table (columns the engine does not fill stay NaN)."""
    ok = status == "fit" and math.isfinite(estimate) and math.isfinite(se) and se > 0
    if ok:
        dist = stats.t(df) if math.isfinite(df) else stats.norm
        half = float(dist.ppf(1 - alpha / 2)) * se
        p = float(2 * dist.sf(abs(estimate / se)))
        low, high = estimate - half, estimate + half
        tost = tost_p(estimate, se, mcid, df)
    else:
        p = low = high = tost = math.nan
    verdict = decide_verdict(status if ok or status != "fit" else "degenerate", p, estimate,
                             direction, mcid, tost, design=design, alpha=alpha)
    return {
        "claim_id": CLAIM_ID, "audience_group": group, "outcome": OUTCOME,
        "estimate": estimate if ok else math.nan, "ci_low": low, "ci_high": high,
        "p_value": p, "p_adjusted": math.nan, "mcid": mcid, "n_clients": n_clients,
        "n_sessions": n_sessions, "method": APPROACHES[approach], "verdict": verdict,
        "note": "; ".join(n for n in notes if n), "unit": "points", "design": design,
        "n_control_clients": n_control, "threshold_source": source if math.isfinite(mcid)
        else "", "se": se if ok else math.nan, "tost_p": tost, "sensitivity": approach,
    }


def _cell_rows(sessions: pd.DataFrame, group: str, *, settings: AnalysisSettings,
               mcid: float, source: str, direction: int) -> list[dict]:
    """The four sensitivity rows of one cell."""
    data = followup_clients(sessions, group)
    observed = np.isfinite(data["y"].to_numpy(dtype=float))
    control = data["control"].to_numpy(dtype=bool)
    n_ctrl_cc, n_mfr_cc = int((observed & control).sum()), int((observed & ~control).sum())
    controlled = min(n_ctrl_cc, n_mfr_cc) >= settings.min_clients
    if not controlled:
        data = data.loc[~control].reset_index(drop=True)
        observed = np.isfinite(data["y"].to_numpy(dtype=float))
    design = "controlled" if controlled else "uncontrolled"
    alpha = settings.alpha
    base_notes = [SENSITIVITY_NOTE.format(alpha=alpha)]
    base_notes.append(
        "controlled: client-level ANCOVA on mean pre-session pain, estimate = MFR minus "
        "control" if controlled else
        "uncontrolled: mean within-client change from before a session to its follow-up, "
        "no control group")
    n_all, n_cc = len(data), int(observed.sum())
    sessions_all = int(data["sessions"].sum())
    sessions_cc = int(data.loc[observed, "sessions"].sum())
    n_control_all = int(data["control"].sum()) if controlled else 0
    n_control_cc = n_ctrl_cc if controlled else 0
    common = {"design": design, "mcid": mcid, "source": source, "direction": direction,
              "alpha": alpha}
    approaches = list(APPROACHES)
    if n_cc < settings.min_clients:
        why = (f"too few clients with a follow-up score (minimum {settings.min_clients})")
        return [_row(group, a, math.nan, math.nan, math.nan, n_cc, sessions_cc,
                     n_control=n_control_cc, notes=[*base_notes, why],
                     status="insufficient_data", **{**common, "design": ""})
                for a in approaches]
    X, _ = _design_matrix(data, controlled)
    y = data["y"].to_numpy(dtype=float)
    covariates = _covariates(data, controlled, pooled=group == ALL)
    missing_words = (f"{n_all - n_cc} of {n_all} clients have no follow-up score"
                     if n_all > n_cc else "every client has a follow-up score")
    rows = []
    fits = {
        "complete_case": lambda: _ols(y[observed], X[observed], controlled),
        "multiple_imputation": lambda: _mi_estimate(data, covariates, controlled),
        "inverse_probability_weighting": lambda: ipw_estimate(y, observed, covariates, X,
                                                               controlled),
        "last_observation_carried_forward": lambda: _ols(
            data["y_locf"].to_numpy(dtype=float), X, controlled),
    }
    uses_all = {"multiple_imputation", "last_observation_carried_forward"}
    for approach in approaches:
        all_clients = approach in uses_all
        notes = [*base_notes, missing_words]
        try:
            if n_all == n_cc and approach in ("multiple_imputation",
                                              "inverse_probability_weighting"):
                estimate, se, df = fits["complete_case"]()  # nothing to impute or weight
                notes.append("nothing missing: equals the complete-case row")
            else:
                estimate, se, df = fits[approach]()
            status = "fit"
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as error:
            estimate = se = df = math.nan
            status = "degenerate"
            notes.append(f"could not be fitted ({str(error).splitlines()[0][:120]})")
        rows.append(_row(group, approach, estimate, se, df, n_all if all_clients else n_cc,
                         sessions_all if all_clients else sessions_cc,
                         n_control=n_control_all if all_clients else n_control_cc,
                         notes=notes, status=status, **common))
    return rows


def sensitivity_rows(sessions: pd.DataFrame, claim: pd.Series, groups: Sequence[str], *,
                     settings: AnalysisSettings) -> pd.DataFrame:
    """The lasting-relief sensitivity rows of every cell (``all`` and ``groups``), in the
    order all, then each group; each cell's rows in :data:`APPROACHES` order."""
    if "pain_followup" not in sessions or not {"pain_pre", "pain_post"} <= set(sessions):
        return pd.DataFrame()
    mcid, source = registry.threshold(claim, OUTCOME, settings.mcid_overrides)
    direction = int(claim["direction"])
    rows: list[dict] = []
    for group in (ALL, *(g for g in groups if g != ALL)):
        rows += _cell_rows(sessions, group, settings=settings, mcid=mcid, source=source,
                           direction=direction)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------- robustness ---

def robustness_sentence(claims: pd.DataFrame, audience_group: str = ALL) -> str:
    """One sentence: does the lasting-relief verdict at follow-up hold under multiple
    imputation and inverse probability weighting (compared with complete case)?"""
    rows = claims.loc[(claims["claim_id"] == CLAIM_ID) & (claims["outcome"] == OUTCOME)
                      & (claims["audience_group"] == audience_group)]
    if "sensitivity" not in rows:
        return "No missing-data sensitivity analysis was run."
    verdict = dict(zip(rows["sensitivity"], rows["verdict"].astype("str"), strict=False))
    base = verdict.get("complete_case")
    others = {"multiple_imputation": "multiple imputation",
              "inverse_probability_weighting": "inverse probability weighting"}
    usable = {k: v for k, v in verdict.items() if k in others and v not in (
        "insufficient_data", "not_measured", "suppressed")}
    if base in (None, "insufficient_data", "not_measured", "suppressed") or not usable:
        return ("Too few clients have a follow-up score to test whether the lasting-relief "
                "verdict depends on how missing follow-up is handled.")
    changed = [others[k] for k, v in usable.items() if v != base]
    if not changed:
        said = " and ".join(others[k] for k in usable)
        return (f"The verdict at follow-up is the same under {said} as with complete cases "
                f"({base.replace('_', ' ')}): missing follow-up does not change the "
                "conclusion.")
    return (f"The verdict at follow-up changes under {' and '.join(changed)} (complete cases: "
            f"{base.replace('_', ' ')}): missing follow-up may bias it, read the main result "
            "with care.")
