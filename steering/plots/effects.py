"""Layer × coefficient sweep figures: the effect-size heatmap and the effect-vs-cost frontier.

Both read the effects table of :func:`steering.stats.effect_sizes` (one row per layer × coeff × metric).

Example:
    >>> import pandas as pd
    >>> e = pd.DataFrame({"layer": 1, "coeff": [0.0, 4.0], "metric": "m", "n": 8, "mean_steered": [0.1, 0.5],
    ...                   "mean_unsteered": 0.1, "effect": [0.0, 1.2], "ci_low": 0.0, "ci_high": 2.0})
    >>> list(effect_heatmap(e).data[0].z[0])
    [0.0, 1.2]
"""

from typing import Any, Optional

from ..errors import InvalidArgumentError
from ..stats import pareto_front
from .common import coeff_label, reject_duplicate_cells, require_columns

__all__ = ["effect_heatmap", "frontier_figure"]

_EFFECT_COLUMNS = ["layer", "coeff", "metric", "n", "mean_steered", "mean_unsteered", "effect", "ci_low", "ci_high"]
_EFFECT_FIX = "pass the sweep's effects table (one row per layer × coeff × metric)."


def _one_metric(effects: Any, metric: str, func: str) -> Any:
    """The rows of one metric (one per layer × coeff), or an error naming the available metrics."""
    available = [str(m) for m in effects["metric"].drop_duplicates()]
    if metric not in available:
        raise InvalidArgumentError(
            f"{func}: metric {metric!r} is not in the table; available metrics: {available}. "
            f"Fix: pass one of those, e.g. metric={available[0]!r}."
        )
    part = effects[effects["metric"] == metric]
    reject_duplicate_cells(part, ["layer", "coeff"], f"{func}: metric {metric!r} has ",
                           "pass one row per layer × coeff × metric (aggregate or filter the extra columns first).")
    return part


def _cost_effect_trace(fig: Any, cells: Any, name: str, hover: str, **style: Any) -> None:
    """One scatter trace of cost (x) against effect (y), labelled and with the effect's CI in the hover."""
    fig.add_scatter(x=cells["mean_steered"], y=cells["effect"], name=name, text=cells["label"],
                    customdata=cells[["ci_low", "ci_high"]].to_numpy(), hovertemplate=hover, **style)


def _finite(value: Any) -> Optional[float]:
    """``value`` as a float, ``None`` for NaN (an empty heatmap cell)."""
    value = float(value)
    return value if value == value else None


