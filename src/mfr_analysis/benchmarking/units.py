"""Per unit (site or clinician): observed, expected, observed minus expected, responders raw
and risk-adjusted, the shrunken estimate, and funnel flags unadjusted and adjusted.

Units are listed by name, never ranked. A unit with fewer clients than
``settings.min_reported_clients`` is never named: its clients are pooled into one row
``unit = "other"`` (``pooled = True``, no flags), joined by the smallest named units while
that row would hold 1 to minimum - 1 clients (:func:`pooled_units`); such units still count
in the model and in the overdispersion estimate. The clinician is its pseudonym, as in the
clean table.

Per unit, with ``s2e`` the model's residual (within-unit) variance:

* ``o_minus_e`` = mean of (change - expected) over the unit's clients; ``se`` =
  ``sqrt(s2e / n + nested)``, the standard error when the unit is "in control" (the
  funnel's); ``nested`` is 0 for a clinician and, for a site, the clinician variance x the
  sum of squared clinician shares of its clients (a site in control has clinicians like the
  network's: its mean varies with theirs); its 95 % CI ``o_minus_e +- 1.96 se`` (so, before
  overdispersion, the CI excludes 0 exactly when the unit lies outside the 95 % funnel).
* ``shrunken``: the empirical-Bayes estimate ``o_minus_e * t2 / (t2 + se^2)``, ``t2`` the
  variance of the unit's true effect from the model (clinician: site + clinician variance;
  site: site variance + clinician variance x sum of squared clinician shares of the site).
* responders: ``responders_observed`` the share of clients reaching the MCID (Wilson 95 %
  interval, statsmodels ``proportion_confint``), ``responders_expected`` the mean of the
  clients' expected probabilities (logistic model), their difference with standard error
  ``sqrt(sum p (1 - p)) / n`` (indirect standardisation).
* unadjusted: the unit's observed mean minus the network's mean (and the same for the
  responder share), standard error from the within-unit variance of the raw change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from mfr_analysis.benchmarking.funnel import (
    Dispersion,
    OverdispersionMethod,
    estimate_dispersion,
    flags,
    limit_grid,
    z_for,
)
from mfr_analysis.benchmarking.risk import (
    LEVELS,
    Method,
    RiskFit,
    _one_way,
    fit_risk,
    model_table,
)
from mfr_analysis.errors import AnalysisError
from mfr_analysis.settings import AnalysisSettings
from mfr_analysis.tables import load_table

__all__ = ["OTHER", "UNIT_COLUMNS", "Benchmark", "adjustment_sentence", "benchmark",
           "benchmark_units", "funnel_limits", "pooled_units"]

OTHER = "other"  # the pooled row of units under the privacy minimum
By = Literal["site", "clinician"]
UNIT_COLUMNS: tuple[str, ...] = (
    "unit", "n_clients", "observed", "expected", "o_minus_e", "se", "ci_low", "ci_high",
    "shrunken", "responders_observed", "responders_ci_low", "responders_ci_high",
    "responders_expected", "responders_o_minus_e", "responders_se",
    "responders_o_minus_e_ci_low", "responders_o_minus_e_ci_high",
    "unadjusted_o_minus_e", "unadjusted_se", "unadjusted_ci_low", "unadjusted_ci_high",
    "responders_unadjusted_o_minus_e",
    "responders_unadjusted_se", "flag_unadjusted", "flag_adjusted", "flag_adjusted_998",
    "flag_responders_unadjusted", "flag_responders_adjusted", "pooled", "by", "outcome",
    "direction", "mcid")
INDICATORS: dict[tuple[str, str], tuple[str, str]] = {
    # (indicator, adjustment) -> (estimate column, standard error column)
    ("o_minus_e", "adjusted"): ("o_minus_e", "se"),
    ("o_minus_e", "unadjusted"): ("unadjusted_o_minus_e", "unadjusted_se"),
    ("responders_o_minus_e", "adjusted"): ("responders_o_minus_e", "responders_se"),
    ("responders_o_minus_e", "unadjusted"): ("responders_unadjusted_o_minus_e",
                                             "responders_unadjusted_se"),
}


@dataclass(frozen=True)
class Benchmark:
    """Everything one benchmarking run gives: the per-unit table, the funnel limits, the
    risk model's tidy table, the fit itself, the overdispersion of each indicator and the
    sentence on what adjustment changed."""

    units: pd.DataFrame
    limits: pd.DataFrame
    model: pd.DataFrame
    fit: RiskFit
    dispersion: dict[tuple[str, str], Dispersion]
    sentence: str


def _nested_variance(fit: RiskFit, by: str, clients: pd.DataFrame) -> pd.Series:
    """Variance of a site's mean change that comes from its clinicians: the clinician
    variance x the sum of squared clinician shares of the site's clients (0 for a clinician,
    or without clinicians). A site "in control" has clinicians like the network's."""
    units = clients[by]
    s2c = fit.variances.get("clinician", 0.0)
    if by == "clinician" or "clinician" not in fit.levels or s2c <= 0:
        return pd.Series(0.0, index=pd.Index(units.unique()))
    shares = clients.groupby([by, "clinician"], sort=False).size()
    shares = shares / shares.groupby(level=0).transform("sum")
    return s2c * (shares ** 2).groupby(level=0).sum()


