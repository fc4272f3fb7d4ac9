"""Run the report notebooks with papermill and export them to offline HTML, one per slice.

``run_reports`` checks every option, cleans the input once, computes the claims of all
clients and of every slice (audience group or site) and protects them across the whole
folder (:mod:`mfr_analysis.report.disclosure`), then executes the data-quality notebook and
one claims notebook per published slice in a process pool whose workers die with the run,
exports each to inert offline HTML (escaped text, a Content-Security-Policy, no script, no
traceback), writes each executed ``.ipynb`` beside its HTML (the record of the run) and an
``index.html``, and publishes all of it as one output set (:func:`mfr_analysis.io.output_set`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from multiprocessing import active_children, get_context
from pathlib import Path

import pandas as pd

from mfr_analysis.config import (
    CLEANING_REPORT_FILE,
    MIN_REPORTED_CLIENTS,
    SESSIONS_FILE,
    UNIT_LEVELS,
)
from mfr_analysis.errors import ReportError
from mfr_analysis.privacy import POOLED
from mfr_analysis.report.disclosure import FolderPlan
from mfr_analysis.report.results import SliceResult, load_claims  # noqa: F401 (their old home)
from mfr_analysis.settings import AnalysisSettings

log = logging.getLogger(__name__)

KERNEL_NAME = "mfr-analysis"
NOTEBOOK_DIR_ENV = "MFR_NOTEBOOK_DIR"
NOTEBOOK_PACKAGE = "mfr_analysis.report_notebooks"  # notebooks/reports/ (pyproject.toml)
DATA_QUALITY_NOTEBOOK = "data_quality.ipynb"
CLAIMS_NOTEBOOK = "claims_report.ipynb"
BENCHMARK_NOTEBOOK = "benchmarking.ipynb"
# the analysis settings the report notebooks take as parameters (AnalysisSettings fields)
NOTEBOOK_SETTINGS = ("alpha", "correction", "min_clients", "min_reported_clients",
                     "mcid_overrides")
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


@dataclass(frozen=True)
class ReportOptions:
    """What a report run needs besides its input: the report's own options (title, mapping
    file) and the analysis settings (validated when made: :class:`AnalysisSettings`)."""

    title: str = "Myofascial release claims"
    mapping: str = ""
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)

    def record(self) -> dict:
        """The run's options as plain values, for the index page (settings flattened)."""
        return {"title": self.title, "mapping": self.mapping, **self.settings.to_dict()}


TITLE_MAX = 120  # characters of --title


def validate_options(options: ReportOptions) -> ReportOptions:
    """The options, or :class:`InputError` (one line) for the first bad one.

    Run before any work (cleaning, notebooks): a setting that would make every report fail,
    or show something it should not, is refused up front. The analysis settings were
    checked when they were made; this checks the report's own options.
    """
    from mfr_analysis.errors import InputError

    if not isinstance(options.settings, AnalysisSettings):
        raise InputError(f"settings: expected an AnalysisSettings, got "
                         f"{type(options.settings).__name__}")
    minimum = options.settings.min_reported_clients
    if minimum < MIN_REPORTED_CLIENTS:
        log.warning("--min-reported-clients %d is below the CMS cell-size rule (%d): these "
                    "reports are for internal use only", minimum, MIN_REPORTED_CLIENTS)
    _check_title(options.title)
    if options.mapping and not Path(options.mapping).is_file():
        raise InputError(f"--mapping {options.mapping}: no such file")
    return options


def _check_title(title: str) -> None:
    from mfr_analysis.errors import InputError

    if not isinstance(title, str) or not title.strip():
        raise InputError("--title: expected some text")
    if len(title) > TITLE_MAX:
        raise InputError(f"--title: {len(title)} characters; at most {TITLE_MAX}")
    odd = next((ch for ch in title if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp",
                                                                    "Cs", "Co", "Cn"}), None)
    if odd is not None:
        raise InputError(f"--title: contains the control or format character U+{ord(odd):04X}")


@dataclass(frozen=True)
class SliceJob:
    """One notebook execution: which notebook, which slice, where its outputs go."""

    notebook: str
    slug: str
    label: str
    parameters: dict


def notebook_dir() -> Path:
    """Folder of the report notebooks: ``$MFR_NOTEBOOK_DIR`` when set, else the installed
    package ``mfr_analysis.report_notebooks``.

    That package is the repository's ``notebooks/reports/`` folder itself (``pyproject.toml``
    maps it): an editable install runs those files, a wheel carries them.
    """
    configured = os.environ.get(NOTEBOOK_DIR_ENV)
    if configured:
        folder = Path(configured).expanduser().resolve()
        if not (folder / CLAIMS_NOTEBOOK).is_file():
            raise ReportError(f"{NOTEBOOK_DIR_ENV}={configured}: no {CLAIMS_NOTEBOOK} in "
                              f"{folder}")
        return folder
    from importlib.resources import files

    shipped = files(NOTEBOOK_PACKAGE)
    if not isinstance(shipped, Path) or not (shipped / CLAIMS_NOTEBOOK).is_file():
        raise ReportError(f"report notebooks not found in the installed package "
                          f"({NOTEBOOK_PACKAGE}: {shipped}); reinstall mfr-analysis or set "
                          f"{NOTEBOOK_DIR_ENV} to the folder holding {CLAIMS_NOTEBOOK}")
    return shipped


