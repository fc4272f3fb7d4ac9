"""Seeded simulator of realistic, messy MFR session logs with a known truth.

Three steps, each usable alone:

``simulate_sessions(n_clients, seed)``
    The clean world: one row per session in the canonical columns of the clean table (plus
    the raw client identity the cleaner must strip), and the truth table of what was planted.
``make_messy(clean, seed)``
    The raw export a clinic would hand over: every column a string, headers spelt one of many
    ways, values written as people write them, identifiers, duplicates and bad rows. With
    ``return_labels=True`` it also returns, per messy row, which bad values were planted (as
    reason codes of ``data/reason_codes.csv``), whether the row is a duplicate copy, and which
    clean row it came from.
``write_simulation(n_clients, seed, out)``
    Both of the above, written atomically: the messy log, ``<stem>.truth.csv`` and
    ``<stem>.truth.json`` (parameters and counts of every planted kind of mess).

Everything is drawn from ``numpy.random.default_rng`` seeded with the given seed, and no step
looks at today's date, so the same seed gives byte-identical files on any day. All session
dates lie between ``start`` and :data:`LAST_DATE` (2025-12-31).

The planted effects
-------------------
``data/planted_effects.csv`` holds one row per (claim_id, audience_group[, rom_measure]):
``planted_change`` is the value of the claim's estimand in the ``mfr`` arm and
``placebo_change`` the same estimand in the ``control`` (sham) arm; the truth table adds
``planted_effect = planted_change - placebo_change``. Effects are the same for every client of
a group and arm, so each truth is one number. The estimands, in the outcome's unit:

- ``tightness``, ``pain``, ``stress``: mean within-session change, post minus pre (points, 0-10).
- ``rom``: mean within-session change of the client's ROM measure, post minus pre (degrees or
  cm), one row per ``rom_measure``.
- ``circulation``: not simulated (no column), so NaN.
- ``lasting_relief``: change in pre-session pain per week since the client's first session, for
  a client who attends one session per week (points per week).
- ``consistency``: how much steeper that weekly fall is per additional session per week
  (points per week per session/week). A client's sessions per week is
  ``(sessions - 1) / weeks between first and last session``. Pre-session pain of a client at
  ``w`` weeks is ``baseline + (lasting_relief + consistency * (sessions_per_week - 1)) * w``.
- ``slow_pace``: difference in within-session pain change, slow minus fast pace (points).
- ``breathing``: difference in within-session stress change, with minus without deep breathing.
- ``delivery``: difference in within-session pain change, practitioner minus self-MFR.
- ``pressure_safety``: log-odds of any adverse event (anything but ``none``) per pressure point.

Modifiers (pace, breathing, delivery) are centred on their expected share in the group, so a
group's mean change stays the planted ``pain`` / ``stress`` value whatever the mix. Ratings are
drawn with symmetric noise that narrows near the ends of the 0-10 scale and are rounded
stochastically to the rating grid, so clipping and rounding add no bias: the expected value of
every simulated mean is exactly the planted number. Pain follow-up (24 or 48 h) keeps
:data:`FOLLOWUP_RETENTION` of the expected within-session change.

Missing follow-up is planted informative (:data:`FOLLOWUP_DROPOUT`): a client is ever
followed up with a probability that falls with their session response (their mean
within-session pain change, observed in the log but outside the follow-up ANCOVA), and their
follow-up pain keeps :data:`FOLLOWUP_RESPONSE_CARRY` times that response's deviation from its
planted expectation (mean zero). Poor responders are missing more often and would have had
worse follow-up, so complete-case follow-up relief is biased towards more relief (about
-0.3 points in the MFR arm); methods that use the earlier response (multiple imputation,
inverse probability weighting) recover the truth, :func:`planted_followup`, which the truth
json states with the mechanism (key ``followup``). The drop-out draws use a stream of their
own, so every other column is what it was before drop-out was planted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mfr_analysis.clean import WEEKS_PER_MONTH, WEEKS_PER_YEAR, completed_years
from mfr_analysis.config import AUDIENCE_GROUPS
from mfr_analysis.derive import band_codes
from mfr_analysis.io import write_atomic
from mfr_analysis.pseudonymise import clinician_pseudonym
from mfr_analysis.schema import CATEGORY_DTYPES, CLEAN_COLUMNS
from mfr_analysis.tables import categories, load_table, vocabulary
from mfr_analysis.version import package_version

__all__ = [
    "CLAIM_IDS",
    "IDENTITY_COLUMNS",
    "LAST_DATE",
    "SIM_COLUMNS",
    "TRUTH_COLUMNS",
    "make_messy",
    "planted_effects",
    "planted_followup",
    "simulate_sessions",
    "pseudonymise_truth",
    "simulate_network",
    "write_network",
    "write_simulation",
]

CLAIM_IDS: tuple[str, ...] = (
    "tightness", "circulation", "pain", "stress", "rom", "lasting_relief", "slow_pace",
    "breathing", "consistency", "pressure_safety", "delivery",
)
IDENTITY_COLUMNS: tuple[str, ...] = (
    "client_name", "client_email", "client_phone", "client_dob", "notes",
)
"""Raw identity kept beside the canonical columns of the clean truth; ``client_id`` holds the
raw identifier (``CL-000123``) that the cleaner must replace by its keyed-hash pseudonym."""
SIM_COLUMNS: tuple[str, ...] = tuple(
    c for c in CLEAN_COLUMNS if c not in ("source_file", "source_line")
) + IDENTITY_COLUMNS
TRUTH_COLUMNS: tuple[str, ...] = (
    "claim_id", "audience_group", "outcome", "rom_measure", "planted_change", "placebo_change",
    "planted_effect", "unit", "mcid", "expected_direction",
)
LAST_DATE = np.datetime64("2025-12-31", "D")
"""Latest simulated session date: nothing lies on or after 2026-01-01."""
FOLLOWUP_RETENTION: float = 0.5
"""Share of the expected within-session pain change still present at the follow-up."""
FOLLOWUP_RESPONSE_CARRY: float = 1.5
"""How much of a client's own deviation in session response (their mean within-session pain
change minus its planted expectation, mean zero) shows at follow-up: poor responders in the
sessions have worse follow-up pain."""
FOLLOWUP_DROPOUT: dict[str, float] = {"intercept": -1.0, "per_point": -1.5,
                                      "session_share": 0.55}
"""Informative drop-out: a client is ever followed up with probability
``1 / (1 + exp(-(intercept + per_point * response)))``, ``response`` their mean
within-session pain change (negative = relief), so a client whose pain fell 2 points is
followed up with probability 0.88 and one whose pain did not fall with 0.27; a followed-up
client's sessions have follow-up with probability ``session_share``."""
_FOLLOWUP_STREAM = 0x666F6C6C  # the drop-out draws: a stream of their own

SITES: tuple[str, ...] = ("Northgate Physio", "Harbour Sports Clinic", "Riverside Rehab Centre")
_SITE_P = np.array([0.40, 0.35, 0.25])
INCH_SITE = "Harbour Sports Clinic"
"""The site that measures sit-and-reach in half inches (written in inches in the messy log)."""

_MAX_COURSE_DAYS = 182
_MAX_SESSIONS = 20
_EXCEL_EPOCH = np.datetime64("1899-12-30", "D")
_EXPECTED_DIRECTION = {
    "tightness": "decrease", "circulation": "increase", "pain": "decrease",
    "stress": "decrease", "rom": "increase", "lasting_relief": "decrease",
    "slow_pace": "decrease", "breathing": "decrease", "consistency": "decrease",
    "pressure_safety": "increase", "delivery": "decrease",
}

# --- the clean world -----------------------------------------------------------------------
# Per audience group, in config.AUDIENCE_GROUPS order.
_PAIN_BASE = np.array([4.5, 4.5, 4.5, 6.0, 7.0])
_P_PRACTITIONER = np.array([0.25, 0.45, 0.30, 0.60, 0.50])
_P_BREATHING = np.array([0.30, 0.50, 0.40, 0.40, 0.60])
_P_SLOW = 0.5
_AGE_RANGE = np.array([[18, 40], [65, 88], [25, 60], [20, 70], [30, 70]])
_SELF_TECHNIQUES = {"foam_roller": 0.50, "lacrosse_ball": 0.25, "trigger_point_tool": 0.15,
                    "other": 0.10}
# calves, quads, hamstrings, hips, glutes, lower_back, upper_back, neck, shoulders, other
_REGION_P = np.array([
    [0.20, 0.18, 0.20, 0.12, 0.10, 0.05, 0.04, 0.03, 0.05, 0.03],
    [0.06, 0.08, 0.08, 0.18, 0.08, 0.20, 0.08, 0.08, 0.12, 0.04],
    [0.03, 0.03, 0.07, 0.08, 0.05, 0.20, 0.18, 0.18, 0.15, 0.03],
    [0.10, 0.20, 0.12, 0.15, 0.05, 0.10, 0.05, 0.05, 0.15, 0.03],
    [0.04, 0.05, 0.06, 0.10, 0.08, 0.30, 0.12, 0.12, 0.10, 0.03],
])
# The ROM measure a client's main body region suggests (rom_measure vocabulary order:
# knee, hip, ankle, shoulder, cervical, sit-and-reach).
_REGION_TO_MEASURE = np.array([
    [0, 0, 1, 0, 0, 0],            # calves -> ankle dorsiflexion
    [1, 0, 0, 0, 0, 0],            # quads -> knee flexion
    [0, 0.4, 0, 0, 0, 0.6],        # hamstrings -> straight leg raise or sit-and-reach
    [0, 1, 0, 0, 0, 0],            # hips
    [0, 1, 0, 0, 0, 0],            # glutes
    [0, 0, 0, 0, 0, 1],            # lower back -> sit-and-reach
    [0, 0, 0, 1, 0, 0],            # upper back -> shoulder flexion
    [0, 0, 0, 0, 1, 0],            # neck -> cervical rotation
    [0, 0, 0, 1, 0, 0],            # shoulders
    [1 / 6] * 6,                   # other
])
# Per rom measure: population mean, client half-range, session noise half-width, grid step.
_ROM_WORLD = np.array([
    [125.0, 15.0, 5.0, 1.0],
    [90.0, 20.0, 5.0, 1.0],
    [38.0, 10.0, 4.0, 1.0],
    [160.0, 18.0, 6.0, 1.0],
    [68.0, 12.0, 5.0, 1.0],
    [8.0, 12.0, 3.0, 0.5],
])
_ROM_GROUP_SHIFT = np.array([
    [0, 5, 0, 0, 0, 5],
    [-8, -10, -5, -15, -10, -6],
    [0, 0, 0, 0, 0, -2],
    [-5, -5, 0, -10, 0, 0],
    [-5, -5, 0, -5, -5, -3],
], dtype=float)
_HALF_INCH_CM = 1.27
_AE_LOGIT_AT_REF = float(np.log(0.025 / 0.975))
_PRESSURE_REF = 5.0
# Share of sessions with the field recorded.
_RECORDED = {
    "pain_pre": 0.96, "pain_post": 0.96, "tightness": 0.78, "stress": 0.72, "rom": 0.72,
    "pressure": 0.95, "pace": 0.92, "deep_breathing": 0.90, "technique": 0.98,
    "body_region": 0.97, "duration_min": 0.95, "adverse_event": 0.95, "followup": 0.30,
}

