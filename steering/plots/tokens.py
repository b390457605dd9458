"""Token figures: the tokens a vector promotes and suppresses, and completions token by token.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"row": 0, "label": "steered #0", "position": [0, 1], "token": [" I", " do"],
    ...                   "delta": [0.5, -0.2]})
    >>> list(token_view_figure(t).data[0].text[0])
    ['·I', '·do']
"""

from typing import Any, Optional

from ..errors import InvalidArgumentError, warn_user
from .common import coeff_label, positive_int, reject_duplicate_cells, require_columns, show_token

__all__ = ["token_scores_figure", "token_view_figure"]

# ---------------------------------------------------------------------------------------------
# Token scores (logit lens readouts, log-prob shifts)

_TOKEN_SCORE_COLUMNS = ["source", "layer", "readout", "direction", "rank", "token", "score"]
_X_TITLES = {
    "logit_lens": "logit (vector read through the unembedding)",
    "logprob_shift": "mean Δ log-prob, steered − unsteered (nats)",
}
_DIRECTION_COLORS = {"promoted": "#2a9d8f", "suppressed": "#d1495b"}


def _score_source(table: Any) -> str:
    """The table's one source (``"logit_lens"`` or ``"logprob_shift"``); its directions checked too."""
    import pandas as pd

    sources = list(pd.unique(table["source"]))
    if len(sources) != 1 or sources[0] not in _X_TITLES:
        raise InvalidArgumentError(
            f"token_scores_figure needs one source per table, one of {sorted(_X_TITLES)}; got {sources}. "
            "Fix: filter the table first, e.g. table[table['source'] == 'logit_lens']."
        )
    directions = set(table["direction"])
    if not directions <= set(_DIRECTION_COLORS):
        raise InvalidArgumentError(
            f"token_scores_figure: direction must be 'promoted' or 'suppressed'; got {sorted(map(str, directions))}. "
            "Fix: pass the measurement's table unchanged."
        )
    return sources[0]


def _score_groups(table: Any, max_groups: int) -> list:
    """``(key, rows)`` per panel: (layer, readout), plus coeff when the table has several; at most ``max_groups``."""
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
    return groups


def _panel_title(key: tuple) -> str:
    """``"layer 6 · sum"``, plus ``" · c = 4"`` when the panels split coefficients."""
    parts = [f"layer {key[0]}", str(key[1])]
    if len(key) > 2:
        parts.append(f"c = {coeff_label(key[2])}")
    return " · ".join(parts)


def _add_score_panel(fig: Any, group: Any, first: bool, row: int, col: int) -> list:
    """Add one panel's promoted and suppressed bars, best at the top; return its y labels in order."""
    group = group.sort_values("score", ascending=False, kind="stable")
    labels = [
        f"{'+' if d == 'promoted' else '−'}{int(r)} {show_token(t)}"
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
            showlegend=first,
            marker_color=_DIRECTION_COLORS[direction],
            customdata=list(zip(part["token"].map(show_token), ids, part["rank"])),
            hovertemplate="token %{customdata[0]} (id %{customdata[1]})<br>rank %{customdata[2]}"
            "<br>score %{x:.3f}<extra>" + direction + "</extra>",
            row=row,
            col=col,
        )
    return labels


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
    from plotly.subplots import make_subplots

    if not hasattr(table, "columns") and hasattr(getattr(table, "table", None), "columns"):
        table = table.table  # a result object that carries its tidy table (e.g. TokenScores)
    fix = "pass the table from the logit-lens or log-prob-shift measurement (one source per figure)."
    require_columns(table, _TOKEN_SCORE_COLUMNS, "token_scores_figure", fix)
    max_groups = positive_int(max_groups, "max_groups", "token_scores_figure")
    source = _score_source(table)
    groups = _score_groups(table, max_groups)
    n_cols = 1 if len(groups) == 1 else 2
    n_rows = -(-len(groups) // n_cols)
    # fixed pixel sizes: each panel 40 px + 22 px per bar, 90 px between rows, 210 px of margins
    max_bars = max(len(group) for _, group in groups)
    panel_px, gap_px = 40 + 22 * max_bars, 90
    plot_px = n_rows * panel_px + (n_rows - 1) * gap_px
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=[_panel_title(key) for key, _ in groups],
        horizontal_spacing=0.25,
        vertical_spacing=gap_px / plot_px if n_rows > 1 else 0.0,
    )
    for i, (_, group) in enumerate(groups):
        row, col = i // n_cols + 1, i % n_cols + 1
        labels = _add_score_panel(fig, group, i == 0, row, col)
        fig.update_yaxes(categoryorder="array", categoryarray=labels, autorange="reversed", row=row, col=col)
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
# Token-level view of completions

_TOKEN_VIEW_COLUMNS = ["row", "label", "position", "token", "delta"]


def _cell_text(token: str) -> str:
    """A token as printed in a heatmap cell: spaces and newlines made visible, long tokens cut."""
    text = str(token).replace(" ", "·").replace("\n", "↵").replace("\t", "→")
    return text if len(text) <= 12 else text[:11] + "…"


def _view_rows(table: Any, max_rows: int) -> list:
    """The completions to plot (ids, table order), at most ``max_rows``; duplicated cells refused."""
    reject_duplicate_cells(table.rename(columns={"row": "completion"}), ["completion", "position"],
                           "token_view_figure: ", "pass one row per completion × position.")
    rows = list(table["row"].drop_duplicates())
    if len(rows) > max_rows:
        warn_user(
            f"token_view_figure: the table has {len(rows)} completions; plotting the first {max_rows}. "
            f"Pass max_rows={len(rows)} to see all."
        )
        rows = rows[:max_rows]
    return rows


def _view_cells(by_row: dict, rows: list, width: int) -> tuple[list, list, list]:
    """``z`` (delta, ``None`` past the end), cell text and hover data, one list per completion."""
    z, text, custom = [], [], []
    for r in rows:
        group = by_row[r]
        z_row, t_row, c_row = [None] * width, [""] * width, [["", ""]] * width
        condition = group["condition"] if "condition" in group.columns else [""] * len(group)
        for pos, token, delta, cond in zip(group["position"], group["token"], group["delta"], condition):
            value = float(delta)
            z_row[int(pos)] = value if value == value else None
            t_row[int(pos)] = _cell_text(token)
            c_row[int(pos)] = [show_token(token), str(cond)]
        z.append(z_row)
        text.append(t_row)
        custom.append(c_row)
    return z, text, custom


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

    require_columns(table, _TOKEN_VIEW_COLUMNS, "token_view_figure", "pass the token-level table of completions.")
    max_rows = positive_int(max_rows, "max_rows", "token_view_figure")
    rows = _view_rows(table, max_rows)
    width = int(table["position"].max()) + 1
    by_row = {r: g for r, g in table.groupby("row", sort=False)}
    labels = [str(by_row[r]["label"].iloc[0]) for r in rows]
    labels = [lab if len(lab) <= 48 else lab[:47] + "…" for lab in labels]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} [{r}]" for lab, r in zip(labels, rows)]
    z, text, custom = _view_cells(by_row, rows, width)
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
