"""Environment settings: the one place steering-lens reads environment variables.

Environment variables only supply *defaults*; every behaviour they touch also has an
argument (``backend=`` on generation, sweeps and metrics). :func:`settings` reads them
afresh on each call, so a variable changed while a program runs takes effect at the next
call that uses it — nothing caches a value read once.

========================= ================================== ==============================
variable                  values                             default of
========================= ================================== ==============================
``STEERING_CACHE``        a folder                           the model weight cache
``STEERING_BACKEND``      ``auto``, ``bridge``, ``twin``     ``backend="auto"`` arguments
``STEERING_FAST``         ``1``, ``0`` (= ``bridge``)        older spelling of the above
``STEERING_LINEAR``       ``auto``, ``chunked``, ``torch``   the twin's small-batch matmul
``STEERING_PACK``         ``auto``, ``off``                  weight packing for large calls
``HF_HUB_OFFLINE``        set / unset                        hub lookups of unknown names
``HF_ENDPOINT``           a URL                              the hub probed for those
========================= ================================== ==============================

Example:
    >>> s = settings()
    >>> s.linear in LINEAR_KERNELS and s.pack in PACK_MODES and s.backend in BACKENDS
    True
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Optional

from .errors import InvalidArgumentError

__all__ = ["Settings", "settings", "Backend", "BACKENDS", "LINEAR_KERNELS", "PACK_MODES"]

#: Where a steered forward pass or generation runs: ``"bridge"`` (TransformerLens hook points),
#: ``"twin"`` (the plain Hugging Face model sharing the bridge's weights, hooked on its decoder
#: layers; resid_pre / resid_post only) or ``"auto"`` (the twin whenever it can serve the call).
Backend = Literal["auto", "bridge", "twin"]
BACKENDS = ("auto", "bridge", "twin")
LINEAR_KERNELS = ("auto", "chunked", "torch")
PACK_MODES = ("auto", "off")


@dataclass(frozen=True)
class Settings:
    """The environment's defaults, as read by :func:`settings`.

    Attributes:
        cache: Folder of the model weight cache.
        backend: Default of every ``backend="auto"`` argument's resolution (``"auto"``, or a
            forced ``"bridge"`` / ``"twin"``).
        linear: The twin's small-batch matmul kernel (``"auto"`` = measured per model).
        pack: ``"auto"`` packs weights for large batched generations; ``"off"`` never does.
        hub_offline: ``HF_HUB_OFFLINE`` is set (use the local Hugging Face cache only).
        hub_endpoint: The model hub probed before a hub lookup.

    Example:
        >>> Settings(Path("/tmp/c"), "auto", "torch", "off", False, "https://huggingface.co").pack
        'off'
    """

    cache: Path
    backend: Backend
    linear: Literal["auto", "chunked", "torch"]
    pack: Literal["auto", "off"]
    hub_offline: bool
    hub_endpoint: str


def _choice(env: Mapping[str, str], name: str, allowed: tuple, what: str, unset: str) -> str:
    value = env.get(name, "auto").strip().lower() or "auto"
    if value not in allowed:
        raise InvalidArgumentError(
            f"{name}={value!r} is not a {what} setting; allowed: {', '.join(allowed)}. "
            f"Fix: unset it ({unset}) or set it to one of those."
        )
    return value


def _backend(env: Mapping[str, str]) -> str:
    if "STEERING_BACKEND" in env:
        return _choice(env, "STEERING_BACKEND", BACKENDS, "backend", "auto: the twin where it can serve a call")
    fast = env.get("STEERING_FAST", "1").strip()
    if fast not in ("", "0", "1"):
        raise InvalidArgumentError(
            f"STEERING_FAST={fast!r}; allowed: 1 (default backend 'auto') or 0 (default backend 'bridge'). "
            "Fix: unset it, or use STEERING_BACKEND=auto|bridge|twin."
        )
    return "bridge" if fast == "0" else "auto"


def settings(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Read the environment variables steering-lens uses (the only function that does).

    Args:
        environ: A mapping to read instead of ``os.environ`` (tests).

    Raises:
        InvalidArgumentError: a variable holds a value outside its allowed set (the message
            names the variable, the value and the allowed ones).

    Example:
        >>> settings({"STEERING_FAST": "0", "STEERING_CACHE": "/tmp/c"}).backend
        'bridge'
        >>> settings({"STEERING_LINEAR": "fastest"})
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: STEERING_LINEAR='fastest' is not a linear-kernel setting; allowed: auto, chunked, torch. Fix: unset it (auto: measured per model) or set it to one of those.
    """
    env = os.environ if environ is None else environ
    cache = env.get("STEERING_CACHE")
    return Settings(
        cache=Path(cache).expanduser() if cache else Path.home() / ".cache" / "steering",
        backend=_backend(env),  # type: ignore[arg-type]
        linear=_choice(env, "STEERING_LINEAR", LINEAR_KERNELS, "linear-kernel", "auto: measured per model"),  # type: ignore[arg-type]
        pack=_choice(env, "STEERING_PACK", PACK_MODES, "weight-packing", "auto: pack for large batched generations"),  # type: ignore[arg-type]
        hub_offline=bool(env.get("HF_HUB_OFFLINE")),
        hub_endpoint=env.get("HF_ENDPOINT", "https://huggingface.co"),
    )