_FIRST_NAMES = (
    "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Robin", "Charlie", "Avery",
    "Maria", "John", "Aisha", "Wei", "Priya", "Tom", "Emma", "Liam", "Olivia", "Noah", "Sofia",
    "Lucas", "Mia", "Ethan", "Chloe", "Omar", "Fatima", "Hannah", "Daniel", "Grace", "José",
    "Zoë", "Björn", "Siobhán", "Kenji", "Amara", "Mateo", "Ingrid", "Rahul", "Leila",
)
_LAST_NAMES = (
    "Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Johnson",
    "Roberts", "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes", "Edwards",
    "Green", "Hall", "Wood", "Harris", "Lewis", "Martin", "Jackson", "Clarke", "Patel", "Khan",
    "Nguyen", "Garcia", "Müller", "O'Brien", "Kowalski", "Novak", "Rossi", "Silva", "Okafor",
    "Yamamoto", "Andersson", "Dubois", "Murphy",
)


def planted_effects() -> pd.DataFrame:
    """Return the planted effects table ``data/planted_effects.csv``."""
    return load_table("planted_effects")


def _tri(rng: np.random.Generator, n: int) -> np.ndarray:
    """Symmetric triangular noise on [-1, 1]."""
    return rng.random(n) + rng.random(n) - 1.0


def _stochastic_round(x: np.ndarray, step: np.ndarray | float,
                      rng: np.random.Generator) -> np.ndarray:
    """Round to a multiple of ``step``, up with probability equal to the remainder (unbiased)."""
    q = x / step
    low = np.floor(q)
    return (low + (rng.random(len(x)) < (q - low))) * step


def _bounded(rng: np.random.Generator, mean: np.ndarray, half_width: np.ndarray | float,
             step: np.ndarray | float, low: np.ndarray | float = 0.0,
             high: np.ndarray | float = 10.0) -> np.ndarray:
    """Draw values around ``mean`` that stay in [low, high] without clipping bias."""
    mean = np.clip(mean, low, high)
    width = np.minimum(half_width, np.minimum(mean - low, high - mean))
    return _stochastic_round(mean + width * _tri(rng, len(mean)), step, rng)


