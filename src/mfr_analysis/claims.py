"""The claims engine: test each claimed benefit of MFR on a derived session table.

``evaluate_claims(sessions)`` returns the tidy claims table of design.md: one row per
(claim_id, audience_group, outcome), ``audience_group="all"`` for the pooled row. The input
frame is never changed. Clients are the unit of independence throughout.

Method rules (``method`` in each row says which one ran and why). A cell's size is its
number of usable sessions for the outcome; small cells are fitted on their sessions, large
ones on per-client sums (:mod:`mfr_analysis.claim_inputs`), which is also all that a
partitioned dataset larger than memory is reduced to (:mod:`mfr_analysis.scale`):

* within-session change (tightness, pain, stress, rom per measure, follow-up pain):
  cells of at most ``MIXED_MAX_SESSIONS`` sessions get a MixedLM (REML) ``change ~ 1`` with
  a random intercept per client; larger cells are reduced to one mean change per client and
  analysed with OLS on client means (a one-sample t-test: a valid client-level analysis, and
  the mixed model's fixed effect when clients are balanced). With a control arm of at least
  ``min_clients`` clients the model is an ANCOVA, ``change ~ arm + pre`` (same coefficient as
  ``post ~ pre + arm``), estimate = MFR minus control.
* lasting_relief: pre-session pain ~ weeks with a random intercept and slope per client up
  to ``MIXED_SLOPES_MAX_SESSIONS`` sessions, per-client OLS slopes (two-stage summary
  measure) above; with a control arm the arm x weeks interaction. Follow-up pain minus
  pre-session pain is a second row (``outcome="pain_followup"``) analysed as a change.
* slow_pace, breathing, delivery: OLS ``change ~ level + pre`` on MFR sessions with
  cluster-robust errors by client (above ``CLUSTER_OLS_MAX_SESSIONS`` sessions computed from
  per-client cross-products: the same numbers).
* consistency: per-client slope of pre-session pain over weeks regressed on the client's
  sessions per week (OLS on clients, HC1 errors).
* pressure_safety: logistic GEE (exchangeable, by client) of any adverse event on pressure
  up to ``GEE_MAX_SESSIONS`` sessions, logistic regression with cluster-robust errors on
  per-client counts by pressure above; odds ratio per pressure point.
* before a MixedLM, variance components are estimated by moments: an ANOVA ICC below
  ``MIN_ICC`` means a random intercept would sit on the boundary (where MixedLM is slow,
  warns and equals OLS), so cluster-robust OLS runs instead; a random slope whose moment
  variance is zero is dropped. The moment estimates also start the optimiser.
* whenever a MixedLM or GEE fit warns or fails, the cell is refitted with cluster-robust
  OLS (or logistic regression) and the warning text is kept in ``note``; nothing is printed.
* heterogeneity (``heterogeneity_p`` on the pooled row): Wald test of group x effect in a
  client-level OLS with HC1 errors (change, trend, consistency), or a Wald (Cochran's Q)
  test that the independent group estimates are equal (session-level contrasts, adverse).

Designs (``design``, set on every row with a model, empty only for ``not_measured`` and
``insufficient_data``): ``controlled`` (MFR compared with control clients: ANCOVA, or the
arm x weeks interaction; ``n_control_clients`` of them), ``uncontrolled`` (from before to
after a session, no control group: includes placebo and regression to the mean) and
``observational`` (sessions or clients that differ in a factor they chose: an association).

Thresholds. Every claim of ``data/claims.csv`` states the threshold its verdict uses
(``threshold_key``, ``threshold_kind`` and ``threshold_rationale``), or that it has none;
``mcid`` holds the value a row's verdict used and ``threshold_source`` its reference (NaN and
"" without one). Within-person MCIDs (pain, tightness, stress, ROM per measure, lasting
relief) judge the before/after change and the MFR-minus-control difference. The session
contrasts (slow_pace, breathing, delivery), the dose slope (consistency) and the adverse
odds ratio (pressure_safety) state none: a within-person MCID is not a difference between
two kinds of session, none is published for them, and they are observational; circulation
has no standard measure. Responders (``responders`` of ``responder_clients``, and the same
for the control arm of a controlled row) are clients whose client-level value passes the
threshold (for pain also 30 % of their baseline) in the claimed direction.

Verdicts (:func:`decide_verdict`, after the multiplicity correction; "significant" means an
adjusted p below ``alpha``). With a stated threshold and a controlled or uncontrolled design:
significant in the claimed direction is ``supported`` when the estimate reaches the
threshold and ``below_threshold`` when it does not; significant the other way is
``contradicted``; otherwise ``no_meaningful_effect`` when the equivalence test (TOST, the
threshold as margin) shows the effect lies within the threshold, else ``inconclusive``.
Without a threshold, or for an observational design (an association never shows that an
effect is large enough to matter, nor what caused it): significant in the claimed direction
is ``association_shown``, the other way ``contradicted`` (its note says it is an association
the other way); a test that ran and was not significant is ``no_association_shown`` (not
evidence of absence: without a margin no test can show an effect too small to matter, which
is why a claim with a threshold reaches ``inconclusive`` here unless equivalence is shown).
``inconclusive`` is otherwise kept for fits that cannot be read: a model that could not be
fitted, no variation to test, a non-finite estimate or p-value, or a significant estimate of
exactly zero. ``not_measured`` and ``insufficient_data`` come from the data before any fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from mfr_analysis import config
from mfr_analysis.claim_inputs import (
    CIRCULATION_PREFIXES,
    ClaimInputs,
    SeriesData,
    change_units,
    extract_inputs,
    median_of_counts,
    pool_units,
    prepare,
)
from mfr_analysis.errors import AnalysisError
from mfr_analysis.models import (
    FitFailed,
    ModelResult,
    adjust_pvalues,
    anova_icc,
    clients_needed,
    equal_effects_p,
    fit_gee,
    fit_logit,
    fit_logit_counts,
    fit_mixed,
    fit_ols,
    fit_ols_cluster_sums,
    minimum_detectable_effect,
    recorded_warnings,
    slope_variance,
    slopes_from_sums,
    tost_p,
    wald_equal,
)
from mfr_analysis.tables import categories, load_table

__all__ = [
    "CLAIMS_COLUMNS",
    "DESIGNS",
    "EXTRA_COLUMNS",
    "THRESHOLD_KINDS",
    "VERDICTS",
    "AnalysisError",
    "claim_inputs",
    "claim_registry",
    "decide_verdict",
    "evaluate_claims",
    "evaluate_inputs",
    "literature",
]

VERDICTS: tuple[str, ...] = (
    "supported", "below_threshold", "no_meaningful_effect", "contradicted",
    "association_shown", "no_association_shown",
    "inconclusive", "not_measured", "insufficient_data",
)
DESIGNS: tuple[str, ...] = ("controlled", "uncontrolled", "observational")
THRESHOLD_KINDS: tuple[str, ...] = ("within_person", "between_condition", "none")
ROM_THRESHOLDS = "rom_bounds"  # threshold_key of the per-measure ROM thresholds
CLAIMS_COLUMNS: tuple[str, ...] = (
    "claim_id", "audience_group", "outcome", "estimate", "ci_low", "ci_high", "p_value",
    "p_adjusted", "mcid", "n_clients", "n_sessions", "method", "verdict", "note",
)
EXTRA_COLUMNS: tuple[str, ...] = (
    "unit", "design", "n_control_clients", "threshold_source", "se", "tost_p",
    "responder_share", "responders", "responder_clients", "responders_control",
    "responder_clients_control", "mde", "clients_needed", "heterogeneity_p",
    "literature_effect", "literature_smd", "literature_reference",
)
ALL = "all"
MIXED_MAX_SESSIONS = 5_000
MIXED_SLOPES_MAX_SESSIONS = 1_000
GEE_MAX_SESSIONS = 20_000
CLUSTER_OLS_MAX_SESSIONS = 20_000
MIN_ICC = 0.01
MIN_SLOPE_SHARE = 0.05
POWER = 0.80
UNCONTROLLED_NOTE = ("uncontrolled: {span}, no control group: the change includes placebo, "
                     "expectation and regression to the mean")
SESSION_SPAN = "from before to after a session"
FOLLOWUP_SPAN = "from before a session to its follow-up"


# ---------------------------------------------------------------------------- registry ---

def claim_registry() -> pd.DataFrame:
    """The claims registry (``data/claims.csv``): one row per claim id, in report order.

    Each claim states the threshold its verdict uses (``threshold_key`` into
    ``thresholds.csv``, or ``rom_bounds`` for the per-measure ROM thresholds), its
    ``threshold_kind`` (one of :data:`THRESHOLD_KINDS`) and why (``threshold_rationale``);
    a claim of kind ``none`` states none and reaches association verdicts only.
    """
    registry = load_table("claims")
    problems = [p for _, claim in registry.iterrows() for p in _threshold_problems(claim)]
    if problems:
        raise AnalysisError("claims.csv: " + "; ".join(problems))
    return registry


def _threshold_problems(claim: pd.Series) -> list[str]:
    """What is wrong with the threshold a registry row states (nothing: an empty list)."""
    name, kind, key = claim["claim_id"], claim["threshold_kind"], claim["threshold_key"]
    rationale = claim["threshold_rationale"]
    if kind not in THRESHOLD_KINDS:
        return [f"{name}: threshold_kind {kind!r} is not one of {', '.join(THRESHOLD_KINDS)}"]
    if not (isinstance(rationale, str) and rationale.strip()):
        return [f"{name}: threshold_rationale is empty"]
    if kind == "none":
        return [] if pd.isna(key) else [f"{name}: threshold_kind none with a threshold_key"]
    if key == ROM_THRESHOLDS:
        table, value, source = _rom_table(), "mcid", "mcid_reference"
    elif isinstance(key, str) and key in _thresholds().index:
        table, value, source = _thresholds().loc[[key]], "mcid", "reference"
    else:
        return [f"{name}: threshold_key {key!r} is not in thresholds.csv"]
    if not (table[value].gt(0).all() and table[source].fillna("").str.strip().ne("").all()):
        return [f"{name}: every threshold needs a positive value and a source"]
    return []


def literature() -> pd.DataFrame:
    """Published pooled effects for the overlay (``data/literature.csv``), with references."""
    return load_table("literature")


@cache
def _thresholds() -> pd.DataFrame:
    return load_table("thresholds").set_index("outcome")


@cache
def _associations() -> pd.DataFrame:
    return load_table("associations").set_index("claim_id")


@cache
def _rom_table() -> pd.DataFrame:
    return load_table("rom_bounds").set_index("rom_measure")


# ---------------------------------------------------------------------------- settings ---

@dataclass(frozen=True)
class Settings:
    """Options of one evaluation run."""

    alpha: float
    min_clients: int
    mcid_overrides: Mapping[str, float]


def _validate_options(alpha: float, correction: str, min_clients: int,
                      mcid_overrides: Mapping[str, float] | None) -> dict[str, float]:
    if not (isinstance(alpha, float | int) and 0 < alpha < 1):
        raise AnalysisError(f"alpha must lie between 0 and 1, got {alpha!r}")
    if correction not in ("holm", "fdr_bh"):
        raise AnalysisError(f"correction must be 'holm' or 'fdr_bh', got {correction!r}")
    if not isinstance(min_clients, int | np.integer) or min_clients < 2:
        raise AnalysisError(f"min_clients must be an integer of at least 2, got {min_clients!r}")
    overrides = dict(mcid_overrides or {})
    known = set(claim_registry()["claim_id"]) | set(_rom_table().index) | {
        f"rom:{m}" for m in _rom_table().index} | {"pain_followup"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise AnalysisError(f"unknown MCID override key(s) {', '.join(unknown)}; "
                            f"use a claim id, a rom measure or an outcome such as 'rom:<measure>'")
    registry = claim_registry().set_index("claim_id")
    without = sorted(k for k in overrides if k in registry.index
                     and registry.loc[k, "threshold_kind"] == "none")
    if without:
        raise AnalysisError(f"claim(s) {', '.join(without)} state no threshold (an association "
                            "or a change of unknown unit, see claims.csv): an MCID override "
                            "does not apply")
    for key, value in overrides.items():
        if not (isinstance(value, float | int) and math.isfinite(value) and value > 0):
            raise AnalysisError(f"MCID override {key!r} must be a positive number, got {value!r}")
    return {k: float(v) for k, v in overrides.items()}


def mcid_key_problem(overrides: Mapping[str, float]) -> str:
    """Why some MCID override keys cannot be used with the registry ('' when all can)."""
    known = set(claim_registry()["claim_id"]) | set(_rom_table().index) | {
        f"rom:{m}" for m in _rom_table().index} | {"pain_followup"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        return (f"unknown MCID override key(s) {', '.join(unknown)}; "
                f"use a claim id, a rom measure or an outcome such as 'rom:<measure>'")
    registry = claim_registry().set_index("claim_id")
    without = sorted(k for k in overrides if k in registry.index
                     and registry.loc[k, "threshold_kind"] == "none")
    if without:
        return (f"claim(s) {', '.join(without)} state no threshold (an association "
                "or a change of unknown unit, see claims.csv): an MCID override "
                "does not apply")
    return ""


def _threshold(claim: pd.Series, outcome: str, settings: Settings) -> tuple[float, str]:
    """(MCID, its source) of one outcome: a user override (outcome, measure, claim), else
    the registry's table; (NaN, "") when the claim states no threshold."""
    if claim["threshold_kind"] == "none":
        return math.nan, ""
    overrides = settings.mcid_overrides
    measure = outcome.split(":", 1)[1] if outcome.startswith("rom:") else None
    for key in (outcome, measure, claim["claim_id"]):
        if key is not None and key in overrides:
            return overrides[key], f"set by the user for this run (MCID override {key})"
    if measure is not None:
        if measure not in _rom_table().index:
            return math.nan, ""
        found = _rom_table().loc[measure]
        return float(found["mcid"]), str(found["mcid_reference"])
    key = claim["threshold_key"]
    if isinstance(key, str) and key in _thresholds().index:
        found = _thresholds().loc[key]
        return float(found["mcid"]), str(found["reference"])
    return math.nan, ""


