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

from .errors import InvalidArgumentError, warn_user

__all__ = [
    "norm_figure",
    "norm_layers_figure",
    "token_scores_figure",
    "lens_rank_figure",
    "effect_heatmap",
    "frontier_figure",
    "pareto_front",
    "token_view_figure",
]

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
# Shared validation


def _require_columns(table: Any, needed: list[str], func: str, fix: str) -> None:
    """Raise unless ``table`` is a non-empty DataFrame-like object holding every column in ``needed``."""
    columns = getattr(table, "columns", None)
    if columns is None:
        raise InvalidArgumentError(
            f"{func} needs a pandas DataFrame with columns {needed}; got {type(table).__name__}. Fix: {fix}"
        )
    missing = [c for c in needed if c not in set(columns)]
    if missing:
        raise InvalidArgumentError(
            f"{func} needs a table with columns {needed}; missing {missing} "
            f"(the table has {list(columns)}). Fix: {fix}"
        )
    if len(table) == 0:
        raise InvalidArgumentError(f"{func} got an empty table (no rows to plot). Fix: {fix}")


def _positive_int(value: Any, name: str, func: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{func}: {name} must be a positive int, got {value!r}. Fix: pass e.g. {name}=6.")
    return value


def _show_token(token: Any) -> str:
    """A token as ``repr`` shows it, so leading spaces and newlines are visible."""
    return repr(str(token))


def _layer_axis(layers: Any) -> dict:
    """An x axis titled "layer" with one tick per layer when there are few (no 0.5 ticks)."""
    span = float(layers.max()) - float(layers.min())
    return {"title": "layer", "dtick": 1} if span <= 30 else {"title": "layer"}


def _coeff_label(coeff: Any) -> str:
    return f"{float(coeff):g}"


# ---------------------------------------------------------------------------------------------
# Token scores (logit lens readouts, log-prob shifts)

_TOKEN_SCORE_COLUMNS = ["source", "layer", "readout", "direction", "rank", "token", "score"]
_X_TITLES = {
    "logit_lens": "logit (vector read through the unembedding)",
    "logprob_shift": "mean Δ log-prob, steered − unsteered (nats)",
}
_DIRECTION_COLORS = {"promoted": "#2a9d8f", "suppressed": "#d1495b"}


def token_scores_figure(table: Any, title: Optional[str] = None, max_groups: int = 6) -> Any:
    """Horizontal bars of the tokens a vector promotes and suppresses, one panel per (layer, readout).

    Each panel is sorted by score: the most promoted token at the top, the most suppressed at
    the bottom. Tokens are shown with ``repr`` (``' wedding'``) so leading spaces are visible, and
    prefixed with their direction and rank (``+1``, ``−1``). A table with several coefficients
    (log-prob shifts) gets one panel per (layer, readout, coefficient).

    Args:
        table: A tidy table (or an object whose ``.table`` is one) with columns ``source``
            (``"logit_lens"`` or ``"logprob_shift"``, one source per figure), ``layer``, ``readout``, ``direction`` (``"promoted"`` /
            ``"suppressed"``), ``rank``, ``token``, ``score``; optional ``token_id``, ``hook``, ``coeff``.
        title: Figure title; default names the source.
        max_groups: At most this many panels, the first ones in table order (a
            :class:`~steering.SteeringWarning` says how many were left out).

    Returns:
        A ``plotly.graph_objects.Figure`` with two bar traces (promoted, suppressed) per panel.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"source": "logit_lens", "layer": 6, "hook": "h", "readout": "sum",
        ...                   "direction": ["promoted", "suppressed"], "rank": [1, 1],
        ...                   "token": [" wedding", " hate"], "token_id": [7, 9],
        ...                   "score": [3.5, -2.0], "coeff": float("nan")})
        >>> fig = token_scores_figure(t)
        >>> [list(bar.y) for bar in fig.data]
        [["+1 ' wedding'"], ["−1 ' hate'"]]
    """
    import pandas as pd
    from plotly.subplots import make_subplots

    if not hasattr(table, "columns") and hasattr(getattr(table, "table", None), "columns"):
        table = table.table  # a result object that carries its tidy table (e.g. TokenScores)
    fix = "pass the table from the logit-lens or log-prob-shift measurement (one source per figure)."
    _require_columns(table, _TOKEN_SCORE_COLUMNS, "token_scores_figure", fix)
    max_groups = _positive_int(max_groups, "max_groups", "token_scores_figure")
    sources = list(pd.unique(table["source"]))
    if len(sources) != 1 or sources[0] not in _X_TITLES:
        raise InvalidArgumentError(
            f"token_scores_figure needs one source per table, one of {sorted(_X_TITLES)}; got {sources}. "
            "Fix: filter the table first, e.g. table[table['source'] == 'logit_lens']."
        )
    source = sources[0]
    directions = set(table["direction"])
    if not directions <= set(_DIRECTION_COLORS):
        raise InvalidArgumentError(
            f"token_scores_figure: direction must be 'promoted' or 'suppressed'; got {sorted(map(str, directions))}. "
            "Fix: pass the measurement's table unchanged."
        )

    keys = ["layer", "readout"]
    if "coeff" in table.columns and table["coeff"].dropna().nunique() > 1:
        keys.append("coeff")
    groups = list(table.groupby(keys, sort=False))
    if len(groups) > max_groups:
        warn_user(
            f"token_scores_figure: the table has {len(groups)} (layer, readout) groups; plotting the first "
            f"{max_groups}. Pass max_groups={len(groups)} to see all, or filter the table."
        )
        groups = groups[:max_groups]

    def panel_title(key: tuple) -> str:
        parts = [f"layer {key[0]}", str(key[1])]
        if len(key) > 2:
            parts.append(f"c = {_coeff_label(key[2])}")
        return " · ".join(parts)

    n_cols = 1 if len(groups) == 1 else 2
    n_rows = -(-len(groups) // n_cols)
    # fixed pixel sizes: each panel 40 px + 22 px per bar, 90 px between rows, 210 px of margins
    max_bars = max(len(group) for _, group in groups)
    panel_px, gap_px = 40 + 22 * max_bars, 90
    plot_px = n_rows * panel_px + (n_rows - 1) * gap_px
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=[panel_title(key) for key, _ in groups],
        horizontal_spacing=0.25,
        vertical_spacing=gap_px / plot_px if n_rows > 1 else 0.0,
    )
    for i, (_, group) in enumerate(groups):
        row, col = i // n_cols + 1, i % n_cols + 1
        group = group.sort_values("score", ascending=False, kind="stable")
        labels = [
            f"{'+' if d == 'promoted' else '−'}{int(r)} {_show_token(t)}"
            for d, r, t in zip(group["direction"], group["rank"], group["token"])
        ]
        group = group.assign(_label=labels)
        for direction in ("promoted", "suppressed"):
            part = group[group["direction"] == direction]
            ids = part["token_id"] if "token_id" in part.columns else [-1] * len(part)
            fig.add_bar(
                x=part["score"],
                y=part["_label"],
                orientation="h",
                name=direction,
                legendgroup=direction,
                showlegend=i == 0,
                marker_color=_DIRECTION_COLORS[direction],
                customdata=list(zip(part["token"].map(_show_token), ids, part["rank"])),
                hovertemplate="token %{customdata[0]} (id %{customdata[1]})<br>rank %{customdata[2]}"
                "<br>score %{x:.3f}<extra>" + direction + "</extra>",
                row=row,
                col=col,
            )
        fig.update_yaxes(
            categoryorder="array", categoryarray=list(group["_label"]), autorange="reversed", row=row, col=col
        )
        last_in_column = i + n_cols >= len(groups)
        fig.update_xaxes(title_text=_X_TITLES[source] if last_in_column else None, row=row, col=col)
    if title is None:
        title = "Tokens read off the vector (logit lens)" if source == "logit_lens" else (
            "Log-prob shift: tokens steering makes more and less likely"
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=max(360, 210 + plot_px),
        bargap=0.25,
        legend={"orientation": "h", "yref": "container", "y": 0.01, "yanchor": "bottom", "x": 0},
        margin={"b": 110},
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Logit-lens readability per layer

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

    _require_columns(
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
        name = _show_token(key[0]) + (f" ({key[1]})" if len(key) > 1 else "")
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
        xaxis=_layer_axis(table["layer"]),
        yaxis={"type": "log", "autorange": "reversed", "title": "rank in the vocabulary (log, 1 at top)"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Layer × coefficient sweeps

_EFFECT_COLUMNS = ["layer", "coeff", "metric", "n", "mean_steered", "mean_unsteered", "effect", "ci_low", "ci_high"]
_EFFECT_FIX = "pass the sweep's effects table (one row per layer × coeff × metric)."


def _one_metric(effects: Any, metric: str, func: str) -> Any:
    available = [str(m) for m in effects["metric"].drop_duplicates()]
    if metric not in available:
        raise InvalidArgumentError(
            f"{func}: metric {metric!r} is not in the table; available metrics: {available}. "
            f"Fix: pass one of those, e.g. metric={available[0]!r}."
        )
    part = effects[effects["metric"] == metric]
    dup = part.duplicated(["layer", "coeff"])
    if dup.any():
        first = part[dup].iloc[0]
        raise InvalidArgumentError(
            f"{func}: metric {metric!r} has several rows for layer {first['layer']}, coeff {first['coeff']}. "
            "Fix: pass one row per layer × coeff × metric (aggregate or filter the extra columns first)."
        )
    return part


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

    _require_columns(effects, _EFFECT_COLUMNS, "effect_heatmap", _EFFECT_FIX)
    if metric is None:
        metric = str(effects["metric"].iloc[0])
    part = _one_metric(effects, metric, "effect_heatmap")
    coeffs = sorted(float(c) for c in part["coeff"].unique())
    layers = sorted(part["layer"].unique())
    cells = {(row.layer, float(row.coeff)): row for row in part.itertuples(index=False)}

    def finite(value: Any) -> Any:
        value = float(value)
        return value if value == value else None

    z, custom = [], []
    for layer in layers:
        z_row, c_row = [], []
        for coeff in coeffs:
            cell = cells.get((layer, coeff))
            if cell is None:
                z_row.append(None)
                c_row.append([None] * 5)
            else:
                z_row.append(finite(cell.effect))
                c_row.append([finite(cell.ci_low), finite(cell.ci_high), finite(cell.mean_steered),
                              finite(cell.mean_unsteered), int(cell.n)])
        z.append(z_row)
        custom.append(c_row)
    fig = go.Figure(
        go.Heatmap(
            x=[_coeff_label(c) for c in coeffs],
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


def pareto_front(df: Any, x: str, y: str) -> Any:
    """Which rows are on the Pareto front that minimises ``x`` and maximises ``y``.

    A row is on the front when no other row has ``x`` ≤ and ``y`` ≥ its own with at least one
    strict; identical rows are all on it. Rows with a missing ``x`` or ``y`` are never on it.

    Args:
        df: A ``pandas.DataFrame``.
        x: The column to minimise (a cost, e.g. off-target KL).
        y: The column to maximise (an effect).

    Returns:
        A boolean ``pandas.Series`` aligned with ``df.index``.

    Example:
        >>> import pandas as pd
        >>> d = pd.DataFrame({"kl": [0.1, 0.2, 0.3, 0.5], "effect": [0.5, 0.4, 1.0, 0.9]})
        >>> pareto_front(d, "kl", "effect").tolist()
        [True, False, True, False]
    """
    import numpy as np
    import pandas as pd

    columns = list(getattr(df, "columns", []))
    missing = [c for c in (x, y) if c not in columns]
    if missing:
        raise InvalidArgumentError(
            f"pareto_front: column(s) {missing} not in the table (it has {columns}). "
            "Fix: pass the names of two numeric columns of df as x and y."
        )
    xs = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float)
    valid = ~(np.isnan(xs) | np.isnan(ys))
    xv, yv = xs[valid], ys[valid]
    no_worse = (xv[None, :] <= xv[:, None]) & (yv[None, :] >= yv[:, None])  # [i, j]: j at least as good as i
    better = (xv[None, :] < xv[:, None]) | (yv[None, :] > yv[:, None])
    dominated = (no_worse & better).any(axis=1)
    on_front = np.zeros(len(df), dtype=bool)
    on_front[np.flatnonzero(valid)] = ~dominated
    return pd.Series(on_front, index=df.index)


def frontier_figure(effects: Any, effect_metric: str, cost_metric: str = "kl", title: Optional[str] = None) -> Any:
    """Effect against off-target cost for every (layer, coeff ≠ 0), with the Pareto front marked.

    Each point is one sweep cell: ``x`` = the mean of ``cost_metric`` on steered text (e.g.
    off-target KL in nats), ``y`` = the effect (Cohen's d) on ``effect_metric``. The front holds
    the cells no other cell beats on both (see :func:`pareto_front`): the settings worth using.
    For a metric steering should lower, negate its ``effect`` column first.

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

    _require_columns(effects, _EFFECT_COLUMNS, "frontier_figure", _EFFECT_FIX)
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
    labels = [f"L{layer} c{_coeff_label(c)}" for layer, c in zip(cells["layer"], cells["coeff"])]
    cells = cells.assign(label=labels)
    hover = (
        "%{text}<br>" + cost_metric + " %{x:.3f}<br>d(" + effect_metric + ") %{y:.2f} "
        "[%{customdata[0]:.2f}, %{customdata[1]:.2f}]<extra></extra>"
    )
    fig = go.Figure()
    fig.add_scatter(
        x=cells["mean_steered"],
        y=cells["effect"],
        mode="markers",
        name="layer × coeff",
        text=cells["label"],
        customdata=cells[["ci_low", "ci_high"]].to_numpy(),
        marker={
            "color": cells["layer"],
            "colorscale": "Viridis",
            "size": 9,
            "colorbar": {"title": "layer"},
            "showscale": True,
        },
        hovertemplate=hover,
    )
    front = cells[pareto_front(cells, "mean_steered", "effect")].sort_values(
        ["mean_steered", "effect"], kind="stable"
    )
    fig.add_scatter(
        x=front["mean_steered"],
        y=front["effect"],
        mode="lines+markers",
        name="Pareto front",
        text=front["label"],
        customdata=front[["ci_low", "ci_high"]].to_numpy(),
        marker={"symbol": "diamond-open", "size": 15, "color": "#d1495b", "line": {"width": 2}},
        line={"color": "#d1495b", "dash": "dash"},
        hovertemplate=hover,
    )
    fig.update_layout(
        title=title or f"Effect on {effect_metric} vs off-target cost ({cost_metric})",
        template="plotly_white",
        xaxis_title=f"{cost_metric}, mean on steered text" + (" (nats)" if cost_metric == "kl" else ""),
        yaxis_title=f"effect on {effect_metric} (Cohen's d)",
        legend={"orientation": "h", "y": -0.2},
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

    _require_columns(
        table, _NORM_LAYER_COLUMNS, "norm_layers_figure", "pass the per-layer norm table (one row per layer × position)."
    )
    if not isinstance(log_y, bool):
        raise InvalidArgumentError(f"norm_layers_figure: log_y must be True or False, got {log_y!r}.")
    dup = table.duplicated(["layer", "position"])
    if dup.any():
        first = table[dup].iloc[0]
        raise InvalidArgumentError(
            f"norm_layers_figure: several rows for layer {first['layer']}, position {first['position']}. "
            "Fix: pass one row per layer × position (one vector and one hook per figure)."
        )
    fig = go.Figure()
    for i, (position, group) in enumerate(table.groupby("position", sort=True)):
        group = group.sort_values("layer", kind="stable")
        color = _PALETTE[i % len(_PALETTE)]
        token = _show_token(group["vector_token"].iloc[0])
        ratio = group["ratio"] if "ratio" in group.columns else group["vector_norm"] / group["resid_norm"]
        fig.add_scatter(
            x=group["layer"],
            y=group["vector_norm"],
            mode="lines+markers",
            name=f"pos {position} {token}",
            legendgroup=str(position),
            line={"color": color},
            customdata=ratio,
            hovertemplate="layer %{x}<br>‖v‖ %{y:.3g}<br>‖v‖/‖resid‖ %{customdata:.3f}<extra>pos "
            + str(position) + "</extra>",
        )
        fig.add_scatter(
            x=group["layer"],
            y=group["resid_norm"],
            mode="lines",
            name=f"residual pos {position}",
            legendgroup=str(position),
            line={"color": color, "dash": "dash"},
            hovertemplate="layer %{x}<br>‖resid‖ %{y:.3g}<extra>residual pos " + str(position) + "</extra>",
        )
    if title is None:
        title = "Vector norm per position vs residual norm, across layers"
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis=_layer_axis(table["layer"]),
        yaxis_title="L2 norm" + (" (log scale)" if log_y else ""),
        yaxis_type="log" if log_y else "linear",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Token-level view of completions

_TOKEN_VIEW_COLUMNS = ["row", "label", "position", "token", "delta"]


def _cell_text(token: str) -> str:
    """A token as printed in a heatmap cell: spaces and newlines made visible, long tokens cut."""
    text = str(token).replace(" ", "·").replace("\n", "↵").replace("\t", "→")
    return text if len(text) <= 12 else text[:11] + "…"


def token_view_figure(table: Any, max_rows: int = 8, title: Optional[str] = None) -> Any:
    """Completions token by token, each cell coloured by how much steering changed its log-prob.

    Args:
        table: A tidy table with columns ``row`` (completion id), ``label`` (the row's name),
            ``position`` (token index in the completion), ``token`` and ``delta``
            (log p_steered − log p_unsteered of that token, nats); optional ``condition``.
        max_rows: At most this many completions, the first ones in table order (a
            :class:`~steering.SteeringWarning` says how many were left out).
        title: Figure title.

    Returns:
        A ``plotly.graph_objects.Figure`` with one heatmap: ``y`` = completions (first at the top),
        ``x`` = positions, ``z`` = delta (``None`` past a completion's end), the token printed in each cell.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"row": [0, 0, 1], "condition": ["steered", "steered", "unsteered"],
        ...                   "label": ["steered #0", "steered #0", "unsteered #0"],
        ...                   "position": [0, 1, 0], "token": [" I", " love", " I"], "delta": [0.1, 2.0, 0.0]})
        >>> hm = token_view_figure(t).data[0]
        >>> list(hm.y), [list(r) for r in hm.z], [list(r) for r in hm.text]
        (['steered #0', 'unsteered #0'], [[0.1, 2.0], [0.0, None]], [['·I', '·love'], ['·I', '']])
    """
    import plotly.graph_objects as go

    _require_columns(table, _TOKEN_VIEW_COLUMNS, "token_view_figure", "pass the token-level table of completions.")
    max_rows = _positive_int(max_rows, "max_rows", "token_view_figure")
    dup = table.duplicated(["row", "position"])
    if dup.any():
        first = table[dup].iloc[0]
        raise InvalidArgumentError(
            f"token_view_figure: several rows for completion {first['row']}, position {first['position']}. "
            "Fix: pass one row per completion × position."
        )
    rows = list(table["row"].drop_duplicates())
    if len(rows) > max_rows:
        warn_user(
            f"token_view_figure: the table has {len(rows)} completions; plotting the first {max_rows}. "
            f"Pass max_rows={len(rows)} to see all."
        )
        rows = rows[:max_rows]
    width = int(table["position"].max()) + 1
    by_row = {r: g for r, g in table.groupby("row", sort=False)}
    labels = [str(by_row[r]["label"].iloc[0]) for r in rows]
    labels = [lab if len(lab) <= 48 else lab[:47] + "…" for lab in labels]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} [{r}]" for lab, r in zip(labels, rows)]
    z, text, custom = [], [], []
    for r in rows:
        group = by_row[r]
        z_row, t_row, c_row = [None] * width, [""] * width, [["", ""]] * width
        condition = group["condition"] if "condition" in group.columns else [""] * len(group)
        for pos, token, delta, cond in zip(group["position"], group["token"], group["delta"], condition):
            value = float(delta)
            z_row[int(pos)] = value if value == value else None
            t_row[int(pos)] = _cell_text(token)
            c_row[int(pos)] = [_show_token(token), str(cond)]
        z.append(z_row)
        text.append(t_row)
        custom.append(c_row)
    fig = go.Figure(
        go.Heatmap(
            x=list(range(width)),
            y=labels,
            z=z,
            text=text,
            customdata=custom,
            texttemplate="%{text}",
            textfont={"size": 10},
            zmid=0.0,
            colorscale="RdBu",
            colorbar={"title": "Δ log p (nats)"},
            hovertemplate="%{y}<br>position %{x}: %{customdata[0]}<br>Δ log p %{z:.3f} nats"
            "<extra>%{customdata[1]}</extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        title=title or "Completions token by token: log p(steered) − log p(unsteered)",
        template="plotly_white",
        xaxis={"title": "token position in the completion", "dtick": 1 if width <= 40 else None},
        yaxis={"autorange": "reversed", "type": "category"},
        height=max(300, 150 + 40 * len(rows)),
        width=max(700, min(2400, 260 + 58 * width)),
    )
    return fig
