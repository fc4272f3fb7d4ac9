"""The claims engine: test each claimed benefit of MFR on a derived session table.

``evaluate_claims(sessions)`` returns the tidy claims table of design.md: one row per
(claim_id, audience_group, outcome), ``audience_group="all"`` for the pooled row. The input
frame is never changed. Clients are the unit of independence throughout. ``refit(sessions,
claim_id, ...)`` hands back the statsmodels results of the model behind one row.

Layout: one module per analysis kind, each a :class:`~mfr_analysis.claims.base.Kind` (what
it extracts from a session table into per-client inputs, its session limit, its fit),
registered in one table, :data:`~mfr_analysis.claims.kinds.KINDS`, by the ``analysis`` names
of ``data/claims.csv`` (:mod:`~mfr_analysis.claims.registry`). A new claim on a known kind
is one row of that file; a new kind is one module and one entry of ``KINDS``. To try a
claim without changing the installed file, copy the file, add the row and pass its path
(``evaluate_claims(sessions, registry=path)``), or set ``MFR_CLAIMS_REGISTRY=path`` so
that every step (settings, claims, report figures and views) uses it.

* :mod:`~mfr_analysis.claims.change`: within-session change (tightness, pain, stress,
  circulation measures); :mod:`~mfr_analysis.claims.change_per_measure`: range of motion,
  per measure; :mod:`~mfr_analysis.claims.trajectory`: lasting relief (the trend of
  pre-session pain over weeks, and follow-up pain); :mod:`~mfr_analysis.claims.contrast`:
  slow vs fast, breathing, practitioner vs self; :mod:`~mfr_analysis.claims.dose`:
  consistency; :mod:`~mfr_analysis.claims.adverse`: pressure safety.
* :mod:`~mfr_analysis.claims.inputs`: the per-client sums (and the sessions of small cells)
  every kind reduces a table to, which is also all that a partitioned dataset larger than
  memory is reduced to (:func:`combine_inputs`); :mod:`~mfr_analysis.claims.engine`: the
  evaluation, multiplicity, verdicts and literature overlay; :mod:`~mfr_analysis.claims.
  verdicts`: the verdict rule, one pure function.

Method rules (``method`` in each row says which one ran and why). A cell's size is its
number of usable sessions for the outcome; cells up to the kind's session limit are fitted
on their sessions, larger ones on per-client sums:

* change (and each ROM measure, and follow-up pain): MixedLM (REML) ``change ~ 1`` with a
  random intercept per client up to 5,000 sessions, OLS on client means above; with a
  control arm of at least ``min_clients`` clients an ANCOVA, ``change ~ arm + pre``,
  estimate = MFR minus control.
* lasting_relief: pre-session pain ~ weeks with a random intercept and slope per client up
  to 1,000 sessions, per-client OLS slopes (two-stage summary measure) above; with a control
  arm the arm x weeks interaction. Follow-up minus pre-session pain is a second row
  (``outcome="pain_followup"``) analysed as a change.
* slow_pace, breathing, delivery: OLS ``change ~ level + pre`` on MFR sessions with
  cluster-robust errors by client (above 20,000 sessions computed from per-client
  cross-products: the same numbers).
* consistency: per-client slope of pre-session pain over weeks regressed on the client's
  sessions per week (OLS on clients, HC1 errors).
* pressure_safety: logistic GEE (exchangeable, by client) of any adverse event on pressure
  up to 20,000 sessions, logistic regression with cluster-robust errors on per-client
  counts by pressure above; odds ratio per pressure point.
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
contrasts, the dose slope and the adverse odds ratio state none: a within-person MCID is
not a difference between two kinds of session, none is published for them, and they are
observational; circulation has no standard measure. Responders (``responders`` of
``responder_clients``, and the same for the control arm of a controlled row) are clients
whose client-level value passes the threshold (for pain also 30 % of their baseline) in the
claimed direction.

Verdicts: :func:`decide_verdict` (see :mod:`~mfr_analysis.claims.verdicts`), after the
multiplicity correction across the whole table.

Settings: one :class:`~mfr_analysis.settings.AnalysisSettings` (``settings=``), or its
fields as keyword arguments.
"""

from __future__ import annotations

from mfr_analysis.claims.adjusted import ADJUSTED_COLUMNS
from mfr_analysis.claims.base import Kind
from mfr_analysis.claims.engine import (
    CLAIMS_COLUMNS,
    EXTRA_COLUMNS,
    claim_inputs,
    evaluate_claims,
    evaluate_inputs,
    extract_inputs,
    primary_rows,
    refit,
)
from mfr_analysis.claims.evalue import e_value_sentence
from mfr_analysis.claims.fits import CellFit
from mfr_analysis.claims.inputs import ClaimInputs, combine_inputs, prepare
from mfr_analysis.claims.kinds import (
    KINDS,
    before_after_outcomes,
    claim_registry,
    estimate_words,
    mcid_key_problem,
)
from mfr_analysis.claims.registry import REGISTRY_ENV, THRESHOLD_KINDS, literature
from mfr_analysis.claims.verdicts import DESIGNS, VERDICTS, decide_verdict
from mfr_analysis.errors import AnalysisError

__all__ = [
    "ADJUSTED_COLUMNS",
    "CLAIMS_COLUMNS",
    "DESIGNS",
    "EXTRA_COLUMNS",
    "KINDS",
    "REGISTRY_ENV",
    "THRESHOLD_KINDS",
    "VERDICTS",
    "AnalysisError",
    "CellFit",
    "ClaimInputs",
    "Kind",
    "before_after_outcomes",
    "claim_inputs",
    "claim_registry",
    "combine_inputs",
    "decide_verdict",
    "e_value_sentence",
    "estimate_words",
    "evaluate_claims",
    "evaluate_inputs",
    "extract_inputs",
    "literature",
    "mcid_key_problem",
    "prepare",
    "primary_rows",
    "refit",
]