def safe_slug(value: str) -> str:
    """File-name-safe ASCII slug of a slice name; never a path ('../../x' -> 'x')."""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-zA-Z0-9_]+", "-", text).strip("-_").lower()[:60]
    if text and text == str(value):
        return text
    digest = hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:8]
    return f"{text or 'slice'}-{digest}"


# File stems of the pages every run writes, and folder names inside the report folder: a
# slice never gets one of these.
RESERVED_STEMS = frozenset({"index", "data-quality", "claims-all", "notebooks", "data",
                            "manifest", *(f"benchmark-{by}" for by in UNIT_LEVELS)})


def slice_slugs(values: Iterable[object]) -> dict[str, str]:
    """A file stem ``claims-<slug>`` per slice value, unique within the run.

    A stem never equals a fixed page's (a site named 'all' must not replace the pooled report)
    nor another slice's: a clash gets a suffix derived from the value itself, longer until
    unique, so the same values always get the same names.
    """
    stems: dict[str, str] = {}
    taken = set(RESERVED_STEMS)
    for value in sorted({str(v) for v in values}):
        base = f"claims-{safe_slug(value)}"
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        stem, length = base, 8
        while stem in taken:
            stem, length = f"claims-{safe_slug(value)[:60]}-{digest[:length]}", length + 4
        taken.add(stem)
        stems[value] = stem
    return stems


