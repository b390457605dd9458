"""The placement rule: where a steering vector is added, and how much.

Everything that steers — the hooks of :func:`steering.steer` (bridge and twin), the
resumed forward of a sweep, the masking of steered positions in the metrics — asks this
module, so the rule is written once:

* :func:`make_rule` validates a vector's settings into a :class:`Rule` (positions,
  operator, clamp value, short-prompt policy).
* :func:`placement` says which ``(row, position)`` cells of a forward call are steered and,
  for a per-position vector, which vector position each one gets (front alignment counted
  from each row's first real token, so left padding and the KV cache are exact).
* :func:`addition` / :func:`apply_rule` turn that into the change of the residual: ``c · v``
  (scalar or per-row ``c``), an ablation or a clamp.
* :func:`masked_prefix` is the metrics' question: how many leading positions of a text are
  steered (and so excluded from off-target measures).

Positions:

* ``"front"`` (the paper's alignment, default for per-position ActAdd vectors): vector
  position ``j`` goes to the row's ``j``-th real token, prompt tokens only — nothing on
  decode steps past the prompt.
* ``"all"``: one ``[d_model]`` direction at every real position, generated ones included.
* ``"prompt"``: a direction at every real prompt token, never on decode steps.
* ``"generated"``: a direction only at tokens past the prompt. Outside generation a forward
  call counts as prompt in full.
* ``"response"``: a direction from the assistant turn's first token on (a chat prompt's
  generation prompt, i.e. the assistant header, and every generated token). Its start per row is
  given by ``st.generate(..., chat=True)`` (:func:`steering.chat.response_start`); where no start
  is known it is the prompt's end (the same as ``"generated"``).

Example:
    >>> import torch
    >>> span = Span.whole(batch=1, seq=5)
    >>> mask, index = placement("front", 3, span, prompt_lengths=torch.tensor([5]))
    >>> mask.int().tolist(), index.tolist()
    ([[1, 1, 1, 0, 0]], [[0, 1, 2, 3, 4]])
"""

from dataclasses import dataclass
from typing import Literal, Optional, Union

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .errors import InvalidArgumentError, InvalidCoefficientError, InvalidVectorError, warn_user
from .validate import coeff as check_coeff
from .vectors import SteeringVector

__all__ = [
    "Positions",
    "Operator",
    "ShortPrompt",
    "Rule",
    "Span",
    "make_rule",
    "check_options",
    "check_magnitude",
    "truncation_message",
    "MAX_ADDED_NORM",
    "MAX_SCALE_RATIO",
    "scale_ratio",
    "scale_message",
    "ScaleCheck",
    "placement",
    "past_span",
    "addition",
    "apply_rule",
    "masked_prefix",
]

Positions = Literal["front", "all", "prompt", "generated", "response"]
Operator = Literal["add", "ablate", "clamp"]
ShortPrompt = Literal["truncate", "error"]
_POSITIONS = ("front", "all", "prompt", "generated", "response")
_OPS = ("add", "ablate", "clamp")
_SHORT_RULES = ("truncate", "error")


@dataclass(frozen=True)
class Rule:
    """How one vector is applied.

    Attributes:
        positions: Where (see the module notes).
        op: ``"add"`` (ActAdd, CAA), ``"ablate"`` (``x − c (x·d̂) d̂``) or ``"clamp"``
            (``x + (value − x·d̂) d̂``).
        value: The projection ``"clamp"`` sets (``None`` otherwise).
        short_prompt: A prompt shorter than a front vector: ``"truncate"`` (add its first
            positions, with a warning) or ``"error"``.

    Example:
        >>> Rule("front").op
        'add'
    """

    positions: Positions
    op: Operator = "add"
    value: Optional[float] = None
    short_prompt: ShortPrompt = "truncate"


