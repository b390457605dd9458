"""Applying steering vectors: the ``steer`` context manager and its position rules.

Inside ``with steer(model, vec, coeff):`` every forward pass of ``model`` — a plain
call, ``run_with_cache``, ``model.generate`` or Hugging Face ``generate`` on
``model.original_model`` — gets ``coeff · vec`` added at ``vec.hook_name``.
The hooks are removed on exit, also when the body raises (KeyboardInterrupt included).

Positions:

* ``"front"`` (the paper's alignment, default for per-position ActAdd vectors): vector
  position ``j`` is added at the row's ``j``-th real token, counting from each row's
  first non-padding token (so left-padded batches are aligned per row). It applies to
  prompt tokens only: on cached decode steps (one new token whose position is past the
  prompt) nothing is added, so cached and uncached generation agree.
* ``"all"``: a single ``[d_model]`` direction is added at every real position, the
  prompt and every generated token.
* ``"prompt"``: a direction at every real prompt token, never on decode steps.
* ``"generated"``: a direction only at tokens past the prompt (generated ones). Outside
  :func:`steering.generate`, a forward call counts as prompt in full.

Operators (``op=``): ``"add"`` (ActAdd and CAA), ``"ablate"`` (project a direction out of
the residual, ``x − c (x·d̂) d̂``), ``"clamp"`` (set the projection to ``value``,
``x + (value − x·d̂) d̂``). Every position rule is exact under the KV cache and left padding.

Prompts shorter than the vector (front): by default (``short_prompt="truncate"``) only
the vector's first ``n`` positions are added to an ``n``-token prompt, and a
:class:`~steering.errors.SteeringWarning` says so; ``short_prompt="error"`` raises
:class:`~steering.errors.PromptTooShortError` instead.

Example:
    >>> import torch, steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "good", "bad", layer=1)
    >>> tokens = model.to_tokens("hello there")
    >>> with st.steer(model, vec, coeff=4.0):
    ...     steered = model(tokens)
    >>> bool((steered != model(tokens)).any())
    True
"""

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Optional, Sequence, Union

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import (
    InvalidArgumentError,
    InvalidCoefficientError,
    InvalidVectorError,
    PromptTooShortError,
    warn_user,
)
from .vectors import SteeringVector

__all__ = ["steer", "Positions", "Operator", "check_coeff", "check_coeffs", "active_hooks"]

Positions = Literal["front", "all", "prompt", "generated"]
Operator = Literal["add", "ablate", "clamp"]
_POSITIONS = ("front", "all", "prompt", "generated")
_OPS = ("add", "ablate", "clamp")
_SHORT_RULES = ("truncate", "error")


def check_coeff(coeff: Any) -> float:
    """Validate a steering coefficient and return it as a float.

    Example:
        >>> check_coeff(5)
        5.0
        >>> check_coeff(float("inf"))
        Traceback (most recent call last):
        ...
        steering.errors.InvalidCoefficientError: coeff=inf is not a finite number; allowed: any finite float (typical ActAdd values: 1..20, negative to steer the other way). Fix: pass e.g. coeff=5.0.
    """
    if isinstance(coeff, Tensor) and coeff.numel() == 1:
        coeff = coeff.item()
    ok = isinstance(coeff, (int, float)) and not isinstance(coeff, bool) and math.isfinite(coeff)
    if not ok:
        raise InvalidCoefficientError(
            f"coeff={coeff!r} is not a finite number; allowed: any finite float (typical ActAdd values: "
            "1..20, negative to steer the other way). Fix: pass e.g. coeff=5.0."
        )
    return float(coeff)