def ensure_kernel() -> str:
    """Register this environment's Python as the ``mfr-analysis`` Jupyter kernel if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if Path(spec.argv[0]).exists():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (mfr-analysis)", prefix=sys.prefix)
    return KERNEL_NAME


def _prepare_sessions(inputs: Sequence[str | Path], data_dir: Path, options: ReportOptions,
                      progress: bool) -> tuple[Path, Path | None]:
    """Clean raw inputs into ``data_dir`` once, or use the given clean sessions.parquet (its
    folder checked against its manifest: a mixed folder is refused), or combine several clean
    tables made with the same key into ``data_dir``."""
    from mfr_analysis.pipeline import (
        clean_parquets,
        clean_table_report,
        combine_clean_tables,
        run_clean,
    )

    tables = clean_parquets(inputs)
    if tables is not None and len(tables) == 1:
        return tables[0], clean_table_report(tables[0])
    if tables is not None:
        sessions = combine_clean_tables(tables, data_dir)
        report = data_dir / CLEANING_REPORT_FILE
        return sessions, report if report.is_file() else None
    run_clean([Path(p) for p in inputs], data_dir, mapping=options.mapping or None,
              date_order=options.settings.date_order, progress=progress)
    return data_dir / SESSIONS_FILE, data_dir / CLEANING_REPORT_FILE


def protect_folder(sessions_path: Path, by: str | None, options: ReportOptions,
                   progress: bool = False, cleaning_report: dict | None = None) -> FolderPlan:
    """Every slice's claims table and describe tables (flow, Table 1, ...), protected across
    the whole report folder at once."""
    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.pipeline import load_sessions
    from mfr_analysis.progress import progress_bar
    from mfr_analysis.report.disclosure import plan_folder, slice_values
    from mfr_analysis.report.labels import group_label

    sessions = load_sessions([sessions_path])
    if by and sessions[by].isna().all():
        raise ReportError(f"--by {by}: the data has no {by} values")

    def evaluate(part: pd.DataFrame) -> pd.DataFrame:
        return evaluate_claims(part, settings=options.settings)

    label = group_label if by == "audience_group" else str
    with progress_bar(total=1 + len(slice_values(sessions, by)), desc="claims", unit="slice",
                      disable=not progress) as bar:
        return plan_folder(sessions, by, evaluate, minimum=options.settings.min_reported_clients,
                           label=label, progress=lambda name: bar.set_postfix_str(
                               name, refresh=False) or bar.update(),
                           cleaning_report=cleaning_report)


def plan_jobs(sessions_path: Path, cleaning_report: Path | None, out: Path, by: str | None,
              options: ReportOptions, folder: FolderPlan, benchmark: Sequence[str] = ()
              ) -> tuple[list[SliceJob], list[str]]:
    """The notebook runs to do (each slice's protected claims saved beside its page, then
    one benchmarking page per unit level in ``benchmark``), and the index lines on slices
    without a report."""
    from mfr_analysis.report.disclosure import withheld_summary, write_claims

    common = {
        "sessions_path": str(sessions_path.resolve()),
        "cleaning_report_path": str(cleaning_report.resolve()) if cleaning_report else "",
        "title": options.title,
        **{name: value for name, value in options.settings.to_dict().items()
           if name in NOTEBOOK_SETTINGS},
    }
    pooled = folder.slices[0]
    jobs = [SliceJob(DATA_QUALITY_NOTEBOOK, "data-quality", "Data quality",
                     {**common, "slice_column": "", "slice_value": "",
                      "hidden_groups": list(pooled.hidden_groups)})]
    stems = slice_slugs(item.value for item in folder.slices if item.value != POOLED)
    for item in folder.slices:
        slug = "claims-all" if item.value == POOLED else stems[item.value]
        claims_path = (out / f"{slug}.json").resolve()
        write_claims(item.claims, claims_path)
        parameters = {**common, "slice_column": by if item.value != POOLED else "",
                      "slice_value": item.value, "claims_path": str(claims_path),
                      "hidden_groups": list(item.hidden_groups),
                      "disclosure_plan": item.plan.to_dict()}
        if item.value != POOLED:
            parameters["title"] = f"{options.title}: {item.label}"
        jobs.append(SliceJob(CLAIMS_NOTEBOOK, slug, item.label, parameters))
    pages = {item.value for item in folder.slices if item.value != POOLED}
    for unit in benchmark:
        shown = {value: sorted(folder.shown_sets.get(value, ()))
                 for value in [POOLED, *(sorted(pages) if by == unit else [])]}
        jobs.append(SliceJob(BENCHMARK_NOTEBOOK, f"benchmark-{unit}",
                             f"{unit.capitalize()}s compared",
                             {**common, "benchmark_by": unit, "unit_pages": by == unit,
                              "shown_sets": shown}))
    noun = "audience group" if by == "audience_group" else (by or "slice")
    return jobs, withheld_summary(folder.withheld, noun, options.settings.min_reported_clients)


def check_parameters(folder: Path, jobs: Sequence[SliceJob]) -> None:
    """Refuse parameters a notebook does not declare (papermill only warns, #818)."""
    import papermill as pm

    declared = {name: set(pm.inspect_notebook(str(folder / name)))
                for name in {job.notebook for job in jobs}}
    for job in jobs:
        unknown = set(job.parameters) - declared[job.notebook]
        if unknown:
            raise ReportError(f"{job.notebook} has no parameter(s) {', '.join(sorted(unknown))}")


FAILED_NOTICE = (
    '<div class="mfr-failed"><b>This report is incomplete.</b> The analysis stopped in the '
    "section “{section}”, so that section is partial and the ones after it are missing. The "
    "analyst who ran the report should look at the run log or at notebooks/{slug}.ipynb in "
    "the report folder.</div>"
)
UNSAFE_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n{csp}\n'
    "<title>Report withheld</title></head><body><p>This report was withheld: its page did not "
    "pass the safety check. The analyst who ran the report should look at the run log or at "
    "notebooks/{slug}.ipynb in the report folder.</p></body></html>\n"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_SCRIPT_MIMETYPES = ("application/javascript", "application/vnd.jupyter.widget-view+json",
                     "application/vnd.jupyter.widget-state+json")


def _clinician_outputs(outputs: list) -> list:
    """Outputs fit for a clinician: no error or traceback, no stderr, no script, no ANSI."""
    kept = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "error" or (kind == "stream" and output.get("name") != "stdout"):
            continue
        if kind == "stream":
            output["text"] = _ANSI.sub("", output.get("text", ""))
        data = output.get("data")
        if data is not None:
            for mimetype in _SCRIPT_MIMETYPES:
                data.pop(mimetype, None)
            if not data:
                continue
        kept.append(output)
    return kept


def clinician_notebook(notebook, slug: str) -> tuple[object, bool]:
    """The executed notebook as a clinician may see it, and whether it failed.

    Error outputs, tracebacks, stderr and papermill's error banners are dropped; a failed run
    loses the sections it never reached and gets one plain sentence on top saying where it
    stopped and where the analyst can look.
    """
    import nbformat

    from mfr_analysis.report.safe_text import html_text

    failed = bool(notebook.metadata.get("papermill", {}).get("exception"))
    section, stopped_in, cells = "loading the data", "", []
    for cell in notebook.cells:
        run = cell.metadata.get("papermill", {})
        if "papermill-error-cell-tag" in cell.metadata.get("tags", []) or (
                failed and run.get("status") == "pending"):
            continue  # papermill's banners, and what the failed run never reached
        if cell.cell_type == "markdown":
            section = next((line.lstrip("#").strip() for line in cell.source.splitlines()
                            if line.startswith("#")), "") or section
        elif cell.cell_type == "code":
            errors = run.get("exception") is True or any(
                o.get("output_type") == "error" for o in cell.get("outputs", []))
            if errors and not stopped_in:
                stopped_in = section
            failed = failed or errors
            cell.outputs = _clinician_outputs(cell.get("outputs", []))
        cells.append(cell)
    if failed:
        notice = FAILED_NOTICE.format(section=html_text(stopped_in or section, 80),
                                      slug=html_text(slug))
        cells.insert(0, nbformat.v4.new_markdown_cell(notice))
    notebook.cells = cells
    return notebook, failed


def export_html(notebook_path: Path, html_path: Path, *, title: str = "",
                slug: str = "") -> list[str]:
    """Convert an executed notebook to self-contained, inert HTML: no code, no script, no
    traceback, no network fetch; the page carries the Content-Security-Policy.

    Returns what made the page unsafe (then a plain withheld page is written instead), or an
    empty list.
    """
    import nbformat
    from nbconvert import HTMLExporter

    from mfr_analysis.io import write_atomic
    from mfr_analysis.report.safe_text import (
        CONTENT_SECURITY_POLICY,
        CSP_META,
        plain_text,
        unsafe_markup,
    )

    slug = slug or html_path.stem
    exporter = HTMLExporter(
        template_name="mfr_offline",
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    notebook, _failed = clinician_notebook(nbformat.read(notebook_path, as_version=4), slug)
    notebook.metadata["title"] = plain_text(title or "Report", 300)
    body, _ = exporter.from_notebook_node(
        notebook, resources={"mfr_csp": CONTENT_SECURITY_POLICY})
    problems = unsafe_markup(body)
    if problems:  # the caller reports them as this slice's failure
        body = UNSAFE_PAGE.format(csp=CSP_META, slug=slug)
    write_atomic(html_path, lambda p: p.write_text(body, encoding="utf-8"))
    return problems


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


# The kernel this worker process runs its notebooks on, and its socket folder: what
# _stop_worker removes when the worker must die at once; and what that needs, imported ahead.
_RUNNING: dict[str, object] = {}
_WORKER: dict[str, object] = {}

# A pool worker keeps one kernel for every page it runs: starting a kernel and importing the
# analysis stack into it is about 3.5 s, the whole work of an import-only notebook, paid
# once per worker instead of once per page. Before each page the kernel's namespace is
# reset (IPython's %reset: no variable, figure or working folder of one page reaches the
# next; imported modules stay, which is the point). A kernel that died or will not reset
# is replaced.
KERNEL_START_SECONDS = 120  # papermill's own default wait for a new kernel
RESET_SECONDS = 60
_RESET_NAMESPACE = (
    "import os as _os\n"
    "import matplotlib.pyplot as _plt\n"
    "_plt.close('all')\n"
    "_os.chdir({cwd!r})\n"
    "get_ipython().reset(new_session=True, aggressive=False)\n"
    "__import__('gc').collect()\n"
)
# What every report notebook imports, loaded while the runner computes the claims.
_WARM_IMPORTS = (
    "import IPython.display, matplotlib.pyplot, PIL.Image\n"
    "import mfr_analysis.claims, mfr_analysis.settings, mfr_analysis.report.parameters\n"
    "from mfr_analysis.report import disclosure, figures, outcome_views, quality, views\n"
    # a page's first read of the session table imports the cleaning stage, its schema and
    # with it pandera and dask.dataframe (0.8 s): here, beside the runner's claims
    "import mfr_analysis.pipeline\n"
)


def _new_kernel_manager(kernel: str) -> tuple[object, str]:
    """A kernel manager over IPC sockets in a private temporary folder, not started.

    IPC keeps the kernel's traffic off TCP (no plain-text loopback warning on stderr), and
    owning the kernel manager lets us shut the kernel down at once, whatever happened. The
    manager remembers the clients made on it (papermill makes one per notebook and leaves
    it open when it does not own the kernel): :func:`_close_clients` closes them.
    """
    import tempfile

    from jupyter_client.manager import KernelManager

    class _TrackedKernelManager(KernelManager):
        def client(self, **kwargs: object) -> object:
            made = super().client(**kwargs)
            self.__dict__.setdefault("_mfr_clients", []).append(made)
            return made

    sockets = tempfile.mkdtemp(prefix="mfr-kernel-")
    return _TrackedKernelManager(kernel_name=kernel, transport="ipc",
                                 ip=str(Path(sockets) / "k")), sockets


def _close_clients(manager: object) -> None:
    for made in manager.__dict__.pop("_mfr_clients", []):
        with suppress(Exception):
            made.stop_channels()


def _close_kernel() -> None:
    """Shut down this process's kept kernel, if any, and remove its socket folder."""
    manager, sockets = _RUNNING.pop("manager", None), _RUNNING.pop("sockets", None)
    _RUNNING.clear()
    if manager is not None:
        _close_clients(manager)
        with suppress(Exception):
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
    if sockets:
        shutil.rmtree(str(sockets), ignore_errors=True)


def _run_code(manager: object, code: str, seconds: float) -> bool:
    """Run code in the kernel; whether it ran without error within ``seconds``."""
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=seconds)
        reply = client.execute_interactive(code, store_history=False, timeout=seconds,
                                           output_hook=lambda _message: None)
        return reply.get("content", {}).get("status") == "ok"
    except Exception:  # timeout, dead kernel: the caller replaces the kernel
        return False
    finally:
        _close_clients(manager)


def _kept_kernel(kernel: str, cwd: Path) -> object:
    """This worker's kernel, started in ``cwd`` if there is none (or it died), its namespace
    reset when it ran a page before."""
    from multiprocessing.util import Finalize

    manager = _RUNNING.get("manager")
    if manager is not None and (_RUNNING.get("kernel") != (kernel, str(cwd))
                                or not manager.is_alive()):
        _close_kernel()
        manager = None
    if manager is not None and _RUNNING.get("used") and not _run_code(
            manager, _RESET_NAMESPACE.format(cwd=str(cwd)), RESET_SECONDS):
        _close_kernel()
        manager = None
    if manager is None:
        manager, sockets = _new_kernel_manager(kernel)
        _RUNNING.update(manager=manager, sockets=sockets, kernel=(kernel, str(cwd)),
                        used=False)
        if "finalizer" not in _WORKER:  # shut down as the worker process exits
            _WORKER["finalizer"] = Finalize(None, _close_kernel, exitpriority=10)
        manager.start_kernel(cwd=str(cwd))
    return manager


def warm_kernel(kernel: str, cwd: str) -> bool:
    """Start this worker's kernel and import the report notebooks' libraries into it
    (run while the runner computes the claims); whether that worked."""
    try:
        manager = _kept_kernel(kernel, Path(cwd))
    except Exception:  # the first page starts a kernel itself, and reports a failure
        return False
    return _run_code(manager, _WARM_IMPORTS, KERNEL_START_SECONDS)


def _execute(job: SliceJob, folder: Path, executed: Path, cwd: Path, kernel: str,
             keep_kernel: bool = False) -> None:
    """papermill run of one job, on this worker's kept kernel (``keep_kernel``) or on a
    kernel started and shut down for this run alone."""
    import papermill as pm

    if keep_kernel:
        manager = _kept_kernel(kernel, cwd)
        _RUNNING["used"] = True
    else:
        manager, sockets = _new_kernel_manager(kernel)
        _RUNNING.update(manager=manager, sockets=sockets)
    try:
        pm.execute_notebook(
            str(folder / job.notebook), str(executed), parameters=job.parameters,
            kernel_name=kernel, km=manager, progress_bar=False, log_output=False, cwd=str(cwd),
            # papermill rewrites the whole notebook before and after every cell by default
            # (52 writes, 0.74 s of a claims page); it still writes it once at the end, and
            # with the failing cell marked when a cell raises
            request_save_on_cell_execute=False,
        )
    finally:  # a kept kernel that died is replaced by the next _kept_kernel
        if keep_kernel:
            _close_clients(manager)
        else:
            _close_kernel()


# ----------------------------------------------------------- pool workers and signals ---
# A pool worker must never outlive the report run that started it, nor leave its kernel
# behind (kill -9 or SIGTERM of `report` used to leave workers running the remaining
# notebooks and then idling forever). Each worker
#   * ignores Ctrl-C: the terminal sends SIGINT to the whole process group, and the parent
#     alone decides (it then stops the workers: no traceback from a worker or a kernel);
#   * asks Linux to send it SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), and
#     watches its parent pid from a thread as well (any POSIX system, and the moment
#     between its start and the prctl call);
#   * on SIGTERM or a parent gone, kills its kernel's process group and exits at once.
# Kernels run in their own session (jupyter_client), so a terminal's Ctrl-C never reaches
# them; should their worker vanish anyway, ipykernel exits when its parent changes
# (JPY_PARENT_PID, checked every second).
PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 0.5


def _stop_worker(*_signal: object) -> None:
    """Kill this worker's kernels (each with its process group) and exit now, no cleanup.

    Runs as a signal handler or from the watchdog thread: nothing here may raise or import
    (an import could meet a half-imported module of the interrupted main thread).
    """
    try:
        for pid in _child_pids():
            try:
                os.killpg(pid, signal.SIGKILL)  # a kernel leads its own session
            except OSError:  # not (yet) a group leader: a kernel being started
                with suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if _RUNNING.get("sockets"):
            shutil.rmtree(str(_RUNNING["sockets"]), ignore_errors=True)
    finally:
        os._exit(128 + signal.SIGTERM)


def _child_pids() -> list[int]:
    """This process's children: its kernel, also one caught half-started by a signal."""
    psutil = _WORKER.get("psutil")
    if psutil is not None:
        with suppress(Exception):  # a child that ended meanwhile: psutil.Error
            return [child.pid for child in psutil.Process().children()]
    manager = _RUNNING.get("manager")
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    return [process.pid] if getattr(process, "pid", None) else []


def _watch_parent(parent_pid: int) -> None:
    import time

    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    _stop_worker()


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process when its parent dies (Linux), and a watchdog thread anyway."""
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no libc symbol: the watchdog alone
            pass
    if os.getppid() != parent_pid:  # the parent died before we could ask
        _stop_worker()
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="mfr-watch-parent").start()


def _worker_init(parent_pid: int) -> None:
    """Initializer of every pool worker: see the comment above."""
    try:  # imported now: the signal handler must not import
        import psutil  # a dependency of ipykernel

        _WORKER["psutil"] = psutil
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already so: see _workers_born_ignoring_ctrl_c
    _hold_ctrl_c(signal.SIG_UNBLOCK)  # born blocked too: its kernels must not inherit that
    signal.signal(signal.SIGTERM, _stop_worker)
    _die_with_parent(parent_pid)


@contextmanager
def _workers_born_ignoring_ctrl_c() -> Iterator[None]:
    """SIGINT ignored, and held, in this process while it starts pool workers (``submit``
    spawns them).

    A spawned worker inherits 'ignored' across exec, and Python then leaves it so: a Ctrl-C
    during its first second (importing, before its initializer runs) cannot print a
    KeyboardInterrupt traceback from inside it. A Ctrl-C that reaches the main thread during
    the few milliseconds of spawning is blocked, not lost: it is raised as the block ends
    (threads started meanwhile inherit the block; one the kernel hands to an older thread
    is ignored, as it was before).
    (The resource tracker is started first: its start unblocks SIGINT. Workers inherit the
    block and lift it in their initializer.)
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    _hold_ctrl_c(signal.SIG_BLOCK)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _hold_ctrl_c(signal.SIG_UNBLOCK)  # a Ctrl-C held meanwhile is raised here


def _hold_ctrl_c(how: int) -> None:
    """Block or unblock SIGINT in this thread (where the platform can)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(how, {signal.SIGINT})


def _stop_pool(pool: ProcessPoolExecutor, workers: Iterable) -> None:
    """End a pool at once: queued jobs cancelled, running workers (and their kernels) ended."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker kills its kernel and exits
    for process in workers:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt: the same clean stop as Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_job(job: SliceJob, notebook_folder: str, out: str, kernel: str,
            keep_kernel: bool = False) -> SliceResult:
    """Execute one notebook with papermill and export it; failures are returned, not raised.

    ``keep_kernel``: run it on this process's kept kernel (a pool worker's, see
    :func:`_kept_kernel`), else on a kernel of its own."""
    import papermill as pm

    out_dir = Path(out)
    executed = out_dir / "notebooks" / f"{job.slug}.ipynb"
    html = out_dir / f"{job.slug}.html"
    executed.parent.mkdir(parents=True, exist_ok=True)
    error = ""
    for _attempt in range(2):  # a kernel that fails to start is retried once (papermill #511)
        try:
            _execute(job, Path(notebook_folder), executed, out_dir, kernel, keep_kernel)
            error = ""
            break
        except pm.PapermillExecutionError as failure:
            error = f"{failure.ename}: {_first_line(failure.evalue)}"
            break
        except RuntimeError as failure:  # kernel died or did not start: tried once more
            error = f"kernel failure: {_first_line(failure)}"
        except Exception as failure:  # any other failure is this slice's, not the batch's
            error = f"{type(failure).__name__}: {_first_line(failure)}"
            break
    if executed.is_file():
        title = str(job.parameters.get("title", ""))  # the page <title> names report and slice
        title = title if title.endswith(job.label) else f"{title}: {job.label}"
        problems = export_html(executed, html, title=title, slug=job.slug)
        if problems and not error:
            error = f"page withheld: {problems[0]}"
    claims = str(job.parameters.get("claims_path", ""))
    claims = str(out_dir / claims) if claims else ""  # relative to the report folder, or absolute
    return SliceResult(job.slug, job.label, job.notebook, html.name if html.is_file() else "",
                       claims, error)


class NotebookPool:
    """Worker processes that run report notebooks, each on one kernel it keeps; they die
    with the run (see the comment above :func:`_stop_worker`). Use :func:`notebook_pool`."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._before = set(active_children())
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                         initializer=_worker_init, initargs=(os.getpid(),))

    def warm(self, kernel: str, cwd: Path) -> None:
        """Start every worker and its kernel with the notebooks' imports, in the background."""
        with _workers_born_ignoring_ctrl_c():  # submit() starts the workers
            for _ in range(self.workers):
                self._pool.submit(warm_kernel, kernel, str(cwd))

    def run(self, jobs: Sequence[SliceJob], notebooks: Path, out: Path, kernel: str,
            progress: bool) -> list[SliceResult]:
        """Run the jobs; results in job order, failures included."""
        with _workers_born_ignoring_ctrl_c():
            futures = [self._pool.submit(run_job, job, str(notebooks), str(out), kernel, True)
                       for job in jobs]
        return _collect(as_completed(futures), jobs, progress)

    def stop(self) -> None:
        """End now: queued jobs cancelled, running workers and their kernels ended."""
        _stop_pool(self._pool, set(active_children()) - self._before)

    def close(self) -> None:
        """Wait for the workers to exit (each shuts its kernel down as it does)."""
        self._pool.shutdown(wait=True)


@contextmanager
def notebook_pool(workers: int) -> Iterator[NotebookPool]:
    """A :class:`NotebookPool` for the block: closed after it, stopped at once when the
    block fails or is interrupted (Ctrl-C, SIGTERM through :func:`sigterm_as_interrupt`)."""
    pool = NotebookPool(workers)
    try:
        yield pool
    except BaseException as failure:
        pool.stop()
        if isinstance(failure, BrokenProcessPool):
            raise ReportError("a report worker process died (killed, or out of memory?); "
                              "nothing was published") from None
        raise
    pool.close()


def pool_size(workers: int | None, jobs: int | None) -> int:
    """Worker processes for ``jobs`` notebooks: ``workers`` or the usable cores, never more
    than the jobs (when known)."""
    from mfr_analysis.config import usable_cores

    size = workers or usable_cores()
    return max(1, min(size, jobs) if jobs else size)


def run_jobs(jobs: Sequence[SliceJob], out: Path, *, workers: int | None = None,
             progress: bool = True, scheduler: str | None = None,
             pool: NotebookPool | None = None) -> list[SliceResult]:
    """Execute notebook jobs in a process pool (``pool``, or one made for them), or as
    tasks on the Dask cluster at ``scheduler`` (whose workers see ``out`` and the notebooks
    at the same paths and have the kernel); results in job order, failures included."""

    notebooks = notebook_dir()
    check_parameters(notebooks, jobs)
    kernel = ensure_kernel()
    if scheduler:
        return _run_jobs_on_dask(jobs, out, notebooks, kernel, scheduler, progress)
    if pool is not None:
        return pool.run(jobs, notebooks, out, kernel, progress)
    with notebook_pool(pool_size(workers, len(jobs))) as own:
        return own.run(jobs, notebooks, out, kernel, progress)


def _collect(finished: Iterable, jobs: Sequence[SliceJob], progress: bool) -> list[SliceResult]:
    """Gather finished futures (any executor) with a progress bar; results in job order."""
    from mfr_analysis.progress import progress_bar

    results: list[SliceResult] = []
    bar = progress_bar(finished, total=len(jobs), desc="reports", unit="report",
                       disable=not progress)
    for future in bar:
        result = future.result()
        bar.set_postfix_str(result.slug, refresh=False)  # named in the line of this report
        if result.error:
            log.warning("report %s failed: %s", result.slug, result.error)
        results.append(result)
    order = {job.slug: i for i, job in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.slug])


