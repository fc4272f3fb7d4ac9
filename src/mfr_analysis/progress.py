"""Progress of long work on stderr: a tqdm bar on a terminal, one plain line per step elsewhere.

In a pipe, a log file or CI a redrawn bar is noise (``\\r`` frames, or nothing at all), so
:func:`progress_bar` hands back a :class:`LineProgress` there: the same tqdm object, which
prints one line each time a step or slice completes, e.g.::

    clean 1/4: reading sessions_export.csv (0.4 s)
    reports 3/6 (21.7 s)

Callers use it exactly like ``tqdm(...)`` (``update``, ``set_postfix_str``, iteration, ``with``)
and pass ``disable=True`` for quiet runs (``--no-progress``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

#: With more steps than this, a line is printed at most every LINE_SECONDS (and at the end).
MANY_STEPS = 100
LINE_SECONDS = 5.0


def is_terminal(stream: IO[str] | None) -> bool:
    """Is ``stream`` an interactive terminal (where a redrawn bar makes sense)?"""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str | None = None,
                 total: float | None = None, unit: str = "it", disable: bool = False,
                 file: IO[str] | None = None, **options: Any) -> tqdm:
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a :class:`LineProgress`.

    ``options`` go to tqdm (e.g. ``leave``); ``disable=True`` gives a silent bar.
    """
    stream = file if file is not None else sys.stderr
    if disable:
        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=True)
    kind = tqdm if is_terminal(stream) else LineProgress
    return kind(iterable, desc=desc, total=total, unit=unit, file=stream, **options)


class LineProgress(tqdm):
    """A tqdm that prints one line per completed step instead of redrawing a bar.

    Each line names the step count, the postfix (what the caller said it was doing) and the
    time since the start. With more than :data:`MANY_STEPS` steps, lines come at most every
    :data:`LINE_SECONDS` seconds, plus one at the end.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(mininterval=0, miniters=1, delay=0)
        kwargs.pop("leave", None)  # a line printed stays printed
        self._shown_n: float | None = None
        self._shown_at = 0.0
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Print a line when a step completed since the last line (never a redraw)."""
        if self.n == 0 or self.n == self._shown_n:
            return True
        many = self.total is None or self.total > MANY_STEPS
        now = self._time()
        if many and self.n != self.total and now - self._shown_at < LINE_SECONDS:
            return True
        self._shown_n, self._shown_at = self.n, now
        self.fp.write(self.line() + "\n")
        self.fp.flush()
        return True

    def line(self) -> str:
        """The text of one progress line."""
        count = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g} {self.unit}"
        head = f"{self.desc} {count}" if self.desc else count
        postfix = str(self.postfix or "").lstrip(", ")
        return f"{head}: {postfix} ({self._elapsed()})" if postfix else (
            f"{head} ({self._elapsed()})")

    def _elapsed(self) -> str:
        seconds = self._time() - self.start_t
        return f"{seconds:.1f} s" if seconds < 60 else tqdm.format_interval(seconds)

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: lines are never redrawn."""

    def close(self) -> None:
        """Print the last step if it was not printed yet; no bar to clear."""
        if self.disable:
            return
        if self.n and self.n != self._shown_n:
            self._shown_at = -LINE_SECONDS  # the last line is never held back
            self.display()
        self.disable = True
        self._decr_instances(self)
