"""What the explorer shows at one layer × coefficient, measured in as few batched passes as possible.

* :func:`reference` — unrelated texts, tokenized, with their unsteered next-token log-probs
  (computed once, shared by every setting).
* :func:`side_effects` — for every coefficient of one vector, from ONE batched forward pass on the
  reference texts: the off-target KL (the measure of :func:`steering.off_target_kl`: per text, the
  mean KL over its unsteered positions, then the mean over texts) and the effect lens (the measure
  of :func:`steering.logprob_shift`: the mean Δ log-prob of every vocabulary token over those
  positions, top ``k`` promoted and suppressed).
* :func:`target_effects` — Δ log-prob of the target tokens as the next token after each prompt.
* :func:`token_deltas` — for each completion, every token's log-prob under steering minus
  unsteered (what the widget highlights).

Steered positions are masked with the placement rule's :func:`steering.placement.masked_prefix`,
exactly as in :mod:`steering.metrics`; ``tests/test_explorer.py`` checks that the numbers equal
those functions' own.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> ref = reference(model, ["a quiet day in town"])
    >>> out = side_effects(model, vec, ref, [0.0, 4.0], k=2)
    >>> out[0.0]["kl"], bool(out[4.0]["kl"] > 0), len(out[4.0]["promoted"])
    (0.0, True, 2)
"""

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..engine import forward_logprobs
from ..errors import PromptTooShortError
from ..lens import ranked_rows, target_ids
from ..metrics import kl_divergence
from ..placement import masked_prefix
from ..settings import Backend
from ..tokens import single_token_texts, tokenize_prompt
from ..vectors import SteeringVector

__all__ = ["Reference", "reference", "side_effects", "last_logprobs", "target_effects", "token_deltas", "single_token_targets",
           "rounded"]


def rounded(value: float, digits: int = 4) -> Optional[float]:
    """A float for JSON: rounded, ``None`` for NaN / ±Inf (JSON has no NaN).

    Example:
        >>> rounded(0.123456), rounded(float("nan"))
        (0.1235, None)
    """
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


@dataclass
class Reference:
    """Unrelated texts with their token ids and unsteered next-token log-probs ``[pos, d_vocab]``."""

    texts: list
    seqs: list
    base: list


def reference(model: Any, texts: Sequence[str], *, batch_size: int = 8, backend: Backend = "auto") -> Reference:
    """Tokenize ``texts`` and run their unsteered pass once (every setting's KL and lens compare to it).

    Example:
        >>> from steering.testing import tiny_model
        >>> ref = reference(tiny_model(), ["hello there"])
        >>> tuple(ref.base[0].shape)  # [pos, d_vocab]: BOS + 11 characters
        (12, 100)
    """
    seqs = [tokenize_prompt(model, t) for t in texts]
    return Reference(list(texts), seqs, forward_logprobs(model, seqs, batch_size=batch_size, backend=backend))


def _starts(vector: SteeringVector, ref: Reference) -> list[int]:
    """The first unsteered position of each reference text (refused if none is left)."""
    starts = []
    for text, seq in zip(ref.texts, ref.seqs):
        start = masked_prefix(vector, int(seq.numel()))
        if start >= seq.numel():
            raise PromptTooShortError(
                f"KL text {text[:40]!r} has {seq.numel()} tokens (BOS included), all of them steered by the "
                f"{vector.n_pos}-position vector; allowed: texts longer than the vector. Fix: pass longer kl_prompts."
            )
        starts.append(start)
    return starts


def side_effects(model: Any, vector: SteeringVector, ref: Reference, coeffs: Any, *, k: int = 8,
                 batch_size: int = 8, backend: Backend = "auto") -> dict:
    """Off-target KL and the effect lens of every coefficient, from one batched pass.

    Args:
        model: The bridge.
        vector: The steering vector.
        ref: The unrelated texts (:func:`reference`).
        coeffs: Coefficients; ``0`` costs nothing (KL 0, an empty lens).
        k: Tokens kept per direction of the lens.
        batch_size: Rows per forward pass.
        backend: ``"auto"``, ``"bridge"`` or ``"twin"``.

    Returns:
        ``{coeff: {"kl": mean KL in nats, "promoted": [(token, Δ log-prob)], "suppressed": [...]}}``.

    Raises:
        PromptTooShortError: a reference text has no unsteered position.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "ab", "", layer=0)
        >>> side_effects(model, vec, reference(model, ["a quiet day"]), [0])
        {0.0: {'kl': 0.0, 'promoted': [], 'suppressed': []}}
    """
    starts = _starts(vector, ref)
    steered = [float(c) for c in coeffs if float(c) != 0.0]
    rows = forward_logprobs(model, [s for _ in steered for s in ref.seqs], vector,
                            [c for c in steered for _ in ref.seqs], batch_size=batch_size, backend=backend)
    out: dict = {float(c): {"kl": 0.0, "promoted": [], "suppressed": []} for c in coeffs if float(c) == 0.0}
    n = len(ref.seqs)
    k = min(int(k), int(ref.base[0].shape[-1]))
    for ci, c in enumerate(steered):
        kls, total, count = [], torch.zeros(ref.base[0].shape[-1]), 0
        for i, start in enumerate(starts):
            base, lp = ref.base[i][start:], rows[ci * n + i][start:]  # [pos, d_vocab] each
            kls.append(float(kl_divergence(base, lp).mean()))
            total += (lp - base).sum(0)
            count += int(base.shape[0])
        ranked = ranked_rows(total / count, k, model.tokenizer)
        out[c] = {"kl": sum(kls) / len(kls),
                  "promoted": [(r["token"], r["score"]) for r in ranked if r["direction"] == "promoted"],
                  "suppressed": [(r["token"], r["score"]) for r in ranked if r["direction"] == "suppressed"]}
    return out