@dataclass
class Span:
    """Where the tokens of one forward call sit in their sequences.

    Attributes:
        batch: Rows of the call.
        seq: Positions of the call.
        start: Absolute position of the call's first token (the cache length on a decode step).
        first_real: Absolute index of each row's first real (non-padding) token.
        real_mask: 1 for the call's real tokens, ``None`` when every token is real.

    Example:
        >>> Span.whole(batch=2, seq=4).start
        0
    """

    batch: int
    seq: int
    start: int
    first_real: Int[Tensor, " batch"]
    real_mask: Optional[Int[Tensor, "batch seq"]]

    @classmethod
    def whole(cls, batch: int, seq: int) -> "Span":
        """A call that holds whole unpadded sequences from position 0.

        Example:
            >>> Span.whole(1, 3).first_real.tolist()
            [0]
        """
        return cls(batch, seq, 0, torch.zeros(batch, dtype=torch.long), None)

    @classmethod
    def from_mask(cls, mask: Int[Tensor, "batch seq"], start: int = 0) -> "Span":
        """A call whose attention mask covers the cached tokens and this call's (HF's convention).

        Example:
            >>> Span.from_mask(torch.tensor([[0, 1, 1], [1, 1, 1]])).first_real.tolist()
            [1, 0]
        """
        mask = mask.to(torch.long)
        seq = int(mask.shape[1]) - start
        return cls(int(mask.shape[0]), seq, start, torch.argmax(mask, dim=1), mask[:, start:])


def make_rule(
    vector: SteeringVector,
    positions: Optional[Positions] = None,
    op: Operator = "add",
    value: Optional[float] = None,
    short_prompt: ShortPrompt = "truncate",
) -> Rule:
    """Check a vector's settings and return its :class:`Rule` (``positions=None``: the vector's default).

    Raises:
        InvalidArgumentError: unknown positions/op/short_prompt, a clamp without ``value``
            (or a value without clamp), a per-position vector with a direction-only rule, or
            a direction with ``"front"``.
        InvalidVectorError: ``op="ablate"``/``"clamp"`` with an all-zero direction.

    Example:
        >>> v = SteeringVector(torch.ones(4), hook_name="blocks.0.hook_resid_pre")
        >>> make_rule(v)
        Rule(positions='all', op='add', value=None, short_prompt='truncate')
        >>> make_rule(v, "front")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: positions='front' needs a per-position [pos, d_model] vector, but the vector at blocks.0.hook_resid_pre is a single direction; allowed: 'all' for directions. Fix: pass positions='all'.
    """
    value = check_options(op, value, short_prompt)
    pos = positions if positions is not None else ("all" if vector.is_direction else "front")
    if not isinstance(pos, str) or pos not in _POSITIONS:
        raise InvalidArgumentError(
            f"positions={pos!r}; allowed: 'front' (the paper's alignment) or 'all', 'prompt', 'generated', "
            "'response'. "
            "Fix: pass one of those."
        )
    _check_shape(vector, pos, op)
    return Rule(pos, op, value, short_prompt)  # type: ignore[arg-type]


def check_options(op: Operator, value: object, short_prompt: ShortPrompt = "truncate") -> Optional[float]:
    """Check the options that do not depend on the vector; return the clamp value (``None`` unless clamp).

    Example:
        >>> check_options("clamp", 2)
        2.0
    """
    if not isinstance(op, str) or op not in _OPS:
        raise InvalidArgumentError(
            f"op={op!r}; allowed: 'add', 'ablate', 'clamp'. Fix: pass one of those (ActAdd is 'add')."
        )
    if op == "clamp" and value is None:
        raise InvalidArgumentError(
            "op='clamp' needs value=<the projection to set>; allowed: a finite number. Fix: pass e.g. value=0.0."
        )
    if op != "clamp" and value is not None:
        raise InvalidArgumentError(
            f"value={value!r} is only used with op='clamp' (op={op!r}); allowed: None here. Fix: drop value=."
        )
    if not isinstance(short_prompt, str) or short_prompt not in _SHORT_RULES:
        raise InvalidArgumentError(f"short_prompt={short_prompt!r}; allowed: 'truncate', 'error'.")
    return check_coeff(value) if op == "clamp" else None


