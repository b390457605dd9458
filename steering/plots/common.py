"""Checks and display helpers shared by the figure modules (table columns, counts, layer axes, tokens).

Example:
    >>> show_token(" wedding"), coeff_label(4.0)
    ("' wedding'", '4')
"""

from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["reject_duplicate_cells", "require_columns", "positive_int", "show_token", "layer_axis", "coeff_label"]


def require_columns(table: Any, needed: list[str], func: str, fix: str) -> None:
    """Raise unless ``table`` is a non-empty DataFrame-like object holding every column in ``needed``.

    Args:
        table: The table a figure function was given.
        needed: The columns it must have.
        func: The figure function's name, for the message.
        fix: What the caller should pass instead, for the message.

    Raises:
        InvalidArgumentError: not a DataFrame, a column missing, or no rows.

    Example:
        >>> import pandas as pd
        >>> require_columns(pd.DataFrame({"layer": [1]}), ["layer"], "my_figure", "pass a table.")
        >>> require_columns(pd.DataFrame({"layer": [1]}), ["layer", "rank"], "my_figure", "pass a table.")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: my_figure needs a table with columns ['layer', 'rank']; missing ['rank'] (the table has ['layer']). Fix: pass a table.
    """
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


def positive_int(value: Any, name: str, func: str) -> int:
    """``value`` if it is an int ≥ 1 (bools refused), else an error naming ``func`` and ``name``.

    Example:
        >>> positive_int(3, "max_rows", "token_view_figure")
        3
        >>> positive_int(0, "max_rows", "token_view_figure")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: token_view_figure: max_rows must be a positive int, got 0. Fix: pass e.g. max_rows=6.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{func}: {name} must be a positive int, got {value!r}. Fix: pass e.g. {name}=6.")
    return value


def show_token(token: Any) -> str:
    """A token as ``repr`` shows it, so leading spaces and newlines are visible.

    Example:
        >>> print(show_token(" love\\n"))
        ' love\\n'
    """
    return repr(str(token))


def layer_axis(layers: Any) -> dict:
    """An x axis titled "layer" with one tick per layer when there are few (no 0.5 ticks).

    Args:
        layers: The layer column (a ``pandas.Series``).

    Example:
        >>> import pandas as pd
        >>> layer_axis(pd.Series([0, 3])), layer_axis(pd.Series([0, 40]))
        ({'title': 'layer', 'dtick': 1}, {'title': 'layer'})
    """
    span = float(layers.max()) - float(layers.min())
    return {"title": "layer", "dtick": 1} if span <= 30 else {"title": "layer"}


def coeff_label(coeff: Any) -> str:
    """A coefficient as a short label (``4.0`` → ``"4"``, ``0.5`` → ``"0.5"``).

    Example:
        >>> coeff_label(4.0), coeff_label(-0.5)
        ('4', '-0.5')
    """
    return f"{float(coeff):g}"


def reject_duplicate_cells(table: Any, keys: list[str], where: str, fix: str) -> None:
    """Refuse a table with two rows for one cell (the ``keys`` columns), naming the first such cell.

    Args:
        table: The tidy table a figure draws.
        keys: The columns that identify one cell of the figure.
        where: The start of the message, e.g. ``"norm_layers_figure: "``.
        fix: The end of the message: how to get one row per cell.

    Example:
        >>> import pandas as pd
        >>> reject_duplicate_cells(pd.DataFrame({"layer": [0, 0]}), ["layer"], "f: ", "filter it.")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: f: several rows for layer 0. Fix: filter it.
    """
    dup = table.duplicated(keys)
    if dup.any():
        first = table[dup].iloc[0]
        cell = ", ".join(f"{key} {first[key]}" for key in keys)
        raise InvalidArgumentError(f"{where}several rows for {cell}. Fix: {fix}")
