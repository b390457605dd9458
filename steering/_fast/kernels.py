"""Small-batch CPU matmuls for the twin's linear layers, and the per-twin choice of kernel.

A decode step multiplies a few rows by large weight matrices, which some BLAS builds run on a
single core (1–4 rows) or well below the cores' peak (more rows). :func:`chunked_linear` serves
those shapes with kernels that use every core; :class:`KernelChoice` records whether a twin uses
it (``"chunked"``) or ``F.linear`` (``"torch"``), and :class:`TwinLinear` is the ``nn.Linear``
the twin holds in place of each of its linear layers (same ``Parameter`` objects, so the weights
stay the bridge's). The measured figures behind these choices are in ``docs/performance.md``
("Where the fast path's numbers come from").

Example:
    >>> import torch
    >>> layer = torch.nn.Linear(8, 4)
    >>> twin_layer = TwinLinear(layer, KernelChoice())
    >>> twin_layer.weight is layer.weight and list(twin_layer.state_dict()) == ["weight", "bias"]
    True
"""

import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Shaped
from torch import Tensor

from ..errors import InvalidArgumentError

__all__ = [
    "CHUNK_MAX_ROWS", "CHUNKS", "chunkable", "chunked_linear", "onednn_linear", "reorder_op", "clear_probes",
    "chunked_pays", "choose_kernel", "KernelChoice", "TwinLinear", "install", "twin_linears", "BMM_MAX_ROWS", "MARGIN",
]

#: Rows (batch × new positions) up to which the row-block matmul serves when oneDNN is missing.
CHUNK_MAX_ROWS = 64
#: How many row blocks the weight is split into for the batched matmul.
CHUNKS = 4
#: Up to this many rows the row-block ``bmm`` form serves (oneDNN, where present, from the next row up).
BMM_MAX_ROWS = 4
_MIN_NUMEL = 1 << 22
#: The chunked kernel is switched on only when it is at least this much faster on the model's largest matrix.
MARGIN = 1.25

_probes: dict = {}


def chunkable(x: Shaped[Tensor, "..."], weight: Shaped[Tensor, "..."]) -> bool:
    """Whether the fast kernels may serve ``F.linear(x, weight)``: CPU float32, no gradients, matching widths.

    Example:
        >>> import torch
        >>> with torch.no_grad():
        ...     chunkable(torch.randn(2, 64), torch.randn(96, 64)), chunkable(torch.randn(2, 32), torch.randn(96, 64))
        (True, False)
    """
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.ndim >= 1
        and weight.ndim == 2
        and x.shape[-1] == weight.shape[1]
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and weight.is_contiguous()
        and not torch.is_grad_enabled()
        and x.numel() > 0
    )


def _probe_data() -> tuple[Tensor, Tensor, Tensor]:
    w = torch.linspace(-1.0, 1.0, 96).reshape(12, 8)
    x = torch.linspace(-2.0, 2.0, 48).reshape(6, 8)
    b = torch.linspace(0.0, 1.0, 12)
    return w, x, b


def onednn_linear() -> Optional[Callable[..., Tensor]]:
    """oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``) if this torch has it and it agrees with ``F.linear``.

    Probed once per process (on a 6 × 8 input); ``None`` on a torch built without oneDNN or whose
    op's signature moved. Called as ``op(x, weight, bias, "none", [], "")``.

    Example:
        >>> op = onednn_linear()
        >>> op is None or op is onednn_linear()  # probed once, then the same answer
        True
    """
    if "op" not in _probes:
        op = None
        try:
            candidate = torch.ops.mkldnn._linear_pointwise
            if torch.backends.mkldnn.is_available():
                w, x, b = _probe_data()
                with torch.no_grad():
                    if torch.allclose(candidate(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5):
                        op = candidate
        except (AttributeError, RuntimeError):  # a torch built without oneDNN, or an op whose signature moved
            op = None
        _probes["op"] = op
    return _probes["op"]


def reorder_op() -> Optional[Callable[..., Tensor]]:
    """oneDNN's weight packing (``torch.ops.mkldnn._reorder_linear_weight``) if a packed weight gives ``F.linear``'s values.

    Probed once per process; ``None`` without :func:`onednn_linear` or where the op is missing.
    Called as ``op(weight, rows)``; the result is a weight :func:`onednn_linear` multiplies by.

    Example:
        >>> reorder_op() is None or onednn_linear() is not None  # packing needs oneDNN's linear
        True
    """
    if "reorder" not in _probes:
        op, reorder = onednn_linear(), None
        if op is not None:
            try:
                candidate = torch.ops.mkldnn._reorder_linear_weight
                w, x, _ = _probe_data()
                with torch.no_grad():
                    if torch.allclose(op(x, candidate(w, 6), None, "none", [], ""), F.linear(x, w), atol=1e-5):
                        reorder = candidate
            except (AttributeError, RuntimeError):
                reorder = None
        _probes["reorder"] = reorder
    return _probes["reorder"]


def clear_probes() -> None:
    """Forget what :func:`onednn_linear` and :func:`reorder_op` found: their next call probes again (tests).

    Example:
        >>> clear_probes()
        >>> onednn_linear() is onednn_linear()
        True
    """
    _probes.clear()


def _width_error(x: Tensor, weight: Tensor) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"chunked_linear: input width {x.shape[-1]} (x shape {tuple(x.shape)}) does not match the weight's "
        f"d_in {weight.shape[1]} (weight shape {tuple(weight.shape)}); allowed: x[..., {weight.shape[1]}]. "
        "Pass the weight as [d_out, d_in], like nn.Linear.weight, or reshape x."
    )