def _check_shape(vec: SteeringVector, pos: Positions, op: Operator) -> None:
    if pos != "front" and not vec.is_direction:
        raise InvalidArgumentError(
            f"positions={pos!r} adds one direction {'everywhere' if pos == 'all' else 'at each selected position'}, "
            f"but the vector at {vec.hook_name} has {vec.n_pos} positions; allowed: a [d_model] direction. Fix: "
            "use vec.direction('sum') (or 'mean'/'last'), or positions='front'."
        )
    if op != "add" and not vec.is_direction:
        raise InvalidArgumentError(
            f"op={op!r} acts along a single direction, but the vector at {vec.hook_name} has {vec.n_pos} "
            "positions; allowed: a [d_model] direction. Fix: use vec.direction('sum') or a mean_diff vector."
        )
    if op != "add" and float(vec.norm()) == 0.0:
        raise InvalidVectorError(
            f"op={op!r} needs a non-zero direction, but the vector at {vec.hook_name} is all zeros; "
            "allowed: a vector with norm > 0. Fix: rebuild it from prompts that differ."
        )
    if pos == "front" and vec.is_direction:
        raise InvalidArgumentError(
            f"positions='front' needs a per-position [pos, d_model] vector, but the vector at {vec.hook_name} "
            "is a single direction; allowed: 'all' for directions. Fix: pass positions='all'."
        )


#: The largest addition norm (``|coeff| · ‖v‖``, or a clamp's ``|value|``) steering accepts. Beyond it the
#: squares that the model's norm layers sum over ``d_model`` components approach float32's limit
#: (3.4e38) and the residual turns into Inf/NaN; useful additions are within a few times the residual norm.
MAX_ADDED_NORM = 1e15


def check_magnitude(vector: SteeringVector, rule: Rule, coeff: Union[float, Tensor]) -> None:
    """Refuse a coefficient (or clamp value) whose addition could only overflow the model.

    Raises:
        InvalidCoefficientError: ``|coeff| · ‖v‖`` (add), ``|coeff|`` (ablate) or ``|value|`` (clamp)
            exceeds :data:`MAX_ADDED_NORM`.

    Example:
        >>> v = SteeringVector(torch.ones(4), hook_name="blocks.0.hook_resid_pre")
        >>> check_magnitude(v, Rule("all"), 1e308)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidCoefficientError: coeff=1e+308 adds a vector of norm inf at blocks.0.hook_resid_pre; allowed: additions up to 1e+15 (beyond that the model's activations overflow float32 and the text comes back empty or NaN). Fix: use a coefficient of the order of the residual norm over the vector norm (st.norm_profile shows both), typically 1..20.
    """
    c = float(coeff.abs().max()) if isinstance(coeff, Tensor) else abs(float(coeff))
    if rule.op == "clamp":
        size, what = abs(float(rule.value)), f"value={rule.value!r} sets a projection of size {abs(float(rule.value)):.3g}"
    elif rule.op == "ablate":
        size, what = c, f"coeff={c:g} scales the removed projection by {c:.3g}"
    else:
        size = c * float(vector.norm().max())
        what = f"coeff={c:g} adds a vector of norm {size:.3g}"
    if not size <= MAX_ADDED_NORM:
        raise InvalidCoefficientError(
            f"{what} at {vector.hook_name}; allowed: additions up to {MAX_ADDED_NORM:g} (beyond that the model's "
            "activations overflow float32 and the text comes back empty or NaN). Fix: use a coefficient of the order "
            "of the residual norm over the vector norm (st.norm_profile shows both), typically 1..20."
        )