def _mcid_relative(claim: pd.Series) -> float:
    key = claim["threshold_key"]
    if isinstance(key, str) and key in _thresholds().index:
        value = _thresholds().loc[key, "mcid_relative"]
        return float(value) if pd.notna(value) else math.nan
    return math.nan


# ------------------------------------------------------------------------------- cells ---

@dataclass(frozen=True)
class Cell:
    """One audience group, or all sessions (``name == "all"``)."""

    name: str


def _cells(inputs: ClaimInputs, groups: Sequence[str] | None) -> list[Cell]:
    present = list(inputs.groups)
    if groups is None:
        chosen = [g for g in config.AUDIENCE_GROUPS if g in present]
        chosen += sorted(set(present) - set(chosen))
    else:
        chosen = list(dict.fromkeys(g for g in groups if g != ALL))
        unknown = [g for g in chosen if g not in config.AUDIENCE_GROUPS and g not in present]
        if unknown:
            raise AnalysisError(f"unknown audience group(s) {', '.join(unknown)}; known: "
                                f"{', '.join(config.AUDIENCE_GROUPS)}")
    return [Cell(ALL)] + [Cell(g) for g in chosen]


def _limits() -> dict[str, int]:
    """Usable sessions up to which a cell is fitted on sessions, by series kind."""
    return {"change": MIXED_MAX_SESSIONS, "trend": MIXED_SLOPES_MAX_SESSIONS,
            "contrast": CLUSTER_OLS_MAX_SESSIONS, "adverse": GEE_MAX_SESSIONS, "dose": -1}