def _unit_variance(fit: RiskFit, by: str, clients: pd.DataFrame) -> pd.Series:
    """Variance of each unit's true effect (the prior of the shrunken estimate)."""
    s2s, s2c = fit.variances.get("site", 0.0), fit.variances.get("clinician", 0.0)
    if by == "clinician":
        return pd.Series(s2s + s2c, index=pd.Index(clients[by].unique()))
    return s2s + _nested_variance(fit, by, clients)


def _summarise(clients: pd.DataFrame, key: pd.Series, *, s2e: float, s2raw: float,
               mean_y: float, share: float, alpha: float,
               nested: pd.Series | None = None) -> pd.DataFrame:
    """Per-unit observed, expected, responders and their standard errors; ``nested``: the
    variance a unit's mean change owes to the units nested in it (a site's clinicians)."""
    frame = clients.assign(key=key.to_numpy(), pq=clients["p_responder"]
                           * (1 - clients["p_responder"]))
    g = frame.groupby("key", sort=True)
    out = g.agg(n_clients=("y", "size"), observed=("y", "mean"),
                expected=("expected", "mean"), responders=("responder", "sum"),
                responders_expected=("p_responder", "mean"), pq=("pq", "sum"))
    n = out["n_clients"].astype("float64")
    extra = 0.0 if nested is None else nested.reindex(out.index).fillna(0.0)
    z = z_for(1 - alpha)
    low, high = proportion_confint(out["responders"], n, alpha=alpha, method="wilson")
    out = out.assign(
        o_minus_e=out["observed"] - out["expected"],
        se=np.sqrt(s2e / n + extra),
        responders_observed=out["responders"] / n,
        responders_ci_low=np.asarray(low, float), responders_ci_high=np.asarray(high, float),
        responders_se=np.sqrt(out["pq"]) / n,
        unadjusted_o_minus_e=out["observed"] - mean_y,
        unadjusted_se=np.sqrt(s2raw / n + extra),
        responders_unadjusted_se=np.sqrt(share * (1 - share) / n),
    )
    return out.assign(
        ci_low=out["o_minus_e"] - z * out["se"], ci_high=out["o_minus_e"] + z * out["se"],
        unadjusted_ci_low=out["unadjusted_o_minus_e"] - z * out["unadjusted_se"],
        unadjusted_ci_high=out["unadjusted_o_minus_e"] + z * out["unadjusted_se"],
        responders_o_minus_e=out["responders_observed"] - out["responders_expected"],
        responders_unadjusted_o_minus_e=out["responders_observed"] - share,
    ).assign(
        responders_o_minus_e_ci_low=lambda t: t["responders_o_minus_e"] - z * t["responders_se"],
        responders_o_minus_e_ci_high=lambda t: t["responders_o_minus_e"]
        + z * t["responders_se"],
    )


