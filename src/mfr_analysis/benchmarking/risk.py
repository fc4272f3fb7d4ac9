"""Risk adjustment: each client's expected change from intake factors, with site and clinician
random effects, and how much of the variance sites and clinicians explain (ICC).

Clients are the unit: one row per client (MFR arm only when the table has an ``arm``), with
``y`` the mean change over the client's sessions that carry the outcome, ``baseline`` the
mean pre-session value over the same sessions, the intake factors of
``data/benchmark_covariates.csv`` (a category's level per client: its first non-missing
value, or its most frequent one) and the client's site and clinician (most frequent).

The model, per outcome (``data/benchmark_outcomes.csv``: ``pain``, ``lasting_relief``,
``rom:<measure>``)::

    y_i = x_i' beta + u_site + v_clinician + e_i

``x_i``: intercept, baseline and each covariate present for at least ``min_present_share``
of the clients with two or more levels (a missing level becomes its own level ``missing``,
so no client is dropped for a missing factor; the most frequent level is the reference).
Clinicians are nested in sites (a clinician working at two sites is two cells).

Two fits (``method``):

* ``mixed``: statsmodels MixedLM by REML, ``groups`` = site with a random intercept and a
  variance component for clinician (``vc_formula``), or one random intercept when the table
  has only one of the two. Exact; its time grows with clients and clinicians (about a
  minute at 100,000 clients). When its optimisers do not converge (it happens with many
  clinicians and few clients each), the fit falls back to ``moments`` and says so in a note.
* ``moments`` (the fast path): fixed effects by OLS on the client rows (standard errors
  cluster-robust by site, or clinician), then the variance components by the nested ANOVA
  (Henderson method I) moment estimators on the OLS residuals (Searle, Casella & McCulloch
  1992, Variance Components, ch. 4-5), truncated at zero. Seconds at 200,000 clients. The
  trade-off: OLS weighs clients equally where the mixed model's GLS weighs them by their
  unit's size, so the two agree when case mix is not tied to unit effects and drift apart
  (slightly) when, say, the better clinicians also see the younger clients; and moment
  estimates of the variances are less efficient than REML with few units. Tested against
  MixedLM on a small network.
* ``auto``: ``mixed`` up to :data:`MIXED_MAX_CLIENTS` clients, ``moments`` above.

Expected change = ``x_i' beta`` (fixed part only, so a unit's own effect is never part of
its expectation). Responders (the claims registry's MCID: for pain 2 points or 30 % of the
baseline, in the better direction) get an expected probability from a logistic model
(statsmodels GLM, binomial) on the same ``x_i``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf

from mfr_analysis.config import UNIT_LEVELS
from mfr_analysis.errors import AnalysisError
from mfr_analysis.settings import AnalysisSettings
from mfr_analysis.tables import load_table

__all__ = [
    "LEVELS",
    "MIXED_MAX_CLIENTS",
    "RiskFit",
    "client_frame",
    "fit_risk",
    "nested_variance_components",
    "outcome_spec",
    "risk_model",
]

LEVELS = UNIT_LEVELS  # unit levels, outermost first
MIXED_MAX_CLIENTS = 20_000  # `auto` fits MixedLM up to this many clients (about 10 s)
MISSING = "missing"  # the level of a client whose factor is missing
Method = Literal["auto", "mixed", "moments"]


@dataclass(frozen=True)
class OutcomeSpec:
    """One benchmarked outcome: where its change comes from and which way is better."""

    outcome: str
    claim_id: str
    post: str
    pre: str
    direction: int
    measure: str | None = None
    measure_column: str | None = None


def outcome_spec(outcome: str) -> OutcomeSpec:
    """The outcome's row of ``data/benchmark_outcomes.csv`` (``rom:<measure>`` per measure)."""
    name, _, measure = outcome.partition(":")
    table = load_table("benchmark_outcomes").set_index("outcome")
    if name not in table.index:
        raise AnalysisError(f"benchmark outcome {outcome!r}: expected one of "
                            f"{', '.join(table.index)} (rom as rom:<measure>)")
    row = table.loc[name]
    per_measure = row["per_measure"] if isinstance(row["per_measure"], str) else None
    if per_measure and not measure:
        raise AnalysisError(f"benchmark outcome {outcome!r}: name the measure, e.g. "
                            f"{name}:knee_flexion_deg")
    if measure and not per_measure:
        raise AnalysisError(f"benchmark outcome {outcome!r}: {name} has no measures")
    return OutcomeSpec(outcome, str(row["claim_id"]), str(row["post"]), str(row["pre"]),
                       int(row["direction"]), measure or None, per_measure)


