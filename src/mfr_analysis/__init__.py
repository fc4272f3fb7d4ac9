"""mfr-analysis: test the claimed benefits of myofascial release on a clinic's own session logs.

The flow is ``read -> clean -> derive -> claims -> report``; each stage is one module. An
analyst needs five verbs, all here (``import mfr_analysis as mfr``):

* :func:`simulate` -- realistic messy session logs with a known truth, to try things on;
* :func:`clean` -- raw logs -> ``sessions.parquet``, ``quarantine.csv`` and the cleaning report;
* :func:`load_sessions` -- raw logs or clean tables -> the derived session table (a DataFrame);
* :func:`evaluate_claims` -- the session table -> the claims table (one row per claim x group);
* :func:`report` -- raw logs or clean tables -> self-contained HTML reports and an index.

Importing the package is cheap: each verb imports its stage when it is called.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from collections.abc import Sequence

    import pandas as pd

__all__ = ["__version__", "clean", "evaluate_claims", "load_sessions", "report", "simulate"]


class _Verb:
    # A verb that shares its name with a submodule: ``mfr.clean`` is both the function
    # ``clean`` and the module ``mfr_analysis.clean``. Python binds a submodule as an
    # attribute of its package once it is imported, which would replace the verb
    # (``mfr.clean(...)`` failing with "module is not callable" after any
    # ``import mfr_analysis.clean``). So the verb stands for both: calling it runs the function
    # (whose name, docstring and signature it shows); any other attribute, ``__dict__``
    # included, is the module's, so ``from mfr_analysis import clean``,
    # ``import mfr_analysis.report.run as run`` and monkeypatching
    # ``"mfr_analysis.simulate.write_simulation"`` keep meaning the module.

    __slots__ = ("__wrapped__",)

    def __init__(self, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "__wrapped__", function)

    __name__ = property(lambda self: self.__wrapped__.__name__)  # type: ignore[assignment]
    __doc__ = property(lambda self: self.__wrapped__.__doc__)  # type: ignore[assignment]
    __dict__ = property(lambda self: vars(self._module()))  # type: ignore[assignment]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> _Verb:
        return self  # a routine to inspect and pydoc (help() shows the signature and doc)

    def _module(self) -> types.ModuleType:
        return importlib.import_module(f"{__name__}.{self.__wrapped__.__name__}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._module(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._module(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._module(), name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._module())) | {"__call__", "__doc__", "__wrapped__"})

    def __repr__(self) -> str:
        return f"<function {__name__}.{self.__wrapped__.__name__}>"


class _Package(types.ModuleType):
    """This package's module type: importing a submodule named like a verb keeps the verb."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(self.__dict__.get(name), _Verb) and isinstance(value, types.ModuleType):
            return  # the import system binding mfr_analysis.<verb>: the verb stands for both
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


#: stages an analyst reaches as ``mfr.<name>`` (imported on first use, like the verbs)
SUBPACKAGES = frozenset({"claims", "describe", "benchmarking"})


def __getattr__(name: str) -> Any:
    """``__version__``, looked up on first use (reading package metadata takes a while), and
    the stages in :data:`SUBPACKAGES` (``mfr.describe.baseline_table``)."""
    if name == "__version__":
        from mfr_analysis.version import package_version

        globals()["__version__"] = value = package_version()
        return value
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@_Verb
def simulate(clients: int = 400, seed: int = 1, *,
             out: str | Path | None = None, network: bool = False, sites: int = 20,
             clinicians: int = 80) -> pd.DataFrame | dict[str, Path]:
    """Simulate a clinic's messy session log with known planted effects.

    Parameters
    ----------
    clients : int, default 400
        Number of simulated clients (each has several sessions).
    seed : int, default 1
        Random seed: the same seed gives the same log, byte for byte, on any day.
    out : str or Path, optional
        Log file to write (``.csv``, ``.tsv``, ``.xlsx``, ``.jsonl`` or ``.parquet``);
        ``<stem>.truth.csv`` and ``<stem>.truth.json`` (the planted effects) are written
        beside it. Without ``out`` nothing is written and the log is returned.
    network : bool, default False
        Simulate a clinic network instead (:func:`mfr_analysis.simulate.simulate_network`):
        ``sites`` sites and ``clinicians`` clinicians, clinician / age / sex / symptom-duration
        columns, planted site and clinician effects and case mix; with ``out`` the truth is
        ``<stem>.truth.json`` (no truth csv).
    sites, clinicians : int, default 20 and 80
        Size of the network (with ``network=True``).

    Returns
    -------
    DataFrame or dict
        Without ``out``: the raw log, every column text, as a clinic would export it
        (messy headers and values, identifiers, duplicates and bad rows). With ``out``: the
        paths written, ``{"log": ..., "truth": ..., "truth_json": ...}``.

    See Also
    --------
    mfr_analysis.simulate.simulate_sessions : the clean sessions and the truth table.

    Examples
    --------
    >>> import mfr_analysis as mfr
    >>> log = mfr.simulate(clients=20, seed=3)
    >>> len(log) > 20  # several sessions per client
    True
    >>> bool((log.dtypes == "str").all())  # every column text, as a clinic exports it
    True
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> sorted(mfr.simulate(clients=20, seed=3, out=folder / "logs.csv"))
    ['log', 'truth', 'truth_json']
    """
    simulator = importlib.import_module(f"{__name__}.simulate")

    if network:
        if out is not None:
            return simulator.write_network(Path(out), clients, sites, clinicians, seed)
        return simulator.simulate_network(clients, sites, clinicians, seed)[0]
    if out is not None:
        return simulator.write_simulation(clients, seed, Path(out))
    clean_world, _truth = simulator.simulate_sessions(clients, seed)
    return simulator.make_messy(clean_world, seed)


