"""The one-page HTML report: sections of text, figures and tables in one self-contained file.

The page works offline: plotly.js is embedded once, from the installed ``plotly`` package, and
nothing is fetched from the network. A small inline script records JavaScript errors in
``<pre id="steering-js-errors">`` (shown only when it has content) and, once every figure is
drawn, sets ``document.body.dataset.rendered`` to the number of figures that rendered, so a
headless browser can check the page.

Example:
    >>> import pathlib, tempfile
    >>> import pandas as pd
    >>> import plotly.graph_objects as go
    >>> from steering.report import ReportSection, write_report
    >>> sections = [ReportSection("Norms", "Bars per position.", figure=go.Figure(go.Bar(y=[1, 2]))),
    ...             ReportSection("Numbers", table=pd.DataFrame({"layer": [6], "effect": [1.25]}))]
    >>> out = write_report(pathlib.Path(tempfile.mkdtemp()) / "report.html", sections, meta={"model": "tiny"})
    >>> page = out.read_text(encoding="utf-8")
    >>> page.count('class="steering-figure"'), '<td class="num">1.25</td>' in page
    (1, True)
"""

import dataclasses
import datetime
import html
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Optional, Union

from .. import __version__
from ..errors import InvalidArgumentError
from ..files import as_path, check_writable_target, file_errors, write_text_atomic

__all__ = ["ReportSection", "write_report", "render_html"]


@dataclasses.dataclass
class ReportSection:
    """One section of the report: a heading, then text, a figure and a table (each optional).

    Attributes:
        title: The section heading (also its entry in the table of contents).
        text: Plain text; blank lines separate paragraphs. It is escaped, never read as HTML.
        figure: A ``plotly.graph_objects.Figure``, or ``None``.
        table: A ``pandas.DataFrame`` shown as an HTML table (values escaped), or ``None``.
        max_rows: At most this many table rows are shown (the page says how many were left out).

    Example:
        >>> import plotly.graph_objects as go
        >>> section = ReportSection("Effect sizes", "Cohen's d per layer.", figure=go.Figure())
        >>> section.max_rows
        20
    """

    title: str
    text: str = ""
    figure: Optional[Any] = None
    table: Optional[Any] = None
    max_rows: int = 20

    def __post_init__(self) -> None:
        if self.figure is not None:
            from plotly.basedatatypes import BaseFigure

            if not isinstance(self.figure, BaseFigure):
                raise InvalidArgumentError(
                    f"ReportSection {self.title!r}: figure must be a plotly Figure or None, got "
                    f"{type(self.figure).__name__}. Fix: pass e.g. st.norm_figure(table)."
                )
        if self.table is not None and not (hasattr(self.table, "columns") and hasattr(self.table, "itertuples")):
            raise InvalidArgumentError(
                f"ReportSection {self.title!r}: table must be a pandas DataFrame or None, got "
                f"{type(self.table).__name__}. Fix: wrap it with pandas.DataFrame(...)."
            )
        if isinstance(self.max_rows, bool) or self.max_rows < 1:
            raise InvalidArgumentError(
                f"ReportSection {self.title!r}: max_rows must be a positive int, got {self.max_rows!r}."
            )


def write_report(
    path: Union[str, os.PathLike],
    sections: Any,
    title: str = "steering-lens report",
    meta: Any = None,
) -> pathlib.Path:
    """Write the sections as one self-contained HTML page (atomically: no partial file on error).

    Args:
        path: Where to write the page; missing parent folders are created, an existing file is replaced.
        sections: A list of :class:`ReportSection`, in page order.
        title: The page title and top heading.
        meta: A mapping shown in the "Settings" block (model, vector, coefficients, …). The time the
            page was written and the steering-lens version are added unless given.

    Returns:
        The path written, as a ``pathlib.Path``.

    Raises:
        InvalidArgumentError: ``sections`` is not a list of :class:`ReportSection`, ``meta`` is not a
            mapping, or ``path`` is not a str / ``os.PathLike`` or is a folder.
        FileAccessError: the operating system refused the write (permission denied, no space left,
            read-only file system, name too long, not a regular file); an older page is left as it was.

    Example:
        >>> import pathlib, tempfile
        >>> out = write_report(pathlib.Path(tempfile.mkdtemp()) / "r.html", [ReportSection("Notes", "a\\n\\nb")])
        >>> page = out.read_text(encoding="utf-8")
        >>> "<p>a</p>" in page and "<p>b</p>" in page and "https://cdn" not in page
        True
    """
    page = render_html(sections, title=title, meta=meta)
    target = as_path(path, "report page")
    with file_errors(target.parent, "write", "folder"):
        target.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(target, "report page")  # a folder, permission, read-only disk, name length, not a pipe
    return write_text_atomic(target, page)