def single_token_targets(model: Any, candidates: Sequence[str]) -> list[int]:
    """Token ids of the candidates that are one token (else of the first candidate's first token).

    Example:
        >>> from steering.testing import tiny_model
        >>> single_token_targets(tiny_model(), ["ab", "a"])  # "ab" is two tokens in the tiny vocabulary
        [4]
    """
    return sorted({tid for _, tid in target_ids(model, single_token_texts(model, candidates))})


def last_logprobs(model: Any, prompts: Sequence[str], *, batch_size: int = 8, backend: Backend = "auto") -> list:
    """The unsteered next-token log-probs after each prompt (``[1, d_vocab]`` each), for :func:`target_effects`.

    Example:
        >>> from steering.testing import tiny_model
        >>> [tuple(t.shape) for t in last_logprobs(tiny_model(), ["ab", "abc"])]
        [(1, 100), (1, 100)]
    """
    seqs = [tokenize_prompt(model, p) for p in prompts]
    return forward_logprobs(model, seqs, batch_size=batch_size, readout="last", backend=backend)


def target_effects(model: Any, vector: SteeringVector, prompts: Sequence[str], targets: Sequence[int],
                   coeffs: Any, *, base: Optional[list] = None, batch_size: int = 8,
                   backend: Backend = "auto") -> dict:
    """Δ log p(targets) (nats; all target tokens' probability summed) as the next token after each prompt.

    Args:
        model: The bridge.
        vector: The steering vector.
        prompts: The prompts.
        targets: Target token ids.
        coeffs: Coefficients (all as rows of shared batches).
        base: The prompts' unsteered last-position log-probs, if already computed.
        batch_size: Rows per forward pass.
        backend: ``"auto"``, ``"bridge"`` or ``"twin"``.

    Returns:
        ``{coeff: [Δ per prompt]}``; 0 for ``coeff = 0``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> effects = target_effects(model, vec, ["I think"], [4], [0, 8])
        >>> effects[0.0], len(effects[8.0])
        ([0.0], 1)
    """
    seqs = [tokenize_prompt(model, p) for p in prompts]
    common = dict(batch_size=batch_size, readout="last", backend=backend)
    if base is None:
        base = last_logprobs(model, prompts, batch_size=batch_size, backend=backend)
    steered = [float(c) for c in coeffs if float(c) != 0.0]
    rows = forward_logprobs(model, [s for _ in steered for s in seqs], vector, [c for c in steered for _ in seqs],
                            **common)
    ids = list(targets)

    def logp(lp: Tensor) -> float:
        return float(torch.logsumexp(lp[-1][ids], dim=0))

    out: dict = {float(c): [0.0] * len(seqs) for c in coeffs if float(c) == 0.0}
    for ci, c in enumerate(steered):
        out[c] = [logp(rows[ci * len(seqs) + i]) - logp(base[i]) for i in range(len(seqs))]
    return out


def token_deltas(model: Any, vector: SteeringVector, coeff: Any, prompts: Sequence[str],
                 completions: Sequence[str], *, batch_size: int = 8, backend: Backend = "auto") -> list[list]:
    """Each completion's tokens with ``log p_steered − log p_unsteered`` (nats) given its prompt.

    The completion is tokenized after its prompt's tokens (as generated: no BOS, no merge across the
    boundary). ``prompts[i]`` is the prompt of ``completions[i]``.

    Returns:
        One list per completion of ``(token, Δ log-prob)``; all zeros at ``coeff = 0``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> rows = token_deltas(model, vec, 4.0, ["I think"], ["abc"])
        >>> [t for t, _ in rows[0]]
        ['a', 'b', 'c']
    """
    tok = model.tokenizer
    seqs, lengths, pieces = [], [], []
    for prompt, text in zip(prompts, completions):
        head = tokenize_prompt(model, prompt)
        ids = tok.encode(text, add_special_tokens=False) if text else []
        seqs.append(torch.cat([head, torch.tensor(ids, dtype=head.dtype)]))
        lengths.append(int(head.numel()))
        pieces.append([tok.decode([i]) for i in ids])
    c = float(coeff)
    base = forward_logprobs(model, seqs, batch_size=batch_size, readout="next", backend=backend)
    steered = base if c == 0.0 else forward_logprobs(model, seqs, vector, [c] * len(seqs), batch_size=batch_size,
                                                     readout="next", backend=backend)
    out = []
    for b, s, n_head, toks in zip(base, steered, lengths, pieces):
        delta = (s - b)[n_head - 1 :].tolist()  # position i predicts token i + 1: the completion starts at n_head
        out.append([(t, float(d)) for t, d in zip(toks, delta)])
    return out
