"""Applying steering vectors: the ``steer`` context manager and the hooks behind it.

Inside ``with steer(model, vec, coeff):`` every forward pass of ``model`` in that thread — a
plain call, ``run_with_cache``, ``model.generate``, Hugging Face ``generate`` on
``model.original_model`` or :func:`steering.generate` (whose own steering then adds to the
block's) — gets ``coeff · vec`` added at ``vec.hook_name``, at the positions
:mod:`steering.placement` chooses (front alignment for ActAdd vectors, exact under left
padding and the KV cache). The hooks are removed on exit, also when the body raises
(KeyboardInterrupt included). Other threads using the same model are not steered by the block.
The arguments are checked when ``steer(...)`` is called; the object it returns can be entered again
after it was left, never while it is active (that would add its vectors twice: refused). Passing the
same vector object twice (``[d, d]``) is refused for the same reason. An addition more than
:data:`~steering.placement.MAX_SCALE_RATIO` times the residual's norm warns once per call.

:func:`attached` is the same machinery for the library's own engines (generation, metrics):
it hooks a resolved backend (:mod:`steering.backends`) and knows each row's prompt length.

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

import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from . import _fast
from .backends import Target, enter_block, exit_block, hf_module
from .conditions import Condition, Gate
from .errors import InvalidArgumentError, InvalidCoefficientError, PromptTooShortError, warn_user
from .placement import (
    Operator, Positions, Rule, ScaleCheck, ShortPrompt, Span, apply_rule, check_magnitude, check_options, make_rule,
    past_span, placement, truncation_message,
)
from .validate import coeffs as check_coeffs
from .vectors import SteeringVector, vector_list

__all__ = ["steer", "Steering", "attached", "active_hooks"]


class _Tracker:
    """Reads the attention mask / cache length of each forward call of the HF module into a :class:`Span`."""

    def __init__(self) -> None:
        self.local = threading.local()

    @property
    def span(self) -> Optional[Span]:
        return getattr(self.local, "span", None)

    def pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        if not isinstance(ids, Tensor) or ids.ndim < 2:
            self.local.span = None
            return
        batch, seq = int(ids.shape[0]), int(ids.shape[1])
        mask = kwargs.get("attention_mask")
        past = kwargs.get("past_key_values")
        if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[0] == batch and mask.shape[1] >= seq:
            self.local.span = Span.from_mask(mask, start=int(mask.shape[1]) - seq)
            return
        start = int(past.get_seq_length()) if past is not None and hasattr(past, "get_seq_length") else 0
        self.local.span = Span(batch, seq, start, torch.zeros(batch, dtype=torch.long), None)

    def post_hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.local.span = None


class _Steerer:
    """The hook function of one vector: asks :mod:`steering.placement` where, then applies the rule."""

    def __init__(self, vector: SteeringVector, coeff: Union[float, Tensor], rule: Rule, tracker: _Tracker,
                 prompt_lengths: Optional[Tensor], scale: Optional[ScaleCheck] = None,
                 response_starts: Optional[Tensor] = None, gate: Optional[Gate] = None) -> None:
        self.vector = vector
        self.coeff = coeff
        self.rule = rule
        self.tracker = tracker
        self.prompt_lengths = prompt_lengths  # real prompt length per row, set by the engines
        self.n_vec = None if vector.is_direction else int(vector.tensor.shape[0])
        self.owner = threading.get_ident()  # steering is per call: other threads' passes are left alone
        self.last_lengths: Optional[Tensor] = None
        self._cache: dict[tuple, Tensor] = {}
        self.warned = False
        self.scale = scale  # compares the addition with the residual, at the first steered pass only
        self.response_starts = response_starts  # where each row's assistant turn starts (positions="response")
        self.gate = gate  # a condition's per-row decision (steer(..., condition=)): coefficient 0 where false

    def _prepared(self, like: Tensor) -> Tensor:
        """``coeff · v`` for "add", the unit direction for "ablate"/"clamp", in ``like``'s dtype."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            v = self.vector.tensor.to(device=like.device, dtype=torch.float32)
            if self.rule.op == "add":
                if not isinstance(self.coeff, Tensor):  # per-row coefficients scale at call time
                    v = self.coeff * v
            else:
                v = v / torch.linalg.vector_norm(v)
            self._cache[key] = v.to(like.dtype)
        return self._cache[key]

    def _span(self, resid: Tensor) -> Span:
        span = self.tracker.span
        batch, seq = int(resid.shape[0]), int(resid.shape[1])
        if span is None or span.batch != batch or span.seq != seq:
            return Span.whole(batch, seq)
        return span

    def _lengths(self, span: Span) -> Optional[Tensor]:
        """Prompt length per row: given by the engine, else read off the prompt pass and remembered."""
        if self.prompt_lengths is not None and self.prompt_lengths.shape[0] == span.batch:
            return self.prompt_lengths
        if span.start == 0:
            seq = torch.full((span.batch,), span.seq)
            self.last_lengths = seq if span.real_mask is None else span.real_mask.sum(dim=1)
        return self.last_lengths

    def _row_coeffs(self, batch: int) -> Tensor:
        coeffs = self.coeff
        assert isinstance(coeffs, Tensor)
        if coeffs.shape[0] != batch:
            raise InvalidCoefficientError(
                f"{coeffs.shape[0]} per-row coefficients were given but the forward batch at {self.vector.hook_name} "
                f"has {batch} rows; allowed: one coefficient per row. Fix: pass as many coefficients as rows "
                "(st.generate(..., coeff=[...]) arranges this for you)."
            )
        return coeffs

    def __call__(self, resid: Float[Tensor, "batch pos d_model"]) -> Tensor:
        if threading.get_ident() != self.owner:
            return resid  # a forward pass of another thread on the same model: not ours to steer
        per_row = isinstance(self.coeff, Tensor)
        if self.rule.op in ("add", "ablate") and not per_row and self.coeff == 0.0:
            return resid
        span = self._span(resid)
        known = self.prompt_lengths if self.prompt_lengths is not None else self.last_lengths
        if past_span(self.rule.positions, self.n_vec, span, known):
            return resid  # a decode step past every row's steered span: nothing to add (the common case)
        lengths = self._lengths(span)
        if self.rule.positions == "front" and span.start == 0 and lengths is not None:
            if bool((lengths < self.n_vec).any()):
                self._short(int(lengths.min()))
        starts = self.response_starts
        starts = starts if starts is not None and int(starts.shape[0]) == span.batch else None
        mask, index = placement(self.rule.positions, self.n_vec, span, lengths, starts)
        if not bool(mask.any()):
            return resid
        if self.gate is not None:  # rows whose condition is false: nothing added (bitwise unsteered)
            mask = mask & self.gate.allowed(span.batch).to(mask.device)[:, None]
        coeff = self._row_coeffs(int(resid.shape[0])) if per_row else self.coeff
        mask = mask.to(resid.device)
        out = apply_rule(resid, self.rule, self._prepared(resid), mask, index.to(resid.device), coeff)
        if self.scale is not None:
            scale, self.scale = self.scale, None
            scale(self.vector.hook_name, resid, out, mask, coeff)
        return out

    def _short(self, n_tokens: int) -> None:
        if self.rule.short_prompt == "error":
            raise PromptTooShortError(
                f"a prompt has {n_tokens} tokens (BOS included) but the vector {self.vector.hook_name} has "
                f"{self.n_vec} positions; allowed with short_prompt='error': prompts at least as long as the vector. "
                "Fix: lengthen the prompt, use a shorter prompt pair, or short_prompt='truncate'."
            )
        if not self.warned:
            self.warned = True
            warn_user(truncation_message(n_tokens, self.n_vec))