def pooled_units(n_clients: pd.Series, minimum: int) -> pd.Series:
    """Which units go into the "other" row: those under ``minimum`` clients and, while that
    pool has 1 to ``minimum - 1`` clients, the smallest named units (ties by name).

    Complementary pooling: the network's total minus the named units' clients gives the
    pool's size, so a pool under the minimum would publish a small count by subtraction."""
    small = n_clients < minimum
    size = int(n_clients[small].sum())
    if 0 < size < minimum:
        for unit in n_clients[~small].sort_index().sort_values(kind="stable").index:
            small[unit] = True
            size += int(n_clients[unit])
            if size >= minimum:
                break
    return small


def adjustment_sentence(units: pd.DataFrame) -> str:
    """One sentence: which named units move across the 95 % limits with risk adjustment."""
    words = load_table("benchmark_words").set_index("key")["text"]
    named = units.loc[~units["pooled"]]
    moved = named.loc[named["flag_unadjusted"] != named["flag_adjusted"]]
    if moved.empty:
        return str(words["unchanged"])
    changes = "; ".join(words["change"].format(unit=row.unit, before=row.flag_unadjusted,
                                               after=row.flag_adjusted)
                        for row in moved.itertuples())
    return str(words["changed"]).format(changes=changes)


def benchmark(sessions: pd.DataFrame, by: By = "site", outcome: str = "pain",
              settings: AnalysisSettings | None = None, *, method: Method = "auto",
              overdispersion: OverdispersionMethod = "additive",
              fit: RiskFit | None = None) -> Benchmark:
    """Benchmark the units ``by`` (site or clinician) on one outcome.

    ``fit``: a risk model already fitted on the same sessions and outcome (its method is
    kept), else one is fitted here (``method``)."""
    settings = settings or AnalysisSettings()
    if by not in LEVELS:
        raise AnalysisError(f"benchmark by {by!r}: expected site or clinician")
    fit = fit or fit_risk(sessions, outcome, settings, method)
    if by not in fit.levels:
        raise AnalysisError(f"benchmark by {by}: the table has no {by} column with two or "
                            "more units")
    clients = fit.clients
    y = clients["y"].to_numpy(dtype="float64")
    share = float(clients["responder"].mean())
    s2raw = _one_way(clients[by].to_numpy(), y)[1]
    nested = _nested_variance(fit, by, clients)
    table = _summarise(clients, clients[by], s2e=fit.variances["residual"], s2raw=s2raw,
                       mean_y=float(y.mean()), share=share, alpha=settings.alpha,
                       nested=nested)
    prior = _unit_variance(fit, by, clients).reindex(table.index).to_numpy(dtype="float64")
    noise = fit.variances["residual"] / table["n_clients"].astype("float64")
    table = table.assign(shrunken=table["o_minus_e"] * prior / (prior + noise))
    dispersion: dict[tuple[str, str], Dispersion] = {}
    direction = {"o_minus_e": fit.direction, "responders_o_minus_e": 1}
    for (indicator, adjustment), (column, se) in INDICATORS.items():
        found = estimate_dispersion(table[column], table[se], overdispersion)
        dispersion[indicator, adjustment] = found
        name = ("flag_" + ("responders_" if indicator != "o_minus_e" else "")
                + adjustment)
        table[name] = flags(table[column], table[se], direction[indicator], found)
    table["flag_adjusted_998"] = flags(table["o_minus_e"], table["se"], fit.direction,
                                       dispersion["o_minus_e", "adjusted"], level=0.998)
    small = pooled_units(table["n_clients"], settings.min_reported_clients)
    named = table.loc[~small].assign(pooled=False)
    rows = [named]
    if small.any():
        pooled_clients = clients.loc[clients[by].isin(table.index[small])]
        other = _summarise(pooled_clients, pd.Series(OTHER, index=pooled_clients.index),
                           s2e=fit.variances["residual"], s2raw=s2raw,
                           mean_y=float(y.mean()), share=share, alpha=settings.alpha)
        rows.append(other.assign(shrunken=math.nan, pooled=True))
    units = pd.concat(rows).rename_axis("unit").reset_index().assign(
        by=by, outcome=fit.outcome, direction=fit.direction, mcid=fit.mcid)
    for column in ("flag_unadjusted", "flag_adjusted", "flag_adjusted_998",
                   "flag_responders_unadjusted", "flag_responders_adjusted"):
        units[column] = units[column].astype("string")
    units["unit"] = units["unit"].astype("string")
    units = units[list(UNIT_COLUMNS)]
    limits = _limits(fit, table, dispersion, settings, s2raw, share,
                     float(nested.median()) if len(nested) else 0.0)
    return Benchmark(units=units, limits=limits, model=model_table(fit), fit=fit,
                     dispersion=dispersion, sentence=adjustment_sentence(units))


