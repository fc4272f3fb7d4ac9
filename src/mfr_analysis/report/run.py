"""Run the report notebooks with papermill and export them to offline HTML, one per slice.

``run_reports`` cleans the input once, then executes the data-quality notebook and one claims
notebook per slice (all clients, then each audience group or site) in a process pool, writes
each executed ``.ipynb`` beside its HTML (the record of the run) and an ``index.html``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from mfr_analysis.config import CLEANING_REPORT_FILE, MIN_REPORTED_CLIENTS, SESSIONS_FILE
from mfr_analysis.errors import ReportError
from mfr_analysis.privacy import POOLED
from mfr_analysis.report.disclosure import FolderPlan

log = logging.getLogger(__name__)

KERNEL_NAME = "mfr-analysis"
NOTEBOOK_DIR_ENV = "MFR_NOTEBOOK_DIR"
DATA_QUALITY_NOTEBOOK = "data_quality.ipynb"
CLAIMS_NOTEBOOK = "claims_report.ipynb"
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


@dataclass(frozen=True)
class ReportOptions:
    """Parameters passed to every report notebook (papermill parameters)."""

    title: str = "Myofascial release claims"
    alpha: float = 0.05
    correction: str = "holm"
    min_clients: int = 10
    min_reported_clients: int = MIN_REPORTED_CLIENTS
    mcid_overrides: dict[str, float] = field(default_factory=dict)
    date_order: str = "dmy"
    mapping: str = ""


@dataclass(frozen=True)
class SliceJob:
    """One notebook execution: which notebook, which slice, where its outputs go."""

    notebook: str
    slug: str
    label: str
    parameters: dict


@dataclass(frozen=True)
class SliceResult:
    """Outcome of one job: paths written, and the error line if it failed."""

    slug: str
    label: str
    notebook: str
    html: str
    claims: str
    error: str = ""


def notebook_dir() -> Path:
    """Folder of the report notebooks: ``$MFR_NOTEBOOK_DIR`` or the repository's ``notebooks/``."""
    configured = os.environ.get(NOTEBOOK_DIR_ENV)
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[3] / "notebooks")
    for candidate in candidates:
        if (candidate / CLAIMS_NOTEBOOK).is_file():
            return candidate
    raise ReportError(
        f"report notebooks not found; set {NOTEBOOK_DIR_ENV} to the folder holding "
        f"{CLAIMS_NOTEBOOK}"
    )


def safe_slug(value: str) -> str:
    """File-name-safe ASCII slug of a slice name; never a path ('../../x' -> 'x')."""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-zA-Z0-9_]+", "-", text).strip("-_").lower()[:60]
    if text and text == str(value):
        return text
    digest = hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:8]
    return f"{text or 'slice'}-{digest}"


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
              date_order=options.date_order, progress=progress)
    return data_dir / SESSIONS_FILE, data_dir / CLEANING_REPORT_FILE


def protect_folder(sessions_path: Path, by: str | None, options: ReportOptions,
                   progress: bool = False) -> FolderPlan:
    """Every slice's claims table, protected across the whole report folder at once."""
    from tqdm import tqdm

    from mfr_analysis.claims import evaluate_claims
    from mfr_analysis.pipeline import load_sessions
    from mfr_analysis.report.disclosure import plan_folder, slice_values
    from mfr_analysis.report.labels import group_label

    sessions = load_sessions([sessions_path])
    if by and sessions[by].isna().all():
        raise ReportError(f"--by {by}: the data has no {by} values")

    def evaluate(part: pd.DataFrame) -> pd.DataFrame:
        return evaluate_claims(part, alpha=options.alpha, correction=options.correction,
                               min_clients=options.min_clients,
                               mcid_overrides=dict(options.mcid_overrides))

    label = group_label if by == "audience_group" else str
    with tqdm(total=1 + len(slice_values(sessions, by)), desc="claims", unit="slice",
              disable=not progress, file=sys.stderr) as bar:
        return plan_folder(sessions, by, evaluate, minimum=options.min_reported_clients,
                           label=label, progress=lambda _name: bar.update())


def plan_jobs(sessions_path: Path, cleaning_report: Path | None, out: Path, by: str | None,
              options: ReportOptions, folder: FolderPlan) -> tuple[list[SliceJob], list[str]]:
    """The notebook runs to do (each slice's protected claims saved beside its page), and
    the index lines on slices without a report."""
    from mfr_analysis.report.disclosure import withheld_summary, write_claims

    common = {
        "sessions_path": str(sessions_path.resolve()),
        "cleaning_report_path": str(cleaning_report.resolve()) if cleaning_report else "",
        "title": options.title,
        "alpha": options.alpha,
        "correction": options.correction,
        "min_clients": options.min_clients,
        "min_reported_clients": options.min_reported_clients,
        "mcid_overrides": dict(options.mcid_overrides),
    }
    pooled = folder.slices[0]
    jobs = [SliceJob(DATA_QUALITY_NOTEBOOK, "data-quality", "Data quality",
                     {**common, "slice_column": "", "slice_value": "",
                      "hidden_groups": list(pooled.hidden_groups)})]
    for item in folder.slices:
        slug = "claims-all" if item.value == POOLED else f"claims-{safe_slug(item.value)}"
        claims_path = (out / f"{slug}.json").resolve()
        write_claims(item.claims, claims_path)
        parameters = {**common, "slice_column": by if item.value != POOLED else "",
                      "slice_value": item.value, "claims_path": str(claims_path),
                      "hidden_groups": list(item.hidden_groups)}
        if item.value != POOLED:
            parameters["title"] = f"{options.title}: {item.label}"
        jobs.append(SliceJob(CLAIMS_NOTEBOOK, slug, item.label, parameters))
    noun = "audience group" if by == "audience_group" else (by or "slice")
    return jobs, withheld_summary(folder.withheld, noun, options.min_reported_clients)


