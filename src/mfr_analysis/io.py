"""Atomic outputs: single files replaced in one step, and output *sets* published in one step.

Single files
    :func:`write_atomic`, :func:`write_json`, :func:`write_table` write beside the target
    (``.mfr-tmp-<name>.*``) and ``os.replace`` it: a crash never leaves half a file.

Output sets (``clean --out``, ``report --out``, a report's ``data/``)
    The files of one run belong together (``sessions.parquet`` with its ``quarantine.csv`` and
    ``cleaning_report.json``; a report's pages with their claims and data). They are written
    into a staging folder and published together::

        with output_set(out_dir, kind="clean") as staged:   # takes the folder's lock
            write(staged.dir / "sessions.parquet")           # any nested path works:
            write(staged.dir / "data" / "sessions.parquet")  # a sub-set with its own manifest
        # here every staged file is in out_dir, and out_dir/manifest.json describes them

        manifest = verify_output_set(out_dir, kind="clean")  # readers: refuses a mixed folder

    * :func:`lock_output` (taken by :func:`output_set`): an exclusive, non-blocking
      ``fcntl.flock`` on ``out_dir/.mfr-lock``; a second run on the same folder fails at once
      with one line. The OS drops the lock when its process dies, so ``kill -9`` never leaves
      a stale lock; the lock file is removed on release.
    * On entering, leftovers of killed runs are removed (staging folders ``.mfr-staging-*``,
      the Dask engine's ``.mfr-dask-*``, temporary files ``.mfr-tmp-*`` and the
      ``.<output>.XXXXXXXX`` temporary files of older versions); a staged set that had become
      *ready* is published first (rolled forward).
    * On success: every staged file is checksummed (sha256) and the manifest (``kind``,
      ``run_id``, ``created``, ``package_version``, each file's size, mtime and sha256) is
      written *inside* the staging folder (``.mfr-ready-manifest.json``): from then on the
      set is *ready*. Then each top-level entry is moved into ``out_dir`` (the old one set
      aside inside the staging folder), files of the previous set that the new one does not
      contain are set aside too (stale outputs of an older run), and ``manifest.json`` is
      moved into ``out_dir`` last. If the process dies while
      moving, the next run (or a reader, see :func:`verify_output_set`) rolls the publish
      forward from the ready staging folder; a staging folder that never became ready is just
      deleted. A failure while moving puts the old set back.
    * On an exception (``OSError(ENOSPC)``, ``KeyboardInterrupt``, ...) in the block, or
      before the set is ready, the staging folder is removed and the old set stays untouched.
    * A folder holding the set of another kind of run is refused (one line): a ``clean
      --out`` onto a report folder must not remove the report as stale.
    * A folder in ``out_dir`` is replaced only if every file in it belonged to the previous
      set (its manifest, or the ``owned`` patterns of files this kind of run writes, such as
      ``sessions.parquet/part-*.parquet``); otherwise nothing is moved and the run fails with
      one line.

    :func:`verify_output_set` compares every listed file's size and, when its mtime differs
    from the manifest's, its sha256 (``deep=True`` always hashes: 0.8 s per GiB here; the
    quick check takes 0.1 ms). Publishing adds about 1 s per GiB (sha256 and fsync).
    A folder without ``manifest.json`` (written by a version before output sets) is accepted:
    it returns ``{}`` and the caller decides (the clean-table readers warn once on stderr).

    :func:`refuse_output_over_inputs` refuses an output path that is, contains or lies inside
    an input, before any work; :func:`set_files` lists the files of an input set folder.

API: ``output_set(out_dir, *, kind, owned=()) -> ContextManager[StagedOutputs]`` (``.dir``,
``.run_id``, ``.kind``, ``.out``); ``lock_output(out_dir) -> ContextManager[Path]``;
``verify_output_set(out_dir, kind=None, *, deep=False) -> dict``;
``refuse_output_over_inputs(outputs, inputs, *, option="--out") -> None``;
``set_files(out_dir) -> list[Path]``; constants ``MANIFEST_FILE``, ``LOCK_FILE``.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mfr_analysis.config import CLEANING_REPORT_FILE, QUARANTINE_FILE, SESSIONS_FILE
from mfr_analysis.errors import InputError

log = logging.getLogger(__name__)

PART_FILE = re.compile(r"part-\d+\.parquet")  # a part of a sessions folder (the Dask engine)

MANIFEST_FILE = "manifest.json"
CLEAN_OUTPUT_FILES = (SESSIONS_FILE, QUARANTINE_FILE, CLEANING_REPORT_FILE)  # what `clean` writes
READY_FILE = ".mfr-ready-manifest.json"  # the manifest inside a staging folder: set is ready
LOCK_FILE = ".mfr-lock"
STAGING_PREFIX = ".mfr-staging-"
TEMPORARY_PREFIX = ".mfr-tmp-"
RESERVED_PREFIX = ".mfr-"  # names the tool keeps for itself: never part of a set
_SET_ASIDE = ".mfr-replaced"  # inside a staging folder: the old entries, until published
_MANIFEST_FORMAT = "mfr-analysis output set 1"
_HASH = "sha256"  # hardware-accelerated here: 0.57 s per GB (blake2b: 0.86 s)
# files each kind of run writes, also when an older version wrote them without a manifest
KIND_OWNED: dict[str, tuple[str, ...]] = {
    "clean": (SESSIONS_FILE, f"{SESSIONS_FILE}/part-*.parquet", QUARANTINE_FILE,
              CLEANING_REPORT_FILE),
}
# temporary files of versions before output sets: ".<output name>.<mkstemp's 8 characters>"
_LEGACY_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:old-)?[a-z0-9_]{8}")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def temporary_beside(target: Path) -> Path:
    """A new empty file next to ``target`` with the permissions a normal write would give."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{target.name}.",
                                         dir=target.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are meant to be shared
    return Path(temporary)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_replaceable(target: str | Path) -> None:
    """Raise :class:`InputError` if ``target`` is a folder other than one of parquet parts.

    An output that is one file with one engine and a folder of ``part-NNNNN.parquet`` files
    with the other (``sessions.parquet``) may replace such a folder, and nothing else."""
    target = Path(target)
    if not _is_folder(target):
        return
    others = sorted(p.name + ("/" if _is_folder(p) else "") for p in target.iterdir()
                    if not (PART_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink()))
    if others:
        raise InputError(f"{target}: a folder holding {_shown(others)}, not only the "
                         "part-*.parquet files of an earlier clean; not replaced (move it away "
                         "or write elsewhere)")


