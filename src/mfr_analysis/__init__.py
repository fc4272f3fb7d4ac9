"""mfr-analysis: test the claimed benefits of myofascial release on a clinic's own session logs.

The flow is ``read -> clean -> derive -> claims -> report``; each stage is one module.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mfr-analysis")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
