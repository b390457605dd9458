"""Plotly figures built from tidy tables (plots only plot: they never compute statistics or run a model).

Each figure function takes the tidy table a measurement returns and gives a
``plotly.graph_objects.Figure``; a malformed table raises an
:class:`~steering.errors.InvalidArgumentError` that names the missing column and the fix.
The statistics they draw (effect sizes, Pareto fronts) come from :mod:`steering.stats`.

* :mod:`~steering.plots.norms` — :func:`norm_figure`, :func:`norm_layers_figure`;
* :mod:`~steering.plots.tokens` — :func:`token_scores_figure`, :func:`token_view_figure`;
* :mod:`~steering.plots.lens` — :func:`lens_rank_figure`;
* :mod:`~steering.plots.effects` — :func:`effect_heatmap`, :func:`frontier_figure`.
* :mod:`~steering.plots.mechanisms` — :func:`attribution_figure`, :func:`propagation_figure`,
  :func:`patching_figure`, :func:`position_effects_figure`, :func:`attention_figure` (figures of
  :mod:`steering.mechanisms`).

Example:
    >>> import pandas as pd
    >>> import steering.plots as plots
    >>> effects = pd.DataFrame({"layer": [2, 2, 4], "coeff": [1.0, 4.0, 4.0], "metric": "sentiment",
    ...                         "n": 8, "mean_steered": [0.2, 0.5, 0.4], "mean_unsteered": 0.1,
    ...                         "effect": [0.3, 1.5, 1.1], "ci_low": 0.0, "ci_high": 2.0})
    >>> fig = plots.effect_heatmap(effects, metric="sentiment")
    >>> type(fig).__name__, [list(row) for row in fig.data[0].z]
    ('Figure', [[0.3, 1.5], [None, 1.1]])
"""

from .effects import effect_heatmap, frontier_figure
from .lens import lens_rank_figure
from .mechanisms import (attention_figure, attribution_figure, patching_figure, position_effects_figure,
                         propagation_figure)
from .norms import norm_figure, norm_layers_figure
from .tokens import token_scores_figure, token_view_figure

__all__ = [
    "norm_figure",
    "norm_layers_figure",
    "token_scores_figure",
    "lens_rank_figure",
    "effect_heatmap",
    "frontier_figure",
    "token_view_figure",
    "attribution_figure",
    "propagation_figure",
    "patching_figure",
    "position_effects_figure",
    "attention_figure",
]