def publish(source: str | Path, target: str | Path) -> None:
    """Move the finished ``source`` (a file or a folder) onto ``target``.

    ``target`` may be absent, a file, or a folder of parquet parts from an earlier run (see
    :func:`check_replaceable`; anything else raises :class:`InputError` and changes nothing).
    A file onto a file is one ``os.replace``. Otherwise the old target is first moved aside
    in the same folder, so the target is missing only between two renames, and is put back if
    the second rename fails; it is deleted once the new one is in place."""
    source, target = Path(source), Path(target)
    check_replaceable(target)
    exists = target.exists() or target.is_symlink()
    if not exists or (not _is_folder(source) and not _is_folder(target)):
        os.replace(source, target)
        return
    holder = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{target.name}.old-",
                                   dir=target.parent))
    old = holder / target.name
    try:
        os.replace(target, old)
    except BaseException:
        holder.rmdir()
        raise
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(old, target)  # if even this fails, the old output stays in ``holder``
        holder.rmdir()
        raise
    try:
        shutil.rmtree(holder)
    except OSError as exc:
        log.warning("could not remove the previous %s at %s: %s", target.name, holder, exc)


@contextmanager
def atomic_path(target: str | Path, *, over_parts: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that replaces it only if the block succeeds.

    ``over_parts``: ``target`` may be a folder of parquet parts (:func:`publish`), which is
    checked before the block runs, so a folder that may not be replaced costs no work."""
    target = Path(target)
    if over_parts:
        check_replaceable(target)
    temporary = temporary_beside(target)
    try:
        yield Path(temporary)
        if over_parts:
            publish(temporary, target)
        else:
            os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_atomic(target: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` in one step."""
    with atomic_path(target) as temporary:
        write(temporary)
    return Path(target)


def write_json(data: Any, target: str | Path, *, sort_keys: bool = True) -> Path:
    """Write JSON (UTF-8, trailing newline; keys sorted unless told) atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str)
    text += "\n"
    return write_atomic(target, lambda path: path.write_text(text, encoding="utf-8"))


def write_table(table: pd.DataFrame, target: str | Path, fmt: str = "json") -> Path:
    """Write a result table as JSON records or CSV, atomically."""
    if fmt == "csv":  # opened in spreadsheets: text cells quoted, formulas neutralised (OWASP)
        from mfr_analysis.redact import neutralise_frame

        safe = neutralise_frame(table)

        def write(path: Path) -> None:
            with path.open("w", encoding="utf-8", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerow(safe.columns)  # our names
                safe.to_csv(handle, index=False, header=False, lineterminator="\n",
                            quoting=csv.QUOTE_NONNUMERIC)

        return write_atomic(target, write)
    if fmt == "json":
        text = table.to_json(orient="records", date_format="iso", double_precision=15)
        records = json.loads(text)
        return write_json(records, target, sort_keys=False)  # keep the column order
    raise ValueError(f"unknown format {fmt!r}: use json or csv")


# ---------------------------------------------------------------------------------------------
# the files of a clean output set (both engines write them with these)

FINGERPRINT_METADATA = b"mfr_analysis.key_fingerprint"  # parquet schema metadata key
NO_DICTIONARY = ("session_id", "client_id", "source_line")  # (nearly) unique per row
WITH_STATISTICS = ("session_date", "audience_group", "arm")  # worth min/max for filtering


def parquet_writer(path: str | Path, schema: pa.Schema,
                   fingerprint: str | None = None) -> pq.ParquetWriter:
    """A zstd parquet writer of clean sessions (not atomic: into a staging folder), for one
    table or its row slices in order (the same bytes, in slices of ``ROWS_PER_SLICE`` rows).

    Statistics and dictionaries only where they help (a quarter faster); the key
    ``fingerprint``, given, goes into the schema metadata so that a lone file carries it."""
    if fingerprint is not None:
        schema = schema.with_metadata({**(schema.metadata or {}),
                                       FINGERPRINT_METADATA: fingerprint.encode()})
    return pq.ParquetWriter(path, schema, compression="zstd",
                            use_dictionary=[c for c in schema.names if c not in NO_DICTIONARY],
                            write_statistics=[c for c in schema.names if c in WITH_STATISTICS])


def write_parquet(sessions: pd.DataFrame | pa.Table, path: str | Path,
                  fingerprint: str | None = None) -> None:
    """Write a clean sessions table as zstd parquet (see :func:`parquet_writer`)."""
    table = (sessions if isinstance(sessions, pa.Table)
             else pa.Table.from_pandas(sessions, preserve_index=False))
    with parquet_writer(path, table.schema, fingerprint) as writer:
        writer.write_table(table)


def write_csv(frame: pd.DataFrame, path: str | Path, *, header: bool = True) -> None:
    """UTF-8 CSV safe to open in a spreadsheet (fast: pyarrow's writer, quoting cells where
    needed): formula-led cells get a leading ``'``, numbers are left alone (OWASP); not
    atomic (into a staging folder, or see :func:`atomic_path`)."""
    from mfr_analysis.redact import neutralise_table

    table = neutralise_table(pa.Table.from_pandas(frame, preserve_index=False))
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(include_header=header,
                                                                  quoting_style="needed"))


# ---------------------------------------------------------------------------------------------
# outputs that must not overwrite inputs


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_output_over_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path],
                              *, option: str = "--out") -> None:
    """Raise :class:`InputError` (one line) if an output path is an input, lies inside one
    (a folder of parquet parts) or holds one; call it before any work.

    Paths are compared after resolving symbolic links, and existing files also by identity
    (hard links). Pass the input *files* (and parquet-part folders) a run reads, not whole
    folders of raw logs, so that writing beside an input stays allowed."""
    inputs = [Path(i) for i in inputs]
    resolved = [(i, os.path.realpath(i)) for i in inputs]
    for output in outputs:
        output = Path(output)
        real = os.path.realpath(output)
        for given, real_input in resolved:
            same = real == real_input or _inside(real, real_input) or _inside(real_input, real)
            if not same and output.exists() and given.exists():
                with suppress(OSError):
                    same = os.path.samefile(output, given)
            if same:
                raise InputError(f"{output}: {option} would overwrite an input of this run "
                                 f"({given}); choose another {option}")


def refuse_clean_over_inputs(out: Path, files: Sequence[Path]) -> None:
    """One line, before any work, if ``out`` is not a folder or a clean output would land on
    an input file."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; --out names the folder for {SESSIONS_FILE}, "
                         f"{QUARANTINE_FILE} and {CLEANING_REPORT_FILE}")
    refuse_output_over_inputs([out / name for name in (*CLEAN_OUTPUT_FILES, MANIFEST_FILE)],
                              files)


