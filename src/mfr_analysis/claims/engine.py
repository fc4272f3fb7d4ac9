"""The claims engine: every registered claim over every cell, then multiplicity, verdicts
and the literature overlay; and :func:`refit`, which hands back the model of one row.

``evaluate_claims(sessions)`` = ``evaluate_inputs(claim_inputs(sessions))``: the session
table is reduced to per-client inputs (:mod:`mfr_analysis.claims.inputs`) by each claim's
analysis kind (:data:`mfr_analysis.claims.kinds.KINDS`), and the inputs are evaluated. The
Dask path reduces partitions of whole clients the same way and combines them
(:func:`mfr_analysis.claims.combine_inputs`) before :func:`evaluate_inputs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import pandas as pd

from mfr_analysis import config
from mfr_analysis.claims import sensitivity
from mfr_analysis.claims.adjusted import ADJUSTED_COLUMNS, FLOAT_COLUMNS, TEXT_COLUMNS
from mfr_analysis.claims.base import ALL, Cell, Extraction, Job, series_key
from mfr_analysis.claims.inputs import ClaimInputs, Prepared, prepare
from mfr_analysis.claims.kinds import KINDS, Registry, kind_of, mcid_key_problem, resolve
from mfr_analysis.claims.registry import literature
from mfr_analysis.claims.verdicts import decide_verdict, verdict_notes
from mfr_analysis.errors import AnalysisError, InputError
from mfr_analysis.models import adjust_pvalues
from mfr_analysis.progress import progress_bar
from mfr_analysis.settings import AnalysisSettings

__all__ = [
    "CLAIMS_COLUMNS",
    "EXTRA_COLUMNS",
    "claim_inputs",
    "primary_rows",
    "evaluate_claims",
    "evaluate_inputs",
    "extract_inputs",
    "refit",
]

CLAIMS_COLUMNS: tuple[str, ...] = (
    "claim_id", "audience_group", "outcome", "estimate", "ci_low", "ci_high", "p_value",
    "p_adjusted", "mcid", "n_clients", "n_sessions", "method", "verdict", "note",
)
EXTRA_COLUMNS: tuple[str, ...] = (
    "unit", "design", "n_control_clients", "threshold_source", "se", "tost_p",
    "responder_share", "responders", "responder_clients", "responders_control",
    "responder_clients_control", "mde", "clients_needed", "heterogeneity_p",
    "literature_effect", "literature_smd", "literature_reference", *ADJUSTED_COLUMNS,
    "sensitivity",
)


# ---------------------------------------------------------------------------- settings ---

def analysis_settings(settings: AnalysisSettings | None = None, **options: Any,
                      ) -> AnalysisSettings:
    """One :class:`AnalysisSettings` from ``settings`` and keyword options (those that are
    not None replace its fields); a bad value is an :class:`AnalysisError` (one line)."""
    given = {k: v for k, v in options.items() if v is not None}
    if settings is not None and not isinstance(settings, AnalysisSettings):
        raise AnalysisError(f"settings: expected an AnalysisSettings, got "
                            f"{type(settings).__name__}")
    try:
        if settings is None:
            return AnalysisSettings(**given)
        return replace(settings, **given) if given else settings
    except InputError as error:
        raise AnalysisError(str(error)) from None


def _checked(settings: AnalysisSettings, registry: Registry) -> pd.DataFrame:
    """The registry to evaluate, with the settings' MCID overrides checked against it
    (a registry other than the default one can name other keys)."""
    table = resolve(registry)
    if registry is not None and settings.mcid_overrides:
        problem = mcid_key_problem(settings.mcid_overrides, table)
        if problem:
            raise AnalysisError(problem)
    return table


# ------------------------------------------------------------------------------ inputs ---

def extract_inputs(prep: Prepared, registry: pd.DataFrame, *,
                   keep_all: bool = False) -> ClaimInputs:
    """The claims inputs of a prepared table: every registered claim's series, as per-client
    sums and the sessions of small cells (of every cell with ``keep_all``, for a refit).

    Each series keeps the session limit of its kind (:attr:`Kind.session_limit`), read now
    from :data:`~mfr_analysis.claims.kinds.KINDS`."""
    extraction = Extraction({name: kind.session_limit for name, kind in KINDS.items()},
                            keep_all)
    series, found = {}, {}
    for _, claim in registry.iterrows():
        got, seen = kind_of(claim).extract(prep, claim, extraction)
        series.update(got)
        found[str(claim["claim_id"])] = seen
    groups = tuple(g for g in pd.unique(prep.group) if g != "")
    return ClaimInputs(series, found, groups, prep.n)


def claim_inputs(sessions: pd.DataFrame, *, registry: Registry = None) -> ClaimInputs:
    """What the claims models need from a derived session table (per-client sums and the
    sessions of small cells; see :mod:`mfr_analysis.claims.inputs`)."""
    return extract_inputs(prepare(sessions), resolve(registry))


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


# ---------------------------------------------------------------------------- evaluate ---

def _rows(job: Job, registry: pd.DataFrame, progress: bool) -> list[dict]:
    rows: list[dict] = []
    with progress_bar(total=len(registry), desc="claims", unit="claim", disable=not progress,
              leave=False) as bar:
        for _, claim in registry.iterrows():
            bar.set_postfix_str(str(claim["claim_id"]))
            rows += kind_of(claim).fit(job, claim)
            bar.update()
    return rows


def evaluate_inputs(
    inputs: ClaimInputs,
    *,
    settings: AnalysisSettings | None = None,
    alpha: float | None = None,
    correction: Literal["holm", "fdr_bh"] | None = None,
    min_clients: int | None = None,
    mcid_overrides: Mapping[str, float] | None = None,
    groups: Sequence[str] | None = None,
    progress: bool = False,
    registry: Registry = None,
) -> pd.DataFrame:
    """The claims table from :func:`claim_inputs` (or the combined inputs of partitions).

    Options as for :func:`evaluate_claims`; ``registry`` must be the one the inputs were
    extracted with."""
    chosen = analysis_settings(settings, alpha=alpha, correction=correction,
                               min_clients=min_clients, mcid_overrides=mcid_overrides)
    table = _checked(chosen, registry)
    job = Job(inputs, _cells(inputs, groups), chosen)
    rows = _rows(job, table, progress)
    return _finish(rows, chosen) if rows else _empty_table()


def evaluate_claims(
    sessions: pd.DataFrame,
    *,
    settings: AnalysisSettings | None = None,
    alpha: float | None = None,
    correction: Literal["holm", "fdr_bh"] | None = None,
    min_clients: int | None = None,
    mcid_overrides: Mapping[str, float] | None = None,
    groups: Sequence[str] | None = None,
    progress: bool = False,
    registry: Registry = None,
) -> pd.DataFrame:
    """Test every registered claim overall and per audience group; return the claims table.

    Parameters
    ----------
    sessions
        A derived session table (:func:`mfr_analysis.derive.derive`); it is not changed.
    settings
        The run's :class:`~mfr_analysis.settings.AnalysisSettings` (default: the defaults).
    alpha, correction, min_clients, mcid_overrides
        Keyword forms of the same settings; each one given replaces that field of
        ``settings``.
    groups
        Audience groups to report besides all clients (default: every group present).
    progress
        Show a progress bar per claim.
    registry
        Another claims registry (a path or a table): see :mod:`mfr_analysis.claims.registry`.

    Returns
    -------
    pandas.DataFrame
        One row per claim, audience group and outcome (:data:`CLAIMS_COLUMNS`, then
        :data:`EXTRA_COLUMNS`).

    Raises
    ------
    AnalysisError
        (a ``ValueError``) for unusable input or options; every other problem (too few
        clients, a missing outcome, a failed fit) becomes a verdict.
    """
    chosen = analysis_settings(settings, alpha=alpha, correction=correction,
                               min_clients=min_clients, mcid_overrides=mcid_overrides)
    table = _checked(chosen, registry)  # before the costly part
    inputs = claim_inputs(sessions, registry=table)
    claims = evaluate_inputs(inputs, settings=chosen, groups=groups, progress=progress,
                             registry=table)
    return with_sensitivity(claims, sessions, table, [c.name for c in _cells(inputs, groups)],
                            chosen)


def with_sensitivity(claims: pd.DataFrame, sessions: pd.DataFrame, registry: pd.DataFrame,
                     groups: Sequence[str], settings: AnalysisSettings) -> pd.DataFrame:
    """The claims table followed by the lasting-relief missing-data sensitivity rows
    (:mod:`mfr_analysis.claims.sensitivity`; primary rows unchanged, outside the
    multiplicity family)."""
    lasting = registry.loc[registry["claim_id"] == sensitivity.CLAIM_ID]
    if claims.empty or lasting.empty or not (
            (claims["claim_id"] == sensitivity.CLAIM_ID)
            & (claims["outcome"] == sensitivity.OUTCOME)).any():
        return claims
    rows = sensitivity.sensitivity_rows(sessions, lasting.iloc[0], groups, settings=settings)
    if rows.empty:
        return claims
    rows = rows.reindex(columns=claims.columns).astype(claims.dtypes.to_dict())
    return pd.concat([claims, rows], ignore_index=True)


def primary_rows(claims: pd.DataFrame) -> pd.DataFrame:
    """The primary rows of a claims table (``sensitivity == ""``): the rows the scorecard,
    findings, figures and index list; a table without the column is returned as it is."""
    if "sensitivity" not in claims:
        return claims
    keep = claims["sensitivity"].fillna("").astype("str") == ""
    return claims.loc[keep].reset_index(drop=True)


def refit(sessions: pd.DataFrame, claim_id: str, audience_group: str = ALL,
          outcome: str | None = None, *, settings: AnalysisSettings | None = None,
          registry: Registry = None) -> Any:
    """The statsmodels results of the model behind one claims row, to read in full.

    Fits the claim again on ``sessions`` for one cell, exactly as :func:`evaluate_claims`
    does, and returns the fitted statsmodels results object (``.summary()``, ``.params``,
    ``.conf_int()``...) of the model that gave the row its estimate: a MixedLM, OLS with
    cluster-robust or HC1 errors, GEE or a logistic regression, including a fallback model
    when the first one failed (the row's ``method`` says which). Its confidence intervals
    are not adjusted for multiplicity (the row's ``p_adjusted`` is).

    Rows fitted from per-client sums are refitted on the cell's sessions with the
    equivalent session-level model: a contrast above its session limit with OLS and
    cluster-robust errors on the sessions, adverse events above theirs with a logistic
    regression with cluster-robust errors on the sessions (the same numbers as the row).
    Rows fitted on per-client means or slopes (a large cell's change, trend or dose) hand
    back that client-level OLS. A MixedLM is refitted in the data's units from the
    solution of the row's fit (which ran on standardised columns), so its coefficients are
    the row's estimate.

    Parameters
    ----------
    sessions
        The derived session table the claims table was computed from.
    claim_id
        A claim of the registry, e.g. ``"pain"``.
    audience_group
        ``"all"`` (the pooled row) or an audience group.
    outcome
        The row's outcome, needed when the claim has several (``"rom:knee_flexion_deg"``,
        ``"pain_followup"``...).
    settings, registry
        As for :func:`evaluate_claims` (``min_clients`` and ``alpha`` decide the model).

    Returns
    -------
    statsmodels results
        The fitted model of the row, e.g. ``MixedLMResults`` or ``RegressionResults``.

    Raises
    ------
    AnalysisError
        For an unknown claim, group or outcome, or a row without a model (not measured,
        too few clients, no variation, a failed fit).

    Examples
    --------
    >>> from mfr_analysis.claims import refit
    >>> from mfr_analysis.simulate import simulate_sessions
    >>> sessions, _ = simulate_sessions(80, seed=3)  # 80 clients, a fifth of them controls
    >>> results = refit(sessions, "pain")
    >>> type(results).__name__
    'MixedLMResultsWrapper'
    >>> results.model.exog_names
    ['intercept', 'mfr_vs_control', 'pre']
    >>> round(float(results.fe_params["mfr_vs_control"]), 2)
    -1.17
    >>> summary = results.summary()  # print(summary) shows the whole model
    >>> summary.tables[1].loc["mfr_vs_control", ["Coef.", "Std.Err.", "[0.025", "0.975]"]]
    Coef.       -1.173
    Std.Err.     0.233
    [0.025      -1.629
    0.975]      -0.718
    Name: mfr_vs_control, dtype: str
    """
    chosen = analysis_settings(settings)
    table = _checked(chosen, registry)
    claim_rows = table.loc[table["claim_id"] == claim_id]
    if claim_rows.empty:
        raise AnalysisError(f"unknown claim {claim_id!r}; known: "
                            f"{', '.join(map(str, table['claim_id']))}")
    inputs = extract_inputs(prepare(sessions), claim_rows, keep_all=True)
    group = str(audience_group)
    if group != ALL and group not in inputs.groups:
        raise AnalysisError(f"audience group {group!r} has no sessions; present: "
                            f"{', '.join(inputs.groups) or 'none'}")
    job = Job(inputs, [Cell(ALL)] + ([Cell(group)] if group != ALL else []), chosen,
              keep_models=True)
    rows = [r for r in _rows(job, claim_rows, progress=False)
            if r["audience_group"] == group]
    outcomes = list(dict.fromkeys(str(r["outcome"]) for r in rows))
    if outcome is None and len(outcomes) > 1:
        raise AnalysisError(f"claim {claim_id!r} has several outcomes; choose one of "
                            f"{', '.join(outcomes)}")
    picked = [r for r in rows if outcome is None or r["outcome"] == outcome]
    if not picked:
        raise AnalysisError(f"claim {claim_id!r} has no outcome {outcome!r}; its outcomes: "
                            f"{', '.join(outcomes)}")
    found = picked[0]
    if found["_model"] is None:
        why = str(found["note"]).split("; ")[0]
        raise AnalysisError(f"{claim_id} / {group} / {found['outcome']}: no model was fitted "
                            f"({found['_status']}: {why})")
    results = found["_model"].statsmodels_results()
    series = inputs.series.get(series_key(claim_rows.iloc[0], str(found["outcome"])))
    if series is not None and hasattr(getattr(results, "model", None), "data"):
        results.model.data.ynames = _dependent(series.shape, str(found["outcome"]),
                                               str(found["method"]))
    return results


def _dependent(shape: str, outcome: str, method: str) -> str:
    """The dependent variable of a row's model in words, for its summary."""
    per_client = method.startswith(("client-level", "two-stage"))
    if shape in ("change", "contrast"):
        return f"{outcome} change" + (", client mean" if per_client else "")
    if shape in ("trend", "dose"):
        return f"{outcome} slope per client" if per_client else outcome
    return f"{outcome} (any)"


# ------------------------------------------------------------------------------ finish ---

def _literature_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Published effect per row: SMD, the SMD in the row's unit, and the references."""
    lit = literature()
    smd, effect, refs = [], [], []
    keys = zip(table["claim_id"], table["audience_group"], table["outcome"],
               table["_sd_baseline"], strict=True)
    for claim_id, group, outcome, sd in keys:
        outcome = str(outcome).split(":", 1)[0]  # a per-measure row: its claim's outcome
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


def _finish(rows: list[dict], settings: AnalysisSettings) -> pd.DataFrame:
    """Multiplicity, verdicts, literature overlay and the final column order and types."""
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust_pvalues(table["p_value"], settings.correction, settings.alpha)
    table["verdict"] = [
        decide_verdict(s, p, e, d, m, t, design=g, alpha=settings.alpha)
        for s, p, e, d, m, t, g in zip(table["_status"], table["p_adjusted"],
                                       table["_effect"], table["_direction"], table["mcid"],
                                       table["tost_p"], table["design"], strict=True)]
    table["note"] = verdict_notes(table)
    table = _literature_columns(table)
    table = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    floats = ["estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "mcid", "se", "tost_p",
              "responder_share", "responders", "responder_clients", "responders_control",
              "responder_clients_control", "mde", "clients_needed", "heterogeneity_p",
              "literature_effect", "literature_smd", *FLOAT_COLUMNS]
    table["sensitivity"] = ""
    texts = ["claim_id", "audience_group", "outcome", "method", "verdict", "note", "unit",
             "design", "threshold_source", "literature_reference", *TEXT_COLUMNS,
             "sensitivity"]
    table = table.astype({**dict.fromkeys(floats, "float64"), **dict.fromkeys(texts, "str"),
                          "n_clients": "int64", "n_sessions": "int64",
                          "n_control_clients": "int64"})
    return table[list(CLAIMS_COLUMNS + EXTRA_COLUMNS)].reset_index(drop=True)


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in CLAIMS_COLUMNS + EXTRA_COLUMNS})
