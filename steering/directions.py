"""Directions from many prompt pairs: one runner, pluggable aggregators.

:func:`direction_from_pairs` reads, for every pair ``i``, the activation of
``pos_prompts[i]`` and of ``neg_prompts[i]`` at one token rule
(:func:`steering.activations.prompt_features`, batched with left padding) and hands the
``[pair, d_model]`` matrix of differences ``pos − neg`` at each layer to an *aggregator*,
which turns it into one ``[d_model]`` direction (in the manner of steering-vectors'
aggregators). Two aggregators are built in, each with a thin public wrapper:

* :func:`mean_aggregator` → :func:`mean_diff` — CAA (Rimsky et al. 2024): the mean of the
  differences.
* :func:`pca_aggregator` → :func:`pca_direction` — RepE / repeng style: their first
  principal component, sign-aligned with and scaled like the mean difference.

Adding a method: write a function returning an aggregator, a callable
``aggregate(diffs, hook_name) -> (direction, meta)``: ``diffs`` is the float32
``[pair, d_model]`` matrix at one hook, ``hook_name`` names that hook (for messages only),
``direction`` is the ``[d_model]`` tensor to steer with and ``meta`` a JSON-friendly dict
stored in the vector's ``meta`` after ``token`` and ``n_pairs``. Then call
:func:`direction_from_pairs` with it (or wrap that call in a public function, as
:func:`mean_diff` does). A coordinate-wise median, for example:

    >>> import torch
    >>> from steering.testing import tiny_model
    >>> def median_aggregator():
    ...     '''Coordinate-wise median of the paired differences (robust to one odd pair).'''
    ...     def aggregate(diffs, hook_name):
    ...         return diffs.median(dim=0).values, {"statistic": "median"}
    ...     return aggregate
    >>> model = tiny_model()
    >>> pos, neg = ["I love it", "so good", "great!"], ["I hate it", "so bad", "awful!"]
    >>> vec = direction_from_pairs(model, pos, neg, 1, median_aggregator(), method="median")
    >>> vec.method, vec.tensor.shape, vec.meta
    ('median', torch.Size([64]), {'token': 'last', 'n_pairs': 3, 'statistic': 'median'})

``layer`` may be one int (one vector) or a list of layers / ``"all"`` (a list of vectors,
one per layer, from the same forward passes); :func:`steering.steer` takes such a list
and applies its vectors together.

Example:
    >>> mean_diff(model, ["love it", "so good"], ["hate it", "so bad"], layer=1).tensor.shape
    torch.Size([64])
"""

from typing import Any, Callable, Literal, Optional, Sequence, Union

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from .activations import TokenRule, check_token_rule, prompt_features, weight_mode
from .chat import ChatInput, PairSource, chat_texts, source_pairs
from .errors import InvalidArgumentError, warn_user
from .hooks import LayerSpec, hook_names
from .validate import flag, text_list
from .vectors import SteeringVector

__all__ = [
    "direction_from_pairs",
    "pair_texts",
    "mean_diff",
    "pca_direction",
    "mean_aggregator",
    "pca_aggregator",
    "principal_direction",
    "Aggregator",
    "PcaScale",
]

#: ``aggregate(diffs, hook_name) -> (direction, meta)``: turns the ``[pair, d_model]`` paired
#: differences at one hook into a ``[d_model]`` direction and metadata (see the module docstring).
Aggregator = Callable[[Float[Tensor, "pair d_model"], str], tuple[Float[Tensor, " d_model"], dict[str, Any]]]
#: How :func:`pca_direction` scales its unit component: ``"projection"`` (the mean difference
#: projected on it, comparable with :func:`mean_diff`) or ``"unit"`` (norm 1).
PcaScale = Literal["projection", "unit"]