def _cell_data(series: SeriesData, cell: Cell,
               limit: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(units of the cell, its sessions sorted by client or None when the cell is large)."""
    units = series.units
    if cell.name == ALL:  # a client seen in several groups is one client here
        count = sum(series.counts.values())
        units = pool_units(units.drop(columns="group"))
        rows = series.rows
    else:
        count = series.counts.get(cell.name, 0)
        units = units.loc[units["group"] == cell.name].drop(columns="group")
        units = units.reset_index(drop=True)
        rows = series.rows.loc[series.rows["group"] == cell.name]
    if count > limit:
        return units, None
    return units, rows.sort_values("client_id", kind="stable").reset_index(drop=True)


def _codes(labels: pd.Series) -> np.ndarray:
    """Integer client codes in sorted label order."""
    return pd.factorize(labels, sort=True)[0].astype(np.int64)


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=float)


# ---------------------------------------------------------------------------- cell fits ---


@dataclass(frozen=True)
class HetData:
    """What one cell contributes to the between-group heterogeneity test."""

    y: np.ndarray
    effect: np.ndarray | None
    covariate: np.ndarray | None
    clients: np.ndarray
    kind: Literal["hc1", "cluster", "logit"]
    design: str


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


def _insufficient(n_clients: int, n_sessions: int, min_clients: int, why: str = "") -> CellFit:
    text = why or f"{n_clients} clients with data, fewer than the minimum of {min_clients}"
    return CellFit("insufficient_data", n_clients, n_sessions, notes=(text,))


def _from_estimate(result: ModelResult, term: str, **extra: object) -> CellFit:
    est = result.term(term)
    return CellFit("fit", n_sessions=est.n_obs, estimate=est.estimate, se=est.se,
                   ci_low=est.ci_low, ci_high=est.ci_high, p_value=est.p_value, df=est.df,
                   method=est.method, **extra)  # type: ignore[arg-type]


def _fit_with_fallback(primary: str, fit: Callable[[], ModelResult],
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


def _mixed_or_ols(y: np.ndarray, X: np.ndarray, clients: np.ndarray, names: list[str],
                  settings: Settings, slope: np.ndarray | None = None,
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
    result, fallback = _fit_with_fallback(
        "MixedLM",
        lambda: fit_mixed(y, X, clients, names=names, exog_re=exog_re, start_cov_re=start,
                          alpha=settings.alpha),
        ols)
    return result, (*notes, *fallback)


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean() if x.size else x


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size >= 2 else math.nan


def _responders(values: np.ndarray, mcid: float, direction: int,
                baseline: np.ndarray | None = None,
                relative: float = math.nan) -> tuple[float, float]:
    """(responders, clients): clients whose client-level value passes the MCID (or the
    relative MCID of their baseline) in the claimed direction, out of those with a value.

    Both are NaN when there is no threshold to pass."""
    if not math.isfinite(mcid):
        return math.nan, math.nan
    finite = np.isfinite(values)
    values = values[finite]
    passed = direction * values >= mcid
    if baseline is not None and math.isfinite(relative):
        base = baseline[finite]
        with np.errstate(invalid="ignore"):
            passed |= (direction * values >= relative * np.abs(base)) & (base > 0)
    return float(passed.sum()), float(values.size)


def _responder_fields(values: np.ndarray, control: np.ndarray | None, mcid: float,
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


def _power_fields(values_mfr: np.ndarray, values_ctrl: np.ndarray | None, mcid: float,
                  settings: Settings) -> dict[str, float]:
    """MDE at the current n and clients needed for the MCID, from client-level SDs."""
    if values_ctrl is None or values_ctrl.size == 0:
        sd, ratio, n = _sd(values_mfr), None, values_mfr.size
    else:
        n1, n2 = values_mfr.size, values_ctrl.size
        pooled = ((n1 - 1) * _sd(values_mfr) ** 2 + (n2 - 1) * _sd(values_ctrl) ** 2) \
            / max(n1 + n2 - 2, 1)
        sd, ratio, n = math.sqrt(pooled), n2 / n1, n1
    return {"mde": minimum_detectable_effect(sd, n, alpha=settings.alpha, power=POWER,
                                             ratio=ratio),
            "clients_needed": clients_needed(mcid, sd, alpha=settings.alpha, power=POWER,
                                             ratio=ratio)}


def _se_mde(se: float, df: float, alpha: float) -> float:
    """Normal/t approximation of the minimum detectable effect from a standard error."""
    if not (math.isfinite(se) and se > 0):
        return math.nan
    dist = stats.norm if math.isinf(df) else stats.t(df)
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(POWER)) * se)


def _change_columns(with_pre: bool) -> tuple[str, str, str, str]:
    """Columns of the change units for all usable sessions, or those with a pre value."""
    return ("nb", "syb", "yminb", "ymaxb") if with_pre else ("n", "sy", "ymin", "ymax")


def fit_change_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *, mcid: float,
                     direction: int, relative: float, settings: Settings,
                     span: str = SESSION_SPAN) -> CellFit:
    """Within-session change in one cell: MixedLM on the sessions of a small cell, OLS on
    client means otherwise; ANCOVA against a control arm when there is one."""
    control = units["control"].to_numpy(dtype=bool)
    n_mfr, n_ctrl = int((~control).sum()), int(control.sum())
    controlled = n_ctrl >= settings.min_clients and n_mfr >= settings.min_clients
    notes: list[str] = []
    with_pre = False
    if controlled and units["nb"].sum() > 0:  # compare sessions that have a pre value
        with_pre = True
        units = units.loc[units["nb"] > 0]
        if sessions is not None:
            sessions = sessions.loc[np.isfinite(_col(sessions, "pre"))]
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
    n_col, sum_col, min_col, max_col = _change_columns(with_pre)
    counts = _col(units, n_col)
    n_sessions = int(counts.sum())
    n_clients = int(units["client_id"].nunique())
    if n_clients < settings.min_clients:
        return _insufficient(n_clients, n_sessions, settings.min_clients)
    unit_y = _col(units, sum_col) / counts
    with_pre_counts = _col(units, "nb")
    has_pre = n_sessions > 0 and int(with_pre_counts.sum()) == n_sessions
    unit_pre = None
    if with_pre_counts.sum() > 0:
        with np.errstate(invalid="ignore", divide="ignore"):
            unit_pre = np.where(with_pre_counts > 0,
                                _col(units, "spre") / np.maximum(with_pre_counts, 1), np.nan)
    unit_ctrl = units["control"].to_numpy(dtype=bool)
    baseline_sd = _sd(unit_pre[np.isfinite(unit_pre)]) if unit_pre is not None else math.nan
    responders = _responder_fields(unit_y, unit_ctrl if controlled else None, mcid, direction,
                                   unit_pre, relative)
    power = _power_fields(unit_y[~unit_ctrl], unit_y[unit_ctrl] if controlled else None,
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
    het_cov = _centre(unit_pre) if (controlled and has_pre) else None
    het = HetData(unit_y, (~unit_ctrl).astype(float) if controlled else None, het_cov,
                  _codes(units["client_id"]), "hc1", design)
    low, high = float(_col(units, min_col).min()), float(_col(units, max_col).max())
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
    if sessions is not None:
        y, pre = _col(sessions, "y"), _col(sessions, "pre")
        mfr_flag = (~sessions["control"].to_numpy(dtype=bool)).astype(float)
        columns = [np.ones(len(y))] + ([mfr_flag] if controlled else []) + (
            [_centre(pre)] if controlled and has_pre else [])
        result, fallback_notes = _mixed_or_ols(y, np.column_stack(columns),
                                               _codes(sessions["client_id"]), names, settings)
        fit = _from_estimate(result, term, notes=(*notes, *fallback_notes), het=het, **extra)
        return replace(fit, method=f"{fit.method}: {label}")
    # large cell: one row per client (and arm), OLS on client means
    if controlled:
        Xc = np.column_stack([np.ones(len(unit_y)), (~unit_ctrl).astype(float)]
                             + ([_centre(unit_pre)] if has_pre else []))
        result = fit_ols(unit_y, Xc, names=names, cov_type="HC1", alpha=settings.alpha)
    else:
        result = fit_ols(unit_y, np.ones((len(unit_y), 1)), names=names,
                         alpha=settings.alpha)
    warn = (f"OLS warned: {' | '.join(result.warnings)}",) if result.warnings else ()
    fit = _from_estimate(result, term, notes=(*notes, *warn), het=het, **extra)
    return replace(fit, n_sessions=n_sessions, method=(
        f"client-level {result.method} on per-client means: {label} "
        f"(cell above {MIXED_MAX_SESSIONS:,} sessions)"))


def _session_frame(clients: np.ndarray, control: np.ndarray, **values: np.ndarray,
                   ) -> pd.DataFrame:
    """A one-cell session frame from arrays (for the array-based fit functions)."""
    labels = pd.Series(np.asarray(clients, dtype=np.int64)).astype("str").str.zfill(12)
    return pd.DataFrame({"group": "", "client_id": labels.to_numpy(),
                         "control": np.asarray(control, dtype=bool), **values})


def fit_change_cell(y: np.ndarray, pre: np.ndarray, clients: np.ndarray,
                    control: np.ndarray, *, mcid: float, direction: int, relative: float,
                    settings: Settings) -> CellFit:
    """:func:`fit_change_units` on session arrays of one cell (clients as integer codes)."""
    frame = _session_frame(clients, control, y=y, pre=pre)
    units = change_units(frame).drop(columns="group")
    sessions = frame if len(frame) <= MIXED_MAX_SESSIONS else None
    return fit_change_units(units, sessions, mcid=mcid, direction=direction,
                            relative=relative, settings=settings)


def fit_trend_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *,
                    mcid_points: float, direction: int, settings: Settings) -> CellFit:
    """Pre-session pain over weeks: random-slope MixedLM on the sessions of a small cell,
    per-client slopes otherwise; the arm x weeks interaction against a control arm."""
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
        notes.append("uncontrolled: pre-session pain over the weeks, no control group: the "
                     "trend includes natural recovery and regression to the mean")
    n_clients = int(units["client_id"].nunique())
    n_sessions = int(_col(units, "n").sum())
    ok, slopes = slopes_from_sums(*(_col(units, c) for c in ("n", "sw", "sy", "sww", "swy")))
    with_slope = units.loc[ok]
    unit_ctrl = with_slope["control"].to_numpy(dtype=bool)
    n_slopes = int(with_slope["client_id"].nunique())
    if n_clients < settings.min_clients or n_slopes < settings.min_clients:
        why = "" if n_clients < settings.min_clients else (
            f"only {n_slopes} clients have pre-session pain in more than one week "
            f"(minimum {settings.min_clients})")
        return _insufficient(n_clients, n_sessions, settings.min_clients, why)
    horizon = float(np.median(_col(with_slope, "wmax")))
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
             **_responder_fields(slopes, unit_ctrl if controlled else None, mcid, direction),
             **_power_fields(slopes[~unit_ctrl], slopes[unit_ctrl] if controlled else None,
                             mcid, settings)}
    het = HetData(slopes, (~unit_ctrl).astype(float) if controlled else None, None,
                  _codes(with_slope["client_id"]), "hc1", design)
    if float(_col(units, "ymin").min()) == float(_col(units, "ymax").max()):
        return CellFit("degenerate", n_clients, n_sessions, estimate=0.0, het=None,
                       notes=(*notes, "pre-session pain never changes: no test possible"),
                       **{k: v for k, v in extra.items() if k != "n_clients"})
    if controlled:
        names, term = ["intercept", "weeks", "mfr", "mfr_x_weeks"], "mfr_x_weeks"
        label = "pain_pre ~ weeks * arm"
    else:
        names, term, label = ["intercept", "weeks"], "weeks", "pain_pre ~ weeks"
    if sessions is not None:
        y, w = _col(sessions, "y"), _col(sessions, "weeks")
        mfr_flag = (~sessions["control"].to_numpy(dtype=bool)).astype(float)
        X = np.column_stack([np.ones(len(y)), w] + ([mfr_flag, mfr_flag * w] if controlled
                                                     else []))
        result, fallback_notes = _mixed_or_ols(y, X, _codes(sessions["client_id"]), names,
                                               settings, slope=w)
        fit = _from_estimate(result, term, notes=(*notes, *fallback_notes), het=het, **extra)
        return replace(fit, method=f"{fit.method}: {label}")
    if controlled:
        Xc = np.column_stack([np.ones(len(slopes)), (~unit_ctrl).astype(float)])
        result = fit_ols(slopes, Xc, names=["intercept", term], cov_type="HC1",
                         alpha=settings.alpha)
    else:
        result = fit_ols(slopes, np.ones((len(slopes), 1)), names=[term], alpha=settings.alpha)
    warn = (f"OLS warned: {' | '.join(result.warnings)}",) if result.warnings else ()
    fit = _from_estimate(result, term, notes=(*notes, *warn), het=het, **extra)
    return replace(fit, n_sessions=n_sessions, method=(
        f"two-stage: per-client OLS slopes, then {result.method} on {len(slopes)} client "
        f"slopes (cell above {MIXED_SLOPES_MAX_SESSIONS:,} sessions)"))


_CONTRAST_WITH_PRE = {"n": "nb", "sl": "slb", "sy": "syb", "sly": "slyb", "ymin": "yminb",
                      "ymax": "ymaxb"}


def _contrast_sums(units: pd.DataFrame, has_pre: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-client X'X and X'y of ``change ~ level (+ centred pre)`` from the unit sums."""
    n, sl, sy, sly = (_col(units, c) for c in ("n", "sl", "sy", "sly"))
    if not has_pre:
        xtx = np.stack([np.stack([n, sl], -1), np.stack([sl, sl], -1)], -2)
        return xtx, np.stack([sy, sly], -1)
    sp, slp, spp, spy = (_col(units, c) for c in ("sp", "slp", "spp", "spy"))
    c = sp.sum() / n.sum()  # the cell's mean pre value, as _centre does on sessions
    p, lp, pp = sp - n * c, slp - c * sl, spp - 2 * c * sp + n * c * c
    xtx = np.stack([np.stack([n, sl, p], -1), np.stack([sl, sl, lp], -1),
                    np.stack([p, lp, pp], -1)], -2)
    return xtx, np.stack([sy, sly, spy - c * sy], -1)


def fit_contrast_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *, adjust: bool,
                       names: tuple[str, str], factor: str, settings: Settings) -> CellFit:
    """Difference in change between two levels of a session factor, cluster-robust OLS (on
    the sessions of a small cell, from per-client cross-products of a large one)."""
    if adjust:
        units = units.loc[units["nb"] > 0].drop(columns=list(_CONTRAST_WITH_PRE))
        units = units.rename(columns={v: k for k, v in _CONTRAST_WITH_PRE.items()})
        if sessions is not None:
            sessions = sessions.loc[np.isfinite(_col(sessions, "pre"))]
    n, sl = _col(units, "n"), _col(units, "sl")
    n_clients, n_sessions = len(units), int(n.sum())
    n_level, n_ref = int((sl > 0).sum()), int((n - sl > 0).sum())
    if min(n_level, n_ref) < settings.min_clients:
        why = (f"{n_level} clients with {names[0]} sessions and {n_ref} with {names[1]} "
               f"sessions; each needs at least {settings.min_clients}")
        return _insufficient(n_clients, n_sessions, settings.min_clients, why)
    has_pre = adjust and n_sessions > 0
    notes = [f"observational comparison of MFR sessions ({factor} = {names[0]} minus "
             f"{factor} = {names[1]})" + (", adjusted for the pre-session value" if has_pre
                                          else "") + "; not randomised"]
    # the heterogeneity of session-level contrasts compares the group estimates (Q test)
    het = HetData(np.zeros(0), None, None, np.zeros(0, dtype=np.int64), "cluster",
                  "observational")
    if float(_col(units, "ymin").min()) == float(_col(units, "ymax").max()):
        return CellFit("degenerate", n_clients, n_sessions, estimate=0.0, design="observational",
                       notes=(*notes, "every change is the same: no test possible"))
    labels = ["intercept", "level"] + (["pre"] if has_pre else [])
    label = f"change ~ {factor} + pre" if has_pre else f"change ~ {factor}"
    if sessions is not None:
        y, level = _col(sessions, "y"), _col(sessions, "level")
        X = np.column_stack([np.ones(len(y)), level]
                            + ([_centre(_col(sessions, "pre"))] if has_pre else []))
        result = fit_ols(y, X, names=labels, clients=_codes(sessions["client_id"]),
                         cov_type="cluster", alpha=settings.alpha)
        method = result.method
    else:
        xtx, xty = _contrast_sums(units, has_pre)
        result = fit_ols_cluster_sums(xtx, xty, n_sessions, names=labels, alpha=settings.alpha)
        method = (f"{result.method}, from per-client sums (cell above "
                  f"{CLUSTER_OLS_MAX_SESSIONS:,} sessions)")
    warn = (f"OLS warned: {' | '.join(result.warnings)}",) if result.warnings else ()
    fit = _from_estimate(result, "level", n_clients=n_clients, design="observational",
                         notes=(*notes, *warn), het=het)
    return replace(fit, method=f"{method}: {label}", mde=_se_mde(fit.se, fit.df, settings.alpha))


