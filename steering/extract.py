"""ActAdd: steering vectors from one prompt pair (Algorithm 1 of Turner et al.).

"Steering Language Models With Activation Engineering" (arXiv 2308.10248): run the prompt
pair (p+, p−), each with BOS first and the shorter right-padded with the pair pad token
(the model's space token by default, :func:`steering.tokens.pair_pad_id`), and take the
per-position difference ``h+ − h−`` (``[pos, d_model]``) at one hook point.

* :func:`actadd` — one vector at one layer.
* :func:`actadd_layers` — one vector per layer, from ONE forward pass of the pair.

The activations come from :func:`steering.activations.read_activations`; the
paired-difference directions (mean difference, PCA) live in :mod:`steering.directions`.

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

from typing import Any, Optional, Sequence

from jaxtyping import Float, Int
from torch import Tensor

from .activations import read_activations, weight_mode
from .chat import chat_prompt
from .errors import ContextLengthError, EmptyPromptError, InvalidArgumentError
from .hooks import LayerSpec, hook_name, hook_names
from .tokens import PadRule, pair_pad_id, readable, right_pad, tokenize_prompt
from .validate import as_int, describe, flag, shown
from .vectors import SteeringVector

__all__ = ["actadd", "actadd_layers"]


def actadd(
    model: Any,
    pos: str,
    neg: str,
    layer: int,
    *,
    hook: str = "resid_pre",
    pad: PadRule = "space",
    chat: bool = False,
    system: Optional[str] = None,
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
        pad: Padding token rule, see :func:`steering.tokens.pair_pad_id`.
        chat: Put p+ and p− each in the model's chat template as one user turn, with the generation
            prompt (:func:`steering.chat.chat_prompt`; both must be non-empty). The template's
            header is the same in both, so its positions cancel, and the vector's front positions
            line up with a chat prompt's (``st.generate(..., chat=True)``).
        system: A system prompt for ``chat=True``.

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
        >>> vec.tensor.shape  # [pos, d_model]
        torch.Size([4, 64])
    """
    name = hook_name(model, layer, hook)
    return _actadd(model, pos, neg, [name], pad, chat, system)[0]


def actadd_layers(
    model: Any,
    pos: str,
    neg: str,
    layers: LayerSpec = "all",
    *,
    hook: str = "resid_pre",
    pad: PadRule = "space",
    chat: bool = False,
    system: Optional[str] = None,
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
        pad: Padding token rule, see :func:`steering.tokens.pair_pad_id`.
        chat: Put p+ and p− in the chat template, as in :func:`actadd`.
        system: A system prompt for ``chat=True``.

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
    names, _ = hook_names(model, layers, hook)
    return _actadd(model, pos, neg, names, pad, chat, system)


def _check_pair(pos: Any, neg: Any) -> None:
    """Refuse a prompt that is not a string, and a pair of two empty prompts."""
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


def _padded_pair(model: Any, pos: str, neg: str, pad_id: int) -> tuple[Int[Tensor, "2 pos"], int, int]:
    """The pair with BOS first, the shorter right-padded with ``pad_id``, and each prompt's token count."""
    pos_ids, neg_ids = tokenize_prompt(model, pos), tokenize_prompt(model, neg)
    length = max(pos_ids.numel(), neg_ids.numel())
    n_ctx = int(model.cfg.n_ctx)
    if length > n_ctx:
        raise ContextLengthError(
            f"the prompt pair is {length} tokens long after padding but the model's context is {n_ctx}; "
            f"allowed: at most {n_ctx} tokens. Fix: shorten the prompts."
        )
    tokens, _ = right_pad([pos_ids, neg_ids], pad_id)  # [2, pos]; no mask: the pad tokens are real tokens
    return tokens, int(pos_ids.numel()), int(neg_ids.numel())


def _actadd_vector(
    model: Any,
    name: str,
    diff: Float[Tensor, "pos d_model"],
    str_tokens: list[list[str]],
    prompts: dict[str, str],
    pad: PadRule,
    meta: dict[str, Any],
) -> SteeringVector:
    """The ActAdd vector at ``name`` with its metadata (prompts, padded string tokens, pad rule)."""
    return SteeringVector(
        tensor=diff.clone(),  # [pos, d_model]
        hook_name=name,
        model_name=getattr(model.cfg, "model_name", None),
        method="actadd",
        prompts=dict(prompts),
        tokens={"pos": list(str_tokens[0]), "neg": list(str_tokens[1])},
        pad=pad if isinstance(pad, str) else f"id:{pad}",
        weight_mode=weight_mode(model),
        meta=dict(meta),
    )


def _chat_pair(model: Any, pos: str, neg: str, chat: Any, system: Any) -> tuple[str, str]:
    """The pair as the model reads it: unchanged, or each a user turn in the chat template."""
    if not flag("chat", chat):
        if system is not None:
            raise InvalidArgumentError(
                f"system={system!r} with chat=False; allowed: system= only with chat=True. Fix: pass chat=True, "
                "or drop system=."
            )
        return pos, neg
    for label, text in (("pos", pos), ("neg", neg)):
        if not text:
            raise EmptyPromptError(
                f"{label}='' with chat=True; allowed: two non-empty prompts (each becomes a user turn, and a chat "
                "template has no empty turn). Fix: give p- text (e.g. a neutral word), or use chat=False."
            )
    return chat_prompt(model, pos, system), chat_prompt(model, neg, system)


def _actadd(model: Any, pos: Any, neg: Any, names: Sequence[str], pad: Any, chat: Any = False, system: Any = None
            ) -> list[SteeringVector]:
    """Algorithm 1 at every hook in ``names`` from one batched forward pass of the padded pair."""
    _check_pair(pos, neg)  # before the pad rule: a bad prompt is reported first
    pos, neg = _chat_pair(model, pos, neg, chat, system)
    if not isinstance(pad, str):  # a token id: an int, numpy int or 0-d int tensor (never a bool or a float)
        if as_int(pad) is None:
            raise InvalidArgumentError(
                f"pad={shown(pad)} is {describe(pad)}; allowed: 'space' (the paper's rule), 'eos', 'pad', a one-token "
                "string or a token id (an int). Fix: pass pad='space'."
            )
        pad = as_int(pad)
    pad_id = pair_pad_id(model, pad)
    tokens, n_pos, n_neg = _padded_pair(model, pos, neg, pad_id)
    acts = read_activations(model, tokens, names)
    str_tokens = [[readable(model.tokenizer.convert_ids_to_tokens(int(t))) for t in row] for row in tokens]
    meta = {"pad_token_id": pad_id, "n_pos_tokens": n_pos, "n_neg_tokens": n_neg}
    prompts = {"pos": pos, "neg": neg}
    return [
        _actadd_vector(model, name, acts[name][0] - acts[name][1], str_tokens, prompts, pad, meta) for name in names
    ]
