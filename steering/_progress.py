"""Progress bars: widget bars in Jupyter when ipywidgets is installed, text bars in terminals, none in logs."""

import importlib.util
import sys
from typing import Any

__all__ = ["progress_bar"]


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar; never warns in a notebook without ipywidgets.

    A bar asked for (``disable=False``) is drawn in a notebook or when stderr is a terminal. When
    stderr goes to a file or a pipe (CI logs, ``steer demo > out.txt``), the bar is left out:
    redrawn bars there come out as runs of carriage returns and blank lines. The steps' messages
    are printed separately and stay.

    Example:
        >>> with progress_bar(total=2, disable=True) as bar:
        ...     bar.update(2)
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    if kwargs.get("disable") is False and not _in_notebook():
        stream = kwargs.get("file") or sys.stderr
        isatty = getattr(stream, "isatty", None)
        if not (callable(isatty) and isatty()):
            kwargs["disable"] = True
    return tqdm(**kwargs)
