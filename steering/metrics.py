"""Side effects and effects of steering, measured without sampling: KL, perplexity, log-prob shifts.

Every function here compares the model's next-token distributions with and without
``coeff · vector`` on the same texts, and **masks the positions that received the
addition** (for a front-aligned ActAdd vector of ``n`` positions: the predictions made
at positions ``0 … n−1``), as Turner et al. do: those predictions are steered by
construction and say nothing about off-target behaviour. For a single direction added
at every position nothing can be masked; the measures then cover every position.

Coefficients ride as rows of one batch (``coeff=[0, 1, 2, 4]`` costs one forward pass
per ``batch_size`` rows, not one per coefficient). At ``coeff = 0`` the model is
untouched (see :func:`steering.steer`), so the unsteered pass is reused and KL is
exactly 0.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> table = st.off_target_kl(model, vec, ["the cat sat on the mat"], coeffs=[0, 4])
    >>> table["kl"].tolist()[0], bool(table["kl"].tolist()[1] > 0)
    (0.0, True)
"""

import math
from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ._progress import progress_bar
from .backends import check_backend
from .chat import chat_texts
from .engine import forward_logprobs
from .errors import InvalidArgumentError, PromptTooShortError
from .lens import TABLE_COLUMNS, TokenScores, ranked_rows, token_label
from .placement import Operator, Positions, make_rule, masked_prefix
from .settings import Backend
from .texts import NEUTRAL_TEXTS
from .tokens import tokenize_prompt
from .validate import coeff as check_coeff
from .validate import coeff_list, count, flag, text_list, top_k
from .vectors import SteeringVector

__all__ = ["off_target_kl", "perplexity_ratio", "logprob_shift", "token_shift", "kl_divergence", "check_vector"]

def kl_divergence(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"]
) -> Float[Tensor, "*batch"]:
    """``KL(P ‖ Q) = Σ p (log p − log q)`` in nats, from log-probabilities, over the last axis.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 0.5]).log()
        >>> q = torch.tensor([0.25, 0.75]).log()
        >>> round(float(kl_divergence(p, q)), 6)  # 0.5 ln 2 + 0.5 ln(2/3)
        0.143841
    """
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    return terms.sum(-1).clamp_min(0.0)


def check_vector(model: Any, vector: Any) -> SteeringVector:
    """A vector that is a finite :class:`SteeringVector` fitting ``model`` (the metrics' argument check).

    Example:
        >>> check_vector(None, 3)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vector=3; allowed: a SteeringVector. Fix: build one with st.actadd(model, pos, neg, layer).
    """
    if not isinstance(vector, SteeringVector):
        raise InvalidArgumentError(
            f"vector={vector!r}; allowed: a SteeringVector. Fix: build one with st.actadd(model, pos, neg, layer)."
        )
    vector.check_finite()
    vector.check_compatible(model)
    return vector


def _checked(model: Any, vector: Any, batch_size: Any, progress: Any = None, positions: Any = None,
             op: Any = "add", backend: Any = "auto") -> SteeringVector:
    """Every argument the metrics share, checked before any work: the vector, the options, the position rule."""
    vector = check_vector(model, vector)
    count("batch_size", batch_size, example=8)
    flag("progress", progress, optional=True)
    check_backend(backend)
    if op == "clamp":
        raise InvalidArgumentError("op='clamp' has no coefficient to sweep; allowed here: 'add', 'ablate'.")
    make_rule(vector, positions, op)
    return vector


def _per_text(name: str, value: Any, default: list, n: int) -> list:
    """``labels`` / ``conditions`` of :func:`token_shift`: ``None`` (the default) or a list with one entry per text."""
    if value is None:
        return default
    if not isinstance(value, (list, tuple)) or len(value) != n:
        size = f"has {len(value)} entries" if isinstance(value, (list, tuple)) else f"is {value!r:.40}"
        raise InvalidArgumentError(f"{name} {size} for {n} texts; allowed: a list with one per text, or None. "
                                   f"Fix: pass {n} {name} or leave {name} out.")
    return list(value)