def check_coeffs(coeff: Any) -> Union[float, Float[Tensor, " batch"]]:
    """Validate a coefficient that may be per batch row: a number, or a 1-D sequence of numbers.

    A sequence gives row ``i`` of every forward batch the coefficient ``coeff[i]`` (so the
    batch must have exactly that many rows). It lets many coefficients ride as rows of
    one forward pass.

    Example:
        >>> check_coeffs(2)
        2.0
        >>> check_coeffs([0, 1.5])
        tensor([0.0000, 1.5000])
        >>> check_coeffs([])
        Traceback (most recent call last):
        ...
        steering.errors.InvalidCoefficientError: coeff=[] is an empty sequence; allowed: a finite number or a non-empty 1-D sequence of them (one per batch row). Fix: pass e.g. coeff=5.0 or coeff=[0, 5.0].
    """
    if isinstance(coeff, Tensor) and coeff.ndim == 1 and coeff.numel() > 1:
        coeff = coeff.tolist()
    if isinstance(coeff, (list, tuple)):
        if not coeff:
            raise InvalidCoefficientError(
                "coeff=[] is an empty sequence; allowed: a finite number or a non-empty 1-D sequence of them "
                "(one per batch row). Fix: pass e.g. coeff=5.0 or coeff=[0, 5.0]."
            )
        return torch.tensor([check_coeff(c) for c in coeff], dtype=torch.float32)
    return check_coeff(coeff)


@dataclass
class _CallContext:
    """Where the tokens of the current forward call sit in their sequences."""

    batch: int
    seq: int
    start: int  # absolute position of the chunk's first token (past length under a KV cache)
    first_real: Int[Tensor, " batch"]  # absolute index of each row's first real token
    real_mask: Optional[Int[Tensor, "batch seq"]]  # 1 for real tokens of this chunk, None = all real


class _Tracker:
    """Reads the attention mask / cache length of each forward call of the HF model."""

    def __init__(self) -> None:
        self.local = threading.local()

    @property
    def ctx(self) -> Optional[_CallContext]:
        return getattr(self.local, "ctx", None)

    def pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        if not isinstance(ids, Tensor) or ids.ndim < 2:
            self.local.ctx = None
            return
        batch, seq = int(ids.shape[0]), int(ids.shape[1])
        mask = kwargs.get("attention_mask")
        past = kwargs.get("past_key_values")
        if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[0] == batch and mask.shape[1] >= seq:
            start = int(mask.shape[1]) - seq
            mask = mask.to(torch.long)
            first_real = torch.argmax(mask, dim=1)  # first 1 in each row
            real_mask = mask[:, start:]
        else:
            start = int(past.get_seq_length()) if past is not None and hasattr(past, "get_seq_length") else 0
            first_real = torch.zeros(batch, dtype=torch.long)
            real_mask = None
        self.local.ctx = _CallContext(batch, seq, start, first_real, real_mask)

    def post_hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.local.ctx = None