def mcid_of(spec: OutcomeSpec, settings: AnalysisSettings) -> tuple[float, float]:
    """(MCID, relative MCID) of an outcome from the claims registry and the user's overrides."""
    from mfr_analysis.claims import registry
    from mfr_analysis.claims.kinds import claim_registry

    claims = claim_registry().set_index("claim_id", drop=False)
    claim = claims.loc[spec.claim_id]
    key = spec.outcome if spec.measure else spec.claim_id
    mcid, _ = registry.threshold(claim, key, settings.mcid_overrides)
    return mcid, registry.mcid_relative(claim)


def _mode_per_client(clients: pd.Series, values: pd.Series) -> pd.Series:
    """The most frequent non-missing value per client (ties: the first seen)."""
    frame = pd.DataFrame({"c": clients.to_numpy(), "v": values.astype("string").to_numpy()})
    frame = frame.dropna(subset=["v"])
    counts = frame.groupby(["c", "v"], sort=False, observed=True).size().rename("k")
    counts = counts.reset_index().sort_values("k", ascending=False, kind="stable")
    return counts.drop_duplicates("c").set_index("c")["v"]


def client_frame(sessions: pd.DataFrame, outcome: str = "pain") -> pd.DataFrame:
    """One row per client: ``client_id, y, baseline, n_sessions`` and, when present, the unit
    levels (``site``, ``clinician``) and the intake factors (as strings).

    ``y`` is the client's mean change (post minus pre, or follow-up minus pre) over the
    sessions that carry both values; MFR-arm sessions only when the table has ``arm``."""
    spec = outcome_spec(outcome)
    missing = [c for c in ("client_id", spec.post, spec.pre) if c not in sessions.columns]
    if spec.measure_column and spec.measure_column not in sessions.columns:
        missing.append(spec.measure_column)
    if missing:
        raise AnalysisError(f"benchmarking {outcome}: the sessions table lacks "
                            f"{', '.join(missing)}")
    keep = sessions[spec.post].notna() & sessions[spec.pre].notna()
    if "arm" in sessions.columns:
        keep &= (sessions["arm"].astype("string") == "mfr").fillna(False)
    if spec.measure_column:
        keep &= (sessions[spec.measure_column].astype("string") == spec.measure).fillna(False)
    rows = sessions.loc[keep.to_numpy()]
    change = rows[spec.post].astype("float64") - rows[spec.pre].astype("float64")
    grouped = pd.DataFrame({"client_id": rows["client_id"].to_numpy(),
                            "y": change.to_numpy(),
                            "baseline": rows[spec.pre].astype("float64").to_numpy()}
                           ).groupby("client_id", sort=True)
    clients = grouped.agg(y=("y", "mean"), baseline=("baseline", "mean"),
                          n_sessions=("y", "size"))
    covariates = load_table("benchmark_covariates")
    for column in (*LEVELS, *covariates["column"]):
        if column not in rows.columns:
            continue
        how = "mode" if column in LEVELS else covariates.set_index("column").at[
            column, "per_client"]
        if how == "mode":
            values = _mode_per_client(rows["client_id"], rows[column])
        else:
            values = (pd.DataFrame({"c": rows["client_id"].to_numpy(),
                                    "v": rows[column].astype("string").to_numpy()})
                      .groupby("c", sort=False)["v"].first())
        clients[column] = values.reindex(clients.index).astype("string")
    return clients.reset_index()