_SPREAD_RTOL = 1e-4  # below this (relative to the differences' norm) the pairs are treated as identical
_PROMPTS_ALLOWED = "a non-empty list of strings (one prompt per pair)"
_PROMPTS_EXAMPLE = "['I love you', 'What a great day']"
_PROMPTS_EMPTY = (
    "{name}[{i}] is the empty string; allowed: prompts with at least one token after BOS (an empty prompt would read "
    "the BOS activation, the same for every prompt). Fix: give it text or drop the pair."
)


# ---------------------------------------------------------------------------- the runner
def pair_texts(model: Any, pos_prompts: Any, neg_prompts: Any, token: Any, chat: Any, system: Any
               ) -> tuple[list[str], list[str], TokenRule, Optional[list[int]]]:
    """The checked texts of both lists (chat-formatted with ``chat=True``), the token rule and the response starts.

    Example:
        >>> from steering.testing import tiny_model
        >>> pair_texts(tiny_model(), "good", ["bad"], "last", False, None)
        (['good'], ['bad'], 'last', None)
    """
    rule = check_token_rule(token)
    pos_prompts, neg_prompts = source_pairs(pos_prompts, neg_prompts, flag("chat", chat))
    if not flag("chat", chat):
        if rule == "response" or system is not None:
            raise InvalidArgumentError(
                f"token={rule!r}, system={system!r} with chat=False; allowed: token='response' and system= only "
                "with chat=True (they refer to the chat template's turns). Fix: pass chat=True, or token='last'."
            )
        checks = {"allowed": _PROMPTS_ALLOWED, "example": _PROMPTS_EXAMPLE, "empty": _PROMPTS_EMPTY}
        return text_list("pos_prompts", pos_prompts, **checks), text_list("neg_prompts", neg_prompts, **checks), rule, None
    pos_list, pos_starts = chat_texts(model, pos_prompts, system, name="pos_prompts")
    neg_list, neg_starts = chat_texts(model, neg_prompts, system, name="neg_prompts")
    return pos_list, neg_list, rule, (pos_starts + neg_starts if rule == "response" else None)


def _paired_differences(
    model: Any, pos_prompts: Any, neg_prompts: Any, names: Sequence[str], token: Any, batch_size: Any,
    chat: Any = False, system: Any = None,
) -> tuple[dict[str, Float[Tensor, "pair d_model"]], list[str], list[str], TokenRule]:
    """Validate the prompt lists; return ``pos − neg`` per pair at every hook of ``names``."""
    pos_list, neg_list, rule, starts = pair_texts(model, pos_prompts, neg_prompts, token, chat, system)
    if len(pos_list) != len(neg_list):
        raise InvalidArgumentError(
            f"pos_prompts has {len(pos_list)} prompts but neg_prompts has {len(neg_list)}; allowed: equal counts "
            "(pos_prompts[i] and neg_prompts[i] form pair i). Fix: pair every positive prompt with one negative."
        )
    labels = [f"pos_prompts[{i}]" for i in range(len(pos_list))] + [f"neg_prompts[{i}]" for i in range(len(neg_list))]
    feats = prompt_features(model, pos_list + neg_list, names, rule, batch_size, labels=labels, response_starts=starts)
    n = len(pos_list)
    diffs = {name: f[:n] - f[n:] for name, f in feats.items()}  # [pair, d_model]
    return diffs, pos_list, neg_list, rule


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
        weight_mode=weight_mode(model),
        meta=meta,
    )


def _aggregate(aggregator: Aggregator, diffs: Tensor, name: str) -> tuple[Tensor, dict[str, Any]]:
    """Call ``aggregator`` at one hook and check it returned ``(tensor, dict)``."""
    result = aggregator(diffs, name)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Tensor)
            and isinstance(result[1], dict)):
        raise InvalidArgumentError(
            f"the aggregator returned {type(result).__name__} at {name}; allowed: a (tensor, dict) pair, the "
            "direction and its metadata. Fix: return e.g. (diffs.mean(dim=0), {})."
        )
    return result


