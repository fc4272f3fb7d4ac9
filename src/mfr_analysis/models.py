"""Generic model fits with tidy results: mixed models, GEE, OLS, and client-level summaries.

Every fit returns a frozen :class:`ModelResult` (one row per coefficient, like pingouin's
tables) and records each warning statsmodels raised instead of printing it, so callers can
decide on a fallback and report why. Nothing here knows about claims;
:mod:`mfr_analysis.claims` does.

>>> import pandas as pd
>>> data = pd.DataFrame({"y": [1.0, 2.0, 3.0, 5.0], "x": [0.0, 1.0, 2.0, 3.0]})
>>> round(ols_formula(data, "y ~ x").term("x").estimate, 2)
1.3
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLMParams
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from mfr_analysis.errors import AnalysisError

__all__ = [
    "AnalysisError",
    "Estimate",
    "FitFailed",
    "ModelResult",
    "adjust_pvalues",
    "anova_icc",
    "client_means",
    "client_slopes",
    "clients_needed",
    "equal_effects_p",
    "fit_gee",
    "fit_logit",
    "fit_logit_counts",
    "fit_mixed",
    "fit_ols",
    "fit_ols_cluster_sums",
    "fit_ols_design",
    "gee_formula",
    "minimum_detectable_effect",
    "mixed_formula",
    "ols_formula",
    "recorded_warnings",
    "slope_variance",
    "slopes_from_sums",
    "tost_p",
    "wald_equal",
]

COEFFICIENT_COLUMNS = ("estimate", "se", "ci_low", "ci_high", "p_value")


class FitFailed(RuntimeError):
    """A model could not be fitted; the message says why (used to trigger a fallback)."""


@dataclass(frozen=True)
class Estimate:
    """One coefficient of a fitted model with its inference and provenance."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    n_obs: int
    n_clients: int
    method: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelResult:
    """A fitted model as a tidy coefficient table plus what is needed to judge it."""

    coefficients: pd.DataFrame
    method: str
    n_obs: int
    n_clients: int
    df: float = math.inf
    llf: float = math.nan
    warnings: tuple[str, ...] = ()
    results: Any = field(default=None, repr=False, compare=False)
    in_units: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    covariance: np.ndarray | None = field(default=None, repr=False, compare=False)

    def term(self, name: str) -> Estimate:
        """Return the coefficient ``name`` as an :class:`Estimate`."""
        if name not in self.coefficients.index:
            known = ", ".join(map(str, self.coefficients.index))
            raise KeyError(f"no term {name!r} in the model (terms: {known})")
        row = self.coefficients.loc[name]
        return Estimate(*(float(row[c]) for c in COEFFICIENT_COLUMNS), df=self.df,
                        n_obs=self.n_obs, n_clients=self.n_clients, method=self.method,
                        warnings=self.warnings)

    def statsmodels_results(self) -> Any:
        """The statsmodels results of the fit, in the data's units with named terms (a
        MixedLM, fitted on standardised columns, is refitted in the data's units from its
        solution); None for a fit made from sums without a statsmodels model."""
        return self.in_units() if self.in_units is not None else self.results

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per term with method, n and warnings."""
        return (self.coefficients.rename_axis("term").reset_index()
                .assign(method=self.method, n_obs=self.n_obs, n_clients=self.n_clients,
                        warnings="; ".join(self.warnings)))


@contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """Record every warning raised inside the block as short text, printing none."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            yield caught
        finally:
            texts = (f"{r.category.__name__}: {str(r.message).splitlines()[0][:160]}"
                     for r in records)
            caught.extend(dict.fromkeys(texts))


def _run(fit: Callable[[], Any], what: str) -> tuple[Any, tuple[str, ...]]:
    """Call ``fit`` recording warnings; turn any numerical exception into FitFailed."""
    with recorded_warnings() as caught:
        try:
            result = fit()
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError, FloatingPointError,
                IndexError) as error:
            raise FitFailed(f"{what} failed: {type(error).__name__}: {error}") from error
    return result, tuple(caught)