def _plan(model: Any, vector: Any, coeff: Any, positions: Optional[Positions] = None, op: Operator = "add",
          value: Any = None, short_prompt: ShortPrompt = "truncate",
          ) -> tuple[Union[float, Tensor], list[tuple[SteeringVector, Rule]]]:
    """Validate everything before any hook is attached: vectors, coefficient(s), options, then each vector."""
    vectors = vector_list(vector)
    for i, vec in enumerate(vectors):
        first = next(j for j, other in enumerate(vectors) if other is vec)
        if first != i:
            raise InvalidArgumentError(
                f"vector[{i}] is vector[{first}], the same SteeringVector (at {vec.hook_name}) passed twice: it "
                "would be added twice; allowed: distinct vectors. Fix: pass it once with coeff=2 * c for twice the "
                "addition, or [vec, vec.clone()] if two additions are really meant."
            )
    coeff = check_coeffs(coeff)
    check_options(op, value, short_prompt)
    plan = []
    for vec in vectors:
        vec.check_finite()
        vec.check_compatible(model)
        rule = make_rule(vec, positions, op, value, short_prompt)
        check_magnitude(vec, rule, coeff)
        plan.append((vec, rule))
    return coeff, plan


@contextmanager
def attached(
    target: Target,
    vector: Union[SteeringVector, Sequence[SteeringVector]],
    coeff: Any = 1.0,
    *,
    prompt_lengths: Optional[Int[Tensor, " batch"]] = None,
    scale: Optional[ScaleCheck] = None,
    response_starts: Optional[Int[Tensor, " batch"]] = None,
    gate: Optional[Gate] = None,
    **rule: Any,
) -> Iterator[None]:
    """Steer every call of ``target.module`` inside the block (the engines' form of :func:`steer`).

    Args:
        target: A resolved backend (:func:`steering.backends.resolve`).
        vector: A vector or a list of them.
        coeff: A coefficient, or one per batch row.
        prompt_lengths: Real prompt tokens per batch row (generation knows them; without them the
            prompt pass's own mask says).
        scale: Warns (:class:`~steering.errors.SteeringWarning`) when, at a hook's first steered
            forward pass, the addition exceeds :data:`~steering.placement.MAX_SCALE_RATIO` times the
            residual's norm; once per :class:`~steering.placement.ScaleCheck`, so an engine running
            several batches of one call passes the same one to each (default: a fresh one).
        response_starts: For ``positions="response"``: the index of each row's assistant turn
            (:func:`steering.chat.response_start`); without them the response is what is generated.
        gate: A condition's per-row decision (:class:`steering.conditions.Gate`): rows where it is
            false get nothing added. A gate holding a condition reads it on each full forward pass.
        **rule: ``positions``, ``op``, ``value``, ``short_prompt``, as in :func:`steer`.

    Example:
        >>> from steering import actadd
        >>> from steering.backends import resolve
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = actadd(model, "a", "b", layer=1)
        >>> target = resolve(model, [vec])
        >>> with attached(target, vec, 2.0):
        ...     _ = target.module(input_ids=model.to_tokens("abc"))
        >>> active_hooks(model)
        0
    """
    model = target.model
    coeff, plan = _plan(model, vector, coeff, **rule)
    scale = scale if scale is not None else ScaleCheck()
    tracker = _Tracker()
    removers = []
    try:
        removers.append(target.module.register_forward_pre_hook(tracker.pre_hook, with_kwargs=True).remove)
        removers.append(
            target.module.register_forward_hook(tracker.post_hook, with_kwargs=True, always_call=True).remove
        )
        if gate is not None and gate.condition is not None:  # the condition reads before anything is steered
            _check_gate(gate.condition, model, [vec for vec, _ in plan])
            removers.extend(_attach_readers(target, gate, tracker))
        for vec, rule in plan:
            removers.append(target.add_hook(vec, _Steerer(vec, coeff, rule, tracker, prompt_lengths, scale,
                                                          response_starts, gate)))
        yield
    finally:
        for remove in removers:
            remove()


