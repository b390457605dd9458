"""Hook names: every hook-point name is built, validated and parsed here.

TransformerLens 4's ``TransformerBridge`` exposes the classic hook names
(``blocks.{layer}.hook_resid_pre`` …). Everything in steering-lens that names a
hook point goes through :func:`hook_name` (one layer) or :func:`hook_names` (a layer
spec), which check the layer range and the hook against ``model.hook_dict`` and suggest
the nearest names on a typo; everything that reads one goes through
:func:`parse_hook_name`.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> st.hook_name(model, 1, "resid_pre")
    'blocks.1.hook_resid_pre'
"""

import difflib
from typing import Any, Optional, Sequence, Union

from .errors import LayerOutOfRangeError, UnknownHookError
from .validate import as_int, as_real, describe, shown

__all__ = [
    "hook_name",
    "hook_names",
    "parse_hook_name",
    "layer_of",
    "residual_index",
    "block_output_hook",
    "STEERABLE_HOOKS",
    "BLOCK_BOUNDARY_HOOKS",
    "LayerSpec",
    "n_layers",
]

#: Short names of per-block hook points a steering vector is usually read from / added to.
STEERABLE_HOOKS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
#: Hook kinds at a decoder layer's input (``resid_pre``) and output (``resid_post``): the points a
#: plain Hugging Face model exposes too (the twin backend serves these).
BLOCK_BOUNDARY_HOOKS = ("resid_pre", "resid_post")
#: One layer (an int, negative from the end), several (a list/tuple/range of ints) or ``"all"``.
LayerSpec = Union[int, Sequence[int], str]


def parse_hook_name(name: str) -> tuple[Optional[int], str]:
    """``(layer, short kind)`` of a full hook name; ``layer`` is ``None`` for non-block hooks.

    Example:
        >>> parse_hook_name("blocks.3.hook_resid_pre"), parse_hook_name("blocks.0.attn.hook_pattern")
        ((3, 'resid_pre'), (0, 'attn.hook_pattern'))
        >>> parse_hook_name("hook_embed")
        (None, 'embed')
    """
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1]), ".".join(parts[2:]).removeprefix("hook_")
    return None, name.removeprefix("hook_")


def layer_of(name: str) -> int:
    """Block index of a full block hook name.

    Example:
        >>> layer_of("blocks.3.hook_resid_pre")
        3
    """
    layer, _ = parse_hook_name(name)
    if layer is None:
        raise UnknownHookError(f"hook {name!r} is not a block hook; allowed: 'blocks.<layer>.<hook>' names.")
    return layer


def block_output_hook(layer: int) -> str:
    """The full name of the hook reading block ``layer``'s output (``blocks.{layer}.hook_resid_post``), for
    code that names a hook point without a model at hand (files from other tools); :func:`hook_name`
    validates against a model.

    Example:
        >>> block_output_hook(6)
        'blocks.6.hook_resid_post'
    """
    checked = as_int(layer)
    if checked is None or checked < 0:
        raise LayerOutOfRangeError(f"layer={shown(layer)}; allowed: a block index, an int >= 0. Fix: pass e.g. layer=6.")
    return f"blocks.{checked}.hook_resid_post"


def residual_index(name: str) -> Optional[int]:
    """Which block's *output* a residual hook reads: ``l`` for ``blocks.l.hook_resid_post``,
    ``l - 1`` for ``blocks.l.hook_resid_pre`` (the same point); ``None`` for other hooks.

    Example:
        >>> residual_index("blocks.6.hook_resid_pre"), residual_index("blocks.6.hook_resid_post")
        (5, 6)
        >>> residual_index("blocks.6.hook_mlp_out") is None
        True
    """
    layer, kind = parse_hook_name(name)
    if layer is None or kind not in BLOCK_BOUNDARY_HOOKS or name.count(".") != 2:
        return None
    return layer if kind == "resid_post" else layer - 1


def n_layers(model: Any) -> int:
    """Number of transformer blocks of ``model``."""
    return int(model.cfg.n_layers)


def _check_layer(model: Any, layer: Any) -> int:
    count = n_layers(model)
    checked = as_int(layer)  # ints, numpy ints, 0-d int tensors; never a bool, a float or a float tensor
    if checked is None:
        rounded = " (floats are not rounded to a layer)" if as_real(layer) is not None else ""
        raise LayerOutOfRangeError(
            f"layer={shown(layer)} is not an integer ({describe(layer)}); allowed: an int in 0..{count - 1} "
            f"(negative values count from the end){rounded}. Fix: pass e.g. layer={count // 3}."
        )
    if not -count <= checked < count:
        raise LayerOutOfRangeError(
            f"layer={checked} is out of range for this model ({count} layers); allowed: 0..{count - 1} "
            f"(or -{count}..-1 from the end). Fix: pick a layer in that range, e.g. layer={count // 3}."
        )
    return checked % count


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


def _layer_list(model: Any, layer: Any) -> list[Any]:
    count = n_layers(model)
    if isinstance(layer, str):
        if layer != "all":
            raise LayerOutOfRangeError(
                f"layer={layer!r} is not a layer spec; allowed: an int in 0..{count - 1} (negative from the end), "
                "a list of such ints, or 'all'. Fix: pass e.g. layer='all' or layer=[0, 1]."
            )
        return list(range(count))
    layers = list(layer)
    if not layers:
        raise LayerOutOfRangeError(
            f"layer={layer!r} is empty; allowed: an int, a non-empty list of ints in 0..{count - 1}, or 'all'. "
            f"Fix: pass e.g. layer=[0, {count - 1}]."
        )
    for each in layers:
        if as_int(each) is None:
            raise LayerOutOfRangeError(
                f"layer={shown(layer, 200)} holds {shown(each)}, {describe(each)}; allowed: ints in 0..{count - 1} "
                f"(negative from the end; floats are not rounded). Fix: pass e.g. layer=[0, {count - 1}]."
            )
    return [as_int(each) for each in layers]


def hook_names(model: Any, layer: LayerSpec, hook: str = "resid_pre") -> tuple[list[str], bool]:
    """Validate a layer spec; return its full hook names and whether one layer (an int) was given.

    Args:
        model: The bridge.
        layer: An int (negative from the end), a list/tuple/range of distinct ints, or ``"all"``.
        hook: Hook kind at each layer, as in :func:`hook_name`.

    Raises:
        LayerOutOfRangeError: a layer is out of range or repeated, the list is empty, or a
            string other than ``"all"``.
        UnknownHookError: ``hook`` is not a hook point.

    Example:
        >>> from steering.testing import tiny_model
        >>> hook_names(tiny_model(), "all", "resid_pre")
        (['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre'], False)
    """
    if not isinstance(layer, (str, list, tuple, range)):
        return [hook_name(model, layer, hook)], True  # validates int-ness and range
    layers = _layer_list(model, layer)
    names = [hook_name(model, each, hook) for each in layers]
    seen: dict[str, Any] = {}
    for each, name in zip(layers, names):
        if name in seen:
            raise LayerOutOfRangeError(
                f"layer={layer!r} names block {layer_of(name)} twice ({seen[name]!r} and {each!r}); allowed: "
                "distinct layers (a repeated layer would be steered twice). Fix: drop the repeat."
            )
        seen[name] = each
    return names, False