def _limits(fit: RiskFit, table: pd.DataFrame, dispersion: dict[tuple[str, str], Dispersion],
            settings: AnalysisSettings, s2raw: float, share: float,
            nested: float = 0.0) -> pd.DataFrame:
    """The funnel limits of every indicator over clients (from the privacy minimum up);
    ``nested``: the typical (median) variance a site owes to its clinicians, drawn into the
    change limits (each site's own flag uses its own)."""
    n_high = int(table["n_clients"].max())
    p = fit.clients["p_responder"].to_numpy(dtype="float64")
    sds = {("o_minus_e", "adjusted"): math.sqrt(fit.variances["residual"]),
           ("o_minus_e", "unadjusted"): math.sqrt(s2raw),
           ("responders_o_minus_e", "adjusted"): math.sqrt(float(np.mean(p * (1 - p)))),
           ("responders_o_minus_e", "unadjusted"): math.sqrt(share * (1 - share))}
    parts = []
    for (indicator, adjustment), sd in sds.items():
        found = dispersion[indicator, adjustment]
        extra = nested if indicator == "o_minus_e" else 0.0
        parts.append(limit_grid(settings.min_reported_clients, n_high, sd, found,
                                extra=extra).assign(
            indicator=indicator, adjustment=adjustment, overdispersion=found.method,
            phi=found.phi, tau2=found.tau2, dispersion_p=found.p_value,
            dispersion_applied=found.applied))
    return pd.concat(parts, ignore_index=True)[
        ["indicator", "adjustment", "n_clients", "level", "lower", "upper", "overdispersion",
         "phi", "tau2", "dispersion_p", "dispersion_applied"]]


def benchmark_units(sessions: pd.DataFrame, by: By = "site", outcome: str = "pain",
                    settings: AnalysisSettings | None = None, *, method: Method = "auto",
                    overdispersion: OverdispersionMethod = "additive") -> pd.DataFrame:
    """The per-unit benchmarking table (columns :data:`UNIT_COLUMNS`), units by name."""
    return benchmark(sessions, by, outcome, settings, method=method,
                     overdispersion=overdispersion).units


def funnel_limits(sessions: pd.DataFrame, by: By = "site", outcome: str = "pain",
                  settings: AnalysisSettings | None = None, *, method: Method = "auto",
                  overdispersion: OverdispersionMethod = "additive") -> pd.DataFrame:
    """Funnel limits for plotting: ``indicator, adjustment, n_clients, level, lower, upper``
    and the overdispersion each applies (``overdispersion, phi, tau2, dispersion_p,
    dispersion_applied``)."""
    return benchmark(sessions, by, outcome, settings, method=method,
                     overdispersion=overdispersion).limits
