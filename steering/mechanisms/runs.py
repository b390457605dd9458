"""The runs every mechanism measure shares: a prompt's steered and unsteered forward passes, cached.

* :func:`check_common` — validates the vector, the prompts and the coefficient once.
* :func:`prepared` — one prompt's tokens plus what the placement rule adds where (:class:`Prompt`).
* :func:`cached_pair` — the unsteered and the steered pass of one token sequence, caching the hook
  points asked for (the steering hooks of :func:`steering.apply.attached`, always removed).
* :func:`readout` — a target token, or a pair ``(" good", " bad")``, as a vocabulary weighting.

Both passes of a pair run one unpadded sequence with the same shapes, so everything the steering
cannot reach (the hook points before the steered one) is bit-for-bit the same in both.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> p = prepared(model, vec, "I am here", 4.0)
    >>> p.steered.tolist()                     # BOS gets 4 · 0; positions 1..4 get the vector
    [False, True, True, True, True, False, False, False, False, False]
    >>> base, steered = cached_pair(model, vec, 4.0, p, ["blocks.0.hook_resid_post"])
    >>> bool((base.cache["blocks.0.hook_resid_post"] == steered.cache["blocks.0.hook_resid_post"]).all())
    True
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..apply import attached
from ..backends import Target, hf_module, model_lock
from ..errors import ContextLengthError, InvalidArgumentError
from ..lens import target_ids
from ..metrics import check_vector
from ..placement import Positions, Rule, Span, addition, make_rule, placement
from ..tokens import tokenize_prompt
from ..validate import coeff as check_coeff
from ..validate import text_list
from ..vectors import SteeringVector

__all__ = ["TargetSpec", "Prompt", "Run", "check_common", "prepared", "cached_pair", "readout", "steering_on",
           "greedy_continuation", "token_strings", "final_logits", "metric_value", "softcap"]

#: A target token (a string, its first token used, or an id) or a pair ``(a, b)`` read as ``a − b``.
TargetSpec = Union[str, int, tuple]


@dataclass
class Prompt:
    """One token sequence and what the steering adds to it.

    Attributes:
        text: The prompt text.
        tokens: ``[1, seq]`` ids, BOS first (prompt, then any generated tokens).
        prompt_len: Tokens of the prompt itself (the rest were generated).
        rule: The vector's :class:`~steering.placement.Rule`.
        added: ``[seq, d_model]``: what the steering adds at each position (``coeff · v``, zeros elsewhere).
        steered: ``[seq]``: positions where a non-zero addition lands.
    """

    text: str
    tokens: Int[Tensor, "1 seq"]
    prompt_len: int
    rule: Rule
    added: Float[Tensor, "seq d_model"]
    steered: Bool[Tensor, " seq"]

    @property
    def seq(self) -> int:
        """Length of the sequence."""
        return int(self.tokens.shape[1])

    @property
    def injected_total(self) -> Float[Tensor, " d_model"]:
        """Everything the steering adds, summed over positions (the reference direction off the steered cells)."""
        return self.added.sum(0)


@dataclass
class Run:
    """One forward pass: its logits and the cached activations (batch dimension removed, float32, CPU)."""

    logits: Float[Tensor, "seq d_vocab"]
    cache: dict


def check_common(model: Any, vector: Any, prompts: Any, coeff: Any) -> tuple[SteeringVector, list[str], float]:
    """Validate the arguments every mechanism measure takes.

    Example:
        >>> from steering.testing import tiny_model
        >>> check_common(tiny_model(), None, ["a"], 1.0)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vector=None; allowed: a SteeringVector. Fix: build one with st.actadd(model, pos, neg, layer).
    """
    vector = check_vector(model, vector)
    if vector.layer is None:
        raise InvalidArgumentError(
            f"the vector sits at {vector.hook_name!r}, not at a block's hook point; allowed: a vector at "
            "'blocks.<layer>.hook_…'. Fix: build it with st.actadd(model, pos, neg, layer)."
        )
    texts = text_list("prompts", prompts, allowed="a prompt or a non-empty list of prompts",
                      example="['I went up to my friend and said']")
    return vector, texts, check_coeff(coeff)


def _injection(vector: SteeringVector, coeff: float, rule: Rule, seq: int,
               prompt_len: int) -> tuple[Float[Tensor, "seq d_model"], Bool[Tensor, " seq"]]:
    """What the hooks add at each position (the placement rule's own answer) and where it is non-zero."""
    n_vec = None if vector.is_direction else vector.n_pos
    mask, index = placement(rule.positions, n_vec, Span.whole(1, seq), torch.tensor([prompt_len]))
    added = addition(coeff * vector.tensor.detach().float().cpu(), mask, index)[0]  # [seq, d_model]
    return added, mask[0] & (torch.linalg.vector_norm(added, dim=-1) > 0)


def prepared(model: Any, vector: SteeringVector, text: str, coeff: float, positions: Optional[Positions] = None,
             tokens: Optional[Int[Tensor, "1 seq"]] = None, prompt_len: Optional[int] = None) -> Prompt:
    """One prompt (or prompt + continuation ``tokens``) with the placement rule's additions.

    Raises:
        ContextLengthError: the sequence is longer than the model's context.
    """
    rule = make_rule(vector, positions)
    if tokens is None:
        tokens = tokenize_prompt(model, text).unsqueeze(0)
    n_ctx = int(model.cfg.n_ctx)
    if tokens.shape[1] > n_ctx:
        raise ContextLengthError(
            f"prompt {text[:40]!r} is {tokens.shape[1]} tokens long but the model's context is {n_ctx}; allowed: at "
            f"most {n_ctx} tokens. Fix: shorten the prompt (or max_new_tokens)."
        )
    length = int(tokens.shape[1]) if prompt_len is None else prompt_len
    added, steered = _injection(vector, coeff, rule, int(tokens.shape[1]), length)
    return Prompt(text, tokens, length, rule, added, steered)


@contextmanager
def steering_on(model: Any, vector: SteeringVector, coeff: float, prompt: Prompt, rows: int = 1) -> Iterator[None]:
    """The bridge's steering hooks for ``prompt`` (``rows`` copies of it), removed on exit and on exceptions."""
    target = Target("bridge", hf_module(model), model)
    lengths = torch.full((rows,), prompt.prompt_len)
    with attached(target, vector, coeff, positions=prompt.rule.positions, prompt_lengths=lengths):
        yield


def cached_pair(model: Any, vector: SteeringVector, coeff: float, prompt: Prompt,
                names: Sequence[str]) -> tuple[Run, Run]:
    """The unsteered and the steered forward pass of ``prompt``, caching ``names``: ``(unsteered, steered)``.

    Names the model never fires are left out of the caches.
    """
    names = list(dict.fromkeys(names))
    runs = []
    with model_lock(model), torch.no_grad():
        for steer in (False, True):
            if steer:
                with steering_on(model, vector, coeff, prompt):
                    logits, cache = model.run_with_cache(prompt.tokens.to(model.cfg.device), names_filter=names)
            else:
                logits, cache = model.run_with_cache(prompt.tokens.to(model.cfg.device), names_filter=names)
            kept = cache.cache_dict  # a hook point the architecture never fires (GPT-2-only hook_pos_embed) is absent
            runs.append(Run(logits[0].float().cpu(), {n: kept[n][0].float().cpu() for n in names if n in kept}))
            del cache
    return runs[0], runs[1]


def greedy_continuation(model: Any, vector: SteeringVector, coeff: float, prompt: Prompt,
                        max_new_tokens: int) -> Int[Tensor, "1 seq"]:
    """The steered greedy continuation of ``prompt``, by full forward passes (no KV cache).

    The hooks know the prompt length, so the placement rule steers exactly the cells cached
    generation (:func:`steering.generate`) steers; EOS does not stop it.
    """
    tokens = prompt.tokens.to(model.cfg.device)
    with model_lock(model), torch.no_grad(), steering_on(model, vector, coeff, prompt):
        for _ in range(max_new_tokens):
            logits = hf_module(model)(input_ids=tokens, logits_to_keep=1).logits[0, -1]
            tokens = torch.cat([tokens, logits.argmax().view(1, 1)], dim=1)
    return tokens.cpu()


def readout(model: Any, target: Any) -> tuple[str, Float[Tensor, " d_vocab"], bool]:
    """A target as ``(label, vocabulary weights, is_pair)``: ``+1`` on the token, or ``+1 / −1`` on a pair.

    Example:
        >>> from steering.testing import tiny_model
        >>> label, w, pair = readout(tiny_model(), ("a", "b"))
        >>> label, w.nonzero().flatten().tolist(), w[w != 0].tolist(), pair
        ("'a' − 'b'", [4, 5], [1.0, -1.0], True)
    """
    weights = torch.zeros(int(model.cfg.d_vocab))
    if isinstance(target, tuple):
        if len(target) != 2:
            raise InvalidArgumentError(
                f"target={target!r} has {len(target)} entries; allowed: one token or a pair (a, b), read as "
                "a − b. Fix: pass e.g. target=(' good', ' bad')."
            )
        (la, a), (lb, b) = target_ids(model, list(target))
        if a == b:
            raise InvalidArgumentError(
                f"target={target!r} names the same token twice; allowed: two different tokens. Fix: pass e.g. "
                "target=(' good', ' bad')."
            )
        weights[a], weights[b] = 1.0, -1.0
        return f"{la!r} − {lb!r}", weights, True
    if isinstance(target, list):
        raise InvalidArgumentError(
            f"target={target!r} is a list; allowed: one token (str or id) or a tuple pair (a, b). Fix: pass "
            "target=' wedding' or target=(' good', ' bad')."
        )
    ((label, tid),) = target_ids(model, [target])
    weights[tid] = 1.0
    return repr(label), weights, False


def softcap(model: Any) -> Optional[float]:
    """The model's final logit soft-cap (``None`` without one; none on the built-in models).

    Example:
        >>> from steering.testing import tiny_model
        >>> softcap(tiny_model()) is None
        True
    """
    cap = getattr(getattr(hf_module(model), "config", None), "final_logit_softcapping", None)
    return float(cap) if cap else None


def final_logits(model: Any, logits: Float[Tensor, "*rows d_vocab"]) -> Float[Tensor, "*rows d_vocab"]:
    """Logits with the model's final soft-cap applied, when its config has one (as the HF model does)."""
    cap = softcap(model)
    return torch.tanh(logits / cap) * cap if cap else logits


def metric_value(logits: Float[Tensor, "*rows d_vocab"], weights: Float[Tensor, " d_vocab"],
                 pair: bool) -> Float[Tensor, "*rows"]:
    """The patching / position measure: the target's log-probability, or the pair's logit difference."""
    values = logits.float() if pair else torch.log_softmax(logits.float(), dim=-1)
    index = weights.nonzero().flatten().to(values.device)  # never 0 · (−inf) from an unreachable token
    return values[..., index] @ weights[index].to(values.device)


def token_strings(model: Any, tokens: Int[Tensor, "1 seq"]) -> list[str]:
    """The decoded string of each token."""
    return [model.tokenizer.decode([int(t)]) for t in tokens[0]]
