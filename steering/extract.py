"""Extracting steering vectors from a model's activations.

:func:`actadd` is Algorithm 1 of Turner et al., "Steering Language Models With
Activation Engineering" (arXiv 2308.10248): run the prompt pair (p+, p−), each with
BOS first and the shorter right-padded with the space token, and take the
per-position difference of their residual activations at one hook point.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> vec.tensor.shape  # BOS + 4 characters, d_model 64
    torch.Size([5, 64])
    >>> vec.norm()[0].item()  # the BOS position cancels
    0.0
"""

from typing import Any, Union

import torch
from jaxtyping import Int
from torch import Tensor

from .errors import ContextLengthError, EmptyPromptError, InvalidArgumentError
from .hooks import hook_name as build_hook_name
from .vectors import SteeringVector

__all__ = ["actadd", "pad_token_id", "tokenize_prompt"]

PadRule = Union[str, int]


def tokenize_prompt(model: Any, prompt: str) -> Int[Tensor, " pos"]:
    """Token ids of ``prompt`` with exactly one BOS first (the paper's convention).

    Example:
        >>> from steering.testing import tiny_model
        >>> tokenize_prompt(tiny_model(), "ab").tolist()
        [1, 4, 5]
    """
    if not isinstance(prompt, str):
        raise InvalidArgumentError(
            f"prompt={prompt!r} is a {type(prompt).__name__}; allowed: str. Fix: pass the prompt text."
        )
    tokens = model.to_tokens(prompt, prepend_bos=True, truncate=False)[0].cpu()
    bos = model.tokenizer.bos_token_id
    if bos is not None and (tokens.numel() == 0 or int(tokens[0]) != bos):
        tokens = torch.cat([torch.tensor([bos]), tokens])
    return tokens


def pad_token_id(model: Any, pad: PadRule = "space") -> int:
    """The token id used to right-pad the shorter prompt of a pair.

    Args:
        model: The bridge.
        pad: ``"space"`` (the paper's rule: the model's single-space token), ``"eos"``,
            ``"pad"`` (the tokenizer's pad token), another string that is exactly one
            token, or a token id.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.convert_ids_to_tokens(pad_token_id(model, "space"))
        ' '
    """
    tok = model.tokenizer
    if isinstance(pad, bool):
        pad = str(pad)
    if isinstance(pad, int):
        if not 0 <= pad < int(model.cfg.d_vocab):
            raise InvalidArgumentError(
                f"pad={pad} is not a token id of this model; allowed: 0..{int(model.cfg.d_vocab) - 1}, "
                "'space', 'eos', 'pad' or a one-token string."
            )
        return pad
    if pad == "eos":
        if tok.eos_token_id is None:
            raise InvalidArgumentError("pad='eos' but the tokenizer has no EOS token. Fix: use pad='space'.")
        return int(tok.eos_token_id)
    if pad == "pad":
        if tok.pad_token_id is None:
            raise InvalidArgumentError("pad='pad' but the tokenizer has no pad token. Fix: use pad='space'.")
        return int(tok.pad_token_id)
    text = " " if pad == "space" else pad
    if not isinstance(text, str) or not text:
        raise InvalidArgumentError(
            f"pad={pad!r}; allowed: 'space', 'eos', 'pad', a one-token string or a token id."
        )
    ids = tok.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise InvalidArgumentError(
            f"pad={pad!r} encodes to {len(ids)} tokens {ids} with this tokenizer; allowed: a string that is exactly "
            "one token, 'eos', 'pad' or a token id. Fix: pass the id of a neutral token, e.g. pad=<int>."
        )
    return int(ids[0])