#: Above this ratio of the addition's norm to the residual's norm at a steered position, steering warns
#: (once per steered call, at its first forward pass). The paper's settings stay below it: ActAdd at
#: coefficient 20 reaches at most ~200–255× on the built-in models (SmolLM2-135M 202×, Gemma-3-270M 255×;
#: four prompt pairs at every layer, ``st.norm_profile``), the tiny test models ≤ 35×. Beyond 1000× the
#: model's own signal is drowned.
MAX_SCALE_RATIO = 1000.0


def scale_ratio(
    resid: Float[Tensor, "batch seq d_model"], steered: Float[Tensor, "batch seq d_model"], mask: Bool[Tensor, "batch seq"]
) -> float:
    """The largest ``‖steered − resid‖ / ‖resid‖`` over the steered cells (0 when none is steered).

    Example:
        >>> resid = torch.ones(1, 2, 4)
        >>> steered = resid + torch.tensor([[[0.0], [3.0]]])
        >>> scale_ratio(resid, steered, torch.tensor([[True, True]]))
        3.0
    """
    cells = mask.to(resid.device)
    if not bool(cells.any()):
        return 0.0
    with torch.no_grad():
        before = resid.detach()[cells].float()
        added = torch.linalg.vector_norm(steered.detach()[cells].float() - before, dim=-1)
        return float((added / torch.linalg.vector_norm(before, dim=-1).clamp_min(1e-30)).max())


def scale_message(hook_name: str, ratio: float, coeff: Union[float, Tensor]) -> str:
    """The warning for an addition :data:`MAX_SCALE_RATIO` times beyond the residual (names the fix).

    Example:
        >>> scale_message("blocks.1.hook_resid_pre", 5000.0, 200.0)[:96]
        'steering at blocks.1.hook_resid_pre (layer 1, coeff=200) changes the residual by 5000× its own n'
    """
    c = float(coeff.abs().max()) if isinstance(coeff, Tensor) else float(coeff)
    layer = hook_name.split(".")[1] if hook_name.startswith("blocks.") else "-"
    return (f"steering at {hook_name} (layer {layer}, coeff={c:g}) changes the residual by {ratio:.4g}× its own norm "
            f"at a steered position; above {MAX_SCALE_RATIO:g}× the model's own signal is drowned (the paper's "
            f"coefficients, up to ~20, stay under ~300×). Fix: use a smaller coeff, e.g. coeff={c * 10 / ratio:.3g} (about 10×); "
            "st.norm_profile compares the addition with the residual norm per position.")


class ScaleCheck:
    """Warns once when an addition dwarfs the residual (:data:`MAX_SCALE_RATIO`); shared by every batch of one call.

    Each steering hook calls it at its first steered forward pass only (so never on a decode step).

    Example:
        >>> import warnings
        >>> check = ScaleCheck()
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     for _ in range(2):
        ...         check("blocks.0.hook_resid_pre", torch.ones(1, 1, 4), torch.full((1, 1, 4), 1e4), torch.ones(1, 1, dtype=torch.bool), 1e4)
        >>> len(caught), check.warned
        (1, True)
    """

    def __init__(self) -> None:
        self.warned = False

    def __call__(self, hook_name: str, resid: Tensor, steered: Tensor, mask: Tensor,
                 coeff: Union[float, Tensor]) -> None:
        """Compare ``steered − resid`` with ``resid`` at the steered cells; warn if it is the first time beyond the limit."""
        if self.warned:
            return
        ratio = scale_ratio(resid, steered, mask)
        if ratio > MAX_SCALE_RATIO:
            self.warned = True
            warn_user(scale_message(hook_name, ratio, coeff))


