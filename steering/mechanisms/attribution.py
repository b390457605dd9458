"""Attribution: which components carry the change of a target logit (direct logit attribution of the change).

The logit of a token is linear in the final residual once the final norm's scale is fixed:
``logit = s · (w ⊙ P(x)) · W_U[:, t] + const`` (``P`` centres for LayerNorm and is the identity
for RMSNorm; ``s`` = 1 / the norm's divisor at that position). The final residual is the sum of
what every component wrote (embeddings, attention heads or layers, MLPs) plus the steering
addition, so with ``s`` frozen at the **steered** run's value the change splits exactly::

    logit_s − logit_u = Σ_c s_s · (Δc · ĝ)  +  (s_s − s_u) · (x_u · ĝ)        ĝ = P(w ⊙ W_U[:, t])
                        └─ contributions ─┘    └────── norm_gap ──────┘

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> t = attribute(model, vec, "I am here today", target="a", coeff=4.0)
    >>> float(t.loc[t.layer < 1, "contribution"].abs().max())          # below the steered layer: exactly 0
    0.0
"""

from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from .._progress import progress_bar
from ..errors import InvalidArgumentError
from ..hooks import n_layers
from ..placement import Positions
from ..vectors import SteeringVector
from .runs import Prompt, Run, cached_pair, check_common, prepared, readout, softcap

__all__ = ["attribute", "per_head_reason", "COMPONENT_KINDS"]

#: The ``kind`` column of :func:`attribute`.
COMPONENT_KINDS = ("embed", "attn", "head", "mlp", "injected")


class _HeadsDoNotAddUp(Exception):
    """The per-head outputs of a model do not reproduce its attention output (fall back to per layer)."""


def per_head_reason(model: Any) -> str:
    """Why per-head attribution is not exact on ``model`` (``""`` when it is).

    Example:
        >>> from steering.testing import tiny_model
        >>> per_head_reason(tiny_model())
        ''
    """
    block = model.blocks[0]
    if any(hasattr(block, name) for name in ("ln1_post", "ln2_post")):
        return ("the attention output is normalised after the heads are summed (a post-attention RMSNorm, as in "
                "Gemma 2/3), so one head's share of it is not linear in the head's output; attention is "
                "attributed per layer")
    if getattr(block.attn, "W_O", None) is None or "blocks.0.attn.hook_z" not in model.hook_dict:
        return "the bridge exposes no per-head outputs (attn.hook_z and W_O); attention is attributed per layer"
    return ""


def _final_norm(model: Any) -> tuple[Float[Tensor, " d_model"], Float[Tensor, " d_model"], bool]:
    """``(w, b, centre)`` of the final norm read as ``y = s · w ⊙ P(x) + b``."""
    module = getattr(model.ln_final, "original_component", model.ln_final)
    d = int(model.cfg.d_model)
    if isinstance(module, torch.nn.LayerNorm):
        bias = module.bias if module.bias is not None else torch.zeros(d)
        return module.weight.detach().float().cpu(), bias.detach().float().cpu(), True
    probe = torch.full((1, 1, d), 1e3, dtype=next(module.parameters()).dtype, device=model.cfg.device)
    with torch.no_grad():  # an RMS norm of k·1 is w_eff (k² ≫ eps): its weight, or Gemma's (1 + weight)
        weight = module(probe)[0, 0].float().cpu()
    return weight, torch.zeros(d), False


def _scale(x: Float[Tensor, " d_model"], y: Float[Tensor, " d_model"], norm: tuple) -> float:
    """The final norm's ``s`` at one position, from its input ``x`` and output ``y`` (least squares, checked)."""
    w, b, centre = norm
    a = w * ((x - x.mean()) if centre else x)
    s = float(((y - b) @ a) / (a @ a))
    if float(torch.linalg.vector_norm(y - (s * a + b))) > 1e-3 * float(torch.linalg.vector_norm(y)) + 1e-5:
        raise InvalidArgumentError(
            "attribute: the model's final norm is not of the form y = s·w⊙x (+ b) that direct attribution needs "
            "(its output does not fit it); allowed: models with a final LayerNorm or RMSNorm. Fix: use "
            "st.mechanisms.patch_effect, which needs no linear readout."
        )
    return s