def direction_from_pairs(
    model: Any,
    pos_prompts: Union[ChatInput, Sequence[ChatInput], PairSource],
    neg_prompts: Union[ChatInput, Sequence[ChatInput], None],
    layer: LayerSpec,
    aggregator: Aggregator,
    *,
    method: str = "custom",
    hook: str = "resid_pre",
    token: TokenRule = "last",
    batch_size: int = 32,
    chat: bool = False,
    system: Optional[str] = None,
) -> Union[SteeringVector, list[SteeringVector]]:
    """A direction per layer from many prompt pairs, reduced by ``aggregator``.

    Reads the paired differences ``pos − neg`` exactly as :func:`mean_diff` describes
    (token rule, BOS first, batching, refusals) and calls ``aggregator(diffs, hook_name)``
    once per hook on the float32 ``[pair, d_model]`` matrix. Every hook of ``layer`` is
    read from the same forward passes.

    Args:
        model: A ``TransformerBridge``.
        pos_prompts: The positive prompts (one string counts as one pair).
        neg_prompts: The negative prompts, as many as ``pos_prompts``.
        layer: A block index (one vector), a list of them, or ``"all"`` (a list of vectors).
        aggregator: ``aggregate(diffs, hook_name) -> (direction, meta)``, e.g.
            :func:`mean_aggregator` ``()`` or :func:`pca_aggregator` ``()``.
        method: The vectors' ``method`` label (``"mean_diff"``, ``"pca"``, …).
        hook: Hook kind (default ``"resid_pre"``).
        token: ``"last"``, ``"mean"``, ``"response"`` or an int index, as in :func:`mean_diff`.
        batch_size: Prompts per forward pass (positive and negative prompts together).
        chat: Format every prompt in the model's chat template, as in :func:`mean_diff`.
        system: A system prompt for ``chat=True``.

    Returns:
        A float32 :class:`SteeringVector` (``meta``: ``token``, ``n_pairs``, then the
        aggregator's own entries), or a list of them, one per layer, for a list or ``"all"``.

    Raises:
        InvalidArgumentError: as :func:`mean_diff`; also an aggregator that is not callable
            or does not return a ``(tensor, dict)`` pair.

    Example:
        >>> from steering.testing import tiny_model
        >>> vecs = direction_from_pairs(tiny_model(), ["good"], ["bad"], "all", mean_aggregator(), method="mean_diff")
        >>> [(v.layer, tuple(v.tensor.shape)) for v in vecs]
        [(0, (64,)), (1, (64,))]
    """
    if not callable(aggregator):
        raise InvalidArgumentError(
            f"aggregator={aggregator!r}; allowed: a callable aggregate(diffs, hook_name) -> (direction, meta). "
            "Fix: pass e.g. aggregator=mean_aggregator()."
        )
    names, single = hook_names(model, layer, hook)
    diffs, pos_list, neg_list, rule = _paired_differences(model, pos_prompts, neg_prompts, names, token, batch_size,
                                                          chat, system)
    vectors = []
    for name in names:
        tensor, extra = _aggregate(aggregator, diffs[name], name)
        meta = {"token": rule, "n_pairs": len(pos_list), **extra}
        vectors.append(_direction_vector(model, name, tensor.to(diffs[name].dtype), method, pos_list, neg_list, meta))
    return vectors[0] if single else vectors


# ---------------------------------------------------------------------------- aggregators
def mean_aggregator() -> Aggregator:
    """The mean of the paired differences (CAA); no metadata of its own.

    Example:
        >>> import torch
        >>> direction, meta = mean_aggregator()(torch.tensor([[1.0, 0.0], [3.0, 2.0]]), "blocks.0.hook_resid_pre")
        >>> direction, direction.shape, meta
        (tensor([2., 1.]), torch.Size([2]), {})
    """

    def aggregate(diffs: Float[Tensor, "pair d_model"], hook_name: str) -> tuple[Float[Tensor, " d_model"], dict]:
        return einops.reduce(diffs, "pair d_model -> d_model", "mean"), {}

    return aggregate


