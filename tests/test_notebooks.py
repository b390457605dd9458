"""Execute every tutorial notebook end to end (slow: they load a real built-in model).

Each notebook runs in a fresh kernel whose interpreter is *this* Python (``sys.executable``),
so it sees the same virtualenv and the editable ``steering`` package as pytest does,
whatever ``python3`` kernelspecs the machine has. The kernelspec is written to a temporary
directory; the executed notebook is written to a temporary directory too, never into the repo.
"""

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600
PLOTLY_MIME = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A KernelSpecManager that only knows a ``python3`` kernel running ``sys.executable``."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = Path(write_kernel_spec(str(kernels / KERNEL_NAME)))
    argv = json.loads((spec_dir / "kernel.json").read_text())["argv"]
    assert argv[0] == sys.executable, argv
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, kernel_spec_manager, tmp_path):
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(path, as_version=4)
    # Record the kernel's interpreter in a probe cell appended to this in-memory copy.
    probe = nbformat.v4.new_code_cell("import sys; print(sys.executable, end='')")
    nb.cells.append(probe)

    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_spec_manager)
    client = nbclient.NotebookClient(
        nb,
        km=km,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(path.parent)}},  # run in the notebook's folder
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / path.name)  # executed copy, for inspection; never into the repo

    assert not _errors(nb), _errors(nb)
    printed = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.get("output_type") == "stream")
    assert Path(printed) == Path(sys.executable), f"kernel ran {printed!r}, pytest runs {sys.executable!r}"
    if path.name == "01_quickstart.ipynb":
        assert _plotly_outputs(nb), "the quickstart should display at least one Plotly figure"
