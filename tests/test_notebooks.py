"""Every notebook in notebooks/ runs from top to bottom without an error.

Each notebook executes in a fresh kernel with its own folder as the working directory (as when
opened in Jupyter). Notebooks are committed without outputs; executing them here leaves the files
untouched.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# The inline backend renders with Agg into the cell outputs: headless, and every figure is really
# drawn, so drawing errors surface here. Overriding MPLBACKEND also keeps a desktop backend set
# in the developer's environment (QtAgg, TkAgg...) from being tried on a machine with no display.
HEADLESS_BACKEND = "module://matplotlib_inline.backend_inline"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.mark.slow  # about 50 s for the five: CI runs them, the working loop (-m "not slow") does not
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", HEADLESS_BACKEND)  # the kernel inherits this environment
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        # The message shows the failing cell's source and the kernel's traceback (uncoloured).
        pytest.fail(f"{path.name}: a cell raised\n{ANSI_ESCAPE.sub('', str(exc))}", pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear them before committing (jupyter nbconvert --clear-output --inplace)"
