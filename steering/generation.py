"""Batched, seeded text generation with (or without) steering.

``generate`` runs Hugging Face ``generate`` (KV cache on, left padding, per-row front
alignment handled by :func:`steering.steer`). When every vector sits at ``resid_pre`` /
``resid_post`` (ActAdd's hook points), it runs on the unbridged twin of the model
(:mod:`steering.fast`: the same weight tensors, hooks on the decoder layers), at plain
HF speed; other hook points run through the bridge, whose TransformerLens hook points
fire exactly as in a forward pass. ``STEERING_FAST=0`` forces the bridge path.

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
import math
import os
from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Int
from torch import Tensor

from .apply import check_coeffs, steer
from .errors import ContextLengthError, EmptyPromptError, InvalidArgumentError
from .extract import tokenize_prompt
from .vectors import SteeringVector

__all__ = ["generate", "left_pad"]


def left_pad(
    sequences: Sequence[Tensor], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Left-pad 1-D token tensors into a batch; return ``(tokens, attention_mask)``.

    Example:
        >>> import torch
        >>> toks, mask = left_pad([torch.tensor([1, 5]), torch.tensor([1, 6, 7])], pad_id=0)
        >>> toks.tolist(), mask.tolist()
        ([[0, 1, 5], [1, 6, 7]], [[0, 1, 1], [1, 1, 1]])
    """
    width = max(int(s.numel()) for s in sequences)
    tokens = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        tokens[i, width - seq.numel():] = seq
        mask[i, width - seq.numel():] = 1
    return tokens, mask


class _FrequencyPenalty:
    """Subtract ``penalty × count`` from the logit of each token already generated (OpenAI-style)."""

    def __init__(self, penalty: float, prompt_width: int) -> None:
        self.penalty = penalty
        self.prompt_width = prompt_width

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        generated = input_ids[:, self.prompt_width:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )
        return scores - self.penalty * counts


class _Sampler:
    """Temperature, top-k and nucleus (top-p) sampling in one logits processor.

    Same rule as Hugging Face's warpers (keep a token if the probability mass ranked strictly
    above it is < ``top_p``), but the nucleus is found from a partial ``topk`` of ``probe``
    candidates instead of sorting the whole vocabulary: exact whenever those candidates hold
    at least ``top_p`` of the mass (the usual case; otherwise the row falls back to a full
    sort). :meth:`filter` returns the filtered scores (what HF's warpers return).

    Called as a processor it also *draws* the token: from the nucleus's candidates, with
    probabilities proportional to their softmax probabilities (the distribution HF samples
    from after its warpers), and returns scores that are ``-inf`` everywhere but the drawn
    token, so generation runs in greedy mode and picks it. HF's own draw makes a softmax and
    an exponential random number for every one of the vocabulary's entries (262,144 on Gemma)
    in every row at every step; this draw needs random numbers for the candidates only.
    """

    def __init__(self, temperature: float, top_k: Optional[int], top_p: Optional[float], probe: int = 512) -> None:
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.probe = probe

    def _warped(self, scores: Tensor) -> Tensor:
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = scores.topk(self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, -math.inf)
        return scores

    def _nucleus(self, scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(probs, idx, keep, short)``: the ``probe`` most likely tokens' probabilities and ids, which of
        them the nucleus keeps, and the rows whose nucleus may reach past them (handled by a full sort)."""
        logits = scores.float()
        k = min(self.probe, logits.shape[-1])
        top, idx = logits.topk(k, dim=-1)
        probs = (top - logits.logsumexp(dim=-1, keepdim=True)).exp()
        keep = (probs.cumsum(dim=-1) - probs) < self.top_p  # mass ranked strictly above each candidate
        keep[..., 0] = True
        short = probs.sum(dim=-1) < self.top_p
        return probs, idx, keep, short

    def _full_sort(self, scores: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        probs, order = scores[rows].float().softmax(dim=-1).sort(dim=-1, descending=True)
        keep = (probs.cumsum(dim=-1) - probs) < self.top_p
        keep[..., 0] = True
        return probs, order, keep

    def filter(self, scores: Tensor) -> Tensor:
        """``scores`` with temperature applied and every token outside top-k / the nucleus set to ``-inf``."""
        scores = self._warped(scores)
        if self.top_p is None or self.top_p >= 1.0:
            return scores
        _, idx, keep_top, short = self._nucleus(scores)
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, keep_top)
        if bool(short.any()):
            rows = short.nonzero().squeeze(-1)
            _, order, keep_sorted = self._full_sort(scores, rows)
            keep[rows] = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        return scores.masked_fill(~keep, -math.inf)

    def draw(self, scores: Tensor) -> Tensor:
        """One token id per row, drawn from the filtered distribution: ``[batch]``."""
        scores = self._warped(scores)
        if self.top_p is None or self.top_p >= 1.0:
            return torch.multinomial(scores.float().softmax(dim=-1), 1).squeeze(-1)
        probs, idx, keep, short = self._nucleus(scores)
        chosen = idx.gather(-1, torch.multinomial(probs * keep, 1)).squeeze(-1)
        if bool(short.any()):
            rows = short.nonzero().squeeze(-1)
            p_sorted, order, keep_sorted = self._full_sort(scores, rows)
            chosen[rows] = order.gather(-1, torch.multinomial(p_sorted * keep_sorted, 1)).squeeze(-1)
        return chosen

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        chosen = self.draw(scores)
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(-1, chosen.unsqueeze(-1), 0.0)


class _StepBar:
    """A logits processor that only advances a progress bar (one tick per decode step)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self.bar.update(1)
        return scores


def _check_prompts(prompts: Union[str, Sequence[str]]) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise InvalidArgumentError(
            f"prompts={prompts!r}; allowed: a non-empty string or a non-empty list of strings. "
            "Fix: pass e.g. ['I hate you because']."
        )
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InvalidArgumentError(
                f"prompts[{i}]={p!r} is a {type(p).__name__}; allowed: str. Fix: pass the prompt text."
            )
        if p == "":
            raise EmptyPromptError(
                f"prompts[{i}] is empty; allowed: a prompt with at least one character (the model needs "
                "something to continue). Fix: pass text, e.g. 'I went up to my friend and said'."
            )
        out.append(p)
    return out


def _fast_target(model: Any, vector: Any) -> Any:
    """The unbridged twin (:mod:`steering.fast`) when it can serve this call, else ``None``."""
    from .fast import FAST_HOOKS, plain_model

    if os.environ.get("STEERING_FAST", "1") == "0":
        return None
    vectors = [] if vector is None else [vector] if isinstance(vector, SteeringVector) else list(vector)
    if not all(isinstance(v, SteeringVector) and v.hook in FAST_HOOKS and v.layer is not None for v in vectors):
        return None
    return plain_model(model)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name}={value!r}; allowed: an integer ≥ 1. Fix: pass e.g. {name}=4.")
    return value