def truncation_message(n_tokens: int, n_vec: int, *, hint: bool = True) -> str:
    """The warning when a prompt is shorter than a front vector (``short_prompt="truncate"``).

    Example:
        >>> truncation_message(3, 5, hint=False)
        "a prompt has 3 tokens (BOS included), fewer than the vector's 5 positions: only its first 3 positions are added (short_prompt='truncate')."
    """
    text = (f"a prompt has {n_tokens} tokens (BOS included), fewer than the vector's {n_vec} positions: only its first "
            f"{n_tokens} positions are added (short_prompt='truncate').")
    return text + (" Pass short_prompt='error' to make this an error." if hint else "")


def placement(
    positions: Positions,
    n_vec: Optional[int],
    span: Span,
    prompt_lengths: Optional[Int[Tensor, " batch"]] = None,
    response_starts: Optional[Int[Tensor, " batch"]] = None,
) -> tuple[Bool[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """Which cells of a forward call are steered, and each one's index from its row's first real token.

    Args:
        positions: The rule's positions.
        n_vec: Positions of a per-position vector (``"front"``); ``None`` for a direction.
        span: Where the call's tokens sit (:class:`Span`).
        prompt_lengths: Real prompt tokens per row; ``None`` = unknown (the whole call is prompt).
        response_starts: For ``"response"``: the index (from the row's first real token) of each
            row's assistant turn; ``None``: ``prompt_lengths`` (the response is what is generated).

    Returns:
        ``(mask, index)``: ``mask[b, s]`` is True where the vector acts; ``index[b, s]`` is the
        position counted from row ``b``'s first real token (a front vector's row to add there).

    Example:
        >>> span = Span.from_mask(torch.tensor([[0, 1, 1, 1]]))   # one pad on the left
        >>> mask, index = placement("front", 2, span, torch.tensor([3]))
        >>> mask.int().tolist(), index.tolist()
        ([[0, 1, 1, 0]], [[-1, 0, 1, 2]])
    """
    device = span.first_real.device
    abs_pos = span.start + torch.arange(span.seq, device=device)  # [seq]
    index = einops.rearrange(abs_pos, "seq -> 1 seq") - einops.rearrange(span.first_real, "batch -> batch 1")
    real = index >= 0
    if span.real_mask is not None:
        real = real & span.real_mask.to(device).bool()
    if positions == "all":
        return real, index
    lengths = None if prompt_lengths is None else prompt_lengths.to(device)
    if positions == "response" and response_starts is not None:
        lengths = response_starts.to(device)  # the prompt's chat header on is steered, like generated tokens
    if positions == "front":
        limit = torch.full((span.batch,), int(n_vec or 0), device=device)
        if lengths is not None:
            limit = torch.clamp(lengths, max=int(n_vec or 0))
        return real & (index < einops.rearrange(limit, "batch -> batch 1")), index
    in_prompt = torch.ones_like(real) if lengths is None else index < einops.rearrange(lengths, "batch -> batch 1")
    if positions == "prompt":
        return real & in_prompt, index
    return real & ~in_prompt, index  # "generated", "response"


def past_span(positions: Positions, n_vec: Optional[int], span: Span, prompt_lengths: Optional[Tensor]) -> bool:
    """True when no token of the call can be steered by a ``"front"``/``"prompt"`` rule: every row is
    past its steered span (the common decode step; a cheap CPU-side test before :func:`placement`).

    Example:
        >>> past_span("front", 3, Span(1, 1, 7, torch.zeros(1, dtype=torch.long), None), None)
        True
    """
    if positions not in ("front", "prompt") or span.start == 0:
        return False
    first_index = span.start - int(span.first_real.max())  # the smallest index-from-row-start in this call
    if positions == "front":
        return first_index >= int(n_vec or 0)
    return prompt_lengths is not None and first_index >= int(prompt_lengths.max())


def addition(
    vector: Union[Float[Tensor, "pos d_model"], Float[Tensor, " d_model"]],
    mask: Bool[Tensor, "batch seq"],
    index: Int[Tensor, "batch seq"],
    rows: Optional[Float[Tensor, " batch"]] = None,
) -> Float[Tensor, "batch seq d_model"]:
    """What ``"add"`` adds to the residual: ``vector`` (already times a scalar coefficient, or times
    ``rows[b]`` per row) at the masked cells, front-aligned for a per-position vector.

    Example:
        >>> mask, index = placement("front", 2, Span.whole(1, 3), torch.tensor([3]))
        >>> addition(torch.tensor([[1.0], [2.0]]), mask, index, rows=torch.tensor([10.0]))[0, :, 0].tolist()
        [10.0, 20.0, 0.0]
    """
    weight = einops.rearrange(mask, "batch seq -> batch seq 1").to(vector.dtype)
    if rows is not None:
        weight = weight * einops.rearrange(rows.to(device=vector.device, dtype=vector.dtype), "batch -> batch 1 1")
    if vector.ndim == 2:  # per-position vector: row index[b, s] of it
        return vector[index.clamp(0, vector.shape[0] - 1)] * weight
    return vector * weight


def apply_rule(
    resid: Float[Tensor, "batch seq d_model"],
    rule: Rule,
    vector: Union[Float[Tensor, "pos d_model"], Float[Tensor, " d_model"]],
    mask: Bool[Tensor, "batch seq"],
    index: Int[Tensor, "batch seq"],
    coeff: Union[float, Float[Tensor, " batch"]],
) -> Float[Tensor, "batch seq d_model"]:
    """The steered residual. For ``"add"`` pass ``vector`` already times a scalar ``coeff`` (or the
    plain vector with per-row ``coeff``); for ``"ablate"`` / ``"clamp"`` pass the unit direction.

    Example:
        >>> resid = torch.tensor([[[3.0, 4.0]]])
        >>> mask, index = placement("all", None, Span.whole(1, 1))
        >>> apply_rule(resid, Rule("all", "ablate"), torch.tensor([1.0, 0.0]), mask, index, 1.0).tolist()
        [[[0.0, 4.0]]]
        >>> apply_rule(resid, Rule("all", "clamp", 2.0), torch.tensor([1.0, 0.0]), mask, index, 1.0).tolist()
        [[[2.0, 4.0]]]
    """
    per_row = isinstance(coeff, Tensor)
    if rule.op == "add":
        return resid + addition(vector, mask, index, coeff if per_row else None)
    weight = einops.rearrange(mask, "batch seq -> batch seq 1").to(resid.dtype)
    if per_row and rule.op == "ablate":  # clamp ignores the coefficient
        weight = weight * einops.rearrange(coeff.to(device=resid.device, dtype=resid.dtype), "batch -> batch 1 1")
    proj = einops.einsum(resid, vector, "batch seq d_model, d_model -> batch seq").unsqueeze(-1)
    if rule.op == "ablate":
        delta = -proj if per_row else -coeff * proj
    else:  # clamp the projection to `value`
        delta = rule.value - proj
    return resid + delta * weight * vector


def masked_prefix(vector: SteeringVector, length: int, positions: Optional[Positions] = None,
                  op: Operator = "add") -> int:
    """How many leading positions of a lone ``length``-token text the rule steers, for masking.

    A front-aligned vector steers the first ``min(n_pos, length)`` positions, which off-target
    measures leave out. A rule that acts at every position (a direction, ablate, clamp) leaves
    nothing unsteered to measure against, so nothing is masked: 0.

    Example:
        >>> v = SteeringVector(torch.ones(4, 8), hook_name="blocks.0.hook_resid_pre")
        >>> masked_prefix(v, 10), masked_prefix(v, 3), masked_prefix(v.direction(), 10)
        (4, 3, 0)
    """
    pos = positions or ("all" if vector.is_direction else "front")
    if pos != "front" or op != "add" or vector.is_direction:
        return 0
    mask, _ = placement("front", vector.n_pos, Span.whole(1, length), torch.tensor([length]))
    return int(mask.sum())
