"""Batched, seeded text generation with (or without) steering.

``generate`` runs Hugging Face ``generate`` (KV cache on, left padding, per-row front
alignment from :mod:`steering.placement`) on the backend :func:`steering.backends.resolve`
picks: by default the plain twin of the model (the same weight tensors, hooks on its decoder
layers, plain Hugging Face speed) when every vector sits at ``resid_pre`` / ``resid_post``
(ActAdd's hook points), the bridge's hook points otherwise. ``backend="bridge"`` forces the
bridge.

Sampling defaults are the paper's: temperature 1, top-p 0.3 (Turner et al. also used
a frequency penalty of 1 in their GPT-2-XL examples; pass ``freq_penalty=1.0`` for it).

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> texts = st.generate(model, ["abcdef", "uvwxyz"], vec, coeff=3.0, max_new_tokens=5, n=2, seed=0)
    >>> len(texts)  # prompt-major: abcdef twice, then uvwxyz twice
    4
"""

import contextlib
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from . import _fast
from .apply import attached
from .backends import Target, model_lock, resolve
from .chat import ChatInput, chat_inputs, chat_texts, user_text
from .conditions import Condition, Gate
from .errors import ContextLengthError, InvalidArgumentError
from .placement import Operator, Positions, ScaleCheck, ShortPrompt, make_rule
from ._progress import progress_bar
from .sampling import MAX_FREQ_PENALTY, FiniteCheck, FrequencyPenalty, NucleusSampler, StepBar
from .settings import Backend
from .tokens import fill_id, left_pad, tokenize_prompt
from .validate import coeffs as check_coeffs
from .validate import count, finite_number, flag, text_list
from .validate import seed as check_seed
from .validate import top_k as check_top_k
from .validate import top_p as check_top_p
from .vectors import SteeringVector, vector_list

__all__ = ["generate", "repeat_block", "steering_label", "MAX_ROWS"]

#: The most completions one :func:`generate` call makes (``len(coeff) × len(prompts) × n``): beyond it the
#: call could not finish and its row list alone would exhaust memory.
MAX_ROWS = 1_000_000


_EMPTY_PROMPT = (
    "{name}[{i}] is empty; allowed: a prompt with at least one character (the model needs something to continue). "
    "Fix: pass text, e.g. 'I went up to my friend and said'."
)


@dataclass
class _Plan:
    """Everything one ``generate`` call decided before running: rows, their coefficients, the backend."""

    target: Target
    vectors: list
    coeff: Any  # the checked coefficient(s) as given: a float or a tensor of them
    chunks: list  # [(rows, row coefficients, response starts or None, condition decisions or None)] per batch
    config: Any  # transformers.GenerationConfig
    sampler: Optional[NucleusSampler]
    steering: dict
    freq_penalty: float
    seed: Optional[int]
    show: bool
    scale: ScaleCheck = field(default_factory=ScaleCheck)  # one oversized-addition warning per call


def _check_sampling(model: Any, options: dict) -> dict:
    """The sampling options, checked before any work, in their normal forms (see :func:`generate`)."""
    top_k = options["top_k"]
    return dict(
        do_sample=flag("do_sample", options["do_sample"]),
        temperature=finite_number("temperature", options["temperature"], positive=True),
        top_p=check_top_p(options["top_p"]),
        top_k=None if top_k is None else check_top_k(top_k, int(model.cfg.d_vocab), "top_k"),
        freq_penalty=finite_number("freq_penalty", options["freq_penalty"], bound=MAX_FREQ_PENALTY),
        seed=check_seed(options["seed"]),
        stop_at_eos=flag("stop_at_eos", options["stop_at_eos"]),
        use_cache=flag("use_cache", options["use_cache"]),
        progress=flag("progress", options["progress"], optional=True),
    )


def _encode(model: Any, prompts: list[str], max_new_tokens: int) -> list[Tensor]:
    encoded = [tokenize_prompt(model, p) for p in prompts]
    n_ctx = int(model.cfg.n_ctx)
    for p, ids in zip(prompts, encoded):
        if ids.numel() + max_new_tokens > n_ctx:
            raise ContextLengthError(
                f"prompt {p[:40]!r}… has {ids.numel()} tokens; with max_new_tokens={max_new_tokens} that is "
                f"{ids.numel() + max_new_tokens} > the model's context of {n_ctx}. Fix: shorten the prompt "
                "or lower max_new_tokens."
            )
    return encoded


