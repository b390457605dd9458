"""Shared rows: layers below the lowest steered one run once per group of rows that agree so far.

Per-row coefficients lay out C coefficients × N prompts as C identical blocks of N rows. Below the
lowest steered layer a row's computation depends only on its tokens, so rows holding the same
prompt and the same generated tokens compute the same hidden states and cached keys and values
there. :func:`shared_rows` hooks the twin so those layers run on one row per group.

Example:
    >>> import torch
    >>> take_rows((torch.zeros(4, 3), torch.zeros(4)), 4, torch.tensor([0, 2]), {})[0].shape
    torch.Size([2, 3])
"""

import contextlib
import functools
from typing import Any, Iterator, Optional

import torch
from jaxtyping import Int
from torch import Tensor

from ..validate import count
from . import twin

__all__ = ["shared_rows", "take_rows", "RowSharing"]


def take_rows(value: Any, rows: int, index: Int[Tensor, " kept"], memo: dict) -> Any:
    """``value`` with every tensor of 2+ dimensions whose first dimension is ``rows`` cut to the rows ``index`` names.

    Recurses into tuples, lists and dicts; each tensor is cut once per ``memo`` (keyed by identity).

    Args:
        value: A tensor, or a tuple / list / dict holding some.
        rows: The batch size whose tensors are cut.
        index: The rows to keep.
        memo: Cuts already made (shared across the layers of one forward pass).

    Example:
        >>> import torch
        >>> take_rows({"mask": torch.ones(3, 5), "n": 3}, 3, torch.tensor([1]), {})["mask"].shape
        torch.Size([1, 5])
    """
    if isinstance(value, Tensor):
        if value.ndim < 2 or value.shape[0] != rows:
            return value
        key = id(value)
        if key not in memo:
            memo[key] = (value, value.index_select(0, index.to(value.device)))
        return memo[key][1]
    if isinstance(value, tuple):
        return tuple(take_rows(v, rows, index, memo) for v in value)
    if isinstance(value, list):
        return [take_rows(v, rows, index, memo) for v in value]
    if isinstance(value, dict):
        return {k: take_rows(v, rows, index, memo) for k, v in value.items()}
    return value


