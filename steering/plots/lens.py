"""Logit-lens readability per layer: the rank of each target token, layer by layer.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": [0, 1], "target": " love", "rank": [50, 3], "top_tokens": "a, b"})
    >>> len(lens_rank_figure(t).data)  # one line per target, then the rank-10 reference line
    2
"""

from typing import Any, Optional

from ..errors import InvalidArgumentError
from .common import layer_axis, require_columns, show_token

__all__ = ["lens_rank_figure"]

_LENS_RANK_COLUMNS = ["layer", "target", "rank", "top_tokens"]
_READABLE_RANK = 10


def lens_rank_figure(table: Any, title: Optional[str] = None) -> Any:
    """Rank of each target token under the plain logit lens, layer by layer (1 = top of the vocabulary).

    The rank axis is logarithmic and reversed, so rank 1 is at the top; a dotted line marks rank 10,
    above which a token counts as "readable" from that layer. Hovering a point shows that layer's
    top tokens.

    Args:
        table: A tidy table with columns ``layer``, ``target`` (token string), ``rank`` (1-based) and
            ``top_tokens`` (the layer's top tokens, joined); optional ``readout``, ``hook``, ``score``.
            A table with several readouts gets one line per (target, readout).
        title: Figure title.

    Returns:
        A ``plotly.graph_objects.Figure``: one line per target, then the rank-10 reference line.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"layer": [0, 1, 2], "hook": "h", "readout": "sum", "target": " love",
        ...                   "rank": [900, 40, 2], "score": [0.1, 1.2, 5.0], "top_tokens": "a, b"})
        >>> fig = lens_rank_figure(t)
        >>> fig.data[0].name, fig.data[0].y.tolist(), fig.layout.yaxis.autorange
        ("' love'", [900, 40, 2], 'reversed')
    """
    import pandas as pd
    import plotly.graph_objects as go

    require_columns(
        table, _LENS_RANK_COLUMNS, "lens_rank_figure", "pass the per-layer logit-lens table (one row per layer × target)."
    )
    if (pd.to_numeric(table["rank"], errors="coerce") < 1).any() or table["rank"].isna().any():
        raise InvalidArgumentError(
            "lens_rank_figure: rank must be ≥ 1 (1 = the best token of the vocabulary); got "
            f"{sorted(set(table['rank'].tolist()))[:5]}. Fix: pass 1-based ranks."
        )
    keys = ["target"]
    if "readout" in table.columns and table["readout"].nunique() > 1:
        keys.append("readout")
    fig = go.Figure()
    for key, group in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        name = show_token(key[0]) + (f" ({key[1]})" if len(key) > 1 else "")
        group = group.sort_values("layer", kind="stable")
        score = group["score"] if "score" in group.columns else pd.Series([float("nan")] * len(group))
        fig.add_scatter(
            x=group["layer"],
            y=group["rank"],
            mode="lines+markers",
            name=name,
            customdata=list(zip(group["top_tokens"].astype(str), score)),
            hovertemplate="layer %{x}<br>rank %{y}<br>score %{customdata[1]:.3f}"
            "<br>top: %{customdata[0]}<extra>" + name + "</extra>",
        )
    low, high = table["layer"].min(), table["layer"].max()
    fig.add_scatter(
        x=[low, high],
        y=[_READABLE_RANK, _READABLE_RANK],
        mode="lines+text",
        text=["", "readable ↑"],
        textposition="top left",
        line={"color": "#6c757d", "dash": "dot"},
        name=f"rank {_READABLE_RANK}: readable above",
        hoverinfo="skip",
    )
    fig.update_layout(
        title=title or "Logit lens: rank of each target token per layer",
        template="plotly_white",
        xaxis=layer_axis(table["layer"]),
        yaxis={"type": "log", "autorange": "reversed", "title": "rank in the vocabulary (log, 1 at top)"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
