"""Extracting steering vectors from a model's activations.

Three methods, all reading residual activations with the same batched forward pass
(:func:`_run_hooks`, one ``run_with_cache`` over every hook asked for, stopping after
the deepest layer):

* :func:`actadd` / :func:`actadd_layers` — Algorithm 1 of Turner et al., "Steering
  Language Models With Activation Engineering" (arXiv 2308.10248): run the prompt pair
  (p+, p−), each with BOS first and the shorter right-padded with the space token, and
  take the per-position difference ``h+ − h−`` (``[pos, d_model]``) at one hook point.
* :func:`mean_diff` — CAA (Rimsky et al. 2024): the mean over many prompt pairs of the
  difference at one token position (``[d_model]``, added at every position).
* :func:`pca_direction` — RepE / repeng style: the first principal component of those
  paired differences (``[d_model]``), sign-aligned with and scaled like the mean difference.

``layer`` may be one int (one vector) or a list of layers / ``"all"`` (a list of
vectors, one per layer, from the same forward passes); :func:`steering.steer` takes such
a list and applies its vectors together.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> vec.tensor.shape  # BOS + 4 characters, d_model 64
    torch.Size([5, 64])
    >>> vec.norm()[0].item()  # the BOS position cancels
    0.0
    >>> from steering.extract import mean_diff
    >>> mean_diff(model, ["love it", "so good"], ["hate it", "so bad"], layer=1).tensor.shape
    torch.Size([64])
"""

from typing import Any, Optional, Sequence, Union

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import ContextLengthError, EmptyPromptError, InvalidArgumentError, LayerOutOfRangeError, warn_user
from .hooks import hook_name as build_hook_name
from .hooks import n_layers
from .vectors import SteeringVector

__all__ = [
    "actadd",
    "actadd_layers",
    "mean_diff",
    "pca_direction",
    "pad_token_id",
    "tokenize_prompt",
    "LayerSpec",
    "TokenRule",
]

#: One layer (an int, negative from the end), several (a list/tuple/range of ints) or ``"all"``.
LayerSpec = Union[int, Sequence[int], str]
#: Which token of each prompt :func:`mean_diff` / :func:`pca_direction` read:
#: ``"last"``, ``"mean"`` (BOS excluded) or an index (BOS is 0, negative from the end).
TokenRule = Union[str, int]

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


# ---------------------------------------------------------------------------- shared internals
def _layer_of(name: str) -> int:
    """Block index of a full hook name such as ``"blocks.3.hook_resid_pre"``."""
    return int(name.split(".")[1])


def _hook_names(model: Any, layer: Any, hook: str) -> tuple[list[str], bool]:
    """Validate a layer spec; return its full hook names and whether one layer (an int) was given.

    Example:
        >>> from steering.testing import tiny_model
        >>> _hook_names(tiny_model(), "all", "resid_pre")
        (['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre'], False)
    """
    count = n_layers(model)
    if isinstance(layer, str):
        if layer != "all":
            raise LayerOutOfRangeError(
                f"layer={layer!r} is not a layer spec; allowed: an int in 0..{count - 1} (negative from the end), "
                "a list of such ints, or 'all'. Fix: pass e.g. layer='all' or layer=[0, 1]."
            )
        layers: list[Any] = list(range(count))
    elif isinstance(layer, (list, tuple, range)):
        layers = list(layer)
        if not layers:
            raise LayerOutOfRangeError(
                f"layer={layer!r} is empty; allowed: an int, a non-empty list of ints in 0..{count - 1}, or 'all'. "
                f"Fix: pass e.g. layer=[0, {count - 1}]."
            )
    else:
        return [build_hook_name(model, layer, hook)], True  # validates int-ness and range
    for each in layers:
        if isinstance(each, bool) or not isinstance(each, int):
            raise LayerOutOfRangeError(
                f"layer={layer!r} holds {each!r}, a {type(each).__name__}; allowed: ints in 0..{count - 1} "
                f"(negative from the end). Fix: pass e.g. layer=[0, {count - 1}]."
            )
    names = [build_hook_name(model, each, hook) for each in layers]
    seen: dict[str, Any] = {}
    for each, name in zip(layers, names):
        if name in seen:
            raise LayerOutOfRangeError(
                f"layer={layer!r} names block {_layer_of(name)} twice ({seen[name]!r} and {each!r}); allowed: "
                "distinct layers (a repeated layer would be steered twice). Fix: drop the repeat."
            )
        seen[name] = each
    return names, False


