"""The interface every analysis kind implements, and the machinery they share: cells, the
route of each cell (its sessions, or its per-client sums), and the rows of the claims table.

An analysis kind (one module: :mod:`~mfr_analysis.claims.change`,
:mod:`~mfr_analysis.claims.change_per_measure`, :mod:`~mfr_analysis.claims.trajectory`,
:mod:`~mfr_analysis.claims.contrast`, :mod:`~mfr_analysis.claims.dose`,
:mod:`~mfr_analysis.claims.adverse`) is a :class:`Kind`: what it extracts from a session
table into per-client inputs, the session limit up to which a cell is fitted on its
sessions, and its fit (a claim's rows over every cell). The kinds are registered in one
table, :data:`mfr_analysis.claims.kinds.KINDS`, keyed by the ``analysis`` column of
``data/claims.csv``: a new claim on a known kind is one row of that file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mfr_analysis.claims.adjusted import adjusted_columns
from mfr_analysis.claims.fits import CellFit, Options, guarded, heterogeneity
from mfr_analysis.claims.inputs import ClaimInputs, Prepared, SeriesData, pool_units
from mfr_analysis.models import equal_effects_p, tost_p

ALL = "all"  # the pooled cell and audience group


@dataclass(frozen=True)
class Extraction:
    """How a kind extracts its series: the session limit of every kind, by name, and
    whether every cell keeps its sessions (a refit needs them; evaluation does not)."""

    limits: Mapping[str, int]
    keep_all: bool = False


Extracted = tuple[dict[str, SeriesData], tuple[str, ...]]


@dataclass(frozen=True)
class Kind:
    """One analysis kind: the unit a claim row of ``data/claims.csv`` names in ``analysis``.

    ``extract(prep, claim, extraction)`` returns the claim's series (by
    :func:`series_key`) and what it found in the table (column or measure names, for the
    words of a not-measured row); ``session_limit`` is the number of usable sessions up to
    which a cell is fitted on its sessions (above it, on per-client sums; -1: always on
    sums); ``fit(job, claim)`` returns the claim's rows over every cell of the job;
    ``outcomes(claim)`` the outcome names an MCID override may use besides the claim id;
    ``estimate_words(claim, outcome)`` what an estimate measures, for an axis (e.g. 'change
    after a session'); ``before_after`` whether its outcome has before/after values to draw.
    """

    name: str
    session_limit: int
    extract: Callable[[Prepared, pd.Series, Extraction], Extracted]
    fit: Callable[[Job, pd.Series], list[dict]]
    outcomes: Callable[[pd.Series], tuple[str, ...]]
    estimate_words: Callable[[pd.Series, str], str]
    before_after: bool = False


def series_key(claim: pd.Series, outcome: str) -> str:
    """The key of one series of a claim in :attr:`ClaimInputs.series`."""
    return f"{claim['claim_id']}|{outcome}"


def text(claim: pd.Series, column: str) -> str:
    """A registry cell as text ('' when empty or absent)."""
    value = claim.get(column)
    return "" if value is None or bool(pd.isna(value)) else str(value).strip()


def words(name: str) -> str:
    """A column or value name in words: underscores as spaces."""
    return name.replace("_", " ")


# ------------------------------------------------------------------------------- cells ---

@dataclass(frozen=True)
class Cell:
    """One audience group, or all sessions (``name == "all"``)."""

    name: str


@dataclass
class Job:
    """Shared state of one evaluation run: its inputs, cells and settings. ``keep_models``
    (a refit) keeps each cell's fitted model in its row (``_model``) and hands the cells
    above their session limit their sessions too, when the inputs kept them."""

    inputs: ClaimInputs
    cells: list[Cell]
    settings: Options
    keep_models: bool = False


def cell_data(series: SeriesData, cell: Cell, refit: bool = False,
              ) -> tuple[pd.DataFrame, pd.DataFrame | None, bool]:
    """(units of the cell, its sessions sorted by client or None, whether the cell is above
    the series' session limit). A cell above the limit gets its sessions only for a refit
    (and only when they were kept: ``Extraction.keep_all``)."""
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
    large = count > series.limit
    if large and (not refit or len(rows) < count):
        return units, None, True
    return units, rows.sort_values("client_id", kind="stable").reset_index(drop=True), large


def fit_cells(job: Job, key: str, fit_cell: Callable[..., CellFit],
              **kwargs: Any) -> list[tuple[Cell, CellFit]]:
    """Fit one series in every cell, each on its sessions or on its per-client sums.

    ``fit_cell(units, sessions, *, settings, limit, large, **kwargs)`` gets the cell's
    sessions (None when they were not kept) and whether the cell is above the limit."""
    series = job.inputs.series[key]
    fits = []
    for cell in job.cells:
        units, sessions, large = cell_data(series, cell, refit=job.keep_models)
        fit = guarded(fit_cell, units, sessions, settings=job.settings, limit=series.limit,
                      large=large, **kwargs)
        if fit.status == "degenerate" and not fit.design:  # the model failed
            fit = replace(fit, design=intended_design(series.shape, units,
                                                      job.settings.min_clients))
        if fit.model is not None and not job.keep_models:  # its data are large: let go
            fit = replace(fit, model=None)
        fits.append((cell, fit))
    return fits


def intended_design(shape: str, units: pd.DataFrame, min_clients: int) -> str:
    """The design a cell's model has (for a failed fit, the one it was meant to have)."""
    if shape not in ("change", "trend"):
        return "observational"
    control = units["control"].to_numpy(dtype=bool)
    arms = min(int(control.sum()), int((~control).sum()))
    return "controlled" if arms >= min_clients else "uncontrolled"


# -------------------------------------------------------------------------------- rows ---

def rows_for(job: Job, claim: pd.Series, outcome: str, fits: Sequence[tuple[Cell, CellFit]],
             *, unit: str, mcid: float, source: str) -> list[dict]:
    """Rows of one claim outcome over all cells, with heterogeneity attached."""
    alpha, direction = job.settings.alpha, int(claim["direction"])
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
        rows.append(row(claim, cell.name, outcome, fit, notes=notes, unit=unit,
                        mcid=row_mcid, source=source, direction=direction,
                        het_p=het_p if cell.name == ALL else math.nan,
                        keep_model=job.keep_models))
    return rows


def row(claim: pd.Series, group: str, outcome: str, fit: CellFit, *, notes: Sequence[str],
        unit: str, mcid: float, source: str, direction: int, het_p: float,
        keep_model: bool = False) -> dict:
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
        "_model": fit.model if keep_model else None,
        **adjusted_columns(fit, outcome),
    }


def not_measured(job: Job, claim: pd.Series, outcome: str, why: str) -> list[dict]:
    """A not-measured row of one claim outcome in every cell, saying what is missing."""
    fit = CellFit("not_measured", notes=(why,))
    return [row(claim, cell.name, outcome, fit, notes=fit.notes, unit=str(claim["unit"]),
                mcid=math.nan, source="", direction=int(claim["direction"]), het_p=math.nan)
            for cell in job.cells]


def session_frame(clients: np.ndarray, control: np.ndarray, **values: np.ndarray,
                  ) -> pd.DataFrame:
    """A one-cell session frame from arrays (for the array-based fit functions)."""
    labels = pd.Series(np.asarray(clients, dtype=np.int64)).astype("str").str.zfill(12)
    return pd.DataFrame({"group": "", "client_id": labels.to_numpy(),
                         "control": np.asarray(control, dtype=bool), **values})
