"""Position effects: which positions of a per-position ActAdd vector do the steering.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> masked_vector(vec, [False, True, False, False, False]).norm().tolist()[0:3] == [0.0, vec.norm()[1].item(), 0.0]
    True
"""

from dataclasses import replace
from typing import Any, Literal, Optional, Sequence

import torch

from .._progress import progress_bar
from ..engine import forward_logprobs
from ..errors import InvalidArgumentError
from ..metrics import kl_divergence
from ..settings import Backend
from ..stats import mean_ci
from ..tokens import tokenize_prompt
from ..validate import count
from ..validate import seed as check_seed
from ..vectors import SteeringVector
from .runs import check_common, metric_value, readout

__all__ = ["position_effects", "masked_vector", "EffectMetric", "VARIANTS"]

#: ``"auto"`` (log-prob with a target, else KL), ``"logprob"`` or ``"kl"``.
EffectMetric = Literal["auto", "logprob", "kl"]
#: The ``variant`` column of :func:`position_effects`.
VARIANTS = ("full", "knockout", "alone", "summed")


def masked_vector(vector: SteeringVector, keep: Sequence[bool]) -> SteeringVector:
    """The per-position vector with the positions where ``keep`` is False set to zero.

    Knocking out every position gives an all-zero vector, whose steering is exactly no steering.

    Args:
        vector: A per-position ``[pos, d_model]`` vector.
        keep: One bool per position.

    Example:
        >>> import torch
        >>> v = SteeringVector(torch.ones(3, 2), hook_name="blocks.0.hook_resid_pre")
        >>> masked_vector(v, [True, False, True]).tensor[:, 0].tolist()
        [1.0, 0.0, 1.0]
    """
    if not isinstance(vector, SteeringVector) or vector.is_direction:
        raise InvalidArgumentError(
            f"vector={vector!r:.80}; allowed: a per-position [pos, d_model] SteeringVector. Fix: pass an ActAdd vector "
            "(st.actadd(model, pos, neg, layer))."
        )
    flags = list(keep) if isinstance(keep, (list, tuple)) else None
    if flags is None or len(flags) != vector.n_pos or not all(isinstance(k, bool) for k in flags):
        raise InvalidArgumentError(
            f"keep={keep!r:.80}; allowed: a list of {vector.n_pos} bools, one per vector position. Fix: pass e.g. "
            f"keep=[True] * {vector.n_pos}."
        )
    mask = torch.tensor(flags, dtype=vector.tensor.dtype, device=vector.tensor.device).unsqueeze(-1)
    kept = [i for i, k in enumerate(flags) if k]
    return replace(vector, tensor=vector.tensor * mask, meta={**vector.meta, "kept_positions": kept})


def _variants(vector: SteeringVector) -> list[tuple[str, int, SteeringVector, Optional[str]]]:
    """``(variant, position, vector, positions rule)`` of every run."""
    n = int(vector.n_pos or 0)
    out = [("full", -1, vector, None)]
    out += [("knockout", j, masked_vector(vector, [i != j for i in range(n)]), None) for j in range(n)]
    out += [("alone", j, masked_vector(vector, [i == j for i in range(n)]), None) for j in range(n)]
    return out + [("summed", -1, vector.direction("sum"), "all")]


def _metric(metric: Any, target: Any) -> str:
    if metric not in ("auto", "logprob", "kl"):
        raise InvalidArgumentError(
            f"metric={metric!r}; allowed: 'auto', 'logprob', 'kl'. Fix: pass metric='logprob' with a target, or 'kl'."
        )
    if metric == "auto":
        return "kl" if target is None else "logprob"
    if metric == "logprob" and target is None:
        raise InvalidArgumentError(
            "metric='logprob' needs target=<a token or a pair>; allowed: a token string or id, or (a, b). Fix: pass "
            "e.g. target=' wedding', or metric='kl'."
        )
    return metric