def _check_gate(condition: Condition, model: Any, vectors: list[SteeringVector]) -> None:
    """A condition in a steer block decides in the same pass: it must read before the first steered layer."""
    condition.check_model(model)
    for vec in vectors:
        if vec.layer is None or int(vec.layer) < condition.layer:
            raise InvalidArgumentError(
                f"the condition reads layer {condition.layer} but the vector at {vec.hook_name} steers "
                f"{'before it' if vec.layer is not None else 'outside the blocks'}; allowed inside a steer block: "
                f"vectors at layer >= {condition.layer} (the decision is made in the same forward pass, before "
                "steering). Fix: use a condition at an earlier layer, or st.generate(..., condition=...), which "
                "judges each prompt before generating."
            )


def _attach_readers(target: Target, gate: Gate, tracker: "_Tracker") -> list[Any]:
    """Hooks that hand each row's residual at the condition's hooks to ``gate`` (this thread's passes only)."""
    owner = threading.get_ident()
    removers = []
    for name in gate.condition.hook_names:
        def read(resid: Tensor, name: str = name) -> Tensor:
            if threading.get_ident() == owner:
                span = tracker.span
                if span is None or span.batch != int(resid.shape[0]) or span.seq != int(resid.shape[1]):
                    span = Span.whole(int(resid.shape[0]), int(resid.shape[1]))
                gate.read(name, resid, span)
            return resid

        point = SteeringVector(torch.zeros(int(target.model.cfg.d_model)), hook_name=name)
        removers.append(target.add_hook(point, read))
    return removers


def active_hooks(model: Any) -> int:
    """Count forward hooks currently attached to ``model``'s hook points, HF module and twin.

    Useful to check that nothing leaked: it is 0 on a fresh model and after every
    ``steer`` block.

    Example:
        >>> from steering.testing import tiny_model
        >>> active_hooks(tiny_model())
        0
    """
    count = sum(len(hp._forward_hooks) for hp in set(model.hook_dict.values()))
    hf = hf_module(model)
    count += len(hf._forward_pre_hooks) + len(hf._forward_hooks)
    twin = _fast.existing_twin(model)
    if twin is not None:
        count += sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in twin.modules())
    return count