class RowSharing:
    """The state and hooks of one :func:`shared_rows` block: which group each row is in, and the cache they share.

    At the prompt pass row ``r`` is in group ``r mod block``; a group splits when its rows pick
    different tokens. The hooks are :meth:`start` (on the twin: regroups on each decode step),
    :meth:`below` (on layers ``0 … boundary−1``: one row per group) and :meth:`at_boundary`
    (on layer ``boundary``: every row again).

    Args:
        boundary: The lowest steered decoder layer.
        block: Distinct rows (N prompts × samples).
        times: How many identical blocks the batch holds (C).

    Example:
        >>> sharing = RowSharing(boundary=1, block=2, times=3)
        >>> sharing.rows, sharing.on
        (6, False)
    """

    def __init__(self, boundary: int, block: int, times: int) -> None:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        self._cache_type, self._layer_type = DynamicCache, DynamicLayer
        self.boundary, self.block, self.rows = boundary, block, block * times
        self.calls = 0
        self.on = False
        self.cache: Any = None
        self.group: Optional[Tensor] = None
        self.reps: Optional[Tensor] = None
        self.memo: dict = {}

    def _cache_layers(self) -> list:
        found = [self.cache.layers[i] for i in range(min(self.boundary, len(self.cache.layers)))]
        for index, layer in enumerate(found):
            if not isinstance(layer, self._layer_type) or not layer.is_initialized:
                raise RuntimeError(f"shared_rows: cache layer {index} ({type(layer).__name__}) cannot be regrouped")
        return found

    def regroup(self, index: Tensor) -> None:
        """Cache row ``g`` (below the boundary) := cache row ``index[g]``."""
        for layer in self._cache_layers():
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)

    def start(self, module: Any, args: tuple, kwargs: dict) -> None:
        """Pre-hook on the twin: set up the groups on the prompt pass, split them on each decode step."""
        self.calls += 1
        self.memo = {}
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("past_key_values")
        if self.calls == 1:  # the prompt pass: one group per distinct prompt row
            if (isinstance(ids, Tensor) and ids.ndim == 2 and ids.shape[0] == self.rows
                    and type(cache) is self._cache_type and cache.get_seq_length() == 0):
                self.on, self.cache = True, cache
                self.group = torch.arange(self.rows, device=ids.device) % self.block
                self.reps = torch.arange(self.block, device=ids.device)
            return
        if not self.on:
            return
        if not (isinstance(ids, Tensor) and ids.shape == (self.rows, 1) and cache is self.cache):
            self.regroup(self.group)  # not a step it knows: every row gets its own cache entries back, and sharing stops
            self.on = False
            return
        self._split(ids)

    def _split(self, ids: Tensor) -> None:
        """Split groups by the token each row just picked (sorted keys: new groups stay in parent order)."""
        tokens = ids[:, 0].to(torch.long)
        keys = self.group * (int(tokens.max()) + 1) + tokens
        _, new_group = torch.unique(keys, sorted=True, return_inverse=True)
        n_groups = int(new_group.max()) + 1
        order = torch.arange(self.rows, device=ids.device)
        reps = torch.full((n_groups,), self.rows, dtype=torch.long, device=ids.device).scatter_reduce_(
            0, new_group, order, reduce="amin")
        if n_groups != self.reps.numel():
            self.regroup(self.group[reps])
        self.group, self.reps = new_group, reps

    def below(self, module: Any, args: tuple, kwargs: dict, first: bool) -> Any:
        """Pre-hook on a layer below the boundary: its inputs cut to one row per group."""
        if not self.on:
            return None
        reps, memo = self.reps, self.memo
        # the hidden states: all rows entering layer 0, one per group from then on (the previous layer's output)
        hidden = args[0] if args else kwargs.get("hidden_states")
        if first and isinstance(hidden, Tensor):
            hidden = hidden.index_select(0, reps)
        args = (hidden,) + take_rows(args[1:], self.rows, reps, memo) if args else ()
        kwargs = take_rows({k: v for k, v in kwargs.items() if k != "hidden_states"}, self.rows, reps, memo) | (
            {} if args else {"hidden_states": hidden})
        return args, kwargs

    def at_boundary(self, module: Any, args: tuple, kwargs: dict) -> Any:
        """Pre-hook on the boundary layer: the hidden states copied out to every row again."""
        if not self.on:
            return None
        if args:
            return (args[0].index_select(0, self.group),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"].index_select(0, self.group)}


@contextlib.contextmanager
def shared_rows(model: Any, boundary: int, block: int, times: int) -> Iterator[bool]:
    """For the ``with`` block, run the layers below ``boundary`` once per group of rows that agree so far.

    Per-row coefficients lay out C coefficients × N prompts as C identical blocks of N rows
    (coefficient-major). Below the lowest steered layer a row's computation depends only on its
    tokens, so rows holding the same prompt *and the same generated tokens so far* compute the same
    hidden states and the same cached keys and values there. ActAdd steers the prompt only, and a
    small coefficient often leaves the first tokens (or all of them) unchanged.

    So rows are kept in groups (:class:`RowSharing`). Layers ``0 … boundary−1`` run on one row per
    group, and their KV-cache entries are stored once per group (rearranged when groups split);
    entering layer ``boundary`` the hidden states are copied out to every row, and the rest of the
    model (steering included) runs on all of them. Applies to generations whose cache is a
    ``DynamicCache`` (Hugging Face's default) and whose steps feed one new token per row; a step
    that does not (a call it does not recognise) first copies the groups' cache entries back out to
    every row, and sharing stops there. The hooks are removed when the block exits, also on an
    exception or KeyboardInterrupt.

    Args:
        model: A bridge whose twin (``twin_for``) serves generation.
        boundary: The lowest steered decoder layer (its input is where rows start to differ).
        block: Distinct rows (N prompts × samples).
        times: How many identical blocks the batch holds (C).

    Yields:
        Whether the hooks were installed.

    Raises:
        InvalidArgumentError: ``boundary`` is not an int ≥ 0, or ``block`` / ``times`` not an int ≥ 1.

    Example:
        >>> from steering.testing import tiny_model
        >>> with shared_rows(tiny_model(), boundary=0, block=2, times=4) as shared:
        ...     shared  # nothing lies below layer 0
        False
    """
    boundary = count("boundary", boundary, 0, caller="shared_rows")
    block = count("block", block, 1, caller="shared_rows")
    times = count("times", times, 1, caller="shared_rows")
    plain = twin.twin_for(model)
    layers = twin.decoder_layers(plain) if plain is not None else None
    if layers is None or not 0 < boundary < len(layers) or times < 2:
        yield False
        return
    sharing = RowSharing(boundary, block, times)
    handles = []
    try:
        handles.append(plain.register_forward_pre_hook(sharing.start, with_kwargs=True))
        for index in range(boundary):
            hook = functools.partial(sharing.below, first=index == 0)
            handles.append(layers[index].register_forward_pre_hook(hook, with_kwargs=True))
        # prepended: the rows are whole again before any steering hook on this layer sees them
        handles.append(layers[boundary].register_forward_pre_hook(sharing.at_boundary, with_kwargs=True, prepend=True))
        yield True
    finally:
        for handle in handles:
            handle.remove()