def chunked_linear(
    x: Float[Tensor, "*batch d_in"], weight: Float[Tensor, "d_out d_in"], bias: Optional[Float[Tensor, " d_out"]] = None
) -> Float[Tensor, "*batch d_out"]:
    """``F.linear(x, weight, bias)`` with the kernels that are fastest for decode-sized inputs on CPU.

    On a decode step a linear layer multiplies a few rows by a large weight matrix, which some
    BLAS builds (MKL on AMD EPYC) run as a single-threaded matrix-vector product, and larger row
    counts well below the cores' peak. So:

    - up to 4 rows: the weight is split into ``CHUNKS`` row blocks (``weight.view``, no copy)
      and handed to one batched matmul, which runs on every core;
    - 5 rows and more: oneDNN's linear (:func:`onednn_linear`). Without oneDNN, the row-block
      matmul serves up to ``CHUNK_MAX_ROWS`` rows and ``F.linear`` above.

    The result equals ``F.linear`` up to float rounding (a different summation order), not bit
    for bit. Inputs the kernels do not serve (not CPU float32, gradients on, a non-contiguous
    weight) go to ``F.linear`` unchanged.

    Args:
        x: The input rows.
        weight: ``[d_out, d_in]``, like ``nn.Linear.weight``.
        bias: Added to every output row, if given.

    Returns:
        ``x @ weight.T + bias``.

    Raises:
        InvalidArgumentError: ``x``'s last dimension is not the weight's ``d_in``.

    Example:
        >>> import torch
        >>> w, x = torch.randn(8, 3), torch.randn(2, 3)
        >>> with torch.no_grad():
        ...     torch.allclose(chunked_linear(x, w), torch.nn.functional.linear(x, w), atol=1e-6)
        True
    """
    if not chunkable(x, weight):
        if x.ndim >= 1 and weight.ndim == 2 and x.shape[-1] != weight.shape[1]:
            raise _width_error(x, weight)
        return F.linear(x, weight, bias)
    d_out, d_in = weight.shape
    rows = x.numel() // d_in
    if rows > BMM_MAX_ROWS:
        onednn = onednn_linear()
        if onednn is not None:  # oneDNN's own kernels: fastest here from 5 rows up (decode batches and prefill)
            return onednn(x, weight, bias, "none", [], "")
        if rows > CHUNK_MAX_ROWS or d_out % CHUNKS:
            return F.linear(x, weight, bias)
    elif d_out % CHUNKS:
        return F.linear(x, weight, bias)
    # Row-major rows: a transposed [rows, d_in] (say, the previous layer's bmm output) would hand the
    # batched matmul a row-major [d_in, rows] right-hand side, which MKL runs 2-4x slower.
    flat = x.reshape(rows, d_in).contiguous()
    blocks = weight.view(CHUNKS, d_out // CHUNKS, d_in)  # a view: no copy
    if rows <= BMM_MAX_ROWS:  # [C, d_out/C, rows]: fastest for one to a few rows
        out = torch.bmm(blocks, flat.t().expand(CHUNKS, d_in, rows)).permute(2, 0, 1)
    else:  # [C, rows, d_out/C]: the fallback for larger decode batches where oneDNN is missing
        out = torch.matmul(flat, blocks.transpose(1, 2)).permute(1, 0, 2)
    # Contiguous output (a copy of rows x d_out floats): the next layer and the elementwise ops get row-major input.
    out = out.reshape(*x.shape[:-1], d_out).contiguous()
    return out if bias is None else out + bias


def chunked_pays(weight: Float[Tensor, "d_out d_in"], reps: int = 4) -> bool:
    """Whether :func:`chunked_linear` beats ``F.linear`` by ``MARGIN`` on one row against ``weight`` (timed now).

    Only CPU float32 matrices of at least 4M elements whose row count splits into ``CHUNKS``
    are timed; a smaller matrix fits in cache, where there is nothing to gain and the timing
    would be noise. The global random generator is left alone.

    Example:
        >>> import torch
        >>> chunked_pays(torch.zeros(64, 64))  # fits in cache: not worth timing
        False
    """
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.shape[0] % CHUNKS:
        return False
    if weight.numel() < _MIN_NUMEL:
        return False
    x = torch.full((1, weight.shape[1]), 0.5, dtype=weight.dtype)
    best = {"torch": float("inf"), "chunked": float("inf")}
    with torch.no_grad():
        chunked_linear(x, weight), F.linear(x, weight)  # warm-up
        for _ in range(reps):
            for name, fn in (("torch", F.linear), ("chunked", chunked_linear)):
                start = time.perf_counter()
                fn(x, weight)
                best[name] = min(best[name], time.perf_counter() - start)
    return best["chunked"] * MARGIN < best["torch"]


def choose_kernel(setting: str, weights: Sequence[Tensor]) -> str:
    """The kernel ``"chunked"`` or ``"torch"`` for a model with these linear weights under a ``STEERING_LINEAR`` setting.

    ``"chunked"`` and ``"torch"`` are obeyed; ``"auto"`` times :func:`chunked_pays` on the largest weight.

    Example:
        >>> import torch
        >>> choose_kernel("chunked", [torch.zeros(4, 4)]), choose_kernel("auto", [torch.zeros(4, 4)])
        ('chunked', 'torch')
    """
    if not weights:
        return "torch"
    if setting in ("chunked", "torch"):
        return setting
    return "chunked" if chunked_pays(max(weights, key=lambda w: w.numel())) else "torch"


class KernelChoice:
    """The kernel one twin's linear layers use now, and the ``STEERING_LINEAR`` setting it was chosen under.

    Every :class:`TwinLinear` of a twin holds the same instance and reads :attr:`kernel` on each
    call; :meth:`follow` re-chooses when the setting differs from the one the choice was made under.

    Attributes:
        kernel: ``"chunked"`` (:func:`chunked_linear`) or ``"torch"`` (``F.linear``).
        setting: The setting :attr:`kernel` was chosen under (``None`` before the first choice).

    Example:
        >>> import torch
        >>> choice = KernelChoice()
        >>> choice.follow("chunked", [torch.zeros(4, 4)]), choice.follow("torch", [torch.zeros(4, 4)])
        ('chunked', 'torch')
    """

    def __init__(self) -> None:
        self.kernel = "torch"
        self.setting: Optional[str] = None

    def follow(self, setting: str, weights: Sequence[Tensor]) -> str:
        """Re-choose (``"auto"``: measure again) if ``setting`` is not the one the current choice was made under."""
        if setting != self.setting:
            self.kernel = choose_kernel(setting, weights)
            self.setting = setting
        return self.kernel


class TwinLinear(torch.nn.Linear):
    """An ``nn.Linear`` holding another one's ``Parameter`` objects, whose forward follows a :class:`KernelChoice`.

    Same parameters, same state-dict keys as the layer it stands in for: the twin's weights stay
    the bridge's tensors. Its forward is :func:`chunked_linear` when the choice says ``"chunked"``,
    else ``F.linear``. While :attr:`packed` is set (inside ``packed_weights``), inputs of 2+ rows
    go to that callable instead (a oneDNN-packed copy of the weight).

    Args:
        source: The layer whose parameters it holds.
        choice: The twin's kernel choice (shared by all its linear layers).

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(8, 4)
        >>> x = torch.randn(3, 8)
        >>> with torch.no_grad():
        ...     torch.allclose(TwinLinear(layer, KernelChoice())(x), layer(x))
        True
    """

    def __init__(self, source: torch.nn.Linear, choice: KernelChoice) -> None:
        torch.nn.Module.__init__(self)  # not nn.Linear.__init__: no fresh weights to allocate
        self.in_features = source.in_features
        self.out_features = source.out_features
        self.weight = source.weight
        self.register_parameter("bias", source.bias)
        self.choice = choice
        self.packed: Optional[Callable[[Tensor], Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        """``F.linear(x, weight, bias)`` by the packed weight, the chunked kernel or torch's own."""
        packed = self.packed
        if packed is not None and x.numel() >= 2 * x.shape[-1] and chunkable(x, self.weight):
            return packed(x)
        if self.choice.kernel == "chunked":
            return chunked_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """``nn.Linear``'s description plus the kernel in use."""
        return f"{super().extra_repr()}, kernel={self.choice.kernel}"


def install(root: torch.nn.Module, choice: KernelChoice) -> list[TwinLinear]:
    """Replace every plain ``nn.Linear`` under ``root`` with a :class:`TwinLinear` holding its parameters.

    A layer reachable under several names gets one replacement. Returns the new layers.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
        >>> [type(m).__name__ for m in install(net, KernelChoice())], type(net[0]).__name__
        (['TwinLinear'], 'TwinLinear')
    """
    made: dict[int, TwinLinear] = {}
    for parent in list(root.modules()):
        for name, child in list(parent._modules.items()):
            if type(child) is torch.nn.Linear:
                if id(child) not in made:
                    made[id(child)] = TwinLinear(child, choice)
                parent._modules[name] = made[id(child)]
    return list(made.values())


def twin_linears(root: torch.nn.Module) -> list[TwinLinear]:
    """The :class:`TwinLinear` layers under ``root``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(TwinLinear(torch.nn.Linear(4, 4), KernelChoice()), torch.nn.Linear(4, 2))
        >>> len(twin_linears(net))
        1
    """
    return [m for m in root.modules() if isinstance(m, TwinLinear)]