def _run_jobs_on_dask(jobs: Sequence[SliceJob], out: Path, notebooks: Path, kernel: str,
                      scheduler: str, progress: bool) -> list[SliceResult]:
    """One task per slice on an existing Dask cluster (``distributed``)."""
    from distributed import Client, as_completed

    from mfr_analysis.errors import InputError

    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        futures = [client.submit(run_job, job, str(notebooks), str(out), kernel, pure=False,
                                 key=f"report-{job.slug}") for job in jobs]
        return _collect(as_completed(futures), jobs, progress)
    finally:
        client.close()


class SlicesFailed(ReportError):
    """Some reports of a run failed; the others and the index (listing the failed) are written."""

    def __init__(self, index: Path, failed: Sequence[SliceResult], total: int) -> None:
        self.index, self.failed = index, list(failed)
        names = ", ".join(r.slug for r in self.failed[:5]) + (
            f" and {len(self.failed) - 5} more" if len(self.failed) > 5 else "")
        super().__init__(f"{len(self.failed)} of {total} reports failed: {names} (see the "
                         f"warnings above and notebooks/<name>.ipynb in {index.parent}); the "
                         f"index lists them: {index}")


# Files a report run writes into its folder: replaced, or removed as stale when this run
# does not write them again (also when an older version wrote them without a manifest).
REPORT_OWNED = ("index.html", "data-quality.html", "claims-*.html", "claims-*.json",
                "benchmark-*.html",
                "notebooks/*.ipynb", "data/sessions.parquet", "data/quarantine.csv",
                "data/cleaning_report.json", "data/manifest.json",
                "data/sessions.parquet/part-*.parquet")