def _texts(name: str, texts: Any, model: Any = None, chat: Any = False, system: Any = None) -> list[str]:
    """The checked texts; with ``chat=True`` each in the model's chat template (a user turn)."""
    if flag("chat", chat):
        return chat_texts(model, texts, system, name=name)[0]
    if system is not None:
        raise InvalidArgumentError(f"system={system!r} with chat=False; allowed: system= only with chat=True. "
                                   "Fix: pass chat=True, or drop system=.")
    return text_list(name, texts, allowed="a non-empty list of non-empty strings",
                     example="st.texts.NEUTRAL_TEXTS")


def _progress(total: int, desc: str, progress: Optional[bool]) -> Any:
    show = progress if progress is not None else total >= 64
    return progress_bar(total=total, desc=desc, unit="row", disable=not show, leave=False)


def off_target_kl(
    model: Any,
    vector: SteeringVector,
    prompts: Optional[Sequence[str]] = None,
    coeffs: Any = (0, 1, 2, 4, 8),
    *,
    positions: Optional[Positions] = None,
    op: Operator = "add",
    batch_size: int = 8,
    progress: Optional[bool] = None,
    backend: Backend = "auto",
    chat: bool = False,
    system: Optional[str] = None,
) -> Any:
    """Mean ``KL(unsteered ‖ steered)`` of next-token distributions on unrelated text, per coefficient.

    For each prompt and coefficient, the KL divergence (nats) between the unsteered and
    steered next-token distributions is averaged over the prompt's non-steered positions
    (steered positions masked, see the module notes). All coefficients run as rows of
    shared batches; ``coeff = 0`` reuses the unsteered pass, so its KL is exactly 0.

    KL grows with ``|coeff|`` for small coefficients; for large ones it saturates and can
    dip, because a huge addition at the front positions stops being read by later
    positions in a graded way (attention to them saturates) while the unsteered
    distribution stays fixed.

    Args:
        model: The bridge.
        vector: The :class:`SteeringVector` to measure.
        prompts: Unrelated texts (default :data:`NEUTRAL_TEXTS`); each must be longer than
            the vector's steered positions.
        coeffs: Coefficients (a number or a list).
        positions: Position rule, see :func:`steering.steer`.
        op: ``"add"``, ``"ablate"`` or ``"clamp"``-free ops (see :func:`steering.steer`).
        batch_size: Rows per forward pass.
        progress: Show a progress bar (default: for 64+ rows).
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (see :mod:`steering.backends`).
        chat: Put each text in the model's chat template first (a user turn ending with the generation
            prompt, :func:`steering.chat.chat_prompt`).
        system: A system prompt for ``chat=True``.

    Returns:
        A tidy ``pandas.DataFrame``, one row per coefficient × prompt, columns ``layer``,
        ``hook``, ``coeff``, ``prompt``, ``kl`` (mean over the prompt's non-steered
        positions), ``kl_max`` (largest single-position KL), ``n_positions`` (positions
        averaged). ``table.groupby("coeff")["kl"].agg(["mean", "std"])`` gives the spread.

    Raises:
        PromptTooShortError: a prompt has no position left after masking.
        InvalidCoefficientError: a coefficient is not finite.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=0)
        >>> kl = st.off_target_kl(model, vec, ["a quiet day in town", "numbers 1 2 3 4 5"], coeffs=[0, 1, 8])
        >>> means = kl.groupby("coeff")["kl"].mean()
        >>> float(means[0.0]), bool(means[1.0] < means[8.0])
        (0.0, True)
    """
    import pandas as pd

    vector = _checked(model, vector, batch_size, progress, positions, op, backend)
    prompts = _texts("prompts", NEUTRAL_TEXTS if prompts is None else prompts, model, chat, system)
    coeff_values = coeff_list(coeffs)
    seqs = [tokenize_prompt(model, p) for p in prompts]
    starts = []
    for p, s in zip(prompts, seqs):
        start = masked_prefix(vector, int(s.numel()), positions, op)
        if start >= s.numel():
            raise PromptTooShortError(
                f"prompt {p[:40]!r} has {s.numel()} tokens (BOS included), all of them steered by the "
                f"{vector.n_pos}-position vector, so no position is left to measure; allowed: prompts longer than "
                "the vector. Fix: use longer unrelated prompts."
            )
        starts.append(start)
    nonzero = [c for c in coeff_values if c != 0.0]
    rows_seqs = [s for c in nonzero for s in seqs]
    rows_coeffs = [c for c in nonzero for _ in seqs]
    with _progress(len(seqs) + len(rows_seqs), "off-target KL", progress) as bar:
        common = dict(batch_size=batch_size, backend=backend, bar=bar)
        base = forward_logprobs(model, seqs, **common)
        steered = forward_logprobs(model, rows_seqs, vector, rows_coeffs, positions=positions, op=op, **common)
    rows = []
    k = 0
    by_coeff: dict[float, list[Tensor]] = {}
    for c in nonzero:
        by_coeff[c] = steered[k : k + len(seqs)]
        k += len(seqs)
    for c in coeff_values:
        for i, p in enumerate(prompts):
            start = starts[i]
            if c == 0.0:
                per_pos = torch.zeros(int(seqs[i].numel()) - start)
            else:
                per_pos = kl_divergence(base[i][start:], by_coeff[c][i][start:])
            rows.append({"layer": vector.layer, "hook": vector.hook_name, "coeff": c, "prompt": p,
                         "kl": float(per_pos.mean()), "kl_max": float(per_pos.max()), "n_positions": int(per_pos.numel())})
    return pd.DataFrame(rows)