class _Steerer:
    """The hook function: applies the operator at the selected positions."""

    def __init__(
        self,
        vector: SteeringVector,
        coeff: Union[float, Tensor],
        positions: str,
        short_prompt: str,
        tracker: _Tracker,
        prompt_lengths: Optional[Tensor],
        op: str = "add",
        value: Optional[float] = None,
    ) -> None:
        self.vector = vector
        self.coeff = coeff
        self.positions = positions
        self.short_prompt = short_prompt
        self.tracker = tracker
        self.prompt_lengths = prompt_lengths  # real prompt length per row, set by generate()
        self.op = op
        self.value = value
        self.last_lengths: Optional[Tensor] = None
        self._cache: dict[tuple, Tensor] = {}
        self.warned = False

    def _prepared(self, like: Tensor) -> Tensor:
        """``coeff · v`` for "add", the unit direction for "ablate"/"clamp", in ``like``'s dtype."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            v = self.vector.tensor.to(device=like.device, dtype=torch.float32)
            if self.op == "add":
                if not isinstance(self.coeff, Tensor):  # per-row coefficients scale at call time
                    v = self.coeff * v
            else:
                v = v / torch.linalg.vector_norm(v)
            self._cache[key] = v.to(like.dtype)
        return self._cache[key]

    def _context(self, resid: Tensor) -> _CallContext:
        ctx = self.tracker.ctx
        batch, seq = int(resid.shape[0]), int(resid.shape[1])
        if ctx is None or ctx.batch != batch or ctx.seq != seq:
            return _CallContext(batch, seq, 0, torch.zeros(batch, dtype=torch.long), None)
        return ctx

    def _mask(self, ctx: _CallContext, device: torch.device) -> tuple[Tensor, Tensor]:
        """Which (row, position) pairs of this call are steered, and each one's index from the row's start."""
        abs_pos = ctx.start + torch.arange(ctx.seq, device=device)  # [seq]
        j = abs_pos.unsqueeze(0) - ctx.first_real.to(device).unsqueeze(1)  # [batch, seq]
        if ctx.real_mask is not None:
            real = ctx.real_mask.to(device).bool() & (j >= 0)
        else:
            real = j >= 0
        if self.positions == "all":
            return real, j
        lengths = self._lengths(ctx, device)  # prompt length per row (None: unknown → whole call is prompt)
        if self.positions == "front":
            n_vec = int(self.vector.tensor.shape[0])
            if lengths is None:
                limit = torch.full((ctx.batch,), n_vec, device=device)
            else:
                limit = torch.clamp(lengths, max=n_vec)
                if ctx.start == 0 and bool((lengths < n_vec).any()):
                    self._short(int(lengths.min()), n_vec)
            return real & (j < limit.unsqueeze(1)), j
        if lengths is None:
            in_prompt = torch.ones_like(real)
        else:
            in_prompt = j < lengths.unsqueeze(1)
        if self.positions == "prompt":
            return real & in_prompt, j
        return real & ~in_prompt, j  # "generated"

    def _past_prompt(self, ctx: _CallContext) -> bool:
        """True when every token of this call lies beyond each row's steered span (cheap, CPU-side)."""
        first_pos = ctx.start - int(ctx.first_real.max())  # the smallest index-from-row-start in this call
        if self.positions == "front":
            return first_pos >= int(self.vector.tensor.shape[0])
        lengths = self.prompt_lengths if self.prompt_lengths is not None else self.last_lengths
        return lengths is not None and first_pos >= int(lengths.max())

    def _row_coeffs(self, batch: int, like: Tensor) -> Tensor:
        coeffs = self.coeff
        assert isinstance(coeffs, Tensor)
        if coeffs.shape[0] != batch:
            raise InvalidCoefficientError(
                f"{coeffs.shape[0]} per-row coefficients were given but the forward batch at {self.vector.hook_name} "
                f"has {batch} rows; allowed: one coefficient per row. Fix: pass as many coefficients as rows "
                "(st.generate(..., coeff=[...]) arranges this for you)."
            )
        return coeffs.to(device=like.device, dtype=like.dtype).view(batch, 1, 1)

    def __call__(self, resid: Float[Tensor, "batch pos d_model"], hook: Any = None) -> Tensor:
        per_row = isinstance(self.coeff, Tensor)
        if self.op in ("add", "ablate") and not per_row and self.coeff == 0.0:
            return resid
        ctx = self._context(resid)
        if self.positions in ("front", "prompt") and ctx.start > 0 and self._past_prompt(ctx):
            return resid  # a decode step past every row's steered span: nothing to add (the common case)
        mask, j = self._mask(ctx, resid.device)
        if not bool(mask.any()):
            return resid
        vec = self._prepared(resid)
        weight = mask.unsqueeze(-1).to(resid.dtype)  # [batch, seq, 1]
        if per_row:
            rows = self._row_coeffs(int(resid.shape[0]), resid)
            if self.op in ("add", "ablate"):
                weight = weight * rows
        if self.op == "add":
            if vec.ndim == 2:  # per-position vector, front-aligned
                return resid + vec[j.clamp(0, vec.shape[0] - 1)] * weight
            return resid + vec * weight
        proj = einops.einsum(resid, vec, "batch seq d_model, d_model -> batch seq").unsqueeze(-1)
        if self.op == "ablate":
            delta = -proj if per_row else -self.coeff * proj
        else:  # clamp the projection to `value`
            delta = self.value - proj
        return resid + delta * weight * vec

    def _lengths(self, ctx: _CallContext, device: torch.device) -> Optional[Tensor]:
        if self.prompt_lengths is not None and self.prompt_lengths.shape[0] == ctx.batch:
            return self.prompt_lengths.to(device)
        if ctx.start == 0:
            if ctx.real_mask is None:
                lengths = torch.full((ctx.batch,), ctx.seq, device=device)
            else:
                lengths = ctx.real_mask.sum(dim=1).to(device)
            self.last_lengths = lengths
            return lengths
        return self.last_lengths.to(device) if self.last_lengths is not None else None

    def _short(self, n_tokens: int, n_vec: int) -> None:
        if self.short_prompt == "error":
            raise PromptTooShortError(
                f"a prompt has {n_tokens} tokens (BOS included) but the vector {self.vector.hook_name} has "
                f"{n_vec} positions; allowed with short_prompt='error': prompts at least as long as the vector. "
                "Fix: lengthen the prompt, use a shorter prompt pair, or short_prompt='truncate'."
            )
        if not self.warned:
            self.warned = True
            warn_user(
                f"a prompt has {n_tokens} tokens (BOS included), fewer than the vector's {n_vec} positions: only "
                f"its first {n_tokens} positions are added (short_prompt='truncate'). Pass short_prompt='error' "
                "to make this an error."
            )