def choose_covariates(clients: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """(covariates used, {covariate: why not used}) of the benchmark covariates table."""
    table = load_table("benchmark_covariates")
    used: list[str] = []
    dropped: dict[str, str] = {}
    for _, row in table.iterrows():
        column = str(row["column"])
        replaces = row["replaces"] if isinstance(row["replaces"], str) else None
        if replaces and replaces in used:
            dropped[column] = f"{replaces} is used (it is derived from it)"
        elif column not in clients.columns:
            dropped[column] = "not in the table"
        else:
            present = clients[column].notna()
            share = float(present.mean()) if len(clients) else 0.0
            levels = clients.loc[present, column].nunique()
            if share < float(row["min_present_share"]):
                dropped[column] = (f"known for {share:.0%} of clients (fewer than "
                                   f"{float(row['min_present_share']):.0%})")
            elif levels < 2:
                dropped[column] = "one level only"
            else:
                used.append(column)
    return used, dropped


def design(clients: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """The fixed-effects design: ``Intercept``, ``baseline`` and ``<covariate>[<level>]``
    indicators (reference: the most frequent level; a missing value is the level
    ``missing``)."""
    columns: dict[str, np.ndarray] = {
        "Intercept": np.ones(len(clients)),
        "baseline": clients["baseline"].to_numpy(dtype="float64")}
    for covariate in covariates:
        values = clients[covariate].fillna(MISSING).astype(str)
        counts = values.value_counts(sort=True)  # counts.index[0]: the reference level
        for level in sorted(counts.index[1:]):
            columns[f"{covariate}[{level}]"] = (values == level).to_numpy(dtype="float64")
    return pd.DataFrame(columns, index=clients.index)


@dataclass(frozen=True)
class RiskFit:
    """A fitted risk-adjustment model of one outcome.

    ``clients``: the client rows with ``expected`` (fixed part), ``residual``,
    ``responder`` (bool) and ``p_responder`` (expected probability). ``variances``:
    ``site``, ``clinician`` (0 when the level is absent) and ``residual``."""

    outcome: str
    method: str
    direction: int
    mcid: float
    levels: tuple[str, ...]
    covariates: tuple[str, ...]
    dropped: dict[str, str]
    coefficients: pd.DataFrame
    variances: dict[str, float]
    clients: pd.DataFrame
    notes: tuple[str, ...] = field(default=())

    def icc(self, level: str) -> float:
        """Share of the client-level variance (given the covariates) that lies between units
        of ``level``."""
        total = sum(self.variances.values())
        return self.variances.get(level, 0.0) / total if total > 0 else math.nan


def _safe(names: list[str]) -> dict[str, str]:
    return {name: f"x{i}_{re.sub(r'[^0-9A-Za-z]', '_', name)}" for i, name in enumerate(names)}


class _NotConverged(Exception):
    """MixedLM's optimisers did not converge (the fit falls back to the moments path)."""


def _fit_mixed(clients: pd.DataFrame, X: pd.DataFrame, levels: tuple[str, ...],
               alpha: float) -> tuple[pd.DataFrame, dict[str, float], np.ndarray, list[str]]:
    """MixedLM (REML): groups = the outer level, a variance component for the inner one."""
    safe = _safe(list(X.columns))
    data = X.rename(columns=safe).assign(y=clients["y"].to_numpy())
    for level in levels:
        data[level] = clients[level].astype(str).to_numpy()
    formula = "y ~ 0 + " + " + ".join(safe.values())
    kwargs: dict = {"groups": levels[0], "re_formula": "1"}
    if len(levels) == 2:
        # clinician within site (statsmodels' variance components are nested in groups)
        kwargs["vc_formula"] = {levels[1]: f"0 + C({levels[1]})"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = smf.mixedlm(formula, data, **kwargs).fit(reml=True)
    if not result.converged:
        raise _NotConverged(str(caught[0].message) if caught else "no convergence")
    notes = [f"MixedLM warned: {w.message}" for w in caught][:2]
    fe = result.fe_params
    bse = result.bse_fe
    ci = result.conf_int(alpha=alpha).loc[fe.index]
    names = {v: k for k, v in safe.items()}
    table = pd.DataFrame({"term": [names[t] for t in fe.index],
                          "estimate": fe.to_numpy(), "std_error": bse.to_numpy(),
                          "ci_low": ci.iloc[:, 0].to_numpy(),
                          "ci_high": ci.iloc[:, 1].to_numpy(),
                          "p_value": result.pvalues.loc[fe.index].to_numpy()})
    variances = {levels[0]: float(result.cov_re.iloc[0, 0]), "residual": float(result.scale)}
    if len(levels) == 2:
        variances[levels[1]] = float(result.vcomp[0])
    return table, variances, fe.to_numpy(), notes


def _one_way(groups: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """(between-group, within-group) variance by the one-way ANOVA moment estimator."""
    codes, _ = pd.factorize(groups)
    n_g = np.bincount(codes).astype(float)
    n, g = float(r.size), n_g.size
    means = np.bincount(codes, weights=r) / n_g
    ssw = float(((r - means[codes]) ** 2).sum())
    msw = ssw / (n - g) if n > g else math.nan
    if g < 2:
        return 0.0, msw
    msb = float((n_g * (means - r.mean()) ** 2).sum()) / (g - 1)
    n0 = (n - (n_g ** 2).sum() / n) / (g - 1)
    return max(0.0, (msb - msw) / n0), msw


def nested_variance_components(outer: np.ndarray, inner: np.ndarray,
                               r: np.ndarray) -> tuple[float, float, float]:
    """(outer, inner-within-outer, residual) variances by the nested ANOVA moment (Henderson
    method I) estimators, each truncated at zero.

    Written here because statsmodels has no moment estimator for nested components (its
    MixedLM is the exact, slower fit). With a sites, b cells (clinician x site) and N
    clients: E[MSW] = s2e; E[MSC] = s2e + k1 s2c; E[MSS] = s2e + k2 s2c + k3 s2s with
    k1 = (N - sum_ij n_ij^2/n_i)/(b - a), k2 = (sum_ij n_ij^2/n_i - sum_ij n_ij^2/N)/(a - 1),
    k3 = (N - sum_i n_i^2/N)/(a - 1) (Searle, Casella & McCulloch 1992, section 5.x)."""
    site, _ = pd.factorize(outer)
    cell, cell_values = pd.factorize(pd.Series(site).astype(str) + "\x1f"
                                     + pd.Series(inner).astype(str))
    n = float(r.size)
    n_i = np.bincount(site).astype(float)
    n_ij = np.bincount(cell).astype(float)
    site_of_cell = np.zeros(n_ij.size, dtype=np.int64)
    site_of_cell[cell] = site
    a, b = n_i.size, n_ij.size
    mean_i = np.bincount(site, weights=r) / n_i
    mean_ij = np.bincount(cell, weights=r) / n_ij
    msw = float(((r - mean_ij[cell]) ** 2).sum()) / (n - b) if n > b else math.nan
    sum_ij_over_i = float((n_ij ** 2 / n_i[site_of_cell]).sum())
    if b > a:
        msc = float((n_ij * (mean_ij - mean_i[site_of_cell]) ** 2).sum()) / (b - a)
        k1 = (n - sum_ij_over_i) / (b - a)
        s2c = max(0.0, (msc - msw) / k1)
    else:
        s2c = 0.0
    if a > 1:
        mss = float((n_i * (mean_i - r.mean()) ** 2).sum()) / (a - 1)
        k2 = (sum_ij_over_i - float((n_ij ** 2).sum()) / n) / (a - 1)
        k3 = (n - float((n_i ** 2).sum()) / n) / (a - 1)
        s2s = max(0.0, (mss - msw - k2 * s2c) / k3)
    else:
        s2s = 0.0
    return s2s, s2c, msw


def _fit_moments(clients: pd.DataFrame, X: pd.DataFrame, levels: tuple[str, ...],
                 alpha: float) -> tuple[pd.DataFrame, dict[str, float], np.ndarray, list[str]]:
    """OLS for the fixed effects, moment estimators for the unit variance components."""
    y = clients["y"].to_numpy(dtype="float64")
    groups = pd.factorize(clients[levels[0]])[0] if levels else None
    model = sm.OLS(y, X)
    result = (model.fit(cov_type="cluster", cov_kwds={"groups": groups})
              if groups is not None and np.unique(groups).size >= 2 else model.fit())
    ci = result.conf_int(alpha=alpha)
    table = pd.DataFrame({"term": list(X.columns), "estimate": result.params.to_numpy(),
                          "std_error": result.bse.to_numpy(), "ci_low": ci.iloc[:, 0].to_numpy(),
                          "ci_high": ci.iloc[:, 1].to_numpy(),
                          "p_value": result.pvalues.to_numpy()})
    r = y - X.to_numpy() @ result.params.to_numpy()
    variances: dict[str, float]
    if len(levels) == 2:
        s2s, s2c, s2e = nested_variance_components(clients[levels[0]].to_numpy(),
                                                   clients[levels[1]].to_numpy(), r)
        variances = {levels[0]: s2s, levels[1]: s2c, "residual": s2e}
    elif len(levels) == 1:
        between, within = _one_way(clients[levels[0]].to_numpy(), r)
        variances = {levels[0]: between, "residual": within}
    else:
        variances = {"residual": float(r.var(ddof=X.shape[1]))}
    return table, variances, result.params.to_numpy(), []


def responder(y: np.ndarray, baseline: np.ndarray, direction: int, mcid: float,
              relative: float) -> np.ndarray:
    """Clients whose mean change passes the MCID in the better direction (or, where the
    registry states one, the relative MCID of their baseline: pain 30 %), as the claims
    engine counts responders."""
    passed = direction * y >= mcid
    if math.isfinite(relative):
        with np.errstate(invalid="ignore"):
            passed |= (direction * y >= relative * np.abs(baseline)) & (baseline > 0)
    return passed


def _expected_share(X: pd.DataFrame, passed: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each client's expected probability of responding: logistic GLM on the design."""
    share = float(passed.mean()) if passed.size else math.nan
    if passed.size == 0 or share in (0.0, 1.0):
        return np.full(passed.size, share), []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fitted = sm.GLM(passed.astype(float), X, family=sm.families.Binomial()).fit()
            p = np.asarray(fitted.predict(X), dtype="float64")
        except (np.linalg.LinAlgError, ValueError) as error:
            return np.full(passed.size, share), [f"responder model failed ({error}): the "
                                                 "network's share is every client's expectation"]
    notes = [f"responder model warned: {w.message}" for w in caught][:1]
    return p, notes


def unit_levels(clients: pd.DataFrame) -> tuple[str, ...]:
    """The unit levels with two or more known units, outermost first."""
    return tuple(level for level in LEVELS
                 if level in clients.columns and clients[level].nunique() >= 2)


def fit_risk(sessions: pd.DataFrame, outcome: str = "pain",
             settings: AnalysisSettings | None = None, method: Method = "auto") -> RiskFit:
    """Fit the risk-adjustment model of one outcome on the clients of ``sessions``."""
    settings = settings or AnalysisSettings()
    if method not in ("auto", "mixed", "moments"):
        raise AnalysisError(f"method {method!r}: expected auto, mixed or moments")
    spec = outcome_spec(outcome)
    clients = client_frame(sessions, outcome)
    levels = unit_levels(clients)
    notes: list[str] = []
    if levels:
        known = clients[list(levels)].notna().all(axis=1)
        if not known.all():
            notes.append(f"{int((~known).sum())} clients without a {' or '.join(levels)} "
                         "are left out")
        clients = clients.loc[known.to_numpy()].reset_index(drop=True)
    else:
        notes.append("no site or clinician with two or more units: no unit variance")
    if len(clients) < settings.min_clients:
        raise AnalysisError(f"benchmarking {outcome}: {len(clients)} clients, fewer than "
                            f"the minimum of {settings.min_clients}")
    covariates, dropped = choose_covariates(clients)
    X = design(clients, covariates)
    if method == "auto":
        method = "mixed" if levels and len(clients) <= MIXED_MAX_CLIENTS else "moments"
    fit_notes: list[str] = []
    if method == "mixed" and levels:
        try:
            table, variances, beta, fit_notes = _fit_mixed(clients, X, levels, settings.alpha)
            label = "MixedLM (REML)"
        except _NotConverged as error:
            fit_notes = [f"MixedLM did not converge ({error}): fitted by OLS and moment "
                         "variance components instead"]
            method = "moments"
    if method != "mixed" or not levels:
        table, variances, beta, more = _fit_moments(clients, X, levels, settings.alpha)
        fit_notes += more
        label = "OLS + moment variance components"
        method = "moments"
    for level in LEVELS:
        variances.setdefault(level, 0.0)
    expected = X.to_numpy() @ beta
    mcid, relative = mcid_of(spec, settings)
    y = clients["y"].to_numpy(dtype="float64")
    passed = responder(y, clients["baseline"].to_numpy(dtype="float64"), spec.direction,
                       mcid, relative) if math.isfinite(mcid) else np.zeros(len(y), bool)
    p, share_notes = _expected_share(X, passed) if math.isfinite(mcid) else (
        np.full(len(y), math.nan), [f"no MCID for {outcome}: no responders"])
    clients = clients.assign(expected=expected, residual=y - expected, responder=passed,
                             p_responder=p)
    return RiskFit(outcome=outcome, method=label, direction=spec.direction, mcid=mcid,
                   levels=levels, covariates=tuple(covariates), dropped=dropped,
                   coefficients=table, variances=variances, clients=clients,
                   notes=tuple(notes + fit_notes + share_notes))


def model_table(fit: RiskFit) -> pd.DataFrame:
    """The tidy table of a fit: fixed effects, variance components and ICCs."""
    n_clients = len(fit.clients)
    units = {level: int(fit.clients[level].nunique()) if level in fit.levels else 0
             for level in LEVELS}
    fixed = fit.coefficients.assign(section="fixed")
    variance = pd.DataFrame({"term": [*LEVELS, "residual"],
                             "estimate": [fit.variances[k] for k in (*LEVELS, "residual")],
                             "section": "variance"})
    icc = pd.DataFrame({"term": list(LEVELS), "estimate": [fit.icc(k) for k in LEVELS],
                        "section": "icc"})
    table = pd.concat([fixed, variance, icc], ignore_index=True)
    used = ", ".join(["baseline", *fit.covariates])
    dropped = "; ".join(f"{k}: {v}" for k, v in fit.dropped.items())
    return table.assign(
        outcome=fit.outcome, method=fit.method, n_clients=n_clients,
        n_sites=units["site"], n_clinicians=units["clinician"],
        covariates_used=used, covariates_not_used=dropped, note="; ".join(fit.notes),
    )[["outcome", "section", "term", "estimate", "std_error", "ci_low", "ci_high", "p_value",
       "method", "n_clients", "n_sites", "n_clinicians", "covariates_used",
       "covariates_not_used", "note"]]


def risk_model(sessions: pd.DataFrame, outcome: str = "pain",
               settings: AnalysisSettings | None = None, method: Method = "auto"
               ) -> pd.DataFrame:
    """Tidy risk-adjustment model of one outcome: one row per fixed effect
    (``section = fixed``), unit variance (``variance``: site, clinician, residual) and
    ICC (``icc``: site, clinician).

    Columns: ``outcome, section, term, estimate, std_error, ci_low, ci_high, p_value,
    method, n_clients, n_sites, n_clinicians, covariates_used, covariates_not_used, note``.
    """
    return model_table(fit_risk(sessions, outcome, settings, method))