def _table(names: Sequence[str], params: np.ndarray, bse: np.ndarray, df: float,
           alpha: float) -> pd.DataFrame:
    """Coefficient table from estimates and standard errors (t with ``df``, or normal)."""
    params = np.asarray(params, dtype=float)
    bse = np.asarray(bse, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = params / bse
    dist = stats.norm if math.isinf(df) else stats.t(df)
    p = 2 * dist.sf(np.abs(stat))
    q = dist.ppf(1 - alpha / 2)
    return pd.DataFrame({"estimate": params, "se": bse, "ci_low": params - q * bse,
                         "ci_high": params + q * bse, "p_value": p}, index=list(names))


def _n_clients(groups: np.ndarray | pd.Series | None) -> int:
    return 0 if groups is None else int(pd.unique(np.asarray(groups)).size)


# Fits already made in this process, by a digest of their exact inputs. A report folder
# evaluates the claims of every slice, and a slice's cells are often the very cells of the
# pooled table (the audience group of a by-group slice): the same numbers give the same fit,
# so it is made once. functools.lru_cache cannot key on arrays, hence this small LRU.
FIT_MEMO_SIZE = 256
_FIT_MEMO: OrderedDict[bytes, ModelResult] = OrderedDict()


def _digest(*parts: object) -> bytes:
    """A digest of arrays (dtype, shape and bytes) and plain values, in order."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray | pd.Series | pd.api.extensions.ExtensionArray):
            array = np.ascontiguousarray(np.asarray(part))
            if array.dtype == object:  # labels: their text, in order
                digest.update(repr(array.tolist()).encode())
            else:
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array.tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\x1f")
    return digest.digest()


def _memoised(key: bytes, fit: Callable[[], ModelResult]) -> ModelResult:
    """``fit()``, or the result of the same fit made earlier in this process."""
    found = _FIT_MEMO.get(key)
    if found is not None:
        _FIT_MEMO.move_to_end(key)
        return found
    result = fit()
    _FIT_MEMO[key] = result
    if len(_FIT_MEMO) > FIT_MEMO_SIZE:
        _FIT_MEMO.popitem(last=False)
    return result


def fit_mixed(y: np.ndarray, X: np.ndarray, clients: np.ndarray, *, names: Sequence[str],
              exog_re: np.ndarray | None = None, reml: bool = True,
              start_cov_re: np.ndarray | None = None, alpha: float = 0.05) -> ModelResult:
    """Linear mixed model with a random intercept (or ``exog_re``) per client (MixedLM).

    ``start_cov_re`` (random-effects covariance relative to the residual variance, e.g. from
    moment estimates) starts the optimiser near the answer with OLS fixed effects: near the
    boundary the default start makes statsmodels retry optimisers for tens of seconds. A fit
    of exactly the same inputs made earlier in the process is returned again (see
    :data:`FIT_MEMO_SIZE`).
    """
    key = _digest("mixed", np.asarray(y, dtype=float), np.asarray(X, dtype=float),
                  np.asarray(clients), tuple(names), exog_re, reml, start_cov_re, alpha)
    return _memoised(key, lambda: _fit_mixed(y, X, clients, names=names, exog_re=exog_re,
                                             reml=reml, start_cov_re=start_cov_re,
                                             alpha=alpha))


def _fit_mixed(y: np.ndarray, X: np.ndarray, clients: np.ndarray, *, names: Sequence[str],
               exog_re: np.ndarray | None, reml: bool, start_cov_re: np.ndarray | None,
               alpha: float) -> ModelResult:
    # statsmodels flags "MLE on the boundary" when a random-effect variance is below 0.01 in
    # the data's own units; fitting on standardised columns makes that check scale-free.
    # The model is the same (a linear reparametrisation); estimates are scaled back.
    y_scale = _scale(y)
    x_scale = np.array([_scale(X[:, j]) if np.ptp(X[:, j]) > 0 else 1.0
                        for j in range(X.shape[1])])
    re_scaled = None
    if exog_re is not None:
        re_scale = np.array([_scale(exog_re[:, j]) if np.ptp(exog_re[:, j]) > 0 else 1.0
                             for j in range(exog_re.shape[1])])
        re_scaled = exog_re / re_scale
    model = sm.MixedLM(y / y_scale, X / x_scale, groups=clients, exog_re=re_scaled)
    start = None
    if start_cov_re is not None:
        beta = np.linalg.lstsq(X / x_scale, y / y_scale, rcond=None)[0]
        cov = np.atleast_2d(start_cov_re)
        if exog_re is not None:
            cov = cov * np.outer(re_scale, re_scale)
        start = MixedLMParams.from_components(fe_params=beta, cov_re=cov)
    res, caught = _run(lambda: model.fit(reml=reml, start_params=start), "MixedLM")
    k = X.shape[1]
    factor = y_scale / x_scale
    table = _table(names, np.asarray(res.fe_params) * factor,
                   np.asarray(res.bse_fe)[:k] * factor, math.inf, alpha)
    method = "MixedLM " + ("REML" if reml else "ML") + (
        ", random intercept" if exog_re is None else ", random intercept and slope")
    if not np.all(np.isfinite(table[["estimate", "se"]].to_numpy())):
        caught = (*caught, "non-finite estimate or standard error")
    n = len(y)
    llf = float(res.llf) - (n - k if reml else n) * math.log(y_scale) - (
        float(np.sum(np.log(x_scale))) if reml else 0.0)

    def in_units() -> Any:
        """The same model in the data's units with named terms, started at this solution."""
        re_names = ["intercept", "slope"][:1 if exog_re is None else exog_re.shape[1]]
        unscaled = sm.MixedLM(pd.Series(y, name="y"), pd.DataFrame(X, columns=list(names)),
                              groups=clients, exog_re=None if exog_re is None else
                              pd.DataFrame(exog_re, columns=re_names))
        relative = np.atleast_2d(np.asarray(res.cov_re, dtype=float)) / float(res.scale)
        if exog_re is not None:
            relative = relative / np.outer(re_scale, re_scale)
        start_units = MixedLMParams.from_components(
            fe_params=np.asarray(res.fe_params) * factor, cov_re=relative)
        return _run(lambda: unscaled.fit(reml=reml, start_params=start_units), "MixedLM")[0]

    return ModelResult(table, method, n, _n_clients(clients), math.inf, llf, caught, res,
                       in_units)


def _named(X: np.ndarray, names: Sequence[str]) -> pd.DataFrame | np.ndarray:
    """The design with its term names (so that a results summary names them)."""
    X = np.asarray(X)
    return pd.DataFrame(X, columns=list(names)) if X.ndim == 2 and X.shape[1] == len(names) \
        else X


def _scale(values: np.ndarray) -> float:
    """Standard deviation used to standardise a column (1 when it is zero or undefined)."""
    sd = float(np.std(values))
    return sd if math.isfinite(sd) and sd > 0 else 1.0


OLS_LABELS = {"nonrobust": "OLS", "HC1": "OLS, HC1 robust SE", "HC2": "OLS, HC2 robust SE",
              "cluster": "OLS, cluster-robust SE by client"}
TALL_ROWS = 1_000_000
"""Rows above which :func:`fit_ols` with classical or HC1 errors solves the normal equations
block by block (:func:`_fit_ols_tall`) instead of calling statsmodels."""
TALL_BLOCK_ROWS = 1 << 18


def fit_ols(y: np.ndarray, X: np.ndarray, *, names: Sequence[str],
            clients: np.ndarray | None = None,
            cov_type: Literal["nonrobust", "HC1", "HC2", "cluster"] = "nonrobust",
            use_t: bool = True, alpha: float = 0.05) -> ModelResult:
    """OLS with classical, heteroscedasticity-robust or cluster-robust (by client) errors.

    Above :data:`TALL_ROWS` rows, classical and HC1 errors come from the normal equations
    (:func:`fit_ols_design`: the same estimates to 1e-10, a fraction of the memory and
    time)."""
    return fit_ols_design(y, lambda start, stop: X[start:stop], names=names, clients=clients,
                          cov_type=cov_type, use_t=use_t, alpha=alpha)


def fit_ols_design(y: np.ndarray, design: Callable[[int, int], np.ndarray], *,
                   names: Sequence[str], clients: np.ndarray | None = None,
                   cov_type: Literal["nonrobust", "HC1", "HC2", "cluster"] = "nonrobust",
                   use_t: bool = True, alpha: float = 0.05) -> ModelResult:
    """:func:`fit_ols` of a design given as ``design(start, stop)``, its rows start to stop:
    above :data:`TALL_ROWS` rows, with classical or HC1 errors, it is built a block at a
    time, never whole (a design of indicators x effects over 12M units is a gigabyte)."""
    if len(y) > TALL_ROWS and cov_type in ("nonrobust", "HC1"):
        tall = _fit_ols_tall(np.asarray(y, dtype=float), design, len(names), names=names,
                             clients=clients, cov_type=cov_type, use_t=use_t, alpha=alpha)
        if tall is not None:
            return tall
    return _fit_ols_statsmodels(y, design(0, len(y)), names=names, clients=clients,
                                cov_type=cov_type, use_t=use_t, alpha=alpha)


def _fit_ols_statsmodels(y: np.ndarray, X: np.ndarray, *, names: Sequence[str],
                         clients: np.ndarray | None, cov_type: str, use_t: bool,
                         alpha: float) -> ModelResult:
    model = sm.OLS(y, _named(X, names))
    if cov_type == "cluster":
        if clients is None:
            raise AnalysisError("cluster-robust OLS needs client ids")
        kwargs: dict[str, Any] = {"cov_type": "cluster", "cov_kwds": {"groups": clients}}
    else:
        kwargs = {"cov_type": cov_type}
    res, caught = _run(lambda: model.fit(use_t=use_t, **kwargs), "OLS")
    df = float(res.df_resid_inference if cov_type == "cluster" else res.df_resid) \
        if use_t else math.inf
    table = _table(names, res.params, res.bse, df, alpha)
    n_clients = _n_clients(clients) if clients is not None else len(y)
    return ModelResult(table, OLS_LABELS[cov_type], len(y), n_clients, df, float(res.llf),
                       caught, res)


def _fit_ols_tall(y: np.ndarray, design: Callable[[int, int], np.ndarray], k: int, *,
                  names: Sequence[str], clients: np.ndarray | None, cov_type: str,
                  use_t: bool, alpha: float) -> ModelResult | None:
    """OLS of many rows from X'X, X'y and the HC1 meat summed block by block (``design(a, b)``
    gives rows a to b of X); None when X'X is near singular or a value is not finite
    (statsmodels then decides).

    Written here because statsmodels fits OLS through the pseudo-inverse of X, which holds
    several n x k copies and an SVD of X: at 12M rows and 11 columns that is gigabytes and a
    minute, where the normal equations need k x k sums (X has full rank and is well
    conditioned in every claims design: indicators, centred covariates)."""
    n = len(y)
    if n <= k or not np.isfinite(y).all():
        return None
    blocks = [(start, min(start + TALL_BLOCK_ROWS, n)) for start in range(0, n, TALL_BLOCK_ROWS)]
    xtx, xty = np.zeros((k, k)), np.zeros(k)
    for start, stop in blocks:
        block = np.asarray(design(start, stop), dtype=float)
        if not np.isfinite(block).all():
            return None
        xtx += block.T @ block
        xty += block.T @ y[start:stop]
    scale = np.sqrt(np.diag(xtx))
    if not (scale > 0).all():
        return None
    scaled = xtx / np.outer(scale, scale)
    eigen = np.linalg.eigvalsh(scaled)
    if eigen[0] <= 1e-10 * eigen[-1]:  # near collinear: leave it to the pseudo-inverse
        return None
    inverse = np.linalg.inv(scaled) / np.outer(scale, scale)
    beta = inverse @ xty
    ssr, meat = 0.0, np.zeros((k, k))
    for start, stop in blocks:
        block = np.asarray(design(start, stop), dtype=float)
        resid = y[start:stop] - block @ beta
        ssr += float(resid @ resid)
        if cov_type == "HC1":
            meat += (block * (resid * resid)[:, None]).T @ block
    df_resid = float(n - k)
    if cov_type == "HC1":
        covariance = inverse @ meat @ inverse * (n / df_resid)
    else:
        covariance = inverse * (ssr / df_resid)
    df = df_resid if use_t else math.inf
    table = _table(names, beta, np.sqrt(np.diag(covariance)), df, alpha)
    llf = -n / 2 * (math.log(2 * math.pi) + math.log(ssr / n) + 1)

    def in_units() -> Any:
        return _fit_ols_statsmodels(y, design(0, n), names=names, clients=clients,
                                    cov_type=cov_type, use_t=use_t, alpha=alpha).results

    n_clients = _n_clients(clients) if clients is not None else n
    return ModelResult(table, OLS_LABELS[cov_type], n, n_clients, df, llf, (), None,
                       in_units, covariance)


def fit_gee(y: np.ndarray, X: np.ndarray, clients: np.ndarray, *, names: Sequence[str],
            family: Literal["gaussian", "binomial"] = "gaussian",
            exchangeable: bool = True, alpha: float = 0.05) -> ModelResult:
    """GEE with an exchangeable (or independence) working correlation and robust SE."""
    fam = sm.families.Binomial() if family == "binomial" else sm.families.Gaussian()
    cov = sm.cov_struct.Exchangeable() if exchangeable else sm.cov_struct.Independence()
    model = sm.GEE(y, _named(X, names), groups=clients, family=fam, cov_struct=cov)
    res, caught = _run(model.fit, "GEE")
    table = _table(names, res.params, res.bse, math.inf, alpha)
    method = f"GEE {family}, {'exchangeable' if exchangeable else 'independence'}, robust SE"
    return ModelResult(table, method, len(y), _n_clients(clients), math.inf, math.nan,
                       caught, res)


def fit_logit(y: np.ndarray, X: np.ndarray, clients: np.ndarray, *,
                  names: Sequence[str], alpha: float = 0.05) -> ModelResult:
    """Logistic regression (ML, Newton) with cluster-robust errors by client.

    The same estimator as GEE with an independence working correlation, several times faster
    than GEE on a million sessions.
    """
    model = sm.Logit(y, _named(X, names))
    res, caught = _run(lambda: model.fit(disp=0, cov_type="cluster",
                                         cov_kwds={"groups": clients}), "logistic regression")
    table = _table(names, res.params, res.bse, math.inf, alpha)
    return ModelResult(table, "logistic regression, cluster-robust SE by client", len(y),
                       _n_clients(clients), math.inf, float(res.llf), caught, res)


def _cluster_covariance(bread: np.ndarray, scores: np.ndarray, n_obs: int) -> np.ndarray:
    """Cluster-robust sandwich from the inverse Hessian and per-client score sums, with
    statsmodels' small-sample correction G/(G-1) * (N-1)/(N-k) (N counted in sessions)."""
    n_clients, k = scores.shape
    correction = n_clients / (n_clients - 1) * (n_obs - 1) / (n_obs - k)
    return correction * bread @ (scores.T @ scores) @ bread


def fit_ols_cluster_sums(xtx: np.ndarray, xty: np.ndarray, n_obs: int, *,
                         names: Sequence[str], alpha: float = 0.05) -> ModelResult:
    """Cluster-robust OLS from per-client cross-products ``X_g'X_g`` (G, k, k) and ``X_g'y_g``.

    Gives statsmodels' ``OLS(...).fit(cov_type="cluster")`` on the sessions (same small-sample
    correction, t with G - 1 df) without the sessions: the score of client g is
    ``X_g'y_g - X_g'X_g b``. Written here because no library fits from these sums, and they
    are what a partitioned dataset larger than memory can be reduced to.
    """
    n_clients = xty.shape[0]
    if n_clients < 2:
        raise FitFailed("cluster-robust OLS needs at least two clients")
    bread_inv = xtx.sum(axis=0)
    try:
        bread = np.linalg.inv(bread_inv)
    except np.linalg.LinAlgError as error:
        raise FitFailed(f"OLS failed: singular design: {error}") from error
    params = bread @ xty.sum(axis=0)
    cov = _cluster_covariance(bread, xty - np.einsum("gij,j->gi", xtx, params), n_obs)
    df = float(n_clients - 1)
    table = _table(names, params, np.sqrt(np.diag(cov)), df, alpha)
    return ModelResult(table, "OLS, cluster-robust SE by client", n_obs, n_clients, df)


def _pooled_by_design(X: np.ndarray, events: np.ndarray, trials: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binomial counts summed over rows with the same covariates, when that shrinks them.

    The binomial likelihood depends on the counts only through these sums, so the GLM fitted
    on them has the same estimates; a million clients' counts by a pressure scale of a few
    dozen values become a few dozen rows (on all 5M rows the GLM took 12.6 s and made the
    claims run's memory peak)."""
    design = pd.DataFrame(X)
    keys = [c for c in design.columns if np.ptp(X[:, c]) > 0]
    if not keys:
        return X, events, trials
    pooled = design[keys].assign(_events=events, _trials=trials).groupby(
        keys, sort=True)[["_events", "_trials"]].sum()
    if len(pooled) > len(X) // 2:
        return X, events, trials
    fit_X = np.empty((len(pooled), X.shape[1]))
    index = pooled.index.to_frame(index=False)
    for c in design.columns:
        fit_X[:, c] = index[c].to_numpy(dtype=float) if c in keys else X[0, c]
    return fit_X, pooled["_events"].to_numpy(dtype=float), pooled["_trials"].to_numpy(dtype=float)


def fit_logit_counts(events: np.ndarray, trials: np.ndarray, X: np.ndarray,
                     clients: np.ndarray, *, names: Sequence[str],
                     alpha: float = 0.05) -> ModelResult:
    """Logistic regression on binomial counts (one row per client and covariate value).

    The estimates come from statsmodels' binomial GLM; the cluster-robust covariance is the
    sandwich of :func:`fit_logit` on the underlying sessions (a session's score is
    ``x (event - p)``, so a row's is ``x (events - trials p)``), with its small-sample
    correction counted in sessions, so both give the same numbers.
    """
    fit_X, fit_events, fit_trials = _pooled_by_design(X, events, trials)
    endog = np.column_stack([fit_events, fit_trials - fit_events])
    model = sm.GLM(endog, fit_X, family=sm.families.Binomial())
    res, caught = _run(lambda: model.fit(), "logistic regression")
    params = np.asarray(res.params, dtype=float)
    p = 1.0 / (1.0 + np.exp(-(X @ params)))
    weights = trials * p * (1 - p)
    try:
        bread = np.linalg.inv((X * weights[:, None]).T @ X)
    except np.linalg.LinAlgError as error:
        raise FitFailed(f"logistic regression failed: {error}") from error
    codes = pd.factorize(clients)[0]
    row_scores = X * (events - trials * p)[:, None]
    n_clients = int(codes.max()) + 1
    scores = np.column_stack([np.bincount(codes, weights=row_scores[:, j], minlength=n_clients)
                              for j in range(X.shape[1])])
    n_obs = int(trials.sum())
    cov = _cluster_covariance(bread, scores, n_obs)
    table = _table(names, params, np.sqrt(np.diag(cov)), math.inf, alpha)
    return ModelResult(table, "logistic regression, cluster-robust SE by client", n_obs,
                       scores.shape[0], math.inf, math.nan, caught, res)


def slopes_from_sums(n: np.ndarray, sw: np.ndarray, sy: np.ndarray, sww: np.ndarray,
                     swy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-client OLS slopes of y on t from sums (n, sum t, sum y, sum t^2, sum t*y).

    Returns (mask of clients with two or more distinct t, their slopes): the criterion of
    :func:`client_slopes`, for time values that are not negative.
    """
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sxx = sww - sw * sw / n
        sxy = swy - sw * sy / n
        scale = np.maximum(np.abs(sw), 1.0)
        ok = (n >= 2) & (sxx > 1e-12 * scale * scale)
        return ok, sxy[ok] / sxx[ok]


def _from_formula_result(res: Any, method: str, n_clients: int, alpha: float,
                         caught: tuple[str, ...], k: int | None = None) -> ModelResult:
    params = res.fe_params if hasattr(res, "fe_params") else res.params
    k = len(params) if k is None else k
    bse = np.asarray(res.bse)[:k]
    df = float(res.df_resid) if getattr(res, "use_t", False) else math.inf
    table = _table(list(params.index), np.asarray(params), bse, df, alpha)
    llf = float(getattr(res, "llf", math.nan)) if not method.startswith("GEE") else math.nan
    return ModelResult(table, method, int(res.nobs), n_clients, df, llf, caught, res)


def mixed_formula(data: pd.DataFrame, formula: str, groups: str, *,
                  re_formula: str | None = None, reml: bool = True,
                  alpha: float = 0.05) -> ModelResult:
    """MixedLM from a formula, e.g. ``mixed_formula(d, "y ~ t", "id", re_formula="~t")``."""
    data = _prepared(data, groups)
    model = smf.mixedlm(formula, data, groups=data[groups], re_formula=re_formula)
    res, caught = _run(lambda: model.fit(reml=reml), "MixedLM")
    method = "MixedLM " + ("REML" if reml else "ML")
    return _from_formula_result(res, method, data[groups].nunique(), alpha, caught,
                                k=len(res.fe_params))


def gee_formula(data: pd.DataFrame, formula: str, groups: str, *,
                family: Literal["gaussian", "binomial"] = "gaussian",
                cov_struct: Literal["exchangeable", "independence"] = "exchangeable",
                alpha: float = 0.05) -> ModelResult:
    """GEE from a formula with robust (sandwich) standard errors."""
    data = _prepared(data, groups)
    fam = sm.families.Binomial() if family == "binomial" else sm.families.Gaussian()
    cov = (sm.cov_struct.Exchangeable() if cov_struct == "exchangeable"
           else sm.cov_struct.Independence())
    model = smf.gee(formula, groups, data, family=fam, cov_struct=cov)
    res, caught = _run(model.fit, "GEE")
    return _from_formula_result(res, f"GEE {family}, {cov_struct}, robust SE",
                                data[groups].nunique(), alpha, caught)


def ols_formula(data: pd.DataFrame, formula: str, *,
                cov_type: Literal["nonrobust", "HC1", "HC2", "cluster"] = "nonrobust",
                groups: str | None = None, use_t: bool = True,
                alpha: float = 0.05) -> ModelResult:
    """OLS from a formula; ``cov_type="cluster"`` clusters on the ``groups`` column."""
    data = _prepared(data, groups)
    model = smf.ols(formula, data)
    kwargs: dict[str, Any] = {"cov_type": cov_type}
    if cov_type == "cluster":
        if groups is None:
            raise AnalysisError("cluster-robust OLS needs a groups column")
        codes = pd.factorize(data.loc[model.data.row_labels, groups], sort=True)[0]
        kwargs["cov_kwds"] = {"groups": codes}
    res, caught = _run(lambda: model.fit(use_t=use_t, **kwargs), "OLS")
    n_clients = data[groups].nunique() if groups else int(res.nobs)
    out = _from_formula_result(res, f"OLS ({cov_type})", n_clients, alpha, caught)
    if use_t and cov_type == "cluster":
        df = float(res.df_resid_inference)
        table = _table(out.coefficients.index, out.coefficients["estimate"],
                       out.coefficients["se"], df, alpha)
        out = ModelResult(table, out.method, out.n_obs, n_clients, df, out.llf, caught, res)
    return out


def _prepared(data: pd.DataFrame, groups: str | None) -> pd.DataFrame:
    """Sort by client and drop unused categories (MixedLM raises on unused levels)."""
    if groups is not None and groups not in data.columns:
        raise AnalysisError(f"grouping column {groups!r} is not in the data")
    out = data.sort_values(groups, kind="stable") if groups else data
    categorical = [c for c in out.columns if isinstance(out[c].dtype, pd.CategoricalDtype)]
    return out.assign(**{c: out[c].cat.remove_unused_categories() for c in categorical})


def wald_equal(result: ModelResult, terms: Sequence[str]) -> float:
    """P-value of the Wald test that the listed coefficients are all equal."""
    index = list(result.coefficients.index)
    if len(terms) < 2:
        return math.nan
    R = np.zeros((len(terms) - 1, len(index)))
    last = index.index(terms[-1])
    for row, term in enumerate(terms[:-1]):
        R[row, index.index(term)] = 1.0
        R[row, last] = -1.0
    if result.results is None and result.covariance is not None:  # a fit made from sums
        b = R @ result.coefficients["estimate"].to_numpy(dtype=float)
        wald = float(b @ np.linalg.solve(R @ result.covariance @ R.T, b))
        q = len(terms) - 1
        p = float(stats.chi2.sf(wald, q) if math.isinf(result.df)
                  else stats.f.sf(wald / q, q, result.df))
        return p if math.isfinite(p) else math.nan
    with recorded_warnings():
        test = result.results.wald_test(R, scalar=True, use_f=not math.isinf(result.df))
    p = float(np.asarray(test.pvalue))
    return p if np.isfinite(p) else math.nan


def equal_effects_p(estimates: Sequence[float], ses: Sequence[float]) -> float:
    """Wald (Cochran's Q) test that independent group estimates share one value."""
    b, se = np.asarray(estimates, dtype=float), np.asarray(ses, dtype=float)
    ok = np.isfinite(b) & np.isfinite(se) & (se > 0)
    b, w = b[ok], 1 / se[ok] ** 2
    if b.size < 2:
        return math.nan
    pooled = float(np.sum(w * b) / np.sum(w))
    q = float(np.sum(w * (b - pooled) ** 2))
    return float(stats.chi2.sf(q, b.size - 1))


def tost_p(estimate: float, se: float, margin: float, df: float = math.inf) -> float:
    """Two one-sided tests against ``+-margin``: p < alpha iff the 1-2*alpha CI lies inside."""
    if not (np.isfinite(estimate) and np.isfinite(se) and np.isfinite(margin)) or se <= 0 \
            or margin <= 0:
        return math.nan
    dist = stats.norm if math.isinf(df) else stats.t(df)
    p_lower = dist.sf((estimate + margin) / se)   # H0: effect <= -margin
    p_upper = dist.cdf((estimate - margin) / se)  # H0: effect >= +margin
    return float(max(p_lower, p_upper))


def adjust_pvalues(p: pd.Series, method: Literal["holm", "fdr_bh"] = "holm",
                   alpha: float = 0.05) -> pd.Series:
    """Multiplicity-adjusted p-values over the finite entries; NaN stays NaN."""
    out = pd.Series(np.nan, index=p.index, dtype=float)
    finite = p.notna() & np.isfinite(p.astype(float))
    if finite.any():
        out[finite] = multipletests(p[finite].to_numpy(float), alpha=alpha, method=method)[1]
    return out


def client_means(values: np.ndarray, clients: np.ndarray,
                 n_codes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-client mean of ``values`` (clients as integer codes): (codes, means, counts)."""
    n_codes = int(clients.max()) + 1 if n_codes is None and clients.size else (n_codes or 0)
    counts = np.bincount(clients, minlength=n_codes)
    sums = np.bincount(clients, weights=values, minlength=n_codes)
    present = np.flatnonzero(counts)
    return present, sums[present] / counts[present], counts[present]


def client_slopes(y: np.ndarray, t: np.ndarray, clients: np.ndarray,
                  n_codes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-client OLS slope of ``y`` on ``t`` for clients with two or more distinct ``t``."""
    n_codes = int(clients.max()) + 1 if n_codes is None and clients.size else (n_codes or 0)
    n = np.bincount(clients, minlength=n_codes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.bincount(clients, weights=t, minlength=n_codes) / n
        y_mean = np.bincount(clients, weights=y, minlength=n_codes) / n
        dt = t - t_mean[clients]
        sxx = np.bincount(clients, weights=dt * dt, minlength=n_codes)
        sxy = np.bincount(clients, weights=dt * (y - y_mean[clients]), minlength=n_codes)
        scale = np.maximum(np.bincount(clients, weights=np.abs(t), minlength=n_codes), 1.0)
        ok = (n >= 2) & (sxx > 1e-12 * scale * scale)
        present = np.flatnonzero(ok)
        return present, sxy[present] / sxx[present], n[present].astype(int)


def anova_icc(values: np.ndarray, clients: np.ndarray) -> float:
    """One-way ANOVA (moment) estimate of the intra-client correlation, floored at 0.

    Used to see before fitting whether a random intercept would sit on the boundary.
    """
    codes = pd.factorize(clients)[0]
    _, means, counts = client_means(values, codes)
    n, g = len(values), len(means)
    if g < 2 or n <= g:
        return math.nan
    ss_between = float(np.sum(counts * (means - values.mean()) ** 2))
    ss_within = float(np.sum((values - means[codes]) ** 2))
    ms_between, ms_within = ss_between / (g - 1), ss_within / (n - g)
    n0 = (n - float(np.sum(counts**2)) / n) / (g - 1)
    var_between = max((ms_between - ms_within) / n0, 0.0)
    total = var_between + ms_within
    return var_between / total if total > 0 else math.nan


def slope_variance(y: np.ndarray, t: np.ndarray,
                   clients: np.ndarray) -> tuple[float, float, float]:
    """Moment estimates (share, slope variance, residual variance) of per-client slopes.

    ``share`` is the between-client slope variance as a share of the spread of per-client
    OLS slopes; 0 means that spread is no larger than their sampling error, so a random
    slope would sit on the boundary of the parameter space.
    """
    nan3 = (math.nan, math.nan, math.nan)
    codes = pd.factorize(clients)[0]
    present, slopes, n = client_slopes(y, t, codes)
    if present.size < 3:
        return nan3
    size = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=size).astype(float)
    t_mean = np.bincount(codes, weights=t, minlength=size) / np.maximum(counts, 1)
    y_mean = np.bincount(codes, weights=y, minlength=size) / np.maximum(counts, 1)
    slope_all = np.zeros(size)
    slope_all[present] = slopes
    resid = (y - y_mean[codes]) - slope_all[codes] * (t - t_mean[codes])
    use = np.isin(codes, present)
    dof = float(np.sum(n - 2))
    if dof <= 0:
        return nan3
    sigma2 = float(np.sum(resid[use] ** 2)) / dof
    dt = t - t_mean[codes]
    sxx = np.bincount(codes, weights=dt * dt, minlength=size)[present]
    spread = float(np.var(slopes, ddof=1))
    true = max(spread - sigma2 * float(np.mean(1 / sxx)), 0.0)
    return (true / spread if spread > 0 else 0.0), true, sigma2


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8,
                              ratio: float | None = None) -> float:
    """Smallest true effect (in the unit of ``sd``) detected with ``power`` at ``n`` clients.

    ``ratio=None`` is a one-sample (paired) t-test on client-level values; otherwise a
    two-sample t-test with ``n`` clients in the first arm and ``ratio * n`` in the second.
    """
    if not (np.isfinite(sd) and sd > 0 and n >= 3):
        return math.nan
    with recorded_warnings():
        try:
            if ratio is None:
                d = TTestPower().solve_power(nobs=n, alpha=alpha, power=power)
            else:
                d = TTestIndPower().solve_power(nobs1=n, alpha=alpha, power=power, ratio=ratio)
        except (ValueError, RuntimeError):
            return math.nan
    d = float(np.asarray(d).squeeze())
    return d * sd if np.isfinite(d) else math.nan


def clients_needed(mcid: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                   ratio: float | None = None) -> float:
    """Clients needed (all arms together) to detect ``mcid`` with ``power`` given ``sd``."""
    if not (np.isfinite(sd) and sd > 0 and np.isfinite(mcid) and mcid > 0):
        return math.nan
    effect = mcid / sd
    with recorded_warnings():
        try:
            if ratio is None:
                n = TTestPower().solve_power(effect_size=effect, alpha=alpha, power=power)
                total = float(np.asarray(n).squeeze())
            else:
                n1 = TTestIndPower().solve_power(effect_size=effect, alpha=alpha, power=power,
                                                 ratio=ratio)
                total = float(np.asarray(n1).squeeze()) * (1 + ratio)
        except (ValueError, RuntimeError):
            return math.nan
    if not np.isfinite(total):
        return math.nan
    return float(max(math.ceil(total), 3))
