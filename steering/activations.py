"""Reading activations: the one batched forward pass every extraction method shares.

* :func:`read_activations` — one ``run_with_cache`` over every hook asked for, caching only
  those hooks and stopping after the deepest layer (so a layer-0 read costs one block).
* :func:`prompt_features` — each prompt's activation at a token rule (:data:`TokenRule`:
  its last token, the mean over its tokens, or an index), many prompts batched with left
  padding and an attention mask, so the result does not depend on the batching.
* :func:`check_token_rule` — validates a :data:`TokenRule`.
* :func:`weight_mode` — the weight mode (``"hf"`` or ``"compat"``) activations are read under.

Every prompt gets exactly one BOS first (:func:`steering.tokens.tokenize_prompt`).

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> feats = prompt_features(model, ["I love it", "so good"], ["blocks.1.hook_resid_pre"], token="mean")
    >>> feats["blocks.1.hook_resid_pre"].shape  # [prompt, d_model]
    torch.Size([2, 64])
"""

from typing import Any, Literal, Optional, Sequence, Union

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import ContextLengthError, EmptyPromptError, InvalidArgumentError
from .hooks import layer_of
from .tokens import fill_id, left_pad, tokenize_prompt
from .validate import as_int, describe, shown

__all__ = ["read_activations", "prompt_features", "check_token_rule", "weight_mode", "TokenRule", "WeightMode"]

#: Which token of each prompt :func:`prompt_features` reads: ``"last"``, ``"mean"`` (over the
#: prompt's tokens, BOS excluded), ``"response"`` (the mean from each prompt's given response start
#: on: the assistant turn of a chat text) or an index (BOS is 0, refused; negative from the end).
TokenRule = Union[Literal["last", "mean", "response"], int]
#: ``"hf"`` (the bridge's unprocessed weights) or ``"compat"`` (``enable_compatibility_mode``).
WeightMode = Literal["hf", "compat"]


def weight_mode(model: Any) -> WeightMode:
    """The weight mode activations of ``model`` are read under (a vector is valid only in its mode).

    Example:
        >>> from steering.testing import tiny_model
        >>> weight_mode(tiny_model())
        'hf'
    """
    return "compat" if getattr(model, "compatibility_mode", False) else "hf"


def read_activations(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    names: Sequence[str],
    attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
) -> dict[str, Float[Tensor, "batch ..."]]:
    """One forward pass of ``tokens``, caching only ``names`` and stopping after the deepest block.

    The shared activation reader of ActAdd, the paired-difference directions and the norm
    measures. Pass ``attention_mask`` for left-padded batches (the bridge then derives each
    row's positions from the mask, so padding changes nothing). Runs without gradients.

    Args:
        model: A ``TransformerBridge``.
        tokens: ``[batch, pos]`` token ids (moved to the model's device).
        names: Full block hook names, e.g. ``["blocks.0.hook_resid_pre"]`` (at least one).
        attention_mask: ``[batch, pos]``, 1 for real tokens, 0 for padding; ``None`` for none.

    Returns:
        ``{name: activation}``, each ``[batch, pos, d_model]`` for residual-stream hooks
        (attention-pattern hooks keep their own shape), detached, in the order of ``names``.

    Raises:
        InvalidArgumentError: ``names`` is empty.
        UnknownHookError: a name is not a ``blocks.<layer>.…`` hook.

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> names = ["blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out"]
        >>> acts = read_activations(model, torch.tensor([[1, 4, 5]]), names)
        >>> {name: tuple(a.shape) for name, a in acts.items()}
        {'blocks.0.hook_resid_pre': (1, 3, 64), 'blocks.1.hook_mlp_out': (1, 3, 64)}
    """
    if not names:
        raise InvalidArgumentError(
            "names=[]; allowed: at least one full hook name. Fix: pass e.g. names=['blocks.0.hook_resid_pre']."
        )
    device = model.cfg.device
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask.to(device)}
    stop = max(layer_of(name) for name in names) + 1
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(device), names_filter=list(names), stop_at_layer=stop, **kwargs)
    return {name: cache[name].detach() for name in names}


