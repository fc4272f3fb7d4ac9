"""E-values against VanderWeele & Ding's worked examples and the EValue R package's documented
examples, and hand-computed cases (RR below 1, rare and common odds ratios, an interval
through no effect, a difference of means)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mfr_analysis.claims.evalue import (
    conversion,
    e_value_limit,
    e_value_rr,
    e_value_sentence,
    e_values_md,
    e_values_or,
    e_values_rr,
    pooled_sd,
    pooled_sd_from_sums,
    rr_from_d,
    rr_from_or,
)
from mfr_analysis.tables import load_table


def test_breastfeeding_example_of_vanderweele_and_ding() -> None:
    """VanderWeele & Ding 2017 (Ann Intern Med 167:268-274): breastfeeding and infant death
    from respiratory infection, OR 3.9 (95 % CI 1.8-8.7), a rare outcome: E-values 7.26
    and 3.00 (also the EValue vignette: evalues.OR(3.9, 1.8, 8.7, rare = TRUE))."""
    point, limit = e_values_or(3.9, 1.8, 8.7, prevalence=0.01)
    assert point == pytest.approx(7.26, abs=0.005)
    assert limit == pytest.approx(3.00, abs=0.005)
    assert e_values_rr(3.9, 1.8, 8.7) == (point, limit)  # rare: the OR is the RR


def test_leukemia_example_below_one() -> None:
    """VanderWeele & Ding 2017 and the EValue documentation (evalues.RR(0.80, 0.71, 0.91)):
    RR 0.80 (0.71-0.91) gives 1.81 for the estimate and 1.43 for the upper limit."""
    point, limit = e_values_rr(0.80, 0.71, 0.91)
    assert point == pytest.approx(1.81, abs=0.005)
    assert limit == pytest.approx(1.43, abs=0.005)
    assert e_value_rr(1 / 0.80) == pytest.approx(point)  # symmetric on the ratio scale


def test_smoking_example_of_the_evalue_vignette() -> None:
    """EValue vignette 'unmeasured confounding' (Hammond and Horn, smoking and lung cancer):
    evalues.RR(10.73, 8.02, 14.36) gives 20.95 and 15.52."""
    point, limit = e_values_rr(10.73, 8.02, 14.36)
    assert point == pytest.approx(20.95, abs=0.005)
    assert limit == pytest.approx(15.52, abs=0.005)


def test_common_odds_ratio_uses_its_square_root() -> None:
    """EValue documentation example evalues.OR(0.86, 0.75, 0.99, rare = FALSE), by hand:
    sqrt(0.86) = 0.92736, 1/0.92736 = 1.07833, 1.07833 + sqrt(1.07833 * 0.07833) = 1.3690;
    upper limit sqrt(0.99) -> 1.00504 + sqrt(1.00504 * 0.00504) = 1.0762."""
    point, limit = e_values_or(0.86, 0.75, 0.99, prevalence=0.40)
    assert point == pytest.approx(1.3690, abs=5e-4)
    assert limit == pytest.approx(1.0762, abs=5e-4)
    rare_point, _ = e_values_or(0.86, 0.75, 0.99, prevalence=0.05)
    assert rare_point == pytest.approx(1.5979, abs=5e-4)  # 1/0.86 = 1.16279 + 0.43508
    assert rr_from_or(0.86, prevalence=0.15) == 0.86  # at the threshold: still rare
    assert rr_from_or(0.86, prevalence=0.16) == pytest.approx(math.sqrt(0.86))


def test_an_interval_through_no_effect_gives_one() -> None:
    assert e_value_limit(1.5, 0.9, 2.5) == 1.0
    assert e_value_limit(0.7, 0.4, 1.0) == 1.0
    assert e_values_md(0.3, -0.1, 0.7, sd=1.0)[1] == 1.0
    assert e_value_rr(1.0) == 1.0
    assert math.isnan(e_value_rr(0.0)) and math.isnan(e_value_rr(math.nan))


def test_difference_of_means_by_hand() -> None:
    """A pain difference of -1.0 point (95 % CI -1.5 to -0.5) with an outcome SD of 2:
    d = -0.5, RR = exp(0.91 * -0.5) = 0.63445, 1/RR = 1.57617, E = 1.57617 +
    sqrt(1.57617 * 0.57617) = 2.5291; the upper limit d = -0.25: 1/exp(-0.2275) = 1.25546,
    E = 1.25546 + sqrt(1.25546 * 0.25546) = 1.8218."""
    point, limit = e_values_md(-1.0, -1.5, -0.5, sd=2.0)
    assert point == pytest.approx(2.5291, abs=1e-4)
    assert limit == pytest.approx(1.8218, abs=1e-4)
    assert rr_from_d(0.5) == pytest.approx(math.exp(0.455))
    assert e_values_md(1.0, 0.5, 1.5, sd=2.0) == pytest.approx((point, limit))  # symmetric
    assert all(math.isnan(v) for v in e_values_md(-1.0, -1.5, -0.5, sd=0.0))


def test_constants_are_data_with_sources() -> None:
    table = load_table("evalue_conversions").set_index("name")
    assert conversion("log_rr_per_sd") == 0.91 and conversion("rare_outcome_max") == 0.15
    assert table["source"].str.contains("VanderWeele & Ding 2017").all()
    assert "Chinn 2000" in table.loc["log_rr_per_sd", "source"]
    words = load_table("adjustment").set_index("key")
    assert words.loc["imbalance_smd", "value"] == 0.1


def test_pooled_sd_from_sums_equals_the_values() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0, 2, 40)
    arm = np.arange(40) % 3 == 0
    units = np.arange(40) // 4  # four values per unit, each unit in one arm
    arm_of_unit = np.array([arm[units == u][0] for u in range(10)])
    arm = arm_of_unit[units]
    frame = pd.DataFrame({"u": units, "v": values, "vv": values ** 2})
    sums = frame.groupby("u").agg(n=("v", "size"), s=("v", "sum"), q=("vv", "sum"))
    by_hand = math.sqrt((np.var(values[arm], ddof=0) * arm.sum()
                         + np.var(values[~arm], ddof=0) * (~arm).sum()) / (40 - 2))
    assert pooled_sd(values, arm) == pytest.approx(by_hand)
    assert pooled_sd_from_sums(sums["n"], sums["s"], sums["q"], arm_of_unit) == \
        pytest.approx(by_hand)


def test_sentence_says_what_the_e_values_mean() -> None:
    both = e_value_sentence(pd.Series({"e_value": 2.14, "e_value_ci": 1.38}))
    assert "risk ratio of 2.1 each to explain away this estimate" in both
    assert "1.4 to move its interval to include no effect" in both
    through = e_value_sentence({"e_value": 1.6, "e_value_ci": 1.0})
    assert "1.6" in through and "interval already includes no effect" in through
    assert "1.05" in e_value_sentence({"e_value": 1.05, "e_value_ci": 1.0})
    assert e_value_sentence({"e_value": math.nan, "e_value_ci": math.nan}) == ""
    assert e_value_sentence({"estimate": 1.0}) == ""
