"""Plotly figures built from tidy tables (plots only plot; they never run the model).

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> fig = st.norm_figure(st.norm_profile(model, vec, "I am here", coeff=4.0))
    >>> type(fig).__name__
    'Figure'
"""

from typing import Any, Optional

from .errors import InvalidArgumentError

__all__ = ["norm_figure"]

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