def fit_dose_units(units: pd.DataFrame, sessions: pd.DataFrame | None = None, *,
                   settings: Settings) -> CellFit:
    """Client-level OLS of each client's pain slope over weeks on sessions per week."""
    n = _col(units, "n")
    n_clients, n_sessions = int(units["client_id"].nunique()), int(n.sum())
    ok, slopes = slopes_from_sums(n, *(_col(units, c) for c in ("sw", "sy", "sww", "swy")))
    if slopes.size < settings.min_clients:
        why = (f"only {slopes.size} clients have pre-session pain in more than one week "
               f"(minimum {settings.min_clients})")
        return _insufficient(n_clients, n_sessions, settings.min_clients, why)
    dose = _col(units, "sspw")[ok] / n[ok]
    notes = ["client-level: each client's pre-session pain slope (points/week) regressed on "
             "sessions per week; observational, clients choose their frequency",
             "estimate = change in weekly pain slope per extra session per week"]
    het = HetData(slopes, _centre(dose), None, _codes(units["client_id"])[ok], "hc1",
                  "observational")
    if np.ptp(dose) == 0 or np.ptp(slopes) == 0:
        return CellFit("degenerate", n_clients, n_sessions, design="observational",
                       notes=(*notes, "sessions per week or the pain slopes do not vary: "
                              "no test possible"))
    X = np.column_stack([np.ones(slopes.size), dose])
    result = fit_ols(slopes, X, names=["intercept", "sessions_per_week"], cov_type="HC1",
                     alpha=settings.alpha)
    warn = (f"OLS warned: {' | '.join(result.warnings)}",) if result.warnings else ()
    fit = _from_estimate(result, "sessions_per_week", n_clients=int(slopes.size),
                         design="observational", notes=(*notes, *warn), het=het)
    return replace(fit, n_sessions=n_sessions,
                   method=f"client-level {result.method}: client pain slope ~ sessions/week",
                   mde=_se_mde(fit.se, fit.df, settings.alpha))