def generate(
    model: Any,
    prompts: Union[str, Sequence[str]],
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
    positions: Optional[str] = None,
    op: str = "add",
    value: Any = None,
    short_prompt: str = "truncate",
    stop_at_eos: bool = True,
    use_cache: bool = True,
    batch_size: int = 64,
    progress: Optional[bool] = None,
) -> list[str]:
    """Generate completions, steered by ``coeff · vector`` (or unsteered with ``vector=None``).

    Args:
        model: A ``TransformerBridge``.
        prompts: One prompt or a list of prompts.
        vector: A :class:`SteeringVector` (or a list of them), or ``None`` for no steering.
        coeff: Steering coefficient, or a list of coefficients: then every prompt × sample is
            generated once per coefficient, all as rows of the same batches (one ``generate``
            call per ``batch_size`` rows instead of one call per coefficient), and the result
            is coefficient-major: all rows of ``coeff[0]``, then of ``coeff[1]``, …
        max_new_tokens: Tokens to generate per completion.
        n: Completions per prompt.
        seed: Seed for sampling (the global RNG is left untouched); ``None`` for no seeding.
        do_sample: ``False`` for greedy decoding.
        temperature: Sampling temperature (paper: 1).
        top_p: Nucleus sampling mass (paper: 0.3); ``None`` or 1 to disable.
        top_k: Top-k filter; ``None`` to disable.
        freq_penalty: OpenAI-style frequency penalty on generated tokens (paper: 1; default 0).
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

    Returns:
        ``len(prompts) × n`` completions (generated text only, special tokens removed), in
        prompt-major order: all samples of prompt 0, then of prompt 1, … With a list of
        ``C`` coefficients: ``C × len(prompts) × n`` completions, coefficient-major.

    Raises:
        EmptyPromptError: a prompt is the empty string.
        InvalidCoefficientError: ``coeff`` is not finite.
        ContextLengthError: a prompt plus ``max_new_tokens`` exceeds the model's context.
        VectorMismatchError: the vector does not belong to this model.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> a = st.generate(model, "ab", None, max_new_tokens=4, n=3, seed=1)
        >>> a == st.generate(model, "ab", None, max_new_tokens=4, n=3, seed=1)  # reproducible
        True
    """
    from transformers import GenerationConfig

    prompts = _check_prompts(prompts)
    coeff = check_coeffs(coeff)
    coeff_list = coeff.tolist() if isinstance(coeff, Tensor) else [coeff]
    max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
    n = _positive_int("n", n)
    batch_size = _positive_int("batch_size", batch_size)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InvalidArgumentError(f"temperature={temperature!r}; allowed: a finite number > 0.")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise InvalidArgumentError(f"top_p={top_p!r}; allowed: a number in (0, 1], or None.")
    if not (isinstance(freq_penalty, (int, float)) and math.isfinite(freq_penalty)):
        raise InvalidArgumentError(f"freq_penalty={freq_penalty!r}; allowed: a finite number.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidArgumentError(f"seed={seed!r}; allowed: an int or None.")

    tok = model.tokenizer
    encoded = [tokenize_prompt(model, p) for p in prompts]
    n_ctx = int(model.cfg.n_ctx)
    for p, ids in zip(prompts, encoded):
        if ids.numel() + max_new_tokens > n_ctx:
            raise ContextLengthError(
                f"prompt {p[:40]!r}… has {ids.numel()} tokens; with max_new_tokens={max_new_tokens} that is "
                f"{ids.numel() + max_new_tokens} > the model's context of {n_ctx}. Fix: shorten the prompt "
                "or lower max_new_tokens."
            )
    rows = [ids for _ in coeff_list for ids in encoded for _ in range(n)]  # coeff-, then prompt-major
    row_coeffs = [c for c in coeff_list for _ in encoded for _ in range(n)]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos_id = tok.eos_token_id if stop_at_eos else None
    hf = getattr(model, "original_model", model)
    fast = _fast_target(model, vector)
    if fast is not None:
        hf = fast
    device = next(hf.parameters()).device
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        # temperature / top-k / top-p and the draw itself run in our own _Sampler (a faster nucleus than
        # HF's full sort, random numbers for the nucleus only); HF then takes the one token left (greedy)
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=tok.bos_token_id,
        use_cache=bool(use_cache),
    )
    chunks = [(rows[i:i + batch_size], row_coeffs[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    total_steps = len(chunks) * max_new_tokens
    show = progress if progress is not None else len(rows) * max_new_tokens >= 4096
    completions: list[str] = []
    devices = [device] if device.type == "cuda" else []
    # HF falls back to the model's own eos_token_id when ours is None: clear it for the call.
    model_config = getattr(hf, "generation_config", None)
    saved_eos = getattr(model_config, "eos_token_id", None)
    if not stop_at_eos and model_config is not None:
        model_config.eos_token_id = None
    sampler = _Sampler(float(temperature), int(top_k) if top_k else None,
                       float(top_p) if top_p is not None else None) if do_sample else None
    try:
        steering = dict(positions=positions, op=op, value=value, short_prompt=short_prompt)
        completions = _run_chunks(hf, tok, model, vector, coeff, chunks, config, pad_id, device, devices, seed,
                                  freq_penalty, steering, total_steps, show, sampler)
    finally:
        if model_config is not None:
            model_config.eos_token_id = saved_eos
    return completions


def _repeat_block(rows: list) -> Optional[int]:
    """The smallest ``b`` such that ``rows`` is ``len(rows) / b`` copies of its first ``b`` rows (at least two), else None."""
    n = len(rows)
    for b in range(1, n // 2 + 1):
        if n % b == 0 and all(torch.equal(rows[i], rows[i % b]) for i in range(b, n)):
            return b
    return None


def _lowest_layer(vector: Any) -> int:
    """The lowest decoder layer a (list of) fast-path vector(s) steers at: rows are identical below it."""
    vectors = [vector] if isinstance(vector, SteeringVector) else list(vector)
    return min(int(v.layer) for v in vectors)


def _run_chunks(hf: Any, tok: Any, model: Any, vector: Any, coeff: Any, chunks: list, config: Any, pad_id: int,
                device: torch.device, devices: list, seed: Optional[int], freq_penalty: float,
                steering: dict, total_steps: int, show: bool, sampler: Any = None) -> list[str]:
    from transformers import LogitsProcessorList

    from ._progress import progress_bar
    from .fast import packed_weights, shared_rows

    completions: list[str] = []
    fast_path = hf is not getattr(model, "original_model", model)
    rows = max(len(chunk) for chunk, _ in chunks)
    packing = packed_weights(model, rows, int(config.max_new_tokens)) if fast_path else contextlib.nullcontext()
    with torch.random.fork_rng(devices=devices), torch.no_grad(), packing, progress_bar(
        total=total_steps, desc="generating", unit="tok", disable=not show, leave=False
    ) as bar:
        if seed is not None:
            torch.manual_seed(seed)
        else:
            torch.seed()  # fresh entropy: fork_rng would otherwise replay the same state each call
        per_row = isinstance(coeff, Tensor)
        for chunk, chunk_coeffs in chunks:
            tokens, mask = left_pad(chunk, pad_id)
            processors = LogitsProcessorList([_StepBar(bar)])
            if sampler is not None:
                processors.insert(0, sampler)
            if freq_penalty:
                processors.insert(0, _FrequencyPenalty(float(freq_penalty), tokens.shape[1]))
            lengths = mask.sum(dim=1)
            kwargs = dict(
                input_ids=tokens.to(device),
                attention_mask=mask.to(device),
                generation_config=config,
                logits_processor=processors,
            )
            if vector is None:
                out = hf.generate(**kwargs)
            else:
                row_coeff = chunk_coeffs if per_row else coeff
                block = _repeat_block(chunk) if per_row and fast_path and config.use_cache else None
                sharing = shared_rows(model, _lowest_layer(vector), block, len(chunk) // block) if block \
                    else contextlib.nullcontext()
                with sharing, steer(model, vector, row_coeff, **steering, _prompt_lengths=lengths, _plain=fast_path):
                    out = hf.generate(**kwargs)
            new = out[:, tokens.shape[1]:].cpu()
            completions.extend(tok.batch_decode(new, skip_special_tokens=True))
    return completions