def principal_direction(
    diffs: Float[Tensor, "pair d_model"], center: bool = True
) -> tuple[Float[Tensor, " d_model"], Float[Tensor, ""], Optional[float]]:
    """First principal direction of paired differences, sign-aligned with their mean.

    Returns ``(unit direction, projection of the mean difference on it (≥ 0), explained
    variance ratio)``. When the matrix has no spread (one pair, or all differences equal,
    when centred) the direction is the normalised mean difference and the ratio is ``None``.

    Example:
        >>> import torch
        >>> u = torch.tensor([0.6, 0.8, 0.0])
        >>> direction, proj, ratio = principal_direction(torch.stack([1.0 * u, 3.0 * u, 2.0 * u]))
        >>> direction.shape, [round(x, 4) for x in direction.tolist()], round(float(proj), 4), round(ratio, 4)
        (torch.Size([3]), [0.6, 0.8, 0.0], 2.0, 1.0)
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


def pca_aggregator(center: bool = True, scale: PcaScale = "projection") -> Aggregator:
    """The first principal component of the paired differences (see :func:`pca_direction`).

    Args:
        center: Subtract the mean difference before the SVD (PCA proper).
        scale: ``"projection"`` (the mean difference projected on the component) or ``"unit"``.

    Raises:
        InvalidArgumentError: a bad ``center`` or ``scale`` (here); differences that are all
            zero (when aggregating).

    Warns:
        SteeringWarning: (when aggregating) the component is (nearly) orthogonal to the mean difference.

    Example:
        >>> import torch
        >>> diffs = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
        >>> direction, meta = pca_aggregator(scale="unit")(diffs, "blocks.0.hook_resid_pre")
        >>> direction.shape, direction.tolist(), meta["explained_variance_ratio"]
        (torch.Size([2]), [1.0, 0.0], 1.0)
    """
    if not isinstance(center, bool):
        raise InvalidArgumentError(f"center={center!r}; allowed: True or False. Fix: pass center=True.")
    if scale not in ("projection", "unit"):
        raise InvalidArgumentError(
            f"scale={scale!r}; allowed: 'projection' (the mean difference projected on the component, comparable "
            "with mean_diff) or 'unit' (norm 1). Fix: pass scale='projection'."
        )

    def aggregate(diffs: Float[Tensor, "pair d_model"], hook_name: str) -> tuple[Float[Tensor, " d_model"], dict]:
        if float(torch.linalg.matrix_norm(diffs)) == 0.0:
            raise InvalidArgumentError(
                f"at {hook_name} every positive prompt has exactly the activation of its negative prompt (all "
                f"{diffs.shape[0]} differences are zero), so there is no direction; allowed: pairs that differ "
                "before this layer. Fix: use different prompts, or check they are not identical pairs."
            )
        direction, projection, ratio = principal_direction(diffs, center=center)
        if float(projection) <= _SPREAD_RTOL * float(torch.linalg.matrix_norm(diffs)):
            warn_user(
                f"the principal direction at {hook_name} is (nearly) orthogonal to the mean difference of the pairs: "
                "its sign is arbitrary, and with scale='projection' the vector is (nearly) zero. The pairs do not "
                "agree on a direction; check them, or use mean_diff."
            )
        tensor = direction if scale == "unit" else projection * direction
        meta = {
            "center": center,
            "scale": scale,
            "explained_variance_ratio": ratio,
            "fallback": None if ratio is not None else "mean difference (no spread between pairs)",
        }
        return tensor, meta

    return aggregate


# ---------------------------------------------------------------------------- the two methods
def mean_diff(
    model: Any,
    pos_prompts: Union[ChatInput, Sequence[ChatInput], PairSource],
    neg_prompts: Union[ChatInput, Sequence[ChatInput], None],
    layer: LayerSpec,
    *,
    hook: str = "resid_pre",
    token: TokenRule = "last",
    batch_size: int = 32,
    chat: bool = False,
    system: Optional[str] = None,
) -> Union[SteeringVector, list[SteeringVector]]:
    """Mean of paired activation differences at one token position (CAA, Rimsky et al. 2024).

    For each pair ``i``, read the activation of ``pos_prompts[i]`` and of
    ``neg_prompts[i]`` at the chosen token and take ``pos − neg``; the vector is the
    mean of these differences: one ``[d_model]`` direction, added at every position
    (``steer(..., positions="all")``, the default for directions). Every prompt gets BOS
    first (as in :func:`steering.extract.actadd`). Prompts are run in batches of
    ``batch_size``, left-padded with an attention mask, so the result does not depend on
    the batching (to float rounding); all hooks of ``layer`` are read from the same
    forward passes.

    Args:
        model: A ``TransformerBridge``.
        pos_prompts: The positive prompts (a list; one string counts as one pair), or a
            :class:`~steering.datasets.ContrastiveDataset` (then ``neg_prompts=None``): its
            :meth:`~steering.datasets.ContrastiveDataset.pairs` (``chat`` passed on).
        neg_prompts: The negative prompts, as many as ``pos_prompts`` (pair ``i`` is
            ``pos_prompts[i]``, ``neg_prompts[i]``). Empty strings are refused.
        layer: A block index (one vector), a list of them, or ``"all"`` (a list of vectors).
        hook: Hook kind (default ``"resid_pre"``).
        token: ``"last"`` (each prompt's last token, the CAA choice), ``"mean"`` (mean over
            its tokens, BOS excluded) or an int index into the prompt's tokens, counted from
            its first real token: BOS is 0 (refused: it is the same for every prompt), 1 the
            first token after it, ``-1`` the last. The index must exist in every prompt.
            ``"response"`` (with ``chat=True``): the mean over the assistant turn (its header and
            answer), where paired chat examples differ.
        batch_size: Prompts per forward pass (positive and negative prompts together).
        chat: Format every prompt in the model's chat template (:func:`steering.chat.chat_text`):
            a string is one user turn (ending with the generation prompt), a message list may end
            with an assistant message, read as the answer so far (CAA's A/B examples end with the
            answer letter: ``token="last"`` reads it). The template's BOS is the only one.
        system: A system prompt put first in every prompt (``chat=True`` only).

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
    return direction_from_pairs(
        model, pos_prompts, neg_prompts, layer, mean_aggregator(),
        method="mean_diff", hook=hook, token=token, batch_size=batch_size, chat=chat, system=system,
    )


