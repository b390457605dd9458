"""Backends: which module a steered forward pass or generation runs on, and where its hooks go.

* ``"bridge"`` — TransformerLens 4's bridge: the model's Hugging Face module is called and the
  steering hooks sit on the bridge's hook points (``blocks.{l}.hook_resid_pre`` …). Serves
  every hook point.
* ``"twin"`` — the plain Hugging Face model sharing the bridge's weights (built once per model,
  :mod:`steering._fast`), with the hooks on its decoder layers' inputs (``resid_pre``) and
  outputs (``resid_post``). Runs at plain Hugging Face speed; serves those two hook kinds only.
* ``"auto"`` (default) — the environment's default (``STEERING_BACKEND`` / ``STEERING_FAST``,
  read by :func:`steering.settings.settings` at each call), else the twin whenever it can
  serve the call. Inside a :func:`steering.steer` block (in the same thread) it is the bridge,
  so the block's steering composes with the call's own.

Threads: the steering hooks act only in the thread that attached them, so another thread's
calls on the same model are never steered by them; and the library's own calls on one model
hold :func:`model_lock`, so they run one after the other rather than mixing their per-call state.

Both compute the same function; the tests compare their logits and greedy texts.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> resolve(model, [], "bridge").kind, resolve(model, [], "auto").kind
    ('bridge', 'twin')
"""

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from . import _fast
from .errors import InvalidArgumentError
from .hooks import BLOCK_BOUNDARY_HOOKS
from .settings import BACKENDS, Backend, settings
from .vectors import SteeringVector

__all__ = ["Target", "resolve", "check_backend", "hf_module", "model_lock", "enter_block", "exit_block", "in_block"]

_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_BLOCKS: "weakref.WeakKeyDictionary[Any, dict[int, int]]" = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """The lock every steering-lens call that runs ``model`` holds (re-entrant, one per model).

    The library's own calls (generation, the forward engine, sweeps) attach hooks and per-call
    state (packed weights, shared rows) to modules shared by every thread; holding this lock, two
    threads' calls on one model run one after the other instead of seeing each other's state.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model_lock(model) is model_lock(model)
        True
    """
    with _REGISTRY_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def enter_block(model: Any) -> None:
    """Record that the current thread entered a :func:`steering.steer` block on ``model``."""
    with _REGISTRY_LOCK:
        blocks = _BLOCKS.setdefault(model, {})
        blocks[threading.get_ident()] = blocks.get(threading.get_ident(), 0) + 1


def exit_block(model: Any) -> None:
    """Record that the current thread left a :func:`steering.steer` block on ``model``."""
    with _REGISTRY_LOCK:
        blocks = _BLOCKS.get(model, {})
        ident = threading.get_ident()
        blocks[ident] = blocks.get(ident, 1) - 1
        if blocks[ident] <= 0:
            del blocks[ident]


def in_block(model: Any) -> bool:
    """Whether the current thread is inside a :func:`steering.steer` block on ``model``.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> with st.steer(model, st.actadd(model, "a", "b", layer=1), 2.0):
        ...     in_block(model)
        True
        >>> in_block(model)
        False
    """
    with _REGISTRY_LOCK:
        return bool(_BLOCKS.get(model, {}).get(threading.get_ident()))


def hf_module(model: Any) -> torch.nn.Module:
    """The Hugging Face module inside a bridge (the bridge itself when it has none).

    Example:
        >>> from steering.testing import tiny_model
        >>> type(hf_module(tiny_model())).__name__
        'LlamaForCausalLM'
    """
    return getattr(model, "original_model", model)


@dataclass
class Target:
    """A resolved backend: the module to call and how to hook a vector's point on it.

    Attributes:
        kind: ``"bridge"`` or ``"twin"``.
        module: The Hugging Face module whose ``forward`` / ``generate`` runs the call.
        model: The bridge the vectors belong to.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> resolve(model, [], "twin").module is not hf_module(model)
        True
    """

    kind: str
    module: torch.nn.Module
    model: Any

    @property
    def device(self) -> torch.device:
        """Where the module's weights are."""
        return next(self.module.parameters()).device

    def add_hook(self, vector: SteeringVector, fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        """Attach ``fn`` (residual in, residual out) at the vector's point; return a remover."""
        if self.kind == "bridge":
            point = self.model.hook_dict[vector.hook_name]
            handle = point.add_hook(lambda resid, hook=None: fn(resid), dir="fwd")

            def remove() -> None:
                handle.hook.remove()
                if handle in point.fwd_hooks:
                    point.fwd_hooks.remove(handle)

            return remove
        return _hook_decoder_layer(_fast.decoder_layers(self.module)[vector.layer], vector.hook, fn).remove


def _hook_decoder_layer(layer: torch.nn.Module, kind: str, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` on a decoder layer's input (``resid_pre``) or output (``resid_post``)."""
    if kind == "resid_pre":

        def pre(module: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                return (fn(args[0]),) + tuple(args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        return layer.register_forward_pre_hook(pre, with_kwargs=True)

    def post(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]),) + tuple(output[1:])
        return fn(output)

    return layer.register_forward_hook(post, with_kwargs=True)


def check_backend(backend: Any) -> Backend:
    """Validate a ``backend=`` argument.

    Example:
        >>> check_backend("fast")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: backend='fast'; allowed: 'auto', 'bridge', 'twin'. Fix: pass backend='auto' (the twin where it can serve the call, else the bridge).
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"backend={backend!r}; allowed: {', '.join(map(repr, BACKENDS))}. Fix: pass backend='auto' (the twin "
            "where it can serve the call, else the bridge)."
        )
    return backend


def _twin_or_refusal(model: Any, vectors: Sequence[SteeringVector]) -> tuple[Optional[torch.nn.Module], str]:
    """The twin that can serve these vectors, or ``None`` and why it cannot."""
    for vec in vectors:
        if vec.hook not in BLOCK_BOUNDARY_HOOKS or vec.layer is None:
            return None, f"the vector at {vec.hook_name} is not at a decoder layer's input or output (resid_pre/resid_post)"
    if in_block(model):
        return None, ("the call is inside a steer() block, whose hooks sit on the bridge's hook points and would not "
                      "fire on the twin")
    twin = _fast.twin_for(model)
    if twin is None:
        return None, f"no plain Hugging Face twin can be built for {type(hf_module(model)).__name__}"
    return twin, ""


def resolve(model: Any, vectors: Sequence[SteeringVector], backend: Backend = "auto") -> Target:
    """The :class:`Target` that runs a call steered by ``vectors`` (an empty list: unsteered).

    Raises:
        InvalidArgumentError: an unknown ``backend``, or ``backend="twin"`` for a call the twin
            cannot serve (the message says why).

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> mid = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_mid")
        >>> resolve(model, [mid]).kind                      # only the bridge has resid_mid
        'bridge'
    """
    backend = check_backend(backend)
    if backend == "auto":
        backend = "bridge" if in_block(model) else settings().backend
    if backend == "bridge":
        return Target("bridge", hf_module(model), model)
    twin, refusal = _twin_or_refusal(model, vectors)
    if twin is not None:
        return Target("twin", twin, model)
    if backend == "twin":
        raise InvalidArgumentError(
            f"backend='twin' cannot serve this call: {refusal}; allowed: 'twin' for vectors at resid_pre/resid_post "
            "of a model with a plain Hugging Face twin. Fix: pass backend='auto' or backend='bridge'."
        )
    return Target("bridge", hf_module(model), model)
