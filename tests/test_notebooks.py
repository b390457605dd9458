"""Execute every tutorial notebook end to end (slow: they load a real built-in model).

Each notebook runs in a fresh kernel whose interpreter is *this* Python (``sys.executable``),
so it sees the same virtualenv and the editable ``steering`` package as pytest does,
whatever ``python3`` kernelspecs the machine has. The runner is ``execute_notebook`` in
``tools/docs_site.py``, shared with the documentation site. The executed copies go to the
git-ignored ``build/executed-notebooks/``, never into ``notebooks/``; ``tests/test_site.py``
(which runs after this file) renders those copies into the site instead of executing the
notebooks a second time.
"""

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import docs_site  # noqa: E402  (tools/ is not a package)

NOTEBOOK_DIR = docs_site.NOTEBOOK_DIR
NOTEBOOKS = docs_site.notebooks()
PLOTLY_MIME = docs_site.PLOTLY_MIME
MAX_SECONDS = 180  # a guard against slow notebooks; they take 20-70 s on 2 CPU cores


def _plotly_outputs(nb) -> list:
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data or "plotly" in str(data.get("text/html", "")).lower():
                found.append(output)
    return found


def _errors(nb) -> list[str]:
    return [
        f"{out.get('ename')}: {out.get('evalue')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


def test_notebooks_stored_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name}: code cells {dirty} have stored outputs; clear them before committing"


def test_hidden_cells_are_explained():
    """A collapsed code cell (an exercise's solution) follows a markdown cell that says so."""
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            if cell.cell_type == "code" and cell.metadata.get("jupyter", {}).get("source_hidden"):
                assert i > 0 and cells[i - 1].cell_type == "markdown", f"{path.name}: hidden cell {i} unexplained"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path):
    result = docs_site.execute_notebook(path)  # raises on a cell error; the copy is written either way
    nb = result.nb

    assert not _errors(nb), _errors(nb)
    assert docs_site.is_fresh(path), f"{result.path} does not record {path.name}'s digest"
    assert Path(result.kernel_python) == Path(sys.executable), (
        f"kernel ran {result.kernel_python!r}, pytest runs {sys.executable!r}"
    )
    assert _plotly_outputs(nb), f"{path.name} should display at least one Plotly figure"
    assert result.seconds < MAX_SECONDS, f"{path.name} took {result.seconds:.0f} s (budget {MAX_SECONDS} s)"
    assert not _live_kernels(), "the notebook's kernel was left running"


def _live_kernels() -> list[int]:
    """Kernel processes started by this pytest process that are still alive (Linux /proc)."""
    import os

    alive = []
    proc = Path("/proc")
    if not proc.exists():
        return alive
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"ipykernel_launcher" in cmdline and ppid == os.getpid():
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.append(int(entry.name))
    return alive
