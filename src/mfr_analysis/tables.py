"""Reference tables shipped as data: vocabularies, aliases, bounds, thresholds, evidence.

Every vocabulary, threshold and bound lives in one CSV under ``mfr_analysis/data`` so that a
reader (or a clinic) can change them without touching code.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import pandas as pd

DATA = files("mfr_analysis") / "data"


@cache
def _read(relative: str, as_text: bool = False) -> pd.DataFrame:
    with (DATA / relative).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, keep_default_na=False, na_values=[""],
                           dtype=str if as_text else None)


def load_table(name: str) -> pd.DataFrame:
    """Return a copy of the shipped table ``data/<name>.csv``."""
    return _read(f"{name}.csv").copy()


def vocabulary(field: str) -> pd.DataFrame:
    """Return the synonym -> canonical table for one categorical field."""
    return _read(f"vocabularies/{field}.csv", as_text=True).copy()


@cache
def categories(field: str) -> tuple[str, ...]:
    """Canonical values of a categorical field, in the order the vocabulary lists them."""
    return tuple(dict.fromkeys(_read(f"vocabularies/{field}.csv", as_text=True)["canonical"]))


@cache
def synonym_map(field: str) -> dict[str, str]:
    """Map of normalised synonym -> canonical value for one vocabulary."""
    table = _read(f"vocabularies/{field}.csv", as_text=True)
    pairs = zip(table["synonym"], table["canonical"], strict=True)
    return {normalise_token(synonym): canonical for synonym, canonical in pairs}


def normalise_token(text: str) -> str:
    """Lower-case, trim and collapse inner white space, so 'Office  Worker ' == 'office worker'."""
    return " ".join(str(text).strip().lower().replace("_", " ").split())


VOCABULARY_FIELDS: tuple[str, ...] = (
    "audience_group",
    "arm",
    "technique",
    "body_region",
    "pace",
    "adverse_event",
    "rom_measure",
    "sex",
)