@_Verb
def clean(inputs: str | Path | Sequence[str | Path], out: str | Path, *,
          mapping: str | Path | None = None, date_order: str = "dmy",
          progress: bool = False, **engine_options: Any) -> dict[str, Any]:
    """Clean raw session logs into a folder of outputs; return the cleaning report.

    Writes ``sessions.parquet`` (one pseudonymised row per session), ``quarantine.csv``
    (every rejected row with its reason codes) and ``cleaning_report.json`` into ``out``, as
    one output set: a failed run leaves the folder as it was. Client ids are keyed-hash
    pseudonyms; the key comes from ``MFR_PSEUDONYM_KEY`` or the local key file.

    Parameters
    ----------
    inputs : path or list of paths
        Raw log files (csv, tsv, xlsx, jsonl, parquet) or folders of them.
    out : str or Path
        Output folder.
    mapping : str or Path, optional
        YAML or TOML file mapping raw headers to canonical columns (and headers to drop).
    date_order : {"dmy", "mdy"}, default "dmy"
        How to read an ambiguous date such as 05/03/2024.
    progress : bool, default False
        Show progress on stderr.
    **engine_options
        ``engine="dask"`` with ``scheduler``, ``blocksize`` and ``n_workers`` cleans on a
        Dask cluster; see :func:`mfr_analysis.pipeline.run_clean`.

    Returns
    -------
    dict
        The cleaning report: ``rows_in == rows_clean + rows_quarantined + rows_duplicate``,
        ``reasons`` (reason code -> rows), ``dropped_columns`` (raw headers not recognised,
        per source) and more.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import mfr_analysis as mfr
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> paths = mfr.simulate(clients=30, seed=3, out=folder / "logs.csv")
    >>> cleaning = mfr.clean(paths["log"], folder / "clean")
    >>> cleaning["rows_in"] == (cleaning["rows_clean"] + cleaning["rows_quarantined"]
    ...                         + cleaning["rows_duplicate"])
    True
    >>> sorted(p.name for p in (folder / "clean").glob("*.*"))
    ['cleaning_report.json', 'manifest.json', 'quarantine.csv', 'sessions.parquet']
    """
    from mfr_analysis.pipeline import run_clean

    return run_clean(inputs, out, mapping=mapping, date_order=date_order,  # type: ignore[arg-type]
                     progress=progress, **engine_options)


def load_sessions(inputs: str | Path | Sequence[str | Path], *,
                  mapping: str | Path | None = None, date_order: str = "dmy") -> pd.DataFrame:
    """Load the derived session table from raw logs or clean ``sessions.parquet`` tables.

    Raw logs are cleaned in memory (nothing is written); clean tables are checked against
    their folder's manifest, and several are combined only when the same pseudonym key made
    them. Either way the table gains the derived columns (``pain_change``,
    ``session_index``, ``weeks_since_start``, ``sessions_per_week``, ...).

    Parameters
    ----------
    inputs : path or list of paths
        Raw log files or folders of them, or one or several clean ``sessions.parquet``
        (or the folders holding them).
    mapping : str or Path, optional
        YAML or TOML file mapping raw headers to canonical columns (raw logs only).
    date_order : {"dmy", "mdy"}, default "dmy"
        How to read an ambiguous date such as 05/03/2024 (raw logs only).

    Returns
    -------
    DataFrame
        One row per clean session: the canonical columns of the clean table plus the
        derived ones.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import mfr_analysis as mfr
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> paths = mfr.simulate(clients=30, seed=3, out=folder / "logs.csv")
    >>> sessions = mfr.load_sessions(paths["log"])
    >>> sessions[["audience_group", "pain_pre", "pain_post", "pain_change"]].head(3)
      audience_group  pain_pre  pain_post  pain_change
    0    desk_worker       4.0        4.0          0.0
    1    desk_worker       5.0        2.0         -3.0
    2    desk_worker       4.0        3.0         -1.0
    >>> bool(sessions["client_id"].str.startswith("c_").all())  # keyed pseudonyms only
    True
    """
    from mfr_analysis.pipeline import load_sessions as load

    return load(inputs, mapping=mapping, date_order=date_order)  # type: ignore[arg-type]


