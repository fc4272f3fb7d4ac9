"""Progress on stderr: a bar on a terminal, one plain line per step or slice elsewhere."""

from __future__ import annotations

import io

from tqdm import tqdm

from mfr_analysis.progress import MANY_STEPS, LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_each_step_is_one_line_naming_it() -> None:
    out = io.StringIO()
    with progress_bar(total=4, desc="clean", unit="step", file=out) as bar:
        assert isinstance(bar, LineProgress)
        for stage, steps in (("reading logs.csv", 1), ("cleaning", 1), ("writing", 2)):
            bar.set_postfix_str(stage)
            bar.update(steps)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "clean 1/4: reading logs.csv", "clean 2/4: cleaning", "clean 4/4: writing"]
    assert all(line.endswith(" s)") for line in lines)
    assert "\r" not in out.getvalue()


def test_off_a_terminal_an_iteration_prints_one_line_per_item() -> None:
    out = io.StringIO()
    for _ in progress_bar(range(3), desc="reports", unit="report", file=out):
        pass
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == [
        "reports 1/3", "reports 2/3", "reports 3/3"]


def test_many_steps_are_thinned_but_the_last_is_shown() -> None:
    out = io.StringIO()
    for _ in progress_bar(range(MANY_STEPS * 3), desc="parts", file=out):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) <= 3 and lines[-1].startswith(f"parts {MANY_STEPS * 3}/{MANY_STEPS * 3}")


def test_on_a_terminal_it_is_tqdms_bar_and_disabled_it_is_silent() -> None:
    terminal = Terminal()
    with progress_bar(total=2, desc="claims", file=terminal) as bar:
        assert type(bar) is tqdm
        bar.update(2)
    assert "\r" in terminal.getvalue() and "2/2" in terminal.getvalue()
    quiet = io.StringIO()
    with progress_bar(total=2, desc="claims", file=quiet, disable=True) as bar:
        bar.update(2)
    assert quiet.getvalue() == ""