def _draw(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per element: ``probs[rows[i]]`` are element i's probabilities."""
    cdf = np.cumsum(probs, axis=1)
    cdf = cdf / cdf[:, -1:] + np.arange(len(probs))[:, None]  # row r's cdf lies in (r, r + 1]
    k = probs.shape[1]
    found = np.searchsorted(cdf.ravel(), rows + rng.random(len(rows)), side="right")
    return np.minimum(found - rows * k, k - 1)


def _masked(values: np.ndarray, recorded: np.ndarray) -> np.ndarray:
    return np.where(recorded, values, np.nan)


def _effect_arrays(plan: pd.DataFrame) -> dict[str, np.ndarray]:
    """Planted values as arrays indexed [arm, group] (rom: [arm, group, measure])."""
    groups = {g: i for i, g in enumerate(AUDIENCE_GROUPS)}
    measures = {m: i for i, m in enumerate(categories("rom_measure"))}
    out: dict[str, np.ndarray] = {}
    for claim in CLAIM_IDS:
        rows = plan[plan["claim_id"] == claim]
        if claim == "rom":
            arr = np.zeros((2, len(groups), len(measures)))
            g = rows["audience_group"].map(groups).to_numpy()
            m = rows["rom_measure"].map(measures).to_numpy()
            arr[0, g, m] = rows["planted_change"].to_numpy(float)
            arr[1, g, m] = rows["placebo_change"].to_numpy(float)
        else:
            arr = np.zeros((2, len(groups)))
            g = rows["audience_group"].map(groups).to_numpy()
            arr[0, g] = rows["planted_change"].to_numpy(float)
            arr[1, g] = rows["placebo_change"].to_numpy(float)
        out[claim] = np.nan_to_num(arr)
    return out


def _within_client_offsets(n_sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Client index per session and 0-based session number within the client."""
    client = np.repeat(np.arange(len(n_sessions)), n_sessions)
    first = np.cumsum(n_sessions) - n_sessions
    return client, np.arange(int(n_sessions.sum())) - first[client]


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", folded.lower())


def _join(*parts: np.ndarray | str) -> np.ndarray:
    """Element-wise string concatenation of arrays (and scalars), as an object array."""
    n = next(len(p) for p in parts if not isinstance(p, str))
    out = pd.Series(np.full(n, "", dtype=object), dtype="str")
    for part in parts:
        out = out + (part if isinstance(part, str)
                     else pd.Series(np.asarray(part, dtype=object), dtype="str"))
    return out.to_numpy(dtype=object)


def _strings(words: np.ndarray | pa.Array,
             codes: np.ndarray | None = None) -> pd.api.extensions.ExtensionArray:
    """A pandas ``string`` array of ``words[codes]`` (codes < 0 give <NA>), built in arrow."""
    array = words if isinstance(words, pa.Array) else pa.array(
        np.asarray(words, dtype=object).tolist(), type=pa.string())
    if codes is not None:
        array = array.take(pa.array(codes, mask=codes < 0))
    return pd.array(array, dtype=pd.StringDtype("pyarrow"))


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Identifiers such as ``CL-000123``: prefix plus zero-padded numbers, built in arrow."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _identity(rng: np.random.Generator, group: np.ndarray) -> dict[str, np.ndarray]:
    """Fake names, e-mails, phone numbers and birth dates, one per client."""
    n = len(group)
    first_i = rng.integers(0, len(_FIRST_NAMES), n)
    last_i = rng.integers(0, len(_LAST_NAMES), n)
    first = np.array(_FIRST_NAMES, dtype=object)[first_i]
    last = np.array(_LAST_NAMES, dtype=object)[last_i]
    first_slug = np.array([_ascii_slug(s) for s in _FIRST_NAMES], dtype=object)[first_i]
    last_slug = np.array([_ascii_slug(s) for s in _LAST_NAMES], dtype=object)[last_i]
    number = pd.Series(rng.integers(1, 100, n)).astype("str").to_numpy()
    domain = np.array(["example.com", "example.org", "example.net"], dtype=object)[
        rng.integers(0, 3, n)]
    phone_tail = pd.Series(rng.integers(0, 1000, n)).astype("str").str.zfill(3).to_numpy()
    phone_prefix = np.array(["07700 900", "+44 7700 900", "07700900"], dtype=object)[
        rng.integers(0, 3, n)]
    age_days = (_AGE_RANGE[group, 0] + rng.random(n) * (_AGE_RANGE[group, 1] - _AGE_RANGE[group, 0])
                ) * 365.25
    dob = np.datetime64("2024-06-01", "D") - age_days.astype("timedelta64[D]")
    return {
        "first": first,
        "last": last,
        "client_name": _join(first, " ", last),
        "client_email": _join(first_slug, ".", last_slug, number, "@", domain),
        "client_phone": _join(phone_prefix, phone_tail),
        "client_dob": dob,
    }


def _notes(rng: np.random.Generator, first: np.ndarray, last: np.ndarray, phone: np.ndarray,
           region: np.ndarray) -> np.ndarray:
    """Free-text therapist notes, mostly empty, sometimes naming the client or a phone.

    ``region`` is the readable body region of each session ("lower back", "treated area").
    """
    n = len(first)
    kind = _draw(rng, np.array([[0.72, 0.06, 0.06, 0.05, 0.03, 0.05, 0.03]]), np.zeros(n, int))
    templates: list[Callable[[np.ndarray], np.ndarray]] = [
        lambda i: np.full(len(i), "", dtype=object),
        lambda i: _join(first[i], " said the ", region[i], " felt looser"),
        lambda i: np.full(len(i), "Tolerated pressure well", dtype=object),
        lambda i: _join(first[i], " ", last[i], " asked about home exercises"),
        lambda i: _join("Rescheduled, call back on ", phone[i]),
        lambda i: np.full(len(i), "Sore after training at the weekend", dtype=object),
        lambda i: _join("Mr/Ms ", last[i], " mentioned long days at the desk"),
    ]
    out = np.empty(n, dtype=object)
    for k, template in enumerate(templates):
        rows = np.flatnonzero(kind == k)
        out[rows] = template(rows)
    return out


def simulate_sessions(n_clients: int, seed: int, *, start: str = "2024-01-08",
                      control_share: float = 0.2,
                      intake: Callable[[np.ndarray, np.ndarray], _Intake] | None = None,
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (clean_truth_sessions, truth): the mess-free session table and the truth table.

    The sessions have the columns :data:`SIM_COLUMNS`: the clean-table columns except
    ``source_file`` / ``source_line``, with ``client_id`` still the raw identifier
    (``CL-000123``), plus :data:`IDENTITY_COLUMNS`. The truth has :data:`TRUTH_COLUMNS`, one
    row per (claim_id, audience_group) and, for ``rom``, per ``rom_measure``; the ``all`` rows
    average the group values weighted by the simulated clients of each arm (with that
    measure, for ``rom``). Session dates run from ``start`` to :data:`LAST_DATE`.

    ``age`` is the client's completed years at each session, from their simulated date of
    birth (what cleaning derives from the log's birth-date column); ``clinician``, ``sex`` and
    ``symptom_duration_weeks`` are NA unless ``intake`` (used by :func:`simulate_network`)
    gives them: it receives each client's audience group and date of birth and returns an
    ``_Intake`` drawn from its own random stream, so every other column is what it would be.
    """
    if n_clients < 1:
        raise ValueError("n_clients must be at least 1")
    if not 0.0 <= control_share <= 1.0:
        raise ValueError("control_share must lie between 0 and 1")
    first_day = np.datetime64(start, "D")
    available = int((LAST_DATE - first_day).astype(int))
    if available < 0:
        raise ValueError(f"start must be on or before {LAST_DATE}")
    rng = np.random.default_rng(seed)
    plan = planted_effects()
    eff = _effect_arrays(plan)
    measures = categories("rom_measure")
    regions = categories("body_region")
    techniques = categories("technique")

    # Clients.
    c = n_clients
    group = rng.integers(0, len(AUDIENCE_GROUPS), c)
    arm = (rng.random(c) < control_share).astype(int)  # 0 = mfr, 1 = control
    site = _draw(rng, _SITE_P[None, :], np.zeros(c, int))
    rate = np.exp(rng.uniform(np.log(0.3), np.log(3.0), c))
    n_sess = np.minimum.reduce([
        np.full(c, _MAX_SESSIONS), 1 + np.floor(26 * rate).astype(int),
        1 + rng.poisson(4.0 * np.sqrt(rate)),
    ])
    half_rater = rng.random(c) < 0.2
    pain_base = _PAIN_BASE[group] + 1.5 * _tri(rng, c)
    tight_base = 5.5 + 2.0 * _tri(rng, c)
    stress_base = 5.0 + 2.0 * _tri(rng, c)
    technique_p = np.zeros((len(AUDIENCE_GROUPS), len(techniques)))
    technique_p[:, techniques.index("practitioner")] = _P_PRACTITIONER
    for name, share in _SELF_TECHNIQUES.items():
        technique_p[:, techniques.index(name)] = (1 - _P_PRACTITIONER) * share
    main_technique = _draw(rng, technique_p, group)
    main_region = _draw(rng, _REGION_P, group)
    measure = _draw(rng, _REGION_TO_MEASURE, main_region)
    has_rom = rng.random(c) < 0.88
    inch = np.array(SITES)[site] == INCH_SITE
    rom_step = np.where(measure == measures.index("sit_and_reach_cm"),
                        np.where(inch, _HALF_INCH_CM, _ROM_WORLD[measure, 3]),
                        _ROM_WORLD[measure, 3])
    rom_base = (_ROM_WORLD[measure, 0] + _ROM_GROUP_SHIFT[group, measure]
                + _ROM_WORLD[measure, 1] * _tri(rng, c))
    pressure_pref = np.where(arm == 0, rng.uniform(2.0, 8.0, c), rng.uniform(0.0, 2.5, c))
    slow_pref = rng.random(c) < _P_SLOW
    q = _P_BREATHING[group]
    breath_propensity = rng.beta(4 * q, 4 * (1 - q))
    ident = _identity(rng, group)
    plan_intake = intake(group, ident["client_dob"]) if intake is not None else None
    if plan_intake is not None:
        site = plan_intake.site
        inch = plan_intake.site_names[site] == INCH_SITE
        rom_step = np.where(measure == measures.index("sit_and_reach_cm"),
                            np.where(inch, _HALF_INCH_CM, _ROM_WORLD[measure, 3]),
                            _ROM_WORLD[measure, 3])

    # Sessions and dates.
    client, k = _within_client_offsets(n_sess)
    n = len(client)
    gap = np.maximum(1, np.rint(7.0 / rate[client] * rng.uniform(0.6, 1.4, n))).astype(np.int64)
    gap[k == 0] = 0
    offset = np.cumsum(gap)
    offset -= offset[np.cumsum(n_sess) - n_sess][client]
    span = offset[np.cumsum(n_sess) - 1]
    limit = min(_MAX_COURSE_DAYS, available)
    scale = np.where(span > limit, limit / np.maximum(span, 1), 1.0)
    offset = np.floor(offset * scale[client]).astype(np.int64)
    span = offset[np.cumsum(n_sess) - 1]
    first_offset = np.floor(rng.random(c) * (available - span + 1)).astype(np.int64)
    date = first_day + (first_offset[client] + offset).astype("timedelta64[D]")
    weeks = offset / 7.0
    spw = np.where(span > 0, (n_sess - 1) / np.maximum(span, 1) * 7.0, 1.0)

    g, a = group[client], arm[client]
    mfr = a == 0
    # Session-level choices.
    technique = np.where(rng.random(n) < 0.8, main_technique[client], _draw(rng, technique_p, g))
    practitioner = (technique == techniques.index("practitioner")).astype(float)
    region = np.where(rng.random(n) < 0.75, main_region[client], _draw(rng, _REGION_P, g))
    slow = np.where(rng.random(n) < 0.8, slow_pref[client], rng.random(n) < _P_SLOW)
    breathing = rng.random(n) < breath_propensity[client]
    duration = np.where(practitioner == 1, rng.integers(20, 61, n), rng.integers(2, 21, n))
    pressure = np.clip(np.rint(pressure_pref[client] + 1.5 * _tri(rng, n) + practitioner * mfr),
                       0, np.where(mfr, 10, 3))

    # Outcomes.
    pain_step = np.where(half_rater[client], 0.5, 1.0)
    slope = eff["lasting_relief"][a, g] + eff["consistency"][a, g] * (spw[client] - 1.0)
    pain_mean = pain_base[client] + slope * weeks
    pain_delta = (eff["pain"][a, g]
                  + eff["delivery"][a, g] * (practitioner - _P_PRACTITIONER[g])
                  + eff["slow_pace"][a, g] * (slow - _P_SLOW))
    if plan_intake is not None:
        pain_delta = pain_delta + plan_intake.pain_shift[client]
    pain_pre = _bounded(rng, pain_mean, 1.5, pain_step)
    pain_post = _bounded(rng, pain_mean + pain_delta, 2.0, pain_step)
    tight_pre = _bounded(rng, tight_base[client], 1.5, 1.0)
    tight_post = _bounded(rng, tight_base[client] + eff["tightness"][a, g], 2.0, 1.0)
    stress_delta = eff["stress"][a, g] + eff["breathing"][a, g] * (breathing - _P_BREATHING[g])
    stress_pre = _bounded(rng, stress_base[client], 1.5, 1.0)
    stress_post = _bounded(rng, stress_base[client] + stress_delta, 2.0, 1.0)
    followup_draw = rng.random(n)
    followup_hours = np.where(rng.random(n) < 0.6, 24.0, 48.0)
    # Informative drop-out (see FOLLOWUP_DROPOUT): a client's own session response carries
    # into follow-up pain, and poor responders are rarely followed up.
    response, deviation = _session_response(client, c, pain_post - pain_pre, pain_delta)
    pain_followup = _bounded(rng, pain_mean + FOLLOWUP_RETENTION * pain_delta
                             + FOLLOWUP_RESPONSE_CARRY * deviation[client], 2.0, pain_step)
    followed = _followed_up(np.random.default_rng([seed, _FOLLOWUP_STREAM]), response)
    has_followup = followed[client] & (followup_draw < FOLLOWUP_DROPOUT["session_share"])
    m = measure[client]
    bounds = load_table("rom_bounds").set_index("rom_measure").loc[list(measures)]
    low, high = bounds["accept_low"].to_numpy(float)[m], bounds["accept_high"].to_numpy(float)[m]
    rom_mean = rom_base[client]
    rom_pre = _bounded(rng, rom_mean, _ROM_WORLD[m, 2], rom_step[client], low, high)
    rom_post = _bounded(rng, rom_mean + eff["rom"][a, g, m], _ROM_WORLD[m, 2], rom_step[client],
                        low, high)
    rom_pre, rom_post = np.round(rom_pre, 2), np.round(rom_post, 2)
    logit = _AE_LOGIT_AT_REF + eff["pressure_safety"][a, g] * (pressure - _PRESSURE_REF)
    any_event = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    ae_kind = 1 + _draw(rng, np.array([[0.40, 0.35, 0.15, 0.10]]), np.zeros(n, int))
    adverse = np.where(any_event, ae_kind, 0)

    def recorded(field: str) -> np.ndarray:
        return rng.random(n) < _RECORDED[field]

    rom_recorded = has_rom[client] & recorded("rom")
    tight_recorded, stress_recorded = recorded("tightness"), recorded("stress")
    technique_recorded = recorded("technique")

    def cat(codes: np.ndarray, field: str, keep: np.ndarray | bool = True) -> pd.Categorical:
        return pd.Categorical.from_codes(np.where(keep, codes, -1),
                                         dtype=CATEGORY_DTYPES[field])

    delivery = np.where(practitioner == 1, 0, 1)
    notes = _notes(rng, ident["first"][client], ident["last"][client],
                   ident["client_phone"][client],
                   np.array([r.replace("_", " ") if r != "other" else "treated area"
                             for r in regions], dtype=object)[region])
    note_codes, note_words = pd.factorize(notes)
    note_codes = np.where(note_words[note_codes] == "", -1, note_codes)
    clean = pd.DataFrame({
        "session_id": _strings(_numbered("S", np.arange(1, n + 1), 7)),
        "client_id": _strings(_numbered("CL-", np.arange(1, c + 1), 6), client),
        "site": pd.Categorical.from_codes(
            site[client], categories=list(SITES if plan_intake is None else
                                          plan_intake.site_names)),
        "session_date": pd.to_datetime(date),
        "audience_group": cat(g, "audience_group"),
        "arm": cat(a, "arm"),
        "technique": cat(technique, "technique", technique_recorded),
        "delivery": cat(delivery, "delivery", technique_recorded),
        "body_region": cat(region, "body_region", recorded("body_region")),
        "duration_min": _masked(duration.astype(float), recorded("duration_min")),
        "pressure": _masked(pressure, recorded("pressure")),
        "pace": cat(np.where(slow, 0, 1), "pace", recorded("pace")),
        "deep_breathing": pd.array(np.where(recorded("deep_breathing"), breathing, pd.NA),
                                   dtype="boolean"),
        "pain_pre": _masked(pain_pre, recorded("pain_pre")),
        "pain_post": _masked(pain_post, recorded("pain_post")),
        "pain_followup": _masked(pain_followup, has_followup),
        "followup_hours": _masked(followup_hours, has_followup),
        "rom_measure": cat(m, "rom_measure", has_rom[client]),
        "rom_pre": _masked(rom_pre, rom_recorded),
        "rom_post": _masked(rom_post, rom_recorded),
        "tightness_pre": _masked(tight_pre, tight_recorded),
        "tightness_post": _masked(tight_post, tight_recorded),
        "stress_pre": _masked(stress_pre, stress_recorded),
        "stress_post": _masked(stress_post, stress_recorded),
        "adverse_event": cat(adverse, "adverse_event", recorded("adverse_event")),
        "client_name": _strings(ident["client_name"], client),
        "client_email": _strings(ident["client_email"], client),
        "client_phone": _strings(ident["client_phone"], client),
        "client_dob": pd.to_datetime(ident["client_dob"][client]),
        "notes": _strings(np.asarray(note_words, dtype=object), note_codes),
    })
    clean["age"] = completed_years(ident["client_dob"][client], date).astype(np.float64)
    if plan_intake is None:
        clean["clinician"] = _strings(np.array([], dtype=object), np.full(n, -1))
        clean["sex"] = pd.Categorical.from_codes(np.full(n, -1), dtype=CATEGORY_DTYPES["sex"])
        clean["symptom_duration_weeks"] = np.full(n, np.nan)
    else:
        clean["clinician"] = _strings(plan_intake.clinician_names, plan_intake.clinician[client])
        clean["sex"] = pd.Categorical.from_codes(plan_intake.sex[client],
                                                 dtype=CATEGORY_DTYPES["sex"])
        clean["symptom_duration_weeks"] = plan_intake.duration_weeks[client]
    truth = _truth_table(plan, group, arm, np.where(has_rom, measure, -1))
    return clean[list(SIM_COLUMNS)], truth


def _session_response(client: np.ndarray, n_clients: int, change: np.ndarray,
                      expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per client: the mean within-session pain change (post minus pre, the response seen in
    their sessions) and its deviation from the planted expectation (mean zero)."""
    count = np.maximum(np.bincount(client, minlength=n_clients), 1)
    response = np.bincount(client, weights=change, minlength=n_clients) / count
    deviation = response - np.bincount(client, weights=expected, minlength=n_clients) / count
    return response, deviation


def _followed_up(rng: np.random.Generator, response: np.ndarray) -> np.ndarray:
    """Which clients are ever followed up: a logistic model of their session response."""
    logit = FOLLOWUP_DROPOUT["intercept"] + FOLLOWUP_DROPOUT["per_point"] * response
    return rng.random(len(response)) < 1.0 / (1.0 + np.exp(-logit))


def planted_followup(truth: pd.DataFrame) -> pd.DataFrame:
    """The true lasting-relief follow-up estimand per audience group (incl. ``all``).

    Follow-up minus pre-session pain is :data:`FOLLOWUP_RETENTION` times the planted
    within-session pain change, in each arm (the carried response deviation has mean zero),
    whatever the drop-out. Columns: ``audience_group``, ``outcome`` (``pain_followup``),
    ``planted_change`` (MFR arm), ``placebo_change`` (control arm), ``planted_effect``
    (MFR minus control), ``unit``."""
    pain = truth.loc[truth["claim_id"] == "pain",
                     ["audience_group", "planted_change", "placebo_change"]]
    return pain.assign(
        outcome="pain_followup",
        planted_change=FOLLOWUP_RETENTION * pain["planted_change"],
        placebo_change=FOLLOWUP_RETENTION * pain["placebo_change"],
        planted_effect=lambda t: (t["planted_change"] - t["placebo_change"]).round(12),
        unit="points",
    )[["audience_group", "outcome", "planted_change", "placebo_change", "planted_effect",
       "unit"]].reset_index(drop=True)


def _followup_truth(clean: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """The truth json's ``followup`` block: the estimand, the mechanism and what it did."""
    per_client = (clean.assign(_f=clean["pain_followup"].notna())
                  .groupby("client_id", observed=True)["_f"].any())
    return {
        "estimand": "follow-up pain minus pre-session pain of the same session (points), "
                    f"{FOLLOWUP_RETENTION:g} x the planted within-session pain change",
        "mechanism": (
            "missing at random given the session response: a client is ever followed up "
            "with probability 1 / (1 + exp(-(intercept + per_point x response))), response = "
            "the client's mean within-session pain change (post minus pre, all sessions); a "
            "followed-up client's sessions have follow-up with probability session_share. "
            "Follow-up pain keeps response_carry x the client's deviation of that response "
            "from its planted expectation, so poor responders (pain fell little) have worse "
            "follow-up and are missing more often: complete-case follow-up relief is biased "
            "towards more relief; baseline pain alone does not explain the drop-out."),
        "intercept": FOLLOWUP_DROPOUT["intercept"],
        "per_point": FOLLOWUP_DROPOUT["per_point"],
        "session_share": FOLLOWUP_DROPOUT["session_share"],
        "response_carry": FOLLOWUP_RESPONSE_CARRY,
        "clients_followed_up": int(per_client.sum()),
        "clients": int(len(per_client)),
        "truth": planted_followup(truth).to_dict(orient="records"),
    }


def _truth_table(plan: pd.DataFrame, group: np.ndarray, arm: np.ndarray,
                 measure: np.ndarray) -> pd.DataFrame:
    """Per-group planted values plus the client-weighted ``all`` rows and the MCIDs."""
    measures = categories("rom_measure")
    rows = plan.assign(
        _g=plan["audience_group"].map({g: i for i, g in enumerate(AUDIENCE_GROUPS)}))
    pooled = []
    for (claim, rom_m), cell in rows.groupby(["claim_id", "rom_measure"], dropna=False,
                                             sort=False):
        keep = np.ones(len(group), bool) if pd.isna(rom_m) else (
            measure == measures.index(rom_m))
        values = {}
        for column, arm_code in (("planted_change", 0), ("placebo_change", 1)):
            v = cell[column].to_numpy(float)
            counts = np.bincount(group[keep & (arm == arm_code)],
                                 minlength=len(AUDIENCE_GROUPS))[cell["_g"].to_numpy()]
            if np.isnan(v).all():
                values[column] = np.nan
            elif np.ptp(v) == 0:
                values[column] = float(v[0])
            elif counts.sum() == 0:
                values[column] = float(v.mean())
            else:
                values[column] = float(np.average(v, weights=counts))
        pooled.append({"claim_id": claim, "audience_group": "all", "outcome":
                       cell["outcome"].iloc[0], "rom_measure": rom_m, "unit":
                       cell["unit"].iloc[0], "reference": "", **values})
    thresholds = load_table("thresholds").set_index("outcome")["mcid"]
    rom_mcid = load_table("rom_bounds").set_index("rom_measure")["mcid"]
    claim_order = {claim: i for i, claim in enumerate(CLAIM_IDS)}
    group_order = {g: i for i, g in enumerate((*AUDIENCE_GROUPS, "all"))}
    truth = (
        pd.concat([rows.drop(columns=["_g"]), pd.DataFrame(pooled)], ignore_index=True)
        .assign(
            planted_effect=lambda t: (t["planted_change"] - t["placebo_change"]).round(12),
            mcid=lambda t: t["rom_measure"].map(rom_mcid).fillna(t["claim_id"].map(thresholds)),
            expected_direction=lambda t: t["claim_id"].map(_EXPECTED_DIRECTION),
            _c=lambda t: t["claim_id"].map(claim_order),
            _gr=lambda t: t["audience_group"].map(group_order),
            _mr=lambda t: t["rom_measure"].map({m: i for i, m in enumerate(measures)}),
        )
        .sort_values(["_c", "_mr", "_gr"], na_position="first", kind="stable")
    )
    return truth[list(TRUTH_COLUMNS)].reset_index(drop=True)


# --- the mess ------------------------------------------------------------------------------
_MISSING_WRITTEN = ("", "", "", "", "", "n/a", "N/A", "-", "refused", "not recorded", "NA", "?")
"""Blank spellings written for missing values (all listed in ``data/missing_tokens.csv``)."""
_BOOLEAN_WRITTEN = {
    True: ("yes", "Yes", "Y", "y", "true", "TRUE", "1"),
    False: ("no", "No", "N", "n", "false", "FALSE", "0"),
}
_CASE_STYLES: tuple[Callable[[str], str], ...] = (
    lambda s: s, str.title, str.upper, str.capitalize, lambda s: f" {s.title()} ",
)
_CASE_P = np.array([[0.45, 0.25, 0.10, 0.15, 0.05]])
_HEADER_STYLES: tuple[Callable[[list[str]], str], ...] = (
    lambda w: " ".join(x.capitalize() for x in w),      # Pain Before
    lambda w: " ".join(w),                              # pain before
    lambda w: "_".join(w).upper(),                      # PAIN_BEFORE
    lambda w: "_".join(w),                              # pain_before
    lambda w: "-".join(w),                              # pain-before
    lambda w: " ".join(w).capitalize(),                 # Pain before
    lambda w: " " + " ".join(x.capitalize() for x in w) + " ",  # ' Pain Before '
)
_HEADER_P = np.array([[0.30, 0.15, 0.15, 0.10, 0.10, 0.15, 0.05]])
_IDENTIFIER_HEADERS = {
    "client_name": ("name", "client name", "patient name", "full name"),
    "client_email": ("email", "e-mail", "email address"),
    "client_phone": ("phone", "telephone", "mobile", "phone number"),
    "client_dob": ("dob", "date of birth", "birth date", "birthdate"),
    "notes": ("notes", "note", "comments", "comment", "therapist notes", "remarks"),
}
_EXTRA_COLUMNS = {
    "Insurance Plan": ("Plan A", "Plan B", "Plan C", "Self-pay", "Corporate"),
    "Referral Source": ("GP", "Website", "Friend", "Sports club", "Employer", ""),
    "Invoice Ref": ("INV-2291", "INV-3310", "INV-4417", "pending", ""),
}
_RAW_FIELDS: tuple[str, ...] = (
    "session_id", "client_id", "site", "session_date", "audience_group", "arm", "technique",
    "body_region", "duration_min", "pressure", "pace", "deep_breathing", "pain_pre",
    "pain_post", "pain_followup", "followup_hours", "rom_measure", "rom_pre", "rom_post",
    "tightness_pre", "tightness_post", "stress_pre", "stress_post", "adverse_event",
)
"""Canonical fields written to the messy log (``delivery`` is left for the cleaner to derive;
``session_id`` is written in about half of the files)."""

# reason code, column it corrupts (kinds on one column never share a row), share of rows
_BAD_KINDS: tuple[tuple[str, str, float], ...] = (
    ("missing_client_id", "client_id", 0.004),
    ("missing_date", "session_date", 0.004),
    ("unparseable_date", "session_date", 0.010),
    ("future_date", "session_date", 0.007),
    ("date_before_1990", "session_date", 0.005),
    ("unknown_audience_group", "audience_group", 0.007),
    ("unknown_arm", "arm", 0.003),
    ("unknown_technique", "technique", 0.004),
    ("unknown_body_region", "body_region", 0.004),
    ("unknown_pace", "pace", 0.004),
    ("unknown_adverse_event", "adverse_event", 0.003),
    ("unknown_rom_measure", "rom", 0.004),
    ("unparseable_boolean", "deep_breathing", 0.004),
    ("unparseable_number", "pain_pre", 0.006),
    ("out_of_range", "numbers", 0.024),
    ("rom_out_of_range", "rom", 0.010),
    ("rom_without_measure", "rom", 0.005),
    ("missing_audience_group", "audience_group", 0.003),
    ("date_order_mismatch", "session_date", 0.004),
    ("rom_unit_mismatch", "rom", 0.003),
)
"""Bad values planted: (reason code, column group, share of rows). Kinds on the same column
group never share a row; about 6 % of bad rows carry a second reason on another column."""
_BAD_VALUES = {
    "unparseable_date": ("sometime in march", "31/02/2024", "last tuesday", "2024-13-45",
                         "30/02/2025", "week 3"),
    "unknown_audience_group": ("astronaut", "Astronaut", "gardener", "student", "VIP"),
    "unknown_arm": ("crossover", "arm B", "pilot"),
    "unknown_technique": ("vibration plate", "cupping", "acupuncture"),
    "unknown_body_region": ("left elbow", "whole body", "jaw"),
    "unknown_pace": ("medium", "moderate", "varied"),
    "unknown_adverse_event": ("headache", "felt faint", "nausea"),
    "unknown_rom_measure": ("grip strength", "toe touch", "thomas test"),
    "unparseable_boolean": ("maybe", "sometimes", "partly"),
    "unparseable_number": ("lots", "very sore", "high", "bad"),
    "missing_audience_group": ("", "", "n/a", "-"),
}
_OUT_OF_RANGE = {
    "pain_post": ("14", "12", "11"),
    "tightness_pre": ("15", "13"),
    "stress_post": ("20", "11"),
    "duration_min": ("0", "0 min", "300", "300 mins"),
    "pressure": ("12", "11"),
}
_DUPLICATE_SHARE = 0.015
_SECOND_REASON_SHARE = 0.06
_ARM_BLANK_SHARE = 0.05


class _Column:
    """A string column kept as codes into an array of words: cheap to edit, reorder and write."""

    __slots__ = ("codes", "words")

    def __init__(self, words: np.ndarray | Sequence[str], codes: np.ndarray) -> None:
        self.words = np.asarray(words, dtype=object)
        self.codes = np.asarray(codes, dtype=np.int64)

    @classmethod
    def of(cls, values: pd.Series | np.ndarray) -> _Column:
        """Column holding exactly these strings."""
        codes, uniques = pd.factorize(values)
        return cls(np.asarray(uniques, dtype=object), codes)

    def put(self, rows: np.ndarray, values: np.ndarray | Sequence[str]) -> None:
        """Overwrite the given rows with new strings."""
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
        self.codes[rows] = len(self.words) + codes
        self.words = np.concatenate([self.words, np.asarray(uniques, dtype=object)])

    def series(self, order: np.ndarray) -> pd.Series:
        """The column in ``order`` as a pandas string Series."""
        taken = pa.array(self.words.tolist(), type=pa.string()).take(pa.array(self.codes[order]))
        return pd.Series(taken.to_pandas(types_mapper=_STR_TYPES.get))


_STR_TYPES = {pa.string(): pd.StringDtype("pyarrow", na_value=np.nan)}


def _pick(rng: np.random.Generator, options: Sequence[str], n: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), n)]


def _with_missing(rng: np.random.Generator, words: np.ndarray, codes: np.ndarray,
                  absent: np.ndarray) -> _Column:
    """Column of ``words[codes]`` whose absent rows get a random blank spelling."""
    codes = np.where(absent, len(words) + rng.integers(0, len(_MISSING_WRITTEN), len(codes)),
                     codes)
    return _Column(np.concatenate([words, np.asarray(_MISSING_WRITTEN, dtype=object)]), codes)


def _number(value: float) -> str:
    return f"{value:.10g}"


def _render_numbers(rng: np.random.Generator, values: np.ndarray,
                    variants: dict[str, float], fmt: Callable[[float, str], str | None],
                    counts: Counter, field: str) -> _Column:
    """Write numbers as strings, each row in a randomly drawn spelling (by distinct value)."""
    values = np.asarray(values, dtype=float)
    names = list(variants)
    codes, unique = pd.factorize(values)
    absent = codes < 0
    text = np.empty((len(unique), len(names)), dtype=object)
    applied = np.zeros((len(unique), len(names)), dtype=np.int64)
    for i, u in enumerate(unique):
        for j, name in enumerate(names):
            written = fmt(float(u), name)
            text[i, j], applied[i, j] = (written, j) if written is not None else (_number(u), 0)
    choice = _draw(rng, np.array([list(variants.values())]), np.zeros(len(values), int))
    cell = np.maximum(codes, 0) * len(names) + choice
    used = np.bincount(applied.ravel()[cell[~absent]], minlength=len(names))
    for name, count in zip(names, used, strict=True):
        if name != "plain" and count:
            counts[f"{field}:{name}"] += int(count)
    counts[f"{field}:missing"] += int(absent.sum())
    return _with_missing(rng, text.ravel(), cell, absent)


def _rating_format(words: dict[float, str]) -> Callable[[float, str], str | None]:
    def fmt(u: float, name: str) -> str | None:
        if name == "plain":
            return _number(u)
        if name == "fraction":
            return f"{_number(u)}/10"
        if name == "out_of_10":
            return f"{_number(u)} out of 10"
        if name == "vas_mm":
            return f"{_number(u * 10)} mm"
        if name == "range" and u % 1 == 0.5:
            return f"{int(u - 0.5)}-{int(u + 0.5)}"
        if name == "word" and u in words:
            return words[u]
        return None
    return fmt


def _duration_format(u: float, name: str) -> str | None:
    return {"plain": _number(u), "min": f"{_number(u)} min", "mins": f"{_number(u)} mins"}[name]


def _degrees_format(u: float, name: str) -> str | None:
    return {"plain": _number(u), "deg": f"{_number(u)} deg", "degree_sign": f"{_number(u)}°",
            "radians": f"{np.deg2rad(u):.4f} rad"}[name]


def _cm_format(u: float, name: str) -> str | None:
    if name == "plain":
        return _number(u)
    if name == "cm":
        return f"{_number(u)} cm"
    half_inches = u / 2.54 * 2
    if abs(half_inches - round(half_inches)) > 1e-6:
        return None  # not measured in inches: keep centimetres
    inches = _number(round(half_inches) / 2)
    return f"{inches} in" if name == "inches" else f'{inches}"'


def _render_dates(rng: np.random.Generator, dates: pd.Series, counts: Counter,
                  field: str) -> _Column:
    """Write dates as ISO, day-first (padded or not) or Excel serial numbers."""
    codes, unique = pd.factorize(dates.to_numpy().astype("datetime64[D]"))
    absent = codes < 0
    u = pd.DatetimeIndex(unique)
    table = np.stack([
        np.asarray(u.strftime("%Y-%m-%d"), dtype=object),
        np.asarray(u.strftime("%d/%m/%Y"), dtype=object),
        _join(u.day.astype(str).to_numpy(), "/", u.month.astype(str).to_numpy(), "/",
              u.year.astype(str).to_numpy()),
        np.asarray((u.to_numpy().astype("datetime64[D]") - _EXCEL_EPOCH).astype(np.int64)
                   .astype(str), dtype=object),
    ], axis=1)
    names = ("iso", "day_first", "day_first_unpadded", "excel_serial")
    choice = _draw(rng, np.array([[0.50, 0.25, 0.05, 0.20]]), np.zeros(len(codes), int))
    for j, name in enumerate(names[1:], start=1):
        counts[f"{field}:{name}"] += int(((choice == j) & ~absent).sum())
    return _with_missing(rng, table.ravel(), np.maximum(codes, 0) * len(names) + choice, absent)


def _render_category(rng: np.random.Generator, values: pd.Series, field: str,
                     counts: Counter) -> _Column:
    """Write a categorical field as random synonyms of its value, in random letter case."""
    if field == "deep_breathing":
        levels: list = [True, False]
        synonyms = [list(_BOOLEAN_WRITTEN[True]), list(_BOOLEAN_WRITTEN[False])]
        codes = np.where(values.isna(), -1, np.where(values.fillna(False), 0, 1))
        styles: Sequence[Callable[[str], str]] = (lambda s: s,)
        style_p = np.array([[1.0]])
    else:
        levels = list(values.cat.categories)
        table = vocabulary(field)
        synonyms = [table.loc[table["canonical"] == level, "synonym"].tolist() or [level]
                    for level in levels]
        codes = values.cat.codes.to_numpy()
        styles, style_p = _CASE_STYLES, _CASE_P
    flat = [style(s) for syns in synonyms for s in syns for style in styles]
    is_canonical = np.array([s == str(level) for level, syns in zip(levels, synonyms, strict=True)
                             for s in syns for _ in styles])
    sizes = np.array([len(s) for s in synonyms])
    offsets = np.cumsum(sizes * len(styles)) - sizes * len(styles)
    present = codes >= 0
    safe = np.where(present, codes, 0)
    pick = np.floor(rng.random(len(codes)) * sizes[safe]).astype(np.int64)
    style = _draw(rng, style_p, np.zeros(len(codes), int))
    index = offsets[safe] + pick * len(styles) + style
    if field != "deep_breathing":
        counts[f"{field}:synonym"] += int((~is_canonical[index] & present).sum())
        counts[f"{field}:letter_case"] += int(((style > 0) & present).sum())
    counts[f"{field}:missing"] += int((~present).sum())
    return _with_missing(rng, np.asarray(flat, dtype=object), index, ~present)


def _header(rng: np.random.Generator, aliases: Sequence[str]) -> str:
    alias = aliases[int(rng.integers(0, len(aliases)))]
    style = _HEADER_STYLES[int(_draw(rng, _HEADER_P, np.zeros(1, int))[0])]
    return style(alias.split())


def _bad_dates(rng: np.random.Generator, dates: pd.Series, years: tuple[int, int]) -> np.ndarray:
    """The given dates moved to a random year in [years], written ISO or day-first."""
    d = pd.DatetimeIndex(dates)
    year = rng.integers(years[0], years[1] + 1, len(d))
    day = np.where((d.month == 2) & (d.day == 29), 28, d.day)
    moved = pd.DatetimeIndex(pd.to_datetime(pd.DataFrame({"year": year, "month": d.month,
                                                          "day": day})))
    iso = np.asarray(moved.strftime("%Y-%m-%d"), dtype=object)
    day_first = np.asarray(moved.strftime("%d/%m/%Y"), dtype=object)
    return np.where(rng.random(len(d)) < 0.5, iso, day_first)


_TARGETS: tuple[str, ...] = (
    "client_id", "session_date", "audience_group", "arm", "technique", "body_region", "pace",
    "adverse_event", "rom_measure", "deep_breathing", "pain_pre", "rom_pre", "rom_post",
    *_OUT_OF_RANGE,
)


def _mask_text(mask: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Turn bit masks into ';'-joined names (bit i = names[i]), once per distinct mask."""
    codes, unique = pd.factorize(mask)
    text = np.array([";".join(sorted(name for i, name in enumerate(names) if m >> i & 1))
                     for m in unique.tolist()], dtype=object)
    return text[codes]


def _plant_bad_rows(rng: np.random.Generator, clean: pd.DataFrame,
                    raw: dict[str, _Column]) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite a few % of rows with bad values.

    Returns two bit masks per row: the reason codes planted (bit i = ``_BAD_KINDS[i]``) and the
    canonical columns corrupted (bit i = ``_TARGETS[i]``).
    """
    n = len(clean)
    names = [k[0] for k in _BAD_KINDS]
    column_of = np.array([k[1] for k in _BAD_KINDS])
    probs = np.array([[1.0 - sum(k[2] for k in _BAD_KINDS), *[k[2] for k in _BAD_KINDS]]])
    primary = _draw(rng, probs, np.zeros(n, int)) - 1
    second = np.where(rng.random(n) < _SECOND_REASON_SHARE,
                      _draw(rng, probs[:, 1:], np.zeros(n, int)), -1)
    second = np.where((primary >= 0) & (second >= 0)
                      & (column_of[np.maximum(second, 0)] != column_of[np.maximum(primary, 0)]),
                      second, -1)
    has_rom = (clean["rom_measure"].notna()
               & (clean["rom_pre"].notna() | clean["rom_post"].notna())).to_numpy()
    rom_kinds = np.flatnonzero(column_of == "rom")
    out_of_range = names.index("out_of_range")
    primary = np.where(np.isin(primary, rom_kinds) & ~has_rom, out_of_range, primary)
    # A day-first date reads month-first only when its day is above 12.
    order_kind = names.index("date_order_mismatch")
    swappable = (clean["session_date"].dt.day > 12).to_numpy()
    primary = np.where((primary == order_kind) & ~swappable, names.index("unparseable_date"),
                       primary)
    second = np.where((second == order_kind) & ~swappable, -1, second)
    second = np.where(np.isin(second, rom_kinds) & ~has_rom, -1, second)
    second = np.where((second == out_of_range) & (primary == out_of_range), -1, second)
    reason_mask = np.zeros(n, dtype=np.int64)
    column_mask = np.zeros(n, dtype=np.int64)
    bounds = load_table("rom_bounds").set_index("rom_measure")

    def plant(rows: np.ndarray, target: str, values: np.ndarray, kind: int) -> None:
        raw[target].put(rows, values)
        reason_mask[rows] |= 1 << kind
        column_mask[rows] |= 1 << _TARGETS.index(target)

    for kind, reason in enumerate(names):
        rows = np.flatnonzero((primary == kind) | (second == kind))
        m = len(rows)
        if m == 0:
            continue
        if reason == "missing_client_id":
            plant(rows, "client_id", _pick(rng, ("", "n/a", "-"), m), kind)
        elif reason == "missing_date":
            plant(rows, "session_date", _pick(rng, ("", "n/a"), m), kind)
        elif reason in ("future_date", "date_before_1990"):
            years = (2031, 2035) if reason == "future_date" else (1975, 1989)
            plant(rows, "session_date",
                  _bad_dates(rng, clean["session_date"].iloc[rows], years), kind)
        elif reason == "out_of_range":
            which = rng.integers(0, len(_OUT_OF_RANGE), m)
            for f, (field, options) in enumerate(_OUT_OF_RANGE.items()):
                sub = rows[which == f]
                plant(sub, field, _pick(rng, options, len(sub)), kind)
        elif reason == "rom_out_of_range":
            b = bounds.loc[clean["rom_measure"].iloc[rows].astype(str)]
            value = np.where(rng.random(m) < 0.7,
                             b["accept_high"].to_numpy() + rng.uniform(60, 300, m),
                             b["accept_low"].to_numpy() - rng.uniform(60, 150, m))
            text = pd.Series(np.rint(value).astype(np.int64)).astype("str").to_numpy(object)
            pre = rng.random(m) < 0.5
            plant(rows[pre], "rom_pre", text[pre], kind)
            plant(rows[~pre], "rom_post", text[~pre], kind)
        elif reason == "date_order_mismatch":
            plant(rows, "session_date", np.asarray(
                clean["session_date"].iloc[rows].dt.strftime("%m/%d/%Y"), dtype=object), kind)
        elif reason == "rom_unit_mismatch":
            # An angle written in inches, or a sit-and-reach distance in degrees.
            value = clean["rom_pre"].iloc[rows].fillna(clean["rom_post"].iloc[rows]).to_numpy()
            angle = (clean["rom_measure"].iloc[rows] != "sit_and_reach_cm").to_numpy()
            number = pd.Series(np.rint(np.abs(value)).astype(np.int64)).astype("str")
            text = np.where(angle, number + " in", number + " deg").astype(object)
            pre = rng.random(m) < 0.5
            plant(rows[pre], "rom_pre", text[pre], kind)
            plant(rows[~pre], "rom_post", text[~pre], kind)
        elif reason == "rom_without_measure":
            plant(rows, "rom_measure", _pick(rng, ("", "", "n/a", "-"), m), kind)
        elif reason == "unknown_rom_measure":
            plant(rows, "rom_measure", _pick(rng, _BAD_VALUES[reason], m), kind)
        else:
            plant(rows, str(column_of[kind]), _pick(rng, _BAD_VALUES[reason], m), kind)
    return reason_mask, column_mask


def _make_messy(clean: pd.DataFrame, seed: int, intake: bool = False
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The messy export, its per-row labels and a report (headers, counts of each mess).

    ``intake`` also writes the intake factors (clinician, age, sex, symptom duration), drawn
    from a stream of their own (the default log leaves them out: its bytes stay as they were).
    """
    missing = [c for c in SIM_COLUMNS if c not in clean.columns and c != "delivery"]
    if missing:
        raise ValueError(f"clean table lacks columns: {', '.join(missing)}")
    rng = np.random.default_rng([seed, 0x6D657373])
    n = len(clean)
    counts: Counter = Counter()
    words = {float(v): w for w, v in
             load_table("number_words").itertuples(index=False) if w != "none"}
    rating = _rating_format(words)
    raw: dict[str, _Column] = {
        "session_id": _Column.of(clean["session_id"]),
        "client_id": _Column.of(clean["client_id"]),
        "site": _Column.of(clean["site"].astype("str").fillna("")),
        "session_date": _render_dates(rng, clean["session_date"], counts, "session_date"),
    }
    for field in ("audience_group", "arm", "technique", "body_region", "pace", "deep_breathing",
                  "adverse_event", "rom_measure"):
        raw[field] = _render_category(rng, clean[field], field, counts)
    blank_arm = np.flatnonzero((clean["arm"] == "mfr").to_numpy()
                               & (rng.random(n) < _ARM_BLANK_SHARE))
    raw["arm"].put(blank_arm, np.full(len(blank_arm), "", dtype=object))
    counts["arm:blank_means_mfr"] += len(blank_arm)
    pain_variants = {"plain": 0.62, "fraction": 0.09, "out_of_10": 0.07, "vas_mm": 0.08,
                     "range": 0.08, "word": 0.06}
    rating_variants = {"plain": 0.85, "fraction": 0.10, "word": 0.05}
    for field in ("pain_pre", "pain_post", "pain_followup"):
        raw[field] = _render_numbers(rng, clean[field].to_numpy(), pain_variants, rating,
                                     counts, field)
    for field in ("tightness_pre", "tightness_post", "stress_pre", "stress_post"):
        raw[field] = _render_numbers(rng, clean[field].to_numpy(), rating_variants, rating,
                                     counts, field)
    raw["pressure"] = _render_numbers(rng, clean["pressure"].to_numpy(),
                                      {"plain": 0.9, "fraction": 0.1}, rating, counts,
                                      "pressure")
    raw["duration_min"] = _render_numbers(rng, clean["duration_min"].to_numpy(),
                                          {"plain": 0.6, "min": 0.25, "mins": 0.15},
                                          _duration_format, counts, "duration_min")
    raw["followup_hours"] = _render_numbers(rng, clean["followup_hours"].to_numpy(),
                                            {"plain": 1.0}, rating, counts, "followup_hours")
    is_cm = (clean["rom_measure"] == "sit_and_reach_cm").to_numpy()
    for field in ("rom_pre", "rom_post"):
        values = clean[field].to_numpy(dtype=float)
        degrees = _render_numbers(rng, values[~is_cm], {"plain": 0.75, "deg": 0.08,
                                                        "degree_sign": 0.07, "radians": 0.10},
                                  _degrees_format, counts, field)
        cm = _render_numbers(rng, values[is_cm], {"plain": 0.35, "cm": 0.15, "inches": 0.30,
                                                  "inch_mark": 0.20}, _cm_format, counts, field)
        codes = np.empty(n, dtype=np.int64)
        codes[~is_cm] = degrees.codes
        codes[is_cm] = cm.codes + len(degrees.words)
        raw[field] = _Column(np.concatenate([degrees.words, cm.words]), codes)
    dob_format = "%Y-%m-%d" if rng.random() < 0.5 else "%d/%m/%Y"
    dob_codes, dob_days = pd.factorize(clean["client_dob"])
    raw |= {
        "client_name": _Column.of(clean["client_name"]),
        "client_email": _Column.of(clean["client_email"]),
        "client_phone": _Column.of(clean["client_phone"]),
        "client_dob": _Column(np.asarray(pd.DatetimeIndex(dob_days).strftime(dob_format),
                                         dtype=object), dob_codes),
        "notes": _Column.of(clean["notes"].fillna("")),
    }
    extras = [list(_EXTRA_COLUMNS)[i] for i in
              sorted(rng.permutation(len(_EXTRA_COLUMNS))[:1 + int(rng.random() < 0.5)])]
    for name in extras:
        options = _EXTRA_COLUMNS[name]
        raw[name] = _Column(options, rng.integers(0, len(options), n))

    if intake:
        raw |= _render_intake(np.random.default_rng([seed, _INTAKE_STREAM]), clean, counts)
    reason_mask, column_mask = _plant_bad_rows(rng, clean, raw)
    for i, (reason, _, _) in enumerate(_BAD_KINDS):
        counts[f"reason:{reason}"] = int((reason_mask >> i & 1).sum())
    bad = reason_mask != 0
    duplicate = ~bad & (rng.random(n) < _DUPLICATE_SHARE)
    counts["duplicate_rows"] = int(duplicate.sum())

    # Chronological export order, each duplicate right after its original.
    rank = np.lexsort((rng.random(n), clean["session_date"].to_numpy()))
    position = np.empty(n, dtype=np.int64)
    position[rank] = np.arange(n)
    dup_rows = np.flatnonzero(duplicate)
    key = np.concatenate([2 * position, 2 * position[dup_rows] + 1])
    by_key = np.argsort(key, kind="stable")
    order = np.concatenate([np.arange(n), dup_rows])[by_key]
    is_copy = np.concatenate([np.zeros(n, bool), np.ones(len(dup_rows), bool)])[by_key]

    # Headers, in a shuffled column order.
    aliases = load_table("column_aliases").groupby("canonical")["alias"].agg(list)
    fields = [f for f in _RAW_FIELDS if f != "session_id" or rng.random() < 0.5]
    if intake:
        fields += list(_INTAKE_FIELDS)
    header_of = {field: _header(rng, aliases[field]) for field in fields}
    header_of |= {field: _header(rng, options) for field, options in _IDENTIFIER_HEADERS.items()}
    header_of |= {name: name for name in extras}
    columns = list(header_of)
    columns = [columns[i] for i in rng.permutation(len(columns))]
    messy = pd.DataFrame({header_of[c]: raw[c].series(order) for c in columns})
    reason_text = _mask_text(reason_mask, [k[0] for k in _BAD_KINDS])
    column_text = _mask_text(column_mask, _TARGETS)
    labels = pd.DataFrame({
        "planted_reasons": pd.Series(np.where(is_copy, "", reason_text[order]), dtype="str"),
        "planted_columns": pd.Series(np.where(is_copy, "", column_text[order]), dtype="str"),
        "is_duplicate": is_copy,
        "truth_row": np.where(is_copy, -1, order).astype(np.int64),
    })
    identifier_kind = {"client_name": "name", "client_email": "email",
                       "client_phone": "phone", "client_dob": "birth_date",
                       "notes": "free_text"}
    report = {
        "columns": {header_of[c]: (f"identifier:{identifier_kind[c]}" if c in identifier_kind
                                   else "extra" if c in _EXTRA_COLUMNS else c)
                    for c in columns},
        "rows": len(messy),
        "rows_expected_clean": int((~bad).sum()),
        "rows_planted_bad": int(bad.sum()),
        "rows_duplicate": int(duplicate.sum()),
        "counts": dict(sorted(counts.items())),
    }
    return messy, labels, report


def make_messy(clean: pd.DataFrame, seed: int, *, return_labels: bool = False
               ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Return the raw export: all-string columns with messy headers and values, identifiers,
    duplicates and bad rows (and, with ``return_labels``, what was planted on each row).

    ``clean`` is the first frame of :func:`simulate_sessions` and is not changed. Labels have
    one row per messy row: ``planted_reasons`` (";"-joined reason codes, empty when the row
    is good), ``planted_columns`` (the canonical columns that were corrupted), ``is_duplicate``
    (the later copy of an exact duplicate) and ``truth_row`` (position of the source row in
    ``clean``; -1 for duplicate copies).
    """
    messy, labels, _ = _make_messy(clean, seed)
    return (messy, labels) if return_labels else messy


# --- files ---------------------------------------------------------------------------------
LOG_FORMATS: tuple[str, ...] = (".csv", ".tsv", ".xlsx", ".jsonl", ".parquet")
_XLSX_MAX_ROWS = 1_048_575
_FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """All-text worksheet with fixed timestamps, so the same frame gives the same bytes."""
    from openpyxl import Workbook

    if len(frame) > _XLSX_MAX_ROWS:
        raise ValueError(f"an .xlsx sheet holds at most {_XLSX_MAX_ROWS} rows; "
                         f"this log has {len(frame)}: use .csv or .parquet")
    book = Workbook(write_only=True)
    sheet = book.create_sheet("sessions")
    sheet.append(list(frame.columns))
    for row in frame.itertuples(index=False, name=None):
        sheet.append([value or None for value in row])
    book.save(path)
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*",
                              rb"\g<1>2026-01-01T00:00:00Z", data)
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _write_delimited(frame: pd.DataFrame, path: Path, sep: str, batch: int = 250_000) -> None:
    """Write like ``frame.to_csv(sep=sep, lineterminator="\\n")`` (minimal quoting, UTF-8),
    byte for byte, but built in arrow: each column's distinct values are quoted once."""
    def text(value: str) -> pa.Scalar:
        return pa.scalar(value, pa.large_string())

    special = f'[{sep}"\\n\\r]'
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with open(path, "wb") as handle:
        header = io.StringIO()
        csv.writer(header, delimiter=sep, lineterminator="\n").writerow(frame.columns)
        handle.write(header.getvalue().encode("utf-8"))
        for start in range(0, len(frame), batch):
            cells = []
            for column in table.slice(start, batch).columns:
                encoded = pc.dictionary_encode(column.fill_null("")).combine_chunks()
                words = pc.cast(encoded.dictionary, pa.large_string())
                quoted = pc.binary_join_element_wise(
                    text('"'), pc.replace_substring(words, '"', '""'), text('"'), text(""))
                words = pc.if_else(pc.match_substring_regex(words, special), quoted, words)
                cells.append(words.take(encoded.indices))
            lines = pc.binary_join_element_wise(
                pc.binary_join_element_wise(*cells, text(sep)), text(""), text("\n"))
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
            first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
            handle.write(lines.buffers()[2][int(first):int(last)])


def _write_log(frame: pd.DataFrame, path: Path, suffix: str) -> None:
    if suffix in (".csv", ".tsv"):
        _write_delimited(frame, path, "," if suffix == ".csv" else "\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False, engine="pyarrow")
    else:
        _write_xlsx(frame, path)


def write_simulation(n_clients: int, seed: int, out: Path) -> dict[str, Path]:
    """Write the messy log to ``out`` plus ``<stem>.truth.csv`` and ``<stem>.truth.json``.

    The format follows the suffix of ``out`` (.csv, .tsv, .xlsx, .jsonl or .parquet). Every
    file is written atomically, and the same arguments give byte-identical files. Returns the
    paths as ``{"log": ..., "truth": ..., "truth_json": ...}``.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in LOG_FORMATS:
        raise ValueError(f"unknown log format {out.suffix!r}: use one of {', '.join(LOG_FORMATS)}")
    if n_clients > 0 and suffix == ".xlsx" and n_clients * 5.5 > _XLSX_MAX_ROWS:
        raise ValueError(f"{n_clients} clients are too many for one .xlsx sheet: "
                         "use .csv or .parquet")
    clean, truth = simulate_sessions(n_clients, seed)
    messy, _, report = _make_messy(clean, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_csv = out.with_name(f"{out.stem}.truth.csv")
    truth_json = out.with_name(f"{out.stem}.truth.json")
    parameters = {
        "n_clients": n_clients,
        "seed": seed,
        "package_version": package_version(),
        "start": "2024-01-08",
        "last_date": str(LAST_DATE),
        "control_share": 0.2,
        "log_file": out.name,
        "log_format": suffix.lstrip("."),
        "sessions": len(clean),
        "followup": _followup_truth(clean, truth),
        **report,
    }
    text = json.dumps(parameters, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out, lambda tmp: _write_log(messy, tmp, suffix))
    write_atomic(truth_csv, lambda tmp: truth.to_csv(tmp, index=False, lineterminator="\n"))
    write_atomic(truth_json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return {"log": out, "truth": truth_csv, "truth_json": truth_json}


# --- a clinic network: sites, clinicians, case mix -------------------------------------------
_INTAKE_STREAM = 0x696E7461  # intake factors of the network: a stream of their own
_NETWORK_STREAM = 0x6E657477
_INTAKE_FIELDS: tuple[str, ...] = ("clinician", "age", "sex", "symptom_duration_weeks")
_PLACES: tuple[str, ...] = (
    "Ashford", "Bexley", "Camden", "Dorking", "Epsom", "Fulham", "Greenwich", "Hackney",
    "Ilford", "Kingston", "Lewisham", "Merton", "Newham", "Orpington", "Putney", "Richmond",
    "Sutton", "Tooting", "Uxbridge", "Wimbledon",
)
NETWORK_AGE_EFFECTS: dict[str, float] = {
    "<30": -0.3, "30-44": 0.0, "45-59": 0.2, "60-74": 0.5, "75+": 0.8}
"""Planted shift of the within-session pain change (points; positive = less relief) by the
client's age band at their first session."""
NETWORK_DURATION_EFFECTS: dict[str, float] = {"acute": -0.6, "subacute": 0.0, "chronic": 0.6}
"""Planted shift of the within-session pain change by symptom-duration band at intake."""
NETWORK_SEX_EFFECTS: dict[str, float] = {"female": 0.0, "male": 0.0, "other": 0.0}
CLINICIAN_EFFECT: float = 1.0
"""The better clinician's clients improve this many points more per session (pain change
-1.0), the worse clinician's this many less (+1.0)."""
_CHRONIC_P = {"base": 0.35, "chronic_pain": 0.8, "case_mix_site": 0.85}
_OLDER_AT_CASE_MIX = 3.0  # weight of the case-mix site x3 for clients aged 60+, /3 for others
_PLANTED_SHARE = 0.35  # share of their site's clients the better and worse clinicians see
_SMALL_SITES = 3  # the last sites are small (about a tenth of an average site's clients)


class _Intake:
    """Per-client intake factors and unit effects of a simulated network (see
    :func:`simulate_network`)."""

    def __init__(self, site: np.ndarray, site_names: np.ndarray, clinician: np.ndarray,
                 clinician_names: np.ndarray, sex: np.ndarray, duration_weeks: np.ndarray,
                 pain_shift: np.ndarray) -> None:
        self.site, self.site_names = site, site_names
        self.clinician, self.clinician_names = clinician, clinician_names
        self.sex, self.duration_weeks, self.pain_shift = sex, duration_weeks, pain_shift


def _unit_names(rng: np.random.Generator, sites: int, clinicians: int
                ) -> tuple[np.ndarray, np.ndarray]:
    site_names = np.array([f"{_PLACES[i % len(_PLACES)]} Physio"
                           + (f" {i // len(_PLACES) + 1}" if i >= len(_PLACES) else "")
                           for i in range(sites)], dtype=object)
    pairs = rng.permutation(len(_FIRST_NAMES) * len(_LAST_NAMES))[:clinicians]
    clinician_names = np.array([f"{_FIRST_NAMES[p // len(_LAST_NAMES)]} "
                                f"{_LAST_NAMES[p % len(_LAST_NAMES)]}" for p in pairs],
                               dtype=object)
    return site_names, clinician_names


def _duration_weeks(rng: np.random.Generator, band: np.ndarray) -> np.ndarray:
    """Symptom duration at intake in weeks, written as clinics write it: whole weeks, months or
    years (converted as cleaning converts them), or only the band's word (its value in
    ``data/symptom_duration_words.csv``)."""
    n = band.size
    words = load_table("symptom_duration_words").drop_duplicates("band").set_index("band")
    weeks = np.where(band == 0, rng.integers(1, 6, n),
                     np.where(band == 1, rng.integers(6, 13, n), rng.integers(13, 53, n)))
    value = weeks.astype(np.float64)
    months = (band == 2) & (rng.random(n) < 0.3)
    value[months] = rng.integers(4, 25, int(months.sum())) * WEEKS_PER_MONTH
    years = (band == 2) & ~months & (rng.random(n) < 0.2)
    value[years] = rng.integers(1, 11, int(years.sum())) * WEEKS_PER_YEAR
    word = rng.random(n) < 0.1
    names = np.array(["acute", "subacute", "chronic"])
    value[word] = words.loc[names[band[word]], "weeks"].to_numpy(np.float64)
    return value


def _network_intake(seed: int, sites: int, clinicians: int, first_day: np.datetime64
                    ) -> tuple[Callable[[np.ndarray, np.ndarray], _Intake], dict]:
    """The ``intake`` plan of :func:`simulate_sessions` for a network, and (filled in when it
    runs) what it planted."""
    if sites < 2 or clinicians < 3 or clinicians < sites:
        raise ValueError("a network needs at least 2 sites and 3 clinicians, and no fewer "
                         "clinicians than sites")
    planted: dict = {}

    def plan(group: np.ndarray, dob: np.ndarray) -> _Intake:
        rng = np.random.default_rng([seed, _NETWORK_STREAM])
        c = group.size
        site_names, clinician_names = _unit_names(rng, sites, clinicians)
        # Age at the first possible session decides the case mix (the exact first session
        # date is not known yet): completed years on the first day of the period.
        age0 = completed_years(dob, np.full(c, first_day))
        site_weight = np.exp(rng.normal(0.0, 0.3, sites))
        site_weight[-_SMALL_SITES:] *= 0.1
        older = age0 >= 60
        weight = np.tile(site_weight, (c, 1))
        weight[:, 0] *= np.where(older, _OLDER_AT_CASE_MIX, 1.0 / _OLDER_AT_CASE_MIX)
        site = _draw(rng, weight, np.arange(c))
        # Clinicians: round-robin over sites; in every site with 3+ clinicians the last one
        # sees few clients; the better and worse clinicians (sites 1 and 2) see ~35 %.
        home = np.arange(clinicians) % sites
        clinician = np.empty(c, dtype=np.int64)
        better, worse = int(np.flatnonzero(home == 1)[0]), int(np.flatnonzero(home == 2)[0])
        for s in range(sites):
            staff = np.flatnonzero(home == s)
            w = np.exp(rng.normal(0.0, 0.4, staff.size))
            if staff.size >= 3:
                w[-1] *= 0.08
            for planted_one in (better, worse):
                if planted_one in staff:
                    i = int(np.flatnonzero(staff == planted_one)[0])
                    others = w.sum() - w[i]
                    w[i] = others * _PLANTED_SHARE / (1 - _PLANTED_SHARE)
            rows = np.flatnonzero(site == s)
            clinician[rows] = staff[_draw(rng, (w / w.sum())[None, :], np.zeros(rows.size, int))]
        sex = _draw(rng, np.array([[0.58, 0.40, 0.02]]), np.zeros(c, int))
        chronic = np.where(site == 0, _CHRONIC_P["case_mix_site"],
                           np.where(group == AUDIENCE_GROUPS.index("chronic_pain"),
                                    _CHRONIC_P["chronic_pain"], _CHRONIC_P["base"]))
        band = np.where(rng.random(c) < chronic, 2,
                        np.where(rng.random(c) < 0.5, 0, 1)).astype(np.int64)
        weeks = _duration_weeks(rng, band)
        age_band = band_codes(age0, "age_bands")
        age_shift = np.array(list(NETWORK_AGE_EFFECTS.values()))[age_band]
        duration_band = band_codes(weeks, "symptom_duration_bands")
        duration_shift = np.array(list(NETWORK_DURATION_EFFECTS.values()))[duration_band]
        care = np.zeros(clinicians)
        care[better], care[worse] = -CLINICIAN_EFFECT, CLINICIAN_EFFECT
        planted.update(site_names=site_names, clinician_names=clinician_names, site=site,
                       clinician=clinician, home=home, better=better, worse=worse, care=care,
                       age0=age0, age_band=age_band, duration_band=duration_band, sex=sex)
        return _Intake(site, site_names, clinician, clinician_names, sex, weeks,
                       age_shift + duration_shift + care[clinician])

    return plan, planted


def _network_truth(clean: pd.DataFrame, planted: dict, clients: int, seed: int) -> dict:
    """The truth of a simulated network: named units, planted effects, outcome model."""
    site_names, clinician_names = planted["site_names"], planted["clinician_names"]
    site, clinician = planted["site"], planted["clinician"]
    site_clients = np.bincount(site, minlength=site_names.size)
    clinician_clients = np.bincount(clinician, minlength=clinician_names.size)
    per_client = pd.DataFrame({"site": site, "age": planted["age0"],
                               "chronic": planted["duration_band"] == 2})
    mix = per_client.groupby("site").agg(mean_age=("age", "mean"),
                                         chronic_share=("chronic", "mean"))
    effects = load_table("planted_effects")
    pain = effects[effects["claim_id"] == "pain"].set_index("audience_group")
    return {
        "kind": "network",
        "clients": clients,
        "seed": seed,
        "sessions": len(clean),
        "outcome": "pain_change",
        "sign": "pain change is post minus pre: negative is relief, so a negative effect is "
                "better care",
        "case_mix_site": str(site_names[0]),
        "better_clinician": str(clinician_names[planted["better"]]),
        "worse_clinician": str(clinician_names[planted["worse"]]),
        "planted_effects": {
            "site": dict.fromkeys(map(str, site_names), 0.0),
            "clinician": {str(name): float(e) for name, e in
                          zip(clinician_names, planted["care"], strict=True)},
        },
        "outcome_model": {
            "description": (
                "each session's expected pain change (post minus pre) = the planted pain "
                "change of the client's audience group and arm (planted_effects.csv; the "
                "network has no control arm) + the delivery and pace modifiers (centred, as "
                "in simulate) + age_band + symptom_duration_band + sex + clinician effect; "
                "site effects are 0. Bands are the client's at their first session (age in "
                "completed years on the first day of the period, duration at intake); "
                "noise is unbiased within 0-10."),
            "audience_group": {g: float(pain.loc[g, "planted_change"]) for g in AUDIENCE_GROUPS},
            "age_band": dict(NETWORK_AGE_EFFECTS),
            "symptom_duration_band": dict(NETWORK_DURATION_EFFECTS),
            "sex": dict(NETWORK_SEX_EFFECTS),
        },
        "units": {
            "site": [{"site": str(name), "clients": int(n), "effect": 0.0,
                      "case_mix": bool(i == 0), "mean_age": round(float(mix.loc[i, "mean_age"]), 2)
                      if i in mix.index else None,
                      "chronic_share": round(float(mix.loc[i, "chronic_share"]), 4)
                      if i in mix.index else None}
                     for i, (name, n) in enumerate(zip(site_names, site_clients, strict=True))],
            "clinician": [{"clinician": str(name), "site": str(site_names[planted["home"][j]]),
                           "clients": int(clinician_clients[j]),
                           "effect": float(planted["care"][j])}
                          for j, name in enumerate(clinician_names)],
        },
        "clinician_names": "raw names as written in the log; cleaning pseudonymises them: "
                           "map with mfr_analysis.simulate.pseudonymise_truth(truth, key)",
    }


def simulate_network(clients: int = 4000, sites: int = 20, clinicians: int = 80,
                     seed: int = 1) -> tuple[pd.DataFrame, dict]:
    """A clinic network's messy log with planted site and clinician effects and case mix.

    Built on :func:`simulate_sessions` and :func:`make_messy` (every mess of the default log,
    no control arm) plus the intake factors, written in their messy spellings: clinician
    (raw names in varying case and spacing), age (or only the date of birth), sex (``F``,
    ``male``, ``w``, ``diverse``...), symptom duration (``3 weeks``, ``6 months``, ``chronic``).
    Planted, in the within-session pain change (points, negative = relief):

    * site 0, the **case-mix site**: its clients are older (a client aged 60+ is nine times
      likelier to go there than a younger one) and more often chronic; age and chronicity
      worsen the expected change (:data:`NETWORK_AGE_EFFECTS`,
      :data:`NETWORK_DURATION_EFFECTS`), but its care is average;
    * one **better** clinician (-1 point) and one **worse** (+1 point), each seeing about 35 %
      of an average-case-mix site's clients (about 60-80 at 4,000 clients);
    * every other unit average (effect 0); the last three sites are small, and in each site
      with three or more clinicians one sees few clients.

    Returns the raw log (all text) and the truth dict (see :func:`write_network` for json):
    units named by their raw names, planted effects, unit sizes and the outcome model.
    """
    if clients < 1:
        raise ValueError("clients must be at least 1")
    start = "2024-01-08"
    plan, planted = _network_intake(seed, sites, clinicians, np.datetime64(start, "D"))
    clean, _ = simulate_sessions(clients, seed, start=start, control_share=0.0, intake=plan)
    messy, _, report = _make_messy(clean, seed, intake=True)
    truth = _network_truth(clean, planted, clients, seed)
    truth["sites"], truth["clinicians"] = sites, clinicians
    truth["log"] = {k: report[k] for k in ("rows", "rows_expected_clean", "rows_planted_bad",
                                           "rows_duplicate", "columns")}
    return messy, truth


def pseudonymise_truth(truth: dict, key: bytes) -> dict:
    """The network truth with every clinician's raw name replaced by its pseudonym under
    ``key`` (:func:`mfr_analysis.pseudonymise.clinician_pseudonym`): what the clean table
    and the benchmarking tables show."""
    out = json.loads(json.dumps(truth))
    for name in ("better_clinician", "worse_clinician"):
        out[name] = clinician_pseudonym(out[name], key)
    out["planted_effects"]["clinician"] = {clinician_pseudonym(k, key): v for k, v in
                                           out["planted_effects"]["clinician"].items()}
    for unit in out["units"]["clinician"]:
        unit["clinician"] = clinician_pseudonym(unit["clinician"], key)
    out["clinician_names"] = "pseudonyms under the given key"
    return out


def write_network(out: Path, clients: int = 4000, sites: int = 20, clinicians: int = 80,
                  seed: int = 1) -> dict[str, Path]:
    """Write :func:`simulate_network`'s log to ``out`` and its truth to
    ``<stem>.truth.json``, atomically; returns ``{"log": ..., "truth_json": ...}``."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in LOG_FORMATS:
        raise ValueError(f"unknown log format {out.suffix!r}: use one of {', '.join(LOG_FORMATS)}")
    messy, truth = simulate_network(clients, sites, clinicians, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_json = out.with_name(f"{out.stem}.truth.json")
    text = json.dumps({**truth, "package_version": package_version(), "log_file": out.name},
                      indent=2, ensure_ascii=False) + "\n"
    write_atomic(out, lambda tmp: _write_log(messy, tmp, suffix))
    write_atomic(truth_json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return {"log": out, "truth_json": truth_json}


_AGE_WRITTEN = ("{}", "{}", "{}", "{} years", "{}y", "{} yrs")
_WEEKS_WRITTEN = ("{} weeks", "{}", "{} wks", "{} weeks")


def _render_intake(rng: np.random.Generator, clean: pd.DataFrame,
                   counts: Counter) -> dict[str, _Column]:
    """The intake factors as a clinic writes them (see :func:`simulate_network`)."""
    n = len(clean)
    out: dict[str, _Column] = {}
    names = clean["clinician"].fillna("").to_numpy(dtype=object)
    styles = (lambda s: s, str.lower, str.upper, lambda s: f" {s} ", lambda s: s.replace(" ", "  "))
    style = rng.integers(0, len(styles), n) * (rng.random(n) < 0.2)
    written = np.array([styles[k](s) if s else "" for s, k in zip(names, style, strict=True)],
                       dtype=object)
    counts["clinician:spelling"] += int((style > 0).sum())
    out["clinician"] = _Column.of(written)
    out["sex"] = _render_category(rng, clean["sex"], "sex", counts)
    age = clean["age"].to_numpy(dtype=float)
    client_codes = pd.factorize(clean["client_id"])[0]
    only_dob = (rng.random(client_codes.max() + 1) < 0.3)[client_codes]  # age left blank
    age_text = np.array(["" if (np.isnan(a) or blank) else _AGE_WRITTEN[k].format(int(a))
                         for a, blank, k in zip(age, only_dob, rng.integers(
                             0, len(_AGE_WRITTEN), n), strict=True)], dtype=object)
    counts["age:blank_with_birth_date"] += int(only_dob.sum())
    out["age"] = _Column.of(age_text)
    weeks = clean["symptom_duration_weeks"].to_numpy(dtype=float)
    words = load_table("symptom_duration_words").drop_duplicates("band")
    word_of = dict(zip(words["weeks"].astype(float), words["word"], strict=True))
    codes, distinct = pd.factorize(weeks)
    text = []
    for w in np.asarray(distinct, dtype=float):
        months, years = w / WEEKS_PER_MONTH, w / WEEKS_PER_YEAR
        if abs(years - round(years)) < 1e-9 and round(years) >= 1:
            text.append(f"{round(years)} year" + ("s" if round(years) > 1 else ""))
        elif abs(months - round(months)) < 1e-9 and not float(w).is_integer():
            text.append(f"{round(months)} months")
        elif w in word_of and rng.random() < 0.5:
            text.append(word_of[w].capitalize())
        else:
            text.append(_WEEKS_WRITTEN[int(rng.integers(0, len(_WEEKS_WRITTEN)))].format(int(w)))
    out["symptom_duration_weeks"] = _Column(np.array([*text, ""], dtype=object),
                                            np.where(codes < 0, len(text), codes))
    return out