def _component_deltas(model: Any, vector: SteeringVector, base: Run, steered: Run, prompt: Prompt,
                      heads: bool) -> list[tuple[str, str, int, int, Tensor]]:
    """``(component, kind, layer, head, Δ written at the last position)`` for every component."""
    last = prompt.seq - 1

    def diff(name: str) -> Tensor:
        return steered.cache[name][last] - base.cache[name][last]

    out = [("embed", "embed", -1, -1, diff("hook_embed") + (diff("hook_pos_embed") if "hook_pos_embed" in
                                                             base.cache else 0.0))]  # type: ignore[operator]
    for layer in range(n_layers(model)):
        if heads:
            w_o = model.blocks[layer].attn.W_O.detach().float().cpu()  # [head, d_head, d_model]
            z = f"blocks.{layer}.attn.hook_z"
            dz = steered.cache[z][last] - base.cache[z][last]  # [head, d_head]
            out += [(f"L{layer}H{h}", "head", layer, h, dz[h] @ w_o[h]) for h in range(w_o.shape[0])]
        else:
            attn = diff(f"blocks.{layer}.hook_attn_out")
            if vector.layer == layer and vector.hook == "attn_out":
                attn = attn - prompt.added[last]  # the steering is its own row
            out.append((f"attn {layer}", "attn", layer, -1, attn))
        mlp = diff(f"blocks.{layer}.hook_mlp_out")
        if vector.layer == layer and vector.hook == "mlp_out":
            mlp = mlp - prompt.added[last]
        out.append((f"mlp {layer}", "mlp", layer, -1, mlp))
    out.append(("injected", "injected", int(vector.layer or 0), -1, prompt.added[last]))
    return out


