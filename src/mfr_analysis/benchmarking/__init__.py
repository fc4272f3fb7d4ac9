"""Sites and clinicians compared fairly: risk-adjusted expected outcomes, observed minus
expected, funnel limits with overdispersion; never a rank or a league table.

* :mod:`~mfr_analysis.benchmarking.risk`: the risk-adjustment model per outcome (clients as
  the unit; site and clinician random effects; ICC): :func:`risk_model`, :func:`fit_risk`.
* :mod:`~mfr_analysis.benchmarking.units`: the per-unit table: :func:`benchmark_units`,
  :func:`benchmark` (everything at once).
* :mod:`~mfr_analysis.benchmarking.funnel`: Spiegelhalter's funnel limits, overdispersion and
  flags: :func:`funnel_limits` gives the limits to plot.
"""

from mfr_analysis.benchmarking.funnel import estimate_dispersion
from mfr_analysis.benchmarking.risk import fit_risk, risk_model
from mfr_analysis.benchmarking.units import (
    UNIT_COLUMNS,
    Benchmark,
    adjustment_sentence,
    benchmark,
    benchmark_units,
    funnel_limits,
)

__all__ = ["UNIT_COLUMNS", "Benchmark", "adjustment_sentence", "benchmark", "benchmark_units",
           "estimate_dispersion", "fit_risk", "funnel_limits", "risk_model"]
