"""Build support for the documentation site: MkDocs hooks, and the notebook runner the tests share.

``mkdocs.yml`` loads this file as a hook module. During a build it

- writes the API reference page (``reference.md``) from ``steering.__all__``: one ``:::`` entry per
  public name, pointing at the module that defines it (``steering/__init__.py`` exports lazily
  through ``__getattr__``, which static analysis cannot follow), so a name added to ``__all__``
  appears without editing any page;
- adds every notebook of ``notebooks/`` as the page ``notebooks/NAME.ipynb``, rendered from its
  executed copy in ``build/executed-notebooks/`` (``tests/test_notebooks.py`` writes those copies;
  a copy that is missing, or stale because its notebook changed since, is executed here first);
- makes Plotly figures work offline: each figure is re-rendered from its JSON as a plain
  ``Plotly.newPlot`` call, and notebook pages load the ``plotly.min.js`` shipped with the installed
  ``plotly`` package (copied into the site) instead of the CDN;
- drops tqdm's "IProgress not found" warning, replaces a live widget's output (which has no state on a
  static page) by a note, and renders a code cell that is collapsed in Jupyter
  (``"jupyter": {"source_hidden": true}``, e.g. an exercise's solution) as a closed ``<details>`` block;
- puts the notebook as stored (no outputs) behind each notebook page's download link;
- adds the explorable page of ``docs/explore.md`` (Gemma-3-270M, " weddings" − "", a small greedy grid)
  as ``explore/weddings.html``, loading the site's own plotly.js; its grid is computed only when its
  settings or the explorer's computing modules changed (kept in ``build/explorables/``).

Command line: ``python tools/docs_site.py execute [NAME ...]`` executes notebooks into
``build/executed-notebooks/`` (all of them by default); ``python tools/docs_site.py explorable``
writes the explorable page into ``build/site-src/explore/``.
"""

import ast
import copy
import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXECUTED_DIR = ROOT / "build" / "executed-notebooks"
SITE_SRC_DIR = ROOT / "build" / "site-src"  # holds notebooks/NAME.ipynb: executed copies as the site renders them
REFERENCE_PAGE = "reference.md"
PLOTLY_JS = "assets/javascripts/plotly.min.js"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p><em>(An interactive widget appears here when the notebook runs in Jupyter. The "
               '<a href="../../explore/">Explore</a> page has sliders that work in the browser.)</em></p>')
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600
META_KEY = "steering_docs"  # executed copies record their source digest and run time here
EXPLORABLE_PAGE = "explore/weddings.html"
EXPLORABLE_CACHE = ROOT / "build" / "explorables" / "weddings.json"
#: The docs site's explorable: small (4 layers × 4 coefficients × 2 prompts, greedy), so the page stays small.
DOCS_EXPLORABLE = {
    "model": "gemma3-270m", "pos": " weddings", "neg": "", "layers": [2, 6, 10, 14], "coeffs": [0, 4, 8, 16],
    "prompts": ["I went up to my friend and said", "The best part of the day was"], "decoding": "greedy",
    "max_new_tokens": 20,
    "topic_words": ["wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon"],
}

log = logging.getLogger("mkdocs.hooks.docs_site")


# --------------------------------------------------------------------------- executing notebooks


@dataclass
class ExecutedNotebook:
    """One execution: the executed notebook (without the probe cell), where it was written,
    the interpreter the kernel ran and the wall time."""

    nb: Any
    path: Path
    kernel_python: str
    seconds: float


