"""One settings object (issue 12): defaults and validation live in AnalysisSettings only."""

from __future__ import annotations

import ast
import dataclasses
import math
import pickle

import numpy as np
import pytest

from mfr_analysis.errors import InputError
from mfr_analysis.settings import DEFAULTS, AnalysisSettings


def test_defaults() -> None:
    settings = AnalysisSettings()
    assert settings == DEFAULTS
    assert (settings.alpha, settings.correction, settings.min_clients,
            settings.min_reported_clients, dict(settings.mcid_overrides),
            settings.date_order) == (0.05, "holm", 10, 11, {}, "dmy")


@pytest.mark.parametrize(("values", "named"), [
    ({"alpha": 0}, "alpha"), ({"alpha": 0.51}, "alpha"), ({"alpha": 1.5}, "alpha"),
    ({"alpha": True}, "alpha"), ({"alpha": "0.05"}, "alpha"), ({"alpha": math.nan}, "alpha"),
    ({"correction": "bonferroni"}, "correction"), ({"min_clients": 1}, "min_clients"),
    ({"min_clients": 2.5}, "min_clients"), ({"min_reported_clients": 0}, "min_reported"),
    ({"date_order": "ymd"}, "date_order"), ({"mcid_overrides": {"pain": -1.0}}, "pain"),
    ({"mcid_overrides": {"pain": math.inf}}, "pain"), ({"mcid_overrides": {"pain": 0}}, "pain"),
    ({"mcid_overrides": {"pian": 2.0}}, "pian"), ({"mcid_overrides": {"breathing": 0.5}},
                                                  "breathing"),
    ({"mcid_overrides": [("pain", 2.0)]}, "mcid_overrides"),
])
def test_every_bad_value_is_one_input_error_line(values: dict, named: str) -> None:
    with pytest.raises(InputError) as error:
        AnalysisSettings(**values)
    message = str(error.value)
    assert "\n" not in message and named in message


def test_alpha_has_one_range() -> None:
    assert AnalysisSettings(alpha=0.5).alpha == 0.5
    assert AnalysisSettings(alpha=1e-6).alpha == 1e-6
    assert AnalysisSettings(min_clients=np.int64(3)).min_clients == 3


def test_overrides_are_checked_against_the_registry() -> None:
    settings = AnalysisSettings(mcid_overrides={"pain": 1, "rom:knee_flexion_deg": 8,
                                                "hip_flexion_deg": 6.5, "pain_followup": 1.5})
    assert settings.mcid_overrides == {"pain": 1.0, "rom:knee_flexion_deg": 8.0,
                                       "hip_flexion_deg": 6.5, "pain_followup": 1.5}
    assert all(isinstance(v, float) for v in settings.mcid_overrides.values())


def test_frozen_hashable_and_picklable() -> None:
    settings = AnalysisSettings(alpha=0.01, mcid_overrides={"pain": 1.5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.alpha = 0.1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert hash(settings) == hash(AnalysisSettings(alpha=0.01, mcid_overrides={"pain": 1.5}))
    assert settings.to_dict() == {"alpha": 0.01, "correction": "holm", "min_clients": 10,
                                  "min_reported_clients": 11, "mcid_overrides": {"pain": 1.5},
                                  "date_order": "dmy"}


def test_from_parameters_reads_what_papermill_passes() -> None:
    settings = AnalysisSettings.from_parameters(
        alpha="0.01", correction="FDR_BH", min_clients=12.0, min_reported_clients="15",
        mcid_overrides='{"pain": 1.5}', date_order=" MDY ")
    assert settings == AnalysisSettings(alpha=0.01, correction="fdr_bh", min_clients=12,
                                        min_reported_clients=15, mcid_overrides={"pain": 1.5},
                                        date_order="mdy")
    assert AnalysisSettings.from_parameters(mcid_overrides="pain=1.5, stress=1").mcid_overrides \
        == {"pain": 1.5, "stress": 1.0}
    assert AnalysisSettings.from_parameters(mcid_overrides=None, alpha=None) == DEFAULTS
    assert AnalysisSettings.from_parameters() == DEFAULTS


@pytest.mark.parametrize("parameters", [
    {"alhpa": 0.05}, {"alpha": "five percent"}, {"min_clients": "ten"},
    {"mcid_overrides": "{pain: 1.5"}, {"mcid_overrides": "pain"}, {"min_clients": 10.5},
])
def test_from_parameters_refuses_unknown_or_unreadable_values(parameters: dict) -> None:
    with pytest.raises(InputError) as error:
        AnalysisSettings.from_parameters(**parameters)
    assert "\n" not in str(error.value)
    assert next(iter(parameters)) in str(error.value)


@pytest.mark.parametrize("notebook", ["reports/claims_report.ipynb",
                                      "reports/data_quality.ipynb", "explore.ipynb"])
def test_notebook_parameter_defaults_are_the_settings_defaults(notebook: str) -> None:
    """Papermill needs literal defaults in a ``parameters`` cell: they must not drift."""
    from pathlib import Path

    import nbformat
    from papermill.translators import PythonTranslator

    path = Path(__file__).resolve().parents[1] / "notebooks" / notebook
    cell = next(c for c in nbformat.read(path, as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    declared = {p.name: p.default for p in PythonTranslator.inspect(cell)}
    checked = 0
    for name in ("alpha", "correction", "min_clients", "min_reported_clients", "date_order"):
        if name in declared:
            assert ast.literal_eval(declared[name]) == getattr(DEFAULTS, name), name
            checked += 1
    assert checked >= 4