def _text_groups(texts: Any) -> list[tuple[str, str]]:
    if isinstance(texts, dict):
        if not texts:
            raise InvalidArgumentError("texts={} is empty; allowed: a list of texts or {group: [texts]}.")
        pairs = []
        for group, items in texts.items():
            pairs += [(str(group), t) for t in _texts(f"texts[{group!r}]", items)]
        return pairs
    return [("texts", t) for t in _texts("texts", texts)]


def perplexity_ratio(
    model: Any,
    vector: SteeringVector,
    texts: Any,
    coeff: Any = 1.0,
    *,
    prompt: Optional[str] = None,
    positions: Optional[Positions] = None,
    batch_size: int = 8,
    progress: Optional[bool] = None,
    backend: Backend = "auto",
) -> Any:
    """Steered / unsteered perplexity of texts, steered positions masked (the paper's Figure 4 measure).

    ``ppl_ratio = exp(mean log p_unsteered − mean log p_steered)`` over the text's tokens
    that follow the steered positions: below 1 the steered model finds the text more
    likely. With ``prompt=`` (e.g. the steering prompt p+) a *prompting baseline* is
    measured too: the same tokens scored with ``prompt`` prepended instead of steering
    (rows with ``method="prompting"``), as Turner et al. compare.

    Args:
        model: The bridge.
        vector: The :class:`SteeringVector`.
        texts: A list of texts, or ``{group: [texts]}`` (e.g. ``{"wedding": [...],
            "unrelated": [...]}``) to compare relevant with unrelated text.
        coeff: A coefficient or a list of them (rows of shared batches).
        prompt: Optional prompting baseline text, prepended after BOS.
        positions: Position rule, see :func:`steering.steer`.
        batch_size: Rows per forward pass.
        progress: Show a progress bar (default: for 64+ rows).
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (see :mod:`steering.backends`).

    Returns:
        A tidy ``pandas.DataFrame``, one row per method × coefficient × text, columns
        ``group``, ``text``, ``method`` (``"actadd"`` / ``"prompting"``), ``coeff``
        (NaN for prompting), ``layer``, ``hook``, ``n_tokens`` (tokens scored),
        ``logprob_unsteered``, ``logprob_steered`` (means per token), ``ppl_ratio``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "ab", "", layer=0)
        >>> t = st.perplexity_ratio(model, vec, {"x": ["hello world"]}, coeff=[0, 2], prompt="ab")
        >>> t[["method", "coeff", "ppl_ratio"]].round(3).values.tolist()[0]
        ['actadd', 0.0, 1.0]
    """
    import pandas as pd

    vector = _checked(model, vector, batch_size, progress, positions, backend=backend)
    pairs = _text_groups(texts)
    coeff_values = coeff_list(coeff)
    seqs = [tokenize_prompt(model, t) for _, t in pairs]
    starts = []
    for (_, text), s in zip(pairs, seqs):
        start = masked_prefix(vector, int(s.numel()), positions)
        if start + 1 >= s.numel():
            raise PromptTooShortError(
                f"text {text[:40]!r} has {s.numel()} tokens (BOS included); the {vector.n_pos}-position vector steers "
                f"{start} of them, leaving no token to score; allowed: texts longer than the vector. Fix: use longer texts."
            )
        starts.append(start)
    nonzero = [c for c in coeff_values if c != 0.0]
    prefix = None
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidArgumentError(f"prompt={prompt!r}; allowed: a non-empty string or None.")
        prefix = tokenize_prompt(model, prompt)[1:]  # without BOS
    total = len(seqs) * (1 + len(nonzero) + (prefix is not None))
    with _progress(total, "perplexity", progress) as bar:
        common = dict(batch_size=batch_size, backend=backend, bar=bar, readout="next")
        base = forward_logprobs(model, seqs, **common)
        rows_seqs = [s for _ in nonzero for s in seqs]
        rows_coeffs = [c for c in nonzero for _ in seqs]
        steered = forward_logprobs(model, rows_seqs, vector, rows_coeffs, positions=positions, **common)
        prompted = None
        if prefix is not None:
            joined = [torch.cat([s[:1], prefix, s[1:]]) for s in seqs]
            prompted = forward_logprobs(model, joined, **common)

    def scored(next_logp: Tensor, s: Tensor, start: int, shift: int = 0) -> Tensor:
        # next_logp[t] = log p(token t+1 | tokens ≤ t): score the text's tokens after the steered ones
        return next_logp[start + shift : s.numel() - 1 + shift]

    rows = []
    common = {"layer": vector.layer, "hook": vector.hook_name}
    for ci, c in enumerate(coeff_values):
        for i, ((group, text), s) in enumerate(zip(pairs, seqs)):
            lu = scored(base[i], s, starts[i])
            ls = lu if c == 0.0 else scored(steered[nonzero.index(c) * len(seqs) + i], s, starts[i])
            rows.append({"group": group, "text": text, "method": "actadd", "coeff": c, **common,
                         "n_tokens": int(lu.numel()), "logprob_unsteered": float(lu.mean()),
                         "logprob_steered": float(ls.mean()), "ppl_ratio": math.exp(float(lu.mean() - ls.mean()))})
    if prompted is not None:
        for i, ((group, text), s) in enumerate(zip(pairs, seqs)):
            lu = scored(base[i], s, starts[i])
            lp = scored(prompted[i], s, starts[i], shift=int(prefix.numel()))
            rows.append({"group": group, "text": text, "method": "prompting", "coeff": float("nan"), **common,
                         "n_tokens": int(lu.numel()), "logprob_unsteered": float(lu.mean()),
                         "logprob_steered": float(lp.mean()), "ppl_ratio": math.exp(float(lu.mean() - lp.mean()))})
    return pd.DataFrame(rows)


