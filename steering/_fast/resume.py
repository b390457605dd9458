"""Resuming a forward pass: one unsteered pass on the twin, then steered rows restart at any layer.

Example:
    >>> import torch
    >>> from steering.testing import tiny_model
    >>> from steering._fast.twin import twin_for
    >>> twin = twin_for(tiny_model())
    >>> ResumableForward(twin, torch.tensor([[1, 5, 6, 7]]), torch.ones(1, 4, dtype=torch.long)).check(1)
    True
"""

from typing import Any, Optional

import torch
from jaxtyping import Float, Int, Shaped
from torch import Tensor

from .twin import decoder_layers

__all__ = ["ResumableForward"]


def _final_norm(plain: torch.nn.Module) -> Optional[torch.nn.Module]:
    base = getattr(plain, "base_model", plain)
    for name in ("norm", "ln_f", "final_layer_norm"):
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def _expand(value: Any, rows: int, times: int, key: str = "") -> Any:
    """Repeat batch-sized tensors (first dim == ``rows``) ``times`` along dim 0; leave the rest alone."""
    if key == "cache_position":
        return value
    if isinstance(value, torch.Tensor):
        if value.ndim >= 1 and value.shape[0] == rows and rows > 0:
            return value.repeat(times, *([1] * (value.ndim - 1)))
        return value
    if isinstance(value, tuple):
        return tuple(_expand(v, rows, times) for v in value)
    if isinstance(value, list):
        return [_expand(v, rows, times) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, rows, times, k) for k, v in value.items()}
    return value


class ResumableForward:
    """One unsteered forward pass whose per-layer inputs are kept, so steered rows can resume at any layer.

    A next-token sweep steers at ``resid_pre`` of layer ``l``: everything below ``l`` is
    the unsteered computation, identical for every coefficient. This runs it once (for
    all layers), then :meth:`last_logits` restarts at layer ``l`` from the kept input,
    adds the steering to the hidden states, and runs only layers ``l … L−1`` plus the
    final norm and unembedding, at the last position. It works on the twin
    (``twin_for``): TransformerLens 4's ``start_at_layer`` still executes the
    blocks below the start, so it saves nothing. :meth:`check` compares a resumed
    unsteered pass with the full one; callers fall back to full passes if it fails.

    Args:
        plain: The twin (a plain HF causal LM).
        input_ids: Left-padded prompt tokens.
        attention_mask: 1 on real tokens, 0 on padding.

    Attributes:
        inputs: Per decoder layer, ``(hidden states, positional args, keyword args)`` it was called with.
        base_logits: The unsteered logits at the last position, ``[batch, vocab]``.

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> from steering._fast.twin import twin_for
        >>> ids, mask = torch.tensor([[1, 5, 6, 7]]), torch.ones(1, 4, dtype=torch.long)
        >>> resume = ResumableForward(twin_for(tiny_model()), ids, mask)
        >>> resume.last_logits(1, times=3).shape  # three copies of the row, resumed at layer 1
        torch.Size([3, 100])
    """

    def __init__(
        self, plain: torch.nn.Module, input_ids: Int[Tensor, "batch seq"], attention_mask: Shaped[Tensor, "batch seq"]
    ) -> None:
        self.plain = plain
        self.layers = decoder_layers(plain)
        self.norm = _final_norm(plain)
        self.head = plain.get_output_embeddings()
        self.rows = int(input_ids.shape[0])
        self.mask = attention_mask
        captured: list = [None] * len(self.layers)
        handles = []

        def keeper(index: int) -> Any:
            def pre(module: Any, args: tuple, kwargs: dict) -> None:
                hidden = args[0] if args else kwargs["hidden_states"]
                rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                captured[index] = (hidden.detach(), tuple(args[1:]), rest)

            return pre

        try:
            for i, layer in enumerate(self.layers):
                handles.append(layer.register_forward_pre_hook(keeper(i), with_kwargs=True))
            position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
            with torch.no_grad():
                out = plain(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False, logits_to_keep=1)
        finally:
            for h in handles:
                h.remove()
        self.inputs = captured
        self.base_logits = out.logits[:, -1].float()

    def last_logits(
        self, layer: int, times: int = 1, add: Optional[Float[Tensor, "rows seq d_model"]] = None
    ) -> Float[Tensor, "rows vocab"]:
        """Logits at the last position after resuming at ``layer`` with ``times`` copies of the rows.

        ``add`` (``[times · rows, seq, d_model]``) is added to the hidden states entering ``layer``.
        """
        hidden, args, kwargs = self.inputs[layer]
        h = hidden.repeat(times, 1, 1)
        if add is not None:
            h = h + add.to(h.dtype)
        with torch.no_grad():
            for index in range(layer, len(self.layers)):
                _, args_i, kwargs_i = self.inputs[index]
                out = self.layers[index](h, *_expand(args_i, self.rows, times), **_expand(kwargs_i, self.rows, times))
                h = out[0] if isinstance(out, tuple) else out
            logits = self.head(self.norm(h[:, -1:]))[:, -1].float()
        cap = getattr(self.plain.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def check(self, layer: int, atol: float = 1e-3) -> bool:
        """Does resuming at ``layer`` without steering reproduce the full forward's logits?"""
        if self.norm is None or self.head is None or any(i is None for i in self.inputs):
            return False
        try:
            again = self.last_logits(layer)
        except Exception:  # an architecture whose layers need more than what they were given
            return False
        return bool(torch.allclose(again, self.base_logits, atol=atol, rtol=1e-3))
