"""Errors that reach the user as one line (the CLI prints them without a traceback)."""


class UserFacingError(Exception):
    """An error whose first line is a complete, actionable message for the user."""


class InputError(UserFacingError, ValueError):
    """An input file or option that cannot be used; the message names the file."""


class AnalysisError(UserFacingError, ValueError):
    """A table that cannot be analysed as asked (empty, missing every outcome, ...)."""


class ReportError(UserFacingError, RuntimeError):
    """A report run that could not produce its HTML."""