def fit_adverse_units(units: pd.DataFrame, sessions: pd.DataFrame | None, *,
                      settings: Settings) -> CellFit:
    """Odds ratio of any adverse event per pressure point: logistic GEE on the sessions of a
    small cell, logistic regression on per-client counts by pressure otherwise."""
    trials, events = _col(units, "n"), _col(units, "events")
    n_clients, n_sessions = int(units["client_id"].nunique()), int(trials.sum())
    if n_clients < settings.min_clients:
        return _insufficient(n_clients, n_sessions, settings.min_clients)
    notes = ["odds ratio of any adverse event per extra pressure point; observational"]
    n_events = int(events.sum())
    pressure = _col(units, "pressure")
    if n_events == 0 or n_events == n_sessions or np.ptp(pressure) == 0:
        why = (f"{n_events} adverse events in {n_sessions} sessions" if np.ptp(pressure) > 0
               else "pressure does not vary")
        return CellFit("degenerate", n_clients, n_sessions, design="observational",
                       log_scale=True, notes=(*notes, f"{why}: no test possible"))
    het = HetData(np.zeros(0), None, None, np.zeros(0, dtype=np.int64), "logit",
                  "observational")
    names = ["intercept", "pressure"]
    if sessions is not None:
        y, x = _col(sessions, "events"), _col(sessions, "pressure")
        X, clients = np.column_stack([np.ones(len(y)), x]), _codes(sessions["client_id"])
        result, fallback_notes = _fit_with_fallback(
            "GEE",
            lambda: fit_gee(y, X, clients, names=names, family="binomial",
                            alpha=settings.alpha),
            lambda: fit_logit(y, X, clients, names=names, alpha=settings.alpha))
        method = result.method
    else:
        X = np.column_stack([np.ones(len(units)), pressure])
        result = fit_logit_counts(events, trials, X, _codes(units["client_id"]), names=names,
                                  alpha=settings.alpha)
        fallback_notes = (f"logistic regression warned: {' | '.join(result.warnings)}",) \
            if result.warnings else ()
        method = (f"{result.method}, from per-client counts by pressure (cell above "
                  f"{GEE_MAX_SESSIONS:,} sessions)")
    fit = _from_estimate(result, "pressure", n_clients=n_clients, design="observational",
                         log_scale=True, het=het,
                         notes=(*notes, f"{n_events} adverse events", *fallback_notes))
    return replace(fit, method=f"{method}: any adverse event ~ pressure")



