"""The fast path: the unbridged Hugging Face model, sharing the bridge's weights.

TransformerLens 4's bridge wraps every HF module so its hook points fire; generation
through it costs ~0.6× plain HF speed on small models (``../shared/guide``). ActAdd only
needs the residual stream at block boundaries, which the plain HF model exposes as the
input (``hook_resid_pre``) and output (``hook_resid_post``) of each decoder layer. So
:func:`plain_model` builds that model once per bridge — a second module tree whose
parameters and buffers *are* the bridge's tensors (no copy, no extra weight memory) —
and :func:`steering.steer` hooks its decoder layers directly when every vector sits at
``resid_pre`` / ``resid_post``. Anything else (``attn_out``, ``mlp_out``, ``resid_mid``,
analysis with ``run_with_cache``) keeps using the bridge's hook points.

The two paths compute the same function: the tests check steered logits and greedy
generations against the bridge's hook points.

On CPU the twin's linear layers may also get faster decode-sized matmuls
(:func:`chunked_linear`, chosen per model by :func:`linear_kernel`): decode steps multiply a
few rows by large weight matrices, which some BLAS builds run on a single core (1–4 rows) or
well below the cores' peak (more rows).

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> plain = plain_model(model)
    >>> plain is plain_model(model)  # built once, cached on the bridge
    True
    >>> shares_weights(model, plain)
    True
"""

import contextlib
import copy
import functools
import os
import time
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from .errors import InvalidArgumentError

__all__ = ["plain_model", "decoder_layers", "shares_weights", "linear_kernel", "chunked_linear", "packed_weights",
           "shared_rows", "FAST_HOOKS"]

#: Hook kinds the fast path serves (block input and output).
FAST_HOOKS = ("resid_pre", "resid_post")

_ATTR = "_steering_plain_model"


def _strip(name: str) -> str:
    return name.replace("._original_component", "").replace("_original_component.", "")


def _assign(root: torch.nn.Module, dotted: str, tensor: torch.Tensor, kind: str) -> bool:
    *path, leaf = dotted.split(".")
    module = root
    for part in path:
        if not hasattr(module, part):
            return False
        module = getattr(module, part)
    store = module._parameters if kind == "param" else module._buffers
    if leaf not in store:
        return False
    store[leaf] = tensor
    return True


def plain_model(model: Any) -> Optional[torch.nn.Module]:
    """The unbridged HF model sharing ``model``'s weights, built on first use (``None`` if impossible).

    Built on the meta device, then every parameter and buffer is pointed at the bridge's
    own tensor. Its config is a copy using the library's default attention kernel
    (``sdpa`` where available), like a plain ``from_pretrained`` model.
    """
    cached = getattr(model, _ATTR, None)
    if cached is not None:
        return cached or None
    hf = getattr(model, "original_model", None)
    _kernel_setting()  # a bad STEERING_LINEAR is the user's to fix, not a reason to fall back silently
    twin = None
    try:
        twin = _build(hf)
    except Exception:  # an architecture we cannot mirror: the bridge path still works
        twin = None
    object.__setattr__(model, _ATTR, twin if twin is not None else False)
    return twin


def _build(hf: Any) -> Optional[torch.nn.Module]:
    if hf is None:
        return None
    config = copy.deepcopy(hf.config)
    if hasattr(config, "_attn_implementation_internal"):
        config._attn_implementation_internal = None
    cls = type(hf)
    with torch.device("meta"):
        try:
            twin = cls._from_config(config)
        except Exception:
            twin = cls(config)
    missing = []
    for name, param in hf.named_parameters(remove_duplicate=False):
        if not _assign(twin, _strip(name), param, "param"):
            missing.append(name)
    for name, buf in hf.named_buffers(remove_duplicate=False):
        _assign(twin, _strip(name), buf, "buffer")
    leftovers = [n for n, t in list(twin.named_parameters()) + list(twin.named_buffers()) if t.is_meta]
    if missing or leftovers:
        # tied weights (lm_head ↔ embeddings) may appear under one name only: tie, then re-check
        if hasattr(twin, "tie_weights"):
            twin.tie_weights()
        leftovers = [n for n, t in list(twin.named_parameters()) + list(twin.named_buffers()) if t.is_meta]
        for name in leftovers:  # non-persistent buffers the bridge keeps elsewhere (e.g. rotary inv_freq)
            src = _find_buffer(hf, name)
            if src is None or not _assign(twin, name, src, "buffer"):
                return None
    twin.eval()
    twin.requires_grad_(False)
    _install_linear_kernel(twin)
    if getattr(hf, "generation_config", None) is not None:
        twin.generation_config = hf.generation_config
    if decoder_layers(twin) is None:
        return None
    return twin


