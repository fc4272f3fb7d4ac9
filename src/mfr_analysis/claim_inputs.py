"""Moved to :mod:`mfr_analysis.claims.inputs`; import ``combine_inputs`` and friends from
:mod:`mfr_analysis.claims`. Kept only until every caller (the Dask reduction) imports from
there; delete then."""

from mfr_analysis.claims.inputs import (  # noqa: F401
    ClaimInputs,
    Prepared,
    SeriesData,
    combine_inputs,
    median_of_counts,
    pool_units,
    prepare,
)
