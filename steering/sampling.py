"""Logits processors of :func:`steering.generate`: sampling, the frequency penalty, the progress tick.

:class:`NucleusSampler` applies temperature, top-k and top-p (nucleus) filtering and draws the
token itself (from the nucleus's candidates only); Hugging Face ``generate`` then runs greedy on
the one token left. :class:`FrequencyPenalty` is OpenAI's frequency penalty (Turner et al. used
1 in their GPT-2-XL examples). :class:`StepBar` advances a progress bar once per decode step.

Example:
    >>> import torch
    >>> sampler = NucleusSampler(temperature=1.0, top_k=None, top_p=0.5)
    >>> scores = torch.tensor([[3.0, 2.0, -1.0, -2.0]])
    >>> torch.isinf(sampler.filter(scores)).tolist()   # 0.73 of the mass is the top token: only it stays
    [[False, True, True, True]]
"""

import math
from typing import Any, Optional

import torch
from torch import Tensor

from .errors import NonFiniteError
from .validate import count, finite_number
from .validate import top_k as check_top_k
from .validate import top_p as check_top_p

__all__ = ["NucleusSampler", "FrequencyPenalty", "StepBar", "FiniteCheck", "check_finite_logits", "MAX_FREQ_PENALTY"]

#: The largest ``|freq_penalty|`` accepted. A penalty of 100 already forbids any repeat (logits span a few tens);
#: beyond it the subtraction only risks overflowing the logits (``±1e308`` gives NaN probabilities).
MAX_FREQ_PENALTY = 100.0


class FrequencyPenalty:
    """Subtract ``penalty × count`` from the logit of each token already generated (OpenAI-style)."""

    def __init__(self, penalty: float, prompt_width: int) -> None:
        self.penalty = finite_number("freq_penalty", penalty, bound=MAX_FREQ_PENALTY)
        self.prompt_width = count("prompt_width", prompt_width, 0, example=8)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        generated = input_ids[:, self.prompt_width:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )
        return scores - self.penalty * counts


class NucleusSampler:
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
        self.temperature = finite_number("temperature", temperature, positive=True)
        self.top_k = None if top_k is None else check_top_k(top_k, 2**62, "top_k")  # the vocabulary is checked by generate
        self.top_p = check_top_p(top_p)
        self.probe = count("probe", probe, example=512)

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


class StepBar:
    """A logits processor that only advances a progress bar (one tick per decode step)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self.bar.update(1)
        return scores


def check_finite_logits(scores: Tensor, where: str) -> None:
    """Raise :class:`~steering.errors.NonFiniteError` when logits hold NaN or +Inf, or a row is all -Inf.

    ``where`` says what was steering the call (it goes into the message).

    Example:
        >>> check_finite_logits(torch.tensor([[0.0, float("nan")]]), "with steering at blocks.1.hook_resid_pre (coeff=1e+12)")
        Traceback (most recent call last):
        ...
        steering.errors.NonFiniteError: the model's logits are NaN/Inf with steering at blocks.1.hook_resid_pre (coeff=1e+12); allowed: additions within float32's range. Fix: lower the coefficient (typical values are 1..20; st.norm_profile compares the addition with the residual norm).
    """
    bad = torch.isnan(scores).any() or torch.isposinf(scores).any() or torch.isneginf(scores).all(dim=-1).any()
    if bool(bad):
        raise NonFiniteError(
            f"the model's logits are NaN/Inf {where}; allowed: additions within float32's range. Fix: lower the "
            "coefficient (typical values are 1..20; st.norm_profile compares the addition with the residual norm)."
        )


class FiniteCheck:
    """A logits processor (run first) that stops generation with a clear error instead of empty text."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        check_finite_logits(scores, self.where)
        return scores