# ---------------------------------------------------------------------------------------------
# Rendering

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav.toc ol { padding-left: 1.4em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.meta th { width: 12em; }
.caption { color: #666; font-size: 0.85em; }
.steering-figure { overflow-x: auto; margin: 0.8em 0; }
#steering-js-errors { background: #fde8e8; color: #8a1c1c; padding: 0.6em; white-space: pre-wrap; }
#steering-js-errors:empty { display: none; }
"""

# Runs first: records every error and unhandled promise rejection in <pre id="steering-js-errors">.
_ERROR_SCRIPT = """
(function () {
  var pending = [];
  function record(message) {
    var pre = document.getElementById("steering-js-errors");
    if (!pre) { pending.push(String(message)); return; }
    pre.textContent += String(message) + "\\n";
  }
  window.steeringRecordError = record;
  window.onerror = function (message, source, line, column) {
    record("error: " + message + " (" + (source || "page") + ":" + line + ":" + column + ")");
  };
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    record("unhandled rejection: " + (reason && reason.stack ? reason.stack : reason));
  });
  document.addEventListener("DOMContentLoaded", function () {
    var queued = pending; pending = [];
    queued.forEach(record);
  });
})();
"""

# Runs last: draws every figure from its JSON spec, then publishes how many rendered.
_DRAW_SCRIPT = """
(function () {
  var record = window.steeringRecordError;
  var config = %s;
  var divs = Array.prototype.slice.call(document.querySelectorAll("div.steering-figure"));
  var jobs = divs.map(function (div) {
    try {
      var spec = JSON.parse(document.getElementById(div.id + "-spec").textContent);
      return Promise.resolve(Plotly.newPlot(div, spec.data, spec.layout, config)).then(
        function () { return true; },
        function (err) { record("figure " + div.id + ": " + err); return false; }
      );
    } catch (err) {
      record("figure " + div.id + ": " + err);
      return Promise.resolve(false);
    }
  });
  Promise.all(jobs).then(function () {
    var rendered = divs.filter(function (div) {
      return div.classList.contains("js-plotly-plot") && div.querySelector(".main-svg") !== null;
    });
    document.body.dataset.rendered = String(rendered.length);
    if (rendered.length < divs.length) {
      record((divs.length - rendered.length) + " of " + divs.length + " figure(s) did not render");
    }
  });
})();
"""

_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def _script(code: str, **attributes: str) -> str:
    attrs = "".join(f' {name}="{html.escape(value)}"' for name, value in attributes.items())
    return f"<script{attrs}>{code}</script>"


def _json_for_script(value: str) -> str:
    """JSON text safe inside a <script> element: no ``</script>`` or ``<!--`` can appear."""
    return value.replace("<", "\\u003c")


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in parts)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, (int, float)) or type(value).__module__ == "numpy":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"<td>{html.escape(str(value))}</td>"
        if number != number:
            return '<td class="num"></td>'
        text = str(int(number)) if number.is_integer() and abs(number) < 1e15 else f"{number:.4g}"
        return f'<td class="num">{text}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _html_table(table: Any, max_rows: int) -> str:
    shown = table.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in shown.itertuples(index=False, name=None)
    )
    note = ""
    if len(table) > max_rows:
        note = f'<p class="caption">First {max_rows} of {len(table)} rows.</p>'
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}'


def _meta_table(meta: Any) -> str:
    items = dict(meta or {})
    items.setdefault("generated", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    items.setdefault("steering-lens", __version__)
    rows = []
    for key, value in items.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(text)}</td></tr>")
    return f'<table class="meta">{"".join(rows)}</table>'


def _check_page_args(sections: Any, meta: Any) -> list:
    """``sections`` as a list, after checking it and ``meta``."""
    if isinstance(sections, (str, bytes)) or not hasattr(sections, "__iter__"):
        raise InvalidArgumentError(
            f"write_report: sections must be a list of ReportSection, got {type(sections).__name__}. "
            "Fix: pass [ReportSection('Title', text, figure=fig), ...]."
        )
    sections = list(sections)
    wrong = [type(s).__name__ for s in sections if not isinstance(s, ReportSection)]
    if wrong:
        raise InvalidArgumentError(
            f"write_report: every section must be a ReportSection; got {wrong}. "
            "Fix: wrap each part as ReportSection(title, text=..., figure=..., table=...)."
        )
    if meta is not None and not isinstance(meta, Mapping):
        raise InvalidArgumentError(
            f"write_report: meta must be a mapping (e.g. a dict) or None, got {type(meta).__name__}. "
            "Fix: pass meta={'model': 'gemma3-270m', ...}."
        )
    return sections


def _section_html(i: int, section: ReportSection, fig_id: Optional[str]) -> str:
    """One ``<section>``: heading, paragraphs, the figure's div and JSON spec, the table."""
    parts = [f'<section id="section-{i}"><h2>{html.escape(section.title)}</h2>', _paragraphs(section.text)]
    if section.figure is not None:
        parts.append(f'<div class="steering-figure" id="{fig_id}"></div>')
        parts.append(_script(_json_for_script(section.figure.to_json()), type="application/json", id=f"{fig_id}-spec"))
    if section.table is not None:
        parts.append(_html_table(section.table, section.max_rows))
    parts.append("</section>")
    return "".join(parts)


