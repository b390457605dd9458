"""HTML reports: the page writer and the standard analysis report.

* :mod:`steering.report.page` — :class:`ReportSection`, :func:`write_report` and
  :func:`render_html`: sections of text, figures and tables as one self-contained page
  (re-exported here);
* :mod:`steering.report.standard` — :func:`~steering.report.standard.analysis_report`, the
  standard analysis of a prompt pair behind ``steer report`` (import it from there; it pulls in
  the model-running API, which this package's import does not).

Example:
    >>> import pathlib, tempfile
    >>> from steering.report import ReportSection, write_report
    >>> out = write_report(pathlib.Path(tempfile.mkdtemp()) / "r.html", [ReportSection("Notes", "hello")])
    >>> "<p>hello</p>" in out.read_text(encoding="utf-8")
    True
"""

from .page import ReportSection, render_html, write_report

__all__ = ["ReportSection", "write_report", "render_html"]