def _guarded(fit_cell: Callable[..., CellFit], *args: Any, **kwargs: Any) -> CellFit:
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


# ------------------------------------------------------------------------ heterogeneity ---

def heterogeneity(parts: Sequence[HetData], alpha: float = 0.05) -> tuple[float, str]:
    """Wald test that the claim's effect is equal across audience groups (p, method)."""
    if len(parts) < 2:
        return math.nan, "fewer than two groups with enough clients"
    kind = parts[0].kind
    y = np.concatenate([p.y for p in parts])
    g = np.concatenate([np.full(len(p.y), i) for i, p in enumerate(parts)])
    dummies = (g[:, None] == np.arange(len(parts))[None, :]).astype(float)
    columns, names = [dummies], [f"group{i}" for i in range(len(parts))]
    tested = list(names)
    if parts[0].effect is not None:
        effect = np.concatenate([p.effect for p in parts])  # type: ignore[misc]
        columns.append(dummies * effect[:, None])
        tested = [f"effect{i}" for i in range(len(parts))]
        names += tested
    if parts[0].covariate is not None:
        columns.append(np.concatenate([p.covariate for p in parts])[:, None])  # type: ignore[misc]
        names.append("covariate")
    X = np.column_stack(columns)
    clients = np.concatenate([p.clients for p in parts])
    try:
        if kind == "logit":
            result = fit_logit(y, X, clients, names=names, alpha=alpha)
        elif kind == "cluster":
            result = fit_ols(y, X, names=names, clients=clients, cov_type="cluster",
                             alpha=alpha)
        else:
            result = fit_ols(y, X, names=names, cov_type="HC1", alpha=alpha)
        p = wald_equal(result, tested)
    except (FitFailed, np.linalg.LinAlgError, ValueError) as error:
        return math.nan, f"heterogeneity test failed: {error}"
    return p, f"Wald test of group differences ({result.method})"


# ------------------------------------------------------------------------------- claims ---

@dataclass
class Job:
    """Shared state of one evaluation run."""

    inputs: ClaimInputs
    cells: list[Cell]
    settings: Settings


def _fits(job: Job, key: str, fit_cell: Callable[..., CellFit],
          **kwargs: Any) -> list[tuple[Cell, CellFit]]:
    """Fit one series in every cell, each cell on its sessions or on its client sums."""
    series = job.inputs.series[key]
    limit = job.inputs.limits[series.kind]
    fits = []
    for cell in job.cells:
        units, sessions = _cell_data(series, cell, limit)
        fit = _guarded(fit_cell, units, sessions, settings=job.settings, **kwargs)
        if fit.status == "degenerate" and not fit.design:  # the model failed
            fit = replace(fit, design=_intended_design(series.kind, units,
                                                       job.settings.min_clients))
        fits.append((cell, fit))
    return fits


def _intended_design(kind: str, units: pd.DataFrame, min_clients: int) -> str:
    """The design a cell's model has (for a failed fit, the one it was meant to have)."""
    if kind not in ("change", "trend"):
        return "observational"
    control = units["control"].to_numpy(dtype=bool)
    arms = min(int(control.sum()), int((~control).sum()))
    return "controlled" if arms >= min_clients else "uncontrolled"



def _rows_for(claim: pd.Series, outcome: str, fits: Sequence[tuple[Cell, CellFit]],
              *, unit: str, mcid: float, source: str, direction: int,
              alpha: float) -> list[dict]:
    """Rows of one claim outcome over all cells, with heterogeneity attached."""
    fitted = [(c, f) for c, f in fits if c.name != ALL and f.status == "fit" and f.het]
    pooled = next((f for c, f in fits if c.name == ALL), None)
    design = pooled.design if pooled is not None else ""
    same = [f for _, f in fitted if f.het is not None and f.het.design == design]
    if len(same) < 2:
        het_p, het_method = math.nan, "not testable (fewer than two groups with enough clients)"
    elif same[0].het.kind in ("cluster", "logit"):  # type: ignore[union-attr]
        het_p = equal_effects_p([f.estimate for f in same], [f.se for f in same])
        het_method = "Wald test that the group estimates are equal (Cochran's Q)"
    else:
        het_p, het_method = heterogeneity([f.het for f in same], alpha)  # type: ignore[misc]
    rows = []
    for cell, fit in fits:
        notes = list(fit.notes)
        if cell.name == ALL and len(fits) > 1 and fit.status == "fit":
            notes.append(f"heterogeneity across groups: {het_method}" + (
                f", p = {het_p:.3g}" if math.isfinite(het_p) else ""))
        elif cell.name != ALL and fit.status == "fit":
            if not math.isfinite(het_p):
                notes.append("group differences could not be tested; read this row with the "
                             "pooled one")
            elif het_p >= alpha:
                notes.append(f"groups do not differ detectably (heterogeneity p = {het_p:.2g}):"
                             " a group-specific effect is not shown, prefer the pooled row")
            else:
                notes.append(f"groups differ (heterogeneity p = {het_p:.2g})")
        row_mcid = fit.mcid if math.isfinite(fit.mcid) else mcid
        rows.append(_row(claim, cell.name, outcome, fit, notes=notes, unit=unit,
                         mcid=row_mcid, source=source, direction=direction,
                         het_p=het_p if cell.name == ALL else math.nan))
    return rows


def _row(claim: pd.Series, group: str, outcome: str, fit: CellFit, *, notes: Sequence[str],
         unit: str, mcid: float, source: str, direction: int, het_p: float) -> dict:
    """One claims-table row (with the internal fields needed for the verdict)."""
    estimate, low, high = fit.estimate, fit.ci_low, fit.ci_high
    if fit.log_scale:
        # a log-odds beyond +-700 (separation in a tiny cell) has no finite odds ratio
        estimate, low, high = (math.exp(v) if math.isfinite(v) and abs(v) < 700 else math.nan
                               for v in (estimate, low, high))
    tost = tost_p(fit.estimate, fit.se, mcid, fit.df) if fit.status == "fit" else math.nan
    share = (fit.responders / fit.responder_clients if fit.responder_clients > 0
             else math.nan)
    return {
        "claim_id": claim["claim_id"], "audience_group": group, "outcome": outcome,
        "estimate": estimate, "ci_low": low, "ci_high": high, "p_value": fit.p_value,
        "p_adjusted": math.nan, "mcid": mcid, "n_clients": fit.n_clients,
        "n_sessions": fit.n_sessions, "method": fit.method, "verdict": "",
        "note": "; ".join(dict.fromkeys(n for n in notes if n)),
        "unit": unit, "design": fit.design, "n_control_clients": fit.n_control_clients,
        "threshold_source": source if math.isfinite(mcid) else "", "se": fit.se,
        "tost_p": tost, "responder_share": share, "responders": fit.responders,
        "responder_clients": fit.responder_clients,
        "responders_control": fit.responders_control,
        "responder_clients_control": fit.responder_clients_control, "mde": fit.mde,
        "clients_needed": fit.clients_needed, "heterogeneity_p": het_p,
        "_status": "fit" if fit.status == "fit" else (
            fit.status if fit.status in ("insufficient_data", "not_measured")
            else "inconclusive"),
        "_effect": fit.estimate, "_direction": direction, "_sd_baseline": fit.sd_baseline,
    }


def _not_measured(job: Job, claim: pd.Series, outcome: str, why: str) -> list[dict]:
    fit = CellFit("not_measured", notes=(why,))
    return [_row(claim, cell.name, outcome, fit, notes=fit.notes, unit=str(claim["unit"]),
                 mcid=math.nan, source="", direction=int(claim["direction"]), het_p=math.nan)
            for cell in job.cells]