def notebooks() -> list[Path]:
    """The tutorial notebooks, in name order."""
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def source_digest(path: Path) -> str:
    """SHA-256 of a notebook's source file: an executed copy is fresh while this matches."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def executed_path(path: Path, out_dir: Path = EXECUTED_DIR) -> Path:
    return Path(out_dir) / Path(path).name


def is_fresh(path: Path, out_dir: Path = EXECUTED_DIR) -> bool:
    """Whether ``out_dir`` holds an executed copy of this exact version of the notebook."""
    copy_path = executed_path(path, out_dir)
    if not copy_path.is_file():
        return False
    try:
        meta = json.loads(copy_path.read_text(encoding="utf-8"))["metadata"].get(META_KEY, {})
    except (OSError, ValueError, KeyError):
        return False
    return meta.get("source_sha256") == source_digest(path)


def _kernel_spec_manager(kernel_dir: Path) -> Any:
    """A KernelSpecManager that only knows a ``python3`` kernel running ``sys.executable``, so the
    notebook sees this virtualenv whatever kernelspecs the machine has."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    write_kernel_spec(str(kernel_dir / KERNEL_NAME))
    return KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)


def execute_notebook(path: Path, out_dir: Path = EXECUTED_DIR, timeout: int = CELL_TIMEOUT_S) -> ExecutedNotebook:
    """Execute ``path`` in a fresh kernel (this interpreter), in the notebook's folder, and write
    the executed copy to ``out_dir/NAME.ipynb``.

    The copy records the source's SHA-256 (see :func:`is_fresh`) only when every cell ran; a cell
    error raises ``nbclient.exceptions.CellExecutionError`` after the partial copy is written,
    for inspection.
    """
    import nbclient
    import nbformat
    from jupyter_client.manager import KernelManager

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    # A probe cell records the kernel's interpreter; it is removed before the copy is written.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable, end='')"))
    out = executed_path(path, out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ok = False
    with tempfile.TemporaryDirectory(prefix="steering-kernels-") as kernels:
        km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_kernel_spec_manager(Path(kernels)))
        client = nbclient.NotebookClient(
            nb, km=km, kernel_name=KERNEL_NAME, timeout=timeout,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
            ok = True
        finally:
            seconds = time.perf_counter() - start
            if km.has_kernel:  # nbclient leaves a kernel it did not start running (~2 GB each with a model)
                km.shutdown_kernel(now=True)
            probe = nb.cells.pop()
            kernel_python = "".join(
                o.get("text", "") for o in probe.get("outputs", []) if o.get("output_type") == "stream"
            )
            if ok:
                nb.metadata[META_KEY] = {"source_sha256": source_digest(path), "seconds": round(seconds, 1)}
            nbformat.write(nb, out)
    return ExecutedNotebook(nb=nb, path=out, kernel_python=kernel_python, seconds=seconds)


def ensure_executed(paths: Optional[list[Path]] = None, out_dir: Path = EXECUTED_DIR) -> list[Path]:
    """Execute each notebook whose executed copy is missing or stale; return the copies' paths."""
    copies = []
    for path in notebooks() if paths is None else paths:
        if not is_fresh(path, out_dir):
            log.info("executing %s (no fresh copy in %s)", path.name, out_dir)
            execute_notebook(path, out_dir)
        copies.append(executed_path(path, out_dir))
    return copies


# --------------------------------------------------------------------------- preparing copies for the site


def _figure_html(fig_json: Any) -> str:
    """A Plotly figure as a ``<div>`` plus an inline ``Plotly.newPlot`` call (plotly.js not included)."""
    import plotly.io as pio

    fig = pio.from_json(json.dumps(fig_json), skip_invalid=True)
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, default_width="100%", default_height=480)


def _loads_plotly_only(html: str) -> bool:
    """An output that only loads plotly.js (the ``notebook_connected`` renderer's set-up output)."""
    return "cdn.plot.ly" in html and "plotly-graph-div" not in html


# Links that work in the repository (Jupyter, GitHub) and their page URLs in the site, where a
# notebook's page is notebooks/NAME/ (use_directory_urls).
_DOC_LINK = re.compile(r"\]\(\.\./docs/([\w\-/]+)\.md(#[^)]*)?\)")
_NB_LINK = re.compile(r"\]\(([\w\-]+)\.ipynb(#[^)]*)?\)")


