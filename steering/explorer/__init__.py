"""Explore and teach: a live Jupyter playground and an offline explorable page.

* :func:`explore` (:mod:`steering.explorer.widget`) — an ipywidgets playground: layer and
  coefficient sliders, a prompt box, steered vs unsteered completions with the steered tokens'
  Δ log-prob shaded, the off-target KL, the effect lens and the logit lens, computed in the
  background and cached per setting. Its update logic is
  :meth:`~steering.explorer.playground.Playground.view`, usable without any widget.
* :func:`explorable` (:mod:`steering.explorer.page`) — precompute a grid (layers × coefficients ×
  prompts × samples, seeded; :func:`~steering.explorer.grid.explore_grid`) in batched runs and write
  one self-contained page with ``<input type="range">`` sliders over it (``steer explore``).

Example:
    >>> import pathlib, tempfile
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> out = explorable(model, "love", "hate", ["I think that"], layers=[1], coeffs=[4], max_new_tokens=2,
    ...                  targets=["l"], kl_prompts=["a quiet day"], out=pathlib.Path(tempfile.mkdtemp()) / "p.html")
    >>> len(read_explorable(out)["records"])  # 1 layer × 2 coefficients (0 added) × 1 prompt × 2 samples
    4
"""

from .grid import explore_grid
from .page import explorable, read_explorable, render_explorable, write_explorable
from .playground import Playground, View, view_html
from .widget import Explorer, explore

__all__ = ["explore", "explorable", "explore_grid", "read_explorable", "render_explorable", "write_explorable",
           "Playground", "View", "Explorer", "view_html"]
