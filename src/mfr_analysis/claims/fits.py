"""Pieces every analysis kind's cell fit shares: the cell result, fallbacks, responders,
power and the between-group heterogeneity test.

A *cell* is one audience group, or all sessions. A kind's cell fit takes the cell's
per-client sums (``units``) and, for a small cell, its sessions, and returns a
:class:`CellFit`; nothing here knows which claim it serves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from mfr_analysis.models import (
    FitFailed,
    ModelResult,
    anova_icc,
    clients_needed,
    fit_mixed,
    fit_ols,
    fit_ols_design,
    minimum_detectable_effect,
    recorded_warnings,
    slope_variance,
    wald_equal,
)

MIN_ICC = 0.01  # below this ANOVA ICC a random intercept sits on the boundary: OLS instead
MIN_SLOPE_SHARE = 0.05  # a random slope with a smaller moment variance share is dropped
POWER = 0.80  # of the minimum detectable effect and the clients needed


class Options(Protocol):
    """What a cell fit reads of the run's settings (an AnalysisSettings)."""

    alpha: float
    min_clients: int
    mcid_overrides: Mapping[str, float]


@dataclass(frozen=True)
class HetData:
    """What one cell contributes to the between-group heterogeneity test: its client-level
    values for ``kind`` "hc1" (:func:`heterogeneity`); a cell of kind "cluster" or "logit"
    is compared by its estimate and SE instead (:func:`mfr_analysis.models.equal_effects_p`)."""

    y: np.ndarray
    effect: np.ndarray | None
    covariate: np.ndarray | None
    kind: Literal["hc1", "cluster", "logit"]
    design: str


@dataclass(frozen=True)
class Adjustment:
    """What a controlled cell's adjusted model used, and the same comparison without it: the
    unadjusted MFR-minus-control difference (same outcome, clients and model family, no
    covariate), the covariates by name (``pre``: the pre-session value) and the arms'
    client-mean baseline (for the words of why), and the outcome's SD (for E-values). A
    controlled fit without one (a trend) has no covariate: its estimate is unadjusted."""

    estimate: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    covariates: tuple[str, ...] = ()
    baseline_mfr: float = math.nan
    baseline_control: float = math.nan
    baseline_sd: float = math.nan  # pooled within-arm SD of the client-mean baselines
    outcome_sd: float = math.nan  # pooled within-arm SD of the analysed sessions' outcome


@dataclass(frozen=True)
class CellFit:
    """Result of one claim in one cell, before multiplicity and verdicts."""

    status: Literal["fit", "insufficient_data", "not_measured", "degenerate"]
    n_clients: int = 0
    n_sessions: int = 0
    estimate: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    df: float = math.inf
    method: str = ""
    design: str = ""
    notes: tuple[str, ...] = ()
    mcid: float = math.nan
    n_control_clients: int = 0
    responders: float = math.nan
    responder_clients: float = math.nan
    responders_control: float = math.nan
    responder_clients_control: float = math.nan
    mde: float = math.nan
    clients_needed: float = math.nan
    sd_baseline: float = math.nan
    log_scale: bool = False
    het: HetData | None = field(default=None, repr=False)
    adjustment: Adjustment | None = field(default=None, repr=False)
    model: ModelResult | None = field(default=None, repr=False, compare=False)


def codes(labels: pd.Series) -> np.ndarray:
    """Integer client codes in sorted label order."""
    return pd.factorize(labels, sort=True)[0].astype(np.int64)


