"""Verdicts: one small pure function of a row's adjusted p-value, estimate, threshold and
design (:func:`decide_verdict`), and the words that lead a row's note.

After the multiplicity correction ("significant" means an adjusted p below ``alpha``), with
a stated threshold and a controlled or uncontrolled design: significant in the claimed
direction is ``supported`` when the estimate reaches the threshold and ``below_threshold``
when it does not; significant the other way is ``contradicted``; otherwise
``no_meaningful_effect`` when the equivalence test (TOST, the threshold as margin) shows the
effect lies within the threshold, else ``inconclusive``. Without a threshold, or for an
observational design (an association never shows that an effect is large enough to matter,
nor what caused it): significant in the claimed direction is ``association_shown``, the
other way ``contradicted``; a test that ran and was not significant is
``no_association_shown`` (not evidence of absence). ``inconclusive`` is otherwise kept for
fits that cannot be read: a model that could not be fitted, no variation to test, a
non-finite estimate or p-value, or a significant estimate of exactly zero.
``not_measured`` and ``insufficient_data`` come from the data before any fit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mfr_analysis.claims.registry import associations

__all__ = ["DESIGNS", "VERDICTS", "decide_verdict", "verdict_notes"]

VERDICTS: tuple[str, ...] = (
    "supported", "below_threshold", "no_meaningful_effect", "contradicted",
    "association_shown", "no_association_shown",
    "inconclusive", "not_measured", "insufficient_data",
)
DESIGNS: tuple[str, ...] = ("controlled", "uncontrolled", "observational")


def decide_verdict(status: str, p_adjusted: float, effect: float, direction: int,
                   mcid: float, tost: float, *, design: str, alpha: float) -> str:
    """The verdict of one row (see the module docstring).

    ``status`` is ``fit`` for a model that ran (anything else that is not ``not_measured``
    or ``insufficient_data`` could not be interpreted), ``effect`` the signed estimate on
    the model's scale (log odds for odds ratios), ``direction`` the claimed sign, ``mcid``
    the threshold the registry states (NaN: none), ``tost`` the equivalence p-value and
    ``alpha`` the significance level after correction.

    >>> decide_verdict("fit", 0.001, -3.0, -1, 2.0, 0.9, design="uncontrolled", alpha=0.05)
    'supported'
    >>> decide_verdict("fit", 0.001, -0.8, -1, math.nan, math.nan, design="observational",
    ...                alpha=0.05)
    'association_shown'
    >>> decide_verdict("fit", 0.4, -0.1, -1, math.nan, math.nan, design="observational",
    ...                alpha=0.05)
    'no_association_shown'
    """
    if status in ("not_measured", "insufficient_data"):
        return status
    if status != "fit" or not (math.isfinite(p_adjusted) and math.isfinite(effect)):
        return "inconclusive"
    # a size is judged only against a stated threshold, and never for an association
    judged = math.isfinite(mcid) and mcid > 0 and design in ("controlled", "uncontrolled")
    if p_adjusted < alpha:
        if effect == 0:
            return "inconclusive"
        if np.sign(effect) != direction:
            return "contradicted"
        if not judged:
            return "association_shown"
        return "below_threshold" if abs(effect) < mcid else "supported"
    if not judged:
        return "no_association_shown"
    if math.isfinite(tost) and tost < alpha:
        return "no_meaningful_effect"
    return "inconclusive"


_NOUN = {"uncontrolled": "a change", "controlled": "a difference from control clients"}


def verdict_notes(table: pd.DataFrame) -> list[str]:
    """Notes led by what the verdict means where it is an association or goes the other way.

    Observational rows say what went with what and that this does not show a cause (words
    from ``data/associations.csv``); a claim without a threshold that goes the other way
    says so."""
    words = associations()
    notes = []
    for claim_id, verdict, design, effect, mcid, note in zip(
            table["claim_id"], table["verdict"], table["design"], table["_effect"],
            table["mcid"], table["note"], strict=True):
        lead = ""
        if design == "observational" and claim_id in words.index:
            said = words.loc[claim_id]
            side = said["lower"] if effect < 0 else said["higher"]
            if verdict == "association_shown":
                lead = f"association: {side}; {said['caveat']}"
            elif verdict == "contradicted":
                lead = f"an association the other way from the claim: {side}; {said['caveat']}"
            elif verdict == "no_association_shown":
                lead = (f"no association shown: {said['none']} (this does not show that there "
                        "is none)")
        elif verdict == "contradicted" and not math.isfinite(mcid):
            lead = f"{_NOUN.get(design, 'a difference')} the other way from the claim"
        elif verdict == "association_shown":
            lead = (f"{_NOUN.get(design, 'a difference')} in the claimed direction; the claim "
                    "states no threshold, so its size is not judged")
        elif verdict == "no_association_shown":
            lead = (f"no {_NOUN.get(design, 'a difference')[2:]} shown; this does not show "
                    "that there is none")
        notes.append("; ".join(filter(None, [lead, note])))
    return notes
