"""Propagation: how the steering change travels through the residual stream after it is added.

:func:`delta_profile` compares a steered and an unsteered forward pass of the same tokens at every
hook point from the steered one on, per class of positions.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> table = delta_profile(model, vec, ["I am here today"], coeff=4.0)
    >>> sorted(table["position_class"].unique())
    ['later', 'steered']
"""

from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from .._progress import progress_bar
from ..errors import UnknownHookError
from ..hooks import hook_name, n_layers
from ..placement import Positions
from ..validate import count, flag
from ..vectors import SteeringVector
from .runs import Prompt, cached_pair, check_common, greedy_continuation, prepared

__all__ = ["delta_profile", "hook_points", "HOOK_ORDER", "POSITION_CLASSES"]

#: The hook kinds of one block in the order the forward pass reaches them.
HOOK_ORDER = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
_DEPTH = {"resid_pre": 0.0, "attn_out": 0.25, "resid_mid": 0.5, "mlp_out": 0.75, "resid_post": 1.0}
#: Position classes of :func:`delta_profile`.
POSITION_CLASSES = ("steered", "later", "generated")


def hook_points(model: Any, vector: Optional[SteeringVector] = None) -> list[tuple[int, str, str]]:
    """``(layer, kind, name)`` of every block hook point in forward order, from ``vector``'s on (all without one).

    Hook kinds the bridge lacks (``attn_out`` / ``mlp_out`` on some architectures) are skipped.

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_mid")
        >>> [kind for _, kind, _ in hook_points(model, vec)]
        ['resid_mid', 'mlp_out', 'resid_post']
    """
    points = []
    for layer in range(n_layers(model)):
        for kind in HOOK_ORDER:
            try:
                points.append((layer, kind, hook_name(model, layer, kind)))
            except UnknownHookError:
                continue
    if vector is None:
        return points
    names = [name for _, _, name in points]
    if vector.hook_name in names:
        return points[names.index(vector.hook_name):]
    return [p for p in points if p[0] >= int(vector.layer or 0)]


def _classes(prompt: Prompt) -> list[Optional[str]]:
    """Each position's class: steered, later (unsteered prompt positions after the first steered one), generated."""
    steered = prompt.steered.tolist()
    first = steered.index(True) if True in steered else prompt.seq
    out: list[Optional[str]] = []
    for p in range(prompt.seq):
        if steered[p]:
            out.append("steered")
        elif p >= prompt.prompt_len:
            out.append("generated")
        else:
            out.append("later" if p > first else None)  # before the first steered cell nothing can change
    return out


def _per_position(delta: Float[Tensor, "seq d_model"], resid: Float[Tensor, "seq d_model"],
                  prompt: Prompt) -> dict[str, Tensor]:
    """Norm of the change, its projection on and cosine with the injected vector, and the residual norm."""
    ref = torch.where(prompt.steered.unsqueeze(-1), prompt.added, prompt.injected_total.expand_as(prompt.added))
    dn = torch.linalg.vector_norm(delta, dim=-1)
    rn = torch.linalg.vector_norm(ref, dim=-1)
    along = (delta * ref).sum(-1) / rn.where(rn > 0, torch.ones_like(rn))
    along = along.where(rn > 0, torch.full_like(along, float("nan")))
    cos = along / dn.where(dn > 0, torch.full_like(dn, float("nan")))
    return {"dn": dn, "along": along, "cos": cos, "retained": along / rn, "resid": torch.linalg.vector_norm(resid, dim=-1)}


def _summary(values: list[dict[str, Tensor]]) -> dict[str, float]:
    """One class's statistics over its positions (every prompt pooled)."""
    cat = {k: torch.cat([v[k] for v in values]) for k in values[0]}
    dn2 = float((cat["dn"] ** 2).sum())
    along2 = float((cat["along"].nan_to_num(0.0) ** 2).sum())
    nan = float("nan")
    return {
        "delta_norm": float(cat["dn"].mean()),
        "cos_injected": float(cat["cos"].nanmean()) if bool(cat["cos"].isfinite().any()) else nan,
        "frac_injected": along2 / dn2 if dn2 > 0 else nan,
        "retained": float(cat["retained"].nanmean()) if bool(cat["retained"].isfinite().any()) else nan,
        "resid_norm": float(cat["resid"].mean()),
        "n_positions": int(cat["dn"].numel()),
    }


def _prompts(model: Any, vector: SteeringVector, texts: list[str], coeff: float, positions: Optional[Positions],
             max_new_tokens: Optional[int]) -> list[Prompt]:
    out = []
    for text in texts:
        prompt = prepared(model, vector, text, coeff, positions)
        if max_new_tokens:
            tokens = greedy_continuation(model, vector, coeff, prompt, max_new_tokens)
            prompt = prepared(model, vector, text, coeff, positions, tokens=tokens, prompt_len=prompt.prompt_len)
        out.append(prompt)
    return out