class Steering:
    """What :func:`steer` returns: a context manager that steers ``model`` while it is entered.

    Its arguments were checked when :func:`steer` was called. Entering attaches the hooks, leaving
    removes them (exceptions included). The same object may be entered again after it was left
    (each ``with`` attaches afresh), but not while it is active: a nested ``with s:`` of the same
    object would add the vector twice and raises :class:`~steering.errors.InvalidArgumentError`
    (for a stronger push, use one block with a larger ``coeff``; for two additions, two
    :func:`steer` calls).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> block = st.steer(model, st.actadd(model, "a", "b", layer=1), 2.0)
        >>> with block:
        ...     st.active_hooks(model) > 0
        True
        >>> with block:  # entered again after it was left: steers again
        ...     st.active_hooks(model) > 0
        True
        >>> st.active_hooks(model)
        0
    """

    def __init__(self, model: Any, vector: Any, coeff: Any, rule: dict, condition: Optional[Condition] = None) -> None:
        self.model = model
        self.vector = vector
        self.coeff = coeff
        self.rule = rule
        self.condition = condition
        _plan(model, vector, coeff, **rule)  # every refusal here, before the block is entered
        if condition is not None:
            if not isinstance(condition, Condition):
                raise InvalidArgumentError(
                    f"condition={condition!r}; allowed: a steering.conditions.Condition or None. "
                    "Fix: build one with st.condition_from_prompts(model, matching, other, layer)."
                )
            _check_gate(condition, model, vector_list(vector))
        self._active: Optional[Any] = None
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            if self._active is not None:
                raise InvalidArgumentError(
                    "this steer(...) block is already active (entered and not yet left): entering it again would add "
                    "its vectors twice; allowed: one active `with` per steer(...) object. Fix: use a single `with` "
                    "(with a larger coeff for a stronger push), or call st.steer(...) again for a second addition."
                )
            gate = Gate(self.condition) if self.condition is not None else None
            hooks = attached(Target("bridge", hf_module(self.model), self.model), self.vector, self.coeff,
                             gate=gate, **self.rule)
            hooks.__enter__()
            self._active = hooks
        enter_block(self.model)

    def __exit__(self, *exc: Any) -> Optional[bool]:
        hooks, self._active = self._active, None
        try:
            exit_block(self.model)
        finally:
            result = hooks.__exit__(*exc) if hooks is not None else None
        return result


def steer(
    model: Any,
    vector: Union[SteeringVector, Sequence[SteeringVector]],
    coeff: Any = 1.0,
    *,
    positions: Optional[Positions] = None,
    op: Operator = "add",
    value: Any = None,
    short_prompt: ShortPrompt = "truncate",
    condition: Optional[Condition] = None,
) -> Steering:
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
            ``"prompt"`` (prompt tokens only, never on decode steps), ``"generated"`` (only
            tokens past the prompt) or ``"response"`` (from a chat prompt's assistant turn on; see
            :mod:`steering.placement`). Outside ``st.generate`` a forward call counts as all prompt.
        op: ``"add"`` (default), ``"ablate"`` (remove ``coeff ×`` the residual's projection on the
            direction: ``x − c (x·d̂) d̂``) or ``"clamp"`` (set that projection to ``value``:
            ``x + (value − x·d̂) d̂``). Ablate and clamp need a single ``[d_model]`` direction.
        value: The projection ``clamp`` sets (in residual units along the unit direction).
        short_prompt: What to do when a prompt is shorter than a front-aligned vector:
            ``"truncate"`` (add the first positions only, with a warning) or ``"error"``.
        condition: A :class:`~steering.conditions.Condition`: only rows that satisfy it are steered,
            judged on each full forward pass from the row's residual at the condition's layer (by the
            condition's own ``token`` rule: the mean over its real tokens by default, or the last one;
            the layer must not be deeper than any vector's); other rows are left exactly unsteered.

    Returns:
        A :class:`Steering` context manager: use ``model`` as usual inside ``with``. Every argument
        is checked here, before anything is attached. It may be entered again after it was left,
        never while it is active (see :class:`Steering`).

    Raises:
        InvalidCoefficientError: ``coeff`` is NaN/Inf or not a number.
        VectorMismatchError: the vector was taken from another model, width, hook or weight mode.
        InvalidVectorError: the vector holds NaN/Inf.
        InvalidArgumentError: unknown ``positions``, a per-position vector with ``"all"``, or the
            same vector object twice in ``vector`` (it would be added twice).

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
    rule = dict(positions=positions, op=op, value=value, short_prompt=short_prompt)
    return Steering(model, vector, coeff, rule, condition)
