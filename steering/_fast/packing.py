"""oneDNN-packed weights for large batched generations on the twin.

oneDNN's linear on a weight reordered into its blocked layout skips the per-call repacking of a
plain weight. Packing costs one pass over the weights and, while it lasts, a second copy of them
in memory, so :func:`packed_weights` packs only for calls large enough to repay it (the
``PACK_MIN_*`` thresholds; the measurements behind them are in ``docs/performance.md``, "Where
the fast path's numbers come from").

Example:
    >>> PACK_MIN_ROWS, PACK_MIN_NEW_TOKENS, PACK_MIN_WORK
    (4, 32, 256)
"""

import contextlib
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

from ..settings import settings
from ..validate import count
from . import kernels, twin

__all__ = ["PACK_MIN_ROWS", "PACK_MIN_NEW_TOKENS", "PACK_MIN_WORK", "FUSE_GROUPS", "FusedGroup", "GroupSlice",
           "PackedWeight", "available_bytes", "packed_weights"]

#: Packing pays from this many rows per decode step, new tokens and rows × new tokens (see :func:`packed_weights`).
PACK_MIN_ROWS = 4
PACK_MIN_NEW_TOKENS = 32
PACK_MIN_WORK = 256
#: Sibling projections that read the same input: one packed product serves the group.
FUSE_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class PackedWeight:
    """One layer's oneDNN-packed weight: called with an input, it gives ``F.linear(x, weight, bias)``.

    Args:
        weight: The layer's ``[d_out, d_in]`` weight (packed here; the original is left as is).
        bias: The layer's bias, if any.
        rows: The row count the packing is tuned for.

    Example:
        >>> import torch
        >>> from steering._fast.kernels import reorder_op
        >>> w, x = torch.randn(8, 4), torch.randn(5, 4)
        >>> with torch.no_grad():
        ...     reorder_op() is None or torch.allclose(PackedWeight(w, None, 5)(x), x @ w.T, atol=1e-5)
        True
    """

    def __init__(self, weight: Tensor, bias: Optional[Tensor], rows: int) -> None:
        self.packed = kernels.reorder_op()(weight, rows)
        self.bias = bias

    def __call__(self, x: Tensor) -> Tensor:
        """The layer's output for ``x``, by the packed weight."""
        return kernels.onednn_linear()(x, self.packed, self.bias, "none", [], "")


class FusedGroup:
    """Packed ``[W_1; W_2; ...]`` of sibling linear layers fed the same input (attention's q/k/v, the MLP's gate/up).

    The first member called with an input computes every member's output in one oneDNN product
    and keeps the others' slices; a sibling called with the same tensor (same object, unchanged
    since) takes its slice. Any other input is computed afresh, so the result never depends on
    the call order. Once every member has taken its slice no activation is held.

    Args:
        members: The sibling layers (same input width, all with or all without bias).
        rows: The row count the packing is tuned for.

    Example:
        >>> import torch
        >>> from steering._fast.kernels import reorder_op
        >>> q, k = torch.nn.Linear(4, 8), torch.nn.Linear(4, 2)
        >>> x = torch.randn(5, 4)
        >>> with torch.no_grad():
        ...     reorder_op() is None or torch.allclose(FusedGroup([q, k], 5).output(x, 1), k(x), atol=1e-5)
        True
    """

    def __init__(self, members: list, rows: int) -> None:
        weights = [m.weight for m in members]
        self.sizes = [w.shape[0] for w in weights]
        self.packed = kernels.reorder_op()(torch.cat(weights), rows)
        biases = [m.bias for m in members]
        self.bias = None if biases[0] is None else torch.cat(biases)
        self._x: Optional[Tensor] = None
        self._version = -1
        self._outs: list = []

    def output(self, x: Tensor, index: int) -> Tensor:
        """Member ``index``'s output for ``x`` (from the group's product for this very input, if there is one)."""
        if self._x is not x or self._version != x._version or self._outs[index] is None:
            full = kernels.onednn_linear()(x, self.packed, self.bias, "none", [], "")
            self._outs = list(full.split(self.sizes, dim=-1))
            self._x, self._version = x, x._version
        out, self._outs[index] = self._outs[index], None
        if all(o is None for o in self._outs):
            self._x = None  # every member served: hold no activations between calls
        return out


