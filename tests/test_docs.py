"""The Python code blocks of README.md and docs/*.md run as written (on the real default model)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


def test_pages_have_python_examples():
    assert _blocks(ROOT / "README.md"), "README.md should show the API in a ```python block"
    assert _blocks(ROOT / "docs" / "index.md")


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(page, tmp_path):
    code = "\n\n".join(_blocks(page)) + "\nprint('BLOCKS-OK')\n"
    env = {**os.environ, "PLOTLY_RENDERER": "json"}  # fig.show() prints JSON instead of opening a browser
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{page.name} code failed:\n{proc.stderr[-3000:]}"
    assert proc.stdout.rstrip().endswith("BLOCKS-OK")


def test_every_public_name_is_in_the_api_reference():
    """The API reference page is generated from ``steering.__all__``: one entry per name, pointing
    at the module that defines it (``tests/test_site.py`` checks the built page)."""
    import importlib

    import steering as st

    sys.path.insert(0, str(ROOT / "tools"))
    import docs_site

    page = docs_site.reference_markdown()
    pairs = docs_site.public_names()
    assert [name for name, _ in pairs] == list(st.__all__)
    for name, module in pairs:
        assert f"::: {module}.{name}\n" in page, f"the API reference has no entry for {name}"
        assert getattr(importlib.import_module(module), name) is getattr(st, name), (name, module)


def test_every_public_name_has_a_docstring_with_an_example():
    import inspect

    import steering as st

    lacking = []
    for name in st.__all__:
        obj = getattr(st, name)
        if name.startswith("__") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        if issubclass(obj, Warning) if inspect.isclass(obj) else False:
            continue
        if inspect.isclass(obj) and issubclass(obj, Exception):
            if not doc:
                lacking.append(name)
            continue
        if ">>>" not in doc:
            lacking.append(name)
    assert not lacking, f"public names without a docstring example: {lacking}"


def test_home_page_api_table_lists_every_public_name():
    import steering

    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    missing = [name for name in steering.__all__ if f"`{name}`" not in text]
    assert not missing, f"docs/index.md's API table lacks {missing}"