# ----------------------------------------------------------------------------- small-batch CPU matmuls
#: Rows (batch × new positions) up to which the row-block matmul serves when oneDNN is missing.
CHUNK_MAX_ROWS = 64
#: How many row blocks the weight is split into for the batched matmul.
CHUNKS = 4
_BMM_MAX_ROWS = 4
_MIN_NUMEL = 1 << 22
#: The chunked kernel is switched on only when it is at least this much faster on the model's largest matrix.
_MARGIN = 1.25
_KERNEL_ENV = "STEERING_LINEAR"
_KERNELS = ("auto", "chunked", "torch")


def _chunkable(x: Tensor, weight: Tensor) -> bool:
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


_onednn_state: dict = {}


def _onednn_linear() -> Any:
    """oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``) if this torch build has it and it agrees with
    ``F.linear`` on a probe; else ``None``. Checked once per process."""
    if "op" not in _onednn_state:
        op = None
        try:
            candidate = torch.ops.mkldnn._linear_pointwise
            if torch.backends.mkldnn.is_available():
                w = torch.linspace(-1.0, 1.0, 96).reshape(12, 8)
                x = torch.linspace(-2.0, 2.0, 48).reshape(6, 8)
                b = torch.linspace(0.0, 1.0, 12)
                with torch.no_grad():
                    if torch.allclose(candidate(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5):
                        op = candidate
        except (AttributeError, RuntimeError):  # a torch built without oneDNN, or an op whose signature moved
            op = None
        _onednn_state["op"] = op
    return _onednn_state["op"]


def chunked_linear(
    x: Float[Tensor, "*batch d_in"], weight: Float[Tensor, "d_out d_in"], bias: Optional[Float[Tensor, " d_out"]] = None
) -> Float[Tensor, "*batch d_out"]:
    """``F.linear(x, weight, bias)`` with the kernels that are fastest for decode-sized inputs on CPU.

    On a decode step a linear layer multiplies a few rows by a large weight matrix. On some
    CPUs (the AMD EPYC machines this project is measured on) torch's BLAS (MKL) runs that as a
    single-threaded matrix-vector product at ~11 GB/s, and larger row counts also well below
    the cores' peak. So:

    - up to 4 rows: the weight is split into ``CHUNKS`` row blocks (``weight.view``, no
      copy) and handed to one batched matmul, which runs on every core and reads the
      weights 2–3× faster;
    - 5 rows and more: oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, checked
      once per process against ``F.linear``), 1.2–1.8× faster than ``F.linear`` on
      SmolLM2's 49152 × 576 output head at 8–128 rows. Without oneDNN, the row-block
      matmul serves up to ``CHUNK_MAX_ROWS`` rows and ``F.linear`` above.

    The result equals ``F.linear`` up to float rounding (a different summation order), not
    bit for bit. Inputs the kernels do not serve (not CPU float32, gradients on, a
    non-contiguous weight) go to ``F.linear`` unchanged.

    Raises:
        InvalidArgumentError: ``x``'s last dimension is not the weight's ``d_in``.

    Example:
        >>> import torch
        >>> w, x = torch.randn(8, 3), torch.randn(2, 3)
        >>> with torch.no_grad():
        ...     torch.allclose(chunked_linear(x, w), torch.nn.functional.linear(x, w), atol=1e-6)
        True
    """
    if not _chunkable(x, weight):
        if x.ndim >= 1 and weight.ndim == 2 and x.shape[-1] != weight.shape[1]:
            raise InvalidArgumentError(
                f"chunked_linear: input width {x.shape[-1]} (x shape {tuple(x.shape)}) does not match the weight's "
                f"d_in {weight.shape[1]} (weight shape {tuple(weight.shape)}); allowed: x[..., {weight.shape[1]}]. "
                "Pass the weight as [d_out, d_in], like nn.Linear.weight, or reshape x."
            )
        return F.linear(x, weight, bias)
    d_out, d_in = weight.shape
    rows = x.numel() // d_in
    if rows > _BMM_MAX_ROWS:
        onednn = _onednn_linear()
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
    if rows <= _BMM_MAX_ROWS:  # [C, d_out/C, rows]: fastest for one to a few rows
        out = torch.bmm(blocks, flat.t().expand(CHUNKS, d_in, rows)).permute(2, 0, 1)
    else:  # [C, rows, d_out/C]: the fallback for larger decode batches where oneDNN is missing
        out = torch.matmul(flat, blocks.transpose(1, 2)).permute(1, 0, 2)
    # Contiguous output (a copy of rows x d_out floats): the next layer and the elementwise ops get row-major input.
    out = out.reshape(*x.shape[:-1], d_out).contiguous()
    return out if bias is None else out + bias


class _ChunkedLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose forward is :func:`chunked_linear` (same parameters, same state dict).

    Inside :func:`packed_weights` it holds a oneDNN-packed copy of its weight (``_packed``) and
    multiplies 2+ rows by that instead.
    """

    def forward(self, x: Tensor) -> Tensor:
        packed = self.__dict__.get("_packed")
        if packed is not None and x.numel() >= 2 * x.shape[-1] and _chunkable(x, self.weight):
            if isinstance(packed, tuple):  # (group, index): one product for the whole group
                return packed[0].output(x, packed[1])
            return _onednn_state["op"](x, packed, self.bias, "none", [], "")
        return chunked_linear(x, self.weight, self.bias)


#: Sibling projections that read the same input: one packed product serves the group.
_FUSE_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _FusedGroup:
    """Packed ``[W_1; W_2; ...]`` of sibling linear layers fed the same input (attention's q/k/v, the MLP's gate/up).

    The first member called with an input computes every member's output in one oneDNN product and keeps
    the others' slices; a sibling called with the same tensor (same object, unchanged since) takes its
    slice. Any other input is computed afresh, so the result never depends on the call order.
    """

    def __init__(self, members: list, rows: int) -> None:
        weights = [m.weight for m in members]
        self.sizes = [w.shape[0] for w in weights]
        self.packed = _reorder_op()(torch.cat(weights), rows)
        biases = [m.bias for m in members]
        self.bias = None if biases[0] is None else torch.cat(biases)
        self._x: Optional[Tensor] = None
        self._version = -1
        self._outs: list = []

    def output(self, x: Tensor, index: int) -> Tensor:
        if self._x is not x or self._version != x._version or self._outs[index] is None:
            full = _onednn_state["op"](x, self.packed, self.bias, "none", [], "")
            self._outs = list(full.split(self.sizes, dim=-1))
            self._x, self._version = x, x._version
        out, self._outs[index] = self._outs[index], None
        if all(o is None for o in self._outs):
            self._x = None  # every member served: hold no activations between calls
        return out


#: Packing pays from this many rows per decode step, new tokens and rows × new tokens (see :func:`packed_weights`).
PACK_MIN_ROWS = 4
PACK_MIN_NEW_TOKENS = 32
PACK_MIN_WORK = 256
_PACK_ENV = "STEERING_PACK"
_PACK_SETTINGS = ("auto", "off")


def _env_setting(name: str, allowed: tuple, what: str, auto_means: str, instead: str) -> str:
    """The environment variable ``name`` (default ``auto``), checked against ``allowed``."""
    value = os.environ.get(name, "auto").strip().lower() or "auto"
    if value not in allowed:
        raise InvalidArgumentError(
            f"{name}={value!r} is not a {what} setting; allowed: {', '.join(allowed)}. "
            f"Unset it (auto: {auto_means}) or set {instead}."
        )
    return value


def _pack_setting() -> str:
    return _env_setting(_PACK_ENV, _PACK_SETTINGS, "weight-packing", "pack for large batched generations",
                        f"{_PACK_ENV}=off to never pack")


def _reorder_op() -> Any:
    """oneDNN's weight packing (``torch.ops.mkldnn._reorder_linear_weight``) if it exists and a packed weight
    gives ``F.linear``'s values on a probe; else ``None``. Checked once per process."""
    if "reorder" not in _onednn_state:
        op, reorder = _onednn_linear(), None
        if op is not None:
            try:
                candidate = torch.ops.mkldnn._reorder_linear_weight
                w = torch.linspace(-1.0, 1.0, 96).reshape(12, 8)
                x = torch.linspace(-2.0, 2.0, 48).reshape(6, 8)
                with torch.no_grad():
                    if torch.allclose(op(x, candidate(w, 6), None, "none", [], ""), F.linear(x, w), atol=1e-5):
                        reorder = candidate
            except (AttributeError, RuntimeError):
                reorder = None
        _onednn_state["reorder"] = reorder
    return _onednn_state["reorder"]


def _count(name: str, value: Any, minimum: int, caller: str) -> int:
    """``value`` if it is an int ≥ ``minimum`` (not a bool), else an InvalidArgumentError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(
            f"{caller}: {name}={value!r}; allowed: an int >= {minimum}. Pass the count as a plain int."
        )
    return value


def _available_bytes() -> Optional[int]:
    """Memory the system can still hand out (Linux ``MemAvailable``), or ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def packed_weights(model: Any, rows: int, new_tokens: int) -> Iterator[bool]:
    """For the ``with`` block, give the fast path's linear layers oneDNN-packed copies of their weights.

    oneDNN's linear on a weight reordered into its blocked layout
    (``torch.ops.mkldnn._reorder_linear_weight``) skips the per-call repacking of a plain weight:
    measured on 2 EPYC cores, SmolLM2's 49152 × 576 head takes 9.3 vs 14.0 ms at 32 rows and
    2.6 vs 6.8 ms at 5 rows; its MLP matrices 1.2–1.6× faster at 4–32 rows. Packing the whole
    model costs one pass over the weights (0.13 s for SmolLM2) and, while the block runs, a
    second copy of them in memory (SmolLM2 ~540 MB, Gemma-3-270M ~1.1 GB). So it is done only
    when the call is large enough to repay it: ``rows >= PACK_MIN_ROWS`` (4),
    ``new_tokens >= PACK_MIN_NEW_TOKENS`` (32) and ``rows * new_tokens >= PACK_MIN_WORK`` (256)
    — measured: 4 rows × 32 tokens gain nothing once the packing is paid for, and Gemma-3-270M at
    64 rows × 16 tokens lost 4% (its 1.1 GB copy costs more than 16 steps save) —, the chunked
    kernel is in use (:func:`linear_kernel`)
    and this torch has oneDNN, and the system has at least twice the copy's size free (Linux
    ``MemAvailable``; elsewhere not checked). Sibling projections fed the same input (attention's q/k/v, the
    MLP's gate/up) are packed as one matrix and served by one product (SmolLM2 at 32 rows: q/k/v
    226 vs 305 µs, gate/up 628 vs 669 µs). The copies are dropped when the block exits, also on an
    exception or KeyboardInterrupt, so weights edited between calls are always the ones used.
    ``STEERING_PACK=off`` turns packing off (``auto``, the default, packs as above).

    Args:
        model: a bridge whose plain twin (:func:`plain_model`) serves generation.
        rows: rows per decode step (the batch).
        new_tokens: new tokens per row.

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
    rows = _count("rows", rows, 1, "packed_weights")
    new_tokens = _count("new_tokens", new_tokens, 0, "packed_weights")
    setting = _pack_setting()
    twin = plain_model(model)
    modules: list = []
    if (
        setting == "auto"
        and twin is not None
        and rows >= PACK_MIN_ROWS
        and new_tokens >= PACK_MIN_NEW_TOKENS
        and rows * new_tokens >= PACK_MIN_WORK
        and _reorder_op() is not None
    ):
        modules = [
            m for m in twin.modules()
            if isinstance(m, _ChunkedLinear) and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
            and m.weight.is_contiguous()
        ]
        available = _available_bytes()
        needed = sum(m.weight.numel() * m.weight.element_size() for m in modules)
        if available is not None and 2 * needed > available:  # the copy must leave as much again free
            modules = []
    try:
        with torch.no_grad():
            grouped = set()
            for parent in (twin.modules() if modules else ()):
                for names in _FUSE_GROUPS:
                    members = [parent._modules.get(n) for n in names]
                    if all(m in modules for m in members) and len({(m.in_features, m.bias is None) for m in members}) == 1:
                        group = _FusedGroup(members, rows)
                        for index, member in enumerate(members):
                            member._packed = (group, index)
                            grouped.add(member)
            for module in modules:
                if module not in grouped:
                    module._packed = _reorder_op()(module.weight, rows)
        yield bool(modules)
    finally:
        for module in modules:
            module.__dict__.pop("_packed", None)


def _rows_taken(value: Any, rows: int, index: Tensor, memo: dict) -> Any:
    """``value`` with every tensor of 2+ dimensions whose first dimension is ``rows`` cut to the rows ``index``
    names (recursively; each tensor cut once per ``memo``)."""
    if isinstance(value, Tensor):
        if value.ndim < 2 or value.shape[0] != rows:
            return value
        key = id(value)
        if key not in memo:
            memo[key] = (value, value.index_select(0, index.to(value.device)))
        return memo[key][1]
    if isinstance(value, tuple):
        return tuple(_rows_taken(v, rows, index, memo) for v in value)
    if isinstance(value, list):
        return [_rows_taken(v, rows, index, memo) for v in value]
    if isinstance(value, dict):
        return {k: _rows_taken(v, rows, index, memo) for k, v in value.items()}
    return value


@contextlib.contextmanager
def shared_rows(model: Any, boundary: int, block: int, times: int) -> Iterator[bool]:
    """For the ``with`` block, run the layers below ``boundary`` once per group of rows that agree so far.

    Per-row coefficients lay out C coefficients × N prompts as C identical blocks of N rows
    (coefficient-major). Below the lowest steered layer a row's computation depends only on its
    tokens, so rows holding the same prompt *and the same generated tokens so far* compute the same
    hidden states and the same cached keys and values there. ActAdd steers the prompt only, and a
    small coefficient often leaves the first tokens (or all of them) unchanged: in the benchmark's
    32-row call (SmolLM2, 8 coefficients × 4 prompts) the first step after the prompt has 4 distinct
    rows and the last 16, 12 on average.

    So rows are kept in groups — at the prompt pass, row ``r`` is in group ``r mod block`` — and a group
    splits when its rows pick different tokens. Layers ``0 … boundary−1`` run on one row per group, and
    their KV-cache entries are stored once per group (rearranged when groups split); entering layer
    ``boundary`` the hidden states are copied out to every row, and the rest of the model (steering
    included) runs on all of them. Applies to generations whose cache is a ``DynamicCache`` (Hugging
    Face's default) and whose steps feed one new token per row; a step that does not (a call it does
    not recognise) first copies the groups' cache entries back out to every row, and sharing stops
    there. The hooks are removed when the block exits, also on an exception or KeyboardInterrupt.

    Args:
        model: a bridge whose plain twin (:func:`plain_model`) serves generation.
        boundary: the lowest steered decoder layer (its input is where rows start to differ).
        block: distinct rows (N prompts × samples).
        times: how many identical blocks the batch holds (C).

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
    from transformers.cache_utils import DynamicCache, DynamicLayer

    boundary = _count("boundary", boundary, 0, "shared_rows")
    block = _count("block", block, 1, "shared_rows")
    times = _count("times", times, 1, "shared_rows")
    twin = plain_model(model)
    layers = decoder_layers(twin) if twin is not None else None
    if layers is None or not 0 < boundary < len(layers) or times < 2:
        yield False
        return
    rows = block * times
    state: dict = {"calls": 0, "on": False, "cache": None, "group": None, "reps": None, "memo": {}}

    def cache_layers() -> list:
        cache = state["cache"]
        found = [cache.layers[i] for i in range(min(boundary, len(cache.layers)))]
        for index, layer in enumerate(found):
            if not isinstance(layer, DynamicLayer) or not layer.is_initialized:
                raise RuntimeError(f"shared_rows: cache layer {index} ({type(layer).__name__}) cannot be regrouped")
        return found

    def regroup(index: Tensor) -> None:  # cache row g (below the boundary) := cache row index[g]
        for layer in cache_layers():
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)

    def start(module: Any, args: tuple, kwargs: dict) -> None:
        state["calls"] += 1
        state["memo"] = {}
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("past_key_values")
        if state["calls"] == 1:  # the prompt pass: one group per distinct prompt row
            if (isinstance(ids, Tensor) and ids.ndim == 2 and ids.shape[0] == rows
                    and type(cache) is DynamicCache and cache.get_seq_length() == 0):
                device = ids.device
                state.update(on=True, cache=cache, group=torch.arange(rows, device=device) % block,
                             reps=torch.arange(block, device=device))
            return
        if not state["on"]:
            return
        group = state["group"]
        if not (isinstance(ids, Tensor) and ids.shape == (rows, 1) and cache is state["cache"]):
            regroup(group)  # not a step it knows: every row gets its own cache entries back, and sharing stops
            state["on"] = False
            return
        # split groups by the token each row just picked (sorted keys: new groups stay in parent order)
        tokens = ids[:, 0].to(torch.long)
        keys = group * (int(tokens.max()) + 1) + tokens
        _, new_group = torch.unique(keys, sorted=True, return_inverse=True)
        count = int(new_group.max()) + 1
        order = torch.arange(rows, device=ids.device)
        reps = torch.full((count,), rows, dtype=torch.long, device=ids.device).scatter_reduce_(
            0, new_group, order, reduce="amin")
        if count != state["reps"].numel():
            regroup(group[reps])
        state["group"], state["reps"] = new_group, reps

    def below(module: Any, args: tuple, kwargs: dict, first: bool) -> Any:
        if not state["on"]:
            return None
        reps, memo = state["reps"], state["memo"]
        # the hidden states: all rows entering layer 0, one per group from then on (the previous layer's output)
        hidden = args[0] if args else kwargs.get("hidden_states")
        if first and isinstance(hidden, Tensor):
            hidden = hidden.index_select(0, reps)
        args = (hidden,) + _rows_taken(args[1:], rows, reps, memo) if args else ()
        kwargs = _rows_taken({k: v for k, v in kwargs.items() if k != "hidden_states"}, rows, reps, memo) | (
            {} if args else {"hidden_states": hidden})
        return args, kwargs

    def at_boundary(module: Any, args: tuple, kwargs: dict) -> Any:
        if not state["on"]:
            return None
        group = state["group"]
        if args:
            return (args[0].index_select(0, group),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"].index_select(0, group)}

    handles = []
    try:
        handles.append(twin.register_forward_pre_hook(start, with_kwargs=True))
        for index in range(boundary):
            hook = functools.partial(below, first=index == 0)
            handles.append(layers[index].register_forward_pre_hook(hook, with_kwargs=True))
        # prepended: the rows are whole again before any steering hook on this layer sees them
        handles.append(layers[boundary].register_forward_pre_hook(at_boundary, with_kwargs=True, prepend=True))
        yield True
    finally:
        for handle in handles:
            handle.remove()


def _kernel_setting() -> str:
    return _env_setting(_KERNEL_ENV, _KERNELS, "linear-kernel", "measured per model",
                        f"{_KERNEL_ENV}=torch to keep torch's own matmuls")


def _chunked_pays(weight: Tensor, reps: int = 4) -> bool:
    """Time ``F.linear`` and :func:`chunked_linear` on one row against ``weight``; True if chunked wins by the margin."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.shape[0] % CHUNKS:
        return False
    if weight.numel() < _MIN_NUMEL:  # fits in cache: nothing to gain, and the timing would be noise
        return False
    x = torch.full((1, weight.shape[1]), 0.5, dtype=weight.dtype)  # not randn: leave the global RNG alone
    best = {"torch": float("inf"), "chunked": float("inf")}
    with torch.no_grad():
        chunked_linear(x, weight), F.linear(x, weight)  # warm-up
        for _ in range(reps):
            for name, fn in (("torch", F.linear), ("chunked", chunked_linear)):
                start = time.perf_counter()
                fn(x, weight)
                best[name] = min(best[name], time.perf_counter() - start)
    return best["chunked"] * _MARGIN < best["torch"]


def _install_linear_kernel(twin: torch.nn.Module) -> None:
    """Give the twin's ``nn.Linear`` layers the chunked forward when the setting (or a measurement) says so."""
    setting = _kernel_setting()
    linears = [m for m in twin.modules() if type(m) is torch.nn.Linear]
    use = False
    if linears and setting == "chunked":
        use = True
    elif linears and setting == "auto":
        largest = max(linears, key=lambda m: m.weight.numel())
        use = _chunked_pays(largest.weight)
    if use:
        for module in linears:
            module.__class__ = _ChunkedLinear
    object.__setattr__(twin, "_steering_linear_kernel", "chunked" if use else "torch")


def linear_kernel(model: Any) -> str:
    """Which matmul the fast generation path uses for small batches: ``"chunked"`` or ``"torch"``.

    Chosen once per model when its plain twin is built: ``"chunked"`` (:func:`chunked_linear`:
    row blocks for up to 4 rows, oneDNN's linear above) if it is at least 1.25× faster than
    ``F.linear`` on one row against the model's largest weight matrix (CPU, float32), else
    ``"torch"``. ``STEERING_LINEAR=chunked`` or ``=torch`` forces the
    choice (set it before the first generation); the two give the same tokens up to float
    rounding.

    Example:
        >>> import os
        >>> from steering.testing import tiny_model
        >>> os.environ["STEERING_LINEAR"] = "torch"
        >>> linear_kernel(tiny_model())
        'torch'
        >>> del os.environ["STEERING_LINEAR"]
    """
    twin = plain_model(model)
    return getattr(twin, "_steering_linear_kernel", "torch") if twin is not None else "torch"


def _find_buffer(hf: Any, stripped: str) -> Optional[torch.Tensor]:
    for name, buf in hf.named_buffers(remove_duplicate=False):
        if _strip(name) == stripped:
            return buf
    return None


def decoder_layers(plain: torch.nn.Module) -> Optional[torch.nn.ModuleList]:
    """The model's decoder-layer list (``model.layers`` for Llama/Gemma, ``transformer.h`` for GPT-2).

    Example:
        >>> from steering.testing import tiny_model
        >>> len(decoder_layers(plain_model(tiny_model())))
        2
    """
    n = getattr(plain.config, "num_hidden_layers", None) or getattr(plain.config, "n_layer", None)
    for candidate in ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers"):
        module: Any = plain
        for part in candidate.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList) and (n is None or len(module) == n):
            return module
    return None


def shares_weights(model: Any, plain: torch.nn.Module) -> bool:
    """True when every parameter of ``plain`` is the very tensor storage of one of the bridge's.

    Example:
        >>> from steering.testing import tiny_model
        >>> m = tiny_model()
        >>> shares_weights(m, plain_model(m))
        True
    """
    ours = {p.data_ptr() for p in model.original_model.parameters()}
    return all(p.data_ptr() in ours for p in plain.parameters())


# ----------------------------------------------------------------------------- resuming a forward pass
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
    final norm and unembedding, at the last position. It works on the plain twin
    (:func:`plain_model`): TransformerLens 4's ``start_at_layer`` still executes the
    blocks below the start, so it saves nothing. :meth:`check` compares a resumed
    unsteered pass with the full one; callers fall back to full passes if it fails.
    """

    def __init__(self, plain: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
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

    def last_logits(self, layer: int, times: int = 1, add: Optional[torch.Tensor] = None) -> torch.Tensor:
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