# ---------------------------------------------------------------------------------------------
# the output folder's lock


@contextmanager
def lock_output(out_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``out_dir`` (created if missing) for the block; yield it.

    A second holder, in this process or another, gets :class:`InputError` at once. Written by
    hand on ``fcntl.flock`` (the standard library suffices): the OS releases the lock when the
    process dies, and the lock file is unlinked while still locked, with an inode check on
    taking it, so that two runs can never hold locks on two different files."""
    import fcntl  # POSIX only: imported here so that single-file writes work anywhere

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; --out names the folder for the outputs")
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    for _attempt in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"{out}: another mfr-analysis run is writing here; wait for it "
                             "to finish or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            named, held = os.stat(path), os.fstat(fd)
            same = (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:  # the holder before us removed it as we opened it
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - only under a storm of runs on one folder
        raise InputError(f"{out}: cannot lock the folder; try again")
    try:
        yield out
    finally:
        with suppress(OSError):
            path.unlink()
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------------------------------------
# output sets


@dataclass(frozen=True)
class StagedOutputs:
    """Where a run writes its outputs (``dir``) before they are published into ``out``."""

    dir: Path
    run_id: str
    kind: str
    out: Path


def _new_run_id() -> str:
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"


def _rename(source: Path, target: Path) -> None:
    """``os.replace``, the one step every publish move goes through (tests interrupt it)."""
    os.replace(source, target)


def _fsync_dir(folder: Path) -> None:
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _staged_files(root: Path) -> list[str]:
    """Every file under ``root`` as a relative POSIX path, sorted; ``.mfr-*`` entries skipped."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(RESERVED_PREFIX))
        for name in names:
            if name.startswith(RESERVED_PREFIX):
                continue
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"{path}: only regular files can be part of an output set")
            files.append(path.relative_to(root).as_posix())
    return sorted(files)


