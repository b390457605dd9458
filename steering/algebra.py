"""Vector algebra beyond the operators of :class:`SteeringVector`: means, similarity
matrices, and norms relative to the residual stream they are added to.

Example:
    >>> import torch
    >>> from steering import SteeringVector
    >>> from steering.algebra import cosine_matrix, mean_vectors
    >>> a = SteeringVector(torch.tensor([1.0, 0.0]), hook_name="blocks.0.hook_resid_pre")
    >>> b = SteeringVector(torch.tensor([0.0, 1.0]), hook_name="blocks.0.hook_resid_pre")
    >>> mean_vectors([a, b]).tensor.tolist()
    [0.5, 0.5]
    >>> cosine_matrix([a, b], labels=["a", "b"]).round(3).values.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
"""

from typing import Any, Optional, Sequence

import einops
import torch

from .errors import InvalidArgumentError, VectorMismatchError
from .vectors import SteeringVector

__all__ = ["mean_vectors", "cosine_matrix"]

def _check_vectors(vectors: Sequence[SteeringVector], what: str) -> list[SteeringVector]:
    items = list(vectors) if isinstance(vectors, (list, tuple)) else []
    if not items or not all(isinstance(v, SteeringVector) for v in items):
        raise InvalidArgumentError(
            f"{what} needs a non-empty list of SteeringVectors, got {vectors!r:.80}. Fix: pass e.g. [vec_a, vec_b]."
        )
    return items


def mean_vectors(vectors: Sequence[SteeringVector]) -> SteeringVector:
    """Element-wise mean of vectors at the same hook (per-position vectors are zero-padded to one length).

    Raises:
        VectorMismatchError: the vectors belong to different hooks, models or widths.

    Example:
        >>> import torch
        >>> v = SteeringVector(torch.ones(2, 3), hook_name="blocks.0.hook_resid_pre")
        >>> mean_vectors([v, 3 * v]).tensor[0].tolist()
        [2.0, 2.0, 2.0]
    """
    vectors = _check_vectors(vectors, "mean_vectors")
    total = vectors[0]
    for vec in vectors[1:]:
        total = total + vec  # checks compatibility, pads per-position vectors
    out = total * (1.0 / len(vectors))
    out.method = f"mean of {len(vectors)}"
    return out


def cosine_matrix(
    vectors: Sequence[SteeringVector], labels: Optional[Sequence[str]] = None, reduce: str = "sum"
) -> Any:
    """Cosine similarity between every pair of vectors (across methods, layers or prompts).

    Per-position vectors are first collapsed to a direction (``reduce``: ``"sum"``, ``"mean"``,
    ``"last"``). Vectors may come from different hooks of the same model (e.g. one per layer);
    they must have the same width.

    Args:
        vectors: The vectors.
        labels: Row/column labels; default ``"{method}@{hook_name}"``.
        reduce: How per-position vectors become directions.

    Returns:
        A square ``pandas.DataFrame`` (labels × labels); ``.stack()`` gives the tidy form.

    Example:
        >>> import torch
        >>> a = SteeringVector(torch.tensor([1.0, 1.0]), hook_name="blocks.0.hook_resid_pre")
        >>> b = SteeringVector(torch.tensor([-2.0, -2.0]), hook_name="blocks.1.hook_resid_pre")
        >>> float(cosine_matrix([a, b]).iloc[0, 1].round(6))
        -1.0
    """
    import pandas as pd

    vectors = _check_vectors(vectors, "cosine_matrix")
    widths = {v.d_model for v in vectors}
    if len(widths) > 1:
        raise VectorMismatchError(
            f"cosine_matrix needs vectors of one width, got d_model values {sorted(widths)}; allowed: vectors from "
            "one model. Fix: compare vectors taken from the same model."
        )
    if labels is None:
        labels = [f"{v.method}@{v.hook_name}" for v in vectors]
    labels = list(labels)
    if len(labels) != len(vectors) or len(set(labels)) != len(labels):
        raise InvalidArgumentError(
            f"labels={labels!r} must be {len(vectors)} distinct strings, one per vector. Fix: pass unique labels."
        )
    stacked = torch.stack([v.direction(reduce).tensor.float().cpu() for v in vectors])  # [n, d_model]
    unit = stacked / torch.linalg.vector_norm(stacked, dim=-1, keepdim=True).clamp_min(1e-12)
    sims = einops.einsum(unit, unit, "a d_model, b d_model -> a b")
    return pd.DataFrame(sims.numpy(), index=labels, columns=labels)