def _names(model: Any, heads: bool) -> list[str]:
    count = n_layers(model)
    names = ["hook_embed"] + (["hook_pos_embed"] if "hook_pos_embed" in model.hook_dict else [])
    for layer in range(count):
        names += [f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"]
        names += [f"blocks.{layer}.attn.hook_z"] if heads else []
    return names + [f"blocks.{count - 1}.hook_resid_post", "ln_final.hook_out"]


def _heads_add_up(model: Any, base: Run) -> bool:
    """Do the per-head outputs (``hook_z · W_O`` + ``b_O``) reproduce ``hook_attn_out`` at every layer?"""
    for layer in range(n_layers(model)):
        attn = model.blocks[layer].attn
        w_o = attn.W_O.detach().float().cpu()
        total = torch.einsum("phd,hdm->pm", base.cache[f"blocks.{layer}.attn.hook_z"], w_o)
        if getattr(attn, "b_O", None) is not None:
            total = total + attn.b_O.detach().float().cpu()
        out = base.cache[f"blocks.{layer}.hook_attn_out"]
        if float((total - out).abs().max()) > 1e-3 * float(out.abs().max()) + 1e-5:
            return False
    return True


def _one_prompt(model: Any, vector: SteeringVector, coeff: float, prompt: Prompt, weights: Tensor,
                heads: bool, norm: tuple) -> tuple[list[tuple], dict]:
    """The rows and the totals of one prompt."""
    base, steered = cached_pair(model, vector, coeff, prompt, _names(model, heads))
    if heads and not _heads_add_up(model, base):
        raise _HeadsDoNotAddUp
    last = prompt.seq - 1
    final = f"blocks.{n_layers(model) - 1}.hook_resid_post"
    index = weights.nonzero().flatten()
    u = model.W_U.detach().float().cpu()[:, index] @ weights[index]  # the target's unembedding direction
    w, _, centre = norm
    g = (w * u).double()
    g = g - g.mean() if centre else g
    s_u = _scale(base.cache[final][last], base.cache["ln_final.hook_out"][last], norm)
    s_s = _scale(steered.cache[final][last], steered.cache["ln_final.hook_out"][last], norm)
    rows = [(name, kind, layer, head, s_s * float(d.double() @ g))
            for name, kind, layer, head, d in _component_deltas(model, vector, base, steered, prompt, heads)]
    if softcap(model):  # the decomposition is of the logits before the soft-cap (the bias b_U cancels)
        change = float((steered.cache["ln_final.hook_out"][last] - base.cache["ln_final.hook_out"][last]) @ u)
    else:
        change = float((steered.logits[last] - base.logits[last])[index] @ weights[index])
    gap = (s_s - s_u) * float(base.cache[final][last].double() @ g)
    return rows, {"prompt": prompt.text, "logit_change": change, "norm_gap": gap,
                  "scale_steered": s_s, "scale_unsteered": s_u}


def attribute(
    model: Any,
    vector: SteeringVector,
    prompts: Any,
    target: Any,
    coeff: Any = 4.0,
    positions: Optional[Positions] = None,
    *,
    progress: Optional[bool] = None,
) -> Any:
    """The change (steered − unsteered) of each component's direct contribution to a target's logit.

    At the last prompt position, every component's write to the residual stream is read through
    the final norm and the unembedding with the norm's scale frozen at the **steered** run's
    value (see the module notes), so the rows add up exactly: ``contribution.sum() +
    attrs["norm_gap"] == attrs["logit_change"]`` to float precision, where ``logit_change`` is
    the true change of the model's output logit and ``norm_gap`` what the frozen scale leaves out
    (the unsteered residual re-scaled). Components are the embeddings, each attention head
    (layer, head) where a head's output is linear in what it writes — else each attention layer,
    with the reason in ``attrs["per_head_reason"]`` (Gemma 3 normalises the attention output
    after the heads are summed) — each MLP, and the steering addition's own direct path
    (``"injected"``: ``c·v`` at that position, 0 when a front vector does not reach it).
    Components in layers below the steered one contribute exactly 0.

    Gemma 3 scales its embeddings by √d_model and ties them to the unembedding: the embedding row
    is read at ``hook_embed``, after the scaling, and ``W_U`` is the tied matrix. A final logit
    soft-cap (none on the built-in models) is not linear: with one, the decomposition and
    ``logit_change`` are of the logits before the cap (``attrs["softcap"]``).

    Args:
        model: The bridge.
        vector: The steering vector.
        prompts: A prompt or a list; contributions are averaged over them.
        target: A token (string — its first token — or id), or a pair ``(" good", " bad")`` for the
            logit difference ``good − bad``.
        coeff: The coefficient.
        positions: Position rule (default: the vector's).
        progress: Show a progress bar (default: with more than 4 prompts).

    Returns:
        A tidy ``pandas.DataFrame``, one row per component, columns ``component``, ``kind``
        (``"embed"``, ``"attn"``, ``"head"``, ``"mlp"``, ``"injected"``), ``layer`` (−1 for the
        embeddings), ``head`` (−1 unless a head), ``contribution`` (mean over prompts). ``attrs``:
        ``logit_change``, ``norm_gap`` (means), ``target``, ``coeff``, ``per_head``,
        ``per_head_reason``, ``scale`` ("steered"), ``softcap`` and ``per_prompt`` (a list of
        each prompt's totals and norm scales).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> t = attribute(model, vec, ["I am here today"], target=("a", "b"), coeff=4.0)
        >>> sorted(t["kind"].unique())
        ['embed', 'head', 'injected', 'mlp']
        >>> bool(abs(t.contribution.sum() + t.attrs["norm_gap"] - t.attrs["logit_change"]) < 1e-4)
        True
    """
    import pandas as pd

    vector, texts, coeff = check_common(model, vector, prompts, coeff)
    label, weights, _ = readout(model, target)
    reason = per_head_reason(model)
    norm = _final_norm(model)
    show = progress if progress is not None else len(texts) > 4
    prompts_ = [prepared(model, vector, text, coeff, positions) for text in texts]
    try:
        per_rows, totals = _all_prompts(model, vector, coeff, prompts_, weights, not reason, norm, show)
    except _HeadsDoNotAddUp:  # checked on the first prompt, before any row is kept
        reason = "the per-head outputs (hook_z · W_O + b_O) do not add up to hook_attn_out on this model"
        per_rows, totals = _all_prompts(model, vector, coeff, prompts_, weights, False, norm, show)
    return _table(pd, per_rows, totals, label, coeff, reason, model)


def _all_prompts(model: Any, vector: SteeringVector, coeff: float, prompts: list[Prompt], weights: Tensor,
                 heads: bool, norm: tuple, show: bool) -> tuple[list[list[tuple]], list[dict]]:
    per_rows, totals = [], []
    with progress_bar(total=len(prompts), desc="attribute", unit="prompt", disable=not show, leave=False) as bar:
        for prompt in prompts:
            rows, total = _one_prompt(model, vector, coeff, prompt, weights, heads, norm)
            per_rows.append(rows)
            totals.append(total)
            bar.update(1)
    return per_rows, totals


def _table(pd: Any, per_rows: list[list[tuple]], totals: list[dict], label: str, coeff: float, reason: str,
           model: Any) -> Any:
    """One row per component: the mean over prompts, the totals in ``attrs``."""
    frames = [pd.DataFrame(rows, columns=["component", "kind", "layer", "head", "contribution"]) for rows in per_rows]
    keys = ["component", "kind", "layer", "head"]
    table = pd.concat(frames).groupby(keys, sort=False, as_index=False)["contribution"].mean()
    mean = {k: sum(t[k] for t in totals) / len(totals) for k in ("logit_change", "norm_gap")}
    table.attrs.update(mean, target=label, coeff=coeff, per_head=not reason, per_head_reason=reason,
                       scale="steered", softcap=softcap(model), per_prompt=totals)
    return table
