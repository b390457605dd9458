"""Griffe extension for the API reference: read a Google-style ``Example:`` section as ``Examples:``.

steering's docstrings head their doctests ``Example:`` (singular, as the Google style guide and
Sphinx-Napoleon allow). Griffe's Google parser only knows ``Examples:`` and would render the
singular form as an admonition of plain Markdown, with the ``>>>`` lines as quotes. This renames
the heading while the docstrings are read; the sources are not touched.
"""

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class GoogleExampleSections(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
