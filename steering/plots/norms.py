"""Norm figures: ``‖c·v‖`` per position beside the residual norm, and vector norms across layers.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": [0, 1], "position": 0, "vector_token": "<s>", "vector_norm": [1.0, 2.0],
    ...                   "resid_norm": [10.0, 20.0]})
    >>> len(norm_layers_figure(t).data)
    2
"""

from typing import Any, Optional

from ..errors import InvalidArgumentError
from .common import layer_axis, reject_duplicate_cells, require_columns, show_token

__all__ = ["norm_figure", "norm_layers_figure"]

_NEEDED = {"position", "series", "norm", "token", "vector_token", "ratio"}


def norm_figure(table: Any, title: Optional[str] = None, log_y: bool = True) -> Any:
    """Grouped bars: ``‖c·v‖`` per position beside the residual norm it is added to.

    Args:
        table: The tidy table from :func:`steering.norm_profile`.
        title: Figure title; default names the hook and coefficient.
        log_y: Logarithmic y axis (default): the BOS residual is often 10–100× the others.

    Returns:
        A ``plotly.graph_objects.Figure``.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"position": [0, 0], "series": ["residual", "steering (c·v)"],
        ...                   "norm": [3.0, 1.0], "token": ["<s>", "<s>"], "vector_token": ["<s>", "<s>"],
        ...                   "ratio": [0.33, 0.33], "hook": ["h", "h"], "coeff": [1.0, 1.0]})
        >>> len(norm_figure(t).data)
        2
    """
    import plotly.graph_objects as go

    missing = _NEEDED - set(getattr(table, "columns", []))
    if missing:
        raise InvalidArgumentError(
            f"norm_figure needs a table with columns {sorted(_NEEDED)}; missing {sorted(missing)}. "
            "Fix: pass the output of st.norm_profile(...)."
        )
    fig = go.Figure()
    colors = {"residual": "#9aa5b1", "steering (c·v)": "#d1495b"}
    for series, group in table.groupby("series", sort=False):
        labels = [f"{p}: {t!r}" for p, t in zip(group["position"], group["token"])]
        fig.add_bar(
            x=labels,
            y=group["norm"],
            name=series,
            marker_color=colors.get(series),
            customdata=list(zip(group["vector_token"], group["ratio"])),
            hovertemplate="%{x}<br>norm %{y:.1f}<br>p+ token %{customdata[0]!r}<br>‖c·v‖/‖resid‖ %{customdata[1]:.2f}"
            "<extra>" + str(series) + "</extra>",
        )
    if title is None:
        hook = table["hook"].iloc[0] if "hook" in table.columns and len(table) else ""
        coeff = table["coeff"].iloc[0] if "coeff" in table.columns and len(table) else ""
        title = f"Steering norm vs residual norm per position — {hook}, c = {coeff}"
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="prompt position: token",
        yaxis_title="L2 norm" + (" (log scale)" if log_y else ""),
        yaxis_type="log" if log_y else "linear",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Norms across layers

_NORM_LAYER_COLUMNS = ["layer", "position", "vector_token", "vector_norm", "resid_norm"]
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]


def norm_layers_figure(table: Any, title: Optional[str] = None, log_y: bool = True) -> Any:
    """Vector norm per position across layers, beside the typical residual norm it is added to.

    Args:
        table: A tidy table with columns ``layer``, ``position``, ``vector_token``, ``vector_norm``,
            ``resid_norm``; optional ``ratio`` (shown on hover) and ``hook``. One row per layer × position.
        title: Figure title.
        log_y: Logarithmic y axis (default).

    Returns:
        A ``plotly.graph_objects.Figure``: per position, a solid line for the vector's norm, then a
        dashed line of the same colour for the residual norm.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"layer": [0, 1, 0, 1], "hook": "h", "position": [0, 0, 1, 1],
        ...                   "vector_token": ["<s>", "<s>", "Love", "Love"], "vector_norm": [1.0, 2, 3, 4],
        ...                   "resid_norm": [10.0, 20, 5, 8], "ratio": [0.1, 0.1, 0.6, 0.5]})
        >>> [trace.name for trace in norm_layers_figure(t).data]
        ["pos 0 '<s>'", 'residual pos 0', "pos 1 'Love'", 'residual pos 1']
    """
    import plotly.graph_objects as go

    require_columns(
        table, _NORM_LAYER_COLUMNS, "norm_layers_figure", "pass the per-layer norm table (one row per layer × position)."
    )
    if not isinstance(log_y, bool):
        raise InvalidArgumentError(f"norm_layers_figure: log_y must be True or False, got {log_y!r}.")
    reject_duplicate_cells(table, ["layer", "position"], "norm_layers_figure: ",
                           "pass one row per layer × position (one vector and one hook per figure).")
    fig = go.Figure()
    for i, (position, group) in enumerate(table.groupby("position", sort=True)):
        group = group.sort_values("layer", kind="stable")
        color = _PALETTE[i % len(_PALETTE)]
        token = show_token(group["vector_token"].iloc[0])
        ratio = group["ratio"] if "ratio" in group.columns else group["vector_norm"] / group["resid_norm"]
        vector_hover = "layer %{x}<br>‖v‖ %{y:.3g}<br>‖v‖/‖resid‖ %{customdata:.3f}<extra>pos " + str(position)
        fig.add_scatter(x=group["layer"], y=group["vector_norm"], mode="lines+markers", name=f"pos {position} {token}",
                        legendgroup=str(position), line={"color": color}, customdata=ratio,
                        hovertemplate=vector_hover + "</extra>")
        resid_hover = "layer %{x}<br>‖resid‖ %{y:.3g}<extra>residual pos " + str(position) + "</extra>"
        fig.add_scatter(x=group["layer"], y=group["resid_norm"], mode="lines", name=f"residual pos {position}",
                        legendgroup=str(position), line={"color": color, "dash": "dash"}, hovertemplate=resid_hover)
    if title is None:
        title = "Vector norm per position vs residual norm, across layers"
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis=layer_axis(table["layer"]),
        yaxis_title="L2 norm" + (" (log scale)" if log_y else ""),
        yaxis_type="log" if log_y else "linear",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
