"""Progress bars show in terminals and notebooks and stay out of logs."""

import io
import sys
import types

from steering._progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drawn(stream, **kwargs) -> str:
    with progress_bar(total=3, desc="work", file=stream, **kwargs) as bar:
        bar.update(3)
    return stream.getvalue()


def test_bar_is_drawn_on_a_terminal():
    assert "work" in _drawn(_Terminal(), disable=False)


def test_bar_is_left_out_of_a_log_file(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert _drawn(io.StringIO(), disable=False) == ""


def test_bar_is_drawn_in_a_notebook_kernel(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert "work" in _drawn(io.StringIO(), disable=False)


def test_disabled_bar_stays_disabled_everywhere():
    assert _drawn(_Terminal(), disable=True) == ""