def actadd(
    model: Any,
    pos: str,
    neg: str,
    layer: int,
    *,
    hook: str = "resid_pre",
    pad: PadRule = "space",
) -> SteeringVector:
    """Build an ActAdd steering vector from a prompt pair (paper, Algorithm 1).

    Both prompts get BOS first; the shorter is right-padded with ``pad`` (the paper's
    space token by default — EOS padding works "notably poorly"); both run in one
    batched forward pass that stops after ``layer``, caching only the hook needed.
    The result is the per-position difference ``h+ − h−`` (shape ``[pos, d_model]``);
    position 0 (BOS) is zero.

    Args:
        model: A ``TransformerBridge``.
        pos: p+, e.g. ``"Love"``.
        neg: p−, e.g. ``"Hate"``; may be empty (``" weddings"`` − ``""`` pads p− with spaces).
        layer: Block index (``0 .. n_layers - 1``, negative from the end).
        hook: Hook kind at that block (default ``"resid_pre"``, the paper's choice).
        pad: Padding token rule, see :func:`pad_token_id`.

    Returns:
        A :class:`SteeringVector` with ``method="actadd"`` and the prompts, padded
        string tokens, padding rule and weight mode as metadata.

    Raises:
        LayerOutOfRangeError: ``layer`` is outside the model's range.
        UnknownHookError: ``hook`` is not a hook point (nearest names suggested).
        EmptyPromptError: both prompts are empty.
        ContextLengthError: the padded pair is longer than the model's context.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> vec = st.actadd(tiny_model(), "abc", "", layer=0)
        >>> vec.tokens["neg"]  # p− padded with spaces
        ['<s>', ' ', ' ', ' ']
    """
    name = build_hook_name(model, layer, hook)
    for label, text in (("pos", pos), ("neg", neg)):
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"{label}={text!r} is a {type(text).__name__}; allowed: str. Fix: pass the prompt text."
            )
    if not pos and not neg:
        raise EmptyPromptError(
            "pos='' and neg='' are both empty; allowed: at least one non-empty prompt (an empty p− is fine). "
            "Fix: pass e.g. pos=' weddings', neg=''."
        )
    pad_id = pad_token_id(model, pad)
    pos_ids, neg_ids = tokenize_prompt(model, pos), tokenize_prompt(model, neg)
    length = max(pos_ids.numel(), neg_ids.numel())
    n_ctx = int(model.cfg.n_ctx)
    if length > n_ctx:
        raise ContextLengthError(
            f"the prompt pair is {length} tokens long after padding but the model's context is {n_ctx}; "
            f"allowed: at most {n_ctx} tokens. Fix: shorten the prompts."
        )

    def right_pad(ids: Tensor) -> Tensor:
        return torch.cat([ids, torch.full((length - ids.numel(),), pad_id, dtype=ids.dtype)])

    tokens = torch.stack([right_pad(pos_ids), right_pad(neg_ids)]).to(model.cfg.device)  # [2, pos]
    layer_idx = int(name.split(".")[1])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[name], stop_at_layer=layer_idx + 1)
    acts = cache[name]  # [2, pos, d_model]
    diff = (acts[0] - acts[1]).detach().clone()
    str_tokens = [model.tokenizer.convert_ids_to_tokens(int(t)) for t in tokens[0]], [
        model.tokenizer.convert_ids_to_tokens(int(t)) for t in tokens[1]
    ]
    pad_label = pad if isinstance(pad, str) else f"id:{pad}"
    return SteeringVector(
        tensor=diff,
        hook_name=name,
        model_name=getattr(model.cfg, "model_name", None),
        method="actadd",
        prompts={"pos": pos, "neg": neg},
        tokens={"pos": [_readable(t) for t in str_tokens[0]], "neg": [_readable(t) for t in str_tokens[1]]},
        pad=pad_label,
        weight_mode="compat" if getattr(model, "compatibility_mode", False) else "hf",
        meta={"pad_token_id": pad_id, "n_pos_tokens": int(pos_ids.numel()), "n_neg_tokens": int(neg_ids.numel())},
    )


def _readable(token: str) -> str:
    """Show byte-level BPE markers (Ġ, ▁, Ċ) as the characters they stand for."""
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")
