"""Descriptive tables a reviewer expects beside the claims (issue 13), as tidy DataFrames.

Each table is a pure function of the derived session table (and, for the flow, the cleaning
report and the claims table), and each says which reporting-standard item it answers:

* :func:`client_flow` (``describe/flow.py``): rows -> quarantined (by reason) -> duplicates
  -> clean sessions -> clients by arm -> with a usable before/after pair per outcome -> with
  follow-up -> analysed per claim -> withheld for privacy. CONSORT 2010 item 13a and the
  flow diagram; STROBE item 13 / RECORD 13.1 (numbers at each stage, data cleaning).
* :func:`baseline_table` (``describe/baseline.py``): "Table 1" per audience group and arm,
  with standardized differences between arms. CONSORT item 15; STROBE item 14a.
* :func:`individual_change` and :func:`individual_summary` (``describe/individual.py``):
  each client's reliable change (Jacobson & Truax 1991) and counts by class per arm with
  Wilson intervals. CONSORT-PRO (interpretation of PRO results at the individual level);
  SAMPL (state the clinically important difference) kept apart from the group MCID.
* :func:`followup_completeness` and :func:`followup_comparison` (``describe/followup.py``):
  follow-up completeness by group and arm, and clients with vs without follow-up on their
  baseline and earlier response. CONSORT-PRO item P12a (missing PRO data); STROBE item 12c.

Every table that publishes counts of clients gives them to the disclosure plan as cells
(``<table>_cells(table, slice_value)``: columns ``slice, group, measure, clients, sessions,
twin``; a partition is a family ``<table>:<what>#<part>`` whose total is the sum of its
parts). :data:`DESCRIBED_CELLS` lists the functions
``(sessions, cleaning_report, claims, slice_value) -> cells`` that
:func:`mfr_analysis.report.disclosure.plan_folder` calls for every report of a folder before
any notebook runs; :func:`protect` then shows a table as a report may publish it.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from mfr_analysis.describe.baseline import baseline_cells, baseline_table
from mfr_analysis.describe.flow import client_flow, flow_cells
from mfr_analysis.describe.followup import (
    followup_cells,
    followup_comparison,
    followup_completeness,
)
from mfr_analysis.describe.individual import (
    individual_cells,
    individual_change,
    individual_summary,
)
from mfr_analysis.describe.protect import protect

CellsFunction = Callable[[pd.DataFrame, dict, pd.DataFrame, str], pd.DataFrame]


def flow_cells_of(sessions: pd.DataFrame, cleaning_report: dict, claims: pd.DataFrame,
                  slice_value: str) -> pd.DataFrame:
    """The cells of one report's flow."""
    return flow_cells(client_flow(sessions, cleaning_report, claims), slice_value)


def baseline_cells_of(sessions: pd.DataFrame, cleaning_report: dict, claims: pd.DataFrame,
                      slice_value: str) -> pd.DataFrame:
    """The cells of one report's Table 1."""
    return baseline_cells(baseline_table(sessions), slice_value)


def individual_cells_of(sessions: pd.DataFrame, cleaning_report: dict, claims: pd.DataFrame,
                        slice_value: str) -> pd.DataFrame:
    """The cells of one report's counts by reliable-change class."""
    return individual_cells(individual_summary(individual_change(sessions)), slice_value)


#: Every describe table's cells, planned with the claims before any notebook runs.
DESCRIBED_CELLS: tuple[CellsFunction, ...] = (
    flow_cells_of,
    baseline_cells_of,
    individual_cells_of,
    followup_cells,
)

__all__ = [
    "DESCRIBED_CELLS",
    "baseline_cells",
    "baseline_table",
    "client_flow",
    "flow_cells",
    "followup_cells",
    "followup_comparison",
    "followup_completeness",
    "individual_cells",
    "individual_change",
    "individual_summary",
    "protect",
]