def _hf_module(model: Any) -> Any:
    return getattr(model, "original_model", model)


def _plain_target(model: Any, plan: Sequence[tuple[SteeringVector, str]]) -> Optional[Any]:
    """The unbridged twin when every vector sits at a block boundary (see :mod:`steering.fast`)."""
    from .fast import FAST_HOOKS, plain_model

    if not all(vec.hook in FAST_HOOKS and vec.layer is not None for vec, _ in plan):
        return None
    return plain_model(model)


def _hook_plain_layer(plain: Any, vec: SteeringVector, fn: "_Steerer") -> Any:
    """Register ``fn`` on the twin's decoder layer: on its input (resid_pre) or output (resid_post)."""
    from .fast import decoder_layers

    layer = decoder_layers(plain)[vec.layer]
    if vec.hook == "resid_pre":

        def pre(module: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                return (fn(args[0]),) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = fn(kwargs["hidden_states"])
            return args, kwargs

        return layer.register_forward_pre_hook(pre, with_kwargs=True)

    def post(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]),) + tuple(output[1:])
        return fn(output)

    return layer.register_forward_hook(post, with_kwargs=True)


def active_hooks(model: Any) -> int:
    """Count forward hooks currently attached to ``model``'s hook points and HF module.

    Useful to check that nothing leaked: it is 0 on a fresh model and after every
    ``steer`` block.

    Example:
        >>> from steering.testing import tiny_model
        >>> active_hooks(tiny_model())
        0
    """
    count = sum(len(hp._forward_hooks) for hp in set(model.hook_dict.values()))
    hf = _hf_module(model)
    count += len(hf._forward_pre_hooks) + len(hf._forward_hooks)
    plain = getattr(model, "_steering_plain_model", None)
    if plain:
        count += sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in plain.modules())
    return count


