"""Atomic file writing shared by every stage: a crash never leaves half a file behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


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


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that replaces it only if the block succeeds."""
    target = Path(target)
    temporary = temporary_beside(target)
    try:
        yield Path(temporary)
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
    if fmt == "csv":
        return write_atomic(target, lambda path: table.to_csv(path, index=False))
    if fmt == "json":
        text = table.to_json(orient="records", date_format="iso", double_precision=15)
        records = json.loads(text)
        return write_json(records, target, sort_keys=False)  # keep the column order
    raise ValueError(f"unknown format {fmt!r}: use json or csv")