def render_html(sections: Any, title: str = "steering-lens report", meta: Any = None,
                extra_scripts: tuple = ()) -> str:
    """The page :func:`write_report` writes, as a string.

    Args:
        sections: A list of :class:`ReportSection`, in page order.
        title: The page title and top heading.
        meta: A mapping shown in the "Settings" block, or ``None``.
        extra_scripts: Inline scripts appended at the end of the page (for tests that check the
            page's error capture with a failing script).

    Returns:
        The HTML text.

    Raises:
        InvalidArgumentError: As :func:`write_report`.

    Example:
        >>> page = render_html([ReportSection("Notes", "hello")], title="Mine")
        >>> "<title>Mine</title>" in page, '<pre id="steering-js-errors"></pre>' in page
        (True, True)
    """
    sections = _check_page_args(sections, meta)
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        _script(_ERROR_SCRIPT),
    ]
    if any(s.figure is not None for s in sections):
        from plotly.offline import get_plotlyjs

        head.append(_script(get_plotlyjs()))
    toc = "".join(
        f'<li><a href="#section-{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections, start=1)
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        '<pre id="steering-js-errors"></pre>',
        f"<h2>Settings</h2>{_meta_table(meta)}",
    ]
    if sections:
        body.append(f'<nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav>')
    n_figure = 0
    for i, section in enumerate(sections, start=1):
        fig_id = None
        if section.figure is not None:
            n_figure += 1
            fig_id = f"steering-figure-{n_figure}"
        body.append(_section_html(i, section, fig_id))
    body.append(_script(_DRAW_SCRIPT % json.dumps(_PLOTLY_CONFIG)))
    body.extend(_script(code) for code in extra_scripts)
    return (
        "<!doctype html>\n<html lang=\"en\"><head>" + "".join(head) + "</head>\n<body>"
        + "\n".join(body) + "</body></html>\n"
    )
