"""Attention to the steered positions: do later positions read the steering through attention?

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> t = attention_to_steered(model, vec, ["I am here today"], coeff=4.0)
    >>> t[["layer", "head"]].drop_duplicates().shape[0]                     # 2 layers × 4 heads
    8
"""

from typing import Any, Optional

import torch

from .._progress import progress_bar
from ..errors import InvalidArgumentError
from ..hooks import hook_name, n_layers
from ..placement import Positions
from ..vectors import SteeringVector
from .runs import cached_pair, check_common, prepared

__all__ = ["attention_to_steered"]


def attention_to_steered(
    model: Any,
    vector: SteeringVector,
    prompts: Any,
    coeff: Any = 4.0,
    positions: Optional[Positions] = None,
    *,
    progress: Optional[bool] = None,
) -> Any:
    """Per layer and head: the attention mass later positions put on the steered positions, steered vs unsteered.

    Read at ``blocks.{l}.attn.hook_pattern`` (``[head, query, key]``, softmax over keys). The
    steered positions are the cells that received a non-zero addition (for a front ActAdd
    vector: positions 1 … n−1 of the prompt; BOS gets ``c·0``); the later positions are the
    prompt positions after the last steered one. For each head the mass is
    ``Σ_{k steered} pattern[q, k]``, averaged over the later queries of every prompt (pooled).
    The attention mass on BOS (the usual sink) is reported beside it. Below the steered layer
    both passes are identical, so the change there is exactly 0.

    Args:
        model: The bridge.
        vector: The steering vector (front ActAdd, or a direction with ``positions="prompt"`` on
            a prefix would have no later positions: those prompts are skipped).
        prompts: A prompt or a list; each must be longer than the vector to have later positions.
        coeff: The coefficient.
        positions: Position rule (default: the vector's).
        progress: Show a progress bar (default: with more than 4 prompts).

    Returns:
        A tidy ``pandas.DataFrame``, one row per layer × head, columns ``layer``, ``head``,
        ``mass_unsteered``, ``mass_steered``, ``change`` (steered − unsteered), ``bos_unsteered``,
        ``bos_steered``, ``n_queries``.

    Raises:
        InvalidArgumentError: no prompt has a position after the steered ones.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> t = attention_to_steered(model, vec, "I am here today", coeff=4.0)
        >>> float(t.loc[t.layer == 0, "change"].abs().max())          # below the steered layer
        0.0
    """
    import pandas as pd

    vector, texts, coeff = check_common(model, vector, prompts, coeff)
    names = [hook_name(model, layer, "attn.hook_pattern") for layer in range(n_layers(model))]
    sums: dict[str, Any] = {}
    n_queries = 0
    show = progress if progress is not None else len(texts) > 4
    with progress_bar(total=len(texts), desc="attention_to_steered", unit="prompt", disable=not show,
                      leave=False) as bar:
        for text in texts:
            prompt = prepared(model, vector, text, coeff, positions)
            keys = prompt.steered[: prompt.prompt_len]
            if not bool(keys.any()):
                bar.update(1)
                continue
            last_key = int(keys.nonzero().max())
            queries = torch.arange(last_key + 1, prompt.prompt_len)
            if not queries.numel():
                bar.update(1)
                continue
            base, steered = cached_pair(model, vector, coeff, prompt, names)
            for label, run in (("unsteered", base), ("steered", steered)):
                pattern = torch.stack([run.cache[n] for n in names])[:, :, queries]  # [layer, head, query, key]
                mass = pattern[..., keys].sum(-1).sum(-1)  # [layer, head]: summed over later queries
                bos = pattern[..., 0].sum(-1)
                sums[f"mass_{label}"] = sums.get(f"mass_{label}", 0) + mass
                sums[f"bos_{label}"] = sums.get(f"bos_{label}", 0) + bos
            n_queries += int(queries.numel())
            bar.update(1)
    if not n_queries:
        raise InvalidArgumentError(
            f"attention_to_steered: no prompt has a position after the steered ones (the vector covers "
            f"{vector.n_pos or 'every'} position(s)); allowed: prompts longer than the vector. Fix: pass longer "
            "prompts, or a front ActAdd vector from a shorter prompt pair."
        )
    mean = {k: v / n_queries for k, v in sums.items()}
    rows = [{"layer": layer, "head": head, "mass_unsteered": float(mean["mass_unsteered"][layer, head]),
             "mass_steered": float(mean["mass_steered"][layer, head]),
             "change": float(mean["mass_steered"][layer, head] - mean["mass_unsteered"][layer, head]),
             "bos_unsteered": float(mean["bos_unsteered"][layer, head]),
             "bos_steered": float(mean["bos_steered"][layer, head]), "n_queries": n_queries}
            for layer in range(mean["mass_steered"].shape[0]) for head in range(mean["mass_steered"].shape[1])]
    table = pd.DataFrame(rows)
    table.attrs.update(coeff=coeff, vector_hook=vector.hook_name)
    return table
