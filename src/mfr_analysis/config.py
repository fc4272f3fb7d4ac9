"""Defaults and names shared by every stage: environment variables, file names, limits."""

from __future__ import annotations

PSEUDONYM_KEY_ENV = "MFR_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE_ENV = "MFR_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = "~/.config/mfr-analysis/pseudonym.key"

SESSIONS_FILE = "sessions.parquet"
QUARANTINE_FILE = "quarantine.csv"
CLEANING_REPORT_FILE = "cleaning_report.json"

EARLIEST_SESSION_DATE = "1990-01-01"

# CMS cell-size rule: counts of 1-10 clients are never shown in a report.
MIN_REPORTED_CLIENTS = 11
# Fewest clients in a claim x group cell before a model is fitted at all.
MIN_CLIENTS_PER_CELL = 10

ALPHA = 0.05
AUDIENCE_GROUPS: tuple[str, ...] = ("athlete", "senior", "desk_worker", "rehab", "chronic_pain")