def file_digest(path: str | Path, *, sync: bool = False) -> str:
    """sha256 of a file in hex (``sync``: also flush it to disk first)."""
    with open(path, "rb") as handle:
        if sync:
            os.fsync(handle.fileno())
        return hashlib.file_digest(handle, _HASH).hexdigest()


def _describe(root: Path, files: Sequence[str]) -> dict[str, dict[str, Any]]:
    described = {}
    for name in files:
        path = root / name
        info = path.stat()
        described[name] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns,
                           _HASH: file_digest(path, sync=True)}
    return described


def _read_manifest(folder: Path, name: str = MANIFEST_FILE) -> dict[str, Any] | None:
    """The manifest in ``folder``, None if there is none; InputError if it is unreadable."""
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        text = ""
    try:
        manifest = json.loads(text)
    except ValueError:
        manifest = None
    if not (isinstance(manifest, dict) and manifest.get("format") == _MANIFEST_FORMAT
            and isinstance(manifest.get("files"), dict)):
        raise InputError(f"{folder}: {name} is not an mfr-analysis manifest; move it "
                         "away or choose another folder")
    return manifest


def _owned(relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(relative, p) for p in patterns)


def _folder_files(folder: Path, prefix: str) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if not _is_folder(path):
            found.append(f"{prefix}/{path.relative_to(folder).as_posix()}")
    return found


def _check_entries(out: Path, entries: Sequence[str], old_files: set[str],
                   owned: Sequence[str]) -> None:
    """Refuse (before anything moves) to replace a folder holding files no earlier run wrote."""
    for entry in entries:
        target = out / entry
        if not _is_folder(target):
            continue
        foreign = [f for f in _folder_files(target, entry)
                   if f not in old_files and not _owned(f, owned)]
        if foreign:
            names = [f.split("/", 1)[1] for f in foreign]
            raise InputError(f"{target}: a folder holding {_shown(names)}, which no earlier "
                             "run wrote; not replaced (move it away or write elsewhere)")


def _stale_files(out: Path, entries: Sequence[str], old_files: set[str],
                 owned: Sequence[str]) -> list[str]:
    """Files of an earlier set (its manifest, or owned patterns) that the new set lacks."""
    candidates = set(old_files)
    for pattern in owned:
        candidates.update(p.relative_to(out).as_posix() for p in out.glob(pattern)
                          if p.is_file() or p.is_symlink())
    top = set(entries) | {MANIFEST_FILE}
    return sorted(f for f in candidates if f.split("/", 1)[0] not in top
                  and not f.startswith(RESERVED_PREFIX))