def _change_claim(job: Job, claim: pd.Series, outcome: str, *, unit: str,
                  span: str = SESSION_SPAN) -> list[dict]:
    direction, settings = int(claim["direction"]), job.settings
    mcid, source = _threshold(claim, outcome, settings)
    relative = _mcid_relative(claim) if outcome == claim["outcome"] else math.nan
    fits = _fits(job, f"change:{outcome}", fit_change_units, mcid=mcid, direction=direction,
                 relative=relative, span=span)
    return _rows_for(claim, outcome, fits, unit=unit, mcid=mcid, source=source,
                     direction=direction, alpha=settings.alpha)


def _claim_change(job: Job, claim: pd.Series) -> list[dict]:
    outcome = str(claim["outcome"])
    if outcome == "circulation":
        return _claim_circulation(job, claim)
    if f"change:{outcome}" not in job.inputs.series:
        return _not_measured(job, claim, outcome,
                             f"no {outcome}_pre/{outcome}_post (or {outcome}_change) values")
    return _change_claim(job, claim, outcome, unit=str(claim["unit"]))


def _claim_circulation(job: Job, claim: pd.Series) -> list[dict]:
    found = job.inputs.circulation
    prefixes = sorted(k[len("change:"):] for k in job.inputs.series
                      if k.startswith(tuple(f"change:{p}" for p in CIRCULATION_PREFIXES)))
    if not prefixes:
        why = ("no circulation or blood-flow measure in the logs" if not found else
               f"column(s) {', '.join(found)} found but no *_pre/*_post pair to compare")
        return _not_measured(job, claim, "circulation", why)
    rows = []
    for prefix in prefixes:
        rows += _change_claim(job, claim, prefix, unit="measure unit")
    return rows


def _claim_rom(job: Job, claim: pd.Series) -> list[dict]:
    inputs = job.inputs
    if "rom_change" not in inputs.present:
        return _not_measured(job, claim, "rom", "no rom_pre/rom_post (or rom_change) values")
    if not inputs.rom_measured:
        return _not_measured(job, claim, "rom", "rom values without rom_measure: the unit and "
                             "the MCID are unknown")
    present = {k[len("change:rom:"):] for k in inputs.series if k.startswith("change:rom:")}
    known = list(categories("rom_measure"))
    measures = [m for m in known if m in present] + sorted(present - set(known))
    if not measures:
        return _not_measured(job, claim, "rom", "no rom value has a rom_measure")
    rows = []
    for measure in measures:
        unit = str(_rom_table().loc[measure, "unit"]) if measure in _rom_table().index else ""
        rows += _change_claim(job, claim, f"rom:{measure}", unit=unit)
    return rows


def _claim_trajectory(job: Job, claim: pd.Series) -> list[dict]:
    inputs, settings = job.inputs, job.settings
    direction = int(claim["direction"])
    rows: list[dict] = []
    mcid_points, source = _threshold(claim, str(claim["claim_id"]), settings)
    if "trend" in inputs.series:
        fits = _fits(job, "trend", fit_trend_units, mcid_points=mcid_points,
                     direction=direction)
        per_week = f"{source}; {mcid_points:g} points spread over the median span of weeks"
        rows += _rows_for(claim, "pain_pre", fits, unit=str(claim["unit"]),
                          mcid=math.nan, source=per_week if source else "",
                          direction=direction, alpha=settings.alpha)
    else:
        rows += _not_measured(job, claim, "pain_pre",
                              "needs pain_pre and weeks_since_start")
    if "change:pain_followup" in inputs.series:
        followup_rows = _change_claim(job, claim, "pain_followup", unit="points",
                                      span=FOLLOWUP_SPAN)
        median = median_of_counts(inputs.followup_hours)
        if math.isfinite(median):
            for row in followup_rows:
                row["note"] = "; ".join(filter(None, [
                    f"follow-up pain minus pre-session pain, median {median:g} h after the "
                    "session", row["note"]]))
        rows += followup_rows
    return rows


def _claim_contrast(job: Job, claim: pd.Series) -> list[dict]:
    inputs, settings = job.inputs, job.settings
    outcome, factor = str(claim["outcome"]), str(claim["factor"])
    key = f"contrast:{claim['claim_id']}"
    if f"{outcome}_change" not in inputs.present:
        return _not_measured(job, claim, outcome, f"no {outcome} change values")
    if key not in inputs.series:
        return _not_measured(job, claim, outcome, f"no {factor} values")
    adjust = bool(inputs.series[key].units["nb"].sum() > 0)
    names = (str(claim["level"]), str(claim["reference_level"]))
    fits = _fits(job, key, fit_contrast_units, adjust=adjust, names=names, factor=factor)
    mcid, source = _threshold(claim, str(claim["claim_id"]), settings)
    return _rows_for(claim, outcome, fits, unit=str(claim["unit"]), mcid=mcid, source=source,
                     direction=int(claim["direction"]), alpha=settings.alpha)


def _claim_dose(job: Job, claim: pd.Series) -> list[dict]:
    if "dose" not in job.inputs.series:
        return _not_measured(job, claim, "pain_pre",
                             "needs pain_pre, weeks_since_start and sessions_per_week")
    fits = _fits(job, "dose", fit_dose_units)
    mcid, source = _threshold(claim, str(claim["claim_id"]), job.settings)
    return _rows_for(claim, "pain_pre", fits, unit=str(claim["unit"]), mcid=mcid,
                     source=source, direction=int(claim["direction"]),
                     alpha=job.settings.alpha)


def _claim_adverse(job: Job, claim: pd.Series) -> list[dict]:
    if "adverse" not in job.inputs.series:
        return _not_measured(job, claim, "adverse_event", "needs adverse_event and pressure")
    fits = _fits(job, "adverse", fit_adverse_units)
    mcid, source = _threshold(claim, str(claim["claim_id"]), job.settings)
    return _rows_for(claim, "adverse_event", fits, unit=str(claim["unit"]), mcid=mcid,
                     source=source, direction=int(claim["direction"]),
                     alpha=job.settings.alpha)


ANALYSES = {
    "change": _claim_change,
    "change_per_measure": _claim_rom,
    "trajectory": _claim_trajectory,
    "contrast": _claim_contrast,
    "dose": _claim_dose,
    "adverse": _claim_adverse,
}



# ---------------------------------------------------------------------------- verdicts ---

def decide_verdict(status: str, p_adjusted: float, effect: float, direction: int,
                   mcid: float, tost: float, *, design: str, alpha: float = 0.05) -> str:
    """The verdict of one row (see the module docstring, "Verdicts").

    ``status`` is ``fit`` for a model that ran (anything else that is not ``not_measured``
    or ``insufficient_data`` could not be interpreted), ``effect`` the signed estimate on
    the model's scale (log odds for odds ratios), ``direction`` the claimed sign, ``mcid``
    the threshold the registry states (NaN: none) and ``tost`` the equivalence p-value.

    >>> decide_verdict("fit", 0.001, -3.0, -1, 2.0, 0.9, design="uncontrolled")
    'supported'
    >>> decide_verdict("fit", 0.001, -0.8, -1, math.nan, math.nan, design="observational")
    'association_shown'
    >>> decide_verdict("fit", 0.4, -0.1, -1, math.nan, math.nan, design="observational")
    'no_association_shown'
    """
    if status in ("not_measured", "insufficient_data"):
        return status
    if status != "fit" or not (math.isfinite(p_adjusted) and math.isfinite(effect)):
        return "inconclusive"
    # a size is judged only against a stated threshold, and never for an association
    judged = math.isfinite(mcid) and mcid > 0 and design in ("controlled", "uncontrolled")
    if p_adjusted < alpha:
        if effect == 0:
            return "inconclusive"
        if np.sign(effect) != direction:
            return "contradicted"
        if not judged:
            return "association_shown"
        return "below_threshold" if abs(effect) < mcid else "supported"
    if not judged:
        return "no_association_shown"
    if math.isfinite(tost) and tost < alpha:
        return "no_meaningful_effect"
    return "inconclusive"