@contextmanager
def steer(
    model: Any,
    vector: Union[SteeringVector, Sequence[SteeringVector]],
    coeff: Any = 1.0,
    *,
    positions: Optional[str] = None,
    op: str = "add",
    value: Any = None,
    short_prompt: str = "truncate",
    _prompt_lengths: Optional[Tensor] = None,
    _plain: bool = False,
) -> Iterator[None]:
    """Steer every forward pass inside the block: add ``coeff · vector`` (or ablate / clamp a direction).

    Args:
        model: A ``TransformerBridge`` (see :func:`steering.load_model`).
        vector: A :class:`SteeringVector`, or several (each at its own hook; all share ``coeff``).
        coeff: The steering coefficient ``c`` (finite; 0 leaves the model untouched). With
            ``op="ablate"`` it is the fraction of the projection removed (1 = all of it).
            A 1-D sequence gives each batch row its own coefficient (``coeff[i]`` for row
            ``i``; every forward batch must then have exactly ``len(coeff)`` rows), so a
            coefficient sweep runs as one batch. Ignored by ``op="clamp"``.
        positions: ``"front"`` (paper alignment; default for per-position vectors), ``"all"``
            (every real position, generated ones included; default for single directions),
            ``"prompt"`` (prompt tokens only, never on decode steps) or ``"generated"`` (only
            tokens past the prompt). Outside ``st.generate`` a forward call counts as all prompt.
        op: ``"add"`` (default), ``"ablate"`` (remove ``coeff ×`` the residual's projection on the
            direction: ``x − c (x·d̂) d̂``) or ``"clamp"`` (set that projection to ``value``:
            ``x + (value − x·d̂) d̂``). Ablate and clamp need a single ``[d_model]`` direction.
        value: The projection ``clamp`` sets (in residual units along the unit direction).
        short_prompt: What to do when a prompt is shorter than a front-aligned vector:
            ``"truncate"`` (add the first positions only, with a warning) or ``"error"``.

    Yields:
        Nothing; use ``model`` as usual inside the block.

    Raises:
        InvalidCoefficientError: ``coeff`` is NaN/Inf or not a number.
        VectorMismatchError: the vector was taken from another model, width, hook or weight mode.
        InvalidVectorError: the vector holds NaN/Inf.
        InvalidArgumentError: unknown ``positions``, or a per-position vector with ``"all"``.

    Example:
        >>> import torch, steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "a", "b", layer=0)
        >>> with st.steer(model, vec, coeff=0.0):
        ...     logits = model(model.to_tokens("abc"))
        >>> torch.equal(logits, model(model.to_tokens("abc")))
        True
    """
    vectors = [vector] if isinstance(vector, SteeringVector) else list(vector)
    if not vectors or not all(isinstance(v, SteeringVector) for v in vectors):
        raise InvalidArgumentError(
            f"vector={vector!r} is not a SteeringVector; allowed: a SteeringVector or a list of them. "
            "Fix: build one with st.actadd(model, pos, neg, layer)."
        )
    coeff = check_coeffs(coeff)
    if op not in _OPS:
        raise InvalidArgumentError(
            f"op={op!r}; allowed: 'add', 'ablate', 'clamp'. Fix: pass one of those (ActAdd is 'add')."
        )
    if op == "clamp":
        if value is None:
            raise InvalidArgumentError(
                "op='clamp' needs value=<the projection to set>; allowed: a finite number. Fix: pass e.g. value=0.0."
            )
        value = check_coeff(value)
    elif value is not None:
        raise InvalidArgumentError(
            f"value={value!r} is only used with op='clamp' (op={op!r}); allowed: None here. Fix: drop value=."
        )
    if short_prompt not in _SHORT_RULES:
        raise InvalidArgumentError(f"short_prompt={short_prompt!r}; allowed: 'truncate', 'error'.")
    plan = []
    for vec in vectors:
        vec.check_finite()
        vec.check_compatible(model)
        pos = positions or ("all" if vec.is_direction else "front")
        if pos not in _POSITIONS:
            raise InvalidArgumentError(
                f"positions={pos!r}; allowed: 'front' (the paper's alignment) or 'all', 'prompt', 'generated'. "
                "Fix: pass one of those."
            )
        if pos != "front" and not vec.is_direction:
            raise InvalidArgumentError(
                f"positions={pos!r} adds one direction {'everywhere' if pos == 'all' else 'at each selected position'}, "
                f"but the vector at {vec.hook_name} has "
                f"{vec.n_pos} positions; allowed: a [d_model] direction. Fix: use vec.direction('sum') "
                "(or 'mean'/'last'), or positions='front'."
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
        plan.append((vec, pos))

    tracker = _Tracker()
    plain = _plain_target(model, plan) if _plain else None
    hf = plain if plain is not None else _hf_module(model)
    handles: list[tuple[Any, Any]] = []
    torch_handles = []
    try:
        torch_handles.append(hf.register_forward_pre_hook(tracker.pre_hook, with_kwargs=True))
        torch_handles.append(hf.register_forward_hook(tracker.post_hook, with_kwargs=True, always_call=True))
        for vec, pos in plan:
            fn = _Steerer(vec, coeff, pos, short_prompt, tracker, _prompt_lengths, op=op, value=value)
            if plain is not None:
                torch_handles.append(_hook_plain_layer(plain, vec, fn))
                continue
            hook_point = model.hook_dict[vec.hook_name]
            handles.append((hook_point, hook_point.add_hook(fn, dir="fwd")))
        yield
    finally:
        for hook_point, handle in handles:
            handle.hook.remove()
            if handle in hook_point.fwd_hooks:
                hook_point.fwd_hooks.remove(handle)
        for h in torch_handles:
            h.remove()