def check_token_rule(token: Any) -> TokenRule:
    """Validate a :data:`TokenRule` and return it.

    Raises:
        InvalidArgumentError: not ``"last"``, ``"mean"``, ``"response"`` or an int; or ``0`` (BOS, the
            same activation for every prompt).

    Example:
        >>> check_token_rule("last"), check_token_rule(-1)
        ('last', -1)
        >>> check_token_rule(0)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: token=0 selects the BOS token, where every prompt has the same activation (the difference is zero); allowed: 'last', 'mean', or an index of a real token (1 = first after BOS, -1 = last). Fix: pass token=1 or token=-1.
    """
    if isinstance(token, str) and token in ("last", "mean", "response"):
        return token  # type: ignore[return-value]
    index = None if isinstance(token, str) else as_int(token)  # an int, numpy int or 0-d int tensor
    if index is not None:
        if index == 0:
            raise InvalidArgumentError(
                "token=0 selects the BOS token, where every prompt has the same activation (the difference is "
                "zero); allowed: 'last', 'mean', or an index of a real token (1 = first after BOS, -1 = last). "
                "Fix: pass token=1 or token=-1."
            )
        return index
    raise InvalidArgumentError(
        f"token={shown(token)}; allowed: 'last' (each prompt's last token), 'mean' (mean over its tokens, BOS "
        "excluded), 'response' (mean over a chat text's assistant turn) or an int index (BOS is 0, negative from "
        "the end). Fix: pass e.g. token='last'."
    )


def _check_batch_size(batch_size: Any) -> int:
    checked = as_int(batch_size)  # bools, floats (2.0) and float tensors are refused, never rounded
    if checked is None or checked < 1:
        kind = f" is {describe(batch_size)}" if checked is None else ""
        raise InvalidArgumentError(
            f"batch_size={shown(batch_size)}{kind}; allowed: an int ≥ 1 (prompts per forward pass). "
            "Fix: pass e.g. batch_size=32."
        )
    return checked


def _token_index(label: str, text: str, length: int, start: int, token: TokenRule) -> int:
    """Resolve ``token`` for one prompt of ``length`` tokens (BOS included) to an index in it (-1: every token)."""
    if token == "last":
        return length - 1
    if not isinstance(token, int):  # "mean" reads every token after BOS
        return -1
    index = token if token >= 0 else length + token
    if not 0 <= index < length:
        raise InvalidArgumentError(
            f"token={token} is out of range for {label}={text!r}, which has {length} tokens with BOS "
            f"(indices 0..{length - 1}, or -{length}..-1); allowed: an index inside every prompt. "
            "Fix: use token='last', or an index that fits the shortest prompt."
        )
    if index < start:
        raise InvalidArgumentError(
            f"token={token} selects the BOS token of {label}={text!r}, where every prompt has the same "
            "activation; allowed: an index of a real token. Fix: use token='last' or a smaller negative index."
        )
    return index


def _response_start(label: str, text: str, length: int, first: int, given: Any) -> int:
    """Check one prompt's response start: a real token of it, after BOS."""
    start = as_int(given)
    if start is None or not first <= start < length:
        raise InvalidArgumentError(
            f"the response start of {label}={text[:60]!r} is {shown(given)}; allowed: an index of one of its tokens "
            f"after BOS ({first}..{length - 1}). Fix: give chat texts whose assistant turn has tokens (see "
            "steering.chat.chat_text)."
        )
    return start


def _encode(
    model: Any, prompts: Sequence[str], labels: Sequence[str], token: TokenRule, response_starts: Optional[Sequence[int]]
) -> tuple[list[Tensor], list[int], list[int]]:
    """Each prompt's ids (BOS first), the first index its mean reads (after BOS, or its response start), and its token index."""
    bos = model.tokenizer.bos_token_id
    n_ctx = int(model.cfg.n_ctx)
    encoded, starts, indices = [], [], []
    for label, text in zip(labels, prompts):
        if text == "":
            raise EmptyPromptError(
                f"{label} is the empty string; allowed: prompts with at least one token after BOS (an empty prompt "
                "would read the BOS activation, the same for every prompt). Fix: give it text or drop it."
            )
        ids = tokenize_prompt(model, text)
        if ids.numel() > n_ctx:
            raise ContextLengthError(
                f"{label}={text[:40]!r}… is {ids.numel()} tokens long but the model's context is {n_ctx}; "
                f"allowed: at most {n_ctx} tokens. Fix: shorten the prompt."
            )
        start = 1 if bos is not None and int(ids[0]) == bos else 0  # first token after BOS
        if token == "response":
            start = _response_start(label, text, int(ids.numel()), start, response_starts[len(encoded)])
        encoded.append(ids)
        starts.append(start)
        indices.append(_token_index(label, text, int(ids.numel()), start, token))
    return encoded, starts, indices