_NOUN = {"uncontrolled": "a change", "controlled": "a difference from control clients"}


def _verdict_notes(table: pd.DataFrame) -> list[str]:
    """Notes led by what the verdict means where it is an association or goes the other way.

    Observational rows say what went with what and that this does not show a cause (words
    from ``data/associations.csv``); a claim without a threshold that goes the other way
    says so."""
    words = _associations()
    notes = []
    for claim_id, verdict, design, effect, mcid, note in zip(
            table["claim_id"], table["verdict"], table["design"], table["_effect"],
            table["mcid"], table["note"], strict=True):
        lead = ""
        if design == "observational" and claim_id in words.index:
            said = words.loc[claim_id]
            side = said["lower"] if effect < 0 else said["higher"]
            if verdict == "association_shown":
                lead = f"association: {side}; {said['caveat']}"
            elif verdict == "contradicted":
                lead = f"an association the other way from the claim: {side}; {said['caveat']}"
            elif verdict == "no_association_shown":
                lead = (f"no association shown: {said['none']} (this does not show that there "
                        "is none)")
        elif verdict == "contradicted" and not math.isfinite(mcid):
            lead = f"{_NOUN.get(design, 'a difference')} the other way from the claim"
        elif verdict == "association_shown":
            lead = (f"{_NOUN.get(design, 'a difference')} in the claimed direction; the claim "
                    "states no threshold, so its size is not judged")
        elif verdict == "no_association_shown":
            lead = (f"no {_NOUN.get(design, 'a difference')[2:]} shown; this does not show "
                    "that there is none")
        notes.append("; ".join(filter(None, [lead, note])))
    return notes


def _literature_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Published effect per row: SMD, the SMD in the row's unit, and the references."""
    lit = literature()
    smd, effect, refs = [], [], []
    keys = zip(table["claim_id"], table["audience_group"], table["outcome"],
               table["_sd_baseline"], strict=True)
    for claim_id, group, outcome, sd in keys:
        outcome = "rom" if str(outcome).startswith("rom:") else outcome
        match = lit.loc[(lit["claim_id"] == claim_id) & (lit["outcome"] == outcome)]
        own = match.loc[match["audience_group"] == group]
        general = match.loc[match["audience_group"] == ALL]
        chosen = pd.concat([own, general]) if group != ALL else general
        overlay = chosen.loc[chosen["overlay"].astype(str).str.lower() == "true"]
        value = float(overlay["smd_signed"].iloc[0]) if len(overlay) else math.nan
        smd.append(value)
        effect.append(value * sd if math.isfinite(value) and math.isfinite(sd) else math.nan)
        refs.append(" | ".join(f"{r.reference}: {r.comparison} ({r.population}); {r.summary}"
                               if pd.isna(r.effect) else
                               f"{r.reference}: {r.measure} {r.effect:g}"
                               + (f" ({r.ci_low:g} to {r.ci_high:g})"
                                  if pd.notna(r.ci_low) and pd.notna(r.ci_high) else "")
                               + f", {r.comparison} ({r.population})"
                               for r in chosen.itertuples()) or "")
    return table.assign(literature_effect=effect, literature_smd=smd,
                        literature_reference=refs)


def _finish(rows: list[dict], settings: Settings, correction: str) -> pd.DataFrame:
    """Multiplicity, verdicts, literature overlay and the final column order and types."""
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust_pvalues(table["p_value"], correction, settings.alpha)
    table["verdict"] = [
        decide_verdict(s, p, e, d, m, t, design=g, alpha=settings.alpha)
        for s, p, e, d, m, t, g in zip(table["_status"], table["p_adjusted"],
                                       table["_effect"], table["_direction"], table["mcid"],
                                       table["tost_p"], table["design"], strict=True)]
    table["note"] = _verdict_notes(table)
    table = _literature_columns(table)
    table = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    floats = ["estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "mcid", "se", "tost_p",
              "responder_share", "responders", "responder_clients", "responders_control",
              "responder_clients_control", "mde", "clients_needed", "heterogeneity_p",
              "literature_effect", "literature_smd"]
    texts = ["claim_id", "audience_group", "outcome", "method", "verdict", "note", "unit",
             "design", "threshold_source", "literature_reference"]
    table = table.astype({**dict.fromkeys(floats, "float64"), **dict.fromkeys(texts, "str"),
                          "n_clients": "int64", "n_sessions": "int64",
                          "n_control_clients": "int64"})
    return table[list(CLAIMS_COLUMNS + EXTRA_COLUMNS)].reset_index(drop=True)


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in CLAIMS_COLUMNS + EXTRA_COLUMNS})

def claim_inputs(sessions: pd.DataFrame) -> ClaimInputs:
    """What the claims models need from a derived session table (see :mod:`claim_inputs`)."""
    return extract_inputs(prepare(sessions), claim_registry(), _limits())


def evaluate_inputs(
    inputs: ClaimInputs,
    *,
    alpha: float = 0.05,
    correction: Literal["holm", "fdr_bh"] = "holm",
    min_clients: int = config.MIN_CLIENTS_PER_CELL,
    mcid_overrides: Mapping[str, float] | None = None,
    groups: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """The claims table from :func:`claim_inputs` (or the combined inputs of partitions)."""
    overrides = _validate_options(alpha, correction, min_clients, mcid_overrides)
    settings = Settings(float(alpha), int(min_clients), overrides)
    job = Job(inputs, _cells(inputs, groups), settings)
    registry = claim_registry()
    rows: list[dict] = []
    with tqdm(total=len(registry), desc="claims", unit="claim", disable=not progress,
              leave=False) as bar:
        for _, claim in registry.iterrows():
            bar.set_postfix_str(str(claim["claim_id"]))
            rows += ANALYSES[str(claim["analysis"])](job, claim)
            bar.update()
    return _finish(rows, settings, correction) if rows else _empty_table()


def evaluate_claims(
    sessions: pd.DataFrame,
    *,
    alpha: float = 0.05,
    correction: Literal["holm", "fdr_bh"] = "holm",
    min_clients: int = config.MIN_CLIENTS_PER_CELL,
    mcid_overrides: Mapping[str, float] | None = None,
    groups: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Test every registered claim overall and per audience group; return the claims table.

    >>> table = evaluate_claims(sessions)                            # doctest: +SKIP
    >>> table.loc[table.claim_id == "pain", ["audience_group", "estimate", "verdict"]]
    ...                                                              # doctest: +SKIP

    Raises :class:`AnalysisError` (a ``ValueError``) for unusable input or options; every
    other problem (too few clients, a missing outcome, a failed fit) becomes a verdict.
    """
    _validate_options(alpha, correction, min_clients, mcid_overrides)  # before the costly part
    return evaluate_inputs(claim_inputs(sessions), alpha=alpha, correction=correction,
                           min_clients=min_clients, mcid_overrides=mcid_overrides,
                           groups=groups, progress=progress)
