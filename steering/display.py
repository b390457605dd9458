"""How a :class:`~steering.vectors.SteeringVector` shows itself: a one-line ``repr`` and an HTML table.

Pure formatting of the vector's fields (no computation beyond its norms), kept apart from the
class so the class file holds behaviour.

Example:
    >>> import torch
    >>> from steering import SteeringVector
    >>> vector_repr(SteeringVector(torch.ones(2, 4), hook_name="blocks.1.hook_resid_pre"))
    'SteeringVector(manual @ blocks.1.hook_resid_pre, shape=2×4, norms=[2, 2], model=None, dtype=float32, device=cpu)'
"""

import html
from typing import Any

__all__ = ["vector_repr", "vector_html", "summary"]


def summary(vec: Any) -> str:
    """A few words for what the vector is (``actadd 'Love' − 'Hate'``, or its method).

    Example:
        >>> import torch
        >>> from steering import SteeringVector
        >>> summary(SteeringVector(torch.ones(4), hook_name="blocks.0.hook_resid_pre", method="pca"))
        'pca'
    """
    if vec.method == "actadd" and "pos" in vec.prompts:
        return f"actadd {vec.prompts['pos']!r} − {vec.prompts['neg']!r}"
    return vec.method


def vector_repr(vec: Any) -> str:
    """The one-line ``repr``: summary, hook, shape, norms (first 8), model, dtype, device."""
    shape = "×".join(str(s) for s in vec.tensor.shape)
    norms = vec.norm()
    if norms.ndim == 0:
        norm_txt = f"norm={float(norms):.3g}"
    else:
        shown = ", ".join(f"{float(n):.3g}" for n in norms[:8]) + (", …" if norms.numel() > 8 else "")
        norm_txt = f"norms=[{shown}]"
    return (
        f"SteeringVector({summary(vec)} @ {vec.hook_name}, shape={shape}, {norm_txt}, "
        f"model={vec.model_name!r}, dtype={str(vec.dtype).removeprefix('torch.')}, device={vec.device})"
    )


def _position_table(vec: Any) -> str:
    esc = html.escape
    pos_tok = vec.tokens.get("pos", [])
    neg_tok = vec.tokens.get("neg", [])
    cells = []
    for i, n in enumerate(vec.norm().tolist()):
        p = esc(repr(pos_tok[i])) if i < len(pos_tok) else ""
        q = esc(repr(neg_tok[i])) if i < len(neg_tok) else ""
        cells.append(f"<tr><td>{i}</td><td>{p}</td><td>{q}</td><td>{n:.3g}</td></tr>")
    return "<table><tr><th>pos</th><th>p+ token</th><th>p− token</th><th>‖v‖</th></tr>" + "".join(cells) + "</table>"


def vector_html(vec: Any) -> str:
    """The notebook view: a settings table, and for a per-position vector each position's tokens and norm."""
    esc = html.escape
    rows = [
        ("method", summary(vec)),
        ("hook", vec.hook_name),
        ("shape", " × ".join(str(s) for s in vec.tensor.shape)),
        ("model", str(vec.model_name)),
        ("padding", str(vec.pad)),
        ("weights", vec.weight_mode),
        ("dtype / device", f"{str(vec.dtype).removeprefix('torch.')} / {vec.device}"),
    ]
    table = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    positions = "" if vec.is_direction else _position_table(vec)
    return f"<div><b>SteeringVector</b><table>{table}</table>{positions}</div>"