# What a report run replaces in its folder whatever the slices: an input there is refused.
REPORT_FIXED = ("index.html", "data-quality.html", "claims-all.html", "claims-all.json",
                "notebooks", "data")
_PATH_PARAMETERS = ("sessions_path", "cleaning_report_path", "claims_path")


def _relative_paths(job: SliceJob, root: Path) -> SliceJob:
    """The job with its paths inside ``root`` made relative to it.

    Notebooks run with ``root`` (the staging folder) as working folder; the executed notebook,
    kept as the record of the run, then names paths that still hold once the set is published.
    """
    parameters = dict(job.parameters)
    for name in _PATH_PARAMETERS:
        value = parameters.get(name)
        if value and Path(value).is_absolute() and Path(value).is_relative_to(root.resolve()):
            parameters[name] = Path(value).relative_to(root.resolve()).as_posix()
    return replace(job, parameters=parameters)


def _most_jobs(sessions_path: Path, by: str | None, benchmark_pages: int) -> int | None:
    """The most notebook jobs a run can have (data quality, all clients, one per slice,
    the benchmarking pages), read from the slice column alone; None when unknown."""
    if not by:
        return 2 + benchmark_pages
    try:
        values = pd.read_parquet(sessions_path, columns=[by])[by].nunique()
    except Exception:  # protect_folder says what is wrong with the table
        return None
    return 2 + int(values) + benchmark_pages


