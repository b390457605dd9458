"""Norms: the steering addition against the residual stream it is added to (no plotting here).

All three measures read residual norms the same way (:func:`residual_norms`: one forward pass,
right-padded with an attention mask, stopping after the vector's layer):

* :func:`norm_profile` — ``‖c·v‖`` per position beside the residual norm of one prompt;
* :func:`norm_diagnostics` — every vector position against the typical residual norm of its
  layer on reference texts, flagging massive activations;
* :func:`relative_norm` — one number: the vector's norm over the typical residual norm.

Example:
    >>> from steering import actadd
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> table = norm_profile(model, actadd(model, "love", "hate", layer=1), "I am here", coeff=4.0)
    >>> sorted(table["series"].unique())
    ['residual', 'steering (c·v)']
"""

from typing import Any, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .activations import read_activations
from .errors import InvalidArgumentError, warn_user
from .lens import token_label
from .texts import NEUTRAL_TEXTS
from .tokens import fill_id, right_pad, tokenize_prompt
from .validate import coeff as check_coeff
from .validate import describe, number, shown, text_list
from .validate import flag as check_flag
from .vectors import SteeringVector, vector_list

__all__ = ["norm_profile", "norm_diagnostics", "relative_norm", "residual_norms"]


def _texts(prompts: Optional[Sequence[str]]) -> list[str]:
    return text_list("prompts", NEUTRAL_TEXTS if prompts is None else prompts,
                     allowed="a non-empty list of non-empty strings", example="st.texts.NEUTRAL_TEXTS")


def _one_vector(vector: Any) -> SteeringVector:
    vectors = vector_list(vector)
    if len(vectors) != 1:
        raise InvalidArgumentError(f"vector is a list of {len(vectors)} vectors; allowed: one SteeringVector here. "
                                   "Fix: pass one, or call st.norm_diagnostics(model, vectors) for several.")
    return vectors[0]


def residual_norms(
    model: Any,
    names: Sequence[str],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
) -> dict[str, Float[Tensor, "batch pos"]]:
    """L2 norm of the residual at each hook in ``names``, per row and position (float32, on CPU).

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> norms = residual_norms(tiny_model(), ["blocks.1.hook_resid_pre"], torch.tensor([[1, 4, 5]]))
        >>> tuple(norms["blocks.1.hook_resid_pre"].shape)
        (1, 3)
    """
    acts = read_activations(model, tokens, names, attention_mask=attention_mask)
    return {name: torch.linalg.vector_norm(act.float().cpu(), dim=-1) for name, act in acts.items()}


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
    vector = _one_vector(vector)
    vector.check_compatible(model)
    if not isinstance(prompt, str):
        raise InvalidArgumentError(f"prompt={shown(prompt)} is {describe(prompt)}; allowed: one prompt string. "
                                   "Fix: pass e.g. prompt='I went up to my friend and said'.")
    text_list("prompt", prompt)  # the empty string: EmptyPromptError, as everywhere else
    tokens = tokenize_prompt(model, prompt).unsqueeze(0)
    resid_norm = residual_norms(model, [vector.hook_name], tokens)[vector.hook_name][0]  # [pos]
    steer_norm = abs(coeff) * vector.norm().float()
    if steer_norm.ndim == 0:
        steer_norm = steer_norm.expand(resid_norm.shape[0])
    str_tokens = [token_label(model.tokenizer, int(t)) for t in tokens[0]]
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

    vectors = vector_list(vectors, "vectors")
    threshold = number("threshold", threshold, 0, above=True, example=2.0)
    warn = check_flag("warn", warn)
    prompts = _texts(prompts)
    for vec in vectors:
        vec.check_compatible(model)
    tokens, mask = right_pad([tokenize_prompt(model, p) for p in prompts], fill_id(model))
    norms_at = residual_norms(model, sorted({v.hook_name for v in vectors}), tokens, mask)
    real = mask.bool()
    rows = []
    flagged_msgs = []
    for vec in vectors:
        norms = norms_at[vec.hook_name]  # [batch, pos]
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
        listed = "; ".join(flagged_msgs[:6]) + (f"; … {len(flagged_msgs) - 6} more" if len(flagged_msgs) > 6 else "")
        warn_user(
            f"{len(flagged_msgs)} vector position(s) exceed {threshold:g}× the typical residual norm of their layer "
            f"(a massive activation dominates the difference; front ActAdd there tends not to steer): {listed}. "
            "Consider an earlier layer, another prompt pair, or st.mean_diff."
        )
    return pd.DataFrame(rows)


def relative_norm(model: Any, vector: SteeringVector, prompts: Optional[Sequence[str]] = None) -> float:
    """The vector's norm divided by the typical (median) residual norm at its hook.

    The residual norm is measured on ``prompts`` (default :data:`steering.texts.NEUTRAL_TEXTS`)
    at the vector's hook point, over all
    positions but BOS (the BOS position is an attention sink whose norm is often 10–100×
    the others). For a per-position vector, the largest position norm is used.
    Multiply by the coefficient to compare ``c·v`` with the residual (the paper reports
    ~10× for Anger − Calm at c = 10 on GPT-2-XL).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> relative_norm(model, vec, ["some neutral text"]) > 0
        True
    """
    vector = _one_vector(vector)
    vector.check_compatible(model)
    prompts = _texts(prompts)
    tokens, mask = right_pad([tokenize_prompt(model, p) for p in prompts], fill_id(model))
    norms = residual_norms(model, [vector.hook_name], tokens, mask)[vector.hook_name]  # [batch, pos]
    keep = mask.bool().clone()
    keep[:, 0] = False  # drop each row's BOS (right padding: every row starts at column 0)
    typical = float(norms[keep].median())
    return float(vector.norm().max()) / typical
