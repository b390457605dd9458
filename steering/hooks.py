"""Hook names: built and validated in one place.

TransformerLens 4's ``TransformerBridge`` exposes the classic hook names
(``blocks.{layer}.hook_resid_pre`` …). Everything in steering-lens that names a
hook point goes through :func:`hook_name`, which checks the layer range and the
hook against ``model.hook_dict`` and suggests the nearest names on a typo.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> st.hook_name(model, 1, "resid_pre")
    'blocks.1.hook_resid_pre'
"""

import difflib
from typing import Any

from .errors import LayerOutOfRangeError, UnknownHookError

__all__ = ["hook_name", "STEERABLE_HOOKS", "n_layers"]

#: Short names of per-block hook points a steering vector is usually read from / added to.
STEERABLE_HOOKS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def n_layers(model: Any) -> int:
    """Number of transformer blocks of ``model``."""
    return int(model.cfg.n_layers)


def _check_layer(model: Any, layer: Any) -> int:
    count = n_layers(model)
    if isinstance(layer, bool) or not isinstance(layer, int):
        try:
            import torch

            if isinstance(layer, torch.Tensor) and layer.numel() == 1:
                layer = int(layer.item())
        except ImportError:  # pragma: no cover
            pass
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise LayerOutOfRangeError(
            f"layer={layer!r} is not an integer; allowed: an int in 0..{count - 1} "
            f"(negative values count from the end). Fix: pass e.g. layer={count // 3}."
        )
    if not -count <= layer < count:
        raise LayerOutOfRangeError(
            f"layer={layer} is out of range for this model ({count} layers); allowed: 0..{count - 1} "
            f"(or -{count}..-1 from the end). Fix: pick a layer in that range, e.g. layer={count // 3}."
        )
    return layer % count


def hook_name(model: Any, layer: int, hook: str = "resid_pre") -> str:
    """Build and validate the full hook-point name for ``hook`` at ``layer``.

    Args:
        model: A ``TransformerBridge`` (anything with ``cfg.n_layers`` and ``hook_dict``).
        layer: Block index, ``0 .. n_layers - 1``; negative values count from the end.
        hook: Short name (``"resid_pre"``, ``"hook_resid_pre"``, ``"attn_out"`` …) or a
            full name such as ``"blocks.3.hook_resid_post"`` (then ``layer`` must agree).

    Returns:
        The full name, e.g. ``"blocks.6.hook_resid_pre"``.

    Raises:
        LayerOutOfRangeError: ``layer`` is outside the model's range.
        UnknownHookError: the name is not a hook point of the model; the message lists
            the nearest names.

    Example:
        >>> from steering.testing import tiny_model
        >>> hook_name(tiny_model(), -1, "mlp_out")
        'blocks.1.hook_mlp_out'
    """
    layer = _check_layer(model, layer)
    if not isinstance(hook, str) or not hook:
        raise UnknownHookError(
            f"hook={hook!r} is not a hook name; allowed: one of {', '.join(STEERABLE_HOOKS)} "
            "or a full name from model.hook_dict. Fix: pass e.g. hook='resid_pre'."
        )
    if hook.startswith("blocks."):
        full = hook
        parts = hook.split(".")
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) != layer:
            raise UnknownHookError(
                f"hook={hook!r} names layer {parts[1]} but layer={layer} was given; "
                f"allowed: a full name for layer {layer}, or a short name. Fix: pass hook="
                f"'{'.'.join(parts[2:])}' or layer={parts[1]}."
            )
    else:
        if "." in hook:  # a sub-module hook such as "attn.hook_pattern"
            full = f"blocks.{layer}.{hook}"
        else:
            short = hook[len("hook_"):] if hook.startswith("hook_") else hook
            full = f"blocks.{layer}.hook_{short}"
    hook_dict = model.hook_dict
    if full in hook_dict:
        return full
    candidates = [name for name in hook_dict if name.startswith(f"blocks.{layer}.")]
    shorts = [c.split(".", 2)[2] for c in candidates]
    query = full.split(".", 2)[2] if full.count(".") >= 2 else full
    near = difflib.get_close_matches(query, shorts, n=3, cutoff=0.5)
    suggestion = ", ".join(f"'{s.removeprefix('hook_')}'" for s in near) or ", ".join(
        f"'{s}'" for s in STEERABLE_HOOKS
    )
    raise UnknownHookError(
        f"hook={hook!r} is not a hook point of this model ('{full}' not in model.hook_dict); "
        f"allowed: {', '.join(STEERABLE_HOOKS)} or any name in model.hook_dict. "
        f"Did you mean {suggestion}?"
    )
