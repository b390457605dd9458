"""The documentation site builds with ``mkdocs build --strict`` and shows what it should.

The notebook pages are rendered from the executed copies that ``tests/test_notebooks.py`` (which
pytest runs before this file) leaves in ``build/executed-notebooks/``; a copy that is missing or
stale (this file run alone, or a notebook edited since) is executed first, with the same runner.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocs_jupyter")
pytest.importorskip("mkdocstrings_handlers.python")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import docs_site  # noqa: E402  (tools/ is not a package)

pytestmark = pytest.mark.slow  # the notebook pages need executed notebooks (real models)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    docs_site.ensure_executed()
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about MkDocs 2.0
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    print(f"mkdocs build --strict: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]
    return out


def _page(site: Path, url: str) -> str:
    path = site / url / "index.html"
    assert path.is_file(), f"{url} was not built ({path} missing)"
    return path.read_text(encoding="utf-8")


def test_reference_shows_every_public_name(site):
    import steering as st

    html = _page(site, "reference")
    missing = []
    for name, module in docs_site.public_names():
        if f'id="{module}.{name}"' not in html or f"st.{name}" not in html:
            missing.append(name)
    assert not missing, f"the API reference lacks {missing}"
    assert {name for name, _ in docs_site.public_names()} == set(st.__all__)


def test_reference_renders_docstrings(site):
    html = _page(site, "reference")
    # Google-style sections, parsed rather than left as text ("Example:" is read as "Examples:")
    for section in ["Parameters:", "Returns:", "Raises:", "Examples:"]:
        assert section in html, f"no {section} section in the API reference"
    assert "<blockquote>" not in html, "doctest lines were rendered as Markdown quotes"


@pytest.mark.parametrize("path", docs_site.notebooks(), ids=lambda p: p.name)
def test_notebook_page_shows_executed_outputs(site, path):
    html = _page(site, f"notebooks/{path.stem}")
    assert "jp-OutputArea-output" in html, f"{path.name}: the page has no outputs"
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html, f"{path.name}: no Plotly figure"
    # plotly.js comes from the site itself, before the figures' inline scripts; nothing from a CDN
    match = re.search(r'<script src="([^"]*assets/javascripts/plotly\.min\.js)"></script>', html)
    assert match, f"{path.name}: plotly.js is not loaded"
    assert html.index(match.group(0)) < html.index("Plotly.newPlot")
    assert (site / "assets" / "javascripts" / "plotly.min.js").stat().st_size > 1_000_000
    assert "cdn.plot.ly" not in html


def test_hidden_solution_is_collapsed(site):
    html = _page(site, "notebooks/teaching_demo")
    assert re.search(r"<details>\s*<summary>Show the solution</summary>", html)


def test_pages_from_the_nav_exist(site):
    for url in ["getting-started", "concepts", "sweep", "side-effects", "export", "own-model", "methods"]:
        _page(site, url)
    assert (site / "index.html").is_file()


def test_explorable_page_works_on_the_built_site(site, tmp_path):
    """docs/explore.md's embedded page: complete data, the site's own plotly.js, and it shows records in Chromium."""
    import shutil

    from steering.explorer import read_explorable

    page = site / docs_site.EXPLORABLE_PAGE
    assert page.is_file(), f"{docs_site.EXPLORABLE_PAGE} was not built"
    data = read_explorable(page)  # refuses an incomplete grid
    s = docs_site.DOCS_EXPLORABLE
    assert len(data["records"]) == len(s["layers"]) * len(s["coeffs"]) * len(s["prompts"])
    assert 'src="weddings.html"' in _page(site, "explore")
    src = re.search(r'<script src="([^"]+)"', page.read_text(encoding="utf-8")).group(1)
    assert not src.startswith("http") and (page.parent / src).resolve().is_file(), src
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium not found")
    layer, coeff = s["layers"][-1], s["coeffs"][-1]
    proc = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                           page.resolve().as_uri() + f"#layer={layer}&coeff={coeff}"],
                          capture_output=True, text=True, timeout=180)
    body = re.search(r"<body([^>]*)>", proc.stdout).group(1)
    assert 'data-state="ready"' in body and f'data-layer="{layer}"' in body, body
    shown = re.findall(r'<td class="completion steered" data-layer="[^"]+" data-coeff="[^"]+" data-prompt-index="\d+" '
                       r'data-sample="\d+" data-decoding="[^"]+">(.*?)</td>', proc.stdout, re.S)
    import html

    expected = [r["completion"] for r in data["records"] if r["layer"] == layer and r["coeff"] == coeff]
    assert sorted(html.unescape(t) for t in shown) == sorted(expected)