def _batch_features(
    acts: dict[str, Tensor],
    mask: Int[Tensor, "batch pos"],
    starts: Sequence[int],
    indices: Sequence[int],
    token: TokenRule,
) -> dict[str, Float[Tensor, "batch d_model"]]:
    """Apply the token rule to one left-padded batch's activations (float32)."""
    width = mask.shape[1]
    lengths = einops.reduce(mask, "batch pos -> batch", "sum")
    pad_left = width - lengths  # [batch]: column of each row's first real token (BOS)
    if token in ("mean", "response"):
        column = einops.rearrange(torch.arange(width), "pos -> () pos")
        first_content = pad_left + torch.tensor(list(starts))  # [batch]
        keep = (column >= einops.rearrange(first_content, "batch -> batch ()")).float()  # real, BOS excluded
        weights = keep / einops.reduce(keep, "batch pos -> batch ()", "sum")
    else:
        column_of = pad_left + torch.tensor(list(indices))  # [batch]
    out = {}
    for name, act in acts.items():
        if act.ndim != 3:
            raise InvalidArgumentError(
                f"hook {name!r} gives activations of shape {tuple(act.shape)}; allowed: hooks with "
                "[batch, pos, d_model] activations (resid_pre, resid_mid, resid_post, attn_out, mlp_out). "
                "Fix: pass e.g. hook='resid_pre'."
            )
        act = act.float()
        if token in ("mean", "response"):
            out[name] = einops.einsum(act, weights.to(act.device), "batch pos d, batch pos -> batch d")
        else:
            out[name] = act[torch.arange(act.shape[0], device=act.device), column_of.to(act.device)]  # [batch, d]
    return out


def prompt_features(
    model: Any,
    prompts: Sequence[str],
    names: Sequence[str],
    token: TokenRule = "last",
    batch_size: int = 32,
    *,
    labels: Optional[Sequence[str]] = None,
    response_starts: Optional[Sequence[int]] = None,
) -> dict[str, Float[Tensor, "prompt d_model"]]:
    """Each prompt's activation at ``token`` for every hook in ``names``, batched with left padding.

    Every prompt gets BOS first. Prompts are sorted by length so each batch carries little
    padding; the padding is masked, so the result does not depend on ``batch_size`` (to
    float rounding). All hooks come from the same forward passes (:func:`read_activations`).

    Args:
        model: A ``TransformerBridge``.
        prompts: Non-empty prompt texts (one string counts as one prompt).
        names: Full hook names with ``[batch, pos, d_model]`` activations.
        token: ``"last"``, ``"mean"`` (BOS excluded) or an int index (BOS is 0, refused;
            negative from the end) that must exist in every prompt.
        batch_size: Prompts per forward pass.
        labels: How messages name each prompt (default ``"prompts[i]"``).
        response_starts: For ``token="response"``: each prompt's first response token (an index into
            its tokens with BOS, e.g. :func:`steering.chat.chat_text`'s); the mean runs from there on.

    Returns:
        ``{name: [prompt, d_model]}`` float32 activations, rows in the order of ``prompts``.

    Raises:
        InvalidArgumentError: a bad ``token`` or ``batch_size``, an index that does not fit
            a prompt, a hook without ``[batch, pos, d_model]`` activations, or ``labels`` of
            another length.
        EmptyPromptError: a prompt is the empty string.
        ContextLengthError: a prompt is longer than the model's context.

    Example:
        >>> from steering.testing import tiny_model
        >>> feats = prompt_features(tiny_model(), ["ab", "abcd"], ["blocks.1.hook_resid_pre"], "last", batch_size=8)
        >>> feats["blocks.1.hook_resid_pre"].shape
        torch.Size([2, 64])
    """
    token = check_token_rule(token)
    batch_size = _check_batch_size(batch_size)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    labels = [f"prompts[{i}]" for i in range(len(prompts))] if labels is None else list(labels)
    if len(labels) != len(prompts):
        raise InvalidArgumentError(
            f"labels has {len(labels)} entries but prompts has {len(prompts)}; allowed: one label per prompt. "
            "Fix: pass labels=None."
        )
    if (token == "response") != (response_starts is not None) or (
            response_starts is not None and len(response_starts) != len(prompts)):
        raise InvalidArgumentError(
            f"token={token!r} with response_starts={'None' if response_starts is None else len(response_starts)}; "
            "allowed: token='response' together with one response start per prompt, any other rule without them. "
            "Fix: pass chat=True to the extraction function (it finds the starts), or another token rule."
        )
    encoded, starts, indices = _encode(model, prompts, labels, token, response_starts)
    pad_id = fill_id(model)  # masked anyway
    order = sorted(range(len(encoded)), key=lambda k: int(encoded[k].numel()))
    out: dict[str, list[Optional[Tensor]]] = {name: [None] * len(encoded) for name in names}
    for first in range(0, len(order), batch_size):
        rows = order[first:first + batch_size]
        tokens, mask = left_pad([encoded[k] for k in rows], pad_id)  # [batch, width] each
        acts = read_activations(model, tokens, names, attention_mask=mask)
        feats = _batch_features(acts, mask, [starts[k] for k in rows], [indices[k] for k in rows], token)
        for name, values in feats.items():
            for row, k in enumerate(rows):
                out[name][k] = values[row]
    return {name: torch.stack(values) for name, values in out.items()}  # type: ignore[arg-type]
