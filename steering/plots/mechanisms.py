"""Figures of :mod:`steering.mechanisms`: attribution, propagation, patching, attention and position effects.

Each takes the tidy table its measure returns and only draws it.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": [0, 0, 1], "position": [0, 1, 1], "token": ["<s>", "a", "a"],
    ...                   "recovered": [0.0, 0.2, 1.0]})
    >>> [list(row) for row in patching_figure(t).data[0].z]
    [[0.0, 0.2], [None, 1.0]]
"""

from typing import Any, Optional, Sequence

from ..errors import InvalidArgumentError
from .common import layer_axis, reject_duplicate_cells, require_columns, show_token

__all__ = ["attribution_figure", "propagation_figure", "patching_figure", "position_effects_figure",
           "attention_figure"]

_CLASS_COLORS = {"steered": "#d1495b", "later": "#00798c", "generated": "#edae49"}


def _cell(value: Any) -> Optional[float]:
    value = float(value)
    return value if value == value else None


def attribution_figure(table: Any, title: Optional[str] = None) -> Any:
    """Heatmap of the attribution table: heads (or attention layers) and MLPs × layer, centred at 0.

    Rows are ``mlp`` then ``head 0 … head H−1`` (per-head models) or ``attn`` (per-layer models);
    the embeddings' and the injected vector's own rows are named in the title.

    Args:
        table: The table of :func:`steering.mechanisms.attribute`.
        title: Figure title; default names the target and the totals.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"component": ["L0H0", "L0H1", "mlp 0", "injected"], "kind": ["head", "head", "mlp",
        ...                   "injected"], "layer": [0, 0, 0, 0], "head": [0, 1, -1, -1], "contribution": [0.5, -0.1, 0.2, 0.0]})
        >>> list(attribution_figure(t).data[0].y)
        ['mlp', 'head 0', 'head 1']
    """
    import plotly.graph_objects as go

    require_columns(table, ["component", "kind", "layer", "head", "contribution"], "attribution_figure",
                    "pass the table of st.mechanisms.attribute(...).")
    cells = table[table["kind"].isin(["head", "attn", "mlp"])]
    reject_duplicate_cells(cells, ["kind", "layer", "head"], "attribution_figure: ", "pass one table per target.")
    layers = sorted(int(x) for x in cells["layer"].unique())
    heads = sorted(int(h) for h in cells.loc[cells["kind"] == "head", "head"].unique())
    labels = ["mlp"] + ([f"head {h}" for h in heads] if heads else ["attn"])
    value = {(str(r.kind), int(r.layer), int(r.head)): float(r.contribution) for r in cells.itertuples()}
    keys = [("mlp", -1)] + ([("head", h) for h in heads] if heads else [("attn", -1)])
    z = [[_cell(value.get((kind, layer, head), float("nan"))) for layer in layers] for kind, head in keys]
    extra = table[table["kind"].isin(["embed", "injected"])]
    notes = ", ".join(f"{r.component} {float(r.contribution):+.3f}" for r in extra.itertuples())
    attrs = getattr(table, "attrs", {})
    if title is None:
        change = attrs.get("logit_change")
        title = (f"Change of each component's direct contribution to {attrs.get('target', 'the target')}"
                 + (f" — total {change:+.3f}, norm gap {attrs.get('norm_gap', 0.0):+.3f}" if change is not None else ""))
    fig = go.Figure(go.Heatmap(z=z, x=layers, y=labels, colorscale="RdBu", zmid=0.0,
                               colorbar={"title": "Δ logit"},
                               hovertemplate="layer %{x}, %{y}<br>Δ contribution %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title + (f"<br><sub>{notes}</sub>" if notes else ""), xaxis=layer_axis(cells["layer"]),
                      yaxis={"autorange": "reversed"}, template="plotly_white")
    return fig


def propagation_figure(table: Any, kinds: Sequence[str] = ("resid_pre", "resid_mid", "resid_post"),
                       title: Optional[str] = None) -> Any:
    """The steering change along the depth of the model: its norm (top) and its cosine with the injected vector (bottom).

    One line per position class; the unsteered residual norm is drawn dotted for scale.

    Args:
        table: The table of :func:`steering.mechanisms.delta_profile`.
        kinds: The hook kinds to draw (default the residual stream; add ``"attn_out"``, ``"mlp_out"``).
        title: Figure title.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"depth": [1.0, 1.5, 2.0], "kind": ["resid_pre", "resid_mid", "resid_post"],
        ...                   "hook": ["a", "b", "c"], "position_class": "steered", "delta_norm": [4.0, 4.1, 4.5],
        ...                   "cos_injected": [1.0, 0.9, 0.8], "resid_norm": [10.0, 11.0, 12.0]})
        >>> [trace.name for trace in propagation_figure(t).data]
        ['steered', 'steered: unsteered ‖resid‖', 'steered']
    """
    from plotly.subplots import make_subplots

    require_columns(table, ["depth", "kind", "hook", "position_class", "delta_norm", "cos_injected", "resid_norm"],
                    "propagation_figure", "pass the table of st.mechanisms.delta_profile(...).")
    part = table[table["kind"].isin(list(kinds))].sort_values("depth", kind="stable")
    if not len(part):
        raise InvalidArgumentError(
            f"propagation_figure: no rows of kinds {list(kinds)}; the table has {sorted(table['kind'].unique())}. "
            "Fix: pass kinds=... from those."
        )
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("‖steered − unsteered‖", "cosine with the injected vector"))
    for cls, group in part.groupby("position_class", sort=False):
        color = _CLASS_COLORS.get(str(cls))
        fig.add_scatter(x=group["depth"], y=group["delta_norm"], name=str(cls), mode="lines+markers", row=1, col=1,
                        line={"color": color}, legendgroup=str(cls), text=group["hook"],
                        hovertemplate="%{text}<br>‖Δ‖ %{y:.3g}<extra></extra>")
        fig.add_scatter(x=group["depth"], y=group["resid_norm"], name=f"{cls}: unsteered ‖resid‖", mode="lines",
                        row=1, col=1, line={"color": color, "dash": "dot"}, legendgroup=str(cls), opacity=0.5)
        fig.add_scatter(x=group["depth"], y=group["cos_injected"], name=str(cls), mode="lines+markers", row=2, col=1,
                        line={"color": color}, legendgroup=str(cls), showlegend=False, text=group["hook"],
                        hovertemplate="%{text}<br>cos %{y:.3f}<extra></extra>")
    attrs = getattr(table, "attrs", {})
    fig.update_layout(title=title or f"Propagation of the steering change (vector at {attrs.get('vector_hook', '?')}, "
                                     f"c = {attrs.get('coeff', '?')})", template="plotly_white")
    fig.update_yaxes(type="log", title="L2 norm (log)", row=1, col=1)
    fig.update_yaxes(range=[-1.05, 1.05], title="cosine", row=2, col=1)
    fig.update_xaxes(title="layer (resid_pre = l, resid_mid = l + ½, resid_post = l + 1)", row=2, col=1)
    return fig