def site_links(markdown: str) -> str:
    """Rewrite ``../docs/PAGE.md`` and ``NAME.ipynb`` links in a notebook's markdown to site URLs."""
    markdown = _DOC_LINK.sub(lambda m: f"](../../{m.group(1)}/{m.group(2) or ''})", markdown)
    return _NB_LINK.sub(lambda m: f"](../{m.group(1)}/{m.group(2) or ''})", markdown)


def site_notebook(nb: Any) -> Any:
    """A copy of an executed notebook prepared for the site (see the module docstring)."""
    import nbformat

    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = site_links(cell.source)
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                data["text/html"] = _figure_html(data[PLOTLY_MIME])
                del data[PLOTLY_MIME]
            elif _loads_plotly_only(str(data.get("text/html", ""))):
                continue
            elif output.get("name") == "stderr" and "TqdmWarning: IProgress not found" in output.get("text", ""):
                continue  # tqdm.auto in a kernel without ipywidgets: noise on a page
            elif WIDGET_MIME in data:  # a live widget has no state on a static page: say so
                output["data"] = {"text/html": WIDGET_NOTE}
            outputs.append(output)
        cell.outputs = outputs
        if cell.metadata.get("jupyter", {}).get("source_hidden"):
            # Collapsed in Jupyter (an exercise's solution): a closed <details> with the code, no outputs.
            cells.append(nbformat.v4.new_markdown_cell(
                "<details><summary>Show the solution</summary>\n\n```python\n"
                + cell.source.rstrip()
                + "\n```\n\n</details>"
            ))
            continue
        cells.append(cell)
    nb.cells = cells
    return nb


# --------------------------------------------------------------------------- the explorable page


def _explorable_digest() -> str:
    """What the docs explorable's numbers depend on: its settings and the explorer's computing modules."""
    h = hashlib.sha256(json.dumps(DOCS_EXPLORABLE, sort_keys=True).encode())
    for name in ("grid.py", "measures.py"):
        h.update((ROOT / "steering" / "explorer" / name).read_bytes())
    return h.hexdigest()


def write_docs_explorable(out_dir: Path = SITE_SRC_DIR, model: Any = None, cache: Optional[Path] = EXPLORABLE_CACHE) -> Path:
    """Write the docs site's explorable page to ``out_dir/explore/weddings.html``; return its path.

    The grid is read from ``cache`` when that holds this version's (see :func:`_explorable_digest`),
    else computed on ``model`` (default: the built-in Gemma-3-270M) and stored there (``cache=None``:
    always computed, nothing stored). The page loads plotly.js from the site (``PLOTLY_JS``).
    """
    from steering.explorer import explore_grid, write_explorable

    digest = _explorable_digest()
    data = None
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text(encoding="utf-8"))
        data = stored.get("data") if stored.get("digest") == digest else None
    if data is None:
        import steering as st

        s = DOCS_EXPLORABLE
        model = st.load_model(s["model"]) if model is None else model
        data = explore_grid(model, s["pos"], s["neg"], s["prompts"], layers=s["layers"], coeffs=s["coeffs"],
                            decoding=s["decoding"], max_new_tokens=s["max_new_tokens"], topic_words=s["topic_words"],
                            progress=False)
        data["settings"]["model"] = s["model"]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"digest": digest, "data": data}, ensure_ascii=False), encoding="utf-8")
    depth = EXPLORABLE_PAGE.count("/")
    return write_explorable(Path(out_dir) / EXPLORABLE_PAGE, data, plotly_src="../" * depth + PLOTLY_JS,
                            title="Explore the weddings vector on Gemma-3-270M")


# --------------------------------------------------------------------------- the API reference page


