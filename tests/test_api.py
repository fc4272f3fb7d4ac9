"""The analyst's surface: ``import mfr_analysis as mfr`` gives five verbs, cheaply.

Each verb has a numpydoc docstring (Parameters, Returns, Examples); its examples run here as
doctests, in ``make test``, with the test key of ``conftest.py``. Modules whose docstrings hold
small examples run theirs too.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import subprocess
import sys

import pytest

import mfr_analysis as mfr
from tests.conftest import REPO

VERBS = ("simulate", "clean", "load_sessions", "evaluate_claims", "report")
PACKAGE = REPO / "src" / "mfr_analysis"
# every module (but the package's own, whose verbs run above) with examples in its docstrings
MODULES_WITH_EXAMPLES = sorted(
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py")
    if path.name != "__init__.py" and ">>> " in path.read_text(encoding="utf-8"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def run_examples(tests: list[doctest.DocTest]) -> tuple[int, int, str]:
    """Run doctests; return (examples tried, failures, the runner's report)."""
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    return runner.tries, runner.failures, report.getvalue()


def test_the_package_exposes_the_analysts_verbs() -> None:
    assert set(VERBS) <= set(mfr.__all__) and set(VERBS) <= set(dir(mfr))
    for name in VERBS:
        assert callable(getattr(mfr, name)), name


@pytest.mark.parametrize("name", VERBS)
def test_each_verb_has_a_numpydoc_docstring(name: str) -> None:
    doc = getattr(mfr, name).__doc__ or ""
    for section in ("Parameters\n    ----------", "Returns\n    -------",
                    "Examples\n    --------"):
        assert section in doc, f"{name}: no {section.split()[0]} section"


@pytest.mark.parametrize("name", VERBS)
def test_the_examples_of_each_verb_run(name: str) -> None:
    verb = getattr(mfr, name)
    function = getattr(verb, "__wrapped__", verb)
    tests = doctest.DocTestFinder().find(function, f"mfr_analysis.{name}", globs={})
    tried, failed, report = run_examples(tests)
    assert tried >= 2, f"{name}: its Examples section has no examples"
    assert failed == 0, report


def test_modules_with_examples_are_found() -> None:
    assert {"mfr_analysis.read", "mfr_analysis.redact"} <= set(MODULES_WITH_EXAMPLES)


@pytest.mark.parametrize("module", MODULES_WITH_EXAMPLES)
def test_module_examples_run(module: str) -> None:
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    tried, failed, report = run_examples(tests)
    assert tried > 0 and failed == 0, report


def test_importing_the_package_loads_no_stage() -> None:
    """`import mfr_analysis` stays cheap: no pandas, statsmodels or stage until a verb runs
    (the version, asked for, loads only the small leaf module that reads it)."""
    code = ("import sys, mfr_analysis as mfr; mfr.simulate; mfr.__version__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pandas', 'numpy', 'statsmodels', 'mfr_analysis')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "['mfr_analysis', 'mfr_analysis.version']"


def test_a_verb_named_like_a_module_stays_the_verb() -> None:
    """mfr.clean / mfr.simulate / mfr.report share their names with modules: importing the
    module does not replace the verb, and the module's attributes stay reachable."""
    code = """
import mfr_analysis as mfr
import mfr_analysis.clean, mfr_analysis.simulate
import mfr_analysis.report.run as run
from mfr_analysis import simulate
from mfr_analysis.report.run import run_reports
assert callable(mfr.clean) and callable(mfr.report) and callable(mfr.simulate)
assert len(mfr.simulate(clients=5, seed=1)) > 5
assert simulate.write_simulation is sys.modules["mfr_analysis.simulate"].write_simulation
assert mfr_analysis.clean.clean_sessions.__module__ == "mfr_analysis.clean"
assert run.run_reports is run_reports and mfr.report.run is run
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True,
                          text=True)
    assert done.stdout.strip() == "ok", done.stderr


def test_verbs_show_their_own_signature_and_help() -> None:
    assert list(inspect.signature(mfr.clean).parameters)[:3] == ["inputs", "out", "mapping"]
    assert repr(mfr.simulate) == "<function mfr_analysis.simulate>"
    import pydoc

    text = pydoc.render_doc(mfr.report, renderer=pydoc.plaintext)
    assert "report(inputs" in text and "Write the HTML reports" in text


def test_monkeypatching_a_module_through_its_verb_reaches_the_module() -> None:
    module = importlib.import_module("mfr_analysis.simulate")
    real = module.write_simulation
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mfr_analysis.simulate.write_simulation", lambda *_: {"log": "x"})
        assert mfr.simulate(1, 1, out="ignored.csv") == {"log": "x"}
    assert module.write_simulation is real  # undone on the module, not deleted from it
