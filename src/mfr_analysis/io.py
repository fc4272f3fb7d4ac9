"""Atomic file writing shared by every stage: a crash never leaves half a file behind."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from mfr_analysis.errors import InputError

log = logging.getLogger(__name__)

PART_FILE = re.compile(r"part-\d+\.parquet")  # a part of a sessions folder (the Dask engine)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def temporary_beside(target: Path) -> Path:
    """A new empty file next to ``target`` with the permissions a normal write would give."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are meant to be shared
    return Path(temporary)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


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
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                         else "")
        raise InputError(f"{target}: a folder holding {shown}, not only the part-*.parquet "
                         "files of an earlier clean; not replaced (move it away or write "
                         "elsewhere)")


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
    holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
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