def check_parameters(folder: Path, jobs: Sequence[SliceJob]) -> None:
    """Refuse parameters a notebook does not declare (papermill only warns, #818)."""
    import papermill as pm

    declared = {name: set(pm.inspect_notebook(str(folder / name)))
                for name in {job.notebook for job in jobs}}
    for job in jobs:
        unknown = set(job.parameters) - declared[job.notebook]
        if unknown:
            raise ReportError(f"{job.notebook} has no parameter(s) {', '.join(sorted(unknown))}")


def export_html(notebook_path: Path, html_path: Path) -> None:
    """Convert an executed notebook to self-contained HTML: no code, no network fetches."""
    import nbformat
    from nbconvert import HTMLExporter

    from mfr_analysis.io import write_atomic

    exporter = HTMLExporter(
        template_name="mfr_offline",
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    notebook = nbformat.read(notebook_path, as_version=4)
    body, _ = exporter.from_notebook_node(notebook)
    write_atomic(html_path, lambda p: p.write_text(body, encoding="utf-8"))


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


def _execute(job: SliceJob, folder: Path, executed: Path, cwd: Path, kernel: str) -> None:
    """papermill run on a kernel we own, over IPC sockets in a private temporary folder.

    IPC keeps the kernel's traffic off TCP (no plain-text loopback warning on stderr), and
    owning the kernel manager lets us shut the kernel down at once, whatever happened.
    """
    import shutil
    import tempfile

    import papermill as pm
    from jupyter_client.manager import KernelManager

    sockets = tempfile.mkdtemp(prefix="mfr-kernel-")
    manager = KernelManager(kernel_name=kernel, transport="ipc", ip=str(Path(sockets) / "k"))
    try:
        pm.execute_notebook(
            str(folder / job.notebook), str(executed), parameters=job.parameters,
            kernel_name=kernel, km=manager, progress_bar=False, log_output=False, cwd=str(cwd),
        )
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)


def run_job(job: SliceJob, notebook_folder: str, out: str, kernel: str) -> SliceResult:
    """Execute one notebook with papermill and export it; failures are returned, not raised."""
    import papermill as pm

    out_dir = Path(out)
    executed = out_dir / "notebooks" / f"{job.slug}.ipynb"
    html = out_dir / f"{job.slug}.html"
    executed.parent.mkdir(parents=True, exist_ok=True)
    error = ""
    for _attempt in range(2):  # a kernel that fails to start is retried once (papermill #511)
        try:
            _execute(job, Path(notebook_folder), executed, out_dir, kernel)
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
        export_html(executed, html)
    claims = str(job.parameters.get("claims_path", ""))
    return SliceResult(job.slug, job.label, job.notebook, html.name if html.is_file() else "",
                       claims, error)


def run_jobs(jobs: Sequence[SliceJob], out: Path, *, workers: int | None = None,
             progress: bool = True, scheduler: str | None = None) -> list[SliceResult]:
    """Execute notebook jobs in a process pool, or as tasks on the Dask cluster at
    ``scheduler`` (whose workers see ``out`` and the notebooks at the same paths and have the
    kernel); results in job order, failures included."""

    notebooks = notebook_dir()
    check_parameters(notebooks, jobs)
    kernel = ensure_kernel()
    if scheduler:
        return _run_jobs_on_dask(jobs, out, notebooks, kernel, scheduler, progress)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, job, str(notebooks), str(out), kernel) for job in jobs]
        return _collect(as_completed(futures), jobs, progress)


def _collect(finished: Iterable, jobs: Sequence[SliceJob], progress: bool) -> list[SliceResult]:
    """Gather finished futures (any executor) with a progress bar; results in job order."""
    from tqdm import tqdm

    results: list[SliceResult] = []
    for future in tqdm(finished, total=len(jobs), desc="reports", unit="report",
                       disable=not progress, file=sys.stderr):
        result = future.result()
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


def run_reports(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    by: str | None = None,
    workers: int | None = None,
    options: ReportOptions | None = None,
    progress: bool = True,
    scheduler: str | None = None,
) -> Path:
    """Clean once, run every report notebook in parallel, write ``index.html``; return its path."""
    from mfr_analysis.report.index import write_index

    options = options or ReportOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebook_dir()  # fail early, before cleaning, when the notebooks cannot be found
    sessions_path, cleaning_report = _prepare_sessions(inputs, out / "data", options, progress)
    folder = protect_folder(sessions_path, by, options, progress)
    jobs, withheld = plan_jobs(sessions_path, cleaning_report, out, by, options, folder)
    results = run_jobs(jobs, out, workers=workers, progress=progress, scheduler=scheduler)
    from mfr_analysis.report.views import load_cleaning_report

    cleaning = load_cleaning_report(str(cleaning_report) if cleaning_report else "")
    index = write_index(out, results, withheld, options.title, asdict(options), cleaning)
    failed = [r for r in results if r.error]
    if failed and len(failed) == len(results):
        raise ReportError(f"every report failed; first: {failed[0].slug}: {failed[0].error}")
    return index


def load_claims(path: str | Path) -> pd.DataFrame | None:
    """Read a claims table the claims notebook saved, or None when it is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