def evaluate_claims(sessions: pd.DataFrame, **options: Any) -> pd.DataFrame:
    """Test every registered claim overall and per audience group.

    Clients are the unit of independence (mixed models, GEE or cluster-robust errors), the
    p-values are corrected across the whole table, and a control arm is used when the data
    has one. Too few clients, a missing outcome or a failed fit become verdicts, not errors.

    Parameters
    ----------
    sessions : DataFrame
        The derived session table, e.g. from :func:`load_sessions`.
    **options
        ``alpha`` (0.05), ``correction`` ("holm" or "fdr_bh"), ``min_clients`` (10, the
        fewest clients in a claim x group cell to fit a model), ``mcid_overrides`` (e.g.
        ``{"pain": 1.5}``), ``groups`` and ``progress``; see
        :func:`mfr_analysis.claims.evaluate_claims`.

    Returns
    -------
    DataFrame
        The claims table: one row per claim x audience group (``all`` for the pooled row)
        with ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``p_adjusted``, ``mcid``,
        ``n_clients``, ``design``, ``verdict`` and more.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import mfr_analysis as mfr
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> paths = mfr.simulate(clients=120, seed=3, out=folder / "logs.csv")
    >>> claims = mfr.evaluate_claims(mfr.load_sessions(paths["log"]), alpha=0.05)
    >>> pain = claims.query("claim_id == 'pain' and audience_group == 'all'").iloc[0]
    >>> pain["design"], pain["verdict"], float(pain["mcid"])
    ('controlled', 'below_threshold', 2.0)
    >>> print(f"{pain.estimate:.1f} points ({pain.ci_low:.1f} to {pain.ci_high:.1f})")
    -1.2 points (-1.7 to -0.8)
    """
    from mfr_analysis.claims import evaluate_claims as evaluate

    return evaluate(sessions, **options)


@_Verb
def report(inputs: str | Path | Sequence[str | Path], out: str | Path, *,
           by: str | None = None, workers: int | None = None, progress: bool = False,
           benchmark: Sequence[str] = (), **options: Any) -> Path:
    """Write the HTML reports (all clients, and one per slice) and their index page.

    Cleans raw logs once (or reads clean tables), computes and protects every slice's
    claims (counts of fewer than ``min_reported_clients`` clients are suppressed), runs the
    report notebooks with papermill in parallel and publishes everything into ``out`` as
    one set: an interrupted run leaves the previous report as it was.

    Parameters
    ----------
    inputs : path or list of paths
        Raw logs (files or folders), or one or several clean ``sessions.parquet``.
    out : str or Path
        Folder for the reports.
    by : {"audience_group", "site"}, optional
        Also write one report per audience group or per site.
    workers : int, optional
        Parallel notebook runs (default: one per core).
    progress : bool, default False
        Show progress on stderr.
    benchmark : sequence of {"site", "clinician"}, optional
        Also a benchmarking page per unit level (``benchmark-site.html``...): units compared
        risk-adjusted, with funnel plots, never ranked.
    **options
        ``title`` and ``mapping`` (see :class:`mfr_analysis.report.run.ReportOptions`), and
        either ``settings`` (an :class:`mfr_analysis.settings.AnalysisSettings`) or its
        fields: ``alpha``, ``correction``, ``min_clients``, ``min_reported_clients``,
        ``mcid_overrides``, ``date_order``.

    Returns
    -------
    Path
        The index page, ``out/index.html``.

    Raises
    ------
    mfr_analysis.report.run.SlicesFailed
        When some reports failed; the others and the index (listing the failed) are written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import mfr_analysis as mfr
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> paths = mfr.simulate(clients=120, seed=3, out=folder / "logs.csv")
    >>> index = mfr.report(paths["log"], folder / "reports", title="Our clinic")
    >>> index.name, sorted(p.name for p in index.parent.glob("*.html"))
    ('index.html', ['claims-all.html', 'data-quality.html', 'index.html'])
    """
    from mfr_analysis.report.run import ReportOptions, run_reports
    from mfr_analysis.settings import AnalysisSettings

    report_only = {k: options.pop(k) for k in ("title", "mapping") if k in options}
    settings = options.pop("settings", None) or AnalysisSettings(**options)
    return run_reports([inputs] if isinstance(inputs, str | Path) else list(inputs), out,
                       by=by, workers=workers,
                       options=ReportOptions(settings=settings, **report_only),
                       progress=progress, benchmark=benchmark)


def __dir__() -> list[str]:
    """The public surface only (tab completion shows the verbs, not this module's imports)."""
    return sorted(__all__)