def patching_figure(table: Any, prompt: Optional[str] = None, title: Optional[str] = None) -> Any:
    """Heatmap of the recovered share per layer × position, the prompt's tokens on the x axis.

    Args:
        table: The table of :func:`steering.mechanisms.patch_effect`.
        prompt: Which prompt to show when the table has several (default the first).
        title: Figure title.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"layer": [1, 1], "position": [0, 1], "token": ["<s>", " hi"], "recovered": [0.0, 1.0]})
        >>> list(patching_figure(t).data[0].x)
        ["0: '<s>'", "1: ' hi'"]
    """
    import plotly.graph_objects as go

    require_columns(table, ["layer", "position", "token", "recovered"], "patching_figure",
                    "pass the table of st.mechanisms.patch_effect(...).")
    part = table
    if "prompt" in table.columns:
        prompts = list(table["prompt"].drop_duplicates())
        chosen = prompts[0] if prompt is None else prompt
        if chosen not in prompts:
            raise InvalidArgumentError(
                f"patching_figure: prompt={prompt!r} is not in the table; it has {prompts}. Fix: pass one of those."
            )
        part = table[table["prompt"] == chosen]
    reject_duplicate_cells(part, ["layer", "position"], "patching_figure: ", "pass one prompt's rows.")
    layers = sorted(int(x) for x in part["layer"].unique())
    positions = sorted(int(x) for x in part["position"].unique())
    token = {int(r.position): str(r.token) for r in part.itertuples()}
    value = {(int(r.layer), int(r.position)): float(r.recovered) for r in part.itertuples()}
    z = [[_cell(value.get((layer, pos), float("nan"))) for pos in positions] for layer in layers]
    labels = [f"{pos}: {show_token(token[pos])}" for pos in positions]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=layers, colorscale="RdBu", zmid=0.0, colorbar={"title": "recovered"},
                               hovertemplate="layer %{y}, %{x}<br>recovered %{z:.3f}<extra></extra>"))
    mode = str(part["mode"].iloc[0]) if "mode" in part.columns else "denoise"
    fig.update_layout(title=title or f"Share of the steering effect carried by each residual cell ({mode})",
                      xaxis={"title": "position: token"}, yaxis=layer_axis(part["layer"]), template="plotly_white")
    return fig