def col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float64."""
    return frame[name].to_numpy(dtype=float)


def centre(x: np.ndarray) -> np.ndarray:
    """Values minus their mean (an empty array stays empty)."""
    return x - x.mean() if x.size else x


def sd(values: np.ndarray) -> float:
    """Sample standard deviation (NaN for fewer than two values)."""
    return float(np.std(values, ddof=1)) if values.size >= 2 else math.nan


def insufficient(n_clients: int, n_sessions: int, min_clients: int, why: str = "") -> CellFit:
    """A cell with too few clients for a model."""
    text = why or f"{n_clients} clients with data, fewer than the minimum of {min_clients}"
    return CellFit("insufficient_data", n_clients, n_sessions, notes=(text,))


def from_estimate(result: ModelResult, term: str, **extra: object) -> CellFit:
    """A fitted cell from one term of a model (the model is kept for a refit)."""
    est = result.term(term)
    return CellFit("fit", n_sessions=est.n_obs, estimate=est.estimate, se=est.se,
                   ci_low=est.ci_low, ci_high=est.ci_high, p_value=est.p_value, df=est.df,
                   method=est.method, model=result, **extra)  # type: ignore[arg-type]


def fit_with_fallback(primary: str, fit: Callable[[], ModelResult],
                      fallback: Callable[[], ModelResult]) -> tuple[ModelResult, tuple[str, ...]]:
    """Run ``fit``; on failure, any warning or a non-finite SE run ``fallback`` instead."""
    try:
        result = fit()
    except FitFailed as error:
        reason = str(error)
    else:
        if not result.warnings:
            return result, ()
        reason = f"{primary} warned: " + " | ".join(result.warnings)
    backup = fallback()
    notes = [f"{backup.method} used because {reason}"]
    if backup.warnings:
        notes.append(f"{backup.method} warned: " + " | ".join(backup.warnings))
    return replace(backup, method=f"{backup.method} (fallback from {primary})"), tuple(notes)


def mixed_or_ols(y: np.ndarray, X: np.ndarray, clients: np.ndarray, names: list[str],
                 settings: Options, slope: np.ndarray | None = None,
                 ) -> tuple[ModelResult, tuple[str, ...]]:
    """MixedLM (random intercept, plus a random slope on ``slope`` if given) with checks.

    Variance components are first estimated by moments: a random slope whose variance is
    estimated at zero is dropped, and a random intercept with an ANOVA ICC below
    ``MIN_ICC`` is replaced by cluster-robust OLS (MixedLM would sit on the boundary,
    where it is slow, warns, and equals OLS). Warnings or failures also fall back to OLS.
    """
    def ols() -> ModelResult:
        return fit_ols(y, X, names=names, clients=clients, cov_type="cluster",
                       alpha=settings.alpha)

    notes: list[str] = []
    slope_rel = math.nan
    if slope is not None:
        share, slope_var, sigma2 = slope_variance(y, slope, clients)
        if not (math.isfinite(share) and share >= MIN_SLOPE_SHARE):
            notes.append("between-client slope variance estimated at zero (moments): random "
                         "intercept only")
            slope = None
        else:
            slope_rel = slope_var / sigma2
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    icc = anova_icc(y - X @ beta, clients)
    if not (math.isfinite(icc) and icc >= MIN_ICC):
        shown = "not estimable" if not math.isfinite(icc) else f"{icc:.3f}"
        notes.append(f"between-client variance near zero (ANOVA ICC {shown}): a random "
                     "intercept would sit on the boundary, so cluster-robust OLS was used")
        result = ols()
        if result.warnings:
            notes.append(f"OLS warned: {' | '.join(result.warnings)}")
        return result, tuple(notes)
    exog_re = None if slope is None else np.column_stack([np.ones(len(y)), slope])
    start = np.diag([icc / (1 - icc)] + ([] if slope is None else [slope_rel]))
    result, fallback = fit_with_fallback(
        "MixedLM",
        lambda: fit_mixed(y, X, clients, names=names, exog_re=exog_re, start_cov_re=start,
                          alpha=settings.alpha),
        ols)
    return result, (*notes, *fallback)


def warned(result: ModelResult, what: str = "OLS") -> tuple[str, ...]:
    """The note of a model that warned (none when it did not)."""
    return (f"{what} warned: {' | '.join(result.warnings)}",) if result.warnings else ()


def _responders(values: np.ndarray, mcid: float, direction: int,
                baseline: np.ndarray | None = None,
                relative: float = math.nan) -> tuple[float, float]:
    """(responders, clients): clients whose client-level value passes the MCID (or the
    relative MCID of their baseline) in the claimed direction, out of those with a value.

    Both are NaN when there is no threshold to pass."""
    if not math.isfinite(mcid):
        return math.nan, math.nan
    keep = np.isfinite(values)
    values = values[keep]
    passed = direction * values >= mcid
    if baseline is not None and math.isfinite(relative):
        base = baseline[keep]
        with np.errstate(invalid="ignore"):
            passed |= (direction * values >= relative * np.abs(base)) & (base > 0)
    return float(passed.sum()), float(values.size)


def responder_fields(values: np.ndarray, control: np.ndarray | None, mcid: float,
                     direction: int, baseline: np.ndarray | None = None,
                     relative: float = math.nan) -> dict[str, float]:
    """Responder counts of the MFR clients and, when the model used one, the control arm.

    ``control`` flags the control-arm entries of ``values`` (None: no control arm used)."""
    ctrl = np.zeros(values.size, dtype=bool) if control is None else control

    def arm(mask: np.ndarray) -> tuple[float, float]:
        return _responders(values[mask], mcid, direction,
                           None if baseline is None else baseline[mask], relative)

    mfr = arm(~ctrl)
    ctl = (math.nan, math.nan) if control is None else arm(ctrl)
    return {"responders": mfr[0], "responder_clients": mfr[1],
            "responders_control": ctl[0], "responder_clients_control": ctl[1]}


def power_fields(values_mfr: np.ndarray, values_ctrl: np.ndarray | None, mcid: float,
                 settings: Options) -> dict[str, float]:
    """MDE at the current n and clients needed for the MCID, from client-level SDs."""
    if values_ctrl is None or values_ctrl.size == 0:
        spread, ratio, n = sd(values_mfr), None, values_mfr.size
    else:
        n1, n2 = values_mfr.size, values_ctrl.size
        pooled = ((n1 - 1) * sd(values_mfr) ** 2 + (n2 - 1) * sd(values_ctrl) ** 2) \
            / max(n1 + n2 - 2, 1)
        spread, ratio, n = math.sqrt(pooled), n2 / n1, n1
    return {"mde": minimum_detectable_effect(spread, n, alpha=settings.alpha, power=POWER,
                                             ratio=ratio),
            "clients_needed": clients_needed(mcid, spread, alpha=settings.alpha, power=POWER,
                                             ratio=ratio)}


def se_mde(se: float, df: float, alpha: float) -> float:
    """Normal/t approximation of the minimum detectable effect from a standard error."""
    if not (math.isfinite(se) and se > 0):
        return math.nan
    dist = stats.norm if math.isinf(df) else stats.t(df)
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(POWER)) * se)


def guarded(fit_cell: Callable[..., CellFit], *args: Any, **kwargs: Any) -> CellFit:
    """Run a cell fit; a numerical failure becomes an inconclusive row with its reason."""
    try:
        with recorded_warnings() as caught:
            fit = fit_cell(*args, **kwargs)
    except (FitFailed, np.linalg.LinAlgError, ValueError, ZeroDivisionError,
            FloatingPointError) as error:
        return CellFit("degenerate", notes=(f"model could not be fitted: "
                                            f"{type(error).__name__}: {error}",))
    if caught:
        fit = replace(fit, notes=(*fit.notes, "warnings: " + " | ".join(caught)))
    return fit


def heterogeneity(parts: Sequence[HetData], alpha: float) -> tuple[float, str]:
    """Wald test that the claim's effect is equal across audience groups (p, method): HC1
    OLS of the cells' client-level values ("hc1" parts) on group indicators, their effect
    and the covariate."""
    if len(parts) < 2:
        return math.nan, "fewer than two groups with enough clients"
    y = np.concatenate([p.y for p in parts])
    g = np.concatenate([np.full(len(p.y), i) for i, p in enumerate(parts)])
    levels = np.arange(len(parts))
    names = [f"group{i}" for i in range(len(parts))]
    tested = list(names)
    effect = covariate = None
    if parts[0].effect is not None:
        effect = np.concatenate([p.effect for p in parts])  # type: ignore[misc]
        tested = [f"effect{i}" for i in range(len(parts))]
        names += tested
    if parts[0].covariate is not None:
        covariate = np.concatenate([p.covariate for p in parts])  # type: ignore[misc]
        names.append("covariate")

    def design(start: int, stop: int) -> np.ndarray:
        """Rows start to stop of the design: group indicators, indicator x effect, covariate."""
        dummies = (g[start:stop, None] == levels[None, :]).astype(float)
        columns = [dummies]
        if effect is not None:
            columns.append(dummies * effect[start:stop, None])
        if covariate is not None:
            columns.append(covariate[start:stop, None])
        return np.column_stack(columns)

    try:
        result = fit_ols_design(y, design, names=names, cov_type="HC1", alpha=alpha)
        p = wald_equal(result, tested)
    except (FitFailed, np.linalg.LinAlgError, ValueError) as error:
        return math.nan, f"heterogeneity test failed: {error}"
    return p, f"Wald test of group differences ({result.method})"
