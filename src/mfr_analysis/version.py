"""The installed package's version, read once from its metadata (a leaf module: every stage
may import it without importing the package's verbs)."""

from __future__ import annotations

from functools import cache


@cache
def package_version() -> str:
    """The version of the installed ``mfr-analysis`` distribution ("0.0.0+unknown" when run
    from a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mfr-analysis")
    except PackageNotFoundError:
        return "0.0.0+unknown"