def effect_heatmap(effects: Any, metric: Optional[str] = None, title: Optional[str] = None) -> Any:
    """Heatmap of a metric's effect size (Cohen's d) over layer × coefficient, centred at 0.

    Args:
        effects: The sweep's effects table: ``layer``, ``coeff``, ``metric``, ``n``, ``mean_steered``,
            ``mean_unsteered``, ``effect``, ``ci_low``, ``ci_high`` (one row per layer × coeff × metric).
        metric: Which metric to show; default the first one in the table.
        title: Figure title; default names the metric.

    Returns:
        A ``plotly.graph_objects.Figure`` with one heatmap: ``x`` = coefficients (categories, sorted
        numerically), ``y`` = layers, ``z[i][j]`` = the effect at ``y[i]``, ``x[j]`` (``None`` where the
        sweep has no cell); hover shows the 95 % interval, both means and ``n``.

    Example:
        >>> import pandas as pd
        >>> e = pd.DataFrame({"layer": [2, 2, 4], "coeff": [1.0, 4.0, 4.0], "metric": "sentiment",
        ...                   "n": 8, "mean_steered": [0.2, 0.5, 0.4], "mean_unsteered": 0.1,
        ...                   "effect": [0.3, 1.5, 1.1], "ci_low": 0.0, "ci_high": 2.0})
        >>> hm = effect_heatmap(e).data[0]
        >>> list(hm.x), list(hm.y), [list(row) for row in hm.z]
        (['1', '4'], ['2', '4'], [[0.3, 1.5], [None, 1.1]])
    """
    import plotly.graph_objects as go

    require_columns(effects, _EFFECT_COLUMNS, "effect_heatmap", _EFFECT_FIX)
    if metric is None:
        metric = str(effects["metric"].iloc[0])
    part = _one_metric(effects, metric, "effect_heatmap")
    coeffs = sorted(float(c) for c in part["coeff"].unique())
    layers = sorted(part["layer"].unique())
    cells = {(row.layer, float(row.coeff)): row for row in part.itertuples(index=False)}
    z, custom = [], []
    for layer in layers:
        z_row, c_row = [], []
        for coeff in coeffs:
            cell = cells.get((layer, coeff))
            if cell is None:
                z_row.append(None)
                c_row.append([None] * 5)
            else:
                z_row.append(_finite(cell.effect))
                c_row.append([_finite(cell.ci_low), _finite(cell.ci_high), _finite(cell.mean_steered),
                              _finite(cell.mean_unsteered), int(cell.n)])
        z.append(z_row)
        custom.append(c_row)
    fig = go.Figure(
        go.Heatmap(
            x=[coeff_label(c) for c in coeffs],
            y=[str(layer) for layer in layers],
            z=z,
            customdata=custom,
            zmid=0.0,
            colorscale="RdBu",
            colorbar={"title": "Cohen's d"},
            texttemplate="%{z:.2f}",
            hovertemplate="layer %{y}, c = %{x}<br>d = %{z:.2f} [%{customdata[0]:.2f}, %{customdata[1]:.2f}]"
            "<br>steered %{customdata[2]:.3f} vs unsteered %{customdata[3]:.3f} (n = %{customdata[4]})"
            "<extra>" + metric + "</extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        title=title or f"Effect of steering on {metric} (Cohen's d, steered vs unsteered)",
        template="plotly_white",
        xaxis={"title": "coefficient", "type": "category"},
        yaxis={"title": "layer", "type": "category"},
    )
    return fig


def _frontier_cells(effects: Any, effect_metric: str, cost_metric: str) -> Any:
    """One row per (layer, coeff ≠ 0) with the cost's steered mean, the effect and its interval, and a label."""
    keys = ["layer", "coeff"]
    cost = _one_metric(effects, cost_metric, "frontier_figure")[keys + ["mean_steered"]]
    gain = _one_metric(effects, effect_metric, "frontier_figure")[keys + ["effect", "ci_low", "ci_high"]]
    cells = cost.merge(gain, on=keys, how="inner")
    cells = cells[(cells["coeff"] != 0) & cells["mean_steered"].notna() & cells["effect"].notna()]
    if cells.empty:
        raise InvalidArgumentError(
            f"frontier_figure: no (layer, coeff ≠ 0) cell has both {cost_metric!r} and {effect_metric!r}. "
            "Fix: run the sweep with both metrics and at least one non-zero coefficient."
        )
    cells = cells.sort_values(keys, kind="stable").reset_index(drop=True)
    labels = [f"L{layer} c{coeff_label(c)}" for layer, c in zip(cells["layer"], cells["coeff"])]
    return cells.assign(label=labels)


def frontier_figure(effects: Any, effect_metric: str, cost_metric: str = "kl", title: Optional[str] = None) -> Any:
    """Effect against off-target cost for every (layer, coeff ≠ 0), with the Pareto front marked.

    Each point is one sweep cell: ``x`` = the mean of ``cost_metric`` on steered text (e.g.
    off-target KL in nats), ``y`` = the effect (Cohen's d) on ``effect_metric``. The front holds
    the cells no other cell beats on both (see :func:`steering.stats.pareto_front`): the settings
    worth using. For a metric steering should lower, negate its ``effect`` column first.

    Args:
        effects: The sweep's effects table (see :func:`effect_heatmap`), holding both metrics.
        effect_metric: The metric whose effect goes on the y axis.
        cost_metric: The metric whose steered mean goes on the x axis.
        title: Figure title.

    Returns:
        A ``plotly.graph_objects.Figure`` with two traces: every cell (coloured by layer), then the
        Pareto front (sorted by cost, joined by a line).

    Example:
        >>> import pandas as pd
        >>> e = pd.DataFrame({"layer": [1, 1, 2, 2] * 2, "coeff": [2.0, 8.0] * 4,
        ...                   "metric": ["kl"] * 4 + ["sentiment"] * 4, "n": 8,
        ...                   "mean_steered": [0.1, 0.9, 0.2, 0.3, 0, 0, 0, 0], "mean_unsteered": 0.0,
        ...                   "effect": [0, 0, 0, 0, 0.5, 1.0, 0.2, 0.9], "ci_low": 0.0, "ci_high": 1.0})
        >>> fig = frontier_figure(e, "sentiment")
        >>> list(fig.data[1].text)
        ['L1 c2', 'L2 c8', 'L1 c8']
    """
    import plotly.graph_objects as go

    require_columns(effects, _EFFECT_COLUMNS, "frontier_figure", _EFFECT_FIX)
    cells = _frontier_cells(effects, effect_metric, cost_metric)
    hover = (
        "%{text}<br>" + cost_metric + " %{x:.3f}<br>d(" + effect_metric + ") %{y:.2f} "
        "[%{customdata[0]:.2f}, %{customdata[1]:.2f}]<extra></extra>"
    )
    fig = go.Figure()
    layer_colours = {"color": cells["layer"], "colorscale": "Viridis", "size": 9, "colorbar": {"title": "layer"},
                     "showscale": True}
    _cost_effect_trace(fig, cells, "layer × coeff", hover, mode="markers", marker=layer_colours)
    front = cells[pareto_front(cells, "mean_steered", "effect")].sort_values(
        ["mean_steered", "effect"], kind="stable"
    )
    _cost_effect_trace(fig, front, "Pareto front", hover, mode="lines+markers",
                       marker={"symbol": "diamond-open", "size": 15, "color": "#d1495b", "line": {"width": 2}},
                       line={"color": "#d1495b", "dash": "dash"})
    fig.update_layout(
        title=title or f"Effect on {effect_metric} vs off-target cost ({cost_metric})",
        template="plotly_white",
        xaxis_title=f"{cost_metric}, mean on steered text" + (" (nats)" if cost_metric == "kl" else ""),
        yaxis_title=f"effect on {effect_metric} (Cohen's d)",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
