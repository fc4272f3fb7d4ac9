"""What one report run hands to the index page: each notebook job's outcome and its claims.

Shared by the runner (:mod:`mfr_analysis.report.run`, which makes them) and the index page
(:mod:`mfr_analysis.report.index`, which lists them), so neither imports the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class SliceResult:
    """Outcome of one job: paths written, and the error line if it failed."""

    slug: str
    label: str
    notebook: str
    html: str
    claims: str
    error: str = ""


def load_claims(path: str | Path) -> pd.DataFrame | None:
    """Read a claims table the claims notebook saved, or None when it is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