def _run_hooks(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    names: Sequence[str],
    attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
) -> dict[str, Float[Tensor, "batch ..."]]:
    """One forward pass of ``tokens``, caching only ``names`` and stopping after the deepest block.

    The shared activation reader of :func:`actadd_layers`, :func:`mean_diff` and
    :func:`pca_direction`. Pass ``attention_mask`` for left-padded batches (the bridge
    then derives each row's positions from the mask, so padding changes nothing).

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> acts = _run_hooks(model, torch.tensor([[1, 4, 5]]), ["blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out"])
        >>> {name: tuple(a.shape) for name, a in acts.items()}
        {'blocks.0.hook_resid_pre': (1, 3, 64), 'blocks.1.hook_mlp_out': (1, 3, 64)}
    """
    device = model.cfg.device
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask.to(device)}
    stop = max(_layer_of(name) for name in names) + 1
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(device), names_filter=list(names), stop_at_layer=stop, **kwargs)
    return {name: cache[name].detach() for name in names}


def _weight_mode(model: Any) -> str:
    return "compat" if getattr(model, "compatibility_mode", False) else "hf"


def _check_prompt_list(label: str, prompts: Any) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise InvalidArgumentError(
            f"{label}={prompts!r}; allowed: a non-empty list of strings (one prompt per pair). "
            f"Fix: pass e.g. {label}=['I love you', 'What a great day']."
        )
    for i, text in enumerate(prompts):
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"{label}[{i}]={text!r} is a {type(text).__name__}; allowed: str. Fix: pass the prompt text."
            )
        if not text:
            raise EmptyPromptError(
                f"{label}[{i}] is the empty string; allowed: prompts with at least one token after BOS (an empty "
                "prompt would read the BOS activation, the same for every prompt). Fix: give it text or drop the pair."
            )
    return list(prompts)


def _check_token_rule(token: Any) -> Union[str, int]:
    if isinstance(token, str) and token in ("last", "mean"):
        return token
    if isinstance(token, int) and not isinstance(token, bool):
        if token == 0:
            raise InvalidArgumentError(
                "token=0 selects the BOS token, where every prompt has the same activation (the difference is "
                "zero); allowed: 'last', 'mean', or an index of a real token (1 = first after BOS, -1 = last). "
                "Fix: pass token=1 or token=-1."
            )
        return token
    raise InvalidArgumentError(
        f"token={token!r}; allowed: 'last' (each prompt's last token), 'mean' (mean over its tokens, BOS "
        "excluded) or an int index (BOS is 0, negative from the end). Fix: pass e.g. token='last'."
    )


def _token_index(label: str, i: int, text: str, length: int, start: int, token: Union[str, int]) -> int:
    """Resolve ``token`` for one prompt of ``length`` tokens (BOS included) to an index in it."""
    if token == "last":
        return length - 1
    if not isinstance(token, int):  # "mean" reads every token after BOS
        return -1
    index = token if token >= 0 else length + token
    if not 0 <= index < length:
        raise InvalidArgumentError(
            f"token={token} is out of range for {label}[{i}]={text!r}, which has {length} tokens with BOS "
            f"(indices 0..{length - 1}, or -{length}..-1); allowed: an index inside every prompt. "
            "Fix: use token='last', or an index that fits the shortest prompt."
        )
    if index < start:
        raise InvalidArgumentError(
            f"token={token} selects the BOS token of {label}[{i}]={text!r}, where every prompt has the same "
            "activation; allowed: an index of a real token. Fix: use token='last' or a smaller negative index."
        )
    return index


