"""Every notebook in notebooks/ runs from top to bottom without an error.

Each notebook executes in a fresh kernel with its own folder as the working directory (as when
opened in Jupyter); executing them here leaves the files untouched. Notebooks are committed with
their outputs, so that they read well on a website without running: every code cell executed,
no error, and small figures (drawn at 60 dpi: ``MATPLOTLIBRC`` naming a matplotlibrc with
``figure.dpi: 60`` when executing them for a commit).
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


MAX_NOTEBOOK_BYTES = 400_000
MAX_IMAGE_BYTES = 80_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_committed_with_its_outputs_and_small_figures(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") is not None for cell in code), f"{path.name}: execute every cell before committing"
    assert any(cell.get("outputs") for cell in code), f"{path.name}: committed without its outputs"
    errors = [o for cell in code for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: a committed output is an error"
    images = [o["data"]["image/png"] for cell in code for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert all(len(image) * 3 // 4 < MAX_IMAGE_BYTES for image in images), f"{path.name}: a figure over {MAX_IMAGE_BYTES} bytes"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
