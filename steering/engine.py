"""The batched forward engine: log-probabilities of many sequences, each row steered with its own coefficient.

Every no-sampling measure (off-target KL, perplexity, log-prob shifts, a sweep's next-token
metrics) runs through :func:`forward_logprobs`: sequences are batched, padded, run on the
resolved backend (:mod:`steering.backends`) with the steering hooks of
:func:`steering.apply.attached`, and read out in one of three ways:

* ``"all"`` — the full next-token distribution at every position (``[pos, d_vocab]`` per sequence);
* ``"last"`` — only the last position's distribution (``[1, d_vocab]``): left padding and
  ``logits_to_keep=1``, so the unembedding (the costliest matmul of small models) runs once per row;
* ``"next"`` — each position's log-probability of the sequence's own next token
  (``[pos - 1]``): what perplexity needs, without a full-vocabulary row per token.

Example:
    >>> import torch, steering as st
    >>> from steering.testing import tiny_model
    >>> from steering.tokens import tokenize_prompt
    >>> model = tiny_model()
    >>> seqs = [tokenize_prompt(model, "hello"), tokenize_prompt(model, "hi")]
    >>> [tuple(t.shape) for t in forward_logprobs(model, seqs, readout="next")]
    [(5,), (2,)]
"""

from typing import Any, Literal, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .apply import attached
from .backends import Target, model_lock, resolve
from .errors import InvalidArgumentError
from .placement import Operator, Positions, ScaleCheck
from .settings import Backend
from .tokens import fill_id, left_pad, right_pad
from .sampling import check_finite_logits
from .validate import count
from .vectors import SteeringVector, vector_list

__all__ = ["forward_logprobs", "Readout"]

Readout = Literal["all", "last", "next"]
_READOUTS = ("all", "last", "next")


def _batch_inputs(chunk: Sequence[Tensor], pad_id: int, readout: str, device: torch.device) -> tuple[dict, Tensor]:
    """The model's keyword arguments for one batch, and the (padded) token ids."""
    tokens, mask = left_pad(chunk, pad_id) if readout == "last" else right_pad(chunk, pad_id)
    kwargs: dict = dict(input_ids=tokens.to(device), attention_mask=mask.to(device))
    if readout == "last":  # left padding: positions count from each row's first real token, as in generate
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp_min(0).to(device)
        kwargs["logits_to_keep"] = 1
    return kwargs, tokens


def _read(logits: Tensor, tokens: Tensor, chunk: Sequence[Tensor], readout: str) -> list[Tensor]:
    if readout == "last":
        return list(torch.log_softmax(logits[:, -1:].float(), dim=-1).cpu().unbind(0))
    if readout == "next":
        logits = logits[:, :-1].float()
        nxt = tokens[:, 1:].to(logits.device).unsqueeze(-1)
        picked = (logits.gather(-1, nxt).squeeze(-1) - logits.logsumexp(dim=-1)).cpu()
        return [picked[j, : s.numel() - 1] for j, s in enumerate(chunk)]
    logp = torch.log_softmax(logits.float(), dim=-1).cpu()
    return [logp[j, : s.numel()] for j, s in enumerate(chunk)]


def forward_logprobs(
    model: Any,
    seqs: Sequence[Tensor],
    vector: Optional[SteeringVector] = None,
    coeffs: Optional[Sequence[float]] = None,
    *,
    positions: Optional[Positions] = None,
    op: Operator = "add",
    batch_size: int = 8,
    readout: Readout = "all",
    backend: Backend = "auto",
    bar: Any = None,
) -> list[Float[Tensor, "..."]]:
    """Log-probabilities of each sequence, row ``i`` steered with ``coeffs[i]`` (unsteered without a vector).

    Args:
        model: The bridge.
        seqs: 1-D token-id tensors (BOS first, see :func:`steering.tokens.tokenize_prompt`).
        vector: The steering vector, or ``None`` for unsteered passes.
        coeffs: One coefficient per sequence (with ``vector``).
        positions: Position rule, see :mod:`steering.placement`.
        op: ``"add"`` or ``"ablate"``.
        batch_size: Rows per forward pass.
        readout: ``"all"``, ``"last"`` or ``"next"`` (see the module notes).
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (:mod:`steering.backends`).
        bar: A progress bar advanced by the rows done.

    Returns:
        One tensor per sequence: ``[pos, d_vocab]`` (``"all"``), ``[1, d_vocab]`` (``"last"``) or
        ``[pos - 1]`` (``"next"``).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> from steering.tokens import tokenize_prompt
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "a", "b", layer=1)
        >>> seqs = [tokenize_prompt(model, "hello")] * 2
        >>> out = forward_logprobs(model, seqs, vec, [0.0, 4.0], readout="last")
        >>> [tuple(t.shape) for t in out], bool((out[0] != out[1]).any())
        ([(1, 100), (1, 100)], True)
    """
    if readout not in _READOUTS:
        raise InvalidArgumentError(f"readout={readout!r}; allowed: 'all', 'last', 'next'.")
    batch_size = count("batch_size", batch_size, example=8)
    steered = vector is not None and coeffs is not None
    target: Target = resolve(model, vector_list(vector) if steered else [], backend)
    pad_id = fill_id(model)
    out: list[Tensor] = []
    scale = ScaleCheck()  # one oversized-addition warning per call, not per batch
    with model_lock(model), torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            chunk = list(seqs[i : i + batch_size])
            kwargs, tokens = _batch_inputs(chunk, pad_id, readout, target.device)
            if steered:
                with attached(target, vector, list(coeffs[i : i + batch_size]), positions=positions, op=op, scale=scale):
                    logits = target.module(**kwargs).logits
            else:
                logits = target.module(**kwargs).logits
            label = f"with steering at {vector.hook_name}" if steered else "without steering"
            check_finite_logits(logits[..., -1, :] if readout == "last" else logits, label)
            out += _read(logits, tokens, chunk, readout)
            if bar is not None:
                bar.update(len(chunk))
    return out