def pca_direction(
    model: Any,
    pos_prompts: Union[ChatInput, Sequence[ChatInput], PairSource],
    neg_prompts: Union[ChatInput, Sequence[ChatInput], None],
    layer: LayerSpec,
    *,
    hook: str = "resid_pre",
    token: TokenRule = "last",
    center: bool = True,
    scale: PcaScale = "projection",
    batch_size: int = 32,
    chat: bool = False,
    system: Optional[str] = None,
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
        token: ``"last"``, ``"mean"``, ``"response"`` or an int index, as in :func:`mean_diff`.
        center: Subtract the mean difference before the SVD (PCA proper; default). ``False``
            takes the top singular direction of the raw differences.
        scale: ``"projection"`` (default, comparable with :func:`mean_diff`) or ``"unit"``.
        batch_size: Prompts per forward pass.
        chat: Format every prompt in the model's chat template, as in :func:`mean_diff`.
        system: A system prompt for ``chat=True``.

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
        EmptyPromptError, LayerOutOfRangeError, UnknownHookError, ContextLengthError: as
            :func:`mean_diff`.

    Example:
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
    return direction_from_pairs(
        model, pos_prompts, neg_prompts, layer, pca_aggregator(center=center, scale=scale),
        method="pca", hook=hook, token=token, batch_size=batch_size, chat=chat, system=system,
    )
