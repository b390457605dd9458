"""Progress bars: widget bars in Jupyter when ipywidgets is installed, text bars otherwise."""

import importlib.util
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar; never warns in a notebook without ipywidgets.

    Example:
        >>> with progress_bar(total=2, disable=True) as bar:
        ...     bar.update(2)
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(**kwargs)
