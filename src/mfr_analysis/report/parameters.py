"""The report notebooks check the parameters papermill gave them, as the report runner does.

Run through ``papermill`` directly, a notebook given ``-p slice_valu athlete`` only gets a
warning from papermill (#818) and would render an all-clients report. Each report notebook
therefore calls :func:`check_parameters` in the cell after its parameters: papermill has by
then run the notebook's ``parameters`` cell and, right after it, the cell it injected
(``# Parameters`` then one assignment per ``-p``). Both are in the kernel's input history, so
the check compares exactly the injected names with the declared ones, read by papermill's
own parser (the one behind ``papermill --help-notebook``). Opened in JupyterLab, nothing is
injected and nothing is checked.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping, Sequence

from mfr_analysis.errors import InputError

INJECTED_MARK = "# Parameters"  # first line of the cell papermill injects
PAPERMILL_NAMES = frozenset({"PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH"})  # --inject-*


def declared_parameters(source: str) -> list[str]:
    """Names a ``parameters`` cell declares, as ``papermill --help-notebook`` lists them."""
    import nbformat
    from papermill.translators import PythonTranslator

    cell = nbformat.v4.new_code_cell(source)
    return [parameter.name for parameter in PythonTranslator.inspect(cell)]


def assigned_names(source: str) -> list[str]:
    """Names a cell of plain assignments binds, in order (papermill's injected cell)."""
    names: list[str] = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [
            node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def unknown_parameters(history: Sequence[str]) -> tuple[list[str], list[str]]:
    """(injected names the notebook does not declare, declared names) from the kernel's input
    history: the last cell papermill injected and the ``parameters`` cell run before it.
    Nothing injected: nothing unknown."""
    cells = [str(cell) for cell in history]
    injected = [i for i, cell in enumerate(cells) if cell.lstrip().startswith(INJECTED_MARK)]
    if not injected:
        return [], []
    at = injected[-1]
    declared = declared_parameters(cells[at - 1]) if at > 0 else []
    unknown = [name for name in assigned_names(cells[at])
               if name not in declared and name not in PAPERMILL_NAMES]
    return unknown, declared


def check_parameters(namespace: Mapping[str, object]) -> None:
    """Stop the run, naming each parameter papermill injected that this notebook does not
    declare (with the closest declared name); call it with ``globals()``.

    Raises
    ------
    InputError
        One line, e.g. ``unknown parameter slice_valu (did you mean slice_value?); this
        notebook's parameters: alpha, ...``.
    """
    unknown, declared = unknown_parameters(list(namespace.get("In") or []))
    if not unknown:
        return
    words = []
    for name in unknown:
        close = difflib.get_close_matches(name, declared, n=1)
        words.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise InputError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(words)}; "
                     f"this notebook's parameters: {', '.join(declared) or 'none'}")
