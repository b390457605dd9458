"""The HTML report: content, escaping, atomic writes, the standard report (``steer report``), and (in headless
Chromium) that every figure renders."""

import errno
import os
import re
import shutil
import subprocess
import threading
import types
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

import steering as st
import synthetic_tables as synth
from steering import plots
from steering.report import ReportSection, render_html, write_report
from steering.report.standard import analysis_report, default_targets


def all_figure_sections() -> list:
    """One section per figure function (seven figures) plus a text-and-table section without a figure."""
    figures = [
        ("Norm per position", plots.norm_figure(synth.norm_profile())),
        ("Norms across layers", plots.norm_layers_figure(synth.norm_layers())),
        ("Logit lens of the vector", plots.token_scores_figure(synth.token_scores("logit_lens"))),
        ("Log-prob shift", plots.token_scores_figure(synth.token_scores("logprob_shift", groups=((6, "mean"),)))),
        ("Readability per layer", plots.lens_rank_figure(synth.lens_ranks())),
        ("Effect sizes", plots.effect_heatmap(synth.effects())),
        ("Effect vs cost", plots.frontier_figure(synth.effects(), "sentiment")),
        ("Token view", plots.token_view_figure(synth.token_view(4))),
    ]
    sections = [ReportSection(title, f"About {title.lower()}.", figure=fig) for title, fig in figures]
    sections.append(ReportSection("Numbers <raw>", "One & two.\n\nThird <b>paragraph</b>.", table=synth.effects(),
                                  max_rows=3))
    return sections


N_FIGURES = 8


# ---------------------------------------------------------------------------------------------
# The page's content


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    out = write_report(path, all_figure_sections(), title="Test report", meta={"model": "tiny", "coeff": [2, 4]})
    assert out == path
    return path.read_text(encoding="utf-8")


def test_plotly_js_embedded_once_and_nothing_fetched(page):
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert page.count(bundle) == 1
    assert page.count(bundle[:300]) == 1
    rest = page.replace(bundle, "")
    assert "https://cdn" not in rest
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", rest, re.IGNORECASE)


def test_page_structure(page):
    assert page.count('<div class="steering-figure"') == N_FIGURES
    assert page.count('type="application/json"') == N_FIGURES
    assert '<pre id="steering-js-errors"></pre>' in page
    assert "<title>Test report</title>" in page
    toc = re.search(r'<nav class="toc">(.*?)</nav>', page, re.DOTALL).group(1)
    assert toc.count("<li>") == N_FIGURES + 1
    assert '<a href="#section-9">Numbers &lt;raw&gt;</a>' in toc
    assert 'id="section-9"' in page


def test_meta_block(page):
    meta = re.search(r'<table class="meta">(.*?)</table>', page, re.DOTALL).group(1)
    assert "<th>model</th><td>tiny</td>" in meta
    assert "<th>coeff</th><td>[2, 4]</td>" in meta
    assert f"<th>steering-lens</th><td>{st.__version__}</td>" in meta
    assert re.search(r"<th>generated</th><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", meta)


def test_text_and_tables_are_escaped_and_truncated(page):
    assert "<p>One &amp; two.</p><p>Third &lt;b&gt;paragraph&lt;/b&gt;.</p>" in page
    table = re.search(r'<table class="data">(.*?)</table>', page, re.DOTALL).group(1)
    assert table.count("<tr>") == 1 + 3  # header + max_rows
    assert "<th>ci_high</th>" in table
    assert "First 3 of 14 rows." in page


def test_figure_text_cannot_close_the_script():
    evil = "</script><script>alert(1)</script>"
    fig = go.Figure(go.Scatter(y=[1, 2], text=[evil, "<!--"]))
    html = render_html([ReportSection("Evil", figure=fig, table=pd.DataFrame({"t": [evil]}))])
    assert evil not in html and "<!--" not in html.split("</style>", 1)[1].replace(_plotly_js(), "")
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the table cell, escaped


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def test_no_figures_no_bundle():
    html = render_html([ReportSection("Only text", "hello")])
    assert "Plotly.newPlot" in html  # the (empty) drawing script is still there
    assert _plotly_js()[:300] not in html