def position_effects_figure(table: Any, title: Optional[str] = None) -> Any:
    """Bars with 95% intervals: the effect with each vector position knocked out and alone; lines for full and summed.

    Args:
        table: The table of :func:`steering.mechanisms.position_effects`.
        title: Figure title.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"variant": ["full", "knockout", "alone", "summed"], "position": [-1, 1, 1, -1],
        ...                   "token": ["", "a", "a", ""], "effect": [1.0, 0.2, 0.8, 2.0], "ci_low": 0.0, "ci_high": 3.0})
        >>> [trace.name for trace in position_effects_figure(t).data]
        ['knockout', 'alone']
    """
    import plotly.graph_objects as go

    require_columns(table, ["variant", "position", "token", "effect", "ci_low", "ci_high"], "position_effects_figure",
                    "pass the table of st.mechanisms.position_effects(...).")
    fig = go.Figure()
    for variant, color in (("knockout", "#9aa5b1"), ("alone", "#d1495b")):
        part = table[table["variant"] == variant].sort_values("position")
        if not len(part):
            continue
        labels = [f"{int(p)}: {show_token(t)}" for p, t in zip(part["position"], part["token"])]
        fig.add_bar(x=labels, y=part["effect"], name=variant, marker_color=color,
                    error_y={"type": "data", "symmetric": False, "array": part["ci_high"] - part["effect"],
                             "arrayminus": part["effect"] - part["ci_low"]})
    for variant, dash in (("full", "solid"), ("summed", "dash")):
        row = table[table["variant"] == variant]
        if len(row):
            fig.add_hline(y=float(row["effect"].iloc[0]), line_dash=dash, annotation_text=variant)
    metric = str(table["metric"].iloc[0]) if "metric" in table.columns else "effect"
    fig.update_layout(title=title or f"Which vector positions steer ({metric}, mean and 95% CI over prompts)",
                      barmode="group", xaxis={"title": "vector position: p+ token"},
                      yaxis={"title": "Δ log-prob (nats)" if metric == "logprob" else "KL (nats)"},
                      template="plotly_white")
    return fig


def attention_figure(table: Any, title: Optional[str] = None) -> Any:
    """Heatmap of the change of attention mass on the steered positions, head × layer.

    Args:
        table: The table of :func:`steering.mechanisms.attention_to_steered`.
        title: Figure title.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"layer": [0, 0], "head": [0, 1], "change": [0.0, 0.1]})
        >>> [list(row) for row in attention_figure(t).data[0].z]
        [[0.0], [0.1]]
    """
    import plotly.graph_objects as go

    require_columns(table, ["layer", "head", "change"], "attention_figure",
                    "pass the table of st.mechanisms.attention_to_steered(...).")
    reject_duplicate_cells(table, ["layer", "head"], "attention_figure: ", "pass one table per vector.")
    layers = sorted(int(x) for x in table["layer"].unique())
    heads = sorted(int(x) for x in table["head"].unique())
    value = {(int(r.layer), int(r.head)): float(r.change) for r in table.itertuples()}
    z = [[_cell(value.get((layer, head), float("nan"))) for layer in layers] for head in heads]
    fig = go.Figure(go.Heatmap(z=z, x=layers, y=heads, colorscale="RdBu", zmid=0.0, colorbar={"title": "Δ mass"},
                               hovertemplate="layer %{x}, head %{y}<br>Δ mass %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title or "Change of attention from later positions to the steered positions",
                      xaxis=layer_axis(table["layer"]), yaxis={"title": "head"}, template="plotly_white")
    return fig