def _write_ready(staging: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest into the staging folder: from now on the set is ready to publish."""
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    temporary = staging / f"{TEMPORARY_PREFIX}{MANIFEST_FILE}"  # a crash here: not ready
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    _rename(temporary, staging / READY_FILE)
    _fsync_dir(staging)


def _present(path: Path) -> bool:
    return os.path.lexists(path)


def _set_aside(staging: Path, relative: str) -> Path:
    return staging / _SET_ASIDE / relative


def _roll_forward(staging: Path, out: Path) -> None:
    """Finish publishing a ready staging folder; safe to repeat after a crash at any step.

    Per entry E (S = staged, O = published, R = set aside): S present and R absent: not
    moved yet; S and R present: O was set aside, S not yet moved; S absent: done."""
    manifest = _read_manifest(staging, READY_FILE)
    assert manifest is not None
    for entry in manifest["entries"]:
        source, target, aside = staging / entry, out / entry, _set_aside(staging, entry)
        if not _present(source):
            continue
        if not _present(aside) and _present(target):
            aside.parent.mkdir(parents=True, exist_ok=True)
            _rename(target, aside)
        _rename(source, target)
    for relative in manifest["stale"]:
        target, aside = out / relative, _set_aside(staging, relative)
        if _present(target) and not _present(aside):
            aside.parent.mkdir(parents=True, exist_ok=True)
            _rename(target, aside)
            _prune_empty(target.parent, out)
    _fsync_dir(out)
    _rename(staging / READY_FILE, out / MANIFEST_FILE)  # the set is published
    _fsync_dir(out)


def _roll_back(staging: Path, out: Path, manifest: dict[str, Any]) -> None:
    """Undo a partial publish: the new entries back into staging, the old ones back in place."""
    for entry in manifest["entries"]:
        source, target = staging / entry, out / entry
        if not _present(source) and _present(target):
            _rename(target, source)
    for relative in [*manifest["entries"], *manifest["stale"]]:
        target, aside = out / relative, _set_aside(staging, relative)
        if _present(aside) and not _present(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            _rename(aside, target)


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and _inside(str(folder), str(stop)):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _remove(path: Path) -> int:
    """Delete a file or folder; return the bytes it held."""
    try:
        if _is_folder(path):
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path, ignore_errors=True)
            return size
        size = path.lstat().st_size
        path.unlink()
        return size
    except OSError:
        return 0


def _clean_leftovers(out: Path, owned: Sequence[str] = ()) -> None:
    """With the lock held: publish ready staging folders, delete what killed runs left."""
    ready = sorted(_ready_stagings(out),
                   key=lambda p: _read_manifest(p, READY_FILE)["created"])  # type: ignore[index]
    for staging in ready:
        log.warning("%s: finishing the publish of an interrupted run (%s)", out, staging.name)
        _roll_forward(staging, out)
    manifest = _read_manifest(out)
    names = {f.split("/", 1)[0] for f in (manifest or {}).get("files", {})}
    names.update(p.split("/", 1)[0] for p in owned)
    names.update(p.split("/", 1)[0] for patterns in KIND_OWNED.values() for p in patterns)
    names.add(MANIFEST_FILE)
    removed = 0
    for path in out.iterdir():
        name = path.name
        if name == LOCK_FILE:
            continue
        legacy = _LEGACY_TEMPORARY.fullmatch(name)
        if name.startswith((STAGING_PREFIX, ".mfr-dask-", TEMPORARY_PREFIX)) or (
                legacy and legacy["name"] in names):
            removed += _remove(path)
    if removed:
        log.info("%s: removed %.1f MB left by interrupted runs", out, removed / 1e6)


@contextmanager
def output_set(out_dir: str | Path, *, kind: str, owned: Sequence[str] = ()
               ) -> Iterator[StagedOutputs]:
    """Stage a run's outputs and publish them into ``out_dir`` as one set (module docstring).

    ``kind`` names the run (``clean``, ``report``) in the manifest. ``owned``: glob patterns
    (relative to ``out_dir``) of files this kind of run writes, which it may replace or remove
    as stale even when no manifest lists them (outputs of older versions); the clean
    outputs are always owned."""
    out = Path(out_dir)
    owned = (*KIND_OWNED.get(kind, ()), *owned)
    with lock_output(out):
        _clean_leftovers(out, owned)
        previous = _read_manifest(out)
        if previous is not None and previous.get("kind") != kind:
            raise InputError(f"{out}: holds the outputs of `mfr-analysis "
                             f"{previous.get('kind')}`; choose another --out for "
                             f"`mfr-analysis {kind}`")
        run_id = _new_run_id()
        staging = out / f"{STAGING_PREFIX}{run_id}"
        staging.mkdir()
        staged = StagedOutputs(staging, run_id, kind, out)
        try:
            yield staged
            _publish(staged, owned)
        except BaseException:
            if (staging / READY_FILE).is_file():  # ready: put back, or left to the next run
                _abandon_publish(staging, out)
            else:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staged: StagedOutputs, owned: Sequence[str]) -> None:
    from mfr_analysis.version import package_version

    staging, out = staged.dir, staged.out
    files = _staged_files(staging)
    if MANIFEST_FILE in files:
        raise ValueError(f"{MANIFEST_FILE} is written by output_set, not by its caller")
    entries = sorted({f.split("/", 1)[0] for f in files})
    old = _read_manifest(out)
    old_files = set((old or {}).get("files", {}))
    _check_entries(out, entries, old_files, owned)
    manifest = {
        "format": _MANIFEST_FORMAT, "kind": staged.kind, "run_id": staged.run_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "package_version": package_version(), "hash": _HASH, "entries": entries,
        "stale": _stale_files(out, entries, old_files, owned),
        "files": _describe(staging, files),
    }
    _write_ready(staging, manifest)
    _roll_forward(staging, out)


def _abandon_publish(staging: Path, out: Path) -> None:
    """A publish failed half-way: put the old set back, or leave the ready set to the next run."""
    manifest = _read_manifest(staging, READY_FILE)
    try:
        _roll_back(staging, out, manifest or {"entries": [], "stale": []})
    except OSError as exc:
        log.warning("%s: could not put the previous outputs back (%s); the next run finishes "
                    "publishing the new ones", out, exc)
        return
    shutil.rmtree(staging, ignore_errors=True)


def _ready_stagings(out: Path) -> list[Path]:
    return [p for p in out.glob(f"{STAGING_PREFIX}*")
            if _is_folder(p) and (p / READY_FILE).is_file()]


def _finish_interrupted(out: Path, command: str) -> None:
    """A reader found a ready set that a killed run did not finish publishing: finish it."""
    try:
        with lock_output(out):
            _clean_leftovers(out)
    except InputError:
        raise InputError(f"{out}: another mfr-analysis run is writing here; wait for it to "
                         "finish") from None
    except OSError as exc:
        raise InputError(f"{out}: an interrupted run left its outputs partly published and "
                         f"the folder is not writable ({exc.strerror}); run `mfr-analysis "
                         f"{command}` again") from None


def verify_output_set(out_dir: str | Path, kind: str | None = None, *,
                      deep: bool = False) -> dict[str, Any]:
    """The manifest of the output set in ``out_dir`` after checking its files against it.

    Raises :class:`InputError` (one line) when a listed file is missing or differs (size,
    then sha256 when its mtime changed; ``deep``: always the sha256), or the set is of another
    ``kind``. A set whose publish a killed run left unfinished is finished first (needs write
    access). Returns ``{}`` for a folder without a manifest (older versions)."""
    out = Path(out_dir)
    command = kind or "clean"
    if _ready_stagings(out):
        _finish_interrupted(out, command)
    manifest = _read_manifest(out)
    if manifest is None:
        return {}
    command = kind or manifest.get("kind") or command
    if kind is not None and manifest.get("kind") != kind:
        raise InputError(f"{out}: holds the outputs of `mfr-analysis {manifest.get('kind')}`, "
                         f"not of `mfr-analysis {kind}`")
    for name, expected in manifest["files"].items():
        path = out / name
        try:
            info = path.stat()
        except OSError:
            info = None
        matches = (info is not None and stat.S_ISREG(info.st_mode)
                   and info.st_size == expected.get("size"))
        if matches and (deep or info.st_mtime_ns != expected.get("mtime_ns")):
            matches = file_digest(path) == expected.get(_HASH)
        if not matches:
            what = "is missing from" if info is None else "does not match"
            raise InputError(f"{out}: {name} {what} {MANIFEST_FILE} (the outputs are mixed or "
                             f"partly written); run `mfr-analysis {command}` again")
    return manifest


def set_files(out_dir: str | Path) -> list[Path]:
    """The files of the output set in ``out_dir`` (its manifest and what it lists, else the
    clean outputs present): what a run reading this folder reads, for
    :func:`refuse_output_over_inputs`."""
    out = Path(out_dir)
    manifest = _read_manifest(out) if out.is_dir() else None
    names = list((manifest or {}).get("files", {})) + [MANIFEST_FILE]
    names += [p for p in KIND_OWNED["clean"] if "*" not in p]
    return [out / n for n in dict.fromkeys(names)]

