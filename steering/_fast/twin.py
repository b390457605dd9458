"""The twin: the unbridged Hugging Face model, sharing the bridge's weights.

TransformerLens 4's bridge wraps every HF module so its hook points fire, which slows
generation through it. ActAdd only needs the residual stream at block boundaries, which the
plain HF model exposes as the input (``hook_resid_pre``) and output (``hook_resid_post``) of
each decoder layer. So :func:`twin_for` builds that model once per bridge — a second module
tree whose parameters and buffers *are* the bridge's tensors (no copy, no extra weight
memory) — and steering hooks its decoder layers directly when every vector sits at a block
boundary.

Nothing is stored on the user's bridge: a registry keyed weakly by the bridge holds its twin
(or the note that none can be built), and forgets it when the bridge is garbage-collected.

Weights changed after the twin was built: an in-place change (``weight.data.mul_(0)``,
``load_state_dict``, ``model.to(dtype)``) is seen at once, the tensors being shared. A parameter or
buffer *replaced* by another object (``layer.weight = nn.Parameter(...)``,
``load_state_dict(..., assign=True)``, a swapped sub-module, a buffer moved by ``.to``) is noticed
at the next :func:`twin_for` (a flat pass over where the HF model's tensors sat, once per call), which
then builds the twin again on the new tensors.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> twin = twin_for(model)
    >>> twin is twin_for(model) is existing_twin(model)  # built once per bridge
    True
    >>> shares_weights(model, twin)
    True
"""

import copy
import weakref
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..settings import settings
from . import kernels

__all__ = ["twin_for", "existing_twin", "linear_kernel", "decoder_layers", "shares_weights"]


@dataclass
class _Sources:
    """Where the HF model's tensors sat when the twin was built: every module edge (weakly) and every
    parameter / buffer slot with its tensor, so a replaced tensor or a swapped sub-module is found with a
    flat pass of dictionary lookups (no recursion over the module tree, ~0.3 ms on SmolLM2's 2,000 modules)."""

    edges: list  # (weak parent, child name, weak child)
    slots: list  # (weak owner, "_parameters" | "_buffers", leaf name, tensor)

    @classmethod
    def of(cls, hf: torch.nn.Module) -> "_Sources":
        edges, slots = [], []
        for parent in hf.modules():
            ref = weakref.ref(parent)
            edges += [(ref, name, weakref.ref(child)) for name, child in parent._modules.items() if child is not None]
            slots += [(ref, store, leaf, t) for store in ("_parameters", "_buffers")
                      for leaf, t in getattr(parent, store).items()]
        return cls(edges, slots)

    def unchanged(self) -> bool:
        """True while every edge and slot still holds what it held at the build."""
        for parent, name, child in self.edges:
            module = parent()
            if module is None or module._modules.get(name) is not child():
                return False
        for owner, store, leaf, tensor in self.slots:
            module = owner()
            if module is None or getattr(module, store).get(leaf) is not tensor:
                return False
        return True


@dataclass
class _Entry:
    """What the registry holds for one bridge: its twin (``None``: cannot be built) and the twin's kernel choice."""

    twin: Optional[torch.nn.Module]
    choice: kernels.KernelChoice
    linears: list
    sources: Optional[_Sources]  # where the HF model's tensors sat at the build (None: no twin to keep current)


_REGISTRY: "weakref.WeakKeyDictionary[Any, _Entry]" = weakref.WeakKeyDictionary()


def twin_for(model: Any) -> Optional[torch.nn.Module]:
    """The unbridged HF model sharing ``model``'s weights, built on first use (``None`` if impossible).

    Built on the meta device, then every parameter and buffer is pointed at the bridge's own
    tensor. Built again when one of the HF model's parameters or buffers was replaced by another
    tensor since (in-place changes need nothing: the tensors are shared). Its config is a copy using the library's default attention kernel (``sdpa`` where
    available), like a plain ``from_pretrained`` model. Every call also re-reads the
    ``STEERING_LINEAR`` setting: if it changed since the twin's kernel was chosen, the kernel is
    chosen again (``auto``: measured again), so a changed setting takes effect at the next call.

    Args:
        model: A ``TransformerBridge`` (anything with an ``original_model``).

    Returns:
        The twin, or ``None`` when ``model`` has no HF model or its architecture cannot be mirrored.

    Raises:
        InvalidArgumentError: ``STEERING_LINEAR`` holds a value other than auto, chunked, torch.

    Example:
        >>> from steering.testing import tiny_model
        >>> type(twin_for(tiny_model())).__name__
        'LlamaForCausalLM'
    """
    setting = settings().linear  # a bad value is the user's to fix, not a reason to fall back silently
    hf = getattr(model, "original_model", None)
    if hf is None:
        return None
    entry = _REGISTRY.get(model)
    if entry is None or (entry.sources is not None and not entry.sources.unchanged()):  # first use, or a replaced tensor
        twin = None
        try:
            twin = _build(hf)
        except Exception:  # an architecture we cannot mirror: the bridge path still works
            twin = None
        choice = entry.choice if entry is not None else kernels.KernelChoice()
        entry = _Entry(twin, choice, kernels.install(twin, choice) if twin is not None else [],
                       _Sources.of(hf) if twin is not None else None)
        _REGISTRY[model] = entry
    if entry.twin is not None:
        entry.choice.follow(setting, [m.weight for m in entry.linears])
    return entry.twin


