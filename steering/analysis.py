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
from .errors import InvalidArgumentError, warn_user
from .extract import _run_hooks, tokenize_prompt
from .vectors import SteeringVector

__all__ = ["norm_profile", "norm_diagnostics"]


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


def norm_diagnostics(
    model: Any,
    vectors: Any,
    prompts: Any = None,
    *,
    threshold: Any = 2.0,
    warn: bool = True,
) -> Any:
    """Each vector position's norm against the typical residual norm at its layer and position.

    The residual norms come from one forward pass over reference ``prompts`` (default
    :data:`steering.NEUTRAL_TEXTS`). Many models carry a *massive activation* at the
    first position(s) after BOS; an ActAdd difference there inherits it, dwarfs the
    rest of the residual stream and tends to stop steering (measured on SmolLM2-135M:
    from layer 3 the " weddings" − " " difference right after BOS has norm ~200–430 and
    front ActAdd there no longer raises the topic's log-probability, while at layer 1,
    norm ~85, it adds ~2 nats). A :class:`~steering.errors.SteeringWarning` names every
    position whose norm exceeds ``threshold ×`` the layer's typical residual norm
    (median over the reference prompts' non-BOS positions).

    Args:
        model: The bridge.
        vectors: A :class:`SteeringVector` or a list (e.g. from :func:`steering.actadd_layers`).
        prompts: Reference texts for the residual norms.
        threshold: Ratio to the typical residual norm above which a position is flagged.
        warn: Emit the warning (the ``flagged`` column is filled either way).

    Returns:
        A tidy ``pandas.DataFrame``, one row per vector × position, columns ``layer``,
        ``hook``, ``position``, ``vector_token``, ``vector_norm``, ``resid_norm`` (median
        residual norm at that position of the reference prompts), ``typical_resid_norm``
        (median over all their non-BOS positions), ``ratio`` (``vector_norm /
        resid_norm``), ``share`` (the position's share of the vector's squared norm) and
        ``flagged``. Plot it with :func:`steering.norm_layers_figure`.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vecs = st.actadd_layers(model, "love", "hate", layers="all")
        >>> table = st.norm_diagnostics(model, vecs, ["a quiet day in town"], warn=False)
        >>> table.groupby("layer")["position"].count().tolist()
        [5, 5]
    """
    import pandas as pd

    from .metrics import NEUTRAL_TEXTS, _check_texts, _right_pad

    vectors = [vectors] if isinstance(vectors, SteeringVector) else list(vectors) if isinstance(vectors, (list, tuple)) else None
    if not vectors or not all(isinstance(v, SteeringVector) for v in vectors):
        raise InvalidArgumentError(
            "vectors must be a SteeringVector or a non-empty list of them. Fix: pass st.actadd_layers(model, pos, neg, 'all')."
        )
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise InvalidArgumentError(f"threshold={threshold!r}; allowed: a number > 0. Fix: pass e.g. threshold=2.0.")
    prompts = _check_texts("prompts", NEUTRAL_TEXTS if prompts is None else prompts)
    for vec in vectors:
        vec.check_compatible(model)
    seqs = [tokenize_prompt(model, p) for p in prompts]
    tok = model.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    tokens, mask = _right_pad(seqs, pad_id)
    names = sorted({v.hook_name for v in vectors})
    acts = _run_hooks(model, tokens, names, attention_mask=mask)
    real = mask.bool()
    rows = []
    flagged_msgs = []
    for vec in vectors:
        norms = torch.linalg.vector_norm(acts[vec.hook_name].float().cpu(), dim=-1)  # [batch, pos]
        body = real.clone()
        body[:, 0] = False
        typical = float(norms[body].median()) if bool(body.any()) else float("nan")
        vnorm = vec.norm().float().cpu().reshape(-1)
        total = float((vnorm**2).sum()) or 1.0
        vec_tokens = vec.tokens.get("pos", [])
        for p in range(vnorm.shape[0]):
            at = norms[:, p][real[:, p]] if p < norms.shape[1] else torch.empty(0)
            resid = float(at.median()) if at.numel() else float("nan")
            value = float(vnorm[p])
            flag = bool(value > threshold * typical)
            token = vec_tokens[p] if p < len(vec_tokens) else ""
            rows.append({"layer": vec.layer, "hook": vec.hook_name, "position": p, "vector_token": token,
                         "vector_norm": value, "resid_norm": resid, "typical_resid_norm": typical,
                         "ratio": value / resid if resid == resid and resid > 0 else float("nan"),
                         "share": value**2 / total, "flagged": flag})
            if flag:
                flagged_msgs.append(f"layer {vec.layer} pos {p} {token!r}: {value:.0f} = {value / typical:.1f}× the typical "
                                    f"residual norm {typical:.0f}")
    if warn and flagged_msgs:
        shown = "; ".join(flagged_msgs[:6]) + (f"; … {len(flagged_msgs) - 6} more" if len(flagged_msgs) > 6 else "")
        warn_user(
            f"{len(flagged_msgs)} vector position(s) exceed {threshold:g}× the typical residual norm of their layer "
            f"(a massive activation dominates the difference; front ActAdd there tends not to steer): {shown}. "
            "Consider an earlier layer, another prompt pair, or st.mean_diff."
        )
    return pd.DataFrame(rows)