def run_reports(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    by: str | None = None,
    workers: int | None = None,
    options: ReportOptions | None = None,
    progress: bool = True,
    scheduler: str | None = None,
    benchmark: Sequence[str] = (),
) -> Path:
    """Clean once, run every report notebook in parallel, write ``index.html``; return its path.

    Every option is checked before any work. Everything (pages, claims-*.json, notebooks/,
    data/) is written into a staging folder and published into ``out`` as one set
    (:func:`mfr_analysis.io.output_set`): an interrupted or killed run leaves the previous
    report as it was, and pages of an earlier report that this run did not write are removed.
    Before any notebook runs, the claims of every slice are computed and protected across the
    whole folder (:func:`protect_folder`). ``benchmark``: unit levels ("site", "clinician")
    that also get a benchmarking page (sites or clinicians compared, risk-adjusted). Raises
    :class:`SlicesFailed` (after publishing, failed pages and the index included) when any
    report failed.
    """
    from mfr_analysis.config import check_workers
    from mfr_analysis.io import output_set, refuse_output_over_inputs
    from mfr_analysis.pipeline import input_files
    from mfr_analysis.report.index import write_index
    from mfr_analysis.report.views import load_cleaning_report

    options = validate_options(options or ReportOptions())
    benchmark = list(dict.fromkeys(benchmark))
    unknown = [unit for unit in benchmark if unit not in UNIT_LEVELS]
    if unknown:
        raise ReportError(f"--benchmark {unknown[0]}: expected site or clinician")
    if workers is not None:
        check_workers(workers)  # bounded by the machine's cores and memory
    out = Path(out)
    notebook_dir()  # fail early, before cleaning, when the notebooks cannot be found
    refuse_output_over_inputs([out / name for name in REPORT_FIXED], input_files(inputs))
    with output_set(out, kind="report", owned=REPORT_OWNED) as staged:
        stage = staged.dir
        sessions_path, cleaning_report = _prepare_sessions(inputs, stage / "data", options,
                                                           progress)
        cleaning = load_cleaning_report(str(cleaning_report) if cleaning_report else "")
        with ExitStack() as stack:
            pool = None
            if not scheduler:  # workers and kernels start while the claims are computed
                pool = stack.enter_context(notebook_pool(pool_size(
                    workers, _most_jobs(sessions_path, by, len(benchmark)))))
                pool.warm(ensure_kernel(), stage)
            folder = protect_folder(sessions_path, by, options, progress, cleaning)
            jobs, withheld = plan_jobs(sessions_path, cleaning_report, stage, by, options,
                                       folder, benchmark)
            jobs = [_relative_paths(job, stage) for job in jobs]
            results = run_jobs(jobs, stage, workers=workers, progress=progress,
                               scheduler=scheduler, pool=pool)
        write_index(stage, results, withheld, options.title, options.record(), cleaning)
    index = out / "index.html"
    failed = [r for r in results if r.error]
    if failed:
        raise SlicesFailed(index, failed, len(results))
    return index