def existing_twin(model: Any) -> Optional[torch.nn.Module]:
    """``model``'s twin if :func:`twin_for` has already built it, else ``None`` (never builds one).

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> existing_twin(model) is None  # not built yet
        True
        >>> twin = twin_for(model)
        >>> existing_twin(model) is twin
        True
    """
    entry = _REGISTRY.get(model) if getattr(model, "original_model", None) is not None else None
    return entry.twin if entry is not None else None


def linear_kernel(model: Any) -> str:
    """Which matmul the twin uses for small batches now: ``"chunked"`` or ``"torch"``.

    ``"chunked"`` (:func:`~steering._fast.kernels.chunked_linear`: row blocks for up to 4 rows,
    oneDNN's linear above) is chosen under ``STEERING_LINEAR=auto`` (the default) if it is at
    least 1.25× faster than ``F.linear`` on one row against the model's largest weight matrix
    (CPU, float32), else ``"torch"``. ``STEERING_LINEAR=chunked`` or ``=torch`` forces the choice;
    a changed setting takes effect at the next call that uses the twin. Both give the same
    tokens up to float rounding. ``"torch"`` when the model has no twin.

    Example:
        >>> import os
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> os.environ["STEERING_LINEAR"] = "chunked"
        >>> linear_kernel(model)
        'chunked'
        >>> os.environ["STEERING_LINEAR"] = "torch"
        >>> linear_kernel(model)
        'torch'
        >>> del os.environ["STEERING_LINEAR"]
    """
    twin = twin_for(model)
    return _REGISTRY[model].choice.kernel if twin is not None else "torch"


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


def _find_buffer(hf: Any, stripped: str) -> Optional[torch.Tensor]:
    for name, buf in hf.named_buffers(remove_duplicate=False):
        if _strip(name) == stripped:
            return buf
    return None


def _meta_leftovers(twin: torch.nn.Module) -> list[str]:
    return [n for n, t in list(twin.named_parameters()) + list(twin.named_buffers()) if t.is_meta]


def _build(hf: Any) -> Optional[torch.nn.Module]:
    """A twin of the HF model ``hf`` whose tensors are ``hf``'s, or ``None`` where some tensor has no counterpart."""
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
    if missing or _meta_leftovers(twin):
        # tied weights (lm_head ↔ embeddings) may appear under one name only: tie, then re-check
        if hasattr(twin, "tie_weights"):
            twin.tie_weights()
        for name in _meta_leftovers(twin):  # non-persistent buffers the bridge keeps elsewhere (e.g. rotary inv_freq)
            src = _find_buffer(hf, name)
            if src is None or not _assign(twin, name, src, "buffer"):
                return None
    twin.eval()
    twin.requires_grad_(False)
    if getattr(hf, "generation_config", None) is not None:
        twin.generation_config = hf.generation_config
    if decoder_layers(twin) is None:
        return None
    return twin


def decoder_layers(plain: torch.nn.Module) -> Optional[torch.nn.ModuleList]:
    """The model's decoder-layer list (``model.layers`` for Llama/Gemma, ``transformer.h`` for GPT-2).

    Args:
        plain: A plain HF causal LM (a twin).

    Returns:
        The ``ModuleList`` of decoder layers, or ``None`` where none of the known places holds one.

    Example:
        >>> from steering.testing import tiny_model
        >>> len(decoder_layers(twin_for(tiny_model())))
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

    Args:
        model: The bridge.
        plain: A module said to share its weights (the twin).

    Example:
        >>> from steering.testing import tiny_model
        >>> m = tiny_model()
        >>> shares_weights(m, twin_for(m))
        True
    """
    ours = {p.data_ptr() for p in model.original_model.parameters()}
    return all(p.data_ptr() in ours for p in plain.parameters())
