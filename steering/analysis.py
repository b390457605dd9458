"""Measurements that turn a model and a vector into tidy tables (no plotting here).

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> table = st.norm_profile(model, vec, "I am here", coeff=4.0)
    >>> sorted(table["series"].unique())
    ['residual', 'steering (c·v)']
"""

from typing import Any

import torch

from .apply import check_coeff
from .errors import InvalidArgumentError
from .extract import tokenize_prompt
from .vectors import SteeringVector

__all__ = ["norm_profile"]


def norm_profile(model: Any, vector: SteeringVector, prompt: str, coeff: float = 1.0) -> Any:
    """Norm of ``coeff · vector`` per position beside the norm of the residual it is added to.

    The residual is the unsteered activation of ``prompt`` at the vector's hook point.
    A ratio far above 1 means the addition dominates the residual at that position
    (the paper reports ~10× for Anger − Calm at c = 10).

    Args:
        model: The bridge the vector belongs to.
        vector: A per-position :class:`SteeringVector` (a direction counts as position 0 onward).
        prompt: The user prompt the vector is added to.
        coeff: The coefficient it would be added with.

    Returns:
        A tidy ``pandas.DataFrame`` with one row per position × series and columns
        ``position``, ``token`` (the prompt's token there), ``vector_token`` (p+'s token),
        ``series`` (``"steering (c·v)"`` or ``"residual"``), ``norm``, ``ratio``
        (steering norm / residual norm, on both rows of a position), ``hook``, ``coeff``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "ab", "", layer=0)
        >>> int(st.norm_profile(model, vec, "hello", coeff=2.0)["position"].max())
        5
    """
    import pandas as pd

    coeff = check_coeff(coeff)
    if not isinstance(vector, SteeringVector):
        raise InvalidArgumentError(f"vector must be a SteeringVector, got {type(vector).__name__}.")
    vector.check_compatible(model)
    tokens = tokenize_prompt(model, prompt).unsqueeze(0).to(model.cfg.device)
    layer = vector.layer
    with torch.no_grad():
        _, cache = model.run_with_cache(
            tokens,
            names_filter=[vector.hook_name],
            **({"stop_at_layer": layer + 1} if layer is not None else {}),
        )
    resid = cache[vector.hook_name][0].float()  # [pos, d_model]
    resid_norm = torch.linalg.vector_norm(resid, dim=-1)
    steer_norm = abs(coeff) * vector.norm().float()
    if steer_norm.ndim == 0:
        steer_norm = steer_norm.expand(resid_norm.shape[0])
    str_tokens = [model.tokenizer.decode([int(t)]) for t in tokens[0]]
    vec_tokens = vector.tokens.get("pos", [])
    rows = []
    for i in range(max(resid_norm.shape[0], steer_norm.shape[0])):
        s = float(steer_norm[i]) if i < steer_norm.shape[0] else 0.0
        r = float(resid_norm[i]) if i < resid_norm.shape[0] else float("nan")
        common = {
            "position": i,
            "token": str_tokens[i] if i < len(str_tokens) else "",
            "vector_token": vec_tokens[i] if i < len(vec_tokens) else "",
            "ratio": s / r if r and r == r else float("nan"),
            "hook": vector.hook_name,
            "coeff": coeff,
        }
        rows.append({**common, "series": "steering (c·v)", "norm": s})
        if i < resid_norm.shape[0]:
            rows.append({**common, "series": "residual", "norm": r})
    return pd.DataFrame(rows)