def _config(model: Any, max_new_tokens: int, stop_at_eos: bool, use_cache: bool) -> Any:
    from transformers import GenerationConfig

    tok = model.tokenizer
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        # temperature / top-k / top-p and the draw itself run in our own NucleusSampler (a faster nucleus than
        # HF's full sort, random numbers for the nucleus only); HF then takes the one token left (greedy)
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=fill_id(model),
        eos_token_id=tok.eos_token_id if stop_at_eos else None,
        bos_token_id=tok.bos_token_id,
        use_cache=bool(use_cache),
    )


def repeat_block(rows: list) -> Optional[int]:
    """The smallest ``b`` such that ``rows`` is ``len(rows) / b`` copies of its first ``b`` rows (at least two).

    Example:
        >>> import torch
        >>> a, b = torch.tensor([1, 2]), torch.tensor([1, 3])
        >>> repeat_block([a, b, a, b]), repeat_block([a, b])
        (2, None)
    """
    n = len(rows)
    for b in range(1, n // 2 + 1):
        if n % b == 0 and all(torch.equal(rows[i], rows[i % b]) for i in range(b, n)):
            return b
    return None


def steering_label(vectors: list, coeff: Any) -> str:
    """What steers a call, for error messages: ``with steering at <hooks> (coeff=...)``.

    Example:
        >>> steering_label([], 1.0)
        'without steering (the model itself, or an enclosing steer() block)'
    """
    if not vectors:
        return "without steering (the model itself, or an enclosing steer() block)"
    shown = coeff.tolist() if isinstance(coeff, Tensor) else coeff
    return f"with steering at {', '.join(v.hook_name for v in vectors)} (coeff={shown})"


def _sharing(plan: _Plan, chunk: list) -> Any:
    """Row sharing below the steered layer for per-row coefficients on the twin (identical prompt blocks)."""
    if not (isinstance(plan.coeff, Tensor) and plan.target.kind == "twin" and plan.config.use_cache):
        return contextlib.nullcontext()
    block = repeat_block(chunk)
    if not block:
        return contextlib.nullcontext()
    lowest = min(int(v.layer) for v in plan.vectors)
    return _fast.shared_rows(plan.target.model, lowest, block, len(chunk) // block)


def _run_chunk(plan: _Plan, chunk: list, chunk_coeffs: list, bar: Any, starts: Optional[list] = None,
               decision: Optional[list] = None) -> list[str]:
    from transformers import LogitsProcessorList

    tokens, mask = left_pad(chunk, fill_id(plan.target.model))
    processors = [StepBar(bar)]
    if plan.sampler is not None:
        processors.insert(0, plan.sampler)
    if plan.freq_penalty:
        processors.insert(0, FrequencyPenalty(float(plan.freq_penalty), tokens.shape[1]))
    processors.insert(0, FiniteCheck(steering_label(plan.vectors, plan.coeff)))
    device = plan.target.device
    kwargs = dict(input_ids=tokens.to(device), attention_mask=mask.to(device), generation_config=plan.config,
                  logits_processor=LogitsProcessorList(processors))
    if not plan.vectors:
        out = plan.target.module.generate(**kwargs)
    else:
        row_coeff = chunk_coeffs if isinstance(plan.coeff, Tensor) else plan.coeff
        extra = dict(response_starts=None if starts is None else torch.tensor(starts),
                     gate=None if decision is None else Gate(decision=torch.tensor(decision, dtype=torch.bool)))
        with _sharing(plan, chunk), attached(plan.target, plan.vectors, row_coeff, **plan.steering,
                                            prompt_lengths=mask.sum(dim=1), scale=plan.scale, **extra):
            out = plan.target.module.generate(**kwargs)
    return plan.target.model.tokenizer.batch_decode(out[:, tokens.shape[1]:].cpu(), skip_special_tokens=True)


def _run(plan: _Plan) -> list[str]:
    """Every chunk under one seeded RNG fork, packed weights (twin, large calls) and one progress bar."""
    target, steps = plan.target, int(plan.config.max_new_tokens)
    rows = max(len(chunk[0]) for chunk in plan.chunks)
    packing = _fast.packed_weights(target.model, rows, steps) if target.kind == "twin" else contextlib.nullcontext()
    devices = [target.device] if target.device.type == "cuda" else []
    completions: list[str] = []
    with model_lock(target.model), torch.random.fork_rng(devices=devices), torch.no_grad(), packing, progress_bar(
        total=len(plan.chunks) * steps, desc="generating", unit="tok", disable=not plan.show, leave=False
    ) as bar:
        if plan.seed is not None:
            torch.manual_seed(plan.seed)
        else:
            torch.seed()  # fresh entropy: fork_rng would otherwise replay the same state each call
        for chunk, chunk_coeffs, starts, decision in plan.chunks:
            completions.extend(_run_chunk(plan, chunk, chunk_coeffs, bar, starts, decision))
    return completions


@contextlib.contextmanager
def _eos_cleared(module: Any, stop_at_eos: bool) -> Any:
    """HF falls back to the model's own ``eos_token_id`` when ours is None: clear it for the call."""
    config = getattr(module, "generation_config", None)
    saved = getattr(config, "eos_token_id", None)
    if not stop_at_eos and config is not None:
        config.eos_token_id = None
    try:
        yield
    finally:
        if config is not None:
            config.eos_token_id = saved


def _prepare(model: Any, prompts: list, chat: bool, system: Any, condition: Any, positions: Any,
             vectors: list) -> tuple[list[str], Optional[list[int]], Optional[list[bool]]]:
    """The texts the model reads (chat-formatted or not), each one's response start and condition decision."""
    if positions == "response" and not chat and vectors:
        raise InvalidArgumentError(
            "positions='response' steers from the assistant turn of a chat prompt, but chat=False; allowed: "
            "positions='response' with chat=True. Fix: pass chat=True, or positions='generated'."
        )
    if system is not None and not chat:
        raise InvalidArgumentError(
            f"system={system!r} is a chat template's system prompt, but chat=False; allowed: system=None "
            "without chat. Fix: pass chat=True, or drop system=."
        )
    decisions = None
    if condition is not None:
        if not isinstance(condition, Condition):
            raise InvalidArgumentError(
                f"condition={condition!r}; allowed: a steering.conditions.Condition or None. Fix: build one with "
                "st.condition_from_prompts(model, matching, other, layer)."
            )
        condition.check_model(model)
        decisions = condition.predict([user_text(p) for p in prompts], model) if vectors else None
    if not chat:
        return prompts, None, decisions
    texts, starts = chat_texts(model, prompts, system)
    return texts, starts, decisions


def generate(
    model: Any,
    prompts: Union[ChatInput, Sequence[ChatInput]],
    vector: Optional[Union[SteeringVector, Sequence[SteeringVector]]] = None,
    coeff: Any = 1.0,
    *,
    max_new_tokens: int = 40,
    n: int = 1,
    seed: Optional[int] = 0,
    do_sample: bool = True,
    temperature: Any = 1.0,
    top_p: Any = 0.3,
    top_k: Optional[int] = None,
    freq_penalty: Any = 0.0,
    positions: Optional[Positions] = None,
    op: Operator = "add",
    value: Any = None,
    short_prompt: ShortPrompt = "truncate",
    stop_at_eos: bool = True,
    use_cache: bool = True,
    batch_size: int = 64,
    progress: Optional[bool] = None,
    backend: Backend = "auto",
    chat: bool = False,
    system: Optional[str] = None,
    condition: Optional[Condition] = None,
) -> list[str]:
    """Generate completions, steered by ``coeff · vector`` (or unsteered with ``vector=None``).

    Args:
        model: A ``TransformerBridge``.
        prompts: One prompt or a list of prompts (with ``chat=True`` each may also be a list of
            ``{"role", "content"}`` messages).
        vector: A :class:`SteeringVector` (or a list of them), or ``None`` for no steering.
        coeff: Steering coefficient, or a list of coefficients: then every prompt × sample is
            generated once per coefficient, all as rows of the same batches (one ``generate``
            call per ``batch_size`` rows instead of one call per coefficient), and the result
            is coefficient-major: all rows of ``coeff[0]``, then of ``coeff[1]``, …
        max_new_tokens: Tokens to generate per completion (an int ≥ 1).
        n: Completions per prompt (an int ≥ 1).
        seed: Seed for sampling (the global RNG is left untouched): an int that ``torch.manual_seed``
            takes (``-2**63 .. 2**64 - 1``), or ``None`` for no seeding.
        do_sample: ``False`` for greedy decoding (a real bool: ``"no"`` or 0 are refused).
        temperature: Sampling temperature, a finite number > 0 (paper: 1).
        top_p: Nucleus sampling mass in ``(0, 1]`` (paper: 0.3); ``None`` or 1 to disable.
        top_k: Top-k filter, an int in ``1 .. d_vocab``; ``None`` to disable.
        freq_penalty: OpenAI-style frequency penalty on generated tokens (paper: 1; default 0), a
            finite number with ``|freq_penalty| ≤`` :data:`steering.sampling.MAX_FREQ_PENALTY` (100).
        positions: Where to steer, see :func:`steering.steer`.
        op: ``"add"``, ``"ablate"`` or ``"clamp"``, see :func:`steering.steer`.
        value: The projection ``op="clamp"`` sets.
        short_prompt: Rule for prompts shorter than the vector, see :func:`steering.steer`.
        stop_at_eos: Stop a row at the end-of-sequence token.
        use_cache: Use the KV cache (default). ``False`` recomputes the whole sequence each
            step: slower, and identical in result (front steering is added to prompt tokens
            only, either way).
        batch_size: Rows per forward batch (``len(prompts) × n`` rows in all).
        progress: Show a progress bar; default: only for long runs.
        backend: ``"auto"`` (the twin where it can serve the call), ``"bridge"`` or ``"twin"``;
            see :mod:`steering.backends`. Both give the same texts.
        chat: Put each prompt in the model's chat template (:func:`steering.chat.chat_text`): a string is
            one user turn; a message list is a conversation, ending with the assistant's generation prompt,
            or, when its last message is the assistant's, continuing that answer (a prefill). The
            template's own BOS is the only one.
        system: A system prompt for ``chat=True``.
        condition: A :class:`~steering.conditions.Condition`: only rows whose prompt (as given, before chat
            formatting; of a message list, the last user message) satisfies it are steered; the others are
            generated exactly as without steering.

    Returns:
        ``len(prompts) × n`` completions (generated text only, special tokens removed), in
        prompt-major order: all samples of prompt 0, then of prompt 1, … With a list of
        ``C`` coefficients: ``C × len(prompts) × n`` completions, coefficient-major.

    Raises:
        EmptyPromptError: a prompt is the empty string.
        InvalidCoefficientError: ``coeff`` is not finite.
        InvalidArgumentError: an option is of the wrong type or out of its range (checked before any work).
        ContextLengthError: a prompt plus ``max_new_tokens`` exceeds the model's context.
        VectorMismatchError: the vector does not belong to this model.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> a = st.generate(model, "ab", None, max_new_tokens=4, n=3, seed=1)
        >>> a == st.generate(model, "ab", None, max_new_tokens=4, n=3, seed=1, backend="bridge")
        True
    """
    prompts = (chat_inputs(prompts) if flag("chat", chat) else
               text_list("prompts", prompts, example="['I hate you because']", empty=_EMPTY_PROMPT))
    coeff = check_coeffs(coeff)
    coeff_list = coeff.tolist() if isinstance(coeff, Tensor) else [coeff]
    max_new_tokens, n = count("max_new_tokens", max_new_tokens), count("n", n)
    batch_size = count("batch_size", batch_size)
    o = _check_sampling(model, dict(do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k,
                                    freq_penalty=freq_penalty, seed=seed, stop_at_eos=stop_at_eos,
                                    use_cache=use_cache, progress=progress))
    if len(coeff_list) * len(prompts) * n > MAX_ROWS:
        raise InvalidArgumentError(
            f"n={n} completions per prompt × {len(prompts)} prompt(s) × {len(coeff_list)} coefficient(s) is "
            f"{len(coeff_list) * len(prompts) * n:,} completions; allowed: at most {MAX_ROWS:,} per call. "
            "Fix: lower n, or split the call."
        )
    vectors = [] if vector is None else vector_list(vector)
    for vec in vectors:  # the placement options, refused before any work (attached checks them again per batch)
        make_rule(vec, positions, op, value, short_prompt)
    texts, starts, decisions = _prepare(model, prompts, flag("chat", chat), system, condition, positions, vectors)
    encoded = _encode(model, texts, max_new_tokens)
    rows = [ids for _ in coeff_list for ids in encoded for _ in range(n)]  # coeff-, then prompt-major
    row_coeffs = [c for c in coeff_list for _ in encoded for _ in range(n)]
    per_row = [[x for _ in coeff_list for x in info for _ in range(n)] if info is not None else None
               for info in (starts, decisions)]
    sampler = NucleusSampler(o["temperature"], o["top_k"], o["top_p"]) if o["do_sample"] else None
    plan = _Plan(
        target=resolve(model, vectors, backend), vectors=vectors, coeff=coeff,
        chunks=[(rows[i:i + batch_size], row_coeffs[i:i + batch_size],
                 *(None if info is None else info[i:i + batch_size] for info in per_row))
                for i in range(0, len(rows), batch_size)],
        config=_config(model, max_new_tokens, o["stop_at_eos"], o["use_cache"]), sampler=sampler,
        steering=dict(positions=positions, op=op, value=value, short_prompt=short_prompt),
        freq_penalty=o["freq_penalty"], seed=o["seed"],
        show=o["progress"] if o["progress"] is not None else len(rows) * max_new_tokens >= 4096,
    )
    with model_lock(model), _eos_cleared(plan.target.module, o["stop_at_eos"]):  # shared config: under the lock
        return _run(plan)