def _module_summary(module: str) -> str:
    """First line of a steering module's docstring, read without importing it (torch stays unloaded)."""
    rel = module.split(".")[1:]
    path = ROOT.joinpath("steering", *rel).with_suffix(".py") if rel else ROOT / "steering" / "__init__.py"
    if not path.exists():  # a subpackage: its __init__.py
        path = ROOT.joinpath("steering", *rel, "__init__.py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def public_names() -> list[tuple[str, str]]:
    """``(name, defining module)`` for every name of ``steering.__all__``, in ``__all__`` order."""
    import steering

    pairs = []
    for name in steering.__all__:
        pairs.append((name, f"steering.{steering.PUBLIC_API[name]}"))
    return pairs


def reference_markdown() -> str:
    """The API reference page: one section per defining module, one ``:::`` entry per public name."""
    groups: dict[str, list[str]] = {}
    for name, module in public_names():
        groups.setdefault(module, []).append(name)
    lines = [
        "# API reference",
        "",
        "Everything public is exported flat from `steering` (`import steering as st`); each entry below",
        "is one name of `steering.__all__`, shown as `st.NAME` and grouped by the module that defines it.",
        "This page is generated from `steering.__all__` when the site is built.",
        "",
    ]
    for module, names in groups.items():
        summary = _module_summary(module)
        lines += [f"## `{module}`", "", summary, ""] if summary else [f"## `{module}`", ""]
        for name in names:
            lines += [
                f"::: {module}.{name}",
                "    options:",
                f'      heading: "st.{name}"',
                f'      toc_label: "st.{name}"',
                "",
            ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- MkDocs hooks


def _add(files: Any, file: Any) -> None:
    existing = files.get_file_from_path(file.src_uri)
    if existing is not None:
        files.remove(existing)
    files.append(file)


try:  # event_priority: our files must exist before mkdocs-jupyter's on_files claims the notebooks
    from mkdocs.plugins import event_priority
except ImportError:  # pragma: no cover - outside MkDocs
    def event_priority(priority: int):  # type: ignore[no-redef]
        return lambda fn: fn


@event_priority(100)
def on_files(files: Any, config: Any) -> Any:
    import nbformat
    import plotly
    from mkdocs.structure.files import File

    _add(files, File.generated(config, REFERENCE_PAGE, content=reference_markdown()))
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    _add(files, File.generated(config, PLOTLY_JS, abs_src_path=str(plotly_js)))

    # Real files under SITE_SRC_DIR, not File.generated: mkdocs-jupyter wraps notebook files in an
    # object that finds the source through src_dir.
    (SITE_SRC_DIR / "notebooks").mkdir(parents=True, exist_ok=True)
    for executed in ensure_executed():
        src_uri = f"notebooks/{executed.name}"
        nbformat.write(site_notebook(nbformat.read(executed, as_version=4)), SITE_SRC_DIR / src_uri)
        _add(files, File(src_uri, str(SITE_SRC_DIR), config["site_dir"], config["use_directory_urls"]))
    write_docs_explorable()
    _add(files, File(EXPLORABLE_PAGE, str(SITE_SRC_DIR), config["site_dir"], config["use_directory_urls"]))
    return files


def on_post_build(config: Any) -> None:
    """The download link of a notebook page (mkdocs-jupyter's ``include_source``) gets the notebook
    as stored in the repository, not the copy prepared for the page."""
    for path in notebooks():
        target = Path(config["site_dir"]) / "notebooks" / path.stem / path.name
        if target.parent.is_dir():
            shutil.copyfile(path, target)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Load plotly.js (synchronously, before the figures' inline scripts) on pages that draw figures."""
    if "plotly-graph-div" not in html:
        return html
    from mkdocs.utils import get_relative_url

    src = get_relative_url(PLOTLY_JS, page.url)
    return f'<script src="{src}"></script>\n' + html


# --------------------------------------------------------------------------- command line


def main(argv: list[str]) -> int:
    if argv[:1] == ["explorable"]:
        print(write_docs_explorable())
        return 0
    if not argv or argv[0] != "execute":
        print(__doc__.split("Command line:")[1].strip(), file=sys.stderr)
        return 2
    wanted = set(argv[1:])
    for path in notebooks():
        if wanted and path.name not in wanted and path.stem not in wanted:
            continue
        result = execute_notebook(path)
        print(f"{path.name}: {result.seconds:.1f} s -> {result.path}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
