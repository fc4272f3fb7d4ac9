"""One settings object for an analysis run: its defaults and its validation live here only.

:class:`AnalysisSettings` is built once at the edge -- by the command line from its options,
by the report runner, and by each report notebook from its papermill parameters
(:meth:`AnalysisSettings.from_parameters`) -- and passed down to the claims engine
(``evaluate_claims(sessions, settings=...)``), the cleaning step (``date_order``) and the
report views (``min_clients``, ``min_reported_clients``). Every field is checked when the
object is made, so a bad value is refused before any work, with one line naming the field:

>>> AnalysisSettings().alpha
0.05
>>> AnalysisSettings(alpha=0.9)
Traceback (most recent call last):
...
mfr_analysis.errors.InputError: alpha 0.9: expected a number above 0 and at most 0.5
>>> AnalysisSettings.from_parameters(alpha="0.01", min_clients=12.0).min_clients
12
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from mfr_analysis.errors import InputError

__all__ = ["CORRECTIONS", "DATE_ORDERS", "DEFAULTS", "AnalysisSettings"]

CORRECTIONS: tuple[str, ...] = ("holm", "fdr_bh")
DATE_ORDERS: tuple[str, ...] = ("dmy", "mdy")
ALPHA_MAX = 0.5  # a larger significance level is not a test


@dataclass(frozen=True)
class AnalysisSettings:
    """The options of one analysis run, validated once when made (frozen).

    Parameters
    ----------
    alpha
        Significance level after the multiplicity correction: above 0, at most 0.5.
    correction
        Multiplicity correction across the whole claims table: ``holm`` or ``fdr_bh``.
    min_clients
        Fewest clients in a claim x group cell (and in a control arm) before a model is
        fitted at all: at least 2.
    min_reported_clients
        Counts of fewer clients are suppressed in reports (CMS cell-size rule: 11): at least 1.
    mcid_overrides
        MCID per claim id, outcome or measure (e.g. ``{"pain": 1.5, "rom:knee_flexion_deg":
        8}``): each a positive finite number for a key of the claims registry that states a
        threshold.
    date_order
        How ambiguous dates such as 05/03/2024 are read: ``dmy`` or ``mdy``.

    Raises
    ------
    InputError
        One line naming the first field that cannot be used.
    """

    alpha: float = 0.05
    correction: Literal["holm", "fdr_bh"] = "holm"
    min_clients: int = 10
    min_reported_clients: int = 11
    mcid_overrides: Mapping[str, float] = field(default_factory=dict, hash=False)
    date_order: Literal["dmy", "mdy"] = "dmy"

    def __post_init__(self) -> None:
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (
                0 < alpha <= ALPHA_MAX):
            raise InputError(f"alpha {alpha!r}: expected a number above 0 and at most "
                             f"{ALPHA_MAX:g}")
        if self.correction not in CORRECTIONS:
            raise InputError(f"correction {self.correction!r}: expected "
                             f"{' or '.join(CORRECTIONS)}")
        _check_whole("min_clients", self.min_clients, 2)
        _check_whole("min_reported_clients", self.min_reported_clients, 1,
                     " (the CMS rule is 11)")
        if self.date_order not in DATE_ORDERS:
            raise InputError(f"date_order {self.date_order!r}: expected "
                             f"{' or '.join(DATE_ORDERS)}")
        object.__setattr__(self, "alpha", float(alpha))
        object.__setattr__(self, "min_clients", int(self.min_clients))
        object.__setattr__(self, "min_reported_clients", int(self.min_reported_clients))
        object.__setattr__(self, "mcid_overrides", _checked_overrides(self.mcid_overrides))

    @classmethod
    def from_parameters(cls, **parameters: Any) -> AnalysisSettings:
        """Settings from notebook (papermill) parameters, as text or as values.

        Takes the field names (``alpha``, ``correction``, ``min_clients``,
        ``min_reported_clients``, ``mcid_overrides``, ``date_order``); a missing or ``None``
        one keeps its default. Numbers may come as text (``"0.01"``) or as whole floats
        (``12.0``), ``mcid_overrides`` as a mapping, as JSON text (``'{"pain": 1.5}'``) or as
        ``name=value`` pairs; ``correction`` and ``date_order`` in any case. An unknown name
        is refused, so a misspelt parameter never falls back to a default silently.

        >>> AnalysisSettings.from_parameters(mcid_overrides='{"pain": 1.5}').mcid_overrides
        {'pain': 1.5}
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}; expected "
                             f"{', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for name, value in parameters.items():
            if value is None:
                continue
            if name == "alpha":
                value = _number(name, value)
            elif name in ("min_clients", "min_reported_clients"):
                value = _whole(name, value)
            elif name in ("correction", "date_order") and isinstance(value, str):
                value = value.strip().lower()
            elif name == "mcid_overrides":
                value = _override_pairs(value)
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (JSON-ready; ``mcid_overrides`` a new dict)."""
        values = asdict(self)
        values["mcid_overrides"] = dict(self.mcid_overrides)
        return values


def _check_whole(name: str, value: object, least: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise InputError(f"{name} {value!r}: expected a whole number of at least {least}{why}")


def _number(name: str, value: object) -> object:
    """A number given as text becomes a float; anything else is left for validation."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{name} {value!r}: expected a number") from None
    return value


def _whole(name: str, value: object) -> object:
    """A whole number given as text or as a whole float becomes an int."""
    value = _number(name, value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _override_pairs(value: object) -> object:
    """MCID overrides given as JSON text or as ``name=value`` pairs, as a mapping."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise InputError(f"mcid_overrides {value!r}: expected JSON such as "
                                 '{"pain": 1.5}') from None
        value = [part for part in text.replace(";", ",").split(",") if part.strip()]
    if isinstance(value, list | tuple):
        pairs: dict[str, object] = {}
        for part in value:
            key, sep, number = str(part).partition("=")
            if not sep:
                raise InputError(f"mcid_overrides {part!r}: expected NAME=NUMBER, e.g. pain=1.5")
            pairs[key.strip()] = _number(f"mcid_overrides {key.strip()}", number.strip())
        return pairs
    return value


def _checked_overrides(overrides: object) -> dict[str, float]:
    """MCID overrides as floats, each a positive finite number for a registry key that
    states a threshold (the registry's rules:
    :func:`mfr_analysis.claims.kinds.mcid_key_problem`)."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise InputError(f"mcid_overrides {overrides!r}: expected a mapping such as "
                         "{'pain': 1.5}")
    checked: dict[str, float] = {}
    for key, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                math.isfinite(value) and value > 0):
            raise InputError(f"MCID override {key!r} must be a positive number, got {value!r}")
        checked[str(key)] = float(value)
    if checked:
        from mfr_analysis.claims.kinds import mcid_key_problem  # the registry's keys

        problem = mcid_key_problem(checked)
        if problem:
            raise InputError(problem)
    return checked


DEFAULTS = AnalysisSettings()  # the defaults, for option declarations and older callers