def logprob_shift(
    model: Any,
    vector: SteeringVector,
    texts: Optional[Sequence[str]] = None,
    coeff: Any = 4.0,
    k: int = 10,
    *,
    positions: Optional[Positions] = None,
    batch_size: int = 8,
    backend: Backend = "auto",
    chat: bool = False,
    system: Optional[str] = None,
) -> TokenScores:
    """The effect lens: which tokens gain or lose log-probability when steered.

    For every vocabulary token, ``log p_steered − log p_unsteered`` of the next-token
    distribution, averaged over the non-steered positions of ``texts`` (steered positions
    masked). Turner et al.'s "wedding" table is this measure. Unlike
    :func:`steering.logit_lens` it asks the model what the vector does, so it reads well
    wherever steering works.

    Args:
        model: The bridge.
        vector: The :class:`SteeringVector`.
        texts: Neutral texts (default :data:`NEUTRAL_TEXTS`).
        coeff: The coefficient.
        k: Tokens kept per direction.
        positions: Position rule, see :func:`steering.steer`.
        batch_size: Rows per forward pass.
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (see :mod:`steering.backends`).
        chat: Put each text in the model's chat template first (a user turn ending with the generation
            prompt, :func:`steering.chat.chat_prompt`).
        system: A system prompt for ``chat=True``.

    Returns:
        :class:`TokenScores` with ``source="logprob_shift"``, ``readout="effect"`` and
        ``score`` = mean Δ log-prob in nats.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=0)
        >>> shift = st.logprob_shift(model, vec, ["a quiet day in town"], coeff=4.0, k=3)
        >>> shift.promoted[0][1] > 0 > shift.suppressed[0][1]
        True
    """
    import pandas as pd

    vector = _checked(model, vector, batch_size, positions=positions, backend=backend)
    texts = _texts("texts", NEUTRAL_TEXTS if texts is None else texts, model, chat, system)
    c = check_coeff(coeff)
    k = top_k(k, int(model.cfg.d_vocab))
    seqs = [tokenize_prompt(model, t) for t in texts]
    base = forward_logprobs(model, seqs, batch_size=batch_size, backend=backend)
    steered = forward_logprobs(model, seqs, vector, [c] * len(seqs), positions=positions, batch_size=batch_size,
                               backend=backend)
    total = torch.zeros(base[0].shape[-1])
    count = 0
    for text, s, lu, ls in zip(texts, seqs, base, steered):
        start = masked_prefix(vector, int(s.numel()), positions)
        if start >= s.numel():
            raise PromptTooShortError(
                f"text {text[:40]!r} has {s.numel()} tokens, all steered by the {vector.n_pos}-position vector; "
                "allowed: texts longer than the vector. Fix: use longer texts."
            )
        total += (ls[start:] - lu[start:]).sum(0)
        count += int(s.numel()) - start
    mean = total / count
    rows = ranked_rows(mean, k, model.tokenizer, source="logprob_shift", layer=vector.layer, hook=vector.hook_name,
                     readout="effect", coeff=c)
    return TokenScores(pd.DataFrame(rows, columns=TABLE_COLUMNS))