# ---------------------------------------------------------------------------------------------
# Writing atomically; bad input


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "report.html"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, [ReportSection("A", "text")])
    assert list(target.parent.iterdir()) == []  # neither the page nor a temp file


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        write_report(target, [ReportSection("A")])
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_overwrites_and_is_readable_by_others(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    write_report(str(target), [ReportSection("A", "new text")])
    assert "new text" in target.read_text(encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_bad_arguments(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match="every section must be a ReportSection; got \\['str'\\]"):
        write_report(tmp_path / "r.html", ["text"])
    with pytest.raises(st.errors.InvalidArgumentError, match="sections must be a list of ReportSection"):
        write_report(tmp_path / "r.html", ReportSection("A"))
    with pytest.raises(st.errors.InvalidArgumentError, match="meta must be a mapping"):
        write_report(tmp_path / "r.html", [], meta=[("model", "x")])
    with pytest.raises(st.errors.InvalidArgumentError, match="is a folder"):
        write_report(tmp_path, [])
    with pytest.raises(st.errors.InvalidArgumentError, match="figure must be a plotly Figure or None, got dict"):
        ReportSection("A", figure={"data": []})
    with pytest.raises(st.errors.InvalidArgumentError, match="table must be a pandas DataFrame"):
        ReportSection("A", table=[[1, 2]])
    with pytest.raises(st.errors.InvalidArgumentError, match="max_rows must be a positive int"):
        ReportSection("A", max_rows=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The standard report (steer report)


def test_standard_report_has_every_section(any_tiny, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        info = analysis_report(any_tiny, "love", "hate", out=tmp_path / "r.html", layers="all", coeffs=[2, 4],
                               prompts=["I think that", "we will go to"], kl_prompts=["the cat sat on the mat",
                                                                                      "numbers 1 2 3 4 5 6"],
                               max_new_tokens=4)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert info["path"] == tmp_path / "r.html"
    assert info["figures"] == 7 and page.count('class="steering-figure"') == 7
    for heading in ("Effect size per layer", "Effect vs off-target KL", "Vector norm vs residual norm",
                    "Plain logit lens", "Logit lens of the vector at layer", "Effect lens at layer",
                    "Completions, token by token", "Off-target KL by coefficient"):
        assert heading in page
    assert info["best"]["layer"] in (0, 1) and info["best"]["coeff"] in (2.0, 4.0)
    assert list(info["seconds"]) == ["sweep", "lenses", "completions"]
    assert set(info["effects"]["metric"]) == {"target logprob", "kl"}
    meta = re.search(r'<table class="meta">(.*?)</table>', page, re.DOTALL).group(1)
    assert "<th>coefficients</th><td>0, 2, 4</td>" in meta
    assert "<th>prompts</th><td>I think that; we will go to</td>" in meta
    assert "steering-lens report: &#x27;love&#x27; − &#x27;hate&#x27;" in page


def test_standard_report_why_it_steers_sections(tiny, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        info = analysis_report(tiny, "love", "hate", out=tmp_path / "r.html", layers=[0, 1], coeffs=[4],
                               prompts=["I think that", "we will go to"], kl_prompts=["the cat sat on the mat"],
                               max_new_tokens=2, mechanisms=True)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert info["figures"] == 11 and page.count('class="steering-figure"') == 11
    assert list(info["seconds"]) == ["sweep", "lenses", "completions", "mechanisms"]
    for heading in ("Why it steers: propagation", "Why it steers: attribution", "Why it steers: patching",
                    "Why it steers: vector positions"):
        assert heading in page
    text = re.search(r"Why it steers: propagation</h2>(.*?)</p>", page, re.DOTALL).group(1)
    assert re.search(r"layer \d carries most of it", text) and "alone gives" in text, text


def test_standard_report_mechanisms_is_a_flag(tiny, tmp_path, untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match="mechanisms='yes'"):
        analysis_report(tiny, "love", "hate", out=tmp_path / "r.html", layers=[1], coeffs=[4],
                        prompts=["I think that", "we will go to"], max_new_tokens=2, mechanisms="yes")


def test_default_targets():
    assert default_targets(" weddings") == [" weddings", "weddings"]
    assert default_targets("Love") == [" Love", "Love", " love", "love"]
    assert default_targets("love you") == [" love", "love"]
    with pytest.raises(st.errors.InvalidArgumentError, match="has no word to use as a target"):
        default_targets("  ")


def test_standard_report_needs_a_nonzero_coefficient(any_tiny, tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match="the sweep produced no effect sizes"):
        analysis_report(any_tiny, "love", "hate", out=tmp_path / "r.html", layers=[0], coeffs=[0],
                        prompts=["I think that", "we will go to"], kl_prompts=["a quiet day in town"])
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------------------------------------
# Rendering in headless Chromium


class _DomSummary(HTMLParser):
    """What the browser made of the page: each .steering-figure's classes (its own and its
    descendants'), body's data-rendered, and the text of the error <pre>."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list = []  # [(tag, index into figures or None)]
        self.figures: list = []  # one set of classes per .steering-figure div
        self.rendered = None
        self.errors = None
        self._in_errors = False

    def _start(self, tag, attrs, push):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        figure = None
        if tag == "div" and "steering-figure" in classes:
            self.figures.append(set())
            figure = len(self.figures) - 1
        for _, index in self.stack + [(tag, figure)]:
            if index is not None:
                self.figures[index] |= classes
        if tag == "body":
            self.rendered = attrs.get("data-rendered")
        if tag == "pre" and attrs.get("id") == "steering-js-errors":
            self.errors, self._in_errors = "", True
        if push and tag not in self.VOID:
            self.stack.append((tag, figure))

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs, push=True)

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs, push=False)

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_errors = False
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self._in_errors:
            self.errors += data


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "headless Chromium not found (install the 'chromium' package)"
        if os.environ.get("STEERING_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; STEERING_REQUIRE_BROWSER=1 requires it")
        pytest.skip(message)
    return found


def _render(browser: str, path: Path, profile: Path) -> _DomSummary:
    cmd = [
        browser, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", path.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
    assert "</html>" in proc.stdout, f"no DOM dumped; stderr:\n{proc.stderr[-2000:]}"
    dom = _DomSummary()
    dom.feed(proc.stdout)
    dom.close()
    return dom


def test_every_figure_renders_in_chromium(tmp_path):
    browser = _browser()
    path = write_report(tmp_path / "report.html", all_figure_sections(), meta={"model": "tiny"})
    dom = _render(browser, path, tmp_path / "profile")
    assert dom.errors == "", f"JavaScript errors in the page:\n{dom.errors}"
    assert len(dom.figures) == N_FIGURES
    for i, classes in enumerate(dom.figures, start=1):
        assert "js-plotly-plot" in classes, f"figure {i} was not drawn by Plotly"
        assert "main-svg" in classes, f"figure {i} has no SVG"
    assert dom.rendered == str(N_FIGURES)


def test_chromium_check_catches_broken_pages(tmp_path):
    """The same check fails on a page with a throwing script and a figure whose spec is corrupt."""
    browser = _browser()
    page = render_html(all_figure_sections(), extra_scripts=("throw new Error('deliberate failure');",))
    spec_start = '<script type="application/json" id="steering-figure-2-spec">'
    assert spec_start in page
    page = page.replace(spec_start, spec_start + "{not json")  # figure 2 cannot be parsed
    path = tmp_path / "broken.html"
    path.write_text(page, encoding="utf-8")
    dom = _render(browser, path, tmp_path / "profile")
    assert "deliberate failure" in dom.errors
    assert "figure steering-figure-2: SyntaxError" in dom.errors
    assert f"1 of {N_FIGURES} figure(s) did not render" in dom.errors
    assert dom.rendered == str(N_FIGURES - 1)
    assert "js-plotly-plot" not in dom.figures[1]
    assert all("main-svg" in dom.figures[i] for i in range(N_FIGURES) if i != 1)


def test_steer_report_page_renders_in_chromium(tmp_path, any_tiny):
    """A page written by the real analysis pipeline (tiny model) renders every figure with no JS errors."""
    browser = _browser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        info = analysis_report(any_tiny, "love", "hate", out=tmp_path / "report.html", layers="all", coeffs=[2, 4],
                               prompts=["I think that", "we will go to"], kl_prompts=["a quiet day in town"],
                               max_new_tokens=4)
    dom = _render(browser, info["path"], tmp_path / "profile")
    assert dom.errors == "", f"JavaScript errors in the page:\n{dom.errors}"
    assert len(dom.figures) == info["figures"] == 7
    assert all("main-svg" in classes for classes in dom.figures)
    assert dom.rendered == "7"


# ---------------------------------------------------------------------------------------------
# File-system faults (issue 17, category 7): FileAccessError naming the path and the cause; the old page kept


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied"), (errno.EDQUOT, "disk quota exceeded")])
@pytest.mark.parametrize("stage", ["fsync", "replace", "chmod"])
def test_a_refused_write_is_a_file_access_error_and_keeps_the_old_page(tmp_path, monkeypatch, code, cause, stage):
    target = tmp_path / "report.html"
    target.write_bytes(b"<html>old</html>")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, stage, refuse)
    with pytest.raises(st.errors.FileAccessError) as caught:
        write_report(target, [ReportSection("A", "text")])
    text = str(caught.value)
    assert f"'{target}'" in text and cause in text and "Fix: " in text and caught.value.errno == code
    monkeypatch.undo()
    assert target.read_bytes() == b"<html>old</html>" and os.listdir(tmp_path) == ["report.html"]


def test_a_page_into_a_folder_without_permission_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:  # root ignores file modes: emulate the refusal
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if os.fspath(p) == str(folder) and m & os.W_OK
                            else real(p, m, *a, **k))
    else:
        os.chmod(folder, 0o555)
    try:
        with pytest.raises(st.errors.FileAccessError, match=rf"cannot write report page '{folder}/r\.html': permission denied"):
            write_report(folder / "r.html", [ReportSection("A")])
    finally:
        os.chmod(folder, 0o755)
    assert os.listdir(folder) == []


def test_a_page_on_a_read_only_file_system_is_refused(tmp_path, monkeypatch):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_flag=os.ST_RDONLY | real(p).f_flag))
    with pytest.raises(st.errors.FileAccessError, match=r"cannot write report page '.*r\.html': read-only file system"):
        write_report(tmp_path / "r.html", [ReportSection("A")])
    assert os.listdir(tmp_path) == []


def test_a_page_name_too_long_or_a_pipe_or_a_file_in_the_way_is_refused(tmp_path):
    with pytest.raises(st.errors.FileAccessError, match=r"file name too long"):
        write_report(tmp_path / ("r" * 300 + ".html"), [ReportSection("A")])
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    box = {}
    thread = threading.Thread(target=lambda: box.update(err=_raised(lambda: write_report(fifo, [ReportSection("A")]))),
                              daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "writing onto a named pipe blocked"
    assert isinstance(box["err"], st.errors.FileAccessError) and "named pipe (FIFO)" in str(box["err"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(st.errors.FileAccessError, match=r"cannot write folder '.*file/sub': a part of the path is a file, not a folder"):
        write_report(tmp_path / "file" / "sub" / "r.html", [ReportSection("A")])
    assert sorted(os.listdir(tmp_path)) == ["file", "pipe.html"]


def _raised(fn):
    try:
        fn()
    except BaseException as err:  # noqa: BLE001 - handed to the test
        return err
    return None