class GroupSlice:
    """One member's share of a :class:`FusedGroup`: called with an input, it gives that member's output.

    Attributes:
        group: The group.
        index: The member's position in it.

    Example:
        >>> import torch
        >>> from steering._fast.kernels import reorder_op
        >>> layers = [torch.nn.Linear(4, 8), torch.nn.Linear(4, 2)]
        >>> share, x = lambda: GroupSlice(FusedGroup(layers, 5), 0), torch.randn(5, 4)
        >>> with torch.no_grad():
        ...     reorder_op() is None or torch.allclose(share()(x), layers[0](x), atol=1e-5)
        True
    """

    def __init__(self, group: FusedGroup, index: int) -> None:
        self.group = group
        self.index = index

    def __call__(self, x: Tensor) -> Tensor:
        """The member's output for ``x``."""
        return self.group.output(x, self.index)


def available_bytes() -> Optional[int]:
    """Memory the system can still hand out (Linux ``MemAvailable``), or ``None`` where it cannot be read.

    Example:
        >>> n = available_bytes()
        >>> n is None or n > 0
        True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _packable(model: Any, rows: int, new_tokens: int) -> tuple[Optional[torch.nn.Module], list]:
    """The twin and the linear layers :func:`packed_weights` packs for this call (none when it would not pay)."""
    setting = settings().pack  # a bad value raises whatever the call's size
    plain = twin.twin_for(model)
    if (
        plain is None
        or setting != "auto"
        or rows < PACK_MIN_ROWS
        or new_tokens < PACK_MIN_NEW_TOKENS
        or rows * new_tokens < PACK_MIN_WORK
        or twin.linear_kernel(model) != "chunked"
        or kernels.reorder_op() is None
    ):
        return plain, []
    modules = [
        m for m in kernels.twin_linears(plain)
        if m.weight.dtype == torch.float32 and m.weight.device.type == "cpu" and m.weight.is_contiguous()
    ]
    available = available_bytes()
    needed = sum(m.weight.numel() * m.weight.element_size() for m in modules)
    if available is not None and 2 * needed > available:  # the copy must leave as much again free
        return plain, []
    return plain, modules


def _pack(plain: torch.nn.Module, modules: list, rows: int) -> None:
    """Give each of ``modules`` its packed weight; siblings in ``FUSE_GROUPS`` share one packed product."""
    chosen = {id(m) for m in modules}
    grouped: set = set()
    for parent in plain.modules():
        for names in FUSE_GROUPS:
            members = [parent._modules.get(n) for n in names]
            if all(id(m) in chosen for m in members) and len({(m.in_features, m.bias is None) for m in members}) == 1:
                group = FusedGroup(members, rows)
                for index, member in enumerate(members):
                    member.packed = GroupSlice(group, index)
                    grouped.add(id(member))
    for module in modules:
        if id(module) not in grouped:
            module.packed = PackedWeight(module.weight, module.bias, rows)


@contextlib.contextmanager
def packed_weights(model: Any, rows: int, new_tokens: int) -> Iterator[bool]:
    """For the ``with`` block, give the twin's linear layers oneDNN-packed copies of their weights.

    oneDNN's linear on a weight reordered into its blocked layout (:func:`~steering._fast.kernels.reorder_op`)
    skips the per-call repacking of a plain weight. Packing costs one pass over the weights and,
    while the block runs, a second copy of them in memory, so it is done only when the call is
    large enough to repay it: ``rows >= PACK_MIN_ROWS``, ``new_tokens >= PACK_MIN_NEW_TOKENS`` and
    ``rows * new_tokens >= PACK_MIN_WORK``; the chunked kernel is in use (``linear_kernel``); this
    torch has oneDNN; and the system has at least twice the copy's size free (Linux
    ``MemAvailable``; elsewhere not checked). Sibling projections fed the same input (attention's
    q/k/v, the MLP's gate/up) are packed as one matrix and served by one product. The copies are
    dropped when the block exits, also on an exception or KeyboardInterrupt, so weights edited
    between calls are always the ones used. ``STEERING_PACK=off`` turns packing off (``auto``, the
    default, packs as above); the setting is read on each call.

    Args:
        model: A bridge whose twin (``twin_for``) serves generation.
        rows: Rows per decode step (the batch).
        new_tokens: New tokens per row.

    Yields:
        Whether the weights were packed.

    Raises:
        InvalidArgumentError: ``STEERING_PACK`` is neither ``auto`` nor ``off``; ``rows`` is not an int ≥ 1
            or ``new_tokens`` not an int ≥ 0.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> with packed_weights(model, rows=1, new_tokens=8) as packed:
        ...     packed  # one row: nothing to gain
        False
    """
    rows = count("rows", rows, 1, caller="packed_weights")
    new_tokens = count("new_tokens", new_tokens, 0, caller="packed_weights")
    plain, modules = _packable(model, rows, new_tokens)
    try:
        if modules:
            with torch.no_grad():
                _pack(plain, modules, rows)
        yield bool(modules)
    finally:
        for module in modules:
            module.packed = None