def _prompt_features(
    model: Any,
    prompts: Sequence[tuple[str, int, str]],
    names: Sequence[str],
    token: Union[str, int],
    batch_size: int,
) -> dict[str, Float[Tensor, "prompt d_model"]]:
    """Each prompt's activation at ``token`` for every hook in ``names``, batched with left padding.

    ``prompts`` are ``(label, index, text)`` triples (labels only name a prompt in errors).
    Prompts are sorted by length so each batch carries little padding; the padding is
    masked, so the result does not depend on ``batch_size``. Values are float32.

    Example:
        >>> from steering.testing import tiny_model
        >>> feats = _prompt_features(tiny_model(), [("p", 0, "ab"), ("p", 1, "abcd")], ["blocks.1.hook_resid_pre"], "last", 8)
        >>> feats["blocks.1.hook_resid_pre"].shape
        torch.Size([2, 64])
    """
    from .generation import left_pad  # generation imports this module

    bos = model.tokenizer.bos_token_id
    tok = model.tokenizer
    pad_id = next((int(t) for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0)  # masked anyway
    n_ctx = int(model.cfg.n_ctx)
    encoded, starts, indices = [], [], []
    for label, i, text in prompts:
        ids = tokenize_prompt(model, text)
        if ids.numel() > n_ctx:
            raise ContextLengthError(
                f"{label}[{i}]={text[:40]!r}… is {ids.numel()} tokens long but the model's context is {n_ctx}; "
                f"allowed: at most {n_ctx} tokens. Fix: shorten the prompt."
            )
        start = 1 if bos is not None and int(ids[0]) == bos else 0  # first token after BOS
        encoded.append(ids)
        starts.append(start)
        indices.append(_token_index(label, i, text, int(ids.numel()), start, token))
    order = sorted(range(len(encoded)), key=lambda k: int(encoded[k].numel()))
    out: dict[str, list[Optional[Tensor]]] = {name: [None] * len(encoded) for name in names}
    for first in range(0, len(order), batch_size):
        rows = order[first:first + batch_size]
        tokens, mask = left_pad([encoded[k] for k in rows], pad_id)  # [batch, width] each
        width = tokens.shape[1]
        acts = _run_hooks(model, tokens, names, attention_mask=mask)
        lengths = einops.reduce(mask, "batch pos -> batch", "sum")
        pad_left = width - lengths  # [batch]: column of each row's first real token (BOS)
        if token == "mean":
            column = einops.rearrange(torch.arange(width), "pos -> () pos")
            first_content = pad_left + torch.tensor([starts[k] for k in rows])  # [batch]
            keep = (column >= einops.rearrange(first_content, "batch -> batch ()")).float()  # real, BOS excluded
            weights = keep / einops.reduce(keep, "batch pos -> batch ()", "sum")
        else:
            column_of = pad_left + torch.tensor([indices[k] for k in rows])  # [batch]
        for name, act in acts.items():
            if act.ndim != 3:
                raise InvalidArgumentError(
                    f"hook {name!r} gives activations of shape {tuple(act.shape)}; allowed: hooks with "
                    "[batch, pos, d_model] activations (resid_pre, resid_mid, resid_post, attn_out, mlp_out). "
                    "Fix: pass e.g. hook='resid_pre'."
                )
            act = act.float()
            if token == "mean":
                feats = einops.einsum(act, weights.to(act.device), "batch pos d, batch pos -> batch d")
            else:
                feats = act[torch.arange(len(rows), device=act.device), column_of.to(act.device)]  # [batch, d]
            for row, k in enumerate(rows):
                out[name][k] = feats[row]
    return {name: torch.stack(values) for name, values in out.items()}  # type: ignore[arg-type]


def _paired_differences(
    model: Any,
    pos_prompts: Any,
    neg_prompts: Any,
    layer: Any,
    hook: str,
    token: Any,
    batch_size: Any,
) -> tuple[list[str], bool, dict[str, Float[Tensor, "pair d_model"]], list[str], list[str], Union[str, int]]:
    """Validate the arguments of :func:`mean_diff` / :func:`pca_direction`; return ``pos − neg`` per pair and hook."""
    names, single = _hook_names(model, layer, hook)
    pos_list = _check_prompt_list("pos_prompts", pos_prompts)
    neg_list = _check_prompt_list("neg_prompts", neg_prompts)
    if len(pos_list) != len(neg_list):
        raise InvalidArgumentError(
            f"pos_prompts has {len(pos_list)} prompts but neg_prompts has {len(neg_list)}; allowed: equal counts "
            "(pos_prompts[i] and neg_prompts[i] form pair i). Fix: pair every positive prompt with one negative."
        )
    rule = _check_token_rule(token)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(
            f"batch_size={batch_size!r}; allowed: an int ≥ 1 (prompts per forward pass). Fix: pass e.g. batch_size=32."
        )
    triples = [("pos_prompts", i, p) for i, p in enumerate(pos_list)] + [
        ("neg_prompts", i, p) for i, p in enumerate(neg_list)
    ]
    feats = _prompt_features(model, triples, names, rule, batch_size)
    n = len(pos_list)
    diffs = {name: f[:n] - f[n:] for name, f in feats.items()}  # [pair, d_model]
    return names, single, diffs, pos_list, neg_list, rule


def _direction_vector(
    model: Any,
    name: str,
    tensor: Float[Tensor, " d_model"],
    method: str,
    pos_list: list[str],
    neg_list: list[str],
    meta: dict[str, Any],
) -> SteeringVector:
    return SteeringVector(
        tensor=tensor.detach().clone(),
        hook_name=name,
        model_name=getattr(model.cfg, "model_name", None),
        method=method,
        prompts={"pos": list(pos_list), "neg": list(neg_list)},
        tokens={},
        pad=None,
        weight_mode=_weight_mode(model),
        meta=meta,
    )


# ---------------------------------------------------------------------------- ActAdd
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
    position 0 (BOS) is zero. For several layers from one forward pass, see
    :func:`actadd_layers`.

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
    return _actadd(model, pos, neg, [name], pad)[0]


def actadd_layers(
    model: Any,
    pos: str,
    neg: str,
    layers: LayerSpec = "all",
    *,
    hook: str = "resid_pre",
    pad: PadRule = "space",
) -> list[SteeringVector]:
    """ActAdd vectors of one prompt pair at many layers, from ONE forward pass.

    The same as ``[actadd(model, pos, neg, l, hook=hook, pad=pad) for l in layers]``
    (bit for bit), but the pair runs once, caching every hook asked for and stopping
    after the deepest layer. The list can go straight to :func:`steering.steer`, which
    applies its vectors together (each at its own layer, one shared ``coeff``) — so
    scale the coefficient down when steering at many layers at once.

    Args:
        model: A ``TransformerBridge``.
        pos: p+.
        neg: p− (may be empty).
        layers: A list/tuple/range of block indices (negative from the end, no repeats),
            one int, or ``"all"`` (default: every block, in order).
        hook: Hook kind at each block (default ``"resid_pre"``).
        pad: Padding token rule, see :func:`pad_token_id`.

    Returns:
        One ``[pos, d_model]`` :class:`SteeringVector` per layer, in the order given
        (a one-element list for an int).

    Raises:
        LayerOutOfRangeError: a layer is out of range, repeated, the list is empty, or
            a string other than ``"all"``.
        UnknownHookError: ``hook`` is not a hook point.
        EmptyPromptError: both prompts are empty.
        ContextLengthError: the padded pair is longer than the model's context.

    Example:
        >>> from steering.testing import tiny_model
        >>> vecs = actadd_layers(tiny_model(), "love", "hate", "all")
        >>> [(v.hook_name, tuple(v.tensor.shape)) for v in vecs]
        [('blocks.0.hook_resid_pre', (5, 64)), ('blocks.1.hook_resid_pre', (5, 64))]
    """
    names, _ = _hook_names(model, layers, hook)
    return _actadd(model, pos, neg, names, pad)


def _actadd(model: Any, pos: Any, neg: Any, names: list[str], pad: Any) -> list[SteeringVector]:
    """Algorithm 1 at every hook in ``names`` from one batched forward pass of the padded pair."""
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

    tokens = torch.stack([right_pad(pos_ids), right_pad(neg_ids)])  # [2, pos]
    acts = _run_hooks(model, tokens, names)  # no mask: the pad tokens are real tokens in ActAdd
    str_tokens = [[_readable(model.tokenizer.convert_ids_to_tokens(int(t))) for t in row] for row in tokens]
    pad_label = pad if isinstance(pad, str) else f"id:{pad}"
    return [
        SteeringVector(
            tensor=(acts[name][0] - acts[name][1]).clone(),  # [pos, d_model]
            hook_name=name,
            model_name=getattr(model.cfg, "model_name", None),
            method="actadd",
            prompts={"pos": pos, "neg": neg},
            tokens={"pos": list(str_tokens[0]), "neg": list(str_tokens[1])},
            pad=pad_label,
            weight_mode=_weight_mode(model),
            meta={"pad_token_id": pad_id, "n_pos_tokens": int(pos_ids.numel()), "n_neg_tokens": int(neg_ids.numel())},
        )
        for name in names
    ]


# ---------------------------------------------------------------------------- mean difference (CAA)
def mean_diff(
    model: Any,
    pos_prompts: Union[str, Sequence[str]],
    neg_prompts: Union[str, Sequence[str]],
    layer: LayerSpec,
    *,
    hook: str = "resid_pre",
    token: TokenRule = "last",
    batch_size: int = 32,
) -> Union[SteeringVector, list[SteeringVector]]:
    """Mean of paired activation differences at one token position (CAA, Rimsky et al. 2024).

    For each pair ``i``, read the activation of ``pos_prompts[i]`` and of
    ``neg_prompts[i]`` at the chosen token and take ``pos − neg``; the vector is the
    mean of these differences: one ``[d_model]`` direction, added at every position
    (``steer(..., positions="all")``, the default for directions). Every prompt gets BOS
    first (as in :func:`actadd`). Prompts are run in batches of ``batch_size``, left-padded
    with an attention mask, so the result does not depend on the batching (to float
    rounding); all hooks of ``layer`` are read from the same forward passes.

    Args:
        model: A ``TransformerBridge``.
        pos_prompts: The positive prompts (a list; one string counts as one pair).
        neg_prompts: The negative prompts, as many as ``pos_prompts`` (pair ``i`` is
            ``pos_prompts[i]``, ``neg_prompts[i]``). Empty strings are refused.
        layer: A block index (one vector), a list of them, or ``"all"`` (a list of vectors).
        hook: Hook kind (default ``"resid_pre"``).
        token: ``"last"`` (each prompt's last token, the CAA choice), ``"mean"`` (mean over
            its tokens, BOS excluded) or an int index into the prompt's tokens, counted from
            its first real token: BOS is 0 (refused: it is the same for every prompt), 1 the
            first token after it, ``-1`` the last. The index must exist in every prompt.
        batch_size: Prompts per forward pass (positive and negative prompts together).

    Returns:
        A ``[d_model]`` float32 :class:`SteeringVector` (``method="mean_diff"``; the prompt
        lists in ``prompts``; ``meta`` records ``token`` and ``n_pairs``), or a list of them,
        one per layer, when ``layer`` is a list or ``"all"``.

    Raises:
        InvalidArgumentError: the lists are empty or of unequal length, a prompt is not a
            string, ``token`` is not a rule or does not fit a prompt, or ``batch_size`` < 1.
        EmptyPromptError: a prompt is the empty string.
        LayerOutOfRangeError: a layer is out of range or repeated.
        UnknownHookError: ``hook`` is not a hook point.
        ContextLengthError: a prompt is longer than the model's context.

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = mean_diff(model, ["I love it", "so good"], ["I hate it", "so bad"], layer=1, token="mean")
        >>> vec.method, vec.tensor.shape, vec.meta
        ('mean_diff', torch.Size([64]), {'token': 'mean', 'n_pairs': 2})
        >>> [v.layer for v in mean_diff(model, ["good"], ["bad"], layer="all")]
        [0, 1]
    """
    names, single, diffs, pos_list, neg_list, rule = _paired_differences(
        model, pos_prompts, neg_prompts, layer, hook, token, batch_size
    )
    vectors = []
    for name in names:
        tensor = einops.reduce(diffs[name], "pair d_model -> d_model", "mean")
        meta = {"token": rule, "n_pairs": len(pos_list)}
        vectors.append(_direction_vector(model, name, tensor, "mean_diff", pos_list, neg_list, meta))
    return vectors[0] if single else vectors


# ---------------------------------------------------------------------------- PCA of differences (RepE)
_SPREAD_RTOL = 1e-4  # below this (relative to the differences' norm) the pairs are treated as identical


def _principal_direction(
    diffs: Float[Tensor, "pair d_model"], center: bool = True
) -> tuple[Float[Tensor, " d_model"], Float[Tensor, ""], Optional[float]]:
    """First principal direction of paired differences, sign-aligned with their mean.

    Returns ``(unit direction, projection of the mean difference on it (≥ 0), explained
    variance ratio)``. When the matrix has no spread (one pair, or all differences equal,
    when centred) the direction is the normalised mean difference and the ratio is ``None``.

    Example:
        >>> import torch
        >>> u = torch.tensor([0.6, 0.8, 0.0])
        >>> direction, proj, ratio = _principal_direction(torch.stack([1.0 * u, 3.0 * u, 2.0 * u]))
        >>> [round(x, 4) for x in direction.tolist()], round(float(proj), 4), round(ratio, 4)
        ([0.6, 0.8, 0.0], 2.0, 1.0)
    """
    diffs = diffs.float()
    mean = einops.reduce(diffs, "pair d_model -> d_model", "mean")
    matrix = diffs - mean if center else diffs  # [pair, d_model]
    total = torch.linalg.matrix_norm(diffs)
    _, singular, vh = torch.linalg.svd(matrix, full_matrices=False)  # vh: [min(pair, d), d_model]
    if float(singular[0]) <= _SPREAD_RTOL * float(total):
        direction, ratio = mean / torch.linalg.vector_norm(mean), None  # no spread: the mean's own direction
    else:
        direction = vh[0]
        ratio = float(singular[0] ** 2 / einops.reduce(singular**2, "k ->", "sum"))
    projection = direction @ mean  # scalar
    if float(projection) < 0:
        direction, projection = -direction, -projection
    return direction, projection, ratio


def pca_direction(
    model: Any,
    pos_prompts: Union[str, Sequence[str]],
    neg_prompts: Union[str, Sequence[str]],
    layer: LayerSpec,
    *,
    hook: str = "resid_pre",
    token: TokenRule = "last",
    center: bool = True,
    scale: str = "projection",
    batch_size: int = 32,
) -> Union[SteeringVector, list[SteeringVector]]:
    """First principal component of the paired differences (RepE / repeng-style control vector).

    The paired differences ``pos − neg`` are read exactly as in :func:`mean_diff` (same
    ``token`` rule, batching and refusals). Their first principal direction ``d̂`` (SVD of
    the ``[n_pairs, d_model]`` matrix, centred on its mean by default) is made unit norm and
    sign-aligned so that ``d̂ · mean_diff > 0`` (an SVD's sign is arbitrary; this makes a
    positive coefficient steer towards the positive prompts, as with ``mean_diff``).

    Scaling (``scale="projection"``, default): the vector is ``(d̂ · m) d̂``, the mean
    difference ``m`` projected on ``d̂``. So ``coeff`` means the same as for
    :func:`mean_diff`: when all pairs differ along one direction the two vectors are equal,
    and otherwise the PCA vector is the part of the mean difference along ``d̂`` (never
    longer than ``m``). ``scale="unit"`` returns ``d̂`` itself (norm 1; then ``coeff`` is in
    residual units).

    With no spread to analyse — a single pair, or (centred) every pair giving the same
    difference — there is no principal component; the direction is then the normalised
    mean difference (so one pair gives the normalised difference, and with the default
    scaling the vector equals :func:`mean_diff`'s). ``meta["fallback"]`` says so.

    Args:
        model: A ``TransformerBridge``.
        pos_prompts: The positive prompts (one string counts as one pair).
        neg_prompts: The negative prompts, as many as ``pos_prompts``.
        layer: A block index (one vector), a list of them, or ``"all"`` (a list of vectors).
        hook: Hook kind (default ``"resid_pre"``).
        token: ``"last"``, ``"mean"`` or an int index, as in :func:`mean_diff`.
        center: Subtract the mean difference before the SVD (PCA proper; default). ``False``
            takes the top singular direction of the raw differences.
        scale: ``"projection"`` (default, comparable with :func:`mean_diff`) or ``"unit"``.
        batch_size: Prompts per forward pass.

    Returns:
        A ``[d_model]`` float32 :class:`SteeringVector` (``method="pca"``; ``meta`` records
        ``token``, ``n_pairs``, ``center``, ``scale``, ``explained_variance_ratio`` of the
        component and ``fallback``), or one per layer for a list of layers or ``"all"``.

    Warns:
        SteeringWarning: the component is (nearly) orthogonal to the mean difference — the
            pairs disagree, e.g. ``(x, y)`` and ``(y, x)`` — so its sign is arbitrary and the
            projection-scaled vector is (nearly) zero.

    Raises:
        InvalidArgumentError: as :func:`mean_diff`; also a bad ``center``/``scale``, or
            positive and negative prompts whose activations do not differ at all.
        EmptyPromptError: a prompt is the empty string.
        LayerOutOfRangeError: a layer is out of range or repeated.
        UnknownHookError: ``hook`` is not a hook point.
        ContextLengthError: a prompt is longer than the model's context.

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> pos, neg = ["I love it", "so good", "great!"], ["I hate it", "so bad", "awful!"]
        >>> vec = pca_direction(model, pos, neg, layer=1)
        >>> vec.method, vec.tensor.shape
        ('pca', torch.Size([64]))
        >>> mean = mean_diff(model, pos, neg, layer=1)
        >>> bool(vec.tensor @ mean.tensor > 0)  # sign-aligned with the mean difference
        True
        >>> round(float(pca_direction(model, pos, neg, layer=1, scale="unit").norm()), 4)
        1.0
    """
    if not isinstance(center, bool):
        raise InvalidArgumentError(f"center={center!r}; allowed: True or False. Fix: pass center=True.")
    if scale not in ("projection", "unit"):
        raise InvalidArgumentError(
            f"scale={scale!r}; allowed: 'projection' (the mean difference projected on the component, comparable "
            "with mean_diff) or 'unit' (norm 1). Fix: pass scale='projection'."
        )
    names, single, diffs, pos_list, neg_list, rule = _paired_differences(
        model, pos_prompts, neg_prompts, layer, hook, token, batch_size
    )
    vectors = []
    for name in names:
        if float(torch.linalg.matrix_norm(diffs[name])) == 0.0:
            raise InvalidArgumentError(
                f"at {name} every positive prompt has exactly the activation of its negative prompt (all "
                f"{len(pos_list)} differences are zero), so there is no direction; allowed: pairs that differ "
                "before this layer. Fix: use different prompts, or check they are not identical pairs."
            )
        direction, projection, ratio = _principal_direction(diffs[name], center=center)
        if float(projection) <= _SPREAD_RTOL * float(torch.linalg.matrix_norm(diffs[name])):
            warn_user(
                f"the principal direction at {name} is (nearly) orthogonal to the mean difference of the pairs: "
                "its sign is arbitrary, and with scale='projection' the vector is (nearly) zero. The pairs do not "
                "agree on a direction; check them, or use mean_diff."
            )
        tensor = direction if scale == "unit" else projection * direction
        meta = {
            "token": rule,
            "n_pairs": len(pos_list),
            "center": center,
            "scale": scale,
            "explained_variance_ratio": ratio,
            "fallback": None if ratio is not None else "mean difference (no spread between pairs)",
        }
        vectors.append(_direction_vector(model, name, tensor.to(diffs[name].dtype), "pca", pos_list, neg_list, meta))
    return vectors[0] if single else vectors


def _readable(token: str) -> str:
    """Show byte-level BPE markers (Ġ, ▁, Ċ) as the characters they stand for."""
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")
