"""Null-model steering vectors: the controls a real vector's effect is ranked against.

Two kinds of control, each a list of :class:`~steering.vectors.SteeringVector` shaped like the real one:

* ``"random"`` — :func:`random_vectors`: norm-matched random vectors. Each position keeps the real
  vector's norm at that position (a zero row, such as a front ActAdd vector's BOS row, stays zero)
  and gets an independent, uniformly random direction (a normalised Gaussian draw). Seeded: the
  same ``seed`` and layer give the same vectors.
* ``"shuffled"`` — the same prompts with the p+ / p− labels permuted. Swapping the labels of a pair
  negates its difference, so for many pairs (:func:`shuffled_directions`) each null flips a random
  subset of the paired differences (each pair independently with probability ½) and aggregates
  them again, from one read of the activations. For a single ActAdd pair the only relabelling is
  the swap itself: :func:`swapped_vector` gives ``−v``, the one member of that null.

:func:`steering.sweep` ``(..., nulls=N)`` runs these controls through the same batched pass as the
real vector, and :func:`steering.effect_sizes` turns them into permutation p-values with
Benjamini–Hochberg q-values (see :mod:`steering.stats`).

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> nulls = random_vectors(vec, 3, seed=0)
    >>> [bool(torch.allclose(n.tensor.norm(dim=-1), vec.tensor.norm(dim=-1), atol=1e-5)) for n in nulls]
    [True, True, True]
    >>> bool(torch.equal(swapped_vector(vec).tensor, -vec.tensor))
    True
"""

import dataclasses
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch

from .directions import Aggregator, direction_from_pairs, mean_aggregator
from .validate import count
from .validate import seed as check_seed
from .vectors import SteeringVector

__all__ = ["NullKind", "NULL_KINDS", "random_vectors", "swapped_vector", "shuffled_directions"]

#: The kinds of null vector (``"real"`` labels the real vector's rows of a sweep table).
NullKind = Literal["random", "shuffled"]
NULL_KINDS = ("random", "shuffled")


def _labelled(vec: SteeringVector, tensor: torch.Tensor, kind: str, index: int) -> SteeringVector:
    """A copy of ``vec`` with ``tensor`` and its null label in ``meta``."""
    return dataclasses.replace(vec, tensor=tensor.to(vec.tensor.dtype), meta={**vec.meta, "null": kind, "null_index": index})


def random_vectors(vec: SteeringVector, n: int, *, seed: Optional[int] = 0) -> list[SteeringVector]:
    """``n`` random vectors with the per-position norms of ``vec`` and random directions.

    Args:
        vec: The real vector (``[pos, d_model]`` or a ``[d_model]`` direction).
        n: How many (``0`` gives an empty list).
        seed: Seeds the draws together with the vector's layer (``None`` counts as 0), so each
            layer of a sweep gets its own reproducible controls.

    Returns:
        A list of ``n`` vectors at ``vec``'s hook, ``meta["null"] == "random"``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> vec = st.actadd(tiny_model(), "love", "hate", layer=1)
        >>> a, b = random_vectors(vec, 2, seed=1)
        >>> abs(vec.cosine_similarity(a)) < 0.5, bool(torch.equal(a.tensor, random_vectors(vec, 1, seed=1)[0].tensor))
        (True, True)
    """
    n = count("n", n, 0, example=20)
    base = check_seed(seed) or 0
    rng = np.random.default_rng([base % 2**64, vec.layer or 0])
    real = vec.tensor.detach().to("cpu", torch.float64)
    norms = real.norm(dim=-1, keepdim=True)
    out = []
    for i in range(n):
        draw = torch.from_numpy(rng.standard_normal(tuple(real.shape)))
        unit = draw / draw.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        out.append(_labelled(vec, (unit * norms).to(vec.tensor.device), "random", i))
    return out


def swapped_vector(vec: SteeringVector) -> SteeringVector:
    """The single ActAdd pair with p+ and p− swapped: ``−v`` (the whole shuffled null of one pair).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> vec = st.actadd(tiny_model(), "love", "hate", layer=1)
        >>> swapped_vector(vec).meta["null"]
        'shuffled'
    """
    return _labelled(vec, -vec.tensor, "shuffled", 0)


def shuffled_directions(
    model: Any,
    pos_prompts: Sequence[str],
    neg_prompts: Sequence[str],
    layer: int,
    n: int,
    *,
    aggregator: Optional[Aggregator] = None,
    method: str = "mean_diff",
    hook: str = "resid_pre",
    seed: Optional[int] = 0,
) -> tuple[SteeringVector, list[SteeringVector]]:
    """A many-pair direction and ``n`` label-permuted controls, from one read of the activations.

    Each control swaps the p+ / p− labels of every pair independently with probability ½ (so its
    paired difference changes sign) and runs the same aggregator on the result.

    Args:
        model: The bridge.
        pos_prompts: The positive prompts.
        neg_prompts: The negative prompts (as many).
        layer: One block index.
        n: Number of controls.
        aggregator: As in :func:`steering.directions.direction_from_pairs` (default: the mean,
            i.e. :func:`steering.mean_diff`).
        method: The vectors' ``method`` label.
        hook: Hook kind.
        seed: Seed of the label permutations (``None`` counts as 0).

    Returns:
        ``(real, controls)``; each control has ``meta["null"] == "shuffled"``.

    Example:
        >>> from steering.testing import tiny_model
        >>> real, nulls = shuffled_directions(tiny_model(), ["good", "nice", "fine"], ["bad", "mean", "poor"], 1, 4)
        >>> len(nulls), nulls[0].hook_name == real.hook_name
        (4, True)
    """
    n = count("n", n, 0, example=20)
    rng = np.random.default_rng((check_seed(seed) or 0) % 2**64)
    reduce = aggregator if aggregator is not None else mean_aggregator()
    captured: dict = {}

    def capture(diffs: torch.Tensor, hook_name: str) -> Any:
        captured[hook_name] = diffs
        return reduce(diffs, hook_name)

    real = direction_from_pairs(model, pos_prompts, neg_prompts, layer, capture, method=method, hook=hook)
    diffs = captured[real.hook_name]
    out = []
    for i in range(n):
        signs = torch.from_numpy(rng.choice([-1.0, 1.0], size=int(diffs.shape[0]))).to(diffs)
        tensor, _ = reduce(diffs * signs[:, None], real.hook_name)
        out.append(_labelled(real, tensor, "shuffled", i))
    return real, out
