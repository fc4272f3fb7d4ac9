"""Adjusted and unadjusted side by side, and how robust a controlled estimate is to an
unmeasured confounder: the columns every claims row carries for that.

A controlled row (MFR minus control) is an ANCOVA adjusted for the pre-session value; this
module turns its cell fit (:class:`~mfr_analysis.claims.fits.Adjustment`) into
:data:`ADJUSTED_COLUMNS`: the unadjusted difference of the same outcome and clients, the
covariates in words and why they were used (from the arms' baselines), and the E-values of
the estimate and of its confidence limit nearer no effect
(:mod:`mfr_analysis.claims.evalue`). Rows that are not controlled get NaN and ''.
Words come from ``data/adjustment.csv``.
"""

from __future__ import annotations

import math

import numpy as np

from mfr_analysis.claims.evalue import (
    adjustment_value,
    adjustment_words,
    e_values_md,
    pooled_sd,
)
from mfr_analysis.claims.fits import Adjustment, CellFit

__all__ = ["ADJUSTED_COLUMNS", "adjusted_columns", "covariate_words", "measure_words"]

ADJUSTED_COLUMNS: tuple[str, ...] = (
    "estimate_unadjusted", "ci_low_unadjusted", "ci_high_unadjusted", "covariates",
    "covariates_reason", "e_value", "e_value_ci",
)
FLOAT_COLUMNS = ("estimate_unadjusted", "ci_low_unadjusted", "ci_high_unadjusted", "e_value",
                 "e_value_ci")
TEXT_COLUMNS = ("covariates", "covariates_reason")
COVARIATE_KEYS = {"pre": "covariate_pre"}  # a model's covariate name -> its words' key


def measure_words(outcome: str) -> str:
    """The measure of a row's outcome in words: 'rom:knee_flexion_deg' -> 'knee flexion',
    'pain_followup' -> 'pain' (the pre-session value the follow-up is compared with)."""
    name = outcome.split(":", 1)[1] if ":" in outcome else outcome
    for suffix in ("_deg", "_cm", "_followup", "_pre"):
        name = name.removesuffix(suffix)
    return name.replace("_", " ")


def covariate_words(covariates: tuple[str, ...], outcome: str) -> str:
    """The covariates of a model in words, e.g. 'pain before the session' ('none' without)."""
    if not covariates:
        return adjustment_words("covariate_none")
    measure = measure_words(outcome)
    return ", ".join(adjustment_words(COVARIATE_KEYS.get(c, c)).format(measure=measure)
                     for c in covariates)


def _reason(adjustment: Adjustment | None, outcome: str) -> str:
    """Why the model adjusted, from the arms' baselines (or why it needed nothing)."""
    if adjustment is None or not adjustment.covariates:
        return adjustment_words("reason_none")
    mfr, control, spread = (adjustment.baseline_mfr, adjustment.baseline_control,
                            adjustment.baseline_sd)
    smd = (mfr - control) / spread if math.isfinite(spread) and spread > 0 else math.nan
    imbalanced = math.isfinite(smd) and abs(smd) > adjustment_value("imbalance_smd")
    key = "reason_imbalanced" if imbalanced else "reason_balanced"
    return adjustment_words(key).format(measure=measure_words(outcome), mfr=mfr,
                                        control=control, smd=smd)


def empty_columns() -> dict[str, object]:
    """The columns of a row that is not a fitted controlled comparison."""
    return {**dict.fromkeys(FLOAT_COLUMNS, math.nan), **dict.fromkeys(TEXT_COLUMNS, "")}


def outcome_sd(fit: CellFit) -> float:
    """Pooled within-arm SD of the client-level outcome of a cell's model that states no
    outcome SD of its own (a trend: each client's slope over weeks, the outcome of its
    two-stage analysis), read from its heterogeneity data on either route."""
    het = fit.het
    if het is None or het.effect is None:
        return math.nan
    return pooled_sd(het.y, np.asarray(het.effect) > 0)


def adjusted_columns(fit: CellFit, outcome: str) -> dict[str, object]:
    """:data:`ADJUSTED_COLUMNS` of one row from its cell fit (NaN and '' unless the row is a
    fitted controlled comparison of means)."""
    if fit.status != "fit" or fit.design != "controlled" or fit.log_scale:
        return empty_columns()
    adjustment = fit.adjustment
    if adjustment is None or not adjustment.covariates:  # no covariate: already unadjusted
        plain = (fit.estimate, fit.ci_low, fit.ci_high)
        covariates: tuple[str, ...] = ()
    else:
        plain = (adjustment.estimate, adjustment.ci_low, adjustment.ci_high)
        covariates = adjustment.covariates
    spread = adjustment.outcome_sd if adjustment is not None else outcome_sd(fit)
    point, limit = e_values_md(fit.estimate, fit.ci_low, fit.ci_high, sd=spread)
    return {"estimate_unadjusted": plain[0], "ci_low_unadjusted": plain[1],
            "ci_high_unadjusted": plain[2],
            "covariates": covariate_words(covariates, outcome),
            "covariates_reason": _reason(adjustment, outcome),
            "e_value": point, "e_value_ci": limit}