def position_effects(
    model: Any,
    vector: SteeringVector,
    prompts: Any,
    metric: EffectMetric = "auto",
    coeff: Any = 4.0,
    *,
    target: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 8,
    backend: Backend = "auto",
    progress: Optional[bool] = None,
) -> Any:
    """The steering effect with each position of an ActAdd vector knocked out, and with each position alone.

    Variants, each steered with ``coeff`` (front alignment), BOS position included:

    * ``"full"`` — the vector as it is;
    * ``"knockout"`` — position ``j`` set to zero (knocking out every position is no steering);
    * ``"alone"`` — only position ``j`` kept;
    * ``"summed"`` — for comparison, the positions summed to one direction ``Σ_j v_j`` added at
      every position (``positions="all"``).

    The measure, per prompt, at the last prompt position: ``"logprob"`` — the change of the
    target's log-probability (a pair ``(a, b)``: of the logit difference ``a − b``), steered −
    unsteered, in nats; ``"kl"`` — ``KL(P_steered ‖ P_unsteered)`` of the next-token distribution,
    in nats. ``"auto"`` picks ``"logprob"`` when a target is given, else ``"kl"``. Each variant's
    mean comes with a percentile-bootstrap 95% interval over prompts (:func:`steering.stats.mean_ci`).

    Args:
        model: The bridge.
        vector: A per-position ActAdd vector.
        prompts: A prompt or a list (the CI resamples them).
        metric: ``"auto"``, ``"logprob"`` or ``"kl"``.
        coeff: The coefficient.
        target: The token (or pair) for ``"logprob"``.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
        batch_size: Prompts per forward pass.
        backend: ``"auto"``, ``"bridge"`` or ``"twin"``.
        progress: Show a progress bar (default: with more than 8 prompts).

    Returns:
        A tidy ``pandas.DataFrame``, one row per variant × position (``position`` −1 for
        ``"full"`` and ``"summed"``), columns ``variant``, ``position``, ``token`` (p+'s token there),
        ``effect`` (mean over prompts), ``ci_low``, ``ci_high``, ``n``, ``metric``, ``coeff``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> t = position_effects(model, vec, ["I am here", "so it goes"], target="a", coeff=4.0, n_boot=100)
        >>> t.groupby("variant").size().to_dict()
        {'alone': 5, 'full': 1, 'knockout': 5, 'summed': 1}
        >>> float(t[(t.variant == "alone") & (t.position == 0)].effect.iloc[0])   # BOS row of ActAdd is zero
        0.0
    """
    import pandas as pd

    vector, texts, coeff = check_common(model, vector, prompts, coeff)
    if vector.is_direction:
        raise InvalidArgumentError(
            f"position_effects needs a per-position [pos, d_model] vector, but the vector at {vector.hook_name} is a "
            "single direction; allowed: an ActAdd vector. Fix: pass st.actadd(model, pos, neg, layer)."
        )
    metric = _metric(metric, target)
    n_boot = count("n_boot", n_boot, caller="position_effects", example=1000)
    seed = check_seed(seed)
    batch_size = count("batch_size", batch_size, caller="position_effects", example=8)
    weights, pair = (None, False) if metric == "kl" else readout(model, target)[1:]
    seqs = [tokenize_prompt(model, text) for text in texts]
    base = torch.cat(forward_logprobs(model, seqs, readout="last", batch_size=batch_size, backend=backend))
    tokens = vector.tokens.get("pos", [])
    rows = []
    variants = _variants(vector)
    show = progress if progress is not None else len(texts) > 8
    with progress_bar(total=len(variants), desc="position_effects", unit="run", disable=not show, leave=False) as bar:
        for name, pos, vec, rule in variants:
            out = torch.cat(forward_logprobs(model, seqs, vec, [coeff] * len(seqs), positions=rule, readout="last",
                                             batch_size=batch_size, backend=backend))
            if metric == "kl":
                values = kl_divergence(out, base)
            else:
                values = metric_value(out, weights, pair) - metric_value(base, weights, pair)
            mean, low, high = mean_ci(values.double().tolist(), n_boot=n_boot, seed=seed or 0)
            rows.append({"variant": name, "position": pos, "token": tokens[pos] if 0 <= pos < len(tokens) else "",
                         "effect": mean, "ci_low": low, "ci_high": high, "n": len(texts), "metric": metric,
                         "coeff": coeff})
            bar.update(1)
    table = pd.DataFrame(rows)
    table.attrs.update(coeff=coeff, metric=metric, vector_hook=vector.hook_name, n_positions=vector.n_pos)
    return table