def delta_profile(
    model: Any,
    vector: SteeringVector,
    prompts: Any,
    coeff: Any = 4.0,
    positions: Optional[Positions] = None,
    max_new_tokens: Optional[int] = None,
    *,
    include_before: bool = False,
    progress: Optional[bool] = None,
) -> Any:
    """How the steering change propagates: the steered − unsteered residual at every later hook point.

    For each prompt the same token sequence runs twice, unsteered and steered (``coeff · vector``
    at the positions :mod:`steering.placement` picks). At every hook point from the steered one on
    (``resid_pre``, ``attn_out``, ``resid_mid``, ``mlp_out``, ``resid_post`` of each block, in
    forward order) the change ``Δ = steered − unsteered`` is measured per position and pooled over
    the prompts within each position class:

    * ``"steered"`` — positions that received a non-zero addition (a front ActAdd vector's BOS
      row is zero, so BOS is not one);
    * ``"later"`` — unsteered prompt positions after the first steered one (reached only through
      attention);
    * ``"generated"`` — with ``max_new_tokens``: the steered run's greedy continuation is
      generated first (full passes, the same cells steered as :func:`steering.generate` steers),
      then both passes run on the prompt + continuation, so the tokens are the same and only the
      steering differs.

    The injected vector a position is compared with is what was added there (steered positions),
    else the sum of everything added to the prompt (``Σ_p c·v_p``).

    Args:
        model: The bridge.
        vector: A :class:`~steering.SteeringVector` (per-position ActAdd or a direction).
        prompts: A prompt or a list of prompts.
        coeff: The coefficient.
        positions: Position rule (default: the vector's, see :mod:`steering.placement`).
        max_new_tokens: Greedy tokens to continue each prompt with (``None``: prompt only).
        include_before: Also report the hook points before the steered one (where Δ is exactly 0).
        progress: Show a progress bar (default: with more than 4 prompts).

    Returns:
        A tidy ``pandas.DataFrame``, one row per hook point × position class, columns ``hook``,
        ``layer``, ``kind``, ``depth`` (``layer`` + 0, .25, .5, .75, 1 along the block),
        ``position_class``, ``delta_norm`` (mean ‖Δ‖), ``cos_injected`` (mean cosine of Δ with
        the injected vector; NaN where Δ = 0), ``frac_injected`` (share of Σ‖Δ‖² along the
        injected vector: Σ(Δ·û)² / Σ‖Δ‖²), ``retained`` (mean Δ·û / ‖injected‖: 1 at the
        injection point), ``resid_norm`` (mean unsteered residual norm, for scale),
        ``n_positions``. ``attrs`` holds ``coeff``, ``vector_hook`` and ``injected_norm``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> t = delta_profile(model, vec, "I am here today", coeff=4.0)
        >>> row = t[(t.hook == "blocks.1.hook_resid_pre") & (t.position_class == "steered")].iloc[0]
        >>> round(float(row.cos_injected), 4), round(float(row.retained), 4)      # exact at the injection point
        (1.0, 1.0)
    """
    import pandas as pd

    vector, texts, coeff = check_common(model, vector, prompts, coeff)
    include_before = flag("include_before", include_before)
    if max_new_tokens is not None:
        max_new_tokens = count("max_new_tokens", max_new_tokens, caller="delta_profile", example=8)
    points = hook_points(model, None if include_before else vector)
    names = [name for _, _, name in points]
    pooled: dict[tuple[str, str], list] = {}
    show = progress if progress is not None else len(texts) > 4
    with progress_bar(total=len(texts), desc="delta_profile", unit="prompt", disable=not show, leave=False) as bar:
        for prompt in _prompts(model, vector, texts, coeff, positions, max_new_tokens):
            base, steered = cached_pair(model, vector, coeff, prompt, names)
            classes = _classes(prompt)
            for name in names:
                stats = _per_position(steered.cache[name] - base.cache[name], base.cache[name], prompt)
                for cls in POSITION_CLASSES:
                    keep = torch.tensor([c == cls for c in classes])
                    if bool(keep.any()):
                        pooled.setdefault((name, cls), []).append({k: v[keep] for k, v in stats.items()})
            bar.update(1)
    rows = []
    for layer, kind, name in points:
        for cls in POSITION_CLASSES:
            if (name, cls) in pooled:
                rows.append({"hook": name, "layer": layer, "kind": kind, "depth": layer + _DEPTH[kind],
                             "position_class": cls, **_summary(pooled[(name, cls)])})
    table = pd.DataFrame(rows)
    table.attrs.update(coeff=coeff, vector_hook=vector.hook_name, injected_norm=_injected_norm(vector, coeff))
    return table


def _injected_norm(vector: SteeringVector, coeff: float) -> float:
    """Mean ``|c|·‖v_p‖`` over the vector's non-zero positions."""
    norms = vector.norm().reshape(-1)
    norms = norms[norms > 0]
    return abs(coeff) * float(norms.mean()) if norms.numel() else 0.0