def token_shift(
    model: Any,
    vector: SteeringVector,
    texts: Union[str, Sequence[str]],
    coeff: Any = 4.0,
    *,
    labels: Optional[Sequence[str]] = None,
    conditions: Optional[Sequence[str]] = None,
    positions: Optional[Positions] = None,
    batch_size: int = 8,
    backend: Backend = "auto",
) -> Any:
    """Per-token view: how much more (or less) likely each token of a text is under steering.

    Scores every token of each text (after BOS) under the unsteered and the steered
    model. Typical use: generate steered and unsteered completions, then see which of
    their tokens the vector "wanted" (plot with :func:`steering.token_view_figure`).

    Args:
        model: The bridge.
        vector: The :class:`SteeringVector`.
        texts: One text or a list (prompt + completion, typically).
        coeff: The coefficient.
        labels: A label per text (default ``"text {i}"``).
        conditions: A condition per text, e.g. ``"steered"`` / ``"unsteered"`` for how the
            text was generated (default ``""``).
        positions: Position rule, see :func:`steering.steer`.
        batch_size: Rows per forward pass.
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (see :mod:`steering.backends`).

    Returns:
        A tidy ``pandas.DataFrame``, one row per text × token, columns ``row``,
        ``label``, ``condition``, ``position`` (token index, 1 = first after BOS), ``token``,
        ``logprob_unsteered``, ``logprob_steered``, ``delta`` (steered − unsteered, nats),
        ``steered`` (True where the prediction came from a steered position).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "ab", "", layer=0)
        >>> t = st.token_shift(model, vec, "hello there", coeff=3.0)
        >>> list(t["token"][:3]), bool(t["steered"].iloc[0])
        (['h', 'e', 'l'], True)
    """
    import pandas as pd

    vector = _checked(model, vector, batch_size, positions=positions, backend=backend)
    texts = _texts("texts", texts)
    labels = _per_text("labels", labels, [f"text {i}" for i in range(len(texts))], len(texts))
    conditions = _per_text("conditions", conditions, [""] * len(texts), len(texts))
    c = check_coeff(coeff)
    seqs = [tokenize_prompt(model, t) for t in texts]
    base = forward_logprobs(model, seqs, batch_size=batch_size, backend=backend)
    steered = forward_logprobs(model, seqs, vector, [c] * len(seqs), positions=positions, batch_size=batch_size,
                               backend=backend)
    rows = []
    for r, (label, s, lu, ls) in enumerate(zip(labels, seqs, base, steered)):
        start = masked_prefix(vector, int(s.numel()), positions)
        n_all = vector.is_direction and (positions or "all") == "all"
        for i in range(1, int(s.numel())):
            tid = int(s[i])
            u, v = float(lu[i - 1, tid]), float(ls[i - 1, tid])
            rows.append({"row": r, "label": label, "condition": conditions[r], "position": i, "token": token_label(model.tokenizer, tid),
                         "logprob_unsteered": u, "logprob_steered": v, "delta": v - u,
                         "steered": bool(n_all or i - 1 < start)})
    return pd.DataFrame(rows)
